"""The web application: one app factory, one blueprint per area. Nothing runs at import.

- ``auth``: log-in, sessions, CSRF, who is asking (session or bearer token);
- ``pages``: the server-rendered dashboard;
- ``api``: the jobs API under /api (kept for cron and Airflow);
- ``api_v1``: the JSON API under /api/v1 with its OpenAPI document;
- ``collector``: /px.gif, /collect, /optout and cookie sync, into spool files.

Every request gets its own DuckDB cursor over the process's one connection
(``db()``), so the dashboard, the API and the scheduler share one Store.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, g

from dmp.config import Config
from dmp.scheduler import Runner, load_schedule
from dmp.store import Store, open_store
from dmp.web import api, api_v1, auth, collector, pages
from dmp.web.limits import cap_request
from dmp.web.spool import Rotator, Spool

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def create_app(config: Config, store: Store | None = None, runner: Runner | None = None) -> Flask:
    """The app for the instance ``config``.

    ``runner`` is the scheduler's in `dmp serve`, so HTTP-triggered runs share its
    lock and connection; without one, a runner is built over ``store`` (opened
    here when not given). The jobs API token is read once, from the environment
    variable named by ``web.api_token_env``.
    """
    if runner is None:
        from jobs import JOBS

        runner = Runner(store or open_store(config), config, JOBS, load_schedule(config))
    app = Flask(__name__)
    token_env = config.get("web.api_token_env")
    app.config.update(
        API_TOKEN=os.environ.get(token_env, ""),
        API_TOKEN_ENV=token_env,
        SECRET_KEY=_secret_key(config),
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=config.get("web.session_minutes")),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.get("web.secure_cookies"),
        SESSION_COOKIE_NAME="dmp_session",
    )
    app.extensions["dmp.runner"] = runner
    app.extensions["dmp.config"] = config
    app.extensions["dmp.spool"] = Spool.for_config(config)
    app.extensions["dmp.sync_spools"] = {}
    app.extensions["dmp.login_throttle"] = auth.LoginThrottle(
        config.get("web.login_max_failures"), config.get("web.login_lockout_minutes") * 60
    )
    for blueprint in (auth.bp, pages.bp, api.bp, api_v1.bp, collector.bp):
        app.register_blueprint(blueprint)
    cap_request(app, config)

    @app.teardown_appcontext
    def _close_cursor(_exc) -> None:
        request_store = g.pop("dmp_store", None)
        if request_store is not None:
            request_store.close()

    @app.after_request
    def _headers(response):
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    return app


def start_spool_rotator(app: Flask) -> Rotator:
    """In `dmp serve`: close quiet spool files on time; ``stop()`` closes them all."""
    spools = app.extensions

    def every_spool() -> list[Spool]:
        return [spools["dmp.spool"], *list(spools["dmp.sync_spools"].values())]

    rotator = Rotator(every_spool, every=max(1.0, spools["dmp.spool"].max_seconds / 4))
    rotator.start()
    return rotator


def _secret_key(config: Config) -> str:
    """From the environment, else a random key made once per instance (mode 600)."""
    given = os.environ.get(config.get("web.secret_key_env"), "")
    if given:
        return given
    path = Path(config.home) / "web_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()
