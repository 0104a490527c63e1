"""Identity lifecycle: expiry, opt-outs, deletion, consent, the ID graph, partner IDs, bots."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from dmp import tcf
from dmp.config import load_config
from dmp.identity import maintain
from dmp.identity.bots import flag_bots
from dmp.identity.consent import refresh_decisions, usable_events_sql
from dmp.identity.expiry import expire
from dmp.identity.explain import explain
from dmp.identity.graph import build_groups
from dmp.identity.idsync import import_matches
from dmp.identity.privacy import delete, optout
from dmp.ingest import ingest_files
from tests.conftest import NOW

COLUMNS = ("url", "event", "category", "country", "consent", "gpc", "hem", "maid", "cookie")
HEADER = "ts,id,id_type," + ",".join(COLUMNS) + "\n"
MAID = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
HEM = "b" * 64


def line(ts: datetime, id_: str, id_type: str = "cookie", **fields: str) -> str:
    """One CSV log row; columns not given are empty (gpc 0, a news page)."""
    fields = {"url": "https://news.example/a", "gpc": "0", **fields}
    return ",".join([ts.isoformat() + "Z", id_, id_type, *(fields.get(c, "") for c in COLUMNS)])


def load(store, config, write, *lines: str, name: str = "log.csv", now: datetime = NOW):
    """Ingest ``line()`` rows as one CSV file and return the file's result."""
    text = HEADER + "".join(row + "\n" for row in lines)
    return ingest_files(store, config, [write(name, text)], now=now)[0]


def count(store, sql: str, *params) -> int:
    return store.con.execute(sql, list(params)).fetchone()[0]


def device_ids(store) -> set[str]:
    return {r[0] for r in store.con.execute("SELECT id FROM devices").fetchall()}


def with_settings(config, *overrides: str):
    return load_config(config.home, overrides, env={})


# -- expiry -------------------------------------------------------------------


def test_expiry_is_exact_to_the_second_per_id_type(store, config, write):
    day = timedelta(days=1)
    load(
        store,
        config,
        write,
        line(NOW - 30 * day, "ck-expired"),
        line(NOW - 30 * day + timedelta(seconds=1), "ck-kept"),
        line(NOW - 90 * day, MAID, "maid"),
        line(NOW - 89 * day, "38400000-8cf0-11bd-b23e-10b96e40000d", "maid"),
    )
    result = expire(store, config, now=NOW)
    assert result["expired_by_type"] == {"cookie": 1, "maid": 1}
    assert device_ids(store) == {"ck-kept", "38400000-8cf0-11bd-b23e-10b96e40000d"}
    removed = store.con.execute("SELECT id, reason FROM identity_removals ORDER BY id").fetchall()
    assert removed == [(MAID, "expired"), ("ck-expired", "expired")]
    # Events of expired IDs stay until retention (90 days) says otherwise.
    assert count(store, "SELECT count(*) FROM events WHERE id = 'ck-expired'") == 1
    assert count(store, "SELECT count(*) FROM events WHERE id = ?", MAID) == 1


def test_event_retention_and_links_of_expired_ids(store, config, write):
    old = NOW - timedelta(days=91)
    load(
        store,
        config,
        write,
        line(old, "ck-old", maid=MAID),
        line(NOW - timedelta(days=1), "ck-new"),
        now=NOW,
    )
    store.con.execute("UPDATE devices SET last_seen = ? WHERE id = ?", [NOW, MAID])
    result = expire(store, config, now=NOW)
    assert result["events_past_retention"] == 1
    assert count(store, "SELECT count(*) FROM events WHERE id = 'ck-old'") == 0
    assert count(store, "SELECT count(*) FROM id_links") == 0  # its link went with it


def test_dry_run_reports_and_changes_nothing(store, config, write, snapshot):
    load(store, config, write, line(NOW - timedelta(days=40), "ck1"), line(NOW, "ck2"))
    before = snapshot(store)
    result = expire(store, config, now=NOW, dry_run=True)
    assert (result["dry_run"], result["expired"]) == (True, 1)
    assert snapshot(store) == before
    assert count(store, "SELECT count(*) FROM identity_removals") == 0


# -- opt-outs -----------------------------------------------------------------


def test_optout_removes_data_keeps_only_the_id_and_wins_at_ingest(store, config, write):
    load(store, config, write, line(NOW, "ck1", maid=MAID), line(NOW, "ck2"), name="a.csv")
    summary = optout(store, ["ck1", "bad id with spaces", "00000000-0000-0000-0000-000000000000"])
    assert summary["valid"] == 1
    assert [(b["line"], b["reason"]) for b in summary["invalid"]] == [
        (2, "not a valid cookie"),
        (3, "all-zero MAID (limited ad tracking)"),
    ]
    assert device_ids(store) == {"ck2"}
    assert count(store, "SELECT count(*) FROM events WHERE id = 'ck1'") == 0
    assert count(store, "SELECT count(*) FROM id_links") == 0
    assert store.con.execute("SELECT id, id_type, source FROM optouts").fetchall() == [
        ("ck1", "cookie", "cli")
    ]
    # Its future events are dropped and counted, not quarantined; links to it are not made.
    later = load(
        store,
        config,
        write,
        line(NOW, "ck1"),
        line(NOW, "ck3", cookie="ck1"),
        name="b.csv",
    )
    assert (later.loaded, later.dropped, later.quarantined) == (1, 1, 0)
    assert later.reasons == {"opted_out": 1}
    assert "ck1" not in device_ids(store)
    assert count(store, "SELECT count(*) FROM id_links WHERE linked_id = 'ck1'") == 0


def test_optout_file_reports_bad_lines_and_applies_good_ones(store, tmp_path):
    path = tmp_path / "optouts.csv"
    path.write_text(f"id,id_type\n{MAID.upper()},idfa\nck9,cookie\nnot-a-maid,maid\n,\n{HEM},hem\n")
    summary = optout(store, path=path, source="file")
    assert summary["valid"] == 3
    assert summary["invalid"] == [
        {"line": 4, "value": "not-a-maid,maid", "reason": "not a valid maid"},
        {"line": 5, "value": ",", "reason": "not a valid cookie"},
    ]
    stored = sorted(store.con.execute("SELECT id_type, id FROM optouts").fetchall())
    assert stored == [("cookie", "ck9"), ("hem", HEM), ("maid", MAID)]


# -- deletion -----------------------------------------------------------------


def test_deletion_removes_every_row_and_audits_without_personal_data(store, config, write):
    load(store, config, write, line(NOW, "ck1", hem=HEM, maid=MAID), line(NOW, "ck2"))
    build_groups(store)
    summary = delete(store, [HEM], requested_by="dpo@agency", with_linked=True, now=NOW)
    assert summary["found"] == 3  # the email hash, the cookie and the MAID it links
    assert device_ids(store) == {"ck2"}
    assert count(store, "SELECT count(*) FROM events WHERE id <> 'ck2'") == 0
    assert count(store, "SELECT count(*) FROM id_links") == 0
    assert count(store, "SELECT count(*) FROM id_groups") == 0
    audit = store.con.execute("SELECT * FROM deletion_audit").fetchall()
    assert len(audit) == 1
    text = json.dumps(audit, default=str)
    assert HEM not in text and "ck1" not in text and MAID not in text
    deleted = {table: n for table, n in json.loads(audit[0][5]).items() if n}
    assert deleted == {"events": 1, "devices": 1, "id_links": 2, "id_groups": 3}
    reasons = store.con.execute("SELECT DISTINCT reason FROM identity_removals").fetchall()
    assert reasons == [("deleted",)]


def test_optout_and_deletion_reach_quarantined_rows(store, config, write):
    load(
        store,
        config,
        write,
        line(NOW, "ck1"),
        line(NOW, "ck1", country="USA"),  # quarantined: bad country
        line(NOW, "ck10", country="USA"),  # another ID that only starts the same
        line(NOW, MAID.upper(), "idfa", country="USA"),
        line(NOW, "cookie", country="USA"),  # an ID that is also a field value elsewhere
    )
    assert optout(store, ["ck1"], now=NOW)["rows_deleted"]["quarantine"] == 1
    assert delete(store, [MAID], now=NOW)["rows_deleted"]["quarantine"] == 1
    assert optout(store, ["cookie"], id_type="cookie", now=NOW)["rows_deleted"]["quarantine"] == 1
    left = store.con.execute("SELECT raw FROM quarantine").fetchall()
    assert [raw.split(",")[1] for (raw,) in left] == ["ck10"]
    # Later bad rows of an opted-out ID are dropped, not quarantined.
    result = load(store, config, write, line(NOW, "ck1", country="USA"), name="later.csv")
    assert (result.quarantined, result.dropped) == (0, 1)
    assert count(store, "SELECT count(*) FROM quarantine") == 1


def test_quarantined_rows_go_with_event_retention(store, config, write):
    old = NOW - timedelta(days=91)
    load(store, config, write, line(old, "ck1", country="USA"), now=old)
    load(store, config, write, line(NOW, "ck2", country="USA"), name="new.csv")
    result = expire(store, config, now=NOW)
    assert result["quarantined_past_retention"] == 1
    left = store.con.execute("SELECT raw FROM quarantine").fetchall()
    assert [raw.split(",")[1] for (raw,) in left] == ["ck2"]


def test_deleting_an_unknown_id_is_a_no_op_that_says_so(store, config, write, snapshot):
    load(store, config, write, line(NOW, "ck1"))
    before = snapshot(store)
    summary = delete(store, ["nobody"], now=NOW)
    assert (summary["found"], summary["unknown"]) == (0, 1)
    assert snapshot(store) == before


# -- consent and bots ---------------------------------------------------------


def tc_string(purposes, vendors=()) -> str:
    return tcf.encode(
        tcf.TCString(
            created=NOW,
            last_updated=NOW,
            purposes_consent=frozenset(purposes),
            vendor_consents=frozenset(vendors),
        )
    )


def test_only_consented_events_of_real_devices_are_usable(store, config, write):
    grants = tc_string(range(1, 11), vendors=[755])
    refuses = tc_string([1, 2])
    load(
        store,
        config,
        write,
        line(NOW, "ck-grants", consent=grants),
        line(NOW, "ck-refuses", consent=refuses),
        line(NOW, "ck-garbage", consent="not-a-tc-string"),
        line(NOW, "ck-none"),
        line(NOW, "ck-gpc", gpc="1"),
    )
    decided = refresh_decisions(store, config, now=NOW)
    assert decided == {"decided": 3, "undecodable": 1}
    usable = {
        r[0] for r in store.con.execute(f"SELECT id FROM ({usable_events_sql(config)})").fetchall()
    }
    assert usable == {"ck-grants", "ck-none"}

    strict = with_settings(config, "consent.require_tcf=true", "consent.vendor_id=99")
    assert refresh_decisions(store, strict, now=NOW)["decided"] == 3  # new policy: re-decided
    usable = {
        r[0] for r in store.con.execute(f"SELECT id FROM ({usable_events_sql(strict)})").fetchall()
    }
    assert usable == set()  # vendor 99 has no consent; no string no longer counts


def test_consent_pass_reads_only_files_loaded_since_the_last(store, config, write):
    first, second = tc_string([1, 3, 4]), tc_string([1])
    load(store, config, write, line(NOW, "ck1", consent=first))
    assert refresh_decisions(store, config, now=NOW)["decided"] == 1
    # Without new files nothing is read; a decision lost meanwhile is not looked for.
    store.con.execute("DELETE FROM consent_decisions")
    assert refresh_decisions(store, config, now=NOW)["decided"] == 0
    load(store, config, write, line(NOW, "ck2", consent=second), name="new.csv")
    assert refresh_decisions(store, config, now=NOW)["decided"] == 1
    strict = with_settings(config, "consent.vendor_id=99")
    assert refresh_decisions(store, strict, now=NOW)["decided"] == 2  # new policy: all again


def test_bots_are_flagged_and_kept_out_of_usable_events(store, config, write):
    busy = [line(NOW - timedelta(minutes=i), "ck-bot") for i in range(6)]
    load(store, config, write, *busy, line(NOW, "ck-human"))
    limited = with_settings(config, "identity.bot_max_events_per_day=5")
    assert flag_bots(store, limited) == {"bots": 1}
    usable = {
        r[0] for r in store.con.execute(f"SELECT id FROM ({usable_events_sql(config)})").fetchall()
    }
    assert usable == {"ck-human"}
    assert flag_bots(store, config) == {"bots": 0}  # limits raised: no longer a bot


# -- ID graph, partner IDs, explain -------------------------------------------


def test_id_graph_groups_connected_ids(store, config, write):
    load(
        store,
        config,
        write,
        line(NOW, "ck1", maid=MAID),
        line(NOW, "ck2", maid=MAID),
        line(NOW, "ck3", hem=HEM),
        line(NOW, "ck4"),
    )
    assert build_groups(store)["groups"] == 2
    groups = dict(store.con.execute("SELECT id, group_id FROM id_groups").fetchall())
    assert groups["ck1"] == groups["ck2"] == groups[MAID]
    assert groups["ck3"] == groups[HEM] != groups["ck1"]
    assert "ck4" not in groups


def test_partner_match_file(store, tmp_path):
    optout(store, ["ck-gone"])
    path = tmp_path / "ttd.csv"
    path.write_text("cookie_id,partner_id\nck1,p1\nck2\nck1,p2\nck-gone,p3\nck 4,p4\n")
    summary = import_matches(store, "ttd", path, now=NOW)
    assert summary["stored"] == 1
    assert [(b["line"], b["reason"]) for b in summary["invalid"]] == [
        (3, "expected cookie_id,partner_id"),
        (6, "not a valid cookie ID"),
    ]
    assert store.con.execute("SELECT cookie_id, partner_id FROM partner_ids").fetchall() == [
        ("ck1", "p2")
    ]
    with pytest.raises(Exception, match="partner name"):
        import_matches(store, "Bad Name!", path)


def test_explain_one_id(store, config, write):
    load(store, config, write, line(NOW - timedelta(days=2), "ck1", maid=MAID, gpc="1"))
    maintain(store, config, now=NOW)
    info = explain(store, config, "ck1", now=NOW)
    assert info["id_type"] == "cookie" and info["known"] and info["events"] == 1
    assert info["expires_at"] == (NOW + timedelta(days=28)).isoformat() + "Z"
    assert info["linked_ids"] == [{"id_type": "maid", "id": MAID}]
    assert info["consent"]["events_with_gpc"] == 1 and info["consent"]["events_usable"] == 0
    assert explain(store, config, "no such id!", now=NOW)["valid"] is False


# -- the command line ---------------------------------------------------------


def test_cli_optout_delete_explain_idsync(cli, tmp_path):
    assert cli("init").exit_code == 0
    result = cli("optout", "add", "ck1", "bad id", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["invalid"][0]["line"] == 2

    result = cli("delete", "nobody")
    assert result.exit_code == 0
    assert "1 ID(s) unknown here, nothing to delete" in result.stdout

    info = json.loads(cli("explain", "ck1", "--json").stdout)
    assert info["opted_out"]["source"] == "cli" and info["known"] is False

    matches = tmp_path / "m.csv"
    matches.write_text("ck2,partner-2\n")
    assert "1 matches stored for ttd" in cli("idsync", "import", "ttd", str(matches)).stdout
    assert cli("optout", "add").exit_code == 2  # nothing given: usage error


def test_cli_expire_dry_run_reports_and_keeps_everything(cli, home, write):
    cli("init")
    log = write("old.csv", HEADER + line(NOW - timedelta(days=400), "ck-old") + "\n")
    assert cli("ingest", str(log)).exit_code == 0
    runs = json.loads(cli("run", "expire", "--dry-run", "--json").stdout)
    assert runs[0]["result"]["dry_run"] is True and runs[0]["result"]["expired"] == 1
    assert json.loads(cli("status", "--json").stdout)["devices"] == 1
    assert cli("run", "profile", "--dry-run").exit_code == 2
