"""Interest profiles: per device and content category, a score that decays with time.

An event at time ``ts`` weighs ``2^-((now - ts) / half_life)``. Stored is
``score_log2 = log2(sum(2^x))`` with ``x = (ts - EPOCH) / half_life``, which
does not change as time passes, so a run rewrites only devices with new
events and still equals a full rebuild; :func:`scores_sql` turns it into the
score at any moment. Only usable events count (consent, GPC, bots: see
``identity.consent.usable_events_sql``); events that came without categories
get them from the page rules (``categorise``).

Two tables come out: ``activity``, the daily rollup per device and category
(what rule segments count), and ``profiles``, its sum over days.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from dmp.clock import utcnow
from dmp.config import Config
from dmp.identity.consent import refresh_decisions, usable_events_sql
from dmp.interests.categorise import categorise
from dmp.interests.taxonomy import ensure
from dmp.store import Store

EPOCH = datetime(2020, 1, 1)  # noqa: DTZ001 (UTC, as stored)
_SAME_PAGE = (
    "coalesce(p.domain, '') = coalesce(s.domain, '') AND coalesce(p.url, '') = coalesce(s.url, '') "
    "AND coalesce(p.keywords, '') = coalesce(s.keywords, '')"
)


def build_profiles(
    store: Store, config: Config, now: datetime | None = None, full: bool = False
) -> dict:
    """Rebuild activity and profiles of devices with events loaded since the last run (or all)."""
    now = now or utcnow()
    con = store.con
    ensure(store, config)
    consent = refresh_decisions(store, config, now)
    half_life = float(config.get("interests.half_life_days"))
    state = con.execute("SELECT last_file_id, half_life_days FROM profile_state").fetchone()
    full = full or state is None or state[1] != half_life
    watermark = 0 if full else state[0]
    latest = con.execute("SELECT coalesce(max(file_id), 0) FROM events").fetchone()[0]
    _scope(con, config, watermark, full)
    pages = categorise(store, config, "scoped")
    uncategorised = con.execute(
        f"""
        SELECT count(*) FROM scoped s WHERE s.categories IS NULL AND s.file_id > $watermark
          AND NOT EXISTS (SELECT 1 FROM page_categories p WHERE {_SAME_PAGE})
        """,
        {"watermark": watermark},
    ).fetchone()[0]
    touched = _touched("x", full)
    with store.transaction():
        for table in ("activity", "profiles"):
            con.execute(f"DELETE FROM {table} x WHERE {touched}")
        con.execute(
            f"""
            INSERT INTO activity
            SELECT id, id_type, category_id, ts::DATE, count(*),
                   log2(sum(pow(2, epoch(ts - $epoch) / $half_life_s))), max(ts)
            FROM (
                SELECT id, id_type, ts, unnest(categories) AS category_id
                FROM scoped WHERE categories IS NOT NULL
                UNION ALL
                SELECT s.id, s.id_type, s.ts, p.category_id
                FROM scoped s JOIN page_categories p ON {_SAME_PAGE}
                WHERE s.categories IS NULL)
            GROUP BY ALL
            """,
            {"epoch": EPOCH, "half_life_s": half_life * 86400},
        )
        con.execute(
            f"""
            INSERT INTO profiles
            SELECT id, id_type, category_id, log2(sum(pow(2, weight_log2))), sum(events),
                   max(last_seen)
            FROM activity x WHERE {touched}
            GROUP BY ALL
            """
        )
        _drop_bots(con)
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


def _scope(con: duckdb.DuckDBPyConnection, config: Config, watermark: int, full: bool) -> None:
    """Temp tables ``touched`` (devices with new events) and ``scoped`` (their usable events)."""
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
        SELECT u.id, u.id_type, u.ts, u.categories, u.domain, u.url, u.keywords, u.file_id
        FROM ({usable_events_sql(config)}) u WHERE {_touched("u", full)}
        """
    )


def _touched(alias: str, full: bool) -> str:
    """The filter to the devices this run rewrites (none needed for a full rebuild)."""
    if full:
        return "true"
    return (
        f"EXISTS (SELECT 1 FROM touched t WHERE t.id = {alias}.id AND t.id_type = {alias}.id_type)"
    )


def _drop_bots(con: duckdb.DuckDBPyConnection) -> None:
    """Devices flagged as bots since their last run lose their interests (expired and
    forgotten devices are removed by ``identity.privacy.forget``)."""
    for table in ("activity", "profiles"):
        con.execute(
            f"""
            DELETE FROM {table} x WHERE EXISTS (
                SELECT 1 FROM devices d WHERE d.id = x.id AND d.id_type = x.id_type AND d.bot)
            """
        )


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
