"""Refresh every rule segment (referenced segments first) and record daily sizes."""

from __future__ import annotations

from datetime import datetime

from dmp.config import Config
from dmp.segments.rule_segments import refresh_all
from dmp.store import Store


def run(store: Store, config: Config, now: datetime | None = None) -> dict:
    return refresh_all(store, config, now)
