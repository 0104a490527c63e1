"""The one owner of the DuckDB connection and its schema.

DuckDB lets a single process open a database file read-write. ``open_store``
turns the lock conflict into :class:`DatabaseInUse` naming the holder, and
applies the numbered migrations in ``dmp/migrations/`` on open, each in its own
transaction and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from dmp.clock import utcnow
from dmp.config import Config
from dmp.errors import DatabaseInUse, DmpError

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")
_MIGRATION_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>\w+)\.sql$")


class Store:
    """A DuckDB connection plus the helpers every stage shares."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path):
        self.con = con
        self.path = path

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for another thread of the same process (DuckDB's rule)."""
        return self.con.cursor()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing: commit on success, roll back on any exception."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def schema_version(self) -> int:
        return self.con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(config: Config, read_only: bool = False) -> Store:
    """Open (creating if needed) the instance database and bring its schema up to date."""
    path = config.path("store.database")
    if read_only and not path.exists():
        raise DmpError(f"no database at {path}: run `dmp init` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(config, path, read_only)
    # GLOBAL, so the cursors other threads use run in UTC too.
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    # DuckDB 2.0 pushes TRY_CAST into the CSV reader as a column type, where a
    # value that does not convert becomes a hard error; validation relies on
    # TRY_CAST returning NULL, so that rewrite stays off.
    con.execute("SET disabled_optimizers = 'type_pushdown'")
    # DuckDB draws its own progress bar on stdout, which would corrupt --json
    # output; ingest polls query_progress() and draws one on stderr instead.
    con.execute("SET enable_progress_bar_print = false")
    store = Store(con, path)
    if not read_only:
        migrate(store)
    return store


def _connect(config: Config, path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    settings = {
        "memory_limit": config.get("store.memory_limit"),
        "temp_directory": str(config.path("store.temp_directory")),
    }
    if config.get("store.threads"):
        settings["threads"] = config.get("store.threads")
    try:
        return duckdb.connect(str(path), read_only=read_only, config=settings)
    except duckdb.IOException as exc:
        raise _explain_io_error(config, path, exc) from None


def compact(config: Config) -> dict:
    """Copy the database into a fresh file and put it in place of the old one.

    DuckDB leaves the bytes of deleted rows in the file: in row groups it has not
    rewritten and in free blocks it has not reused (a checkpoint does not zero
    them). A fresh copy holds only live rows, so erased IDs leave the disk. The
    file must not be open elsewhere (the caller closed its store; another process
    holding it gets the usual "in use" error). A crash leaves the old file whole.
    """
    path = config.path("store.database")
    if not path.exists():
        raise DmpError(f"no database at {path}: nothing to compact")
    fresh = path.with_name(path.name + ".compact")
    fresh.unlink(missing_ok=True)
    started, before = time.monotonic(), path.stat().st_size
    con = _connect(config, path, read_only=False)
    try:
        name = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH {sql_string(str(fresh))} AS compacted")
        con.execute(f'COPY FROM DATABASE "{name}" TO compacted')
        con.execute("DETACH compacted")
    finally:
        con.close()  # checkpoints: no WAL of the old file is left to replay
    with open(fresh, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(fresh, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return {
        "bytes_before": before,
        "bytes_after": path.stat().st_size,
        "seconds": round(time.monotonic() - started, 3),
    }


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal, for the few places DuckDB takes no parameter
    (file paths and options of its readers, COPY, ATTACH)."""
    return "'" + value.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (a file's own column names)."""
    return '"' + name.replace('"', '""') + '"'


def _explain_io_error(config: Config, path: Path, exc: duckdb.IOException) -> DmpError:
    """Name the process holding the lock instead of showing DuckDB's stack."""
    match = _LOCK_HOLDER.search(str(exc))
    if not match:
        return DmpError(f"cannot open database {path}: {exc}")
    pid = match["pid"]
    command = _command_line(pid) or match["exe"]
    message = (
        f"database {path} is in use by PID {pid} ({command}). Only one process may write to it"
    )
    args = command.split()
    if "serve" not in args:
        return DatabaseInUse(
            f"{message}: stop that process, or if it is `dmp serve`, "
            "trigger the work through its HTTP API."
        )
    given = dict(zip(args, args[1:], strict=False))  # that server's own --host and --port
    host = given.get("--host", config.get("web.host"))
    url = f"http://{host}:{given.get('--port', config.get('web.port'))}/api"
    return DatabaseInUse(
        f"{message}, and it is `dmp serve`: trigger a job through its API instead, "
        f'curl -X POST -H "Authorization: Bearer ${config.get("web.api_token_env")}" '
        f"{url}/jobs/JOB/run (status: GET {url}/jobs)."
    )


def _command_line(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("dmp.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match["version"]), match["name"], entry.read_text()))
    return sorted(found)


def migrate(store: Store) -> list[int]:
    """Apply pending migrations; returns the versions applied."""
    con = store.con
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       VARCHAR NOT NULL,
            applied_at TIMESTAMP NOT NULL
        )
        """
    )
    applied = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    done = []
    for version, name, sql in migrations():
        if version in applied:
            continue
        with store.transaction():
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, utcnow()])
        done.append(version)
    return done
