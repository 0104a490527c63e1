"""Cluster quality over a matrix of generated worlds: dmp's clusters against planted personas.

    python bench/cluster_quality.py [--devices N] [--world NAME ...] [--json]

For each world of bench/worlds.py's MATRIX (or those named), in one run: write
its logs, build a fresh instance, ingest them, run the profile and cluster jobs
(in this process, "now" fixed), and measure NMI of dmp's cluster segments
against the planted personas. Beside it, on the same devices: the baseline,
plain TF-IDF on event counts + MiniBatchKMeans with k = the number of personas;
and the ceiling, the Bayes classifier that knows the planted model (about the
best any method can do on that world). Prints a table per world, the minimum
NMI and the worst world (target: >= 0.75 on every world, and never below the
baseline). --devices N sets every world's size (events per device kept;
default: each world's own, 20k-40k devices).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.cluster import MiniBatchKMeans
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.metrics import normalized_mutual_info_score as nmi
from sklearn.preprocessing import normalize
from worlds import MATRIX, NOW, WorldSpec, write

from dmp.config import load_config
from dmp.ingest import ingest_files
from dmp.interests.profiles import build_profiles
from dmp.segments.clusters import cluster
from dmp.store import open_store

OUT = Path(__file__).resolve().parent / "out" / "cluster_quality"
TARGET = 0.75


def measure(spec: WorldSpec, folder: Path) -> dict:
    """One world: generate, ingest, profile, cluster; dmp's NMI and the baseline's."""
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    world = write(spec, folder / "world")
    config = load_config(folder / "home", (f"interests.category_rules={world['rules']}",), env={})
    with open_store(config) as store:
        ingest_files(store, config, [world["events"]], now=NOW)
        build_profiles(store, config, NOW)
        result = cluster(store, config, NOW)
        got = store.con.execute(
            """
            SELECT m.id, m.id_type, m.segment_id FROM segment_members m
            JOIN segments s USING (segment_id) WHERE s.kind = 'cluster'
            """
        ).df()
        counts = store.con.execute(
            """
            SELECT p.id, p.id_type, p.category_id, p.events FROM profiles p
            JOIN taxonomy t ON t.taxonomy = 'content' AND t.id = p.category_id
            WHERE NOT t.sensitive
            """
        ).df()
    baseline = _baseline(counts, spec.personas, seed=config.get("segments.cluster_seed"))
    truth = pd.read_csv(world["truth"])
    joined = got.merge(baseline, on=["id", "id_type"]).merge(truth, on=["id", "id_type"])
    return {
        "world": spec.name,
        "personas": spec.personas,
        "devices": len(joined),
        "events": world["event_rows"],
        "k": result.get("k"),
        "nmi": nmi(joined["persona"], joined["segment_id"]),
        "baseline_nmi": nmi(joined["persona"], joined["baseline"]),
        "ceiling_nmi": nmi(joined["persona"], joined["oracle"]),
        "seconds": time.perf_counter() - start,
    }


def _baseline(counts: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Plain TF-IDF (no sublinear tf) on event counts, L2 rows, MiniBatchKMeans(k)."""
    devices = counts[["id", "id_type"]].drop_duplicates().reset_index(drop=True)
    row = pd.MultiIndex.from_frame(devices).get_indexer(
        pd.MultiIndex.from_frame(counts[["id", "id_type"]])
    )
    col, _ = pd.factorize(counts["category_id"], sort=True)
    matrix = sparse.csr_matrix(
        (counts["events"].to_numpy(dtype=np.float64), (row, col)),
        shape=(len(devices), col.max() + 1),
    )
    features = normalize(TfidfTransformer().fit_transform(matrix))
    model = MiniBatchKMeans(k, random_state=seed, n_init=3, batch_size=4096)
    return devices.assign(baseline=model.fit_predict(features))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, help="every world's size (default: its own)")
    parser.add_argument("--world", action="append", help="only this world (repeatable)")
    parser.add_argument("--seed", type=int, help="every world's seed (default: its own)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    known = {spec.name: spec for spec in MATRIX}
    unknown = set(args.world or ()) - set(known)
    if unknown:
        parser.error(f"unknown world(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    rows = []
    print(f"{'world':<14} {'personas':>8} {'devices':>9} {'k':>3} {'dmp NMI':>8} "
          f"{'baseline':>8} {'ceiling':>8} {'seconds':>8}")  # fmt: skip
    for name in args.world or known:
        spec = known[name]
        if args.devices:
            spec = spec.scaled(args.devices)
        if args.seed is not None:
            spec = replace(spec, seed=args.seed)
        row = measure(spec, OUT / name)
        rows.append(row)
        print(
            f"{row['world']:<14} {row['personas']:>8} {row['devices']:>9,} {row['k'] or '-':>3} "
            f"{row['nmi']:>8.3f} {row['baseline_nmi']:>8.3f} {row['ceiling_nmi']:>8.3f} "
            f"{row['seconds']:>8.1f}",
            flush=True,
        )
    worst = min(rows, key=lambda r: r["nmi"])
    below = [r["world"] for r in rows if r["nmi"] < r["baseline_nmi"]]
    print(f"\nminimum NMI {worst['nmi']:.3f} on {worst['world']} (target >= {TARGET})")
    print("below the baseline on: " + (", ".join(below) if below else "no world"))
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
