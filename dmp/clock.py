"""The one source of "now".

Timestamps in the database are UTC without a zone (DuckDB ``TIMESTAMP``), so
every function that needs the time takes ``now`` as an argument and falls back
to :func:`utcnow`; tests freeze or pass it instead of sleeping.
"""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Current UTC time as a naive datetime, the form stored in DuckDB."""
    return datetime.now(UTC).replace(tzinfo=None)
