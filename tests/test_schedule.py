"""schedule.toml: shipped defaults, instance overrides, checks; fire times from a given clock."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dmp.config import load_config
from dmp.errors import ConfigError
from dmp.scheduler import load_schedule
from tests.conftest import NOW


def test_shipped_schedule_fire_times(config):
    schedule = load_schedule(config)
    now = NOW + timedelta(minutes=1)  # 2026-11-20 12:01 UTC
    assert schedule.next_run("ingest", now) == datetime(2026, 11, 20, 12, 5)
    assert schedule.next_run("ingest", datetime(2026, 11, 20, 12, 5)) == datetime(
        2026, 11, 20, 12, 5
    )
    assert schedule.next_run("expire", now) == datetime(2026, 11, 21, 2, 0)
    assert schedule.next_run("lookalike", now) == datetime(2026, 11, 21, 5, 0)
    assert schedule.next_run("sync", now) == datetime(2026, 11, 20, 13, 0)
    # The nightly chain: profile runs after expire, segments and cluster after profile.
    assert schedule.next_run("profile", now) is None
    assert schedule.dependents("expire") == ["profile"]
    assert schedule.dependents("profile") == ["segments", "cluster"]
    assert schedule.next_run("not-scheduled", now) is None
    assert schedule.time_limit_seconds("ingest") == 120 * 60


@pytest.mark.parametrize(
    ("weekday", "first_run"),
    [
        ("1", datetime(2026, 11, 23, 6, 30)),  # Monday, as in cron (APScheduler 3 says Tuesday)
        ("0", datetime(2026, 11, 22, 6, 30)),  # Sunday
        ("7", datetime(2026, 11, 22, 6, 30)),  # Sunday too
        ("1-5/2", datetime(2026, 11, 23, 6, 30)),  # Mon, Wed, Fri
        ("sat", datetime(2026, 11, 21, 6, 30)),
        ("5", datetime(2026, 11, 27, 6, 30)),  # Friday, after this morning's 06:30
    ],
)
def test_day_of_week_counts_like_cron(home, config, weekday, first_run):
    home.mkdir(parents=True, exist_ok=True)
    (home / "schedule.toml").write_text(f'[report]\ncron = "30 6 * * {weekday}"\n')
    assert load_schedule(config).next_run("report", NOW) == first_run  # NOW: Fri 20 Nov 12:00


def test_cron_is_read_in_the_configured_time_zone(home):
    config = load_config(home, env={"DMP_SCHEDULER__TIMEZONE": "Europe/Berlin"})
    # 02:00 in Berlin is 01:00 UTC in November (CET) and 00:00 UTC in July (CEST).
    schedule = load_schedule(config)
    assert schedule.next_run("expire", NOW) == datetime(2026, 11, 21, 1, 0)
    assert schedule.next_run("expire", datetime(2026, 7, 1, 12)) == datetime(2026, 7, 2, 0, 0)


def test_instance_file_overrides_key_by_key(home, config):
    home.mkdir(parents=True, exist_ok=True)
    (home / "schedule.toml").write_text(
        "[ingest]\ntime_limit_minutes = 0.5\n"
        "[sync]\nenabled = false\n"
        '[report]\ncron = "30 6 * * 1"\n'
    )
    schedule = load_schedule(config)
    assert schedule.jobs["ingest"].cron == "*/5 * * * *"  # kept from the shipped file
    assert schedule.time_limit_seconds("ingest") == 30
    assert schedule.next_run("sync", NOW) is None
    assert schedule.next_run("report", NOW) == datetime(2026, 11, 23, 6, 30)  # next Monday


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[ingest]\ncronn = "* * * * *"\n', "[ingest] cronn: unknown key"),
        ('[ingest]\ncron = "61 * * * *"\n', "[ingest] cron: bad cron expression '61 * * * *'"),
        ('[ingest]\ncron = "* * *"\n', "[ingest] cron: bad cron expression"),
        ('[ingest]\ncron = "0 0 * * 8"\n', "bad day of week '8'"),
        ('[ingest]\ncron = "0 0 1 * 1"\n', "a day of the month or a day of the week, not both"),
        ("[ingest]\ncron = 5\n", "[ingest] cron: expected a string"),
        ("[ingest]\nenabled = 1\n", "[ingest] enabled: expected true or false"),
        ("[ingest]\ntime_limit_minutes = 0\n", "[ingest] time_limit_minutes: expected a number"),
        ('[report]\nafter = "nightly"\n', "[report] after: no job 'nightly' in the schedule"),
        ("[report]\nenabled = true\n", "[report] needs cron, after, or both"),
        ('cron = "* * * * *"\n', "cron must be a job table"),
        (
            '[profile]\nafter = "segments"\n',
            "[profile] after: dependency cycle profile after segments after profile",
        ),
    ],
)
def test_bad_schedule_is_an_error_naming_file_job_and_key(home, config, text, message):
    home.mkdir(parents=True, exist_ok=True)
    (home / "schedule.toml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_schedule(config)
    assert message in str(raised.value)
    assert str(home / "schedule.toml") in str(raised.value)


def test_unknown_time_zone_is_a_config_error(home):
    config = load_config(home, env={"DMP_SCHEDULER__TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="scheduler.timezone: unknown time zone 'Mars/Olympus'"):
        load_schedule(config)


def test_cli_reports_a_bad_schedule_before_touching_the_database(cli, home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "schedule.toml").write_text('[ingest]\ncron = "every minute"\n')
    result = cli("jobs")
    assert result.exit_code == 1
    assert "error:" in result.output and "[ingest] cron: bad cron expression" in result.output
    assert not (home / "dmp.duckdb").exists()
