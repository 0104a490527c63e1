"""Nightly identity pass: expire stale IDs and old events, flag bots, rebuild the ID graph,
decide new consent strings."""

from __future__ import annotations

from datetime import datetime

from dmp.config import Config
from dmp.identity import maintain
from dmp.store import Store


def run(store: Store, config: Config, now: datetime | None = None, dry_run: bool = False) -> dict:
    return maintain(store, config, now, dry_run=dry_run)
