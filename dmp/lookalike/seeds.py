"""Seed lists: an agency's uploaded IDs, and the devices they resolve to.

Every function takes the acting agency and works only on that agency's lists:
another agency's list is answered exactly like a missing one. An upload is
parsed (``seedfile``), then stored and matched in one transaction, so a
failure leaves nothing behind; opted-out IDs are dropped on arrival.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import duckdb

from dmp.clock import iso, utcnow
from dmp.config import Config
from dmp.errors import DmpError
from dmp.lookalike.seedfile import read_seed_file
from dmp.store import Store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
_COLUMNS = (
    "seed_list_id, agency, name, id_type, rows, valid, invalid, invalid_reasons, duplicates, "
    "opted_out, ids, matched, uploaded_at, matched_at"
)


def check_name(value: str, what: str) -> str:
    """Agency, seed list and lookalike names: letters, digits, space . _ -; up to 100."""
    value = (value or "").strip()
    if not _NAME.match(value):
        raise DmpError(
            f"{what} {value!r}: use 1-100 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def upload_seed_list(
    store: Store,
    config: Config,
    path: Path,
    name: str,
    agency: str,
    id_type: str,
    replace: bool = False,
    now: datetime | None = None,
) -> dict:
    """Parse, store and match a seed file for ``agency``; returns the upload report.

    ``replace`` swaps the contents of an existing list of the same name (its
    lookalikes use the new seeds at their next refresh).
    """
    now = now or utcnow()
    agency, name = check_name(agency, "agency"), check_name(name, "seed list name")
    con = store.con
    existing = _find(con, agency, name)
    if existing and not replace:
        raise DmpError(
            f"seed list {name!r} already exists for agency {agency!r}; "
            "upload with --replace to replace its contents"
        )
    parsed = read_seed_file(con, path, id_type, config.get("ingest.max_id_length"))
    try:
        with store.transaction():
            opted_out = con.execute(
                f"""
                DELETE FROM {parsed.table} s WHERE EXISTS (
                    SELECT 1 FROM optouts o WHERE o.id = s.id AND o.id_type = s.id_type)
                """
            ).fetchone()[0]
            values = [
                id_type, parsed.rows, parsed.valid, parsed.invalid,
                json.dumps(parsed.invalid_reasons), parsed.duplicates, opted_out,
                parsed.ids - opted_out, now,
            ]  # fmt: skip
            if existing:
                seed_list_id = existing["seed_list_id"]
                con.execute("DELETE FROM seed_ids WHERE seed_list_id = ?", [seed_list_id])
                con.execute(
                    """
                    UPDATE seed_lists SET id_type = ?, rows = ?, valid = ?, invalid = ?,
                        invalid_reasons = ?, duplicates = ?, opted_out = ?, ids = ?,
                        uploaded_at = ?
                    WHERE seed_list_id = ?
                    """,
                    [*values, seed_list_id],
                )
            else:
                seed_list_id = con.execute(
                    """
                    INSERT INTO seed_lists VALUES (nextval('seed_list_id_seq'), ?, ?,
                        ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)
                    RETURNING seed_list_id
                    """,
                    [agency, name, *values, now],
                ).fetchone()[0]
            con.execute(
                f"INSERT INTO seed_ids (seed_list_id, id, id_type, value) "
                f"SELECT ?, id, id_type, value FROM {parsed.table}",
                [seed_list_id],
            )
            matched = match_seeds(con, seed_list_id, now)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {parsed.table}")
    ids = parsed.ids - opted_out
    return {
        "seed_list_id": seed_list_id,
        "name": name,
        "agency": agency,
        "id_type": id_type,
        "replaced": bool(existing),
        "rows": parsed.rows,
        "valid": parsed.valid,
        "invalid": parsed.invalid,
        "invalid_reasons": parsed.invalid_reasons,
        "invalid_lines": parsed.invalid_lines,
        "invalid_lines_omitted": parsed.invalid - len(parsed.invalid_lines),
        "value_column": parsed.value_column,
        "duplicates": parsed.duplicates,
        "opted_out": opted_out,
        "ids": ids,
        **matched,
        "match_rate": round(matched["matched_ids"] / ids, 4) if ids else 0.0,
    }


def match_seeds(con: duckdb.DuckDBPyConnection, seed_list_id: int, now: datetime) -> dict:
    """Resolve a list's seed IDs to current devices, directly or through ID links and
    the ID graph, into ``seed_matches``; runs in the caller's transaction."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE seed_reach AS
        WITH s AS (SELECT id, id_type, value FROM seed_ids WHERE seed_list_id = $list),
        reach AS (
            SELECT id, id_type, id AS seed, id_type AS seed_type, 'direct' AS via, value FROM s
            UNION ALL
            SELECT l.linked_id, l.linked_type, s.id, s.id_type, 'link', s.value
            FROM s JOIN id_links l ON l.id = s.id AND l.id_type = s.id_type
            UNION ALL
            SELECT l.id, l.id_type, s.id, s.id_type, 'link', s.value
            FROM s JOIN id_links l ON l.linked_id = s.id AND l.linked_type = s.id_type
            UNION ALL
            SELECT m.id, m.id_type, s.id, s.id_type, 'link', s.value FROM s
            JOIN id_groups g ON g.id = s.id AND g.id_type = s.id_type
            JOIN id_groups m ON m.group_id = g.group_id
        )
        SELECT r.* FROM reach r
        WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = r.id AND d.id_type = r.id_type)
        """,
        {"list": seed_list_id},
    )
    con.execute("DELETE FROM seed_matches WHERE seed_list_id = ?", [seed_list_id])
    devices = con.execute(
        """
        INSERT INTO seed_matches (seed_list_id, id, id_type, via, seed_key, value)
        SELECT $list, r.id, r.id_type, min(r.via),
               -- One person's IDs (a component of the ID graph) share a key, so a
               -- held-out split never puts a person on both sides. hash(NULL) is a
               -- constant, not NULL: a device outside the graph must be keyed by
               -- its seed explicitly, or every such device would share one key.
               CASE WHEN min(g.group_id) IS NULL THEN min(hash(r.seed_type || ':' || r.seed))
                    ELSE hash('group:' || min(g.group_id)) END,
               max(r.value)
        FROM seed_reach r LEFT JOIN id_groups g ON g.id = r.id AND g.id_type = r.id_type
        GROUP BY r.id, r.id_type
        """,
        {"list": seed_list_id},
    ).fetchone()[0]
    matched_ids = con.execute(
        "SELECT count(*) FROM (SELECT DISTINCT seed, seed_type FROM seed_reach)"
    ).fetchone()[0]
    modellable = con.execute(
        """
        SELECT count(*) FROM seed_matches m WHERE seed_list_id = ? AND EXISTS (
            SELECT 1 FROM profiles p WHERE p.id = m.id AND p.id_type = m.id_type)
        """,
        [seed_list_id],
    ).fetchone()[0]
    con.execute("DROP TABLE seed_reach")
    con.execute(
        "UPDATE seed_lists SET matched = ?, matched_at = ? WHERE seed_list_id = ?",
        [devices, now, seed_list_id],
    )
    return {"matched_ids": matched_ids, "matched": devices, "matched_with_profile": modellable}


def get_seed_list(store_or_con: Store | duckdb.DuckDBPyConnection, name: str, agency: str) -> dict:
    """``agency``'s seed list ``name``; another agency's list is 'not found' too."""
    con = store_or_con.con if isinstance(store_or_con, Store) else store_or_con
    found = _find(con, check_name(agency, "agency"), name)
    if found is None:
        raise DmpError(f"no seed list named {name!r} for agency {agency!r}")
    return found


def list_seed_lists(store: Store, agency: str) -> list[dict]:
    """``agency``'s seed lists, newest upload first."""
    rows = store.con.execute(
        f"SELECT {_COLUMNS} FROM seed_lists WHERE agency = ? ORDER BY uploaded_at DESC, name",
        [check_name(agency, "agency")],
    ).fetchall()
    return [_as_dict(row) for row in rows]


def delete_seed_list(store: Store, name: str, agency: str) -> dict:
    """Remove a seed list and its IDs; refused while a lookalike still builds on it."""
    seed = get_seed_list(store, name, agency)
    users = [
        row[0]
        for row in store.con.execute(
            """
            SELECT s.name FROM segments s
            WHERE s.kind = 'lookalike' AND json_extract(s.definition, '$.seed_list_id')::INTEGER = ?
            ORDER BY s.name
            """,
            [seed["seed_list_id"]],
        ).fetchall()
    ]
    if users:
        raise DmpError(
            f"seed list {name!r} is used by lookalike(s) {', '.join(users)}; delete them first"
        )
    with store.transaction() as con:
        ids = con.execute(
            "DELETE FROM seed_ids WHERE seed_list_id = ?", [seed["seed_list_id"]]
        ).fetchone()[0]
        con.execute("DELETE FROM seed_matches WHERE seed_list_id = ?", [seed["seed_list_id"]])
        con.execute("DELETE FROM seed_lists WHERE seed_list_id = ?", [seed["seed_list_id"]])
    return {"name": seed["name"], "agency": seed["agency"], "ids_deleted": ids}


def _find(con: duckdb.DuckDBPyConnection, agency: str, name: str) -> dict | None:
    row = con.execute(
        f"SELECT {_COLUMNS} FROM seed_lists WHERE agency = ? AND name = ?", [agency, name]
    ).fetchone()
    return _as_dict(row) if row else None


def _as_dict(row: tuple) -> dict:
    data = dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True))
    data["invalid_reasons"] = json.loads(data["invalid_reasons"])
    data["uploaded_at"], data["matched_at"] = iso(data["uploaded_at"]), iso(data["matched_at"])
    return data
