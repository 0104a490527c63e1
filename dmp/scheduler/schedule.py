"""The schedule: when each job runs, from ``config/schedule.toml``.

The shipped file holds the documented defaults; ``$DMP_HOME/schedule.toml``
overrides it key by key (both read by :meth:`Config.layers`, like dmp.toml).
Everything is checked at load, so a typo is an error naming the file, the job
and the key before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from dmp.config import Config
from dmp.errors import ConfigError

FILENAME = "schedule.toml"
KEYS = ("after", "cron", "enabled", "time_limit_minutes")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class JobSchedule:
    """One job's entry: a cron trigger, a job it runs after, or both."""

    name: str
    cron: str | None
    trigger: CronTrigger | None
    after: str | None
    enabled: bool
    time_limit_minutes: float | None


@dataclass(frozen=True)
class Schedule:
    """Every job entry, in file order, with the [scheduler] settings they run under."""

    jobs: Mapping[str, JobSchedule]
    timezone: ZoneInfo
    misfire_grace_seconds: int
    time_limit_minutes: float

    def time_limit_seconds(self, name: str) -> float:
        """The job's own limit, else the default; jobs not in the schedule get the default."""
        job = self.jobs.get(name)
        return 60 * ((job and job.time_limit_minutes) or self.time_limit_minutes)

    def next_run(self, name: str, now: datetime) -> datetime | None:
        """When the job's cron next fires at or after ``now`` (naive UTC in and out)."""
        job = self.jobs.get(name)
        if job is None or job.trigger is None or not job.enabled:
            return None
        fire = job.trigger.get_next_fire_time(None, now.replace(tzinfo=UTC))
        return fire.astimezone(UTC).replace(tzinfo=None) if fire else None

    def dependents(self, name: str) -> list[str]:
        """Enabled jobs that run right after ``name`` succeeds."""
        return [job.name for job in self.jobs.values() if job.after == name and job.enabled]


def load_schedule(config: Config) -> Schedule:
    """Read, merge and check the schedule files of the instance."""
    merged: dict[str, dict[str, Any]] = {}
    origin: dict[tuple[str, str | None], Path] = {}
    for path, tables in config.layers(FILENAME):
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: {name} must be a job table, [{name}]")
            merged.setdefault(name, {}).update(table)
            origin[name, None] = path
            origin.update({(name, key): path for key in table})
    timezone = _timezone(config.get("scheduler.timezone"))
    jobs = {name: _job(name, entry, origin, timezone) for name, entry in merged.items()}
    _check_after(jobs, origin)
    return Schedule(
        jobs=jobs,
        timezone=timezone,
        misfire_grace_seconds=config.get("scheduler.misfire_grace_seconds"),
        time_limit_minutes=config.get("scheduler.time_limit_minutes"),
    )


def _timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"config key scheduler.timezone: unknown time zone {name!r}") from None


def _job(name: str, entry: dict[str, Any], origin: dict, timezone: ZoneInfo) -> JobSchedule:
    """Check one merged job table; errors name the file that set the key."""

    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{origin[name, key]}: [{name}] {key}: {problem}")

    for key, value in entry.items():
        if key not in KEYS:
            raise bad(key, f"unknown key (known: {', '.join(KEYS)})")
        if key in ("cron", "after") and not isinstance(value, str):
            raise bad(key, f"expected a string, got {value!r}")
    if not isinstance(entry.get("enabled", True), bool):
        raise bad("enabled", f"expected true or false, got {entry['enabled']!r}")
    limit = entry.get("time_limit_minutes")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)):
        raise bad("time_limit_minutes", f"expected a number of minutes, got {limit!r}")
    if limit is not None and limit <= 0:
        raise bad("time_limit_minutes", f"expected a number above 0, got {limit!r}")
    cron, trigger = entry.get("cron"), None
    if cron is not None:
        try:
            trigger = cron_trigger(cron, timezone)
        except ValueError as exc:
            raise bad("cron", f"bad cron expression {cron!r} ({exc})") from None
    if cron is None and entry.get("after") is None:
        raise ConfigError(f"{origin[name, None]}: [{name}] needs cron, after, or both")
    return JobSchedule(
        name=name,
        cron=cron,
        trigger=trigger,
        after=entry.get("after"),
        enabled=entry.get("enabled", True),
        time_limit_minutes=limit,
    )


def cron_trigger(expr: str, timezone: ZoneInfo) -> CronTrigger:
    """A trigger for a standard five-field cron expression.

    Not ``CronTrigger.from_crontab``: APScheduler 3 reads its day of week with
    0 = Monday (its issue 286), so "1" would fire on Tuesdays. The weekday field
    is rewritten as day names, which it cannot misread.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        # cron fires when either matches, APScheduler only when both do.
        raise ValueError("give a day of the month or a day of the week, not both")
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_weekdays(weekday),
        timezone=timezone,
    )


def _weekdays(field: str) -> str:
    """Cron's day-of-week field (0 or 7 = Sunday, names, ranges, steps) as day names."""
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        first, _, last = span.partition("-")
        if span == "*":
            start, end = 0, 6
        else:
            start = _day(first)
            end = _day(last) if last else (6 if step else start)
        if (step and not step.isdigit()) or step == "0" or end < start:
            raise ValueError(f"bad day of week {item!r}")
        days.update(day % 7 for day in range(start, end + 1, int(step or 1)))
    return ",".join(_DAYS[day] for day in sorted(days))


def _day(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text.lower() in _DAYS:
        return _DAYS.index(text.lower())
    raise ValueError(f"bad day of week {text!r}")


def _check_after(jobs: Mapping[str, JobSchedule], origin: dict) -> None:
    """Every ``after`` names a job of the schedule, and no chain comes back to itself."""
    chained = [job for job in jobs.values() if job.after is not None]
    for job in chained:
        if job.after not in jobs:
            where = origin[job.name, "after"]
            raise ConfigError(f"{where}: [{job.name}] after: no job {job.after!r} in the schedule")
    for job in chained:
        chain, current = [job.name], job.after
        while current is not None and current not in chain:
            chain.append(current)
            current = jobs[current].after
        if current == job.name:
            where = origin[job.name, "after"]
            cycle = " after ".join([*chain, current])
            raise ConfigError(f"{where}: [{job.name}] after: dependency cycle {cycle}")
