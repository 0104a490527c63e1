"""The ``segments`` table: create, find, list, change, and who may see each segment.

Names are unique per kind. Every reader takes a ``viewer``: ``None`` for staff
(admins, buyers, the CLI), who see every segment, or an agency's name, which
sees only the segments it owns (its lookalikes) and those an admin granted it
(``grant``). ``visible_sql`` is that rule, the one filter every lookup, listing
and overlap an agency can reach goes through; another agency's segment is
answered exactly like a missing one.
"""

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


def visible_sql(alias: str = "s") -> str:
    """The condition "segment ``alias`` is visible to ``$viewer``" (NULL: staff, who see
    all): its owner is the viewing agency, or it was granted to that agency."""
    return f"""(
        $viewer IS NULL OR {alias}.agency = $viewer OR EXISTS (
            SELECT 1 FROM segment_grants g
            WHERE g.segment_id = {alias}.segment_id AND g.agency = $viewer))"""


def get_segment(
    store_or_con: Store | duckdb.DuckDBPyConnection,
    name: str,
    kind: str | None = None,
    viewer: str | None = None,
) -> dict | None:
    """The segment called ``name`` (of ``kind``, or of any kind if that is unambiguous)
    among those ``viewer`` may see."""
    rows = (
        _con(store_or_con)
        .execute(
            f"""
            SELECT {_COLUMNS} FROM segments s
            WHERE name = $name AND ($kind IS NULL OR kind = $kind) AND {visible_sql()}
            ORDER BY kind
            """,
            {"name": name, "kind": kind, "viewer": viewer},
        )
        .fetchall()
    )
    if len(rows) > 1:
        kinds = ", ".join(r[2] for r in rows)
        raise DmpError(f"{name!r} names segments of several kinds ({kinds}); say which kind")
    return _as_dict(rows[0]) if rows else None


def require_segment(
    store: Store, name: str, kind: str | None = None, viewer: str | None = None
) -> dict:
    segment = get_segment(store, name, kind, viewer)
    if segment is None:
        raise DmpError(f"no segment named {name!r}")
    return segment


def list_segments(
    store: Store, kind: str | None = None, now: datetime | None = None, viewer: str | None = None
) -> list[dict]:
    """Every segment ``viewer`` may see, with its current size (unexpired members)."""
    rows = store.con.execute(
        f"""
        SELECT {", ".join("s." + c for c in _KEYS)},
               (SELECT count(*) FROM segment_members m
                WHERE m.segment_id = s.segment_id AND m.expires_at > $now) AS size
        FROM segments s WHERE ($kind IS NULL OR s.kind = $kind) AND {visible_sql()}
        ORDER BY s.kind, s.name
        """,
        {"now": now or utcnow(), "kind": kind, "viewer": viewer},
    ).fetchall()
    return [{**_as_dict(row[:-1]), "size": row[-1]} for row in rows]


def delete_segment(store: Store, segment_id: int) -> None:
    with store.transaction() as con:
        for table in (
            "segment_members", "segment_exits", "segment_sizes", "segment_grants", "segments",
        ):  # fmt: skip
            con.execute(f"DELETE FROM {table} WHERE segment_id = ?", [segment_id])


def grant(
    store: Store, name: str, agency: str, kind: str | None = None, now: datetime | None = None
) -> dict:
    """Let ``agency`` see segment ``name`` (read only: listings, details, overlaps)."""
    segment = require_segment(store, name, kind)
    agency = _known_agency(store, agency)
    store.con.execute(
        "INSERT INTO segment_grants VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [segment["segment_id"], agency, now or utcnow()],
    )
    return {"segment": segment["name"], "kind": segment["kind"], "agency": agency}


def revoke(store: Store, name: str, agency: str, kind: str | None = None) -> dict:
    """Take a grant back; the agency no longer sees the segment anywhere."""
    segment = require_segment(store, name, kind)
    removed = store.con.execute(
        "DELETE FROM segment_grants WHERE segment_id = ? AND agency = ?",
        [segment["segment_id"], agency],
    ).fetchone()[0]
    if not removed:
        raise DmpError(f"no grant of segment {name!r} to agency {agency!r}")
    return {"segment": segment["name"], "kind": segment["kind"], "agency": agency}


def grants(store: Store) -> list[dict]:
    """Every grant, by segment and agency (for staff: an agency never sees this list)."""
    rows = store.con.execute(
        """
        SELECT s.name, s.kind, g.agency, g.granted_at
        FROM segment_grants g JOIN segments s USING (segment_id)
        ORDER BY s.name, s.kind, g.agency
        """
    ).fetchall()
    keys = ("segment", "kind", "agency", "granted_at")
    return [dict(zip(keys, (*row[:3], iso(row[3])), strict=True)) for row in rows]


def _known_agency(store: Store, agency: str) -> str:
    """An agency some agency user belongs to: a typo must not grant to nobody (or to
    whoever later takes that name)."""
    agency = (agency or "").strip()
    known = store.con.execute(
        "SELECT count(*) FROM users WHERE role = 'agency' AND agency = ?", [agency]
    ).fetchone()[0]
    if not known:
        raise DmpError(f"no agency named {agency!r} (no agency user belongs to it)")
    return agency


def _as_dict(row: tuple) -> dict:
    data = dict(zip(_KEYS, row, strict=True))
    data["definition"] = json.loads(data["definition"]) if data["definition"] else None
    data["created_at"], data["updated_at"] = iso(data["created_at"]), iso(data["updated_at"])
    return data
