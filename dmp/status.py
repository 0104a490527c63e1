"""Counts for `dmp status` and the dashboard overview."""

from __future__ import annotations

from dmp.clock import iso
from dmp.store import Store


def status(store: Store) -> dict:
    """Events, devices by ID type, files and the last ingest, in one dict."""
    con = store.con
    events, first_event, last_event = con.execute(
        "SELECT count(*), min(ts), max(ts) FROM events"
    ).fetchone()
    by_type = dict(
        con.execute("SELECT id_type, count(*) FROM devices GROUP BY 1 ORDER BY 1").fetchall()
    )
    files = dict(
        con.execute("SELECT status, count(*) FROM ingested_files GROUP BY 1 ORDER BY 1").fetchall()
    )
    reasons = dict(
        con.execute("SELECT reason, count(*) FROM quarantine GROUP BY 1 ORDER BY 2 DESC").fetchall()
    )
    last = con.execute(
        """
        SELECT path, status, finished_at, loaded, quarantined, error
        FROM ingested_files ORDER BY finished_at DESC, file_id DESC LIMIT 1
        """
    ).fetchone()
    consent_strings, undecodable = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE NOT valid) FROM consent_decisions"
    ).fetchone()
    return {
        "database": str(store.path),
        "schema_version": store.schema_version(),
        "events": events,
        "first_event": iso(first_event),
        "last_event": iso(last_event),
        "devices": sum(by_type.values()),
        "devices_by_type": by_type,
        "id_links": con.execute("SELECT count(*) FROM id_links").fetchone()[0],
        "bots": con.execute("SELECT count(*) FROM devices WHERE bot").fetchone()[0],
        "optouts": con.execute("SELECT count(*) FROM optouts").fetchone()[0],
        "consent_strings": {"decided": consent_strings, "undecodable": undecodable},
        "quarantined": sum(reasons.values()),
        "quarantined_by_reason": reasons,
        "files": {"loaded": files.get("loaded", 0), "rejected": files.get("rejected", 0)},
        "last_ingest": None
        if last is None
        else {
            "file": last[0],
            "status": last[1],
            "finished_at": iso(last[2]),
            "loaded": last[3],
            "quarantined": last[4],
            "error": last[5],
        },
    }
