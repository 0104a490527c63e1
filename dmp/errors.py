"""Errors meant for people: the CLI prints their message, never a traceback."""


class DmpError(Exception):
    """Base of every error whose message is written for the user."""


class ConfigError(DmpError):
    """A configuration value is missing, unknown or of the wrong type."""


class DatabaseInUse(DmpError):
    """Another process holds the DuckDB file read-write."""


class RejectedFile(DmpError):
    """An input file cannot be read at all; nothing of it is loaded."""
