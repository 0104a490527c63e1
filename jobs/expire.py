"""Nightly identity pass: expire stale IDs and old events, flag bots, rebuild the ID graph,
decide new consent strings; and remove raw files kept past ``landing.keep_days``."""

from __future__ import annotations

from datetime import datetime

from dmp.config import Config
from dmp.identity import maintain
from dmp.ingest.landing import prune
from dmp.store import Store


def run(store: Store, config: Config, now: datetime | None = None, dry_run: bool = False) -> dict:
    result = maintain(store, config, now, dry_run=dry_run)
    # Raw files are kept no longer than the events' own nightly pass looks after.
    result.update(prune(config, now, dry_run=dry_run))
    return result
