"""Segment membership with a TTL: who is in, since when, until when, and daily sizes.

A device that matches now is (re)stamped ``expires_at = now + ttl``; one that
stops matching stays until that time runs out, so audiences pushed to
platforms do not flicker with every refresh. Leaving is recorded with a
reason for ``dmp explain``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb


def apply_members(
    con: duckdb.DuckDBPyConnection, segment_id: int, matched: str, now: datetime, ttl_days: int
) -> dict:
    """Merge the devices in table ``matched`` (id, id_type) into the segment; runs in the
    caller's transaction. Returns added, kept, left and the new size."""
    params = {"segment": segment_id, "now": now, "until": now + timedelta(days=ttl_days)}
    added, kept = con.execute(
        f"""
        SELECT count(*) FILTER (WHERE m.id IS NULL), count(*) FILTER (WHERE m.id IS NOT NULL)
        FROM (SELECT DISTINCT id, id_type FROM {matched}) x
        LEFT JOIN segment_members m
          ON m.segment_id = $segment AND m.id = x.id AND m.id_type = x.id_type
             AND m.expires_at > $now
        """,
        {"segment": segment_id, "now": now},
    ).fetchone()
    con.execute(
        """
        INSERT INTO segment_exits
        SELECT segment_id, id, id_type, 'stopped matching; membership TTL ran out', expires_at
        FROM segment_members WHERE segment_id = $segment AND expires_at <= $now
        """,
        {"segment": segment_id, "now": now},
    )
    left = con.execute(
        "DELETE FROM segment_members WHERE segment_id = $segment AND expires_at <= $now",
        {"segment": segment_id, "now": now},
    ).fetchone()[0]
    con.execute(
        f"""
        MERGE INTO segment_members m
        USING (SELECT DISTINCT id, id_type FROM {matched}) x
        ON m.segment_id = $segment AND m.id = x.id AND m.id_type = x.id_type
        WHEN MATCHED THEN UPDATE SET expires_at = $until
        WHEN NOT MATCHED THEN INSERT VALUES ($segment, x.id, x.id_type, $now, $until)
        """,
        params,
    )
    size = record_size(con, segment_id, now)
    return {"added": added, "kept": kept, "left": left, "size": size}


def current_size(con: duckdb.DuckDBPyConnection, segment_id: int, now: datetime) -> int:
    """Members whose membership has not run out at ``now``."""
    return con.execute(
        "SELECT count(*) FROM segment_members WHERE segment_id = ? AND expires_at > ?",
        [segment_id, now],
    ).fetchone()[0]


def record_size(con: duckdb.DuckDBPyConnection, segment_id: int, now: datetime) -> int:
    """Today's size, for the trend chart (the last refresh of a day wins)."""
    size = current_size(con, segment_id, now)
    con.execute(
        """
        INSERT INTO segment_sizes VALUES (?, ?, ?)
        ON CONFLICT (segment_id, day) DO UPDATE SET size = excluded.size
        """,
        [segment_id, now.date(), size],
    )
    return size
