"""The JSON API under /api/v1: everything the dashboard does, for scripts and agencies.

Authenticated by ``Authorization: Bearer TOKEN`` (`dmp tokens create USER`) or by
the dashboard's session (changes then need the ``X-CSRF-Token`` header). Errors
are ``{"error": {"code": ..., "message": ...}}``. An agency token sees only its
agency's seed lists and lookalikes, and of the segments only its own and those
granted to it (``registry.visible_sql``): another agency's answer exactly like a
missing one. ``/api/v1/openapi.json`` is generated from these routes.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.utils import secure_filename

from dmp.activation import destinations as dest_lib
from dmp.activation.sync import history, sync
from dmp.errors import DmpError
from dmp.identity.privacy import optout
from dmp.interests.taxonomy import browse
from dmp.lookalike import audience, seeds
from dmp.segments import cluster_segments, insights, registry, rule_segments
from dmp.segments.rules import RuleError
from dmp.status import status
from dmp.web import queries
from dmp.web.api import ApiError, error_response
from dmp.web.context import config, db, erasure, now, runner
from dmp.web.openapi import openapi_document

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
PUBLIC = {"api_v1.openapi"}
STAFF = ("admin", "buyer")


@bp.before_request
def _authenticate() -> None:
    if request.endpoint in PUBLIC:
        return
    if g.user is None:
        raise ApiError(401, "unauthorized", "missing or wrong token: Authorization: Bearer TOKEN")


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message)


@bp.errorhandler(DmpError)
def _library_error(exc: DmpError) -> Response:
    """A library refusal: not found, taken, or invalid input, said in its own words."""
    message = str(exc)
    if isinstance(exc, RuleError):
        return error_response(400, "invalid_rule", message)
    if isinstance(exc, audience.NoSignal):
        return error_response(422, "no_signal", message)
    if message.startswith("no ") or message.startswith("unknown"):
        return error_response(404, "not_found", message)
    if "already exists" in message:
        return error_response(409, "conflict", message)
    return error_response(400, "invalid", message)


def roles(*allowed: str) -> Callable:
    """Only users of these roles; the roles are also written into the OpenAPI document."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(**kwargs):
            if g.user is not None and g.user["role"] not in allowed:
                raise ApiError(403, "forbidden", f"for {' and '.join(allowed)} users only")
            return view(**kwargs)

        wrapped.roles = allowed
        return wrapped

    return decorate


def body() -> dict:
    """The request's JSON object (or form); JSON too deep for the parser is a 400."""
    data = request.form.to_dict() if request.form else None
    if request.is_json:
        try:
            data = json.loads(request.get_data())
        except ValueError:
            data = None
        except RecursionError:
            raise ApiError(400, "invalid", "the request body's JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid", "the request body must be a JSON object")
    return data


def need(data: dict, key: str):
    if data.get(key) in (None, ""):
        raise ApiError(400, "invalid", f"{key!r} is required")
    return data[key]


def acting_agency(data: dict | None = None) -> str:
    """An agency user's own agency; admins and buyers name one (``agency``)."""
    if g.user["role"] == "agency":
        return g.user["agency"]
    given = (data or {}).get("agency") or request.args.get("agency")
    if not given:
        raise ApiError(400, "invalid", "'agency' is required for admin and buyer users")
    return given


def viewer() -> str | None:
    """Whose segments the user sees: an agency user's agency; None (all) for staff."""
    return g.user["agency"] if g.user["role"] == "agency" else None


# -- reading ------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API's OpenAPI 3.1 document."""
    return jsonify(openapi_document(bp))


@bp.get("/status")
@roles(*STAFF)
def get_status() -> Response:
    """Events, devices by ID type, opt-outs, quarantine, last ingest."""
    return jsonify(status(db()))


@bp.get("/taxonomy")
@roles(*STAFF)
def taxonomy() -> Response:
    """Categories below ``?parent=`` (top level without) with device counts."""
    kind = "audience" if request.args.get("taxonomy") == "audience" else "content"
    return jsonify(categories=browse(db(), kind, request.args.get("parent") or None))


@bp.get("/clusters")
@roles(*STAFF)
def clusters() -> Response:
    """The interest clusters of the last clustering run, its quality report (k,
    silhouette, sizes, churn as adjusted Rand index, names changed, born, retired,
    held) and the recent runs."""
    store = db()
    return jsonify(
        clusters=queries.latest_clusters(store),
        report=cluster_segments.latest_report(store),
        runs=cluster_segments.run_history(store),
        holds=cluster_segments.holds(store),
    )


# -- segments -----------------------------------------------------------------------


@bp.get("/segments")
@roles(*STAFF, "agency")
def list_segments() -> Response:
    """Segments with their size (``?kind=rule|cluster|lookalike``); live ones unless
    ``?status=retired|all``; agencies see their own and those granted to them."""
    kind = request.args.get("kind") or None
    status = request.args.get("status") or "live"
    return jsonify(segments=registry.list_segments(db(), kind, now(), viewer(), status))


@bp.post("/segments")
@roles(*STAFF)
def create_segment() -> tuple:
    """Create a rule segment: ``{"name", "rule", "description"?, "ttl_days"?}``."""
    data = body()
    result = rule_segments.create(
        db(), config(), need(data, "name"), need(data, "rule"),
        data.get("description"), data.get("ttl_days"),
    )  # fmt: skip
    return jsonify(segment=result), 201


@bp.post("/segments/preview")
@roles(*STAFF)
def preview_segment() -> Response:
    """How many devices a rule matches now: ``{"rule"}``; nothing is stored."""
    return jsonify(size=rule_segments.preview(db(), config(), need(body(), "rule")))


@bp.get("/segments/<path:name>")
@roles(*STAFF, "agency")
def get_segment(name: str) -> Response:
    """A segment's definition, size, trend, top categories, overlaps, destinations and
    history (``?kind=`` when the name is shared by segments of several kinds). Agencies
    see overlaps with the segments they see, no destinations, and of a segment granted
    to them no definition, description or history."""
    kind = request.args.get("kind") or None
    described = insights.describe(db(), name, now(), kind=kind, viewer=viewer())
    linked = queries.linked_destinations(db(), described["segment_id"]) if not viewer() else []
    changes = registry.history(db(), described["segment_id"], viewer())
    return jsonify(segment=described, destinations=linked, history=changes)


@bp.post("/segments/<path:name>/accept")
@roles(*STAFF)
def accept_segment(name: str) -> Response:
    """Apply the membership and name the guard holds for a linked cluster segment."""
    return jsonify(accepted=cluster_segments.accept(db(), config(), name, now()))


@bp.put("/segments/<path:name>")
@roles(*STAFF)
def update_segment(name: str) -> Response:
    """Change a rule segment: ``{"rule", "description"?, "ttl_days"?}``; refilled at once."""
    data = body()
    result = rule_segments.update(
        db(), config(), name, need(data, "rule"), data.get("description"), data.get("ttl_days")
    )
    return jsonify(segment=result)


@bp.delete("/segments/<path:name>")
@roles(*STAFF)
def delete_segment(name: str) -> Response:
    """Delete a rule segment (destinations drop its members at their next sync)."""
    segment = registry.require_segment(db(), name, "rule")
    registry.delete_segment(db(), segment["segment_id"])
    return jsonify(deleted=name)


@bp.get("/grants")
@roles(*STAFF)
def list_grants() -> Response:
    """Which segments are shared with which agencies."""
    return jsonify(grants=registry.grants(db()))


@bp.post("/grants")
@roles("admin")
def add_grant() -> tuple:
    """Let an agency see a segment: ``{"segment", "agency", "kind"?}`` (admins)."""
    data = body()
    result = registry.grant(
        db(), need(data, "segment"), need(data, "agency"), data.get("kind") or None, now()
    )
    return jsonify(grant=result), 201


@bp.delete("/grants/<agency>/<path:segment>")
@roles("admin")
def remove_grant(agency: str, segment: str) -> Response:
    """Take a grant back (``?kind=`` for a name of several kinds); admins."""
    kind = request.args.get("kind") or None
    return jsonify(revoked=registry.revoke(db(), segment, agency, kind))


# -- seed lists and lookalikes --------------------------------------------------------


@bp.get("/seeds")
@roles(*STAFF, "agency")
def list_seeds() -> Response:
    """The acting agency's seed lists."""
    return jsonify(seed_lists=seeds.list_seed_lists(db(), acting_agency()))


@bp.post("/seeds")
@roles(*STAFF, "agency")
def upload_seeds() -> tuple:
    """Upload a seed list (multipart: ``file``, ``name``, ``id_type``, ``replace``?)."""
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "invalid", "'file' (multipart/form-data) is required")
    data = request.form.to_dict()
    report = store_upload(upload, data, acting_agency(data))
    return jsonify(report=report), 201


def store_upload(upload, data: dict, agency: str) -> dict:
    """Save the uploaded file to the instance's temp folder, then the library reads it."""
    folder = config().path("store.temp_directory")
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "".join(Path(secure_filename(upload.filename or "seeds.csv")).suffixes[-2:])
    replace = str(data.get("replace", "")).lower() in {"1", "true", "on"}
    with tempfile.NamedTemporaryFile(dir=folder, suffix=suffix or ".csv") as handle:
        upload.save(handle)
        handle.flush()
        return seeds.upload_seed_list(
            db(), config(), Path(handle.name), need(data, "name"), agency,
            need(data, "id_type"), replace=replace,
        )  # fmt: skip


@bp.get("/seeds/<name>")
@roles(*STAFF, "agency")
def get_seeds(name: str) -> Response:
    """One of the acting agency's seed lists with its validation report."""
    return jsonify(seed_list=seeds.get_seed_list(db(), name, acting_agency()))


@bp.delete("/seeds/<name>")
@roles(*STAFF, "agency")
def delete_seeds(name: str) -> Response:
    """Delete a seed list (refused while a lookalike builds on it)."""
    return jsonify(seeds.delete_seed_list(db(), name, acting_agency()))


@bp.get("/lookalikes")
@roles(*STAFF, "agency")
def list_lookalikes() -> Response:
    """The acting agency's lookalikes with size, reach and quality."""
    return jsonify(lookalikes=audience.list_lookalikes(db(), acting_agency()))


@bp.post("/lookalikes")
@roles(*STAFF, "agency")
def create_lookalike() -> tuple:
    """Create a lookalike: ``{"name", "seed", "reach": "5%" | 50000, "include_seeds"?,
    "exclude"?: segment, "force"?}``; a seed list with no usable signal is refused
    (422) unless ``force``."""
    data = body()
    report = audience.create_lookalike(
        db(), config(), need(data, "name"), need(data, "seed"), acting_agency(data),
        need(data, "reach"), data.get("description"),
        include_seeds=data.get("include_seeds") is True, exclude=data.get("exclude"),
        force=data.get("force") is True,
    )  # fmt: skip
    return jsonify(lookalike=report), 201


@bp.get("/lookalikes/<name>")
@roles(*STAFF, "agency")
def get_lookalike(name: str) -> Response:
    """A lookalike with its quality report (lift and recall by reach) and recent runs."""
    return jsonify(lookalike=audience.show_lookalike(db(), name, acting_agency()))


# -- destinations, syncs --------------------------------------------------------------


@bp.get("/destinations")
@roles(*STAFF)
def list_destinations() -> Response:
    """Destinations, their options (secrets only as variable names) and linked segments."""
    return jsonify(destinations=dest_lib.list_destinations(db()))


@bp.post("/destinations")
@roles("admin")
def add_destination() -> tuple:
    """Add a destination: ``{"name", "kind", "options": {...}}`` (admins)."""
    data = body()
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "invalid", "'options' must be an object")
    result = dest_lib.add_destination(
        db(), need(data, "name"), need(data, "kind"), {k: str(v) for k, v in options.items()}
    )
    return jsonify(destination=result), 201


@bp.post("/destinations/<name>/links")
@roles(*STAFF)
def link_segment(name: str) -> tuple:
    """Send a segment to this destination: ``{"segment", "external_id"?}``."""
    data = body()
    result = dest_lib.link_segment(db(), name, need(data, "segment"), data.get("external_id"))
    return jsonify(link=result), 201


@bp.delete("/destinations/<name>/links/<path:segment>")
@roles(*STAFF)
def unlink_segment(name: str, segment: str) -> Response:
    """Stop sending a segment; the next sync removes what the platform holds."""
    return jsonify(unlinked=dest_lib.unlink_segment(db(), name, segment))


@bp.get("/syncs")
@roles(*STAFF)
def list_syncs() -> Response:
    """Recent sync runs with counts and rejection reasons (``?destination=&segment=``)."""
    args = request.args
    limit = max(1, min(500, args.get("limit", 50, type=int)))
    found = history(db(), args.get("destination"), args.get("segment"), limit)
    return jsonify(runs=found)


@bp.post("/syncs")
@roles(*STAFF)
def run_sync() -> Response:
    """Sync now (``{"destination"?, "segment"?}``) and answer with each run's counts."""
    data = body()
    results = sync(db(), config(), destination=data.get("destination"), segment=data.get("segment"))
    return jsonify(runs=results)


# -- jobs, opt-outs -------------------------------------------------------------------


@bp.get("/jobs")
@roles(*STAFF)
def jobs() -> Response:
    """Every job with its schedule, next and last run; then the most recent runs."""
    return jsonify(runner().overview(limit=max(1, request.args.get("limit", 20, type=int))))


@bp.post("/jobs/<name>/run")
@roles(*STAFF)
def run_job(name: str) -> tuple:
    """Start a job run now (202); 409 when that job is already running."""
    from dmp.scheduler import ShuttingDown, UnknownJob

    try:
        record = runner().start(name, "api").record
    except UnknownJob as exc:
        raise ApiError(404, "unknown_job", str(exc)) from None
    except ShuttingDown as exc:
        raise ApiError(503, "shutting_down", str(exc)) from None
    if record.status == "skipped":
        return error_response(409, "job_running", record.error, run=record.to_dict()), 409
    return jsonify(run=record.to_dict()), 202


@bp.get("/runs/<int:run_id>")
@roles(*STAFF)
def get_run(run_id: int) -> Response:
    """One job run."""
    record = runner().get(run_id)
    if record is None:
        raise ApiError(404, "unknown_run", f"no run {run_id}")
    return jsonify(run=record.to_dict())


@bp.post("/optouts")
@roles(*STAFF)
def add_optouts() -> Response:
    """Opt IDs out: ``{"ids": [...], "id_type"?}``; their data is deleted now."""
    data = body()
    ids = need(data, "ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, "invalid", "'ids' must be a non-empty list of strings")
    return jsonify(optout(db(), ids, id_type=data.get("id_type"), source="http", erasure=erasure()))
