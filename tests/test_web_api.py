"""The JSON API v1 and its users: tokens, roles, agency isolation, OpenAPI, CLI."""

from __future__ import annotations

import io
import json

import pytest

from dmp.store import open_store
from dmp.web import create_app
from dmp.web.users import add_user, create_token
from tests.web_helpers import PASSWORD, build_world, copy_world, seed_csv


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("webapi"))


@pytest.fixture
def app(world, home, config, monkeypatch):
    monkeypatch.delenv("DMP_API_TOKEN", raising=False)
    copy_world(world, home)
    with open_store(config) as store:
        yield create_app(config, store)


@pytest.fixture
def token(app):
    """A bearer header for a new user of the given role (and agency)."""
    store = app.extensions["dmp.runner"].store

    def _make(name: str, role: str, agency: str | None = None) -> dict:
        add_user(store, name, role, agency, PASSWORD)
        return {"Authorization": f"Bearer {create_token(store, name)['token']}"}

    return _make


def upload(client, headers, name="converters", agency=None, data=None):
    form = {"name": name, "id_type": "cookie", "file": (io.BytesIO(data), "seeds.csv")}
    if agency:
        form["agency"] = agency
    return client.post("/api/v1/seeds", headers=headers, data=form)


def test_every_route_needs_a_token_and_errors_are_json(app):
    client = app.test_client()
    for method, path, _ in _routes(app):
        if path == "/api/v1/openapi.json":
            continue
        response = client.open(path.replace("{name}", "x").replace("{segment}", "x")
                               .replace("{run_id}", "1"), method=method.upper())  # fmt: skip
        assert response.status_code == 401, (method, path)
        assert response.json["error"]["code"] == "unauthorized"
    wrong = client.get("/api/v1/segments", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_openapi_documents_every_route(app):
    client = app.test_client()
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.")
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    routes = {(m, p) for m, p, _ in _routes(app)}
    assert routes == documented and len(routes) > 20
    for ops in document["paths"].values():
        for op in ops.values():
            assert op["summary"] and op["summary"] != op["operationId"]


def _routes(app):
    from dmp.web.api_v1 import bp
    from dmp.web.openapi import routes

    with app.app_context():
        return routes(bp)


def test_buyer_builds_previews_and_changes_a_segment(app, token):
    client, auth = app.test_client(), token("bea", "buyer")
    rule = {"frequency": {"min_events": 5, "within_days": 3650}}
    preview = client.post("/api/v1/segments/preview", headers=auth, json={"rule": rule})
    assert preview.status_code == 200 and preview.json["size"] > 0
    created = client.post("/api/v1/segments", headers=auth, json={"name": "busy", "rule": rule})
    assert created.status_code == 201
    listed = {s["name"]: s for s in client.get("/api/v1/segments", headers=auth).json["segments"]}
    assert listed["busy"]["size"] == preview.json["size"]
    detail = client.get("/api/v1/segments/busy", headers=auth).json
    assert detail["segment"]["size"] == preview.json["size"] and detail["destinations"] == []
    bad = client.post("/api/v1/segments/preview", headers=auth, json={"rule": {"nope": 1}})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_rule"
    taken = client.post("/api/v1/segments", headers=auth, json={"name": "busy", "rule": rule})
    assert taken.status_code == 409 and taken.json["error"]["code"] == "conflict"
    changed = client.put("/api/v1/segments/busy", headers=auth, json={"rule": {"id_type": "maid"}})
    assert changed.status_code == 200
    assert client.delete("/api/v1/segments/busy", headers=auth).json == {"deleted": "busy"}
    missing = client.get("/api/v1/segments/busy", headers=auth)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_agency_sees_only_its_own_seed_lists_and_lookalikes(app, token, world):
    client = app.test_client()
    acme, other = token("acme-user", "agency", "acme"), token("other-user", "agency", "other")
    report = upload(client, acme, data=seed_csv(world)).json["report"]
    assert report["valid"] == 300 and report["match_rate"] > 0.9
    # The first 300 cookies of the world are no one's converters: no usable signal.
    lookalike = {"name": "like", "seed": "converters", "reach": "5%"}
    refused = client.post("/api/v1/lookalikes", headers=acme, json=lookalike)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "no_signal"
    assert "no usable signal" in refused.json["error"]["message"]
    made = client.post("/api/v1/lookalikes", headers=acme, json={**lookalike, "force": True})
    assert made.status_code == 201, made.json
    assert made.json["lookalike"]["quality"]["signal"] is False
    assert 0 <= made.json["lookalike"]["quality"]["auc"] <= 1

    assert client.get("/api/v1/seeds/converters", headers=acme).status_code == 200
    for path in ("/api/v1/seeds/converters", "/api/v1/lookalikes/like"):
        response = client.get(path, headers=other)
        assert response.status_code == 404 and "other" in response.json["error"]["message"]
    assert client.get("/api/v1/seeds", headers=other).json["seed_lists"] == []
    # an agency cannot name another agency, and does not see its lookalike segment
    assert client.get("/api/v1/seeds?agency=acme", headers=other).json["seed_lists"] == []
    assert client.get("/api/v1/segments", headers=other).json["segments"] == []
    assert client.get("/api/v1/segments/acme/like", headers=other).status_code == 404
    assert client.get("/api/v1/segments/acme/like", headers=acme).status_code == 200
    # and buyer-only routes are closed to agencies
    forbidden = client.get("/api/v1/destinations", headers=acme)
    assert forbidden.status_code == 403 and forbidden.json["error"]["code"] == "forbidden"


def test_destinations_sync_jobs_and_optouts(app, token, world):
    client, admin = app.test_client(), token("root", "admin")
    buyer = token("bea", "buyer")
    added = client.post(
        "/api/v1/destinations", headers=admin, json={"name": "files", "kind": "file"}
    )
    assert added.status_code == 201
    assert client.post("/api/v1/destinations", headers=buyer, json={}).status_code == 403
    linked = client.post(
        "/api/v1/destinations/files/links", headers=buyer, json={"segment": "everyone"}
    )
    assert linked.status_code == 201
    [run] = client.post("/api/v1/syncs", headers=buyer, json={"destination": "files"}).json["runs"]
    assert run["status"] == "succeeded" and run["accepted"] > 0
    [seen] = client.get("/api/v1/syncs", headers=buyer).json["runs"]
    assert seen["destination"] == "files" and seen["accepted"] == run["accepted"]
    [dest] = client.get("/api/v1/destinations", headers=buyer).json["destinations"]
    assert dest["links"][0]["held"] == run["accepted"]

    jobs = client.get("/api/v1/jobs", headers=buyer).json
    assert "ingest" in {j["job"] for j in jobs["jobs"]}
    started = client.post("/api/v1/jobs/nope/run", headers=buyer)
    assert started.status_code == 404

    cookie = world["cookies"][0]
    out = client.post("/api/v1/optouts", headers=buyer, json={"ids": [cookie]})
    assert out.status_code == 200 and out.json["new_optouts"] == 1
    assert client.get("/api/v1/status", headers=buyer).json["optouts"] == 1


def test_user_tokens_open_the_jobs_api(app, token):
    client = app.test_client()
    assert client.get("/api/jobs").json["error"]["code"] == "api_disabled"
    buyer, agency = token("bea", "buyer"), token("ag", "agency", "acme")
    assert client.get("/api/jobs", headers=buyer).status_code == 200
    assert client.get("/api/jobs", headers=agency).status_code == 403
    assert client.get("/api/jobs").status_code == 401


def test_cli_users_and_tokens(cli, home):
    result = cli("users", "add", "root", "--role", "admin", "--password-stdin", input=PASSWORD)
    assert result.exit_code == 0, result.output
    short = cli("users", "add", "x", "--role", "admin", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least 10" in short.output
    no_agency = cli("users", "add", "ag", "--role", "agency", "--no-password")
    assert no_agency.exit_code == 1 and "--agency" in no_agency.output
    assert cli("users", "add", "ag", "--role", "agency", "--agency", "acme", "--no-password")
    made = json.loads(cli("tokens", "create", "ag", "--json").stdout)
    assert made["token"].startswith("dmp_") and made["agency"] == "acme"
    listed = cli("users", "list", "--json").stdout
    assert made["token"] not in listed and PASSWORD not in listed
    with (home / "dmp.duckdb").open("rb") as handle:
        raw = handle.read()
    assert made["token"].encode() not in raw and PASSWORD.encode() not in raw
