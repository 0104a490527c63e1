"""What a buyer asks about a segment: size over time, what its members like, overlaps.

Overlaps are read only among the segments the viewer may see (``registry.visible_sql``):
an agency's segment page never names, or counts against, anyone else's segment.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from dmp.clock import utcnow
from dmp.segments.membership import current_size
from dmp.segments.registry import require_segment, visible_sql
from dmp.store import Store

# Members of a large segment whose profiles are read for its top categories
# (an estimate, scaled to the segment's size): keeps the segment page fast.
TOP_SAMPLE = 20_000


def describe(
    store: Store,
    name: str,
    now: datetime | None = None,
    pairs: list[dict] | None = None,
    *,
    kind: str | None = None,
    viewer: str | None = None,
) -> dict:
    """Definition, size trend, top categories and overlaps of one segment, as ``viewer``
    (an agency, or None for staff) may see them.

    ``pairs`` is ``overlap()`` of all segments ``viewer`` sees, when the caller has it
    already (the segment page draws them all as a heat map).
    """
    now = now or utcnow()
    segment = require_segment(store, name, kind, viewer)
    con = store.con
    sid = segment["segment_id"]
    trend = con.execute(
        "SELECT day, size FROM segment_sizes WHERE segment_id = ? AND day >= ? ORDER BY day",
        [sid, (now - timedelta(days=90)).date()],
    ).fetchall()
    size = current_size(con, sid, now)
    top = con.execute(
        f"""
        WITH sampled AS (
            SELECT id, id_type FROM segment_members WHERE segment_id = $sid AND expires_at > $now
            USING SAMPLE reservoir({TOP_SAMPLE} ROWS) REPEATABLE (42))
        SELECT p.category_id, t.name, count(*) AS members
        FROM sampled m
        JOIN profiles p ON p.id = m.id AND p.id_type = m.id_type
        LEFT JOIN taxonomy t ON t.taxonomy = 'content' AND t.id = p.category_id
        GROUP BY ALL ORDER BY members DESC, p.category_id LIMIT 10
        """,
        {"sid": sid, "now": now},
    ).fetchall()
    scale = size / min(size, TOP_SAMPLE) if size else 1
    names = dict(con.execute("SELECT segment_id, name FROM segments").fetchall())
    overlaps = [
        {"segment": names[o["b"] if o["a"] == sid else o["a"]], **o}
        for o in (overlap(con, now, sid, viewer) if pairs is None else pairs)
        if sid in (o["a"], o["b"])
    ]
    return {
        **segment,
        "size": size,
        "trend": [{"day": day.isoformat(), "size": size} for day, size in trend],
        "top_categories": [{"id": c, "name": n, "members": round(m * scale)} for c, n, m in top],
        "overlap": overlaps,
    }


def overlap(
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    segment_id: int | None = None,
    viewer: str | None = None,
) -> list[dict]:
    """Shared members of every pair of segments ``viewer`` may see (or of ``segment_id``
    with each other one), with each side's share."""
    pairs = (
        "a.segment_id < b.segment_id"
        if segment_id is None
        else ("a.segment_id = $segment AND b.segment_id <> $segment")
    )
    rows = con.execute(
        f"""
        WITH live AS (
            SELECT m.segment_id, m.id, m.id_type FROM segment_members m
            JOIN segments s USING (segment_id)
            WHERE m.expires_at > $now AND {visible_sql()}),
        sizes AS (SELECT segment_id, count(*) AS size FROM live GROUP BY 1)
        SELECT a.segment_id, b.segment_id, count(*) AS shared, sa.size, sb.size
        FROM live a JOIN live b ON a.id = b.id AND a.id_type = b.id_type AND {pairs}
        JOIN sizes sa ON sa.segment_id = a.segment_id
        JOIN sizes sb ON sb.segment_id = b.segment_id
        GROUP BY ALL ORDER BY 1, 2
        """,
        {"now": now, "viewer": viewer} | ({} if segment_id is None else {"segment": segment_id}),
    ).fetchall()
    return [
        {
            "a": a,
            "b": b,
            "shared": shared,
            "share_of_a": round(shared / size_a, 4),
            "share_of_b": round(shared / size_b, 4),
        }
        for a, b, shared, size_a, size_b in rows
    ]
