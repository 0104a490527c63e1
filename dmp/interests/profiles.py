"""Interest profiles: per device and content category, a score that decays with time.

An event at time ``ts`` weighs ``2^-((now - ts) / half_life)``. Stored is
``score_log2 = log2(sum(2^x))`` with ``x = (ts - EPOCH) / half_life``, which
does not change as time passes, so a run rewrites only devices with new
events and still equals a full rebuild; :func:`scores_sql` turns it into the
score at any moment. Only usable events count (consent, GPC, bots: see
``identity.consent.usable_events_sql``).
"""

from __future__ import annotations

from datetime import datetime

from dmp.clock import utcnow
from dmp.config import Config
from dmp.identity.consent import refresh_decisions, usable_events_sql
from dmp.interests.categorise import categorise
from dmp.interests.taxonomy import ensure
from dmp.store import Store

EPOCH = datetime(2020, 1, 1)  # noqa: DTZ001 (UTC, as stored)


def build_profiles(
    store: Store, config: Config, now: datetime | None = None, full: bool = False
) -> dict:
    """Rebuild the profiles of devices with events loaded since the last run (or all)."""
    now = now or utcnow()
    con = store.con
    ensure(store, config)
    consent = refresh_decisions(store, config, now)
    half_life = float(config.get("interests.half_life_days"))
    state = con.execute("SELECT last_file_id, half_life_days FROM profile_state").fetchone()
    full = full or state is None or state[1] != half_life
    watermark = 0 if full else state[0]
    latest = con.execute("SELECT coalesce(max(file_id), 0) FROM events").fetchone()[0]
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE touched AS
        SELECT DISTINCT id, id_type FROM events WHERE file_id > $watermark
        """,
        {"watermark": watermark},
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE scoped AS
        SELECT u.* FROM ({usable_events_sql(config)}) u
        WHERE $full OR EXISTS (
            SELECT 1 FROM touched t WHERE t.id = u.id AND t.id_type = u.id_type)
        """,
        {"full": full},
    )
    pages = categorise(store, config, "scoped")
    uncategorised = con.execute(
        """
        SELECT count(*) FROM scoped s WHERE s.categories IS NULL AND NOT EXISTS (
            SELECT 1 FROM page_categories p WHERE p.domain IS NOT DISTINCT FROM s.domain
              AND p.url IS NOT DISTINCT FROM s.url AND p.keywords IS NOT DISTINCT FROM s.keywords)
        """
    ).fetchone()[0]
    with store.transaction():
        con.execute(
            """
            DELETE FROM profiles p WHERE $full OR EXISTS (
                SELECT 1 FROM touched t WHERE t.id = p.id AND t.id_type = p.id_type)
            """,
            {"full": full},
        )
        con.execute(
            """
            INSERT INTO profiles
            SELECT id, id_type, category_id,
                   log2(sum(pow(2, epoch(ts - $epoch) / $half_life_s))), count(*), max(ts)
            FROM (
                SELECT s.id, s.id_type, s.ts,
                       unnest(coalesce(s.categories, [p.category_id])) AS category_id
                FROM scoped s LEFT JOIN page_categories p
                  ON s.categories IS NULL AND p.domain IS NOT DISTINCT FROM s.domain
                 AND p.url IS NOT DISTINCT FROM s.url
                 AND p.keywords IS NOT DISTINCT FROM s.keywords)
            WHERE category_id IS NOT NULL
            GROUP BY id, id_type, category_id
            """,
            {"epoch": EPOCH, "half_life_s": half_life * 86400},
        )
        # Devices that expired, were forgotten or turned out to be bots lose theirs.
        con.execute(
            """
            DELETE FROM profiles p WHERE NOT EXISTS (
                SELECT 1 FROM devices d
                WHERE d.id = p.id AND d.id_type = p.id_type AND NOT d.bot)
            """
        )
        con.execute("DELETE FROM profile_state")
        con.execute(
            "INSERT INTO profile_state VALUES ($latest, $half_life, $now)",
            {"latest": latest, "half_life": half_life, "now": now},
        )
    devices = con.execute("SELECT count(*) FROM touched").fetchone()[0]
    con.execute("DROP TABLE touched; DROP TABLE scoped; DROP TABLE page_categories")
    return {
        "full": full,
        "devices_touched": devices,
        "profile_rows": con.execute("SELECT count(*) FROM profiles").fetchone()[0],
        "uncategorised_events": uncategorised,
        **pages,
        "consent": consent,
    }


def scores_sql(config: Config) -> str:
    """A SELECT of (id, id_type, category_id, score, events, last_seen) as of ``$now``."""
    half_life_s = float(config.get("interests.half_life_days")) * 86400
    return f"""
        SELECT id, id_type, category_id,
               pow(2, score_log2 - epoch($now - TIMESTAMP '{EPOCH:%Y-%m-%d}') / {half_life_s})
                   AS score,
               events, last_seen
        FROM profiles
    """
