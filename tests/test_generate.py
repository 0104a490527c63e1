"""The synthetic world: seeded, sized as asked, with its ground truth."""

from __future__ import annotations

import csv
from pathlib import Path

from dmp.generate import PERSONAS, World
from tests.conftest import NOW


def test_same_seed_same_world_and_truth(tmp_path):
    # "now" fixed: two worlds built a second apart would otherwise differ in time.
    first = World(devices=200, events=2000, seed=7, now=NOW).write(tmp_path / "a", fmt="jsonl")
    second = World(devices=200, events=2000, seed=7, now=NOW).write(tmp_path / "b", fmt="jsonl")
    assert first["events"] == 2000
    for a, b in zip(first["files"], second["files"], strict=True):
        assert Path(a).read_bytes() == Path(b).read_bytes()
    with open(first["truth"]) as handle:
        truth = list(csv.DictReader(handle))
    assert len(truth) == 200
    assert {row["persona"] for row in truth} <= {p[0] for p in PERSONAS}
    assert any(row["converted"] == "true" for row in truth) or len(truth) < 500


def test_persona_categories_dominate_each_device(tmp_path):
    import duckdb

    world = World(devices=500, events=20_000, seed=3)
    con = duckdb.connect()
    world.build(con)
    share = con.execute(
        """
        SELECT avg(own) FROM (
            SELECT e.id, avg((e.category IN (SELECT unnest(?))) ::INT) AS own
            FROM world_events e JOIN world_devices d ON lower(e.id) = lower(d.id)
            WHERE d.persona = 'auto_intenders' AND e.category IS NOT NULL GROUP BY e.id)
        """,
        [list(PERSONAS[0][1])],
    ).fetchone()[0]
    assert share > 0.6
