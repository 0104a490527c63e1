"""Lookalike refresh: retrain every lookalike on today's profiles; guards may keep the old."""

from __future__ import annotations

from datetime import datetime

from dmp.config import Config
from dmp.lookalike.audience import refresh_all
from dmp.store import Store


def run(store: Store, config: Config, now: datetime | None = None) -> dict:
    return refresh_all(store, config, now)
