"""Identity pass against ingest: the nightly `expire` job beside loading the same events.

    python bench/expire.py [--events 10000000] [--devices 1000000]

Ingests the cached benchmark CSV (see bench/ingest.py) into a fresh instance,
then runs the expire job (expiry, event retention, bot flags, ID graph,
consent decisions) with "now" 75 days after the last event, so every cookie
expires, recent MAIDs stay and about half the events pass retention. Prints
both times, the ratio expire/ingest (target < 0.33) and the job's counts.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from ingest import OUT, dmp_ingest, make_csv, run, world_parser

EXPIRE = """
import json, sys
from datetime import timedelta
from dmp.config import load_config
from dmp.store import open_store
from jobs import JOBS
config = load_config()
with open_store(config) as store:
    last = store.con.execute("SELECT max(ts) FROM events").fetchone()[0]
    print(json.dumps(JOBS["expire"](store, config, now=last + timedelta(days=75)), default=str))
"""


def main() -> None:
    args = world_parser(__doc__).parse_args()
    csv = make_csv(args.events, args.devices)
    work = OUT / "expire_run"
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "DMP_HOME": str(work / "home")}
    ingest_s, ingest_mb, _ = dmp_ingest(csv, env)
    expire_s, expire_mb, out = run([sys.executable, "-c", EXPIRE], env)
    result = json.loads(out)
    print(f"\n{args.events:,} events, {args.devices:,} devices")
    print(f"ingest  {ingest_s:7.2f} s  peak {ingest_mb:7,.0f} MB")
    print(f"expire  {expire_s:7.2f} s  peak {expire_mb:7,.0f} MB")
    print(f"expired {result['expired']:,} IDs {result['expired_by_type']}, ")
    print(f"events past retention {result['events_past_retention']:,}, bots {result['bots']:,}, ")
    print(f"ID graph {result['id_graph']}, consent {result['consent']}")
    print(f"\nratio expire/ingest: {expire_s / ingest_s:.2f} (target < 0.33)")


if __name__ == "__main__":
    main()
