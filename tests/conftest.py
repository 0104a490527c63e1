"""Shared fixtures: a throw-away instance (home folder, config, real DuckDB file)."""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp.cli import main
from dmp.config import load_config
from dmp.store import open_store

# Tests run "now" at a fixed instant; timestamps in fixtures are relative to it.
NOW = datetime(2026, 11, 20, 12, 0, 0)  # noqa: DTZ001 (UTC, as stored)


def profiled_world(folder: Path, devices: int, events: int) -> tuple[Path, list[dict]]:
    """A generated world (planted personas, every site categorised) ingested, through
    the identity pass and profiled in an instance under ``folder``: the database file,
    to copy per test, and the ground truth rows."""
    from dmp.generate import World
    from dmp.identity import maintain
    from dmp.ingest import ingest_files
    from dmp.interests.profiles import build_profiles

    summary = World(devices=devices, events=events, seed=11, now=NOW, categorised_share=1.0).write(
        folder / "world"
    )
    config = load_config(folder / "home", env={})
    with open_store(config) as store:
        ingest_files(store, config, summary["files"], now=NOW)
        maintain(store, config, NOW)
        build_profiles(store, config, NOW)
    with open(summary["truth"]) as handle:
        truth = list(csv.DictReader(handle))
    return folder / "home" / "dmp.duckdb", truth


TABLES = ("events", "devices", "id_links", "quarantine", "ingested_files")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def config(home: Path):
    return load_config(home, env={})


@pytest.fixture
def store(config):
    with open_store(config) as store:
        yield store


@pytest.fixture
def write(tmp_path: Path):
    """Write a log file and return its path; text for a .gz name is gzipped, bytes are as given."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
            if name.endswith(".gz"):
                content = gzip.compress(content)
        path.write_bytes(content)
        return path

    return _write


@pytest.fixture
def snapshot():
    """Every stored row of the foundation tables, to prove a failure changed nothing."""

    def _snapshot(store) -> dict[str, list]:
        return {
            table: sorted(map(str, store.con.execute(f"SELECT * FROM {table}").fetchall()))
            for table in TABLES
        }

    return _snapshot


@pytest.fixture
def cli(home: Path, monkeypatch):
    """Invoke the real `dmp` command against the test instance."""
    for name in list(__import__("os").environ):
        if name.startswith("DMP_"):
            monkeypatch.delenv(name)
    runner = CliRunner()

    def _run(*args: str, input: str | None = None):
        return runner.invoke(main, ["--home", str(home), *args], input=input)

    return _run


# --- Jobs and the scheduler ----------------------------------------------------------


class Gate:
    """A job that holds its run open until released: overlap tests without sleeping."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, store, config, now) -> dict:
        self.entered.set()
        assert self.release.wait(30), "gate never released"
        return {"released": True}


@pytest.fixture
def gate():
    gate = Gate()
    yield gate
    gate.release.set()


@pytest.fixture
def make_runner(store, config):
    """A Runner over the given jobs on the test instance; its clock says NOW."""
    from dmp.scheduler import Runner, load_schedule

    def _make(jobs: dict, clock=lambda: NOW):
        return Runner(store, config, jobs, load_schedule(config), clock=clock)

    return _make


# Test-only jobs for `dmp_process`, installed before the CLI starts. Each writes
# 1,000 quarantine rows inside a transaction, prints "inside", then waits: `slow`
# on an endless query (so only an interrupt ends it), `waits` for a line on stdin.
SLOW_JOBS = """
import sys
from jobs import JOBS

def _write_then(wait):
    def job(store, config, now):
        with store.transaction() as con:
            con.execute(
                "INSERT INTO quarantine (file_id, file, line, reason, quarantined_at) "
                "SELECT 0, 'slow', i, 'test', now()::TIMESTAMP FROM range(1000) t(i)"
            )
            print("inside", flush=True)
            wait(con)
        return {"rows": 1000}
    return job

JOBS["slow"] = _write_then(
    lambda con: con.execute("SELECT sum(hash(i)) FROM range(10000000000000) t(i)")
)
JOBS["waits"] = _write_then(lambda con: sys.stdin.readline())

from dmp.cli import main
main(sys.argv[1:], prog_name="dmp")
"""


@pytest.fixture
def dmp_process(home: Path):
    """`dmp ARGS` in a real process (real signals), with SLOW_JOBS installed; killed after
    60 s so a hung test fails instead of hanging."""
    procs = []

    def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
        proc = subprocess.Popen(
            [sys.executable, "-c", SLOW_JOBS, "--home", str(home), "--set", "store.threads=1"]
            + list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**clean, **(env or {})},
        )
        timer = threading.Timer(60, proc.kill)
        timer.daemon = True
        timer.start()
        procs.append((proc, timer))
        return proc

    yield _start
    for proc, timer in procs:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def read_until(stream, text: str) -> list[str]:
    """Lines from a child's stream up to the first containing ``text`` (fails at EOF)."""
    lines = []
    while not lines or text not in lines[-1]:
        line = stream.readline()
        assert line, f"stream ended before {text!r}: {''.join(lines)}"
        lines.append(line)
    return lines
