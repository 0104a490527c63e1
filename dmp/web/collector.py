"""The collector: live events in, never through DuckDB on the request path.

- ``GET /px.gif``: a 1x1 GIF; the browser's ID is the first-party cookie (set
  here when absent) or ``?id=&id_type=`` (an app or server-side caller);
  ``url``, ``event``, ``country``, ``category``, ``keywords`` and the TCF string
  (``gdpr_consent`` or ``consent``) come as query parameters.
- ``POST /collect``: a batch of JSON lines in the canonical log columns, read as a
  stream: past ``web.collect_max_bytes`` or 10,000 lines it is refused (413)
  before a line is parsed. Lines end at ``\n`` only (``\r\n`` tolerated), so a
  U+2028 inside a JSON string stays inside it.
- ``GET /optout``: opts the browser's cookie out (recorded now) and keeps an
  opt-out cookie, so nothing more is collected from it.
- ``GET /sync/<partner>?partner_uid=X[&redirect=URL]``: cookie sync, matching
  our cookie to the partner's ID through a spool the ingest job loads.

A request carrying ``Sec-GPC: 1`` (Global Privacy Control) gets no new cookie,
and its events are flagged ``gpc``, so they are never used for profiling.
Every event is appended to a spool file (fsynced before the answer), which the
ingest job loads like any other log.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, make_response, redirect, request
from werkzeug.exceptions import RequestEntityTooLarge

from dmp.clock import utcnow
from dmp.csvsafe import FORMULA_LEADS
from dmp.identity.privacy import optout as record_optout
from dmp.ingest.readers import ALIASES
from dmp.web.context import config, db, erasure
from dmp.web.spool import Spool

bp = Blueprint("collector", __name__)
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
OPTOUT_COOKIE = "dmp_optout"
FIELDS = (
    "ts", "id", "id_type", "url", "event", "category", "keywords", "country", "consent", "gpc",
    "hem", "maid", "cookie",
)  # fmt: skip
_PARTNER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_PARTNER_ID = re.compile(r"^[!-~]{1,200}$")
MAX_BATCH_LINES = 10_000
# The cookies this collector issues (secrets.token_hex(16)). Only such a cookie is
# searched for in raw files on a public opt-out: anyone can send any cookie value,
# and a common one ("pageview", a shared consent string) must not erase others' lines.
_ISSUED_COOKIE = re.compile(r"^[0-9a-f]{32}$")
_sync_lock = threading.Lock()


def _gpc() -> bool:
    return request.headers.get("Sec-GPC", "").strip() == "1"


class _Pairs(list):
    """A JSON object's (key, value) pairs as written, duplicates kept."""


def _plain(value: object) -> object:
    """A parsed JSON value with its objects as dicts again (for writing it out)."""
    if isinstance(value, _Pairs):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class Conflict(ValueError):
    """A hit names one field twice with different values: which one holds is unknown."""


def _fields(pairs: Iterable[tuple[str, object]]) -> dict[str, str]:
    """The hit's canonical fields from its keys in any case or alias (``GDPR_CONSENT``,
    ``Consent``), as text; blank values are absent. Two different values for one field
    raise :class:`Conflict`: a refused consent must never lose to an empty one or to a
    spelling, so such a hit is refused, not guessed."""
    found: dict[str, str] = {}
    for key, value in pairs:
        name = key.strip().lower()
        name = ALIASES.get(name, name)
        if name not in FIELDS or value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = value if isinstance(value, str) else json.dumps(_plain(value))
        if not text.strip():
            continue
        if found.setdefault(name, text) != text:
            raise Conflict(f"two different values for {name}")
    return found


def _event(fields: dict[str, str], gpc: bool) -> str:
    """One spool line with every canonical log column (null when absent), so no line's
    fields depend on another line's shape; values go as given, validation happens at
    ingest (a GPC value it cannot read quarantines the event rather than drop the
    signal). A ``Sec-GPC: 1`` header sets GPC whatever the hit says."""
    line = {key: fields.get(key) for key in FIELDS}
    line["ts"] = line["ts"] or utcnow().isoformat(timespec="milliseconds") + "Z"
    line["event"] = line["event"] or "pageview"
    line["gpc"] = 1 if gpc else line["gpc"] or 0
    return json.dumps(line, separators=(",", ":"))


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store, max-age=0"
    return response


def _gif() -> Response:
    return _no_store(Response(GIF, mimetype="image/gif"))


@bp.get("/px.gif")
def pixel() -> Response:
    if request.cookies.get(OPTOUT_COOKIE):
        return _gif()
    cookie_name = config().get("web.cookie_name")
    try:
        values = _fields(request.args.items(multi=True))
    except Conflict:  # ambiguous signals: nothing is recorded
        return _gif()
    new_cookie = None
    if values.get("id"):
        values.setdefault("id_type", "cookie")
    else:
        cookie = request.cookies.get(cookie_name)
        if cookie is None and not _gpc():
            cookie = new_cookie = secrets.token_hex(16)
        if cookie is None:  # GPC and no ID of ours: nothing to record
            return _gif()
        values |= {"id": cookie, "id_type": "cookie"}
    if "url" not in values and request.referrer:
        values["url"] = request.referrer
    current_app.extensions["dmp.spool"].append([_event(values, _gpc())])
    response = _gif()
    if new_cookie:
        response.set_cookie(
            cookie_name,
            new_cookie,
            max_age=config().get("web.cookie_days") * 86400,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,
        )
    return response


@bp.post("/collect")
def collect() -> Response:
    """A server-side tag's batch: one JSON object per line, each with at least ``id``."""
    try:
        numbered = _batch_lines()
    except RequestEntityTooLarge:
        limit = config().get("web.collect_max_bytes")
        return _too_large(f"at most {limit} bytes a batch (web.collect_max_bytes)")
    if len(numbered) > MAX_BATCH_LINES:
        return _too_large(f"at most {MAX_BATCH_LINES} lines a batch")
    lines, bad = [], []
    for number, raw in numbered:
        try:  # pairs, not a dict: a key given twice must not silently keep one value
            item = json.loads(raw, object_pairs_hook=_Pairs)
        except ValueError:
            bad.append({"line": number, "reason": "not JSON"})
            continue
        except RecursionError:
            bad.append({"line": number, "reason": "JSON nested too deeply"})
            continue
        try:
            fields = _fields(item) if isinstance(item, _Pairs) else {}
        except Conflict as exc:
            bad.append({"line": number, "reason": str(exc)})
            continue
        if not fields.get("id"):
            bad.append({"line": number, "reason": "not an object with an id"})
            continue
        lines.append(_event(fields, _gpc()))
    current_app.extensions["dmp.spool"].append(lines)
    return jsonify(accepted=len(lines), rejected=bad), 200 if lines or not bad else 400


def _batch_lines() -> list[tuple[int, bytes]]:
    """(line number, bytes) of the body's non-blank lines, read from the stream (capped
    at ``web.collect_max_bytes``) and split at ``\n`` only. Stops one line past the
    line limit, so an endless batch is never held or parsed."""
    found: list[tuple[int, bytes]] = []
    for number, raw in enumerate(request.stream, 1):
        if raw.strip():
            found.append((number, raw.rstrip(b"\r\n")))
            if len(found) > MAX_BATCH_LINES:
                break
    return found


def _too_large(message: str) -> tuple[Response, int]:
    return jsonify(error={"code": "too_large", "message": message}), 413


@bp.get("/optout")
def optout() -> Response:
    """Opt this browser out: its cookie's data goes now, and it is never collected again."""
    cookie = request.cookies.get(config().get("web.cookie_name"))
    recorded = False
    if cookie:
        files = erasure() if _ISSUED_COOKIE.match(cookie) else None
        summary = record_optout(db(), [cookie], id_type="cookie", source="http", erasure=files)
        recorded = summary["new_optouts"] >= 0
    response = make_response(
        "<!doctype html><title>Opted out</title><p>You are opted out: this browser's "
        "data was deleted and nothing more will be collected from it.</p>"
    )
    response.set_cookie(OPTOUT_COOKIE, "1", max_age=5 * 365 * 86400, httponly=True, samesite="Lax")
    response.delete_cookie(config().get("web.cookie_name"))
    response.headers["X-Dmp-Optout"] = "recorded" if recorded else "cookie-only"
    return _no_store(response)


@bp.get("/sync/<partner>")
def cookie_sync(partner: str) -> Response:
    """Partner redirects here with its user ID: store ``our cookie,partner ID``."""
    cookie = request.cookies.get(config().get("web.cookie_name"))
    partner_uid = request.args.get("partner_uid", "")
    ok = (
        _PARTNER.match(partner)
        and _PARTNER_ID.match(partner_uid)
        and cookie
        and not _gpc()
        and not request.cookies.get(OPTOUT_COOKIE)
        and "," not in partner_uid + cookie
        and not partner_uid.startswith(FORMULA_LEADS)
        and not cookie.startswith(FORMULA_LEADS)  # the spool is CSV; ingest refuses them too
    )
    if ok:
        _partner_spool(partner).append([f"{cookie},{partner_uid}"])
    target = request.args.get("redirect", "")
    allowed = {h.strip() for h in config().get("web.cookie_sync_hosts").split(",") if h.strip()}
    parts = urlsplit(target)
    if target and parts.scheme == "https" and parts.hostname in allowed:
        return _no_store(redirect(target, 302))
    return _gif()


def _partner_spool(partner: str) -> Spool:
    spools = current_app.extensions["dmp.sync_spools"]
    with _sync_lock:
        if partner not in spools:
            base = Spool.for_config(config(), "idsync")
            spools[partner] = Spool(base.folder / partner, ".csv", base.max_bytes, base.max_seconds)
        return spools[partner]
