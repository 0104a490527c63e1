"""Partner ID sync (cookie matching): our cookie ID -> a DSP's own user ID.

Destinations that cannot take our cookie IDs (The Trade Desk's TDID, for
one) send the partner's ID from this table instead. A match file is CSV
``cookie_id,partner_id`` (header optional); the newest match wins.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from dmp.clock import utcnow
from dmp.csvsafe import starts_like_formula
from dmp.errors import DmpError
from dmp.identity.ids import read_lines
from dmp.ingest.landing import exclusive
from dmp.ingest.validate import cookie_sql
from dmp.store import Store

_PARTNER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def import_matches(store: Store, partner: str, path: Path, now: datetime | None = None) -> dict:
    """Load a partner's match file; bad lines are reported, good ones applied atomically."""
    if not _PARTNER.match(partner):
        raise DmpError(f"partner name {partner!r}: use lower-case letters, digits, - and _")
    now = now or utcnow()
    con = store.con
    read_lines(con, None, path)
    first, second = "trim(split_part(raw, ',', 1))", "trim(split_part(raw, ',', 2))"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE matches AS
        SELECT line, raw, {cookie_sql(first)} AS cookie_id, {cookie_sql(second)} AS partner_id,
               {starts_like_formula(first)} OR {starts_like_formula(second)} AS formula,
               length(raw) - length(replace(raw, ',', '')) AS commas
        FROM raw_lines WHERE trim(raw) <> '' AND lower(raw) NOT LIKE 'cookie_id,%'
        """
    )
    invalid = con.execute(
        """
        SELECT line, raw, CASE WHEN commas <> 1 THEN 'expected cookie_id,partner_id'
                               WHEN formula THEN 'starts like a spreadsheet formula (= + - @)'
                               WHEN cookie_id IS NULL THEN 'not a valid cookie ID'
                               ELSE 'not a valid partner ID' END
        FROM matches WHERE commas <> 1 OR cookie_id IS NULL OR partner_id IS NULL ORDER BY line
        """
    ).fetchall()
    with store.transaction():
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE good_matches AS
            SELECT cookie_id, arg_max(partner_id, line) AS partner_id FROM matches
            WHERE commas = 1 AND cookie_id IS NOT NULL AND partner_id IS NOT NULL
              AND NOT EXISTS (
                  SELECT 1 FROM optouts o WHERE o.id = cookie_id AND o.id_type = 'cookie')
            GROUP BY cookie_id
            """
        )
        con.execute(
            """
            DELETE FROM partner_ids p WHERE partner = $partner
              AND EXISTS (SELECT 1 FROM good_matches g WHERE g.cookie_id = p.cookie_id)
            """,
            {"partner": partner},
        )
        stored = con.execute(
            "INSERT INTO partner_ids "
            "SELECT $partner, cookie_id, partner_id, $now FROM good_matches",
            {"partner": partner, "now": now},
        ).fetchone()[0]
    total = con.execute("SELECT count(*) FROM matches").fetchone()[0]
    con.execute("DROP TABLE matches; DROP TABLE good_matches; DROP TABLE raw_lines")
    return {
        "partner": partner,
        "rows": total,
        "stored": stored,
        "invalid": [{"line": n, "value": raw, "reason": why} for n, raw, why in invalid],
    }


def import_spooled(store: Store, folder: Path, now: datetime | None = None) -> dict:
    """Load the cookie-sync spool files the collector closed (``folder/PARTNER/*.csv``,
    ``cookie_id,partner_id`` lines), then move each to ``folder/PARTNER/done/``."""
    stored, files = 0, 0
    for path in sorted(folder.glob("*/*.csv")) if folder.exists() else []:
        with exclusive():  # erasure rewrites these files: never move one meanwhile
            stored += import_matches(store, path.parent.name, path, now)["stored"]
            (path.parent / "done").mkdir(exist_ok=True)
            path.rename(path.parent / "done" / path.name)
        files += 1
    return {"files": files, "stored": stored}
