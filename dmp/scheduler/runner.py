"""Runs jobs and records every run in ``job_runs``.

One Runner per process (the one that owns the database) serves the schedule,
the CLI and the HTTP API alike, so its lock is what keeps a job from running
twice at once: a second start is refused and recorded as ``skipped``. Each run
gets its own DuckDB cursor (DuckDB's rule for threads), which is also how a run
is stopped: interrupting the cursor aborts the running query and its open
transaction rolls back, for a run past its time limit (``timed_out``) or one
caught by a shutdown (``interrupted``). A job that raises is a ``failed`` run
with its traceback, never an exception for the caller, so one bad job cannot
stop the scheduler or the jobs after it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import duckdb

from dmp.clock import iso, utcnow
from dmp.config import Config
from dmp.errors import DmpError
from dmp.scheduler.schedule import Schedule
from dmp.store import Store

Job = Callable[[Store, Config, datetime], Mapping[str, Any]]

log = logging.getLogger(__name__)

# After interrupting a run at shutdown, how long to wait for it to unwind.
_UNWIND_SECONDS = 10


class UnknownJob(DmpError):
    """No job of that name is installed."""


class ShuttingDown(DmpError):
    """The runner is stopping and starts no new runs."""


@dataclass(frozen=True)
class JobRun:
    """One row of ``job_runs``."""

    run_id: int
    job: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    result: dict | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        seconds = (self.finished_at - self.started_at).total_seconds() if self.finished_at else None
        return {
            "run_id": self.run_id,
            "job": self.job,
            "trigger": self.trigger,
            "status": self.status,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_seconds": seconds,
            "result": self.result,
            "error": self.error,
        }


class RunHandle:
    """A run that was started: ``wait()`` for it; ``record`` is its latest state."""

    def __init__(self, record: JobRun, cursor: duckdb.DuckDBPyConnection | None):
        self.record = record
        self.cursor = cursor
        self.done = threading.Event()
        # Set when the run is interrupted: the status it ends with, and why.
        self.stopped: tuple[str, str] | None = None
        self._cursor_lock = threading.Lock()  # no interrupt on a closed cursor

    def wait(self) -> JobRun:
        self.done.wait()
        return self.record

    def interrupt(self, status: str, reason: str, within: float) -> bool:
        """Abort the run's query, again and again until the run ends (an interrupt that
        lands between two queries is lost) or ``within`` seconds pass; True if it ended."""
        self.stopped = self.stopped or (status, reason)
        deadline = time.monotonic() + within
        while True:
            with self._cursor_lock:
                if self.cursor is not None:
                    self.cursor.interrupt()
            if self.done.wait(0.1):
                return True
            if time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        with self._cursor_lock:
            self.cursor.close()
            self.cursor = None


class Runner:
    """Runs the installed ``jobs`` (name -> ``run(store, config, now)``) and records them."""

    def __init__(
        self,
        store: Store,
        config: Config,
        jobs: Mapping[str, Job],
        schedule: Schedule,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.store = store
        self.config = config
        self.jobs = jobs
        self.schedule = schedule
        self.clock = clock
        self._lock = threading.Lock()
        self._active: dict[str, RunHandle] = {}
        self._stopping = False
        self._close_orphans()

    def run(self, name: str, trigger: str) -> JobRun:
        """Run the job in this thread; returns how it ended (``skipped`` if already running)."""
        handle = self._claim(name, trigger)
        if handle.record.status == "running":
            self._execute(handle)
        return handle.record

    def start(self, name: str, trigger: str) -> RunHandle:
        """Start the job in a new thread and return at once."""
        handle = self._claim(name, trigger)
        if handle.record.status == "running":
            thread = threading.Thread(
                target=self._execute, args=[handle], name=f"job-{name}", daemon=True
            )
            thread.start()
        return handle

    def stop(self, timeout: float) -> list[JobRun]:
        """Start nothing new; give running jobs ``timeout`` seconds, then interrupt them.

        Returns the runs that ignored the interrupt (a job busy outside DuckDB),
        already recorded as interrupted: the caller should exit without waiting,
        and their open transactions die with the process.
        """
        with self._lock:
            self._stopping = True
            running = list(self._active.values())
        if not running:
            return []
        names = ", ".join(h.record.job for h in running)
        log.warning("stopping: waiting up to %g s for %s to finish", timeout, names)
        deadline = time.monotonic() + timeout
        for handle in running:
            handle.done.wait(max(0.0, deadline - time.monotonic()))
        stuck = []
        for handle in running:
            if handle.done.is_set():
                continue
            log.warning("stopping: interrupting %s; it rolls back", handle.record.job)
            if not handle.interrupt("interrupted", "stopped by a shutdown signal", _UNWIND_SECONDS):
                reason = "did not stop when interrupted; the process exited without it"
                self._finish(handle, "interrupted", None, reason)
                handle.done.set()
                stuck.append(handle.record)
        return stuck

    def skip(self, name: str, trigger: str, reason: str) -> JobRun:
        """Record a run that was not started, and why."""
        record = self._insert(name, trigger, "skipped", self.clock(), reason)
        log.warning("job %s %s (run %d)", name, reason, record.run_id)
        return record

    def get(self, run_id: int) -> JobRun | None:
        rows = self._read("SELECT * FROM job_runs WHERE run_id = ?", [run_id])
        return rows[0] if rows else None

    def recent(self, limit: int = 20) -> list[JobRun]:
        return self._read("SELECT * FROM job_runs ORDER BY run_id DESC LIMIT ?", [limit])

    def overview(self, limit: int = 20) -> dict:
        """Every installed or scheduled job with its schedule, next and last run; recent runs."""
        now = self.clock()
        last = {
            run.job: run
            for run in self._read(
                """
                SELECT * FROM job_runs WHERE status <> 'skipped'
                QUALIFY row_number() OVER (PARTITION BY job ORDER BY run_id DESC) = 1
                """
            )
        }
        with self._lock:
            running = set(self._active)
        jobs = []
        for name in [*self.jobs, *(n for n in self.schedule.jobs if n not in self.jobs)]:
            entry = self.schedule.jobs.get(name)
            installed = name in self.jobs
            jobs.append(
                {
                    "job": name,
                    "installed": installed,
                    "cron": entry.cron if entry else None,
                    "after": entry.after if entry else None,
                    "enabled": entry.enabled if entry else False,
                    "next_run": iso(self.schedule.next_run(name, now)) if installed else None,
                    "running": name in running,
                    "last_run": last[name].to_dict() if name in last else None,
                }
            )
        return {"jobs": jobs, "runs": [run.to_dict() for run in self.recent(limit)]}

    def _claim(self, name: str, trigger: str) -> RunHandle:
        """Record the run's start, or a ``skipped`` run when the job is already running."""
        if name not in self.jobs:
            raise UnknownJob(f"unknown job {name!r}; installed: {', '.join(self.jobs)}")
        with self._lock:
            if self._stopping:
                raise ShuttingDown("shutting down: no new job runs")
            running = self._active.get(name)
            if running is not None:
                reason = f"not started: run {running.record.run_id} of {name} is still running"
                handle = RunHandle(self.skip(name, trigger, reason), None)
                handle.done.set()
                return handle
            record = self._insert(name, trigger, "running", self.clock())
            handle = RunHandle(record, self.store.cursor())
            self._active[name] = handle
        return handle

    def _execute(self, handle: RunHandle) -> None:
        """Run the job, then record how it ended, whatever happened."""
        name = handle.record.job
        limit = self.schedule.time_limit_seconds(name)
        reason = f"ran past its time limit of {limit / 60:g} minutes"
        timer = threading.Timer(limit, self._time_out, [handle, reason])
        timer.daemon = True
        timer.start()
        log.info("job %s started (run %d, %s)", name, handle.record.run_id, handle.record.trigger)
        status, result, error = "failed", None, None
        try:
            job_store = Store(handle.cursor, self.store.path)
            result = dict(self.jobs[name](job_store, self.config, handle.record.started_at) or {})
            status = "succeeded"
            if handle.stopped:
                result["warnings"] = [*result.get("warnings", []), handle.stopped[1]]
        except Exception:
            error = traceback.format_exc()
            if handle.stopped:
                status, reason = handle.stopped
                error = f"{reason}; its open transaction rolled back"
        finally:
            timer.cancel()
            self._finish(handle, status, result, error)
            handle.close()
            # Only now: a process may exit once its runs are done, and a thread
            # still inside DuckDB at exit aborts the interpreter.
            handle.done.set()

    def _time_out(self, handle: RunHandle, reason: str) -> None:
        log.warning(
            "job %s (run %d) %s: interrupting it", handle.record.job, handle.record.run_id, reason
        )
        handle.interrupt("timed_out", reason, within=math.inf)

    def _finish(
        self, handle: RunHandle, status: str, result: dict | None, error: str | None
    ) -> None:
        """Record the end of a run, once (a stuck run may be recorded by ``stop`` first)."""
        with self._lock:
            if handle.record.status != "running":
                return
            stored = None if result is None else json.dumps(result, default=str)
            record = replace(
                handle.record,
                status=status,
                finished_at=self.clock(),
                result=None if stored is None else json.loads(stored),
                error=error,
            )
            self._write(
                """
                UPDATE job_runs SET status = ?, finished_at = ?, result = ?, error = ?
                WHERE run_id = ?
                """,
                [status, record.finished_at, stored, error, record.run_id],
            )
            handle.record = record
            del self._active[record.job]
        level = logging.INFO if status == "succeeded" else logging.ERROR
        seconds = (record.finished_at - record.started_at).total_seconds()
        detail = f": {error.strip().splitlines()[-1]}" if error else ""
        log.log(
            level,
            "job %s %s in %.1f s (run %d)%s",
            record.job,
            status,
            seconds,
            record.run_id,
            detail,
        )

    def _insert(
        self, name: str, trigger: str, status: str, now: datetime, error: str | None = None
    ) -> JobRun:
        """Record a run; runs older than ``store.history_days`` go at the same time, so a
        long-running scheduler keeps the history trimmed too."""
        keep_after = now - timedelta(days=self.config.get("store.history_days"))
        self._write("DELETE FROM job_runs WHERE started_at < ?", [keep_after])
        finished = None if status == "running" else now
        (run_id,) = self._write(
            """
            INSERT INTO job_runs (job, trigger, status, started_at, finished_at, error)
            VALUES (?, ?, ?, ?, ?, ?) RETURNING run_id
            """,
            [name, trigger, status, now, finished, error],
        )
        return JobRun(run_id, name, trigger, status, now, finished, None, error)

    def _close_orphans(self) -> None:
        """'running' rows left by a process that died mid-run: this process owns the file
        now, so those runs are over, and their uncommitted transactions are gone."""
        self._write(
            "UPDATE job_runs SET status = 'interrupted', finished_at = ?, error = ? "
            "WHERE status = 'running'",
            [self.clock(), "the process running it ended first; its open transaction was lost"],
        )

    def _write(self, sql: str, params: list) -> tuple | None:
        with self.store.cursor() as cur:
            return cur.execute(sql, params).fetchone()

    def _read(self, sql: str, params: list | None = None) -> list[JobRun]:
        with self.store.cursor() as cur:
            rows = cur.execute(sql, params or []).fetchall()
        return [JobRun(*row[:6], json.loads(row[6]) if row[6] else None, row[7]) for row in rows]
