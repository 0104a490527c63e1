"""Scheduler and job runner: run, jobs, scheduler, serve. Every run goes through
dmp.scheduler.Runner, which records it in job_runs."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

from dmp.cli.app import Context, emit_json, json_option, log_to_stderr, main, pass_ctx
from dmp.errors import DmpError

log = logging.getLogger("dmp.cli")


@main.command("run")
@click.argument("names", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Report what the jobs would do; change nothing.")
@json_option
@pass_ctx
def run_jobs(ctx: Context, names: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Run pipeline jobs once, in the order given (or `all`); each run is recorded.

    Exit status is 1 unless every run succeeded. SIGTERM or Ctrl-C starts no
    more jobs and gives the running one scheduler.stop_timeout_seconds to
    finish before it is interrupted (its open transaction rolls back). With
    --json, prints a list of runs: run_id, job, trigger, status, started_at,
    finished_at, duration_seconds, result, error.
    """
    from dmp.scheduler import run_in_order
    from jobs import JOBS

    chosen = list(JOBS) if names == ("all",) else list(names)
    unknown = [n for n in chosen if n not in JOBS]
    if unknown:
        raise click.UsageError(f"unknown job(s) {', '.join(unknown)}; known: {', '.join(JOBS)}")
    if dry_run:
        JOBS = _dry_runs(JOBS, chosen)  # noqa: N806 (the same mapping, dry)
    log_to_stderr(logging.WARNING)
    with _runner(ctx, JOBS) as runner:
        runs, not_started, stuck = run_in_order(
            runner, chosen, ctx.config.get("scheduler.stop_timeout_seconds")
        )
        _exit_if_stuck(stuck)
    if as_json:
        emit_json([run.to_dict() for run in runs])
    else:
        for run in runs:
            click.echo(_describe_run(run.to_dict(), full_error=True))
    if not_started:
        click.echo(f"not started (stopping): {', '.join(not_started)}", err=True)
    if not_started or any(run.status != "succeeded" for run in runs):
        sys.exit(1)


@main.command("jobs")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many recent runs to list.",
)
@json_option
@pass_ctx
def list_jobs(ctx: Context, limit: int, as_json: bool) -> None:
    """Each job with its schedule, next and last run; then the most recent runs.

    With --json: {"jobs": [{job, installed, cron, after, enabled, next_run,
    running, last_run}], "runs": [...]} (runs as in `dmp run --json`).
    """
    with _runner(ctx) as runner:
        info = runner.overview(limit)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{'job':<10} {'schedule':<16} {'next run (UTC)':<21} last run")
    for job in info["jobs"]:
        when = job["cron"] or (f"after {job['after']}" if job["after"] else "on demand")
        last = job["last_run"]
        if not job["installed"]:
            state = "not installed"
        elif job["running"]:
            state = "running now"
        elif last:
            state = f"{last['status']} {last['started_at']} ({last['trigger']})"
        else:
            state = "never"
        if not job["enabled"] and job["installed"] and when != "on demand":
            when = "off"
        click.echo(f"{job['job']:<10} {when:<16} {job['next_run'] or '-':<21} {state}")
    if info["runs"]:
        click.echo("\nrecent runs")
        for run in info["runs"]:
            click.echo(_describe_run(run, full_error=False))


@main.command()
@pass_ctx
def scheduler(ctx: Context) -> None:
    """Run the jobs on the schedule in config/schedule.toml until SIGTERM or Ctrl-C.

    Logs go to stderr. The process owns the database meanwhile; use `dmp serve`
    instead to also trigger jobs and see their status over HTTP.
    """
    from dmp.scheduler import create_scheduler, serve_until_stopped

    log_to_stderr(logging.INFO)
    with _runner(ctx) as runner:
        log.info("dmp scheduler: running (pid %d); stop with SIGTERM or Ctrl-C", os.getpid())
        stuck = serve_until_stopped(
            runner,
            create_scheduler(runner),
            threading.Event().wait,
            ctx.config.get("scheduler.stop_timeout_seconds"),
        )
        _exit_if_stuck(stuck)


@main.command()
@click.option("--host", help="Address to listen on [default: web.host, 127.0.0.1].")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on [default: web.port, 8080]; 0 picks a free one.",
)
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None) -> None:
    """The web app with its JSON API (on waitress) and the scheduler, in one process.

    The process owns the database, so other `dmp` commands cannot open it
    meanwhile: trigger jobs with POST /api/jobs/JOB/run and see them with
    GET /api/jobs (bearer token from the variable named by web.api_token_env).
    Stops gracefully on SIGTERM or Ctrl-C, like `dmp scheduler`.
    """
    from dmp.scheduler import create_scheduler, serve_until_stopped
    from dmp.web import create_app, start_spool_rotator
    from dmp.web.limits import create_server

    config = ctx.config
    host = host or config.get("web.host")
    port = config.get("web.port") if port is None else port
    log_to_stderr(logging.INFO)
    with _runner(ctx) as runner:
        app = create_app(config, runner=runner)
        if not app.config["API_TOKEN"]:
            log.warning("API off: %s is not set", app.config["API_TOKEN_ENV"])
        try:
            server = create_server(app, config, host, port)  # body caps while reading
        except OSError as exc:
            raise DmpError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        server.print_listen(f"dmp serve: listening on http://{{}}:{{}} (pid {os.getpid()})")
        rotator = start_spool_rotator(app)  # collector spool files reach ingest on time
        try:
            stuck = serve_until_stopped(
                runner,
                create_scheduler(runner),
                server.run,
                config.get("scheduler.stop_timeout_seconds"),
            )
        finally:
            rotator.stop()
        _exit_if_stuck(stuck)


@contextmanager
def _runner(ctx: Context, jobs: dict | None = None) -> Iterator:
    """The instance's Runner over ``jobs`` (default: all installed); the schedule is
    checked first."""
    from dmp.scheduler import Runner, load_schedule
    from jobs import JOBS

    schedule = load_schedule(ctx.config)
    with ctx.store() as store:
        yield Runner(store, ctx.config, JOBS if jobs is None else jobs, schedule)


def _dry_runs(jobs: dict, chosen: list[str]) -> dict:
    """The chosen jobs with ``dry_run=True``; a job that cannot pretend is a usage error."""
    unable = [n for n in chosen if "dry_run" not in inspect.signature(jobs[n]).parameters]
    if unable:
        raise click.UsageError(f"job(s) without a dry run: {', '.join(unable)}")
    return {name: functools.partial(jobs[name], dry_run=True) for name in chosen}


def _exit_if_stuck(stuck: list) -> None:
    """A job ignored the interrupt: leave without it (its transaction dies uncommitted)
    rather than close the database under it or hang."""
    if stuck:
        names = ", ".join(run.job for run in stuck)
        click.echo(f"error: {names} did not stop; exiting without it", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _describe_run(run: dict, full_error: bool) -> str:
    seconds = run["duration_seconds"]
    took = f"{seconds:.1f} s" if seconds is not None else "running"
    line = (
        f"#{run['run_id']:<5} {run['job']:<10} {run['trigger']:<8} {run['status']:<11} "
        f"{run['started_at']}  {took}"
    )
    if run["result"]:
        line += "  " + ", ".join(
            f"{k} {_brief(v)}" for k, v in run["result"].items() if _brief(v) is not None
        )
    if run["error"]:
        error = run["error"].rstrip() if full_error else run["error"].rstrip().rsplit("\n", 1)[-1]
        line += "\n" + textwrap.indent(error, "    ")
    return line


def _brief(value):
    """A result value short enough for one line: lists become counts, nested detail
    is left to --json and `dmp jobs`."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        flat = {k: v for k, v in value.items() if not isinstance(v, list | dict)}
        return flat or None
    return value
