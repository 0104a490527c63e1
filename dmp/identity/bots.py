"""The bot filter: devices with implausible activity stay out of profiles and models."""

from __future__ import annotations

from dmp.config import Config
from dmp.store import Store


def flag_bots(store: Store, config: Config) -> dict:
    """Set ``devices.bot`` from the kept events; a device can also stop being a bot."""
    con = store.con
    with store.transaction():
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE bot_ids AS
            SELECT id, id_type FROM events
            GROUP BY id, id_type, date_trunc('day', ts) HAVING count(*) > $max_events
            UNION
            SELECT id, id_type FROM (
                SELECT id, id_type, unnest(categories) AS category FROM events
                WHERE categories IS NOT NULL)
            GROUP BY id, id_type HAVING count(DISTINCT category) > $max_categories
            """,
            {
                "max_events": config.get("identity.bot_max_events_per_day"),
                "max_categories": config.get("identity.bot_max_categories"),
            },
        )
        con.execute(
            """
            UPDATE devices d SET bot = NOT bot
            WHERE bot <> EXISTS (
                SELECT 1 FROM bot_ids b WHERE b.id = d.id AND b.id_type = d.id_type)
            """
        )
        con.execute("DROP TABLE bot_ids")
    return {"bots": con.execute("SELECT count(*) FROM devices WHERE bot").fetchone()[0]}
