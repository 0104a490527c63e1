"""Scheduled jobs: one thin module per job, each a ``run(store, config, now)`` that
calls into ``dmp`` and returns a JSON-ready summary. ``JOBS`` lists them in
pipeline order. Every run goes through
``dmp.scheduler.Runner``, which records the summary (a ``warnings`` list is
welcome) in ``job_runs``; ``config/schedule.toml`` says when each job runs.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable


class _Job:
    """A job's ``run``, imported when first used: `dmp run expire` need not spend two
    seconds loading scikit-learn for the cluster and lookalike jobs."""

    def __init__(self, name: str):
        self.name = name

    @functools.cached_property
    def run(self) -> Callable:
        return importlib.import_module(f"jobs.{self.name}").run

    def __call__(self, *args, **kwargs):
        return self.run(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.run)


JOBS = {
    name: _Job(name)
    for name in ("ingest", "expire", "profile", "segments", "cluster", "lookalike", "sync")
}
