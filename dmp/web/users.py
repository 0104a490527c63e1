"""Dashboard users (roles ``admin``, ``buyer``, ``agency``) and their API tokens.

Passwords are stored as werkzeug salted hashes; an API token is 256 random bits,
shown once and stored as its SHA-256 (a fast hash is enough for a random secret).
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
_COLUMNS = "user_id, name, role, agency, created_at"
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
    if password is not None and len(password) < MIN_PASSWORD:
        raise DmpError(f"a password needs at least {MIN_PASSWORD} characters")
    if find_user(store, name) is not None:
        raise DmpError(f"user {name!r} already exists")
    hashed = generate_password_hash(password) if password else None
    store.con.execute(
        "INSERT INTO users VALUES (nextval('user_id_seq'), ?, ?, ?, ?, ?)",
        [name, role, agency, hashed, now or utcnow()],
    )
    return find_user(store, name)


def find_user(store: Store, name: str) -> dict | None:
    row = store.con.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", [name]).fetchone()
    return _as_dict(row) if row else None


def get_user(store: Store, user_id: int) -> dict | None:
    row = store.con.execute(f"SELECT {_COLUMNS} FROM users WHERE user_id = ?", [user_id]).fetchone()
    return _as_dict(row) if row else None


def list_users(store: Store) -> list[dict]:
    rows = store.con.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name").fetchall()
    return [_as_dict(row) for row in rows]


def authenticate(store: Store, name: str, password: str) -> dict | None:
    """The user if the password matches, else None (same work either way)."""
    row = store.con.execute(
        f"SELECT {_COLUMNS}, password_hash FROM users WHERE name = ?", [name]
    ).fetchone()
    stored = row[-1] if row and row[-1] else _DUMMY_HASH
    ok = check_password_hash(stored, password or "")
    return _as_dict(row[:-1]) if row and row[-1] and ok else None


def create_token(store: Store, name: str, now: datetime | None = None) -> dict:
    """A new API token for user ``name``; the token itself is in the answer only."""
    user = find_user(store, name)
    if user is None:
        raise DmpError(f"no user named {name!r} (add one with `dmp users add`)")
    token = "dmp_" + secrets.token_urlsafe(32)
    store.con.execute(
        "INSERT INTO api_tokens VALUES (nextval('api_token_id_seq'), ?, ?, ?, ?)",
        [user["user_id"], _digest(token), token[:8], now or utcnow()],
    )
    return {"user": user["name"], "role": user["role"], "agency": user["agency"], "token": token}


def user_for_token(store: Store, token: str) -> dict | None:
    row = store.con.execute(
        f"""
        SELECT {", ".join("u." + c.strip() for c in _COLUMNS.split(","))}
        FROM api_tokens t JOIN users u USING (user_id) WHERE t.token_sha256 = ?
        """,
        [_digest(token)],
    ).fetchone()
    return _as_dict(row) if row else None


def any_tokens(store: Store) -> bool:
    return store.con.execute("SELECT count(*) FROM api_tokens").fetchone()[0] > 0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _as_dict(row: tuple) -> dict:
    data = dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True))
    data["created_at"] = iso(data["created_at"])
    return data
