"""The collector: pixel, batch, GPC, TCF, opt-out and cookie sync, through spool files
that the ingest job loads (never DuckDB on the request path)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
import requests

from dmp import tcf
from dmp.identity.consent import refresh_decisions, usable_events_sql
from dmp.store import open_store
from dmp.web import create_app
from dmp.web.collector import GIF
from dmp.web.spool import Spool
from jobs import ingest as ingest_job
from tests.conftest import NOW, read_until

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
    assert [e["gpc"] for e in spooled(config)] == [0, "1"]  # as given; ingest reads it
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


@contextmanager
def _serving(home):
    """A real `dmp serve` on a free port, its base URL once it listens; killed (as a
    crash would) or stopped by the caller, and reaped here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp", "--home", str(home), "serve", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    drain = threading.Thread(target=proc.stderr.read, daemon=True)  # keeps the pipe drained
    try:
        line = read_until(proc.stderr, "dmp serve: listening on")[-1]
        drain.start()
        yield proc, re.search(r"http://\S+", line)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        if drain.ident:
            drain.join(10)
        proc.stderr.close()


def _mixed_hits(worker: int, n: int, refuses: str) -> tuple[str, str, dict]:
    """(method, path or body, what must be stored): hits of every shape in one spool."""
    tag = f"w{worker}-{n}"
    shape = n % 4
    if shape == 0:  # a pixel hit without consent, url or category
        return "GET", f"/px.gif?id=ck-{tag}", {"url": None, "consent": None}
    if shape == 1:  # a pixel hit that refuses consent
        url = f"https://cars.example/{tag}"
        query = f"/px.gif?id=ck-{tag}&url={url}&category=2&gdpr_consent={refuses}"
        return "GET", query, {"url": url, "consent": refuses}
    if shape == 2:  # a batch line with nothing but the ID: quarantined (no id_type)
        return "POST", json.dumps({"id": f"ck-{tag}"}), {}
    url = f"https://news.example/{tag}"
    line = {"id": f"ck-{tag}", "id_type": "cookie", "url": url, "consent": refuses, "gpc": 1}
    return "POST", json.dumps(line), {"url": url, "consent": refuses}


def test_every_acknowledged_hit_of_any_shape_is_stored_after_kill_9(home, config):
    """kill -9 of `dmp serve` in a burst of hits of mixed shapes: every hit the
    collector acknowledged is stored once with its own fields (or, without an
    id_type, quarantined alone), and nothing in a spool file is lost."""
    refuses = tcf.encode(
        tcf.TCString(created=NOW, last_updated=NOW, purposes_consent=frozenset({2, 5, 6}))
    )
    with open_store(config):
        pass  # the instance exists before the server starts
    acknowledged: dict[str, dict] = {}
    lock, stop = threading.Lock(), threading.Event()

    def burst(url: str, worker: int) -> None:
        session = requests.Session()
        for n in range(10_000):
            if stop.is_set():
                break
            method, target, expect = _mixed_hits(worker, n, refuses)
            try:
                if method == "GET":
                    ok = session.get(url + target, timeout=5).status_code == 200
                else:
                    ok = session.post(url + "/collect", data=target, timeout=5).status_code == 200
            except requests.RequestException:  # the server died: not acknowledged
                break
            if ok:
                with lock:
                    acknowledged[f"ck-w{worker}-{n}"] = expect
        session.close()

    with _serving(home) as (proc, url):
        workers = [threading.Thread(target=burst, args=(url, w)) for w in range(4)]
        for worker in workers:
            worker.start()
        try:
            while len(acknowledged) < 400 and proc.poll() is None:
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            stop.set()
            for worker in workers:
                worker.join(10)
    with _serving(home) as (proc, _):  # hands the dead server's open spool file to ingest
        proc.terminate()
    with open_store(config) as store:
        ingest_job.run(store, config)
        stored = {
            row[0]: {"url": row[1], "consent": row[2]}
            for row in store.con.execute("SELECT id, url, consent FROM events").fetchall()
        }
        quarantined = [
            json.loads(row[0])["id"]
            for row in store.con.execute(
                "SELECT raw FROM quarantine WHERE reason = 'bad_id_type'"
            ).fetchall()
        ]
        counts = store.con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
    assert counts[0] == counts[1]  # each hit stored once
    assert len(quarantined) == len(set(quarantined))
    for cookie, expect in acknowledged.items():
        if expect:
            assert stored.get(cookie) == expect, cookie
        else:
            assert cookie in quarantined, cookie


def test_collector_keys_in_any_spelling_keep_refusals_and_gpc(app, config, store):
    """Regression (independent review): ``Consent``, ``gdpr_consent``, ``GDPR_CONSENT``
    were dropped (a refusal read as no string, which counts as consent), JSON ``true``
    and ``"TRUE"`` lost the GPC signal, and hem/maid/cookie links were dropped."""
    refuses = tcf.encode(tcf.TCString(created=NOW, last_updated=NOW))
    hem = "b" * 64
    lines = [
        {"id": "col01", "id_type": "cookie", "Consent": refuses},
        {"id": "col02", "id_type": "cookie", "consent": refuses, "gpc": True},
        {"id": "col03", "ID_TYPE": "cookie", "consent": refuses, "GPC": 1},
        {"id": "col04", "id_type": "cookie", "gdpr_consent": refuses},
        {"id": "col05", "id_type": "cookie", "consent": refuses, "gpc": "TRUE"},
        {"id": "col06", "id_type": "cookie", "hem": hem},
        {"id": "col07", "id_type": "cookie", "consent": "", "Consent": refuses},
        {"id": "col08", "id_type": "cookie", "consent": "other", "Consent": refuses},
    ]
    body = [json.dumps(line) for line in lines] + [
        # a key given twice must not keep one value silently (json.loads keeps the last)
        '{"id": "col11", "id_type": "cookie", "consent": "' + refuses + '", "consent": null}',
        '{"id": "col12", "id_type": "cookie", "gpc": true, "gpc": false}',
    ]
    client = app.test_client()
    response = client.post("/collect", data="\n".join(body))
    assert response.json == {
        "accepted": 8,  # col11's null is no value: its refusal stands
        "rejected": [
            {"line": 8, "reason": "two different values for consent"},
            {"line": 10, "reason": "two different values for gpc"},
        ],
    }
    client.get(f"/px.gif?id=col09&GDPR_CONSENT={refuses}")
    client.get(f"/px.gif?id=col10&consent=x&gdpr_consent={refuses}")  # ambiguous: not kept
    app.extensions["dmp.spool"].rotate()
    ingest_job.run(store, config)
    stored = dict(store.con.execute("SELECT id, consent FROM events").fetchall())
    assert stored == {f"col0{n}": refuses for n in range(1, 8) if n != 6} | {
        "col06": None,
        "col09": refuses,
        "col11": refuses,
    }
    gpc = dict(store.con.execute("SELECT id, gpc FROM events WHERE gpc").fetchall())
    assert gpc == {"col02": True, "col03": True, "col05": True}
    links = store.con.execute("SELECT id, linked_id FROM id_links").fetchall()
    assert links == [("col06", hem)]
    assert usable_ids(store, config) == {"col06"}
