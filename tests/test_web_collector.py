"""The collector: pixel, batch, GPC, TCF, opt-out and cookie sync, through spool files
that the ingest job loads (never DuckDB on the request path)."""

from __future__ import annotations

import json

import pytest

from dmp import tcf
from dmp.identity.consent import refresh_decisions, usable_events_sql
from dmp.web import create_app
from dmp.web.collector import GIF
from dmp.web.spool import Spool
from jobs import ingest as ingest_job
from tests.conftest import NOW

TCF = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"


@pytest.fixture
def app(config, store):
    return create_app(config, store)


def spooled(config) -> list[dict]:
    landing = config.path("ingest.landing")
    lines = []
    for path in sorted(landing.glob("collector-*.jsonl*")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def test_pixel_sets_a_cookie_and_spools_the_event(app, config, store):
    client = app.test_client()
    response = client.get(
        "/px.gif?url=https://cars.example/new&gdpr_consent=" + TCF, headers={"Referer": "x"}
    )
    assert response.status_code == 200 and response.data == GIF
    assert response.mimetype == "image/gif" and "no-store" in response.headers["Cache-Control"]
    cookie = client.get_cookie("dmp_id")
    assert cookie is not None and cookie.http_only
    client.get("/px.gif?url=https://cars.example/used&event=click")
    assert client.get_cookie("dmp_id").value == cookie.value  # kept, not replaced
    [first, second] = spooled(config)
    assert first["id"] == second["id"] == cookie.value and first["id_type"] == "cookie"
    assert first["consent"] == TCF and first["gpc"] == 0 and second["event"] == "click"
    # nothing in DuckDB until the ingest job loads the spool
    assert store.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    app.extensions["dmp.spool"].rotate()
    assert ingest_job.run(store, config)["loaded"] == 2
    assert store.con.execute("SELECT count(*) FROM events").fetchone()[0] == 2


def test_gpc_means_no_new_cookie_and_a_flagged_event(app, config):
    client = app.test_client()
    client.get("/px.gif?url=https://a.example/", headers={"Sec-GPC": "1"})
    assert client.get_cookie("dmp_id") is None and spooled(config) == []
    client.set_cookie("dmp_id", "known-cookie")
    client.get("/px.gif?url=https://a.example/", headers={"Sec-GPC": "1"})
    [event] = spooled(config)
    assert event["id"] == "known-cookie" and event["gpc"] == 1


def test_collect_takes_json_lines_and_reports_bad_ones(app, config, store):
    client = app.test_client()
    body = "\n".join([
        json.dumps({"ts": "2026-11-20T10:00:00Z", "id": "c1", "id_type": "cookie",
                    "url": "https://a.example/x"}),
        "not json",
        json.dumps({"url": "no id"}),
        json.dumps({"ts": "2026-11-20T10:01:00Z", "id": "c2", "url": "https://a.example/y",
                    "gpc": 1}),
    ])  # fmt: skip
    response = client.post("/collect", data=body)
    assert response.status_code == 200
    assert response.json["accepted"] == 2
    assert [r["line"] for r in response.json["rejected"]] == [2, 3]
    assert [e["gpc"] for e in spooled(config)] == [0, 1]
    assert client.post("/collect", data="nope").status_code == 400


def test_acknowledged_events_survive_a_crash(config, store):
    """A spool that died with its file open: the next spool hands the file to ingest."""
    dead = Spool.for_config(config)
    dead.append(
        ['{"ts":"2026-11-20T10:00:00Z","id":"c9","id_type":"cookie","url":"https://a.example/"}']
    )
    [part] = list(config.path("ingest.landing").glob("*.part"))
    assert ingest_job.run(store, config)["files"] == 0  # still being written: not loaded
    Spool.for_config(config)  # a new process starts
    assert not part.exists()
    assert ingest_job.run(store, config)["loaded"] == 1


def test_spool_rotates_by_size(tmp_path):
    spool = Spool(tmp_path, ".jsonl", max_bytes=100, max_seconds=3600)
    for i in range(10):
        spool.append([json.dumps({"id": f"c{i}", "pad": "x" * 40})])
    done = list(tmp_path.glob("*.jsonl"))
    assert len(done) == 5 and not list(tmp_path.glob("*.part"))


def test_optout_records_it_and_stops_collection(app, config, store):
    client = app.test_client()
    client.set_cookie("dmp_id", "leaving-cookie")
    response = client.get("/optout")
    assert response.status_code == 200 and "opted out" in response.text
    assert store.con.execute("SELECT id, id_type, source FROM optouts").fetchall() == [
        ("leaving-cookie", "cookie", "http")
    ]
    assert client.get_cookie("dmp_optout") is not None
    client.get("/px.gif?url=https://a.example/")
    assert spooled(config) == [] and client.get_cookie("dmp_id") is None


def test_cookie_sync_fills_partner_ids_through_the_ingest_job(app, config, store):
    client = app.test_client()
    client.set_cookie("dmp_id", "our-cookie")
    response = client.get("/sync/ttd?partner_uid=TDID-123")
    assert response.status_code == 200 and response.data == GIF
    # an open redirect is refused unless the host is configured
    evil = client.get("/sync/ttd?partner_uid=TDID-123&redirect=https://evil.example/")
    assert evil.status_code == 200
    for spool in app.extensions["dmp.sync_spools"].values():
        spool.rotate()
    assert ingest_job.run(store, config)["partner_ids"] == 1
    assert store.con.execute(
        "SELECT partner, cookie_id, partner_id FROM partner_ids"
    ).fetchall() == [("ttd", "our-cookie", "TDID-123")]


def usable_ids(store, config) -> set[str]:
    """IDs whose events may feed profiles, after the consent pass."""
    refresh_decisions(store, config)
    sql = f"SELECT DISTINCT id FROM ({usable_events_sql(config)})"
    return {row[0] for row in store.con.execute(sql).fetchall()}


def test_a_refused_consent_stays_refused_after_a_hit_without_one(app, config, store):
    """Regression: the spool's first hit had no consent string, and the reader took
    its columns from it, so every later hit's refusal was dropped and read as consent."""
    refuses = tcf.encode(
        tcf.TCString(
            created=NOW, last_updated=NOW, purposes_consent=frozenset({2, 5, 6, 7, 8, 9, 10})
        )
    )
    client = app.test_client()
    client.get("/px.gif?id=ck-first&url=https://a.example/")
    for n in range(30):
        client.get(
            f"/px.gif?id=ck-{n}&url=https://cars.example/{n}&category=2&gdpr_consent={refuses}"
        )
    app.extensions["dmp.spool"].rotate()
    assert ingest_job.run(store, config)["loaded"] == 31
    stored = store.con.execute(
        "SELECT count(*), count(consent), count(url), count(categories) FROM events "
        "WHERE id <> 'ck-first'"
    ).fetchone()
    assert stored == (30, 30, 30, 30)
    assert usable_ids(store, config) == {"ck-first"}


def test_one_anonymous_line_is_quarantined_alone(app, config, store):
    """Regression: ``{"id": "x"}`` (no id_type) as a spool's first line sent the whole
    file to failed/, losing every acknowledged event in it."""
    lines = [json.dumps({"id": "x"})] + [
        json.dumps({"id": f"ck-{n}", "id_type": "cookie", "url": f"https://a.example/{n}"})
        for n in range(50)
    ]
    response = app.test_client().post("/collect", data="\n".join(lines))
    assert response.get_json()["accepted"] == 51
    app.extensions["dmp.spool"].rotate()
    result = ingest_job.run(store, config)
    assert (result["loaded"], result["quarantined"]) == (50, 1)
    landing = config.path("ingest.landing")
    assert list((landing / "failed").glob("*")) == []
    assert store.con.execute("SELECT line, reason FROM quarantine").fetchall() == [
        (1, "bad_id_type")
    ]
