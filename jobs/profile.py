"""Interest profiles of devices with new events (decayed scores per content category)."""

from __future__ import annotations

from datetime import datetime

from dmp.config import Config
from dmp.interests.profiles import build_profiles
from dmp.store import Store


def run(store: Store, config: Config, now: datetime | None = None) -> dict:
    return build_profiles(store, config, now)
