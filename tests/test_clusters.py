"""Interest clusters on a small planted world: quality, IAB names, stable keys, sensitivity."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import normalized_mutual_info_score

from bench.worlds import WorldSpec
from bench.worlds import write as write_world
from dmp.config import load_config
from dmp.generate import World
from dmp.ingest import ingest_files
from dmp.interests.profiles import build_profiles
from dmp.segments.clusters import cluster, informative, k_grid, load_features
from dmp.store import open_store
from tests.conftest import NOW
from tests.test_identity import line, load


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """1,500 devices of 13 planted personas, ingested and profiled once for the module."""
    folder = tmp_path_factory.mktemp("world")
    summary = World(devices=1500, events=30_000, seed=11, now=NOW).write(folder)
    home = folder / "home"
    config = load_config(home, (f"interests.category_rules={summary['category_rules']}",), env={})
    with open_store(config) as store:
        ingest_files(store, config, summary["files"], now=NOW)
        build_profiles(store, config, NOW)
    return home, summary, config


def assignments(store) -> pd.DataFrame:
    return store.con.execute(
        """
        SELECT m.id, s.segment_id FROM segment_members m JOIN segments s USING (segment_id)
        WHERE s.kind = 'cluster' AND m.added_at = (SELECT max(created_at) FROM clusters)
        """
    ).df()


def test_clusters_recover_planted_personas_with_iab_names_and_stable_keys(world):
    home, summary, config = world
    with open_store(config) as store:
        first = cluster(store, config, NOW)
        truth = pd.read_csv(summary["truth"])
        joined = assignments(store).merge(truth, on="id")
        nmi = normalized_mutual_info_score(joined["persona"], joined["segment_id"])
        assert nmi >= 0.7, nmi
        assert len(joined) == first["devices"]
        labels = [c["label"] for c in first["clusters"]]
        assert len(set(labels)) == len(labels)
        audience = {
            r[0]
            for r in store.con.execute(
                "SELECT name FROM taxonomy WHERE taxonomy = 'audience' AND path LIKE 'Interest |%'"
            ).fetchall()
        }
        nodes = [label.split(" / ")[0] for label in labels]
        assert sum(node in audience for node in nodes) >= len(labels) // 2
        assert all(0 < t["share"] <= 1 for c in first["clusters"] for t in c["top_categories"])

        second = cluster(store, config, NOW)
        keys = {c["key"]: c["label"] for c in first["clusters"]}
        again = {c["key"]: c["label"] for c in second["clusters"]}
        assert again == keys  # same data, same clusters, same keys and segments
        segments = store.con.execute(
            "SELECT count(*) FROM segments WHERE kind = 'cluster'"
        ).fetchone()[0]
        assert segments == len(keys)


def test_sensitive_categories_never_build_clusters(world):
    home, summary, config = world
    with open_store(config) as store:
        store.con.execute("UPDATE taxonomy SET sensitive = true WHERE id IN ('30', '2')")
        used = set(load_features(store, config, NOW).categories)
        allowed = load_config(home, ("interests.allow_sensitive=true",), env={})
        assert {"30", "2"} <= set(load_features(store, allowed, NOW).categories)
        store.con.execute("UPDATE taxonomy SET sensitive = false WHERE id IN ('30', '2')")
    assert not {"30", "2"} & used


def test_features_of_old_activity_are_non_negative_and_do_not_depend_on_age(store, config, write):
    """Two devices reading the same pages, one 60 days ago and one yesterday: decayed
    scores far below 1 for the first (2^-60/14) must give the same non-negative features."""
    pages = [("1", 3), ("30", 2), ("80", 1)]  # Automotive, Auto Body Styles, Business
    rows = [
        line(NOW - timedelta(days=days, minutes=i), device, category=category)
        for device, days in (("ckold", 60), ("ckfresh", 1))
        for category, repeat in pages
        for i in range(repeat)
    ]
    rows.append(line(NOW - timedelta(days=2), "ckother", category="640"))  # Television
    load(store, config, write, *rows)
    build_profiles(store, config, NOW)
    features = load_features(store, config, NOW)
    assert features.matrix.data.min() >= 0
    matrix = features.matrix.toarray()
    old, fresh = (features.devices["id"].tolist().index(d) for d in ("ckold", "ckfresh"))
    np.testing.assert_allclose(matrix[old], matrix[fresh], rtol=1e-6)


def clustered_bench_world(folder, spec: WorldSpec, *settings: str) -> tuple[float, dict]:
    """A world of the bench matrix ingested, profiled and clustered: NMI of the cluster
    segments against its planted personas, and the cluster run's report."""
    world = write_world(spec, folder / "world", NOW)
    config = load_config(
        folder / "home", (f"interests.category_rules={world['rules']}", *settings), env={}
    )
    with open_store(config) as store:
        ingest_files(store, config, [world["events"]], now=NOW)
        build_profiles(store, config, NOW)
        report = cluster(store, config, NOW)
        joined = assignments(store).merge(pd.read_csv(world["truth"]), on="id")
    return normalized_mutual_info_score(joined["persona"], joined["segment_id"]), report


def test_clusters_recover_planted_personas_of_old_activity(tmp_path):
    """A world of the bench matrix whose devices were last active up to 60 days ago."""
    spec = replace(
        WorldSpec("old"), devices=1200, personas=8, recency_days=60, active_days=14, seed=3
    )
    nmi, _ = clustered_bench_world(tmp_path, spec, f"segments.cluster_k={spec.personas}")
    assert nmi >= 0.75, nmi


@pytest.mark.parametrize(("personas", "devices"), [(4, 3000), (32, 8000)])
def test_k_is_chosen_near_the_planted_personas_few_or_many(tmp_path, personas, devices):
    """The default range reaches both ends (it capped k at 20 and began at 6), and the
    silhouette measured on devices with enough activity to show their interests finds
    the planted number of personas."""
    spec = replace(WorldSpec("k"), devices=devices, personas=personas, seed=5)
    nmi, report = clustered_bench_world(tmp_path, spec)
    assert report["k_how"] == "chosen"
    assert abs(report["k"] - personas) <= max(1, personas // 8), report["k_candidates"]
    assert nmi >= 0.75, nmi


def test_centroids_learnt_from_active_devices_recover_personas_of_sparse_activity(tmp_path):
    """Most devices have two or three events (Pareto 1.2): such devices no longer pull
    the centroids about, as they are learnt from the devices with enough events."""
    spec = replace(WorldSpec("sparse"), devices=6000, personas=10, pareto_shape=1.2, seed=4)
    nmi, _ = clustered_bench_world(tmp_path, spec, f"segments.cluster_k={spec.personas}")
    assert nmi >= 0.8, nmi


def test_informative_devices_are_the_active_ones_or_the_most_active_few():
    events = np.array([1, 9, 2, 8, 30, 3, 7, 1])
    assert informative(events, at_least=2).tolist() == [1, 3, 4]  # at least 8 events
    assert informative(events, at_least=4).tolist() == [1, 3, 4, 6]  # the 4 most active
    assert informative(events, at_least=100).tolist() == list(range(8))
    assert informative(np.array([]), at_least=3).tolist() == []


def test_k_grid_spans_the_range_in_a_bounded_number_of_steps():
    grid = k_grid(2, 60)
    assert grid[:15] == list(range(2, 17)) and grid[15:18] == [18, 20, 22] and grid[-1] == 60
    assert grid == sorted(set(grid)) and len(grid) <= 30
    assert k_grid(5, 5) == [5] and k_grid(6, 7) == [6, 7]


def test_too_few_devices_keeps_the_previous_clusters(world, tmp_path):
    home, summary, config = world
    shutil.copytree(home, tmp_path / "home")
    config = load_config(
        tmp_path / "home", (f"interests.category_rules={summary['category_rules']}",), env={}
    )
    tables = ("clusters", "segments", "segment_members")
    with open_store(config) as store:
        cluster(store, config, NOW)
        before = {
            t: store.con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables
        }
        store.con.execute("DELETE FROM profiles")
        result = cluster(store, config, NOW + timedelta(days=1))
        after = {t: store.con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}
    assert result["status"] == "kept" and "no device has an interest profile" in result["reason"]
    assert after == before
