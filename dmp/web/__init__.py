"""The web application: one app factory, one blueprint per area (the JSON API
today; the dashboard and the collector join it). Nothing runs at import.
"""

from __future__ import annotations

import os

from flask import Flask

from dmp.config import Config
from dmp.scheduler import Runner, load_schedule
from dmp.store import Store, open_store
from dmp.web import api


def create_app(config: Config, store: Store | None = None, runner: Runner | None = None) -> Flask:
    """The app for the instance ``config``.

    ``runner`` is the scheduler's in `dmp serve`, so HTTP-triggered runs share its
    lock and connection; without one, a runner is built over ``store`` (opened
    here when not given). The API token is read once, from the environment
    variable named by ``web.api_token_env``.
    """
    if runner is None:
        from jobs import JOBS

        runner = Runner(store or open_store(config), config, JOBS, load_schedule(config))
    app = Flask(__name__)
    token_env = config.get("web.api_token_env")
    app.config.update(API_TOKEN=os.environ.get(token_env, ""), API_TOKEN_ENV=token_env)
    app.extensions["dmp.runner"] = runner
    app.register_blueprint(api.bp)
    return app
