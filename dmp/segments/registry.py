"""The ``segments`` table: create, find, list, change. Names are unique per kind."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb

from dmp.clock import iso, utcnow
from dmp.errors import DmpError
from dmp.store import Store

KINDS = ("rule", "cluster", "lookalike")
DEFAULT_TTL_DAYS = 30
_KEYS = ("segment_id", "name", "kind", "definition", "description", "agency", "ttl_days",
         "created_at", "updated_at")  # fmt: skip
_COLUMNS = ", ".join(_KEYS)


def _con(store_or_con: Store | duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    return store_or_con.con if isinstance(store_or_con, Store) else store_or_con


def create_segment(
    store_or_con: Store | duckdb.DuckDBPyConnection,
    name: str,
    kind: str,
    definition: dict,
    agency: str | None = None,
    ttl_days: int | None = None,
    description: str | None = None,
    now: datetime | None = None,
) -> int:
    """Store a new segment and return its ID; a taken name is a clear error."""
    if kind not in KINDS:
        raise DmpError(f"unknown segment kind {kind!r}; expected one of {', '.join(KINDS)}")
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise DmpError("a segment name must be 1 to 200 characters")
    con = _con(store_or_con)
    if get_segment(con, name, kind) is not None:
        raise DmpError(f"a {kind} segment named {name!r} already exists")
    now = now or utcnow()
    return con.execute(
        """
        INSERT INTO segments VALUES (
            nextval('segment_id_seq'), ?, ?, ?, ?, ?, ?, ?, ?) RETURNING segment_id
        """,
        [
            name,
            kind,
            json.dumps(definition),
            description,
            agency,
            DEFAULT_TTL_DAYS if ttl_days is None else ttl_days,
            now,
            now,
        ],
    ).fetchone()[0]


def update_definition(
    store_or_con: Store | duckdb.DuckDBPyConnection,
    segment_id: int,
    definition: dict,
    description: str | None = None,
    ttl_days: int | None = None,
    now: datetime | None = None,
) -> None:
    _con(store_or_con).execute(
        """
        UPDATE segments SET definition = ?, description = coalesce(?, description),
               ttl_days = coalesce(?, ttl_days), updated_at = ?
        WHERE segment_id = ?
        """,
        [json.dumps(definition), description, ttl_days, now or utcnow(), segment_id],
    )


def get_segment(
    store_or_con: Store | duckdb.DuckDBPyConnection, name: str, kind: str | None = None
) -> dict | None:
    """The segment called ``name`` (of ``kind``, or of any kind if that is unambiguous)."""
    rows = (
        _con(store_or_con)
        .execute(
            f"SELECT {_COLUMNS} FROM segments WHERE name = ? AND (? IS NULL OR kind = ?)",
            [name, kind, kind],
        )
        .fetchall()
    )
    if len(rows) > 1:
        kinds = ", ".join(r[2] for r in rows)
        raise DmpError(f"{name!r} names segments of several kinds ({kinds}); say which kind")
    return _as_dict(rows[0]) if rows else None


def require_segment(store: Store, name: str, kind: str | None = None) -> dict:
    segment = get_segment(store, name, kind)
    if segment is None:
        raise DmpError(f"no segment named {name!r}")
    return segment


def list_segments(store: Store, kind: str | None = None, now: datetime | None = None) -> list[dict]:
    """Every segment with its current size (unexpired members)."""
    rows = store.con.execute(
        f"""
        SELECT {", ".join("s." + c for c in _KEYS)},
               (SELECT count(*) FROM segment_members m
                WHERE m.segment_id = s.segment_id AND m.expires_at > ?) AS size
        FROM segments s WHERE ? IS NULL OR s.kind = ? ORDER BY s.kind, s.name
        """,
        [now or utcnow(), kind, kind],
    ).fetchall()
    return [{**_as_dict(row[:-1]), "size": row[-1]} for row in rows]


def delete_segment(store: Store, segment_id: int) -> None:
    with store.transaction() as con:
        for table in ("segment_members", "segment_exits", "segment_sizes", "segments"):
            con.execute(f"DELETE FROM {table} WHERE segment_id = ?", [segment_id])


def _as_dict(row: tuple) -> dict:
    data = dict(zip(_KEYS, row, strict=True))
    data["definition"] = json.loads(data["definition"]) if data["definition"] else None
    data["created_at"], data["updated_at"] = iso(data["created_at"]), iso(data["updated_at"])
    return data
