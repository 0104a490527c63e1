"""Read-only figures the dashboard shows that no library function answers yet:
events per day, size series for sparklines, the latest interest clusters.
Everything else comes straight from the library (status, describe, history...)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from dmp.clock import utcnow
from dmp.store import Store


def events_per_day(store: Store, days: int = 30, now: datetime | None = None) -> list[dict]:
    """Events per UTC day over the last ``days`` days (days without events are 0)."""
    now = now or utcnow()
    start = (now - timedelta(days=days - 1)).date()
    rows = store.con.execute(
        """
        SELECT d::DATE AS day, coalesce(e.n, 0)
        FROM range(?::DATE, ?::DATE + INTERVAL 1 DAY, INTERVAL 1 DAY) r(d)
        LEFT JOIN (SELECT ts::DATE AS day, count(*) AS n FROM events
                   WHERE ts >= ?::DATE GROUP BY 1) e ON e.day = d::DATE
        ORDER BY 1
        """,
        [start, now.date(), start],
    ).fetchall()
    return [{"day": day.isoformat(), "events": n} for day, n in rows]


def size_series(store: Store, days: int = 30, now: datetime | None = None) -> dict[int, list]:
    """Segment ID -> its recorded daily sizes over the last ``days`` days, oldest first."""
    now = now or utcnow()
    rows = store.con.execute(
        """
        SELECT segment_id, list(size ORDER BY day) FROM segment_sizes
        WHERE day >= ? GROUP BY 1
        """,
        [(now - timedelta(days=days)).date()],
    ).fetchall()
    return dict(rows)


def latest_clusters(store: Store) -> list[dict]:
    """The clusters of the last clustering run, largest first."""
    rows = store.con.execute(
        """
        SELECT c.cluster_key, c.label, c.size, c.top_categories, s.name, c.created_at
        FROM clusters c LEFT JOIN segments s USING (segment_id)
        WHERE c.run_id = (SELECT max(run_id) FROM clusters)
        ORDER BY c.size DESC
        """
    ).fetchall()
    return [
        {
            "key": key,
            "label": label,
            "size": size,
            "top_categories": json.loads(top),
            "segment": segment,
            "created_at": created.isoformat(),
        }
        for key, label, size, top, segment, created in rows
    ]


def linked_destinations(store: Store, segment_id: int) -> list[dict]:
    rows = store.con.execute(
        """
        SELECT d.name, d.kind, l.external_id, l.active,
               (SELECT count(*) FROM destination_state t
                WHERE t.destination_id = l.destination_id AND t.segment_id = l.segment_id)
        FROM destination_segments l JOIN destinations d USING (destination_id)
        WHERE l.segment_id = ? ORDER BY d.name
        """,
        [segment_id],
    ).fetchall()
    keys = ("destination", "kind", "external_id", "active", "held")
    return [dict(zip(keys, row, strict=True)) for row in rows]
