"""The job runner and the scheduler: every run recorded, no overlaps, crashes contained,
time limits and stop signals that leave the database consistent."""

from __future__ import annotations

import json
import queue
import signal
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES

from dmp.scheduler import ShuttingDown, UnknownJob, create_scheduler
from dmp.store import open_store
from tests.conftest import NOW, read_until

# A DuckDB query that runs until it is interrupted.
ENDLESS = "SELECT sum(hash(i)) FROM range(10000000000000) t(i)"


def write_rows(store) -> None:
    store.con.execute(
        "INSERT INTO quarantine (file_id, file, line, reason, quarantined_at) "
        "SELECT 0, 'job', i, 'test', now()::TIMESTAMP FROM range(100) t(i)"
    )


def boom(store, config, now):
    with store.transaction():
        write_rows(store)
        raise ZeroDivisionError("boom")


def endless(store, config, now):
    with store.transaction():
        write_rows(store)
        store.con.execute(ENDLESS)
    return {}


def ok(store, config, now):
    return {"now": now, "devices": store.con.execute("SELECT count(*) FROM devices").fetchone()[0]}


def runs(store) -> list[tuple]:
    return store.con.execute("SELECT job, trigger, status FROM job_runs ORDER BY run_id").fetchall()


def quarantined(store) -> int:
    return store.con.execute("SELECT count(*) FROM quarantine").fetchone()[0]


def schedule_file(home, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "schedule.toml").write_text(text)


def test_a_run_is_recorded_with_its_result_trigger_and_clock(make_runner, store):
    runner = make_runner({"ok": ok})
    record = runner.run("ok", "cli")
    assert (record.status, record.trigger, record.started_at) == (
        "succeeded",
        "cli",
        runner.clock(),
    )
    assert record.result == {"now": "2026-11-20 12:00:00", "devices": 0}  # the job got `now`
    assert runner.get(record.run_id) == record
    assert runs(store) == [("ok", "cli", "succeeded")]
    with pytest.raises(UnknownJob, match="unknown job 'nope'; installed: ok"):
        runner.run("nope", "cli")


def test_runs_older_than_the_history_are_pruned_as_new_ones_start(make_runner, store):
    now = [NOW]
    runner = make_runner({"ok": ok}, clock=lambda: now[0])
    runner.run("ok", "cli")
    now[0] = later = NOW + timedelta(days=366)  # the same, long-running runner
    runner.run("ok", "cli")
    assert [r[0] for r in store.con.execute("SELECT started_at FROM job_runs").fetchall()] == [
        later
    ]


def test_a_crash_is_recorded_with_traceback_and_rolled_back(make_runner, store):
    runner = make_runner({"boom": boom, "ok": ok})
    failed = runner.run("boom", "schedule")
    assert failed.status == "failed"
    assert "Traceback" in failed.error and "ZeroDivisionError: boom" in failed.error
    assert quarantined(store) == 0
    assert runner.run("ok", "schedule").status == "succeeded"
    assert runner.run("boom", "schedule").status == "failed"  # retried on its next turn
    assert runs(store) == [
        ("boom", "schedule", "failed"),
        ("ok", "schedule", "succeeded"),
        ("boom", "schedule", "failed"),
    ]


def test_a_job_never_runs_twice_at_once(make_runner, store, gate):
    runner = make_runner({"gate": gate, "ok": ok})
    first = runner.start("gate", "api")
    assert gate.entered.wait(10)
    second = runner.run("gate", "schedule")
    assert second.status == "skipped"
    assert f"run {first.record.run_id} of gate is still running" in second.error
    assert runner.overview()["jobs"][0]["running"] is True
    assert runner.run("ok", "cli").status == "succeeded"  # other jobs are not held up
    gate.release.set()
    assert first.wait().status == "succeeded"
    assert runs(store) == [
        ("gate", "api", "succeeded"),
        ("gate", "schedule", "skipped"),
        ("ok", "cli", "succeeded"),
    ]
    assert runner.overview()["jobs"][0]["last_run"]["status"] == "succeeded"


def test_a_run_past_its_time_limit_is_interrupted_and_rolled_back(home, make_runner, store):
    schedule_file(home, '[endless]\ncron = "0 0 1 1 *"\ntime_limit_minutes = 0.001\n')
    record = make_runner({"endless": endless}).run("endless", "schedule")
    assert record.status == "timed_out"
    assert "ran past its time limit of 0.001 minutes; its open transaction rolled back" in (
        record.error
    )
    assert quarantined(store) == 0


def test_stop_interrupts_a_running_job_and_refuses_new_ones(config, make_runner, store):
    runner = make_runner({"endless": endless, "ok": ok})
    handle = runner.start("endless", "api")
    assert runner.stop(timeout=0) == []
    assert handle.record.status == "interrupted"
    assert "stopped by a shutdown signal" in handle.record.error
    assert quarantined(store) == 0
    with pytest.raises(ShuttingDown):
        runner.start("ok", "api")


def test_runs_left_running_by_a_dead_process_are_closed(make_runner, store):
    store.con.execute(
        "INSERT INTO job_runs (job, trigger, status, started_at) "
        "VALUES ('ingest', 'schedule', 'running', TIMESTAMP '2026-11-20 03:00:00')"
    )
    runner = make_runner({"ok": ok})
    [orphan] = runner.recent()
    assert orphan.status == "interrupted" and "process running it ended" in orphan.error


def test_scheduler_runs_each_job_once_at_a_time(home, make_runner, store, caplog):
    schedule_file(home, '[report]\nafter = "ok"\n[ok]\ncron = "0 3 * * *"\n')
    runner = make_runner({"ingest": ok, "ok": ok, "report": ok})
    with caplog.at_level("INFO", logger="dmp.scheduler"):
        scheduler = create_scheduler(runner)
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown()
    assert set(jobs) == {"ingest", "ok"}  # report runs after ok; the rest are not installed
    assert (jobs["ingest"].max_instances, jobs["ingest"].coalesce) == (1, True)
    assert jobs["ingest"].misfire_grace_time == 300
    assert "job expire is not installed yet; skipped" in caplog.text


def test_a_tick_while_the_job_still_runs_is_skipped_and_recorded(home, make_runner, store, gate):
    schedule_file(home, '[gate]\ncron = "0 0 1 1 *"\n')
    runner = make_runner({"gate": gate})
    scheduler = create_scheduler(runner)
    missed: queue.Queue = queue.Queue()
    scheduler.add_listener(missed.put, EVENT_JOB_MAX_INSTANCES)
    scheduler.start()
    try:
        scheduler.modify_job("gate", next_run_time=datetime.now(UTC))
        assert gate.entered.wait(30)
        scheduler.modify_job("gate", next_run_time=datetime.now(UTC))
        assert missed.get(timeout=30).job_id == "gate"
        gate.release.set()
    finally:
        scheduler.shutdown()
    assert runs(store) == [("gate", "schedule", "succeeded"), ("gate", "schedule", "skipped")]
    assert "previous scheduled run" in runner.recent()[0].error


def test_a_crash_in_one_job_leaves_the_scheduler_running(home, make_runner, store):
    schedule_file(
        home,
        '[boom]\ncron = "0 0 1 1 *"\n[ok]\ncron = "0 0 1 1 *"\n'
        '[after_ok]\nafter = "ok"\n[after_boom]\nafter = "boom"\n',
    )
    runner = make_runner({"boom": boom, "ok": ok, "after_ok": ok, "after_boom": ok})
    scheduler = create_scheduler(runner)
    done: queue.Queue = queue.Queue()
    scheduler.add_listener(lambda event: done.put(event), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    try:
        for attempt in ("boom", "ok", "boom"):
            scheduler.modify_job(attempt, next_run_time=datetime.now(UTC))
            event = done.get(timeout=30)
            assert event.job_id == attempt and event.exception is None
        assert scheduler.running
    finally:
        scheduler.shutdown()
    assert runs(store) == [
        ("boom", "schedule", "failed"),
        ("ok", "schedule", "succeeded"),
        ("after_ok", "schedule", "succeeded"),  # the chain goes on after a success only
        ("boom", "schedule", "failed"),
    ]
    assert "ZeroDivisionError" in runner.recent()[0].error


def test_cli_run_and_jobs(cli, home, monkeypatch):
    from jobs import JOBS

    monkeypatch.setitem(JOBS, "boom", boom)
    schedule_file(home, '[report]\nafter = "ingest"\n[future]\ncron = "0 1 * * *"\n')
    result = cli("run", "ingest", "boom", "--json")
    assert result.exit_code == 1
    ran = json.loads(result.stdout)
    assert [(r["job"], r["trigger"], r["status"]) for r in ran] == [
        ("ingest", "cli", "succeeded"),
        ("boom", "cli", "failed"),
    ]
    assert "ZeroDivisionError" in ran[1]["error"]
    human = cli("run", "boom")
    assert human.exit_code == 1 and "Traceback" in human.output

    info = json.loads(cli("jobs", "--json").stdout)
    by_name = {job["job"]: job for job in info["jobs"]}
    assert by_name["ingest"]["cron"] == "*/5 * * * *" and by_name["ingest"]["next_run"]
    assert by_name["boom"]["last_run"]["run_id"] == 3 and by_name["boom"]["cron"] is None
    assert by_name["future"]["installed"] is False and by_name["future"]["next_run"] is None
    assert [r["run_id"] for r in info["runs"]] == [3, 2, 1]
    listing = cli("jobs").output
    assert "after ingest" in listing and "on demand" in listing and "not installed" in listing


def test_sigterm_during_run_rolls_back_and_records_it(dmp_process, config):
    proc = dmp_process(
        "--set", "scheduler.stop_timeout_seconds=0", "run", "slow", "ingest", "--json"
    )
    assert proc.stdout.readline() == "inside\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    [run] = json.loads(out)
    assert (run["job"], run["status"]) == ("slow", "interrupted")
    assert "not started (stopping): ingest" in err
    with open_store(config) as store:
        assert quarantined(store) == 0  # the transaction's 1,000 rows are gone
        assert runs(store) == [("slow", "cli", "interrupted")]


def test_sigterm_lets_the_running_job_finish_and_starts_no_more(dmp_process, config):
    proc = dmp_process("run", "waits", "ingest", "--json")
    assert proc.stdout.readline() == "inside\n"
    proc.send_signal(signal.SIGTERM)
    read_until(proc.stderr, "stopping: waiting up to 30 s for waits")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert [(r["job"], r["status"]) for r in json.loads(out)] == [("waits", "succeeded")]
    with open_store(config) as store:
        assert quarantined(store) == 1000  # committed whole
        assert runs(store) == [("waits", "cli", "succeeded")]


def test_scheduler_command_stops_on_sigterm(dmp_process, home):
    schedule_file(home, '[future]\ncron = "0 1 * * *"\n')
    proc = dmp_process("scheduler")
    lines = read_until(proc.stderr, "dmp scheduler: running")
    lines += read_until(proc.stderr, "schedule: ingest next runs at")
    assert any("job future is not installed yet; skipped" in line for line in lines)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM received: stopping" in err
