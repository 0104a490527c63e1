"""Train + score time of ``create_lookalike`` (report and permutation baseline included).

    python bench/lookalike_speed.py [DEVICES]   # default 1,000,000

Writes DEVICES profiled devices (half cookies, half MAIDs, eight categories
each from taste groups of 40) straight into a fresh instance's DuckDB, uploads
5,000 MAIDs who share one category as the seed list, and times
``create_lookalike`` at 5% reach with the seconds of each step.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from worlds import NOW, taxonomy, usable

from dmp.config import load_config
from dmp.interests.profiles import EPOCH
from dmp.lookalike.audience import create_lookalike
from dmp.lookalike.seeds import upload_seed_list
from dmp.store import open_store

MAID = (
    "md5(d::VARCHAR)[1:8] || '-' || md5(d::VARCHAR)[9:12] || '-4' || md5(d::VARCHAR)[14:16]"
    " || '-8' || md5(d::VARCHAR)[18:20] || '-' || md5(d::VARCHAR)[21:32]"
)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    home = Path(tempfile.mkdtemp())
    config = load_config(home, (), env={})
    half_life = config.get("interests.half_life_days") * 86400
    cats = usable(*taxonomy())[:300]
    with open_store(config) as store:
        con = store.con
        con.execute(
            "CREATE TEMP TABLE cats AS SELECT unnest($c) AS category_id, "
            "generate_subscripts($c, 1) AS k",
            {"c": cats},
        )
        started = time.perf_counter()
        con.execute(
            f"""
            INSERT INTO profiles
            SELECT CASE WHEN d % 2 = 0 THEN 'c_' || d ELSE {MAID} END,
                   CASE WHEN d % 2 = 0 THEN 'cookie' ELSE 'maid' END, c.category_id,
                   log2(1 + random() * 5) - random() * 4
                       + epoch($now - TIMESTAMP '{EPOCH:%Y-%m-%d}') / {half_life},
                   1 + (random() * 10)::INT, $now
            FROM range({n}) t(d), range(8) j(slot)
            JOIN cats c ON c.k = 1 + ((hash(d * 31 + slot) % 40) + (d % 7) * 40) % 300
            """,
            {"now": NOW},
        )
        con.execute(
            "INSERT INTO devices (id, id_type, first_seen, last_seen, event_count) "
            "SELECT DISTINCT id, id_type, $now, $now, 1 FROM profiles",
            {"now": NOW},
        )
        print(f"{n:,} devices profiled in {time.perf_counter() - started:.0f} s", flush=True)
        seeds = con.execute(
            "SELECT DISTINCT id FROM profiles WHERE id_type = 'maid' AND category_id = $c "
            "LIMIT 5000",
            {"c": cats[5]},
        ).fetchall()
        path = home / "seeds.csv"
        path.write_text("maid\n" + "\n".join(r[0] for r in seeds) + "\n")
        upload_seed_list(store, config, path, "s", "bench", "maid", now=NOW)
        started = time.perf_counter()
        report = create_lookalike(store, config, "l", "s", "bench", "5%", now=NOW, force=True)
        print(
            f"create_lookalike on {report['eligible']:,} devices, {report['seed_devices']:,} "
            f"seeds: {time.perf_counter() - started:.1f} s {report['seconds']}; "
            f"{report['quality']['verdict']}"
        )


if __name__ == "__main__":
    main()
