"""Who may stay logged in: the log-in redirect stays on the site, and sessions and
tokens end server-side (log-out, password change, disabled user, revoked token)."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urljoin, urlsplit

import pytest

from dmp.config import load_config
from dmp.errors import DmpError
from dmp.store import open_store
from dmp.web import create_app
from dmp.web.users import add_user, create_token, revoke_tokens, set_enabled, set_password
from tests.web_helpers import PASSWORD

NEW_PASSWORD = "another horse battery"


def make_app(config):
    """An app over an empty instance with users ``bea`` (buyer) and ``root`` (admin)."""
    with open_store(config) as store:
        add_user(store, "bea", "buyer", None, PASSWORD)
        add_user(store, "root", "admin", None, PASSWORD)
        app = create_app(config, store)
        app.config["TESTING"] = True
        yield app


@pytest.fixture
def app(config, monkeypatch):
    monkeypatch.delenv("DMP_API_TOKEN", raising=False)
    yield from make_app(config)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One app for the redirect tests, which change nothing but the log-in throttle."""
    yield from make_app(load_config(tmp_path_factory.mktemp("auth") / "home", env={}))


@pytest.fixture
def store(app):
    return app.extensions["dmp.runner"].store


def csrf(response) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', response.text)[1]


def login(client, name: str = "bea", password: str = PASSWORD, query: str = ""):
    page = client.get("/login")
    data = {"name": name, "password": password, "csrf_token": csrf(page)}
    return client.post("/login" + query, data=data)


def logged_in(client, name: str = "bea") -> str:
    """Log in and return the session cookie's value, to replay later."""
    assert login(client, name).status_code == 302
    return client.get_cookie("dmp_session").value


def browser_target(location: str) -> tuple[str, str]:
    """(scheme, host) a browser on http://localhost/login goes to for ``location``:
    tabs and newlines removed, C0 controls and spaces trimmed, backslashes as slashes."""
    cleaned = re.sub(r"[\t\r\n]", "", location).strip("".join(map(chr, range(33))))
    parts = urlsplit(urljoin("http://localhost/login", cleaned.replace("\\", "/")))
    return parts.scheme, parts.hostname or ""


# The ``next`` values as they appear in a link's query string: each a known way to
# leave the site (decoded, a tab or newline the browser drops, a backslash it reads
# as a slash, a scheme, a leading control character, a user@host authority).
BYPASSES = [
    "//evil.example/",
    "///evil.example/",
    "/%5Cevil.example/",
    "%5C/%5C/evil.example/",
    "/%09/evil.example/",
    "/%0A/evil.example/",
    "/%0D%0A/evil.example/",
    "%09//evil.example/",
    "%00//evil.example/",
    "%20//evil.example/",
    "/%2F%2Fevil.example/",
    "/%2F/evil.example/",
    "https:evil.example",
    "https://evil.example/",
    "https://localhost@evil.example/",
    "HTTPS:%2F%2Fevil.example",
    "java%09script:alert(1)",
    "javascript:alert(1)",
    "data:text/html,hi",
    "/%09%5C/evil.example/",
    "%5C%5Cevil.example",
    "//[evil.example",
    "http://[::1",
]


@pytest.mark.parametrize("raw", BYPASSES)
def test_login_never_redirects_off_the_site(site, raw):
    response = login(site.test_client(), query="?next=" + raw)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location == "/", raw
    assert browser_target(location) == ("http", "localhost")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("/segments", "/segments"),
        (
            quote("/segments/everyone?tab=overlap#sizes", safe="/"),
            "/segments/everyone?tab=overlap#sizes",
        ),
        ("/seeds?agency=acme", "/seeds?agency=acme"),
        ("/seeds&agency=acme", "/seeds"),  # a second parameter of /login, not of next
        ("/%252F%252Fevil.example", "/%2F%2Fevil.example"),  # a path on this site
        ("", "/"),
        ("segments", "/"),  # relative to /login: not a path we made
    ],
)
def test_login_follows_a_local_next_path(site, raw, expected):
    response = login(site.test_client(), query="?next=" + raw)
    assert response.status_code == 302
    assert response.headers["Location"] == expected
    assert browser_target(expected) == ("http", "localhost")


def test_a_page_sends_to_log_in_and_back(app):
    client = app.test_client()
    sent = client.get("/jobs")
    assert sent.status_code == 302
    response = login(client, query="?" + urlsplit(sent.headers["Location"]).query)
    assert response.headers["Location"] == "/jobs"


def test_logged_out_cookie_no_longer_works(app):
    client = app.test_client()
    cookie = logged_in(client)
    assert client.get("/jobs").status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf(client.get("/jobs"))}).status_code == 302
    client.set_cookie("dmp_session", cookie)  # an attacker who copied it replays it
    page = client.get("/jobs")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    assert client.get("/api/v1/status").status_code == 401


def test_password_change_ends_every_session(app, store):
    first, second = app.test_client(), app.test_client()
    logged_in(first)
    logged_in(second)
    other = app.test_client()
    logged_in(other, "root")
    set_password(store, "bea", NEW_PASSWORD)
    for client in (first, second):
        assert client.get("/jobs").status_code == 302
        assert client.get("/api/v1/status").status_code == 401
    assert other.get("/jobs").status_code == 200  # only bea's sessions end
    assert login(app.test_client(), password=PASSWORD).status_code == 200  # refused
    assert login(app.test_client(), password=NEW_PASSWORD).status_code == 302


def test_disabled_user_loses_sessions_and_tokens_at_once(app, store):
    client = app.test_client()
    logged_in(client)
    bearer = {"Authorization": f"Bearer {create_token(store, 'bea')['token']}"}
    assert client.get("/api/v1/status", headers=bearer).status_code == 200
    set_enabled(store, "bea", False)
    assert client.get("/jobs").status_code == 302
    assert app.test_client().get("/api/v1/status", headers=bearer).status_code == 401
    assert app.test_client().get("/api/jobs", headers=bearer).status_code == 401
    refused = login(app.test_client())
    assert refused.status_code == 200 and "Wrong name or password" in refused.text
    set_enabled(store, "bea", True)
    assert client.get("/jobs").status_code == 302  # an old session stays ended
    assert app.test_client().get("/api/v1/status", headers=bearer).status_code == 200
    assert login(app.test_client()).status_code == 302


def test_revoked_tokens_answer_401(app, store):
    client = app.test_client()
    kept, revoked = create_token(store, "bea")["token"], create_token(store, "bea")["token"]
    root = create_token(store, "root")["token"]
    assert revoke_tokens(store, revoked[:8]) == 1
    status = client.get("/api/v1/status", headers={"Authorization": f"Bearer {revoked}"})
    assert status.status_code == 401 and status.json["error"]["code"] == "unauthorized"
    assert (
        client.get("/api/v1/status", headers={"Authorization": f"Bearer {kept}"}).status_code == 200
    )
    create_token(store, "bea")
    store.con.execute("UPDATE api_tokens SET prefix = 'dmp_same' WHERE revoked_at IS NULL")
    with pytest.raises(DmpError, match="3 active tokens match 'dmp_same': revoke by id"):
        revoke_tokens(store, "dmp_same")
    assert (
        client.get("/api/v1/status", headers={"Authorization": f"Bearer {kept}"}).status_code == 200
    )
    assert revoke_tokens(store, user="bea") == 2
    assert (
        client.get("/api/v1/status", headers={"Authorization": f"Bearer {kept}"}).status_code == 401
    )
    assert (
        client.get("/api/v1/status", headers={"Authorization": f"Bearer {root}"}).status_code == 200
    )


def test_a_token_is_revoked_by_itself_or_any_prefix_as_long_as_the_listed_one(app, store):
    """A 12-character prefix, or the whole token, answered "no active token": only the
    8-character prefix `dmp tokens list` shows (or the id) worked."""
    client = app.test_client()
    kept, whole, longer = (create_token(store, "bea")["token"] for _ in range(3))
    assert revoke_tokens(store, whole) == 1
    assert revoke_tokens(store, longer[:12]) == 1
    for token, status in [(whole, 401), (longer, 401), (kept, 200)]:
        answer = client.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == status
    with pytest.raises(DmpError, match="no active token"):
        revoke_tokens(store, kept[:7])  # shorter than the stored prefix: not a name of it
    with pytest.raises(DmpError, match="no active token"):
        revoke_tokens(store, whole)  # already revoked


def test_a_whole_token_is_unambiguous_where_its_prefix_is_not(app, store):
    """Tokens sharing the stored prefix: the whole token names one, a longer prefix (whose
    extra characters cannot be checked) is refused, and a revoked token's whole value never
    falls back to revoking another active token of the same prefix."""
    client = app.test_client()
    first, second, third = (create_token(store, "bea")["token"] for _ in range(3))
    store.con.execute("UPDATE api_tokens SET prefix = ? WHERE token_id <= 2", [first[:8]])
    with pytest.raises(DmpError, match=re.escape(f"2 active tokens match '{first[:12]}'")):
        revoke_tokens(store, first[:12])
    assert revoke_tokens(store, first) == 1
    with pytest.raises(DmpError, match="no active token"):
        revoke_tokens(store, first)  # not: the one other active token of its prefix
    for token, status in [(first, 401), (second, 200), (third, 200)]:
        answer = client.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == status


def test_cli_passwd_disable_enable_and_tokens(cli, home):
    assert cli("users", "add", "bea", "--role", "buyer", "--password-stdin", input=PASSWORD)
    short = cli("users", "passwd", "bea", "--password-stdin", input="short\n")
    assert (
        short.exit_code == 1 and short.output == "error: a password needs at least 10 characters\n"
    )
    missing = cli("users", "passwd", "nobody", "--password-stdin", input=NEW_PASSWORD)
    assert missing.exit_code == 1 and "error: no user named 'nobody'" in missing.output
    changed = cli("users", "passwd", "bea", "--password-stdin", input=NEW_PASSWORD + "\n")
    assert changed.exit_code == 0 and "sessions have ended" in changed.output

    assert cli("users", "disable", "bea").exit_code == 0
    listed = json.loads(cli("users", "list", "--json").stdout)
    assert listed[0]["name"] == "bea" and listed[0]["disabled_at"]
    assert cli("users", "enable", "bea").exit_code == 0
    assert json.loads(cli("users", "list", "--json").stdout)[0]["disabled_at"] is None

    first = json.loads(cli("tokens", "create", "bea", "--json").stdout)
    second = json.loads(cli("tokens", "create", "bea", "--json").stdout)
    tokens = json.loads(cli("tokens", "list", "--json").stdout)
    assert [t["prefix"] for t in tokens] == [first["token"][:8], second["token"][:8]]
    assert first["token"] not in json.dumps(tokens) and tokens[0]["revoked_at"] is None
    by_id = cli("tokens", "revoke", str(tokens[0]["token_id"]))
    assert by_id.exit_code == 0 and "revoked 1 token" in by_id.output
    again = cli("tokens", "revoke", str(tokens[0]["token_id"]))
    assert again.exit_code == 1 and again.output.startswith("error: no active token")
    longer = cli("tokens", "revoke", second["token"][:12])
    assert longer.exit_code == 0 and "revoked 1 token" in longer.output
    unknown = cli("tokens", "revoke", "dmp_zzzz")
    assert unknown.exit_code == 1 and "error: no active token" in unknown.output
    for args in [("1", "--user", "bea"), ()]:
        unclear = cli("tokens", "revoke", *args)
        assert unclear.exit_code == 1 and unclear.output.startswith("error: name a token")
    assert cli("tokens", "revoke", "--user", "bea").exit_code == 0
    revoked = json.loads(cli("tokens", "list", "--json").stdout)
    assert all(t["revoked_at"] for t in revoked)
    plain = cli("tokens", "list").stdout
    assert first["token"][:8] in plain and "revoked" in plain
