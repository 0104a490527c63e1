"""Rebuild the committed sample logs and seed lists (deterministic).

    python sample_data/build.py

A small world of 3,000 devices, written as three log files in the shapes an
ingest meets in practice, each with a few deliberately bad rows:
  logs/web_events.csv           canonical CSV (cookies and MAIDs)
  logs/app_events.jsonl.gz      canonical JSON Lines, gzipped
  logs/adserver_export.csv      another layout: [layouts.adserver] in config/dmp.toml
plus seeds/ (converter MAIDs and emails) and truth/ (personas, propensities).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from dmp.generate import (
    World,
    append_malformed_line,
    copy_events,
    insert_bad_rows,
    write_category_rules,
    write_seed_lists,
)

HERE = Path(__file__).resolve().parent
NOW = datetime(2026, 11, 23, 6, 0, 0)  # noqa: DTZ001 (UTC)


def main() -> None:
    con = duckdb.connect()
    World(devices=3_000, events=40_000, seed=2026, days=21, now=NOW).build(con)
    insert_bad_rows(con, 8)
    for sub in ("logs", "seeds", "truth"):
        (HERE / sub).mkdir(exist_ok=True)
    ordered = "SELECT * EXCLUDE (sort_key) FROM world_events"
    copy_events(
        con,
        f"{ordered} WHERE hash(id) % 3 = 0 ORDER BY sort_key",
        HERE / "logs" / "web_events.csv",
        "csv",
    )
    append_malformed_line(HERE / "logs" / "web_events.csv", "csv")
    copy_events(
        con,
        f"{ordered} WHERE hash(id) % 3 = 1 ORDER BY sort_key",
        HERE / "logs" / "app_events.jsonl.gz",
        "jsonl",
    )
    adserver = """
        SELECT epoch_ms(TRY_CAST(ts AS TIMESTAMPTZ)::TIMESTAMP) AS event_time_ms,
               id AS device_id, id_type AS device_os, url AS page_url, event AS action,
               country AS geo, consent AS tcf
        FROM world_events WHERE hash(id) % 3 = 2 ORDER BY sort_key"""
    copy_events(con, adserver, HERE / "logs" / "adserver_export.csv", "csv")
    write_seed_lists(con, HERE / "seeds")
    write_category_rules(con, HERE / "categories.toml")
    # A site-visitor list big enough to model: the cookies of the car intenders
    # (the converters lists are realistic but too small for a lookalike).
    con.execute(
        f"""COPY (SELECT id AS cookie_id FROM world_devices
                  WHERE persona = 'auto_intenders' AND id_type = 'cookie' ORDER BY id)
            TO '{HERE / "seeds" / "car_site_visitors_cookie.csv"}' (HEADER)"""
    )
    con.execute(
        f"""COPY (SELECT id, id_type, persona, propensity, converted, hem, linked_maid
                  FROM world_devices ORDER BY id) TO '{HERE / "truth" / "devices.csv"}' (HEADER)"""
    )


if __name__ == "__main__":
    main()
