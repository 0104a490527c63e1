"""Opt-outs and deletion requests: a person's choice wins everywhere, at once.

Both go through :func:`forget`, which removes an ID from every table that
holds data about a device and queues its removal for destinations, and redact
the ID where stored text quotes it; given the instance's :class:`Erasure`, they
first remove the lines that hold it from the raw files on disk. An opt-out then
keeps the bare ID (so ingest drops its future events): the opt-out list is the
one place that holds it. A deletion keeps nothing but an audit line with counts;
``identity_removals`` holds the ID until every destination confirmed its removal.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb

from dmp.clock import utcnow
from dmp.identity.erasure import Erasure, Scrubbed, needles, redact_quoted
from dmp.identity.ids import IdList, load_ids
from dmp.store import Store

# (table, id column, id-type column): every place a device's data lives.
# Stages that add per-device tables (profiles, memberships, seed matches) list
# them here, so expiry, opt-out and deletion reach them too.
# Not destination_state (activation): it records what each ad platform still holds,
# so the next sync can remove the ID there; sync drops the row once the platform
# confirms, and then prunes identity_removals.
PER_DEVICE_TABLES: list[tuple[str, str, str]] = [
    ("events", "id", "id_type"),
    ("devices", "id", "id_type"),
    ("id_links", "id", "id_type"),
    ("id_links", "linked_id", "linked_type"),
    ("id_groups", "id", "id_type"),
    ("partner_ids", "cookie_id", "'cookie'"),
    ("profiles", "id", "id_type"),
    ("activity", "id", "id_type"),
    ("segment_members", "id", "id_type"),
    ("segment_exits", "id", "id_type"),
    ("seed_ids", "id", "id_type"),
    ("seed_matches", "id", "id_type"),
    ("lookalike_members", "id", "id_type"),
    ("quarantine", "id", "id_type"),  # bad rows that carried a valid ID
]


def forget(
    con: duckdb.DuckDBPyConnection,
    keys: str,
    reason: str,
    now: datetime,
    keep_events: bool = False,
) -> dict[str, int]:
    """Delete every row about the (id, id_type) pairs in table ``keys``; rows per table.

    Runs inside the caller's transaction. Devices we had are queued in
    ``identity_removals`` so the next sync removes them from destinations.
    ``keep_events`` (expiry): raw events stay until retention.
    """
    con.execute(
        f"""
        INSERT INTO identity_removals
        SELECT d.id, d.id_type, $reason, $now FROM devices d
        WHERE EXISTS (SELECT 1 FROM {keys} k WHERE k.id = d.id AND k.id_type = d.id_type)
        """,
        {"reason": reason, "now": now},
    )
    deleted: dict[str, int] = {}
    for table, id_col, type_col in PER_DEVICE_TABLES:
        if keep_events and table == "events":
            continue
        count = con.execute(
            f"""
            DELETE FROM {table} t WHERE EXISTS (
                SELECT 1 FROM {keys} k WHERE k.id = t.{id_col} AND k.id_type = {type_col})
            """
        ).fetchone()[0]
        deleted[table] = deleted.get(table, 0) + count
    return deleted


def optout(
    store: Store,
    values: list[str] | None = None,
    path: Path | None = None,
    id_type: str | None = None,
    source: str = "cli",
    now: datetime | None = None,
    erasure: Erasure | None = None,
) -> dict:
    """Record opt-outs and drop everything already held about those IDs (with
    ``erasure``, in the instance's raw files too)."""
    now = now or utcnow()
    con = store.con
    ids = load_ids(con, values, path, id_type)
    files = _scrub_files(con, ids.table, erasure)
    with store.transaction():
        new = con.execute(
            f"""
            INSERT INTO optouts
            SELECT g.id, g.id_type, $source, $now FROM {ids.table} g
            WHERE NOT EXISTS (SELECT 1 FROM optouts o WHERE o.id = g.id AND o.id_type = g.id_type)
            """,
            {"source": source, "now": now},
        ).fetchone()[0]
        deleted = forget(con, ids.table, "optout", now)
        redact_quoted(con, needles(con, ids.table))
    return {**_summary(ids), "new_optouts": new, "rows_deleted": deleted, "files": files.to_dict()}


def delete(
    store: Store,
    values: list[str] | None = None,
    path: Path | None = None,
    id_type: str | None = None,
    requested_by: str = "cli",
    with_linked: bool = False,
    now: datetime | None = None,
    erasure: Erasure | None = None,
) -> dict:
    """A GDPR/CCPA deletion request: remove every row about the IDs (with ``erasure``,
    every line of the instance's raw files that holds one) and audit it.

    ``with_linked`` extends the request to every ID of the same group in the
    ID graph (a request made by email reaches the person's devices). Files go
    first: an ingest running meanwhile can then only load what no longer holds
    the IDs, or what ``forget`` removes after it.
    """
    now = now or utcnow()
    con = store.con
    ids = load_ids(con, values, path, id_type)
    if with_linked:
        _add_linked(con, ids.table)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE found_ids AS
        SELECT id, id_type FROM {ids.table} g WHERE
            EXISTS (SELECT 1 FROM devices d WHERE d.id = g.id AND d.id_type = g.id_type)
            OR EXISTS (SELECT 1 FROM id_links l
                       WHERE l.linked_id = g.id AND l.linked_type = g.id_type)
            OR EXISTS (SELECT 1 FROM events e WHERE e.id = g.id AND e.id_type = g.id_type)
            OR EXISTS (SELECT 1 FROM quarantine q WHERE q.id = g.id AND q.id_type = g.id_type)
        """
    )
    files = _scrub_files(con, ids.table, erasure)
    if files.found:
        con.executemany("INSERT INTO found_ids VALUES (?, ?)", [list(k) for k in files.found])
    found = con.execute("SELECT count(*) FROM (SELECT DISTINCT * FROM found_ids)").fetchone()[0]
    con.execute("DROP TABLE found_ids")
    with store.transaction():
        deleted = forget(con, ids.table, "deleted", now)
        redact_quoted(con, needles(con, ids.table))
        con.execute(
            """
            INSERT INTO deletion_audit
            VALUES (nextval('deletion_id_seq'), $by, $now, $given, $found, $deleted)
            """,
            {
                "by": requested_by,
                "now": now,
                "given": ids.valid,
                "found": found,
                "deleted": json.dumps(deleted),
            },
        )
    summary = {
        **_summary(ids),
        "found": found,
        "rows_deleted": deleted,
        "files": files.to_dict(),
    }
    if found < ids.valid:
        summary["unknown"] = ids.valid - found
    return summary


def _scrub_files(con: duckdb.DuckDBPyConnection, keys: str, erasure: Erasure | None) -> Scrubbed:
    return erasure.scrub(con, keys) if erasure is not None else Scrubbed()


def _add_linked(con: duckdb.DuckDBPyConnection, table: str) -> None:
    con.execute(
        f"""
        INSERT INTO {table}
        SELECT DISTINCT NULL::BIGINT, m.id, m.id_type FROM id_groups g
        JOIN {table} t ON t.id = g.id AND t.id_type = g.id_type
        JOIN id_groups m ON m.group_id = g.group_id
        WHERE NOT EXISTS (SELECT 1 FROM {table} x WHERE x.id = m.id AND x.id_type = m.id_type)
        """
    )


def _summary(ids: IdList) -> dict:
    return {"given": ids.given, "valid": ids.valid, "invalid": ids.invalid}
