"""CSV (formula) injection: IDs that a spreadsheet would read as a formula are refused
where they come in, and any formula-like cell a CSV export holds is neutralised."""

from __future__ import annotations

import csv
from urllib.parse import quote

import pytest

from dmp.activation import add_destination, link_segment, sync
from dmp.identity.explain import explain
from dmp.identity.idsync import import_matches
from dmp.identity.privacy import delete, optout
from dmp.segments.rule_segments import export_members
from dmp.web import create_app
from jobs import ingest as ingest_job
from tests.conftest import NOW
from tests.test_identity import line, load
from tests.test_sync import add_members, make_segment

FORMULAS = ["=cmd|' /C calc'!A0", "+1+2", "-2+3", "@SUM(A1:A2)"]


def test_ingest_quarantines_formula_cookie_ids_by_their_own_reason(store, config, write):
    result = load(store, config, write, line(NOW, "ck-good"), *(line(NOW, f) for f in FORMULAS))
    assert result.loaded == 1 and result.quarantined == len(FORMULAS)
    assert result.reasons == {"formula_id": len(FORMULAS)}
    assert store.con.execute("SELECT DISTINCT id FROM events").fetchall() == [("ck-good",)]
    assert store.con.execute("SELECT DISTINCT reason FROM quarantine").fetchall() == [
        ("formula_id",)
    ]


def test_formula_ids_sent_to_the_collector_are_quarantined_never_stored(config, store):
    app = create_app(config, store)
    client = app.test_client()
    client.get(f"/px.gif?id={quote(FORMULAS[0])}&url=https://a.example/")
    client.post("/collect", data='{"id": "-2+3", "id_type": "cookie"}')
    client.set_cookie("dmp_id", "+1+2")  # a cookie the browser was made to send
    client.get("/px.gif?url=https://a.example/")
    client.get("/sync/ttd?partner_uid=@SUM(1)")
    app.extensions["dmp.spool"].rotate()
    for spool in app.extensions["dmp.sync_spools"].values():
        spool.rotate()
    summary = ingest_job.run(store, config)  # the collector stamps events with the real time
    assert (summary["loaded"], summary["quarantined"]) == (0, 3)
    assert store.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert store.con.execute("SELECT DISTINCT reason FROM quarantine").fetchall() == [
        ("formula_id",)
    ]
    # The cookie-sync spool (a CSV file) never holds the formula in the first place.
    assert not list(config.path("ingest.landing").glob("idsync/**/*.csv"))
    assert store.con.execute("SELECT count(*) FROM partner_ids").fetchone()[0] == 0


def test_partner_match_files_refuse_formula_ids_by_line(store, tmp_path):
    path = tmp_path / "matches.csv"
    path.write_text("ck1,TDID-1\n=HYPERLINK(1),TDID-2\nck3,-2+3\n")
    result = import_matches(store, "ttd", path, now=NOW)
    assert result["stored"] == 1
    assert [(i["line"], i["reason"]) for i in result["invalid"]] == [
        (2, "starts like a spreadsheet formula (= + - @)"),
        (3, "starts like a spreadsheet formula (= + - @)"),
    ]


def test_erasure_still_reaches_formula_like_ids_stored_before_they_were_refused(store, config):
    """Opt-outs, deletions and explain look IDs up: one that ingest would refuse today
    may have been stored earlier, and erasure must reach it."""
    add_members(store, make_segment(store, "old"), ["-legacy", "+legacy"], id_type="cookie")
    assert explain(store, config, "-legacy", id_type="cookie", now=NOW)["known"]
    assert optout(store, ["-legacy"], id_type="cookie", now=NOW)["invalid"] == []
    assert delete(store, ["+legacy"], id_type="cookie", now=NOW)["invalid"] == []
    assert store.con.execute("SELECT count(*) FROM devices").fetchone()[0] == 0


LEGACY = [*FORMULAS, "\tx", "\rx", "ck-plain", 'say "hi",there']


def neutralised(value: str) -> str:
    return "'" + value if value[0] in "=+-@\t\r" else value


@pytest.fixture
def legacy(store):
    """A segment whose cookie IDs were stored before ingest refused formula-like IDs
    (and enough others to be above the minimum audience)."""
    plain = [f"ck{i}" for i in range(100)]  # min_audience
    add_members(store, make_segment(store, "legacy"), LEGACY + plain, id_type="cookie")
    return LEGACY + plain


def test_segment_export_neutralises_formula_cells(store, legacy, tmp_path):
    out = tmp_path / "legacy.csv"
    assert export_members(store, "legacy", out, NOW) == len(legacy)
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "id_type"]
    written = [r[0] for r in rows[1:]]
    assert written == sorted(neutralised(v) for v in legacy)  # sorted, as exports are
    text = out.read_text()
    assert '"\'=cmd|\' /C calc\'!A0","cookie"' in text  # prefixed, and the cell quoted
    assert not list(tmp_path.glob(".*partial"))


def test_file_connector_neutralises_formula_cells(store, config, legacy):
    add_destination(store, "files", "file", {}, now=NOW)
    link_segment(store, "files", "legacy")
    sync(store, config, now=NOW, env={})
    with (config.home / "exports" / "legacy.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["id"] for r in rows) == sorted(neutralised(v) for v in legacy)
