"""A small profiled world for the web tests, built once per module and copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

from dmp.config import load_config
from dmp.segments import rule_segments
from dmp.store import open_store
from tests.conftest import NOW, profiled_world

PASSWORD = "correct horse battery"
RULE = {"frequency": {"min_events": 1, "within_days": 3650}}


def build_world(folder: Path) -> dict:
    """3,000 devices ingested and profiled, one rule segment ``everyone``; the cookies
    for seed lists."""
    db, truth = profiled_world(folder, devices=3000, events=30_000)
    config = load_config(folder / "home", env={})
    with open_store(config) as store:
        rule_segments.create(store, config, "everyone", RULE, now=NOW)
    cookies = [r["id"] for r in truth if r["id_type"] == "cookie"]
    return {"db": db, "cookies": cookies}


def copy_world(world: dict, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(world["db"], home / "dmp.duckdb")


def seed_csv(world: dict, count: int = 300) -> bytes:
    return ("cookie_id\n" + "\n".join(world["cookies"][:count]) + "\n").encode()
