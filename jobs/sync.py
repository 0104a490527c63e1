"""Delta sync of every linked segment to its destinations."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from dmp.activation import sync
from dmp.config import Config
from dmp.store import Store


def run(store: Store, config: Config, now: datetime | None = None, dry_run: bool = False) -> dict:
    results = sync(store, config, now=now, dry_run=dry_run)
    return {
        "dry_run": dry_run,
        "syncs": len(results),
        "by_status": dict(Counter(r["status"] for r in results)),
        "accepted": sum(r["accepted"] for r in results),
        "rejected": sum(r["rejected"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "warnings": [
            f"{r['destination']}/{r['segment']}: {r['status']}: {r['reason']}"
            for r in results
            if r["status"] in ("failed", "partial")
        ],
    }
