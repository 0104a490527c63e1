"""Lookalike audiences: build one from a seed list, refresh it, read its report.

A lookalike is a segment of kind ``lookalike`` owned by an agency (stored as
``AGENCY/NAME``, so agencies never collide or see each other's names). Each
build or refresh re-matches the seeds, trains :class:`LookalikeModel` on the
current profiles, chooses the top devices at the chosen reach (by default
never a seed device, and never a member of the optional exclusion segment,
such as existing customers) and records a run with its quality report and
churn. Membership goes through ``segments.membership.apply_members`` like any
segment's, so it syncs to destinations as deltas.

A seed list with no usable signal (its held-out lift within the permutation
baseline's at every reach) gets no lookalike unless forced: a buyer would
otherwise read a random list's lift as targeting.

A refresh keeps the previous audience, and says why, when the seed list has
fallen below the modelling minimum, when it shows no usable signal, when the
new audience's size leaves
``1 +/- lookalike.size_tolerance`` of the previous one (of the absolute size
for a fixed-size lookalike), or when its held-out AUC drops by more than
``lookalike.max_auc_drop`` below the last applied run's.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from dmp.clock import iso, utcnow
from dmp.config import Config
from dmp.errors import DmpError
from dmp.lookalike.features import DEVICES, SeedRows, load_features, seed_rows
from dmp.lookalike.model import LookalikeModel
from dmp.lookalike.seeds import check_name, get_seed_list, match_seeds
from dmp.segments.membership import apply_members
from dmp.segments.registry import create_segment, delete_segment, get_segment, list_segments
from dmp.store import Store

SELECTED = "lookalike_selected"  # temp table: id, id_type, score
_STATUSES = ("applied", "kept", "failed")
_REACH = re.compile(r"^\s*(?P<number>\d+(\.\d+)?)\s*(?P<percent>%?)\s*$")


class CannotModel(DmpError):
    """Today's data cannot give this lookalike an audience: too few matched seed
    devices with a profile, a held-out part too small to measure, or a reach beyond
    the allowed share of eligible devices. A refresh keeps the previous audience."""


class NoSignal(DmpError):
    """The seed list's held-out lift cannot be told from random lists': no lookalike is
    created from it unless forced."""


@dataclass
class Build:
    """One trained model and the audience it chose (in temp table ``SELECTED``)."""

    eligible: int
    seed_devices: int
    target: int
    size: int
    quality: dict | None
    model: dict
    seconds: dict = field(default_factory=dict)


def parse_reach(text: str | float | int, config: Config) -> dict:
    """ "5%" (or 0.05) is a share of eligible devices; "50000" an absolute size."""
    match = _REACH.match(str(text))
    if not match:
        raise DmpError(f"reach {text!r}: give a share such as 5% or an absolute size such as 50000")
    number = float(match["number"])
    if match["percent"] or number < 1:
        share = number / 100 if match["percent"] else number
        low, high = config.get("lookalike.min_reach"), config.get("lookalike.max_reach")
        if not low <= share <= high:
            raise DmpError(f"reach {text}: a share must be between {low:.0%} and {high:.0%}")
        return {"share": share}
    if number != int(number):
        raise DmpError(f"reach {text}: an absolute size is a whole number of devices")
    return {"size": int(number)}


def create_lookalike(
    store: Store,
    config: Config,
    name: str,
    seed: str,
    agency: str,
    reach: str | float | int,
    description: str | None = None,
    now: datetime | None = None,
    include_seeds: bool = False,
    exclude: str | None = None,
    force: bool = False,
) -> dict:
    """Train on ``agency``'s seed list ``seed`` and store the audience as a new segment.

    ``include_seeds`` lets seed devices into the audience; ``exclude`` names a
    segment the agency can see whose members never enter it; ``force`` creates
    it even when the seed list shows no usable signal.
    """
    now = now or utcnow()
    name = check_name(name, "lookalike name")
    spec = parse_reach(reach, config)
    if get_segment(store, _segment_name(agency, name), "lookalike") is not None:
        raise DmpError(f"lookalike {name!r} already exists for agency {agency!r}")
    rules = {"include_seeds": bool(include_seeds), "exclude": _exclusion(store, exclude, agency)}
    con = store.con
    with store.transaction():
        match_seeds(con, get_seed_list(store, seed, agency)["seed_list_id"], now)
    seed_list = get_seed_list(store, seed, agency)
    try:
        build = _build(con, config, seed_list, spec, rules, now)
        if not force and not build.quality["signal"]:
            raise NoSignal(
                f"seed list {seed_list['name']!r}: {build.quality['verdict']}; "
                "no lookalike created (force it to create one anyway)"
            )
        with store.transaction():
            segment_id = create_segment(
                con,
                _segment_name(agency, name),
                "lookalike",
                {
                    "seed_list_id": seed_list["seed_list_id"],
                    "seed": seed_list["name"],
                    "reach": spec,
                    **rules,
                },
                agency=seed_list["agency"],
                ttl_days=config.get("lookalike.ttl_days"),
                description=description or f"lookalike of seed list {seed_list['name']}",
                now=now,
            )
            run = _apply(con, config, segment_id, seed_list, build, rules, now)
    finally:
        _drop_temp(con)
    return _report(name, agency, seed_list, spec, run, build)


def refresh_lookalike(
    store: Store,
    config: Config,
    name: str,
    agency: str,
    force: bool = False,
    now: datetime | None = None,
) -> dict:
    """Retrain on today's data; apply the new audience unless a guard keeps the old one
    (``force`` skips the signal, size and quality guards, never the seed minimum)."""
    segment = _require(store, name, agency)
    return _refresh(store, config, segment, force, now or utcnow())


def refresh_all(store: Store, config: Config, now: datetime | None = None) -> dict:
    """Refresh every lookalike (the scheduled ``lookalike`` job)."""
    now = now or utcnow()
    segments = store.con.execute(
        "SELECT name FROM segments WHERE kind = 'lookalike' ORDER BY segment_id"
    ).fetchall()
    results, warnings = [], []
    for (full_name,) in segments:
        segment = get_segment(store, full_name, "lookalike")
        try:
            result = _refresh(store, config, segment, False, now)
        except DmpError as exc:
            agency, name = segment["agency"], full_name.split("/", 1)[1]
            result = {"name": name, "agency": agency, "status": "failed", "reason": str(exc)}
        results.append(
            {k: result.get(k) for k in ("name", "agency", "status", "reason", "size", "churn")}
        )
        if result["status"] != "applied":
            warnings.append(f"{full_name}: {result['status']}: {result['reason']}")
    count = {status: sum(r["status"] == status for r in results) for status in _STATUSES}
    return {"lookalikes": len(results), **count, "runs": results, "warnings": warnings}


def list_lookalikes(store: Store, agency: str) -> list[dict]:
    """``agency``'s own lookalikes with their size, reach, seed list and last run (another
    agency's lookalike granted to it is read through the segment views, not managed)."""
    agency = check_name(agency, "agency")
    return [
        show_lookalike(store, s["name"].split("/", 1)[1], agency, runs=1)
        for s in list_segments(store, "lookalike", viewer=agency)
        if s["agency"] == agency
    ]


def show_lookalike(store: Store, name: str, agency: str, runs: int = 10) -> dict:
    """A lookalike's definition, its current quality report and its recent runs."""
    segment = _require(store, name, agency)
    con = store.con
    recent = [
        _run_dict(row)
        for row in con.execute(
            f"SELECT {_RUN_COLUMNS} FROM lookalike_runs WHERE segment_id = ? "
            "ORDER BY run_id DESC LIMIT ?",
            [segment["segment_id"], runs],
        ).fetchall()
    ]
    applied = _last_applied(con, segment["segment_id"])
    members = con.execute(
        "SELECT count(*) FROM lookalike_members WHERE segment_id = ?", [segment["segment_id"]]
    ).fetchone()[0]
    return {
        "name": name,
        "agency": segment["agency"],
        "segment": segment["name"],
        "segment_id": segment["segment_id"],
        "seed": segment["definition"]["seed"],
        "reach": segment["definition"]["reach"],
        **_rules(segment["definition"]),
        "size": members,
        "created_at": segment["created_at"],
        "quality": applied["quality"] if applied else None,
        "model": applied["model"] if applied else None,
        "runs": recent,
    }


def delete_lookalike(store: Store, name: str, agency: str) -> dict:
    """Remove a lookalike: its segment (destinations drop it at their next sync) and runs."""
    segment = _require(store, name, agency)
    delete_segment(store, segment["segment_id"])
    with store.transaction() as con:
        for table in ("lookalike_members", "lookalike_runs"):
            con.execute(f"DELETE FROM {table} WHERE segment_id = ?", [segment["segment_id"]])
    return {"name": name, "agency": segment["agency"], "deleted": True}


# -- building and applying ----------------------------------------------------------


def _refresh(store: Store, config: Config, segment: dict, force: bool, now: datetime) -> dict:
    con = store.con
    agency, name = segment["agency"], segment["name"].split("/", 1)[1]
    spec, rules = segment["definition"]["reach"], _rules(segment["definition"])
    seed_name = con.execute(
        "SELECT name FROM seed_lists WHERE seed_list_id = ? AND agency = ?",
        [segment["definition"]["seed_list_id"], agency],
    ).fetchone()
    if seed_name is None:
        raise DmpError(f"lookalike {name!r}: its seed list is gone")
    with store.transaction():
        match_seeds(con, segment["definition"]["seed_list_id"], now)
    seed_list = get_seed_list(store, seed_name[0], agency)
    previous = _last_applied(con, segment["segment_id"])
    try:
        try:
            build = _build(con, config, seed_list, spec, rules, now)
            reason = None if force else _guard(config, spec, build, previous)
        except CannotModel as exc:
            build, reason = None, str(exc)
        with store.transaction():
            if reason is None:
                run = _apply(con, config, segment["segment_id"], seed_list, build, rules, now)
            else:
                run = _keep(
                    con, config, segment["segment_id"], seed_list, build, reason, rules, now
                )
    finally:
        _drop_temp(con)
    return _report(name, agency, seed_list, spec, run, build)


def _build(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    seed_list: dict,
    spec: dict,
    rules: dict,
    now: datetime,
) -> Build:
    """Train on the current profiles and choose the audience into ``SELECTED``."""
    seconds = {}
    started = time.perf_counter()
    features = load_features(con, config, now)
    seeds = seed_rows(con, seed_list["seed_list_id"])
    rows = seeds.rows
    seconds["features"] = time.perf_counter() - started
    minimum = config.get("lookalike.min_seed_devices")
    if len(rows) < minimum:
        raise CannotModel(
            f"seed list {seed_list['name']!r} matches {len(rows):,} devices with a consented "
            f"interest profile ({seed_list['matched']:,} matched in all); at least {minimum:,} "
            "are needed to model and measure a lookalike"
        )
    eligible = features.devices
    target = round(spec["share"] * eligible) if "share" in spec else spec["size"]
    max_share = config.get("lookalike.max_reach")
    if "size" in spec and target > max_share * eligible:
        raise CannotModel(
            f"reach of {target:,} devices is more than {max_share:.0%} of the "
            f"{eligible:,} eligible devices; choose a smaller reach"
        )
    started = time.perf_counter()
    model = _fit(config, features, seeds, seed_list)
    seconds["fit"] = time.perf_counter() - started
    started = time.perf_counter()
    scores = model.score_devices(features.matrix)
    barred = _barred_rows(con, rows, rules)
    scores[barred] = -np.inf
    size = min(target, eligible - len(barred))
    chosen = np.argpartition(-scores, size - 1)[:size] if size > 0 else np.array([], np.int64)
    seconds["score"] = time.perf_counter() - started
    con.register(
        "lookalike_chosen", pa.table({"row": chosen.astype(np.int32), "score": scores[chosen]})
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {SELECTED} AS
        SELECT d.id, d.id_type, c.score FROM lookalike_chosen c JOIN {DEVICES} d USING (row)
        """
    )
    con.unregister("lookalike_chosen")
    top = np.argsort(-model.coef_)[:8]
    details = {
        "params": model.get_params(),
        "top_categories": _category_names(con, [features.categories[i] for i in top]),
        "categories": len(features.categories),
    }
    return Build(eligible, len(rows), target, size, model.quality_, details, seconds)


def _fit(config: Config, features, seeds: SeedRows, seed_list: dict) -> LookalikeModel:
    """The configured model fitted on the seeds; a held-out part too small to measure
    (or values that weight nothing) is a :class:`CannotModel` naming the numbers."""
    model = LookalikeModel(
        holdout=config.get("lookalike.holdout"),
        min_heldout=config.get("lookalike.min_heldout_seeds"),
        negatives_per_seed=config.get("lookalike.negatives_per_seed"),
        max_negatives=config.get("lookalike.max_negatives"),
        C=config.get("lookalike.regularisation"),
        centroid_weight=config.get("lookalike.centroid_weight"),
        baseline_repeats=config.get("lookalike.baseline_repeats"),
    )
    try:
        return model.fit(features.matrix, seeds.rows, seeds.keys, features.kinds, seeds.values)
    except ValueError as exc:
        raise CannotModel(f"seed list {seed_list['name']!r}: {exc}") from None


def _barred_rows(con: duckdb.DuckDBPyConnection, seed_rows_: np.ndarray, rules: dict) -> np.ndarray:
    """Rows that may not enter the audience: the seed devices (unless included) and the
    members of the exclusion segment."""
    barred = [np.array([], np.int64) if rules["include_seeds"] else seed_rows_]
    if rules["exclude"]:
        excluded = con.execute(
            f"""
            SELECT d.row FROM segment_members m JOIN {DEVICES} d USING (id, id_type)
            WHERE m.segment_id = ?
            """,
            [rules["exclude"]["segment_id"]],
        ).fetchnumpy()["row"]
        barred.append(np.asarray(excluded, dtype=np.int64))
    return np.unique(np.concatenate(barred))


def _exclusion(store: Store, name: str | None, agency: str) -> dict | None:
    """The segment ``agency`` names to keep out of its audience (one it can see)."""
    if not name:
        return None
    segment = get_segment(store, name, viewer=check_name(agency, "agency"))
    if segment is None:
        raise DmpError(f"exclusion segment {name!r}: no such segment for agency {agency!r}")
    return {"segment_id": segment["segment_id"], "name": segment["name"]}


def _rules(definition: dict) -> dict:
    """A lookalike's audience rules (lookalikes made before they existed: the defaults)."""
    return {
        "include_seeds": definition.get("include_seeds", False),
        "exclude": definition.get("exclude"),
    }


def _guard(config: Config, spec: dict, build: Build, previous: dict | None) -> str | None:
    """Why this build must not replace the audience, or None."""
    if build.quality and not build.quality["signal"]:
        return build.quality["verdict"]
    tolerance = config.get("lookalike.size_tolerance")
    reference = spec.get("size") or (previous["size"] if previous else None)
    if reference:
        ratio = build.size / reference
        if not 1 - tolerance <= ratio <= 1 + tolerance:
            return (
                f"new audience of {build.size:,} devices is {ratio:.2f}x the "
                f"{'chosen size' if 'size' in spec else 'previous audience'} of {reference:,} "
                f"(allowed {1 - tolerance:.2f}-{1 + tolerance:.2f}x)"
            )
    drop = config.get("lookalike.max_auc_drop")
    if previous and previous["quality"] and build.quality:
        before, after = previous["quality"]["auc"], build.quality["auc"]
        if after < before - drop:
            return f"held-out AUC fell from {before:.3f} to {after:.3f} (more than {drop:.3f})"
    return None


def _apply(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    segment_id: int,
    seed_list: dict,
    build: Build,
    rules: dict,
    now: datetime,
) -> dict:
    """Make ``SELECTED`` the audience; runs in the caller's transaction."""
    started = time.perf_counter()
    before, added, removed = con.execute(
        f"""
        SELECT (SELECT count(*) FROM lookalike_members WHERE segment_id = $segment),
               (SELECT count(*) FROM {SELECTED} s WHERE NOT EXISTS (
                    SELECT 1 FROM lookalike_members m WHERE m.segment_id = $segment
                      AND m.id = s.id AND m.id_type = s.id_type)),
               (SELECT count(*) FROM lookalike_members m WHERE m.segment_id = $segment
                  AND NOT EXISTS (SELECT 1 FROM {SELECTED} s
                                  WHERE m.id = s.id AND m.id_type = s.id_type))
        """,
        {"segment": segment_id},
    ).fetchone()
    con.execute("DELETE FROM lookalike_members WHERE segment_id = ?", [segment_id])
    con.execute(
        f"INSERT INTO lookalike_members SELECT ?, id, id_type, score FROM {SELECTED}", [segment_id]
    )
    _drop_barred(con, segment_id, seed_list["seed_list_id"], rules, now)
    members = apply_members(con, segment_id, SELECTED, now, config.get("lookalike.ttl_days"))
    build.seconds["store"] = time.perf_counter() - started
    outcome = {
        "status": "applied",
        "reason": None,
        "size": build.size,
        "added": added,
        "removed": removed,
        "churn": round((added + removed) / before, 4) if before else None,
        "segment_size": members["size"],
    }
    return _record(con, segment_id, seed_list, build, now, outcome)


def _keep(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    segment_id: int,
    seed_list: dict,
    build: Build | None,
    reason: str,
    rules: dict,
    now: datetime,
) -> dict:
    """Renew the previous audience (minus devices no longer eligible) and say why."""
    con.execute(
        """
        DELETE FROM lookalike_members m WHERE segment_id = ? AND NOT EXISTS (
            SELECT 1 FROM profiles p WHERE p.id = m.id AND p.id_type = m.id_type)
        """,
        [segment_id],
    )
    _drop_barred(con, segment_id, seed_list["seed_list_id"], rules, now)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {SELECTED} AS
        SELECT id, id_type, score FROM lookalike_members WHERE segment_id = ?
        """,
        [segment_id],
    )
    members = apply_members(con, segment_id, SELECTED, now, config.get("lookalike.ttl_days"))
    size = con.execute(f"SELECT count(*) FROM {SELECTED}").fetchone()[0]
    outcome = {
        "status": "kept",
        "reason": reason,
        "size": size,
        "added": 0,
        "removed": 0,
        "churn": 0.0,
        "segment_size": members["size"],
    }
    return _record(con, segment_id, seed_list, build, now, outcome)


def _drop_barred(
    con: duckdb.DuckDBPyConnection, segment_id: int, seed_list_id: int, rules: dict, now: datetime
) -> None:
    """Seed devices (unless included) and members of the exclusion segment leave the
    audience at once, even members still inside their TTL (a device that became a
    seed, or a customer, since the last run)."""
    barred = []
    if not rules["include_seeds"]:
        barred.append(
            (
                "EXISTS (SELECT 1 FROM seed_matches s WHERE s.seed_list_id = $other "
                "AND s.id = m.id AND s.id_type = m.id_type)",
                seed_list_id,
                "a seed device of its own lookalike",
            )
        )
    if rules["exclude"]:
        barred.append(
            (
                "EXISTS (SELECT 1 FROM segment_members x WHERE x.segment_id = $other "
                "AND x.id = m.id AND x.id_type = m.id_type)",
                rules["exclude"]["segment_id"],
                f"a member of the exclusion segment {rules['exclude']['name']}",
            )
        )
    for condition, other, reason in barred:
        params = {"segment": segment_id, "other": other}
        where = f"segment_id = $segment AND {condition}"
        con.execute(f"DELETE FROM lookalike_members m WHERE {where}", params)
        con.execute(
            f"""
            INSERT INTO segment_exits
            SELECT segment_id, id, id_type, $reason, $now FROM segment_members m WHERE {where}
            """,
            {**params, "reason": reason, "now": now},
        )
        con.execute(f"DELETE FROM segment_members m WHERE {where}", params)


def _record(
    con: duckdb.DuckDBPyConnection,
    segment_id: int,
    seed_list: dict,
    build: Build | None,
    now: datetime,
    outcome: dict,
) -> dict:
    """One ``lookalike_runs`` row: what was built (if anything) and what was done."""
    built = [None] * 6
    if build:
        seconds = {k: round(v, 3) for k, v in build.seconds.items()}
        built = [build.eligible, build.seed_devices, build.target, json.dumps(build.quality),
                 json.dumps(build.model), json.dumps(seconds)]  # fmt: skip
    eligible, seed_devices, target, quality, model, seconds = built
    run_id = con.execute(
        """
        INSERT INTO lookalike_runs VALUES (
            nextval('lookalike_run_id_seq'), $segment, $seed_list, $now, $status, $reason,
            $eligible, $seed_devices, $target, $size, $added, $removed, $churn,
            $quality, $model, $seconds)
        RETURNING run_id
        """,
        {
            "segment": segment_id,
            "seed_list": seed_list["seed_list_id"],
            "now": now,
            "eligible": eligible,
            "seed_devices": seed_devices,
            "target": target,
            "quality": quality,
            "model": model,
            "seconds": seconds,
            **{k: outcome[k] for k in ("status", "reason", "size", "added", "removed", "churn")},
        },
    ).fetchone()[0]
    return {"run_id": run_id, **outcome}


# -- reading -------------------------------------------------------------------------

_RUN_COLUMNS = (
    "run_id, ran_at, status, reason, eligible, seed_devices, target_size, size, added, "
    "removed, churn, quality, model, seconds"
)


def _run_dict(row: tuple) -> dict:
    data = dict(zip([c.strip() for c in _RUN_COLUMNS.split(",")], row, strict=True))
    for key in ("quality", "model", "seconds"):
        data[key] = json.loads(data[key]) if data[key] else None
    data["ran_at"] = iso(data["ran_at"])
    return data


def _last_applied(con: duckdb.DuckDBPyConnection, segment_id: int) -> dict | None:
    row = con.execute(
        f"SELECT {_RUN_COLUMNS} FROM lookalike_runs WHERE segment_id = ? AND status = 'applied' "
        "ORDER BY run_id DESC LIMIT 1",
        [segment_id],
    ).fetchone()
    return _run_dict(row) if row else None


def _require(store: Store, name: str, agency: str) -> dict:
    """``agency``'s own lookalike ``name``; another agency's is 'not found' too."""
    agency = check_name(agency, "agency")
    segment = get_segment(store, _segment_name(agency, name), "lookalike", viewer=agency)
    if segment is None or segment["agency"] != agency:
        raise DmpError(f"no lookalike named {name!r} for agency {agency!r}")
    return segment


def _segment_name(agency: str, name: str) -> str:
    return f"{agency}/{name}"


def _category_names(con: duckdb.DuckDBPyConnection, ids: list[str]) -> list[dict]:
    names = dict(
        con.execute(
            "SELECT id, path FROM taxonomy WHERE taxonomy = 'content' AND list_contains(?, id)",
            [ids],
        ).fetchall()
    )
    return [{"category_id": i, "name": names.get(i, i)} for i in ids]


def _report(name, agency, seed_list, spec, run, build) -> dict:
    return {
        "name": name,
        "agency": agency,
        "seed": seed_list["name"],
        "reach": spec,
        **run,
        "eligible": build.eligible if build else None,
        "seed_devices": build.seed_devices if build else None,
        "target_size": build.target if build else None,
        "quality": build.quality if build else None,
        "model": build.model if build else None,
        "seconds": {k: round(v, 3) for k, v in build.seconds.items()} if build else None,
    }


def _drop_temp(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DROP TABLE IF EXISTS {SELECTED}; DROP TABLE IF EXISTS {DEVICES}")
