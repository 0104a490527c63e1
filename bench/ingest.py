"""Ingest throughput: `dmp ingest` against raw DuckDB on the same CSV, in one run.

    python bench/ingest.py [--events 10000000] [--devices 1000000] [--repeat 1]
                           [--bad-rows N]

Generates the CSV once (cached under bench/out/), then times, in fresh
subprocesses and fresh database files:
  raw  CREATE TABLE events AS SELECT * FROM read_csv(FILE)   (DuckDB alone)
  dmp  dmp ingest FILE                                       (validate, dedupe, devices)
and prints events/s for each, the ratio dmp/raw (target >= 0.5) and each
process's peak memory (target <= 3 GB). With --bad-rows N it also times dmp on a
copy with N bad rows spread through it (one in ten with a quoted comma), which makes ingest
read the file a second time to find their line numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
RAW = """
import duckdb, sys
con = duckdb.connect(sys.argv[1], config={"memory_limit": sys.argv[3]})
con.execute("CREATE TABLE events AS SELECT * FROM read_csv(?)", [sys.argv[2]])
con.close()
"""


def run(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stdout of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out}")
    return seconds, usage.ru_maxrss / 1024, out


def make_csv(events: int, devices: int) -> Path:
    folder = OUT / f"world_{devices}_{events}"
    path = folder / "logs" / "events_001.csv"
    if not path.exists():
        print(f"generating {events:,} events for {devices:,} devices ...", flush=True)
        seconds, _, _ = run(
            [
                sys.executable,
                "-m",
                "dmp",
                "generate",
                "--devices",
                str(devices),
                "--events",
                str(events),
                "--out",
                str(folder),
            ]
        )
        print(f"  generated in {seconds:.1f} s", flush=True)
    return path


def dmp_ingest(path: Path, env: dict, *flags: str) -> tuple[float, float, str]:
    """`dmp ingest` of ``path`` into the instance of ``env``, made first (untimed):
    wall seconds, peak RSS in MB and stdout."""
    run([sys.executable, "-m", "dmp", "init"], env)
    return run([sys.executable, "-m", "dmp", "ingest", *flags, str(path)], env)


def with_bad_rows(csv: Path, count: int) -> Path:
    """A copy of ``csv`` with ``count`` bad timestamps spread through it (cached)."""
    path = csv.with_name(f"{csv.stem}_bad{count}.csv")
    if path.exists():
        return path
    with csv.open("rb") as src:
        total = sum(1 for _ in src) - 1
    every = max(1, total // count)
    columns = csv.open().readline().count(",") + 1
    tmp = path.with_suffix(".part")
    with csv.open("rb") as src, tmp.open("wb") as dst:
        dst.write(next(src))
        for i, line in enumerate(src):
            n = i // every
            if i % every == 0 and n < count:
                ts = f'"not a time, {n}"' if n % 10 == 0 else f"not-a-time-{n}"
                bad = [ts, f"ckbad{n}", "cookie", "https://bad.example/"]
                dst.write((",".join(bad + [""] * (columns - len(bad))) + "\n").encode())
            dst.write(line)
    tmp.rename(path)
    return path


def world_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark over the cached world shares."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=1_000_000)
    return parser


def main() -> None:
    parser = world_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--memory-limit", default="3GB")
    parser.add_argument("--bad-rows", type=int, default=0)
    args = parser.parse_args()
    csv = make_csv(args.events, args.devices)
    dirty = with_bad_rows(csv, args.bad_rows) if args.bad_rows else None
    size_mb = csv.stat().st_size / 1e6
    work = OUT / "ingest_run"
    rows = []
    for attempt in range(args.repeat):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        raw_s, raw_mb, _ = run(
            [sys.executable, "-c", RAW, str(work / "raw.duckdb"), str(csv), args.memory_limit]
        )
        env = {
            **os.environ,
            "DMP_HOME": str(work / "home"),
            "DMP_STORE__MEMORY_LIMIT": args.memory_limit,
        }
        dmp_s, dmp_mb, out = dmp_ingest(csv, env, "--json")
        loaded = json.loads(out)[0]["loaded"]
        rows.append((attempt, raw_s, raw_mb, dmp_s, dmp_mb, loaded))
    print(f"\nfile: {csv} ({size_mb:,.0f} MB, {args.events:,} rows)")
    print(
        f"{'run':>3}  {'raw s':>7} {'raw ev/s':>11} {'raw MB':>7}  "
        f"{'dmp s':>7} {'dmp ev/s':>11} {'dmp MB':>7}  {'ratio':>5}"
    )
    for attempt, raw_s, raw_mb, dmp_s, dmp_mb, _loaded in rows:
        print(
            f"{attempt:>3}  {raw_s:7.2f} {args.events / raw_s:11,.0f} {raw_mb:7,.0f}  "
            f"{dmp_s:7.2f} {args.events / dmp_s:11,.0f} {dmp_mb:7,.0f}  {raw_s / dmp_s:5.2f}"
        )
    best = max(rows, key=lambda r: r[1] / r[3])
    print(
        f"\nratio dmp/raw events per second: {best[1] / best[3]:.2f} (target >= 0.5); "
        f"peak memory dmp {max(r[4] for r in rows):,.0f} MB (target <= 3,072 MB); "
        f"loaded {best[5]:,} events"
    )
    if dirty:
        env["DMP_HOME"] = str(work / "home_dirty")
        bad_s, bad_mb, out = dmp_ingest(dirty, env, "--json")
        report = json.loads(out)[0]
        print(
            f"with {args.bad_rows:,} bad rows: dmp {bad_s:.2f} s, {bad_mb:,.0f} MB, "
            f"{report['quarantined']:,} quarantined; ratio {best[1] / bad_s:.2f}"
        )


if __name__ == "__main__":
    main()
