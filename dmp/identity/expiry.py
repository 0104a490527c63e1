"""ID expiry and event retention: stale IDs go, old events go.

An ID expires when its last event is at least its type's TTL old
(``last_seen <= now - ttl``). Expired IDs leave every per-device table
(``privacy.forget``) and are queued for removal at destinations; their events
stay until event retention removes them, like everyone else's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dmp.clock import utcnow
from dmp.config import Config
from dmp.identity.privacy import forget
from dmp.store import Store

TTL_KEYS = {"cookie": "identity.cookie_ttl_days", "maid": "identity.maid_ttl_days"}


def cutoffs(config: Config, now: datetime) -> dict[str, datetime]:
    """The last_seen at or before which each ID type has expired."""
    return {kind: now - timedelta(days=config.get(key)) for kind, key in TTL_KEYS.items()}


def expire(
    store: Store, config: Config, now: datetime | None = None, dry_run: bool = False
) -> dict:
    """Remove expired IDs and events past retention; with ``dry_run`` only count them."""
    now = now or utcnow()
    con = store.con
    limits = cutoffs(config, now)
    keep_after = now - timedelta(days=config.get("identity.event_retention_days"))
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE expired_ids AS
        SELECT id, id_type FROM devices
        WHERE (id_type = 'cookie' AND last_seen <= $cookie)
           OR (id_type = 'maid' AND last_seen <= $maid)
        """,
        limits,
    )
    by_type = dict(
        con.execute("SELECT id_type, count(*) FROM expired_ids GROUP BY 1 ORDER BY 1").fetchall()
    )
    old_events = con.execute(
        "SELECT count(*) FROM events WHERE ts < $keep_after", {"keep_after": keep_after}
    ).fetchone()[0]
    # Bad rows are raw events too: kept no longer than retention after they arrived.
    old_quarantined = con.execute(
        "SELECT count(*) FROM quarantine WHERE quarantined_at < $keep_after",
        {"keep_after": keep_after},
    ).fetchone()[0]
    result = {
        "dry_run": dry_run,
        "expired": sum(by_type.values()),
        "expired_by_type": by_type,
        "events_past_retention": old_events,
        "quarantined_past_retention": old_quarantined,
        "cutoffs": {k: v.isoformat(timespec="seconds") for k, v in limits.items()},
    }
    if not dry_run:
        with store.transaction():
            deleted = forget(con, "expired_ids", "expired", now, keep_events=True)
            con.execute("DELETE FROM events WHERE ts < $keep_after", {"keep_after": keep_after})
            con.execute(
                "DELETE FROM quarantine WHERE quarantined_at < $keep_after",
                {"keep_after": keep_after},
            )
        result["rows_deleted"] = {**deleted, "events": old_events, "quarantine": old_quarantined}
    con.execute("DROP TABLE expired_ids")
    return result
