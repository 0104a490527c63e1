"""Consent: which events may feed profiles, segments and models.

Each distinct TCF string is decoded once, in Python (``dmp.tcf``), and the
decision kept in ``consent_decisions`` under the current policy (required
purposes and vendor). Every later stage reads :func:`usable_events_sql`, so
one definition of "consented" holds everywhere: a granting TCF string (or,
unless ``consent.require_tcf``, no string at all), no GPC signal, not a bot.
"""

from __future__ import annotations

from datetime import datetime

from dmp import tcf
from dmp.clock import utcnow
from dmp.config import Config
from dmp.store import Store


def policy(config: Config) -> str:
    """A label for the rules a decision was made under; a new label re-decides all strings."""
    purposes = ",".join(str(p) for p in sorted(config.get("consent.required_purposes")))
    return f"purposes={purposes};vendor={config.get('consent.vendor_id')}"


def refresh_decisions(store: Store, config: Config, now: datetime | None = None) -> dict:
    """Decide every consent string not yet decided under the current policy. Only files
    loaded since the last pass are read (``consent_scans``), so the nightly chain can
    call this from each job that needs it for the price of one."""
    now = now or utcnow()
    con = store.con
    label = policy(config)
    purposes = config.get("consent.required_purposes")
    vendor = config.get("consent.vendor_id") or None
    params = {"policy": label}
    # Read before the scan: a file loaded meanwhile is read again next time, not skipped.
    last = con.execute("SELECT max(file_id) FROM events").fetchone()[0]
    strings = [
        row[0]
        for row in con.execute(
            """
            SELECT DISTINCT e.consent FROM events e
            WHERE e.file_id > coalesce(
                    (SELECT max(last_file_id) FROM consent_scans WHERE policy = $policy), -1)
              AND e.consent IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM consent_decisions c
                WHERE c.consent = e.consent AND c.policy = $policy)
            """,
            params,
        ).fetchall()
    ]
    rows = [[s, label, *_decide(s, purposes, vendor), now] for s in strings]
    with store.transaction():
        for table in ("consent_decisions", "consent_scans"):
            con.execute(f"DELETE FROM {table} WHERE policy <> $policy", params)
        if rows:
            con.executemany("INSERT INTO consent_decisions VALUES (?, ?, ?, ?, ?)", rows)
        if last is not None:
            scanned = {**params, "last": last}
            con.execute("INSERT INTO consent_scans VALUES ($policy, $last)", scanned)
    invalid = sum(1 for row in rows if not row[2])
    return {"decided": len(rows), "undecodable": invalid}


def _decide(consent: str, purposes: list[int], vendor: int | None) -> tuple[bool, bool]:
    """(valid, allowed); an undecodable string is valid=False and never allows."""
    try:
        decoded = tcf.decode(consent)
    except ValueError:
        return False, False
    allowed = set(purposes) <= decoded.purposes_consent and (
        vendor is None or vendor in decoded.vendor_consents
    )
    return True, allowed


def usable_events_sql(config: Config) -> str:
    """A SELECT of the events that may be used for profiling (same columns as ``events``).

    Inlines only typed config values (a bool), never user text.
    """
    no_string = "false" if config.get("consent.require_tcf") else "true"
    return f"""
        SELECT e.* FROM events e
        JOIN devices d ON d.id = e.id AND d.id_type = e.id_type AND NOT d.bot
        LEFT JOIN consent_decisions c ON c.consent = e.consent
        WHERE coalesce(e.gpc, false) = false
          AND CASE WHEN e.consent IS NULL THEN {no_string} ELSE coalesce(c.allowed, false) END
    """
