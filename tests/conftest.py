"""Shared fixtures: a throw-away instance (home folder, config, real DuckDB file)."""

from __future__ import annotations

import gzip
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp.cli import main
from dmp.config import load_config
from dmp.store import open_store

# Tests run "now" at a fixed instant; timestamps in fixtures are relative to it.
NOW = datetime(2026, 11, 20, 12, 0, 0)  # noqa: DTZ001 (UTC, as stored)
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
