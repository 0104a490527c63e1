"""Cluster runs as segments a buyer can rely on: guard, retirement, report.

Each cluster key is one segment of kind ``cluster`` named ``Cluster KEY: NAME``,
its name following its centroid (a change is recorded in the segment's
history). A run, in one transaction:

- applies each cluster's new membership (``apply_members``: leavers expire
  through the segment TTL), unless the guard holds it: for a cluster linked to
  a destination whose membership churns more than ``segments.cluster_max_churn``
  (added + removed over its applied size) or whose name changes, the new
  membership and name are held and the old membership keeps being renewed and
  synced until ``accept`` (or ``segments.cluster_guard = false``);
- retires the segments of keys the run no longer has: they leave the live
  lists, nothing renews their members, so these expire through the TTL and
  destinations get removals;
- records the quality report (``cluster_runs``): k, silhouette, sizes, the
  adjusted Rand index against the previous run on the devices in both, names
  changed, clusters born, retired and held.

A refused run (``refuse``) records its reason and touches nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.metrics import adjusted_rand_score

from dmp.clock import iso, utcnow
from dmp.config import Config
from dmp.errors import DmpError
from dmp.segments.membership import apply_members
from dmp.segments.registry import (
    create_segment,
    record_history,
    rename_segment,
    require_segment,
    set_status,
    update_definition,
)
from dmp.store import Store

NEW = "cluster_new"  # temp table of this run's assignment: id, id_type, cluster_key
_LINKED = "EXISTS (SELECT 1 FROM destination_segments l WHERE l.segment_id = {} AND l.active)"


@dataclass
class ClusterRun:
    """A fitted run, ready to store: every device's cluster, and each cluster's key,
    name and centroid (rows of ``centroids`` and entries of ``keys``/``named`` align)."""

    devices: pd.DataFrame  # id, id_type in the order of labels
    categories: np.ndarray
    labels: np.ndarray
    centroids: np.ndarray
    keys: list[int]
    named: list[dict]  # label, top_categories
    k: int
    k_how: str  # kept, chosen or configured
    k_settings: dict
    k_candidates: dict | None
    warm_start: bool
    silhouette: float | None


def segment_name(key: int, label: str) -> str:
    return f"Cluster {key:02d}: {label}"


def store_run(store: Store, config: Config, run: ClusterRun, now: datetime) -> dict:
    """Apply the run as cluster segments in one transaction; returns its quality report."""
    con = store.con
    with store.transaction():
        run_id = _next_run_id(con)
        con.register("cluster_new_arrow", _assignment(run))
        con.execute(f"CREATE OR REPLACE TEMP TABLE {NEW} AS SELECT * FROM cluster_new_arrow")
        con.unregister("cluster_new_arrow")
        ari, in_both = _rand_index(con)
        churn = _churn(con, run)
        clusters = [
            _store_cluster(con, config, run, index, churn, run_id, now)
            for index in range(len(run.keys))
        ]
        retired = _retire(con, run.keys, now)
        _keep_k(con, run, now)
        con.execute("DELETE FROM cluster_assignments")
        con.execute(f"INSERT INTO cluster_assignments SELECT * FROM {NEW} ORDER BY id_type, id")
        con.execute(f"DROP TABLE {NEW}")
        report = _report(run, run_id, clusters, retired, ari, in_both)
        con.execute(
            "INSERT INTO cluster_runs VALUES (?, ?, 'applied', NULL, ?)",
            [run_id, now, json.dumps(report)],
        )
    return report


def refuse(store: Store, reason: str, devices: int, now: datetime) -> dict:
    """Record a refused run (bad input); the clusters, segments and members stay as they
    were. The reason is the run's warning, so `dmp jobs` and the Jobs page show it."""
    with store.transaction() as con:
        run_id = _next_run_id(con)
        report = {"run_id": run_id, "status": "kept", "reason": reason, "devices": devices,
                  "warnings": [f"clusters kept unchanged: {reason}"]}  # fmt: skip
        con.execute(
            "INSERT INTO cluster_runs VALUES (?, ?, 'kept', ?, ?)",
            [run_id, now, reason, json.dumps(report)],
        )
    return report


def accept(store: Store, config: Config, name: str, now: datetime | None = None) -> dict:
    """Apply the membership and name the guard holds for cluster segment ``name``."""
    now = now or utcnow()
    segment = require_segment(store, name, "cluster")
    con = store.con
    hold = con.execute(
        "SELECT cluster_key, label, reason FROM cluster_holds WHERE segment_id = ?",
        [segment["segment_id"]],
    ).fetchone()
    if hold is None:
        raise DmpError(f"cluster segment {name!r} has no held membership to accept")
    key, label, reason = hold
    with store.transaction():
        members = f"(SELECT id, id_type FROM cluster_assignments WHERE cluster_key = {int(key)})"
        result = _apply(con, config, segment["segment_id"], members, now)
        new_name = _rename(
            con, segment["segment_id"], segment["name"], segment_name(key, label), now
        )
        con.execute("DELETE FROM cluster_holds WHERE segment_id = ?", [segment["segment_id"]])
        record_history(
            con, segment["segment_id"], "accepted", f"held change accepted ({reason})", now
        )
    return {"segment": new_name, "previous_name": segment["name"], **result}


def latest_report(store: Store) -> dict | None:
    """The last cluster run's quality report."""
    row = store.con.execute(
        "SELECT report FROM cluster_runs ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    return json.loads(row[0]) if row else None


def run_history(store: Store, limit: int = 30) -> list[dict]:
    """Recent runs, oldest first: when, status, k, silhouette, churn (for the chart)."""
    rows = store.con.execute(
        """
        SELECT run_id, ran_at, status, reason,
               json_extract(report, '$.k')::INTEGER, json_extract(report, '$.silhouette')::DOUBLE,
               json_extract(report, '$.churn_ari')::DOUBLE
        FROM cluster_runs ORDER BY run_id DESC LIMIT ?
        """,
        [limit],
    ).fetchall()
    keys = ("run_id", "ran_at", "status", "reason", "k", "silhouette", "churn_ari")
    return [dict(zip(keys, (*r[:1], iso(r[1]), *r[2:]), strict=True)) for r in reversed(rows)]


def holds(store: Store) -> list[dict]:
    """Every held cluster change, by segment."""
    rows = store.con.execute(
        """
        SELECT s.name, h.label, h.reason, h.held_at FROM cluster_holds h
        JOIN segments s USING (segment_id) ORDER BY s.name
        """
    ).fetchall()
    return [
        {"segment": n, "label": label, "reason": r, "held_at": iso(at)} for n, label, r, at in rows
    ]


def retired_linked(store: Store) -> list[dict]:
    """Retired clusters still linked to a destination: what the overview flags."""
    rows = store.con.execute(
        """
        SELECT s.name, d.name FROM segments s
        JOIN destination_segments l USING (segment_id) JOIN destinations d USING (destination_id)
        WHERE s.status = 'retired' AND l.active ORDER BY s.name, d.name
        """
    ).fetchall()
    return [{"segment": s, "destination": d} for s, d in rows]


# -- one run, step by step ----------------------------------------------------------------


def _next_run_id(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute(
        "SELECT greatest((SELECT max(run_id) FROM cluster_runs), "
        "(SELECT max(run_id) FROM clusters), 0) + 1"
    ).fetchall()[0][0]


def _assignment(run: ClusterRun) -> pa.Table:
    keys = np.asarray(run.keys, dtype=np.int32)[run.labels]
    return pa.table(
        {"id": run.devices["id"], "id_type": run.devices["id_type"], "cluster_key": keys}
    )


def _rand_index(con: duckdb.DuckDBPyConnection) -> tuple[float | None, int]:
    """Adjusted Rand index of this run against the previous one on the devices in both."""
    pairs = con.execute(
        f"""
        SELECT o.cluster_key AS before, n.cluster_key AS after
        FROM cluster_assignments o JOIN {NEW} n USING (id, id_type)
        """
    ).fetchnumpy()
    if not len(pairs["before"]):
        return None, 0
    return round(float(adjusted_rand_score(pairs["before"], pairs["after"])), 4), len(
        pairs["before"]
    )


def _churn(con: duckdb.DuckDBPyConnection, run: ClusterRun) -> dict[int, dict]:
    """Per key with a segment: its applied size, and how many this run adds and removes."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE cluster_key_segments AS "
        "SELECT json_extract(definition, '$.cluster_key')::INTEGER AS cluster_key, segment_id "
        "FROM segments WHERE kind = 'cluster'"
    )
    rows = con.execute(
        f"""
        WITH new AS (SELECT k.segment_id, n.id, n.id_type FROM {NEW} n
                     JOIN cluster_key_segments k USING (cluster_key)),
             old AS (SELECT * FROM cluster_members
                     WHERE segment_id IN (SELECT segment_id FROM new))
        SELECT coalesce(n.segment_id, o.segment_id), count(o.id),
               count(*) FILTER (WHERE o.id IS NULL), count(*) FILTER (WHERE n.id IS NULL)
        FROM new n FULL JOIN old o USING (segment_id, id, id_type) GROUP BY 1
        """
    ).fetchall()
    con.execute("DROP TABLE cluster_key_segments")
    return {
        segment: {"before": before, "added": added, "removed": removed}
        for segment, before, added, removed in rows
    }


def _store_cluster(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    run: ClusterRun,
    index: int,
    churn: dict[int, dict],
    run_id: int,
    now: datetime,
) -> dict:
    """One cluster: its segment (created when born), applied or held, and its row."""
    key, named = run.keys[index], run.named[index]
    name = segment_name(key, named["label"])
    description = "; ".join(
        f"{t['node']} ({t['share']:.0%} of members)" for t in named["top_categories"]
    )
    found = con.execute(
        "SELECT segment_id, name FROM segments WHERE kind = 'cluster' "
        "AND json_extract(definition, '$.cluster_key')::INTEGER = ?",
        [key],
    ).fetchone()
    born = found is None
    segment_id = create_segment(
        con, name, "cluster", {"cluster_key": key}, description=description, now=now
    ) if born else found[0]  # fmt: skip
    counts = churn.get(segment_id, {"before": 0, "added": 0, "removed": 0})
    rate = (counts["added"] + counts["removed"]) / counts["before"] if counts["before"] else None
    held = None if born else _guard(con, config, segment_id, found[1], name, rate)
    members = f"(SELECT id, id_type FROM {NEW} WHERE cluster_key = {int(key)})"
    if held:
        _hold(con, config, segment_id, run_id, key, named["label"], held, now)
    else:
        _apply(con, config, segment_id, members, now)
        if not born:
            _rename(con, segment_id, found[1], name, now)
        con.execute("DELETE FROM cluster_holds WHERE segment_id = ?", [segment_id])
        update_definition(con, segment_id, {"cluster_key": key}, description=description, now=now)
    size = int((run.labels == index).sum())
    centroid = {
        str(c): float(w)
        for c, w in zip(run.categories, run.centroids[index], strict=True)
        if w != 0
    }
    con.execute(
        "INSERT INTO clusters VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, key, named["label"], size, json.dumps(named["top_categories"]),
         json.dumps(centroid), segment_id, now],
    )  # fmt: skip
    return {
        "key": key, "label": named["label"], "segment": name if not held else found[1],
        "size": size, "top_categories": named["top_categories"],
        "status": "born" if born else ("held" if held else "applied"), "held_reason": held,
        "previous_name": None if born else found[1],
        "churn": None if rate is None else round(rate, 4),
    }  # fmt: skip


def _guard(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    segment_id: int,
    old_name: str,
    new_name: str,
    churn: float | None,
) -> str | None:
    """Why a linked cluster's new membership must wait for an operator, or None."""
    if not config.get("segments.cluster_guard"):
        return None
    if not con.execute(f"SELECT {_LINKED.format('?')}", [segment_id]).fetchone()[0]:
        return None
    limit = config.get("segments.cluster_max_churn")
    reasons = []
    if churn is not None and churn > limit:
        reasons.append(
            f"membership churn {churn:.0%} is above segments.cluster_max_churn {limit:.0%}"
        )
    if old_name != new_name:
        reasons.append(f"its name would change to {new_name!r}")
    return "; ".join(reasons) or None


def _apply(
    con: duckdb.DuckDBPyConnection, config: Config, segment_id: int, members: str, now: datetime
) -> dict:
    """Make ``members`` (a query of id, id_type) the cluster's applied membership."""
    con.execute("DELETE FROM cluster_members WHERE segment_id = ?", [segment_id])
    con.execute(
        f"INSERT INTO cluster_members SELECT ?, id, id_type FROM {members} ORDER BY id_type, id",
        [segment_id],
    )
    return apply_members(con, segment_id, members, now, config.get("segments.cluster_ttl_days"))


def _hold(con, config, segment_id, run_id, key, label, reason, now) -> None:
    """Keep renewing the applied membership; remember the held change (history records a
    hold when it starts or its reason changes, not every run)."""
    before = con.execute(
        "SELECT reason FROM cluster_holds WHERE segment_id = ?", [segment_id]
    ).fetchone()
    con.execute(
        """
        INSERT INTO cluster_holds VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (segment_id) DO UPDATE
        SET run_id = excluded.run_id, cluster_key = excluded.cluster_key,
            label = excluded.label, reason = excluded.reason
        """,
        [segment_id, run_id, key, label, reason, now],
    )
    if before is None or before[0] != reason:
        record_history(con, segment_id, "held", f"new membership held: {reason}", now)
    kept = f"(SELECT id, id_type FROM cluster_members WHERE segment_id = {int(segment_id)})"
    apply_members(con, segment_id, kept, now, config.get("segments.cluster_ttl_days"))


def _rename(con, segment_id: int, old: str, new: str, now: datetime) -> str:
    if old != new:
        rename_segment(con, segment_id, new, now)
        record_history(con, segment_id, "renamed", f"{old} -> {new}", now)
    return new


def _retire(con: duckdb.DuckDBPyConnection, keys: list[int], now: datetime) -> list[dict]:
    """Retire live cluster segments of keys this run does not have; every retired one's
    expired members leave (and are recorded) through the normal TTL path."""
    gone = con.execute(
        f"""
        SELECT segment_id, name, {_LINKED.format("segment_id")} FROM segments
        WHERE kind = 'cluster' AND status = 'live'
          AND NOT list_contains($keys, json_extract(definition, '$.cluster_key')::INTEGER)
        ORDER BY segment_id
        """,
        {"keys": keys},
    ).fetchall()
    for segment_id, _, linked in gone:
        set_status(con, segment_id, "retired", now)
        note = (
            "; still linked to a destination, which gets removals as members expire"
            if linked
            else ""
        )
        record_history(con, segment_id, "retired", f"the cluster no longer exists{note}", now)
        for table in ("cluster_members", "cluster_holds"):
            con.execute(f"DELETE FROM {table} WHERE segment_id = ?", [segment_id])
    for (segment_id,) in con.execute(
        "SELECT segment_id FROM segments WHERE kind = 'cluster' AND status = 'retired'"
    ).fetchall():
        apply_members(con, segment_id, f"(SELECT id, id_type FROM {NEW} WHERE false)", now, 0)
    return [{"segment": name, "linked": linked} for _, name, linked in gone]


def _keep_k(con: duckdb.DuckDBPyConnection, run: ClusterRun, now: datetime) -> None:
    """Store k (and what it was chosen under) when it was chosen or configured anew."""
    if run.k_how == "kept":
        return
    con.execute("DELETE FROM cluster_k")
    con.execute(
        "INSERT INTO cluster_k VALUES (?, ?, ?, ?)",
        [run.k, json.dumps(run.k_settings), json.dumps(run.k_candidates), now],
    )


def _report(
    run: ClusterRun,
    run_id: int,
    clusters: list[dict],
    retired: list[dict],
    ari: float | None,
    in_both: int,
) -> dict:
    warnings = [
        f"{c['segment']}: change held ({c['held_reason']})" for c in clusters if c["held_reason"]
    ]
    warnings += [
        f"{r['segment']} retired while linked to a destination" for r in retired if r["linked"]
    ]
    return {
        "run_id": run_id,
        "status": "applied",
        "devices": len(run.labels),
        "k": run.k,
        "k_how": run.k_how,
        "k_candidates": run.k_candidates,
        "warm_start": run.warm_start,
        "silhouette": run.silhouette,
        "churn_ari": ari,
        "devices_in_both": in_both,
        "sizes": {c["segment"]: c["size"] for c in clusters},
        "names_changed": [
            {
                "key": c["key"],
                "from": c["previous_name"],
                "to": segment_name(c["key"], c["label"]),
                "held": c["status"] == "held",
            }
            for c in clusters
            if c["previous_name"] and c["previous_name"] != segment_name(c["key"], c["label"])
        ],  # fmt: skip
        "born": [c["segment"] for c in clusters if c["status"] == "born"],
        "retired": [r["segment"] for r in retired],
        "held": [c["segment"] for c in clusters if c["status"] == "held"],
        "clusters": clusters,
        "warnings": warnings,
    }
