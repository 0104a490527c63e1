"""The dashboard as a buyer, an admin and an agency use it (Flask test client)."""

from __future__ import annotations

import io
import json
import re
import time

import pytest

from dmp.store import open_store
from dmp.web import create_app
from dmp.web.auth import LoginThrottle
from dmp.web.users import add_user
from tests.web_helpers import PASSWORD, build_world, copy_world, seed_csv


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("webpages"))


@pytest.fixture
def app(world, home, config):
    copy_world(world, home)
    with open_store(config) as store:
        for name, role, agency in [
            ("root", "admin", None),
            ("bea", "buyer", None),
            ("acme-user", "agency", "acme"),
            ("other-user", "agency", "other"),
        ]:
            add_user(store, name, role, agency, PASSWORD)
        app = create_app(config, store)
        app.config["TESTING"] = True
        yield app


def csrf(response) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', response.text)[1]


def login(client, name: str) -> str:
    page = client.get("/login")
    response = client.post(
        "/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf(page)}
    )
    assert response.status_code == 302, response.text
    return csrf(client.get("/seeds"))


def test_pages_need_a_log_in_and_wrong_passwords_fail(app):
    client = app.test_client()
    response = client.get("/segments")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    page = client.get("/login")
    bad = client.post("/login", data={"name": "bea", "password": "nope", "csrf_token": csrf(page)})
    assert bad.status_code == 200 and "Wrong name or password" in bad.text
    assert client.post("/login", data={"name": "bea", "password": PASSWORD}).status_code == 400


def test_repeated_wrong_passwords_lock_the_name_for_a_while(app):
    client = app.test_client()
    for _ in range(5):
        page = client.get("/login")
        data = {"name": "bea", "password": "guess", "csrf_token": csrf(page)}
        assert client.post("/login", data=data).status_code == 200
    page = client.get("/login")
    data = {"name": "Bea", "password": PASSWORD, "csrf_token": csrf(page)}
    locked = client.post("/login", data=data)
    assert locked.status_code == 429 and "Too many failed log-ins" in locked.text
    login(client, "root")  # other names are not locked


def test_login_throttle_lets_a_name_try_again_once_attempts_age():
    now = [0.0]
    throttle = LoginThrottle(limit=2, window_seconds=60, clock=lambda: now[0])
    assert throttle.attempt("a") == 0
    now[0] = 30
    assert throttle.attempt("a") == 0
    assert throttle.attempt("a") == 30  # until the first attempt is a minute old
    now[0] = 60.5
    assert throttle.attempt("a") == 0
    throttle.succeeded("a")
    assert throttle.attempts == {}
    now[0] = 200  # old names are forgotten
    throttle.attempt("b")
    assert list(throttle.attempts) == ["b"]
    assert LoginThrottle(limit=0, window_seconds=60).attempt("a") == 0


def test_every_page_renders_for_a_buyer_with_security_headers(app):
    client = app.test_client()
    login(client, "bea")
    for path in ["/", "/taxonomy", "/segments", "/segments/new", "/segments/everyone",
                 "/clusters", "/seeds?agency=acme", "/lookalikes?agency=acme", "/destinations",
                 "/jobs"]:  # fmt: skip
        response = client.get(path)
        assert response.status_code == 200, path
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "http://" not in response.text and "https://" not in response.text  # no CDN
    overview = client.get("/").text
    assert "Events per day" in overview and 'data-chart="bars"' in overview
    static = client.get("/static/charts.js")
    assert static.status_code == 200
    static.close()


def test_session_expires(app, monkeypatch):
    client = app.test_client()
    login(client, "bea")
    later = time.time() + 481 * 60
    monkeypatch.setattr(time, "time", lambda: later)
    assert client.get("/segments").status_code == 302


def test_forms_need_the_csrf_token(app):
    client = app.test_client()
    token = login(client, "bea")
    rule = '{"id_type": "maid"}'
    refused = client.post("/segments/new", data={"name": "maids", "rule": rule})
    assert refused.status_code == 400
    made = client.post("/segments/new", data={"name": "maids", "rule": rule, "csrf_token": token})
    assert made.status_code == 302 and made.headers["Location"] == "/segments/maids"
    assert "maids" in client.get("/segments").text
    preview = client.post(
        "/api/v1/segments/preview",
        json={"rule": {"id_type": "maid"}},
        headers={"X-CSRF-Token": token},
    )
    assert preview.status_code == 200 and preview.json["size"] > 0
    no_header = client.post("/api/v1/segments/preview", json={"rule": {"id_type": "maid"}})
    assert no_header.status_code == 400


def test_user_text_is_escaped(app):
    client = app.test_client()
    token = login(client, "bea")
    evil = "<script>alert(1)</script>"
    client.post("/segments/new", data={"name": evil, "rule": '{"id_type": "maid"}',
                                       "description": evil, "csrf_token": token})  # fmt: skip
    page = client.get("/segments").text
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    bad = client.post("/segments/new", data={"name": "x", "rule": "{", "csrf_token": token})
    assert "not valid JSON" in bad.text


def test_agency_uploads_seeds_creates_a_lookalike_and_sees_only_its_own(app, world):
    client = app.test_client()
    token = login(client, "acme-user")
    assert client.get("/segments").status_code == 403
    assert client.get("/destinations").status_code == 403
    response = client.post("/seeds", data={
        "name": "converters", "id_type": "cookie", "csrf_token": token,
        "file": (io.BytesIO(seed_csv(world)), "seeds.csv"),
    })  # fmt: skip
    assert response.status_code == 200 and 'id="upload-report"' in response.text
    assert "Match rate" in response.text
    form = {"name": "like", "seed": "converters", "reach": "5", "csrf_token": token}
    refused = client.post("/lookalikes", data=form)
    assert refused.status_code == 200 and "no usable signal" in refused.text
    made = client.post("/lookalikes", data={**form, "force": "1"})
    assert made.status_code == 302, made.text
    page = client.get(made.headers["Location"])
    assert page.status_code == 200 and 'data-chart="lift"' in page.text
    assert 'id="lookalike-verdict"' in page.text and "no usable signal" in page.text

    other = app.test_client()
    login(other, "other-user")
    assert "converters" not in other.get("/seeds?agency=acme").text
    assert other.get("/lookalikes/like?agency=acme").status_code == 404
    assert other.get("/lookalikes/like").status_code == 404


def test_admin_adds_a_destination_links_syncs_and_runs_a_job(app):
    client = app.test_client()
    token = login(client, "root")
    client.post("/destinations", data={"name": "files", "kind": "file", "options": "",
                                       "csrf_token": token})  # fmt: skip
    client.post("/destinations/link", data={"destination": "files", "segment": "everyone",
                                           "csrf_token": token})  # fmt: skip
    client.post("/destinations/sync", data={"destination": "files", "csrf_token": token})
    page = client.get("/destinations").text
    assert "Sync history" in page and "succeeded" in page and "everyone" in page
    assert "everyone" in client.get("/segments/everyone").text
    ran = client.post("/jobs/ingest/run", data={"csrf_token": token})
    assert ran.status_code == 302
    assert "ingest" in client.get("/jobs").text

    buyer = app.test_client()
    buyer_token = login(buyer, "bea")
    refused = buyer.post(
        "/destinations", data={"name": "x", "kind": "file", "csrf_token": buyer_token}
    )
    assert refused.status_code == 403


def test_missing_things_are_404s_and_refusals_are_messages(app):
    client = app.test_client()
    token = login(client, "bea")
    assert client.get("/segments/nope").status_code == 404
    response = client.post(
        "/destinations/link",
        data={"destination": "nope", "segment": "everyone", "csrf_token": token},
        headers={"Referer": "/destinations"},
        follow_redirects=True,
    )
    assert response.status_code == 200 and "no destination named nope" in response.text


def test_the_rule_builder_refuses_a_rule_past_its_limits_and_stores_nothing(app):
    client = app.test_client()
    token = login(client, "bea")
    wide = {"any": [{"domain": f"d{i}.example"} for i in range(1500)]}
    for rule in (json.dumps(wide), '{"any": ' * 5000 + '{"id_type": "maid"}' + "}" * 5000):
        page = client.post(
            "/segments/new",
            data={"name": "wide", "rule": rule, "csrf_token": token},
            follow_redirects=True,
        )
        assert page.status_code == 200 and "rule: " in page.text
    assert "wide" not in client.get("/segments").text
