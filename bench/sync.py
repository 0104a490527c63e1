"""Sync throughput: push a large segment to a local fake DSP, beside the raw HTTP rate.

    python bench/sync.py [--members 1000000]

Builds an instance under bench/out/sync_run/ with one segment of N MAIDs (inserted
with SQL) linked to a Trade Desk destination without rate limit, then times, each
in a fresh process against a fresh fake DSP (itself a separate process, so its
JSON parsing is not counted as dmp's):
  raw  the same requests.Session posting pre-built bodies (the very bodies the TTD
       connector builds for these IDs, made before the clock starts)
  dmp  dmp.activation.sync(): delta from DuckDB, streaming, batching, retries
       machinery, state written per confirmed batch
and prints IDs/s for each, the ratio dmp/raw (target >= 0.7) and each process's
peak memory (target for dmp < 1 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "sync_run"

SETUP = """
import sys
from dmp.activation import add_destination, link_segment
from dmp.clock import utcnow
from dmp.config import load_config
from dmp.store import open_store

n, port = int(sys.argv[1]), sys.argv[2]
config = load_config(sys.argv[3], env={})
with open_store(config) as store:
    con, now = store.con, utcnow()
    con.execute("INSERT INTO segments VALUES (1, 'bench', 'rule', '{}', NULL, NULL, 30, ?, ?, "
                "'live')", [now, now])
    con.execute('''
        CREATE TEMP TABLE ids AS
        SELECT printf('%08x-0000-4000-8000-%012x', i, i) AS id FROM range($n) t(i)''', {"n": n})
    con.execute("INSERT INTO devices SELECT id, 'maid', $now, $now, 1, false FROM ids",
                {"now": now})
    con.execute("INSERT INTO segment_members SELECT 1, id, 'maid', $now, $now + INTERVAL 30 DAY "
                "FROM ids", {"now": now})
    add_destination(store, "bench", "ttd", {"advertiser_id": "bench", "token_env": "DSP_TOKEN",
                    "base_url": f"http://127.0.0.1:{port}", "requests_per_second": "0"})
    link_segment(store, "bench", "bench")
print("{}")
"""

DMP = """
import json, sys, time
from dmp.activation import sync
from dmp.config import load_config
from dmp.store import open_store

with open_store(load_config(sys.argv[1], env={})) as store:
    start = time.perf_counter()
    [result] = sync(store, load_config(sys.argv[1], env={}))
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "ids": result["accepted"], "requests": result["requests"],
                  "status": result["status"], "bytes": result["bytes"]}))
"""

RAW = """
import json, sys, time
import requests
from dmp.activation.base import Item, Stats
from dmp.activation.connectors.ttd import TradeDesk, TradeDeskOptions

n, port = int(sys.argv[1]), sys.argv[2]
bodies = []

class Recorder:
    '''Stands in for the network while the bodies are built, so the clock sees none of it.'''
    def request(self, method, url, headers, data, timeout):
        bodies.append((url, headers, data))
        response = requests.Response()
        response.status_code, response._content = 200, b"{}"
        return response

options = TradeDeskOptions(advertiser_id="bench", token_env="DSP_TOKEN",
                           base_url=f"http://127.0.0.1:{port}", requests_per_second=0)
connector = TradeDesk("bench", options, session=Recorder())
ids = (f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(n))
items = (Item(i, "maid") for i in ids)
connector.deliver("add", "bench", items, n, Stats(), lambda result: None)
session = requests.Session()
start = time.perf_counter()
for url, headers, data in bodies:
    response = session.post(url, headers=headers, data=data, timeout=60)
    response.raise_for_status()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "ids": n, "requests": len(bodies),
                  "bytes": sum(len(b[2]) for b in bodies)}))
"""


def child(code: str, *args: str, env: dict) -> tuple[dict, float]:
    """Run ``code`` in a fresh interpreter: its JSON report and its peak RSS in MB."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, cwd=ROOT, env=env
    )
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench step failed:\n{out}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


class FakeDSP:
    """The test fake in a process of its own, not recording payloads; a fresh one per
    measurement, on the same port, so both start from an empty platform."""

    def __init__(self, port: int):
        self.port = port

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_dsp", str(self.port)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        return self.proc.stdout.readline().decode().strip()

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    args = parser.parse_args()
    env = {**os.environ, "DSP_TOKEN": "fake-token", "PYTHONPATH": str(ROOT)}
    shutil.rmtree(OUT, ignore_errors=True)
    home = OUT / "home"
    n = str(args.members)

    print(f"segment of {args.members:,} MAIDs -> TTD connector -> local fake DSP", flush=True)
    with socket.socket() as probe:  # a free loopback port for both fakes
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    child(SETUP, n, port, str(home), env=env)
    with FakeDSP(port):
        raw, raw_mb = child(RAW, n, port, env=env)
    with FakeDSP(port):
        dmp, dmp_mb = child(DMP, str(home), env=env)
    if dmp["status"] != "succeeded" or dmp["ids"] != args.members:
        sys.exit(f"sync did not push everything: {dmp}")

    rows = [("raw HTTP, pre-built bodies", raw, raw_mb), ("dmp sync", dmp, dmp_mb)]
    print(f"{'':<28} {'seconds':>8} {'IDs/s':>10} {'requests':>9} {'MB sent':>8} {'peak MB':>8}")
    for label, report, mb in rows:
        rate = report["ids"] / report["seconds"]
        print(
            f"{label:<28} {report['seconds']:>8.1f} {rate:>10,.0f} {report['requests']:>9} "
            f"{report['bytes'] / 1e6:>8.0f} {mb:>8.0f}"
        )
    ratio = (dmp["ids"] / dmp["seconds"]) / (raw["ids"] / raw["seconds"])
    print(f"ratio dmp/raw {ratio:.2f} (target >= 0.7); dmp peak {dmp_mb:,.0f} MB (target < 1024)")


if __name__ == "__main__":
    main()
