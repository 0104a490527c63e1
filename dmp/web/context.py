"""What a view needs from the app: the request's Store, the config, the runner, "now"."""

from __future__ import annotations

from datetime import datetime

from flask import current_app, g

from dmp.config import Config
from dmp.scheduler import Runner
from dmp.store import Store


def runner() -> Runner:
    return current_app.extensions["dmp.runner"]


def now() -> datetime:
    """The runner's clock: one "now" for the app and its jobs (frozen in tests)."""
    return runner().clock()


def config() -> Config:
    return current_app.extensions["dmp.config"]


def db() -> Store:
    """A Store over this request's own cursor of the shared connection (closed at the
    end of the request): DuckDB connections are not shared between threads."""
    if "dmp_store" not in g:
        shared = runner().store
        g.dmp_store = Store(shared.cursor(), shared.path)
    return g.dmp_store
