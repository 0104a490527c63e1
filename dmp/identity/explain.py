"""`dmp explain ID`: everything the platform knows and decided about one ID, on one screen."""

from __future__ import annotations

from datetime import datetime, timedelta

from dmp.clock import iso, utcnow
from dmp.config import Config
from dmp.identity.consent import usable_events_sql
from dmp.identity.expiry import TTL_KEYS
from dmp.identity.graph import linked_ids
from dmp.identity.ids import load_ids
from dmp.store import Store


def explain(
    store: Store,
    config: Config,
    value: str,
    id_type: str | None = None,
    now: datetime | None = None,
) -> dict:
    """ID type, lifetime, consent, opt-out and links of one ID, as a JSON-ready dict."""
    now = now or utcnow()
    con = store.con
    ids = load_ids(con, [value], id_type=id_type, table="explain_id")
    if not ids.valid:
        reason = ids.invalid[0]["reason"] if ids.invalid else "no ID given"
        return {"id": value, "valid": False, "reason": reason}
    id_, kind = con.execute("SELECT id, id_type FROM explain_id").fetchone()
    con.execute("DROP TABLE explain_id")
    params = {"id": id_, "type": kind}
    device = con.execute(
        "SELECT first_seen, last_seen, event_count, bot FROM devices "
        "WHERE id = $id AND id_type = $type",
        params,
    ).fetchone()
    optout = con.execute(
        "SELECT created_at, source FROM optouts WHERE id = $id AND id_type = $type", params
    ).fetchone()
    removal = con.execute(
        """
        SELECT reason, removed_at FROM identity_removals WHERE id = $id AND id_type = $type
        ORDER BY removed_at DESC LIMIT 1
        """,
        params,
    ).fetchone()
    result = {
        "id": id_,
        "id_type": kind,
        "valid": True,
        "known": device is not None,
        "opted_out": None if optout is None else {"at": iso(optout[0]), "source": optout[1]},
        "last_removal": None if removal is None else {"reason": removal[0], "at": iso(removal[1])},
        "linked_ids": [{"id_type": t, "id": i} for t, i in linked_ids(store, id_, kind)],
        "partner_ids": dict(
            con.execute(
                "SELECT partner, partner_id FROM partner_ids "
                "WHERE cookie_id = $id AND $type = 'cookie'",
                params,
            ).fetchall()
        ),
    }
    result["segments"] = _segments(store, params, now)
    if device is not None:
        first, last, count, bot = device
        ttl = config.get(TTL_KEYS[kind])
        result.update(
            first_seen=iso(first),
            last_seen=iso(last),
            events=count,
            bot=bot,
            expires_at=iso(last + timedelta(days=ttl)),
            consent=_consent(store, config, params),
        )
    return result


def _consent(store: Store, config: Config, params: dict) -> dict:
    """How the ID's kept events stand on consent, and the latest string's verdict."""
    con = store.con
    total, gpc, latest = con.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE gpc), arg_max(consent, ts)
        FROM events WHERE id = $id AND id_type = $type
        """,
        params,
    ).fetchone()
    usable = con.execute(
        f"SELECT count(*) FROM ({usable_events_sql(config)}) WHERE id = $id AND id_type = $type",
        params,
    ).fetchone()[0]
    verdict = con.execute(
        "SELECT valid, allowed FROM consent_decisions WHERE consent = ?", [latest]
    ).fetchone()
    return {
        "events_kept": total,
        "events_usable": usable,
        "events_with_gpc": gpc,
        "latest_string": _verdict(latest, verdict),
    }


def _segments(store: Store, params: dict, now: datetime) -> dict:
    """Segments the ID is in now, and the ones it left with why."""
    con = store.con
    current = con.execute(
        """
        SELECT s.name, s.kind, m.added_at, m.expires_at FROM segment_members m
        JOIN segments s USING (segment_id)
        WHERE m.id = $id AND m.id_type = $type AND m.expires_at > $now ORDER BY s.name
        """,
        {**params, "now": now},
    ).fetchall()
    left = con.execute(
        """
        SELECT s.name, x.reason, x.left_at FROM segment_exits x JOIN segments s USING (segment_id)
        WHERE x.id = $id AND x.id_type = $type ORDER BY x.left_at DESC LIMIT 20
        """,
        params,
    ).fetchall()
    return {
        "member_of": [
            {"segment": n, "kind": k, "since": iso(a), "until": iso(u)} for n, k, a, u in current
        ],
        "left": [{"segment": n, "reason": r, "at": iso(t)} for n, r, t in left],
    }


def _verdict(latest: str | None, verdict: tuple | None) -> str:
    if latest is None:
        return "none"
    if verdict is None:
        return "undecided (run the expire job)"
    valid, allowed = verdict
    return "undecodable" if not valid else ("grants" if allowed else "refuses")
