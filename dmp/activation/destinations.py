"""Stored destinations and the segments linked to them.

A destination is a connector kind plus options checked by that connector's own
Options class when it is added (and again whenever it is loaded). Secrets are
never options: a credential is named by its environment variable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from dmp.activation.base import Connector, parse_options
from dmp.activation.connectors import CONNECTORS
from dmp.clock import iso, utcnow
from dmp.errors import DmpError
from dmp.store import Store

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Destination:
    destination_id: int
    name: str
    kind: str
    options: dict[str, Any]  # as given (defaults are the connector's)

    def connector(self, **kwargs: Any) -> Connector:
        """A connector for this destination; ``kwargs`` inject session, sleep, clocks..."""
        cls = CONNECTORS[self.kind]
        return cls(self.name, parse_options(cls.Options, self.kind, self.options), **kwargs)


def add_destination(
    store: Store, name: str, kind: str, options: Mapping[str, str], now: datetime | None = None
) -> dict:
    """Store a new destination after checking its options against its connector."""
    if not _NAME.match(name):
        raise DmpError(f"destination name {name!r}: use lower-case letters, digits, - and _")
    if kind not in CONNECTORS:
        raise DmpError(f"unknown kind {kind!r}; known: {', '.join(CONNECTORS)}")
    cls = CONNECTORS[kind]
    parsed = parse_options(cls.Options, kind, options)
    stored = {key: getattr(parsed, key) for key in options}
    con = store.con
    if con.execute("SELECT 1 FROM destinations WHERE name = ?", [name]).fetchone():
        raise DmpError(f"destination {name} already exists")
    con.execute(
        "INSERT INTO destinations VALUES (nextval('destination_id_seq'), ?, ?, ?, ?)",
        [name, kind, json.dumps(stored), now or utcnow()],
    )
    return {"name": name, "kind": kind, "options": stored}


def get_destination(con: duckdb.DuckDBPyConnection, name: str) -> Destination:
    row = con.execute(
        "SELECT destination_id, name, kind, options FROM destinations WHERE name = ?", [name]
    ).fetchone()
    if row is None:
        raise DmpError(f"no destination named {name} (see `dmp destinations list`)")
    return Destination(row[0], row[1], row[2], json.loads(row[3]))


def all_destinations(con: duckdb.DuckDBPyConnection) -> list[Destination]:
    rows = con.execute(
        "SELECT destination_id, name, kind, options FROM destinations ORDER BY name"
    ).fetchall()
    return [Destination(r[0], r[1], r[2], json.loads(r[3])) for r in rows]


def find_segment(con: duckdb.DuckDBPyConnection, ref: str) -> tuple[int, str]:
    """A segment by ID or by name; a name used by segments of several kinds is refused."""
    rows = con.execute(
        "SELECT segment_id, name, kind FROM segments WHERE name = ? OR segment_id::VARCHAR = ?",
        [ref, ref],
    ).fetchall()
    if not rows:
        raise DmpError(f"no segment {ref!r}")
    if len(rows) > 1:
        found = ", ".join(f"{sid} ({kind})" for sid, _, kind in rows)
        raise DmpError(f"segment name {ref!r} is ambiguous: give its ID, one of {found}")
    return rows[0][0], rows[0][1]


def link_segment(
    store: Store,
    destination: str,
    segment: str,
    external_id: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Send a segment to a destination from the next sync on, under ``external_id``
    (the platform's name or ID for it; default the segment's name)."""
    con = store.con
    dest = get_destination(con, destination)
    segment_id, segment_name = find_segment(con, segment)
    cls = CONNECTORS[dest.kind]
    external = external_id or segment_name
    if external_id is None and cls.needs_external_id:
        raise DmpError(f"{dest.kind} needs --external-id: the {cls.external_id_help}")
    cls.check_external_id(external)
    con.execute(
        """
        INSERT OR REPLACE INTO destination_segments VALUES ($dest, $segment, $external, true, $now)
        """,
        {
            "dest": dest.destination_id,
            "segment": segment_id,
            "external": external,
            "now": now or utcnow(),
        },
    )
    return {"destination": dest.name, "segment": segment_name, "external_id": external}


def unlink_segment(store: Store, destination: str, segment: str) -> dict:
    """Stop sending a segment. Members already pushed are removed by the next sync,
    which then forgets the link."""
    con = store.con
    dest = get_destination(con, destination)
    segment_id, segment_name = find_segment(con, segment)
    keys = {"dest": dest.destination_id, "segment": segment_id}
    pair = "destination_id = $dest AND segment_id = $segment"
    if not con.execute(f"SELECT 1 FROM destination_segments WHERE {pair}", keys).fetchone():
        raise DmpError(f"segment {segment_name} is not linked to {dest.name}")
    held = con.execute(f"SELECT count(*) FROM destination_state WHERE {pair}", keys).fetchone()[0]
    if held:
        con.execute(f"UPDATE destination_segments SET active = false WHERE {pair}", keys)
    else:
        con.execute(f"DELETE FROM destination_segments WHERE {pair}", keys)
    return {"destination": dest.name, "segment": segment_name, "pending_removals": held}


def list_destinations(store: Store) -> list[dict]:
    """Every destination with its options (secrets appear only as variable names) and
    its links: external ID, whether active, and how many IDs the platform holds."""
    con = store.con
    links = con.execute(
        """
        SELECT l.destination_id, coalesce(s.name, '#' || l.segment_id::VARCHAR), l.external_id,
               l.active, l.linked_at,
               (SELECT count(*) FROM destination_state t
                WHERE t.destination_id = l.destination_id AND t.segment_id = l.segment_id)
        FROM destination_segments l LEFT JOIN segments s USING (segment_id)
        ORDER BY 2
        """
    ).fetchall()
    result = []
    for dest in all_destinations(con):
        result.append(
            {
                "name": dest.name,
                "kind": dest.kind,
                "options": dest.options,
                "links": [
                    {
                        "segment": segment,
                        "external_id": external,
                        "active": active,
                        "linked_at": iso(linked_at),
                        "held": held,
                    }
                    for dest_id, segment, external, active, linked_at, held in links
                    if dest_id == dest.destination_id
                ],
            }
        )
    return result
