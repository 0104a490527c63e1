"""The JSON API under /api, for schedulers outside the process (cron, Airflow).

Every request needs ``Authorization: Bearer TOKEN``, the token being the value
of the environment variable named by ``web.api_token_env`` or an admin's or
buyer's API token (`dmp tokens create`); with neither the API refuses
everything rather than run open. Errors are JSON:
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from dmp.scheduler import Runner, ShuttingDown, UnknownJob

bp = Blueprint("api", __name__, url_prefix="/api")


class ApiError(Exception):
    """An error answered as JSON with an HTTP status, a code and a message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, **extra) -> Response:
    response = jsonify(error={"code": code, "message": message}, **extra)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message)


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response | HTTPException:
    """Unknown paths and wrong methods under /api answer in JSON too."""
    if not request.path.startswith(bp.url_prefix + "/"):
        return exc
    code = (exc.name or "error").lower().replace(" ", "_")
    return error_response(exc.code or 500, code, exc.description or exc.name)


@bp.before_request
def _authenticate() -> None:
    """The environment's token, or an admin's or buyer's own API token (`dmp tokens
    create`); with neither configured the API is off."""
    from dmp.web.context import db
    from dmp.web.users import any_tokens

    if g.get("user") is not None:
        if g.user["role"] in ("admin", "buyer") and g.via == "token":
            return
        raise ApiError(403, "forbidden", "the jobs API is for admin and buyer tokens")
    token = current_app.config["API_TOKEN"]
    if not token and not any_tokens(db()):
        env = current_app.config["API_TOKEN_ENV"]
        raise ApiError(
            503,
            "api_disabled",
            f"the API is off: set {env} in the server's environment or create a user token",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if (
        not token
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(given.strip().encode(), token.encode())
    ):
        raise ApiError(401, "unauthorized", "missing or wrong token: Authorization: Bearer TOKEN")


def _runner() -> Runner:
    return current_app.extensions["dmp.runner"]


@bp.get("/jobs")
def jobs() -> Response:
    """Every job with its schedule, next run, last run; then the most recent runs."""
    limit = max(1, request.args.get("limit", 20, type=int))
    return jsonify(_runner().overview(limit=limit))


@bp.post("/jobs/<name>/run")
def run_job(name: str) -> Response | tuple:
    """Start a run: 202 with the run at once, or with ``?wait=1`` 200 once it ended.

    A job already running is not started twice: 409, and the refusal is recorded.
    """
    runner = _runner()
    wait = request.args.get("wait", "").lower() in {"1", "true", "yes"}
    try:
        record = runner.run(name, "api") if wait else runner.start(name, "api").record
    except UnknownJob as exc:
        raise ApiError(404, "unknown_job", str(exc)) from None
    except ShuttingDown as exc:
        raise ApiError(503, "shutting_down", str(exc)) from None
    if record.status == "skipped":
        return error_response(409, "job_running", record.error, run=record.to_dict())
    location = {"Location": url_for(".get_run", run_id=record.run_id)}
    return jsonify(run=record.to_dict()), 200 if wait else 202, location


@bp.get("/runs/<int:run_id>")
def get_run(run_id: int) -> Response:
    record = _runner().get(run_id)
    if record is None:
        raise ApiError(404, "unknown_run", f"no run {run_id}")
    return jsonify(run=record.to_dict())
