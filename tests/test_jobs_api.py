"""The jobs API as cron or Airflow use it: a bearer token, JSON in and out, runs recorded."""

from __future__ import annotations

import json
import re
import signal
import urllib.request

import pytest

from dmp.errors import DatabaseInUse
from dmp.store import open_store
from dmp.web import create_app
from tests.conftest import read_until

TOKEN = "test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ok(store, config, now):
    return {"devices": store.con.execute("SELECT count(*) FROM devices").fetchone()[0]}


@pytest.fixture
def api(config, make_runner, monkeypatch):
    """A test client over an app whose runner has the given jobs; the token set or not."""

    def _make(jobs: dict, token: str | None = TOKEN):
        if token is None:
            monkeypatch.delenv("DMP_API_TOKEN", raising=False)
        else:
            monkeypatch.setenv("DMP_API_TOKEN", token)
        runner = make_runner(jobs)
        return create_app(config, runner=runner).test_client(), runner

    return _make


def runs(store) -> list[tuple]:
    return store.con.execute("SELECT job, trigger, status FROM job_runs ORDER BY run_id").fetchall()


def test_api_is_off_until_a_token_is_configured(api):
    client, _ = api({"ok": ok}, token=None)
    for response in (client.get("/api/jobs", headers=AUTH), client.post("/api/jobs/ok/run")):
        assert response.status_code == 503
        assert response.json["error"]["code"] == "api_disabled"
        assert "DMP_API_TOKEN" in response.json["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
def test_api_needs_the_bearer_token(api, store, headers):
    client, _ = api({"ok": ok})
    for response in (client.get("/api/jobs", headers=headers), client.post("/api/jobs/ok/run")):
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert runs(store) == []


def test_unknown_things_are_json_404s(api):
    client, _ = api({"ok": ok})
    response = client.post("/api/jobs/nope/run", headers=AUTH)
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown_job"
    assert "installed: ok" in response.json["error"]["message"]
    response = client.get("/api/runs/99", headers=AUTH)
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown_run"
    assert client.get("/api/nothing", headers=AUTH).json["error"]["code"] == "not_found"
    wrong_method = client.get("/api/jobs/ok/run", headers=AUTH)
    assert wrong_method.status_code == 405
    assert wrong_method.json["error"]["code"] == "method_not_allowed"


def test_post_with_wait_runs_the_job_and_records_it(api, store):
    client, _ = api({"ok": ok})
    response = client.post("/api/jobs/ok/run?wait=1", headers=AUTH)
    assert response.status_code == 200
    run = response.json["run"]
    assert (run["job"], run["trigger"], run["status"], run["result"]) == (
        "ok",
        "api",
        "succeeded",
        {"devices": 0},
    )
    assert response.headers["Location"] == f"/api/runs/{run['run_id']}"
    assert client.get(response.headers["Location"], headers=AUTH).json["run"] == run
    assert runs(store) == [("ok", "api", "succeeded")]
    [job] = client.get("/api/jobs", headers=AUTH).json["jobs"][:1]
    assert job["job"] == "ok" and job["last_run"] == run


def test_post_starts_a_run_and_refuses_a_second_one(api, store, gate):
    client, runner = api({"gate": gate})
    started = client.post("/api/jobs/gate/run", headers=AUTH)
    assert started.status_code == 202
    run_id = started.json["run"]["run_id"]
    assert started.json["run"]["status"] == "running"
    assert gate.entered.wait(10)

    again = client.post("/api/jobs/gate/run", headers=AUTH)
    assert again.status_code == 409
    assert again.json["error"]["code"] == "job_running"
    assert again.json["run"]["status"] == "skipped"
    assert client.get(f"/api/runs/{run_id}", headers=AUTH).json["run"]["status"] == "running"
    assert client.get("/api/jobs", headers=AUTH).json["jobs"][0]["running"] is True

    gate.release.set()
    assert runner.stop(timeout=30) == []  # waits for the run to end
    assert client.get(f"/api/runs/{run_id}", headers=AUTH).json["run"]["status"] == "succeeded"
    stopping = client.post("/api/jobs/gate/run", headers=AUTH)
    assert stopping.status_code == 503 and stopping.json["error"]["code"] == "shutting_down"
    assert runs(store) == [("gate", "api", "succeeded"), ("gate", "api", "skipped")]


def test_app_over_a_store_runs_the_installed_jobs(config, store, monkeypatch):
    monkeypatch.setenv("DMP_API_TOKEN", TOKEN)
    client = create_app(config, store).test_client()
    jobs = {job["job"]: job for job in client.get("/api/jobs", headers=AUTH).json["jobs"]}
    assert jobs["ingest"]["installed"] and jobs["ingest"]["cron"] == "*/5 * * * *"
    response = client.post("/api/jobs/ingest/run?wait=true", headers=AUTH)
    assert response.json["run"]["result"]["files"] == 0


def test_serve_runs_api_triggered_jobs_and_stops_cleanly(dmp_process, config):
    proc = dmp_process(
        "--set",
        "scheduler.stop_timeout_seconds=0",
        "serve",
        "--port",
        "0",
        env={"DMP_API_TOKEN": TOKEN},
    )
    listening = read_until(proc.stderr, "dmp serve: listening on")[-1]
    base = re.search(r"http://\S+", listening)[0] + "/api"

    def call(method: str, path: str) -> tuple[int, dict]:
        request = urllib.request.Request(base + path, method=method, headers=AUTH)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)

    status, body = call("GET", "/jobs")
    assert status == 200 and "slow" in {job["job"] for job in body["jobs"]}
    status, body = call("POST", "/jobs/slow/run")
    assert status == 202 and body["run"]["trigger"] == "api"
    assert proc.stdout.readline() == "inside\n"

    with pytest.raises(DatabaseInUse, match=r"it is `dmp serve`: trigger a job through its API"):
        open_store(config)

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    with open_store(config) as store:
        assert store.con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
        assert runs(store) == [("slow", "api", "interrupted")]
