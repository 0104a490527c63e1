"""Dashboard users (roles ``admin``, ``buyer``, ``agency``) and their API tokens.

Passwords are stored as werkzeug salted hashes; an API token is 256 random bits,
shown once and stored as its SHA-256 (a fast hash is enough for a random secret).
Sessions end server-side: a session is honoured only while it carries its user's
current ``session_epoch``, which log-out, a password change and disabling raise.
A disabled user can neither log in nor use its tokens; a revoked token is refused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from werkzeug.security import check_password_hash, generate_password_hash

from dmp.clock import iso, utcnow
from dmp.errors import DmpError
from dmp.lookalike.seeds import check_name
from dmp.store import Store

ROLES = ("admin", "buyer", "agency")
MIN_PASSWORD = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_COLUMNS = "user_id, name, role, agency, created_at, disabled_at"
# A hash to compare against when the user does not exist, so timing does not tell.
_DUMMY_HASH = generate_password_hash("not a password")


def add_user(
    store: Store,
    name: str,
    role: str,
    agency: str | None = None,
    password: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Create a user; an agency user needs its agency, other roles must not have one."""
    if not _NAME.match(name or ""):
        raise DmpError(f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    if role not in ROLES:
        raise DmpError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if (role == "agency") != bool(agency):
        raise DmpError("an agency user needs --agency, and only agency users have one")
    if agency:
        agency = check_name(agency, "agency")
    _check_password(password)
    if find_user(store, name) is not None:
        raise DmpError(f"user {name!r} already exists")
    hashed = generate_password_hash(password) if password else None
    store.con.execute(
        """
        INSERT INTO users (user_id, name, role, agency, password_hash, created_at)
        VALUES (nextval('user_id_seq'), ?, ?, ?, ?, ?)
        """,
        [name, role, agency, hashed, now or utcnow()],
    )
    return find_user(store, name)


def set_password(store: Store, name: str, password: str) -> dict:
    """Give user ``name`` a new password and end all of its sessions: whoever knew the
    old password (or held a session made with it) is logged out everywhere."""
    _check_password(password)
    user = _existing(store, name)
    store.con.execute(
        """
        UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1
        WHERE user_id = ?
        """,
        [generate_password_hash(password), user["user_id"]],
    )
    return user


def set_enabled(store: Store, name: str, enabled: bool, now: datetime | None = None) -> dict:
    """Disable user ``name`` (its sessions end, its log-ins and tokens are refused) or
    enable it again. Enabling brings its tokens back, not its ended sessions."""
    user = _existing(store, name)
    if enabled:
        store.con.execute(
            "UPDATE users SET disabled_at = NULL WHERE user_id = ?", [user["user_id"]]
        )
    elif user["disabled_at"] is None:
        store.con.execute(
            "UPDATE users SET disabled_at = ?, session_epoch = session_epoch + 1 WHERE user_id = ?",
            [now or utcnow(), user["user_id"]],
        )
    return find_user(store, name)


def end_sessions(store: Store, user_id: int) -> None:
    """End every session of the user (log-out): a copied session cookie stops working."""
    store.con.execute(
        "UPDATE users SET session_epoch = session_epoch + 1 WHERE user_id = ?", [user_id]
    )


def find_user(store: Store, name: str) -> dict | None:
    row = store.con.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", [name]).fetchone()
    return _as_dict(row) if row else None


def list_users(store: Store) -> list[dict]:
    rows = store.con.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name").fetchall()
    return [_as_dict(row) for row in rows]


def authenticate(store: Store, name: str, password: str) -> dict | None:
    """The enabled user if the password matches, else None (same work either way),
    with the ``session_epoch`` its new session must carry."""
    row = store.con.execute(
        f"SELECT {_COLUMNS}, session_epoch, password_hash FROM users WHERE name = ?", [name]
    ).fetchone()
    stored = row[-1] if row and row[-1] else _DUMMY_HASH
    ok = check_password_hash(stored, password or "")
    if not (row and row[-1] and ok):
        return None
    user = _as_dict(row[:-2])
    return None if user["disabled_at"] else {**user, "session_epoch": row[-2]}


def session_user(store: Store, user_id: int, epoch: int | None) -> dict | None:
    """The user of a session made at ``epoch``, if that session has not been ended
    (log-out, password change, disabled) and the user is enabled."""
    row = store.con.execute(
        f"""
        SELECT {_COLUMNS} FROM users
        WHERE user_id = ? AND session_epoch = ? AND disabled_at IS NULL
        """,
        [user_id, epoch],
    ).fetchone()
    return _as_dict(row) if row else None


def create_token(store: Store, name: str, now: datetime | None = None) -> dict:
    """A new API token for user ``name``; the token itself is in the answer only."""
    user = _existing(store, name)
    token = "dmp_" + secrets.token_urlsafe(32)
    store.con.execute(
        """
        INSERT INTO api_tokens (token_id, user_id, token_sha256, prefix, created_at)
        VALUES (nextval('api_token_id_seq'), ?, ?, ?, ?)
        """,
        [user["user_id"], _digest(token), token[:8], now or utcnow()],
    )
    return {"user": user["name"], "role": user["role"], "agency": user["agency"], "token": token}


def user_for_token(store: Store, token: str) -> dict | None:
    """The enabled user of an unrevoked token, else None."""
    row = store.con.execute(
        f"""
        SELECT {", ".join("u." + c.strip() for c in _COLUMNS.split(","))}
        FROM api_tokens t JOIN users u USING (user_id)
        WHERE t.token_sha256 = ? AND t.revoked_at IS NULL AND u.disabled_at IS NULL
        """,
        [_digest(token)],
    ).fetchone()
    return _as_dict(row) if row else None


def list_tokens(store: Store) -> list[dict]:
    """Every token by id, with its user, its prefix and when it was made or revoked."""
    rows = store.con.execute(
        """
        SELECT t.token_id, u.name, t.prefix, t.created_at, t.revoked_at
        FROM api_tokens t JOIN users u USING (user_id) ORDER BY t.token_id
        """
    ).fetchall()
    keys = ("token_id", "user", "prefix", "created_at", "revoked_at")
    return [
        {**dict(zip(keys, row, strict=True)), "created_at": iso(row[3]), "revoked_at": iso(row[4])}
        for row in rows
    ]


def revoke_tokens(
    store: Store, token: str | None = None, user: str | None = None, now: datetime | None = None
) -> int:
    """Revoke one token, named by its id, the whole token, or a prefix at least as long
    as the one `dmp tokens list` shows; or every token of ``user``; returns how many.
    Naming no active token, or a prefix several share, is an error: nothing is revoked
    by a guess."""
    if (token is None) == (user is None):
        raise DmpError("name a token (its id, prefix or itself) or a user, not both")
    if user is not None:
        where, params = "user_id = ?", [_existing(store, user)["user_id"]]
    else:
        where, params = _token_match(store, token)
    active = f"FROM api_tokens WHERE {where} AND revoked_at IS NULL"
    count = store.con.execute(f"SELECT count(*) {active}", params).fetchone()[0]
    if token is not None and count != 1:
        if count == 0:
            raise DmpError(f"no active token {token!r} (see `dmp tokens list`)")
        raise DmpError(f"{count} active tokens match {token!r}: revoke by id")
    store.con.execute(
        f"UPDATE api_tokens SET revoked_at = ? WHERE {where} AND revoked_at IS NULL",
        [now or utcnow(), *params],
    )
    return count


def _token_match(store: Store, token: str) -> tuple[str, list]:
    """Which tokens ``token`` names: the one with that id; the whole token (its hash, even
    when revoked, so a revoked token never falls back to another of the same prefix); else
    those whose stored prefix starts ``token`` (the characters past it are not stored, so
    tokens sharing the prefix stay ambiguous)."""
    if token.isdigit():
        return "token_id = ?", [int(token)]
    digest = _digest(token)
    known = store.con.execute(
        "SELECT count(*) FROM api_tokens WHERE token_sha256 = ?", [digest]
    ).fetchone()[0]
    if known:
        return "token_sha256 = ?", [digest]
    return "starts_with(?, prefix)", [token]


def any_tokens(store: Store) -> bool:
    return store.con.execute("SELECT count(*) FROM api_tokens").fetchone()[0] > 0


def _existing(store: Store, name: str) -> dict:
    user = find_user(store, name)
    if user is None:
        raise DmpError(f"no user named {name!r} (add one with `dmp users add`)")
    return user


def _check_password(password: str | None) -> None:
    if password is not None and len(password) < MIN_PASSWORD:
        raise DmpError(f"a password needs at least {MIN_PASSWORD} characters")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _as_dict(row: tuple) -> dict:
    data = dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True))
    data["created_at"] = iso(data["created_at"])
    data["disabled_at"] = iso(data["disabled_at"])
    return data
