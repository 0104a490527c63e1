"""Profiles, clusters and segment preview beside ingest of the same events.

    python bench/segments.py [--events 10000000] [--devices 1000000]

Uses the cached benchmark world (bench/ingest.py). In one run, in fresh
processes: ingest the CSV; build profiles + clusters (the `profile` and
`cluster` jobs); preview a category rule segment. Prints each time, the
ratios to ingest, peak memory (target: profile + cluster < 60 s, < 4 GB,
preview < 1 s) and cluster quality: NMI against the planted personas beside
a random assignment's (target >= 0.7).

Then cluster identity: the cluster job again on unchanged data and the same
clock (target: adjusted Rand index 1.0, same names), and after ingesting 5%
more events (a sample of the world's, an hour later) and profiling again
(target: ARI >= 0.9 on the devices in both runs, and no key kept by a cluster
whose top category changed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from ingest import OUT, dmp_ingest, make_csv, run, world_parser

RULES = """
import duckdb, sys
from pathlib import Path
from dmp.generate import write_category_rules
con = duckdb.connect()
con.execute("CREATE TABLE world_events AS SELECT DISTINCT url FROM read_csv(?, all_varchar = true)",
            [sys.argv[1]])
write_category_rules(con, Path(sys.argv[2]))
"""
JOBS = """
import json, os, sys
from datetime import datetime
from dmp.config import load_config
from dmp.store import open_store
from jobs import JOBS
config = load_config()
now = datetime.fromisoformat(os.environ["BENCH_NOW"]) if os.environ.get("BENCH_NOW") else None
with open_store(config) as store:
    out = {name: JOBS[name](store, config, now) for name in sys.argv[1:]}
print(json.dumps(out, default=str))
"""
MORE_EVENTS = """
import duckdb, sys
duckdb.sql(
    "COPY (SELECT * REPLACE (strftime(ts::TIMESTAMP + INTERVAL 1 HOUR, '%Y-%m-%dT%H:%M:%S') AS ts)"
    " FROM read_csv(?, all_varchar = true) USING SAMPLE 5 PERCENT (bernoulli, 7))"
    " TO '" + sys.argv[2] + "' (HEADER)", params=[sys.argv[1]])
"""
TOPICS = """
import json
from dmp.config import load_config
from dmp.segments.clusters import same_topic, top_category
from dmp.store import open_store
with open_store(load_config(), read_only=True) as store:
    rows = store.con.execute("SELECT run_id, cluster_key, centroid FROM clusters").fetchall()
runs = sorted({r for r, _, _ in rows})[-2:]
cent = {(r, k): json.loads(c) for r, k, c in rows if r in runs}
kept = [k for r, k in cent if r == runs[-1] and (runs[0], k) in cent]
before, after = ({k: cent[(r, k)] for k in kept} for r in runs)
print(json.dumps({"kept": len(kept),
                  "topic_changed": [k for k in kept if not same_topic(before[k], after[k])],
                  "near_tie": [k for k in kept
                               if top_category(before[k]) != top_category(after[k])]}))
"""
PREVIEW = """
import json, time
from dmp.config import load_config
from dmp.store import open_store
from dmp.segments.rule_segments import preview
config = load_config()
rule = {"all": [{"category": "Automotive", "min_events": 2, "within_days": 30},
                {"recency": {"within_days": 14}}]}
with open_store(config) as store:
    preview(store, config, {"id_type": "maid"})  # warm the taxonomy and caches
    start = time.perf_counter()
    size = preview(store, config, rule)
    print(json.dumps({"size": size, "seconds": time.perf_counter() - start}))
"""
QUALITY = """
import json, sys
import numpy as np, pandas as pd
from sklearn.metrics import normalized_mutual_info_score as nmi
from dmp.config import load_config
from dmp.store import open_store
config = load_config()
with open_store(config, read_only=True) as store:
    got = store.con.execute(
        "SELECT id, segment_id FROM segment_members JOIN segments USING (segment_id) "
        "WHERE kind = 'cluster'").df()
truth = pd.read_csv(sys.argv[1], usecols=["id", "persona"])
joined = got.merge(truth, on="id")
shuffled = np.random.default_rng(0).permutation(joined["segment_id"].to_numpy())
print(json.dumps({"devices": len(joined), "nmi": nmi(joined["persona"], joined["segment_id"]),
                  "random_nmi": nmi(joined["persona"], shuffled)}))
"""


def main() -> None:
    args = world_parser(__doc__).parse_args()
    csv = make_csv(args.events, args.devices)
    work = OUT / "segments_run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rules = work / "categories.toml"
    run([sys.executable, "-c", RULES, str(csv), str(rules)])
    env = {
        **os.environ,
        "DMP_HOME": str(work / "home"),
        "DMP_INTERESTS__CATEGORY_RULES": str(rules),
    }
    ingest_s, ingest_mb, _ = dmp_ingest(csv, env)
    profile_s, profile_mb, profile_out = run([sys.executable, "-c", JOBS, "profile"], env)
    cluster_s, cluster_mb, cluster_out = run([sys.executable, "-c", JOBS, "cluster"], env)
    _, _, preview_out = run([sys.executable, "-c", PREVIEW], env)
    truth = csv.parent.parent / "truth" / "devices.csv"
    _, _, quality_out = run([sys.executable, "-c", QUALITY, str(truth)], env)
    identity = _identity(csv, work, env, json.loads(cluster_out)["cluster"])
    profile = json.loads(profile_out)["profile"]
    clusters = json.loads(cluster_out)["cluster"]
    preview, quality = json.loads(preview_out), json.loads(quality_out)
    both = profile_s + cluster_s
    print(f"\n{args.events:,} events, {args.devices:,} devices")
    print(f"ingest            {ingest_s:7.2f} s  peak {ingest_mb:6,.0f} MB")
    print(
        f"profile           {profile_s:7.2f} s  peak {profile_mb:6,.0f} MB  "
        f"({profile['profile_rows']:,} profile rows)"
    )
    print(
        f"cluster           {cluster_s:7.2f} s  peak {cluster_mb:6,.0f} MB  "
        f"(k = {clusters['k']}, {clusters['devices']:,} devices)"
    )
    print(f"profile + cluster {both:7.2f} s  = {both / ingest_s:.2f} x ingest (target < 60 s)")
    print(
        f"preview           {preview['seconds']:7.3f} s  = "
        f"{preview['seconds'] / ingest_s:.4f} x ingest ({preview['size']:,} devices; "
        "target < 1 s)"
    )
    print(
        f"cluster NMI vs planted personas {quality['nmi']:.3f} "
        f"(random assignment {quality['random_nmi']:.3f}; target >= 0.7) "
        f"over {quality['devices']:,} devices"
    )
    print(identity)


def _identity(csv, work, env: dict, first: dict) -> str:
    """Rerun the cluster job on unchanged data at the clock of the first run, then after
    5% more events: the lines that say how stable the clusters' identity is."""
    at = {**env, "BENCH_NOW": _ran_at(env)}
    _, _, again_out = run([sys.executable, "-c", JOBS, "cluster"], at)
    again = json.loads(again_out)["cluster"]
    same_names = [c["label"] for c in again["clusters"]] == [c["label"] for c in first["clusters"]]
    more = work / "more_events.csv"
    run([sys.executable, "-c", MORE_EVENTS, str(csv), str(more)])
    run([sys.executable, "-m", "dmp", "ingest", str(more)], env)
    run([sys.executable, "-c", JOBS, "profile"], env)
    _, _, later_out = run([sys.executable, "-c", JOBS, "cluster"], env)
    later = json.loads(later_out)["cluster"]
    _, _, topics_out = run([sys.executable, "-c", TOPICS], env)
    topics = json.loads(topics_out)
    return (
        f"rerun, unchanged data: ARI {again['churn_ari']} on {again['devices_in_both']:,} "
        f"devices, k {again['k']} ({again['k_how']}), same names: {same_names} "
        "(target ARI 1.0, same names)\n"
        f"after 5% more events: ARI {later['churn_ari']} on {later['devices_in_both']:,} "
        f"devices in both (target >= 0.9); {topics['kept']} keys kept, "
        f"{len(topics['topic_changed'])} of them about another topic (target 0; "
        f"{len(topics['near_tie'])} swapped two near-tied top categories); "
        f"born {len(later['born'])}, retired {len(later['retired'])}"
    )


def _ran_at(env: dict) -> str:
    """When the first cluster run ran (its report's clock), for a rerun at the same clock."""
    code = (
        "from dmp.config import load_config; from dmp.store import open_store\n"
        "with open_store(load_config(), read_only=True) as s:\n"
        "    print(s.con.execute('SELECT min(ran_at) FROM cluster_runs').fetchone()[0])"
    )
    return run([sys.executable, "-c", code], env)[2].strip()


if __name__ == "__main__":
    main()
