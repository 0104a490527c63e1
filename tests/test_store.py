"""The store: migrations at open, and the clear error when another process holds the file."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dmp.errors import DatabaseInUse
from dmp.store import migrations, open_store


def test_open_applies_each_migration_once(config):
    with open_store(config) as store:
        assert store.schema_version() == max(v for v, _, _ in migrations())
        tables = {r[0] for r in store.con.execute("SHOW TABLES").fetchall()}
        assert {"events", "devices", "id_links", "quarantine", "ingested_files"} <= tables
    with open_store(config) as store:
        applied = store.con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
        assert applied == len(migrations())


def test_transaction_rolls_back_on_error(store):
    with pytest.raises(ZeroDivisionError), store.transaction() as con:
        con.execute(
            "INSERT INTO quarantine (file_id, file, line, reason, raw, quarantined_at) "
            "VALUES (1, 'f', 1, 'r', 'x', now()::TIMESTAMP)"
        )
        raise ZeroDivisionError
    assert store.con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


@pytest.fixture
def holder(config):
    """Another process that opens the database read-write and keeps it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from dmp.config import load_config
        from dmp.store import open_store
        store = open_store(load_config({str(config.home)!r}, env={{}}))
        print("ready", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)
    proc.stdout.close()


def test_second_process_gets_a_clear_lock_error(config, holder):
    with pytest.raises(DatabaseInUse, match=rf"is in use by PID {holder.pid} \(.*python"):
        open_store(config)


def test_cli_reports_lock_without_traceback(cli, holder):
    result = cli("status")
    assert result.exit_code == 1
    assert f"is in use by PID {holder.pid}" in result.output
    assert "Traceback" not in result.output
