"""Ingest every file waiting in the landing folder."""

from __future__ import annotations

from datetime import datetime

from dmp.config import Config
from dmp.identity.idsync import import_spooled
from dmp.ingest import ingest_landing
from dmp.store import Store


def run(store: Store, config: Config, now: datetime | None = None) -> dict:
    results = ingest_landing(store, config, now=now)
    # Cookie-sync matches the collector spooled (landing/idsync/PARTNER/*.csv).
    synced = import_spooled(store, config.path("ingest.landing") / "idsync", now)
    summary = {
        "files": len(results),
        "loaded": sum(r.loaded for r in results),
        "quarantined": sum(r.quarantined for r in results),
        "rejected": [r.file for r in results if r.status == "rejected"],
    }
    notes = [f"{r.file}: {r.error}" for r in results if r.status == "skipped" and r.error]
    if notes:
        summary["notes"] = notes
    if synced["files"]:
        summary["partner_ids"] = synced["stored"]
    return summary
