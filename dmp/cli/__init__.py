"""The one command line: thin click commands over library functions, one module a
stage (in the order data flows), all registered on the group in ``app``.

Every command that reports takes ``--json``; errors meant for people
(:class:`DmpError`) are printed as one line and exit with status 1.
"""

from dmp.cli import (  # noqa: F401 (each module registers its commands on main)
    activation,
    identity,
    instance,
    lookalike,
    scheduler,
    segments,
    users,
)
from dmp.cli.app import main

__all__ = ["main"]
