"""The scheduler service: APScheduler in this process, running jobs through the Runner.

`dmp scheduler` runs it alone, `dmp serve` beside the web app: one process owns
the database, so scheduled, CLI and HTTP runs all share one Runner and its lock.
Each cron job runs at most once at a time, missed runs collapse into one, and a
run later than the misfire grace time waits for its next turn.

SIGTERM or Ctrl-C stops gracefully: nothing new starts, and the running job
gets ``scheduler.stop_timeout_seconds`` to finish before it is interrupted and
its open transaction rolls back. A second signal ends the process at once,
which is still safe: DuckDB never keeps a transaction that did not commit.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.background import BackgroundScheduler

from dmp.scheduler.runner import JobRun, RunHandle, Runner, ShuttingDown

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_STILL_RUNNING = "not started: its previous scheduled run (or the chain after it) is still going"


class Stop(KeyboardInterrupt):
    """A stop signal arrived; raised in the main thread (waitress treats it as Ctrl-C)."""


def create_scheduler(runner: Runner) -> BackgroundScheduler:
    """A scheduler (not started) firing every installed, enabled cron job of the schedule."""
    schedule = runner.schedule
    scheduler = BackgroundScheduler(
        timezone=schedule.timezone,
        job_defaults={
            "max_instances": 1,
            "coalesce": True,
            "misfire_grace_time": schedule.misfire_grace_seconds,
        },
    )
    scheduler.add_listener(
        lambda event: runner.skip(event.job_id, "schedule", _STILL_RUNNING), EVENT_JOB_MAX_INSTANCES
    )
    for entry in schedule.jobs.values():
        if entry.name not in runner.jobs:
            log.info("schedule: job %s is not installed yet; skipped", entry.name)
        elif entry.enabled and entry.trigger is not None:
            scheduler.add_job(
                run_chain, entry.trigger, args=[runner, entry.name], id=entry.name, name=entry.name
            )
    return scheduler


def run_chain(runner: Runner, name: str) -> None:
    """Run a scheduled job, then, if it succeeded, the jobs scheduled ``after`` it."""
    try:
        record = runner.run(name, "schedule")
    except ShuttingDown:
        return
    if record.status == "succeeded":
        for dependent in runner.schedule.dependents(name):
            if dependent in runner.jobs:
                run_chain(runner, dependent)


def serve_until_stopped(
    runner: Runner, scheduler: BackgroundScheduler, serve: Callable[[], None], stop_timeout: float
) -> list[JobRun]:
    """Start the scheduler, block in ``serve`` until a stop signal, then stop gracefully.

    Returns the runs that ignored the interrupt (see :meth:`Runner.stop`).
    """
    with stop_on_signals():
        try:
            scheduler.start()
            for job in scheduler.get_jobs():
                log.info("schedule: %s next runs at %s", job.id, job.next_run_time)
            serve()
        except Stop:
            pass
        if scheduler.running:
            scheduler.shutdown(wait=False)
        return runner.stop(stop_timeout)


def run_in_order(
    runner: Runner, names: Sequence[str], stop_timeout: float
) -> tuple[list[JobRun], list[str], list[JobRun]]:
    """Run jobs one after another for `dmp run`, stopping gracefully on a signal.

    Returns the runs, the names left unstarted, and the runs that ignored the interrupt.
    """
    handles: list[RunHandle] = []
    stuck: list[JobRun] = []
    with stop_on_signals():
        try:
            for name in names:
                handles.append(runner.start(name, "cli"))
                handles[-1].wait()
        except Stop:
            stuck = runner.stop(stop_timeout)
    return [h.record for h in handles], list(names[len(handles) :]), stuck


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """In the main thread, the first SIGTERM or SIGINT raises :class:`Stop`; the next
    one has its default effect and ends the process at once."""

    def handle(signum: int, frame: object) -> None:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        log.warning(
            "%s received: stopping (send it again to stop at once)", signal.Signals(signum).name
        )
        raise Stop(signum)

    previous = {sig: signal.signal(sig, handle) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
