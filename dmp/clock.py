"""The one source of "now".

Timestamps in the database are UTC without a zone (DuckDB ``TIMESTAMP``), so
every function that needs the time takes ``now`` as an argument and falls back
to :func:`utcnow`; tests freeze or pass it instead of sleeping.
"""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Current UTC time as a naive datetime, the form stored in DuckDB."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """A stored (naive UTC) timestamp as ISO-8601 with ``Z``, for JSON output."""
    return None if value is None else value.isoformat(timespec="seconds") + "Z"
