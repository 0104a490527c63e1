"""Who is asking: log-in with a password (a signed session cookie that expires and
that the server can end) or an API token (``Authorization: Bearer``); CSRF
protection for every session-made change; log-in sends back only to this site.
"""

from __future__ import annotations

import functools
import hmac
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from dmp.web import users
from dmp.web.context import config, db

bp = Blueprint("auth", __name__)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# What browsers drop from a URL before reading it (WHATWG URL standard): tabs and
# newlines anywhere, C0 controls and spaces at either end.
_TAB_OR_NEWLINE = re.compile(r"[\t\r\n]")
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class LoginThrottle:
    """Log-in attempts per user name within a sliding window: a name with ``limit``
    attempts that were not successes is refused until the oldest leaves the window,
    so a password guesser gets a handful of tries, not thousands (``limit`` 0: off).
    An attempt is counted before the password is checked, so parallel guesses cannot
    slip past the limit; a success forgets them. Per name only: behind a proxy every
    client has the same address, and locking it would lock everyone out. In memory:
    one process serves the dashboard."""

    def __init__(self, limit: int, window_seconds: float, clock=time.monotonic):
        self.limit, self.window, self.clock = limit, window_seconds, clock
        self.attempts: dict[str, deque[float]] = {}
        self.lock = threading.Lock()
        self.pruned = clock()

    def attempt(self, key: str) -> float:
        """Count an attempt for ``key``, or refuse it: the seconds to wait (0: go on)."""
        if self.limit <= 0:
            return 0.0
        with self.lock:
            now = self.clock()
            if now - self.pruned > self.window:  # forget names whose attempts are all old
                for name in list(self.attempts):
                    self._recent(name, now)
                self.pruned = now
            times = self._recent(key, now)
            if len(times) >= self.limit:
                return times[-self.limit] + self.window - now
            self.attempts.setdefault(key, times).append(now)
            return 0.0

    def succeeded(self, key: str) -> None:
        with self.lock:
            self.attempts.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self.attempts.get(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            self.attempts.pop(key, None)
        return times


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.app_context_processor
def _template_globals() -> dict:
    return {"csrf_token": csrf_token, "user": g.get("user")}


@bp.before_app_request
def _identify() -> None:
    """Sets ``g.user`` (or None) and ``g.via`` ('token' or 'session'); checks CSRF."""
    g.user, g.via = None, None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        g.user = users.user_for_token(db(), token.strip())
        g.via = "token" if g.user else None
    elif "user_id" in session:
        age = time.time() - session.get("login_at", 0)
        if age > config().get("web.session_minutes") * 60:
            session.clear()
        else:
            g.user = users.session_user(db(), session["user_id"], session.get("epoch"))
            g.via = "session" if g.user else None
            if g.user is None:  # ended by log-out, a new password or a disabled user
                session.clear()
    if request.method not in SAFE_METHODS and (
        g.via == "session" or request.endpoint == "auth.login"
    ):
        given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
        if not given or not hmac.compare_digest(given, session.get("csrf", "")):
            abort(400, "missing or stale CSRF token: reload the page and try again")


def login_required(*roles: str) -> Callable:
    """A page for logged-in users (of ``roles``, when given)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(**kwargs):
            if g.user is None:
                return redirect(url_for("auth.login", next=request.path))
            if roles and g.user["role"] not in roles:
                abort(403)
            return view(**kwargs)

        return wrapped

    return decorate


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        name = request.form.get("name", "")
        throttle: LoginThrottle = current_app.extensions["dmp.login_throttle"]
        key = name.strip().lower()
        wait = throttle.attempt(key)
        if wait > 0:
            minutes = math.ceil(wait / 60)
            flash(f"Too many failed log-ins for this name: try again in {minutes} minute(s).")
            return render_template("login.html"), 429
        user = users.authenticate(db(), name, request.form.get("password", ""))
        if user is None:
            flash("Wrong name or password.")
        else:
            throttle.succeeded(key)
            session.clear()
            session.permanent = True
            session.update(
                user_id=user["user_id"], epoch=user["session_epoch"], login_at=time.time()
            )
            return redirect(local_path(request.args.get("next", "")) or url_for("pages.overview"))
    return render_template("login.html")


def local_path(target: str) -> str | None:
    """``target`` as a path on this site, or None: never an open redirect.

    Read the way a browser reads a Location (tabs and newlines dropped, the ends
    trimmed, backslashes taken as slashes), then parsed: no scheme, no host, a path
    starting with exactly one ``/``, no control character left. What is sent is
    rebuilt from the parsed parts, so it is the URL that was checked."""
    cleaned = _TAB_OR_NEWLINE.sub("", target).strip(_C0_OR_SPACE).replace("\\", "/")
    try:
        parts = urlsplit(cleaned)
    except ValueError:  # e.g. an unclosed IPv6 bracket in a host
        return None
    single_slash = cleaned.startswith("/") and not cleaned.startswith("//")
    if not single_slash or parts.scheme or parts.netloc or _CONTROL.search(cleaned):
        return None
    return urlunsplit(("", "", parts.path, parts.query, parts.fragment))


@bp.post("/logout")
def logout():
    """End the session here and every other session of the user: a copy of the
    cookie (a shared computer, a stolen cookie) stops working too."""
    if g.via == "session":
        users.end_sessions(db(), g.user["user_id"])
    session.clear()
    return redirect(url_for("auth.login"))
