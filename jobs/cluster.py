"""Interest clusters (k-means over decayed profiles) and their cluster segments."""

from __future__ import annotations

from datetime import datetime

from dmp.config import Config
from dmp.segments.clusters import cluster
from dmp.store import Store


def run(
    store: Store, config: Config, now: datetime | None = None, rechoose_k: bool = False
) -> dict:
    return cluster(store, config, now, rechoose_k=rechoose_k)
