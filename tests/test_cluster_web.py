"""Cluster identity in the JSON API and the dashboard: the quality report, the retired
filter, the retired-and-linked flag, and accepting a held change."""

from __future__ import annotations

import re

import pytest

from dmp.config import load_config
from dmp.store import open_store
from dmp.web import create_app
from dmp.web.users import add_user, create_token
from tests.web_helpers import PASSWORD, build_world, copy_world, hold_and_retire


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("clusterweb"))


@pytest.fixture
def app(world, home, monkeypatch):
    monkeypatch.delenv("DMP_API_TOKEN", raising=False)
    copy_world(world, home)
    config = load_config(home, ("segments.cluster_k=6",), env={})
    with open_store(config) as store:
        app = create_app(config, store)
        app.config["TESTING"] = True
        add_user(store, "root", "admin", None, PASSWORD)
        app.extensions["state"] = hold_and_retire(
            store, config, app.extensions["dmp.runner"].clock()
        )
        app.extensions["headers"] = {
            "Authorization": f"Bearer {create_token(store, 'root')['token']}"
        }
        yield app


def test_api_lists_retired_apart_and_accepts_a_held_change(app):
    client, state = app.test_client(), app.extensions["state"]
    headers = app.extensions["headers"]

    def names(query: str = "") -> set:
        response = client.get(f"/api/v1/segments{query}", headers=headers)
        assert response.status_code == 200, response.json
        return {s["name"] for s in response.json["segments"]}

    assert state["retired"] not in names() and state["held"] in names()
    assert state["retired"] in names("?status=retired") and state["held"] not in names(
        "?status=retired"
    )
    assert names("?status=all") == names() | names("?status=retired")
    bad = client.get("/api/v1/segments?status=gone", headers=headers)
    assert (
        bad.status_code == 400 and "segment status 'gone': expected" in bad.json["error"]["message"]
    )

    clusters = client.get("/api/v1/clusters", headers=headers).json
    report = clusters["report"]
    assert report["held"] == [state["held"]] and state["retired"] in report["retired"]
    assert report["k"] == 6 and report["churn_ari"] is not None and len(report["sizes"]) == 6
    assert clusters["holds"][0]["segment"] == state["held"] and len(clusters["runs"]) == 2

    detail = client.get(f"/api/v1/segments/{state['held']}", headers=headers).json
    assert detail["history"][0]["event"] == "held" and detail["segment"]["status"] == "live"
    done = client.post(f"/api/v1/segments/{state['held']}/accept", headers=headers)
    assert done.status_code == 200 and done.json["accepted"]["size"] > 0
    again = client.post(f"/api/v1/segments/{state['held']}/accept", headers=headers)
    assert again.status_code == 400 and "no held membership" in again.json["error"]["message"]


def test_pages_show_the_report_the_flags_and_the_accept_button(app):
    client, state = app.test_client(), app.extensions["state"]
    page = client.get("/login")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)[1]
    data = {"name": "root", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=data).status_code == 302

    overview = client.get("/").text
    assert "Retired cluster" in overview and state["retired"] in overview
    assert "Held change of" in overview
    clusters = client.get("/clusters").text
    assert "Size of each cluster" in clusters and "Churn across runs" in clusters
    assert state["retired"] in clusters  # among this run's retired
    assert state["retired"] not in client.get("/segments").text
    assert state["retired"] in client.get("/segments?status=retired").text

    segment = client.get(f"/segments/{state['held']}")
    assert "Accept the new membership" in segment.text and "new membership held" in segment.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', segment.text)[1]
    accepted = client.post(f"/segments/{state['held']}/accept", data={"csrf_token": csrf})
    assert accepted.status_code == 302
    after = client.get(accepted.headers["Location"]).text
    assert "held change accepted" in after and "Accept the new membership" not in after
    retired = client.get(f"/segments/{state['retired']}").text
    assert "This cluster no longer exists" in retired
