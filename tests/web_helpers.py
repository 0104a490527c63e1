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


def hold_and_retire(store, config, now) -> dict:
    """Cluster twice so that one cluster linked to destination ``exports`` has its new
    membership held by the guard and another linked one, left by an earlier run, retires."""
    from dmp.activation import add_destination, link_segment
    from dmp.segments.clusters import cluster
    from dmp.segments.membership import apply_members
    from dmp.segments.registry import create_segment

    first = cluster(store, config, now)
    held = max(first["clusters"], key=lambda c: (c["size"], -c["key"]))["segment"]
    retired = "Cluster 99: Sports Equipment"
    con = store.con
    sid = create_segment(con, retired, "cluster", {"cluster_key": 99}, now=now)
    con.execute(  # as if the last run had a cluster about content no device reads now
        "INSERT INTO clusters SELECT run_id, 99, 'Sports Equipment', 50, '[]', "
        "'{\"zzz\": 1.0}', ?, created_at FROM clusters LIMIT 1",
        [sid],
    )
    apply_members(con, sid, "(SELECT id, id_type FROM cluster_assignments LIMIT 50)", now, 7)
    add_destination(store, "exports", "file", {}, now=now)
    link_segment(store, "exports", held, external_id="held", now=now)
    link_segment(store, "exports", retired, external_id="retired", now=now)
    con.execute(  # its applied membership was another crowd: the new one churns
        "DELETE FROM cluster_members WHERE hash(id) % 2 = 0 AND segment_id = "
        "(SELECT segment_id FROM segments WHERE name = ?)",
        [held],
    )
    second = cluster(store, config, now)
    assert second["held"] == [held] and second["retired"] == [retired], second
    return {"held": held, "retired": retired, "report": second}
