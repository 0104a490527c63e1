"""A small profiled world for the web tests, built once per module and copied per test."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from dmp.config import load_config
from dmp.generate import World
from dmp.identity import maintain
from dmp.ingest import ingest_files
from dmp.interests.profiles import build_profiles
from dmp.segments import rule_segments
from dmp.store import open_store
from tests.conftest import NOW

PASSWORD = "correct horse battery"
RULE = {"frequency": {"min_events": 1, "within_days": 3650}}


def build_world(folder: Path) -> dict:
    """3,000 devices ingested and profiled, one rule segment ``everyone``; the cookies
    for seed lists."""
    summary = World(devices=3000, events=30_000, seed=11, now=NOW, categorised_share=1.0).write(
        folder / "world"
    )
    config = load_config(folder / "home", env={})
    with open_store(config) as store:
        ingest_files(store, config, summary["files"], now=NOW)
        maintain(store, config, NOW)
        build_profiles(store, config, NOW)
        rule_segments.create(store, config, "everyone", RULE, now=NOW)
    with open(summary["truth"]) as handle:
        truth = list(csv.DictReader(handle))
    cookies = [r["id"] for r in truth if r["id_type"] == "cookie"]
    return {"db": folder / "home" / "dmp.duckdb", "cookies": cookies}


def copy_world(world: dict, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(world["db"], home / "dmp.duckdb")


def seed_csv(world: dict, count: int = 300) -> bytes:
    return ("cookie_id\n" + "\n".join(world["cookies"][:count]) + "\n").encode()
