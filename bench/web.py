"""Dashboard page latency and collector throughput on a loaded instance.

    python bench/web.py [--devices 200000] [--events 2000000] [--requests 40] [--seconds 8]

Builds (once, cached in bench/out/web-N/) an instance with a synthetic world of
N devices, ingested and profiled, with three rule segments and an interest
clustering run, then starts a real `dmp serve` on it and measures, from this
process over loopback:

- p50 and p95 latency of the overview, segment list and segment detail pages
  (a logged-in session, sequential requests after one warm-up each);
- collector throughput: `GET /px.gif` requests a second from a bounded run of
  concurrent keep-alive clients, beside the same clients against a bare WSGI
  hello-world on waitress in its own process (same server, same machine), and
  the ratio.

Generation is bounded by --devices (default 200,000, not the issue's 1M: the
2-core machine builds that world in about a minute) and said in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password 123"
BUILD = """
import sys
from pathlib import Path
from dmp.config import load_config
from dmp.generate import World
from dmp.identity import maintain
from dmp.ingest import ingest_files
from dmp.interests.profiles import build_profiles
from dmp.segments import rule_segments
from dmp.segments.clusters import cluster
from dmp.store import open_store
from dmp.web.users import add_user

folder, devices, events = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
world = World(devices=devices, events=events, seed=7, categorised_share=1.0)
summary = world.write(folder / "world")
config = load_config(folder / "home", env={})
with open_store(config) as store:
    ingest_files(store, config, summary["files"])
    maintain(store, config)
    build_profiles(store, config)
    frequent = {"frequency": {"min_events": 10, "within_days": 30}}
    rule_segments.create(store, config, "frequent", frequent)
    rule_segments.create(store, config, "maids", {"id_type": "maid"})
    rule_segments.create(store, config, "recent", {"recency": {"within_days": 7}})
    cluster(store, config)
    add_user(store, "bench", "admin", None, sys.argv[4])
print("built")
"""
HELLO = """
import sys, waitress
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "image/gif"), ("Content-Length", "1")])
    return [b"x"]
waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), _quiet=True)
"""


def build(folder: Path, devices: int, events: int) -> Path:
    home = folder / "home"
    if (home / "dmp.duckdb").exists():
        return home
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", BUILD, str(folder), str(devices), str(events), PASSWORD],
        check=True,
        cwd=ROOT,
    )
    print(f"built the instance in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return home


def serve(home: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
    env["DMP_WEB__SPOOL_MAX_SECONDS"] = "3600"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp", "--home", str(home), "serve", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    for line in proc.stderr:
        if "listening on" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, re.search(r"http://\S+", line)[0]
    raise SystemExit("dmp serve did not start")


def login(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(base + "/login").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    response = session.post(
        base + "/login", data={"name": "bench", "password": PASSWORD, "csrf_token": token}
    )
    response.raise_for_status()
    return session


def latency(session: requests.Session, url: str, count: int) -> dict:
    session.get(url).raise_for_status()  # warm-up
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = session.get(url)
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
    }


def throughput(url: str, seconds: float, clients: int) -> float:
    """Requests a second from ``clients`` keep-alive threads for ``seconds``."""
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        session = requests.Session()
        while time.perf_counter() < stop:
            session.get(f"{url}?id=ck{i}x{done[i]}&url=https://bench.example/p{done[i]}")
            done[i] += 1

    threads = [threading.Thread(target=client, args=[i]) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    home = build(ROOT / "bench" / "out" / f"web-{args.devices}", args.devices, args.events)

    proc, base = serve(home)
    try:
        session = login(base)
        pages = {
            "overview": "/",
            "segment list": "/segments",
            "segment detail": "/segments/frequent",
        }
        result = {name: latency(session, base + p, args.requests) for name, p in pages.items()}
        dmp_rps = throughput(base + "/px.gif", args.seconds, args.clients)
    finally:
        proc.terminate()
        proc.wait(60)

    port = free_port()
    hello = subprocess.Popen([sys.executable, "-c", HELLO, str(port)])
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        hello_rps = throughput(f"http://127.0.0.1:{port}/px.gif", args.seconds, args.clients)
    finally:
        hello.terminate()
        hello.wait(30)

    report = {
        "measured": datetime.now(UTC).date().isoformat(),
        "devices": args.devices,
        "events": args.events,
        "pages": result,
        "collector_rps": round(dmp_rps),
        "hello_world_rps": round(hello_rps),
        "ratio": round(dmp_rps / hello_rps, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
