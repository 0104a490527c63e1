"""Erasure reaches every byte an ID left in the instance: tables, the database file,
raw files in the landing folder, spools, exports and quoted text."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import duckdb
import pytest

from dmp.store import open_store
from dmp.web import create_app
from dmp.web.spool import Spool

HEADER = "ts,id,id_type,url,event,category,keywords,country,consent,gpc\n"
ID = "ck-erase-7f3a9b2c41"
MAID = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
OTHER = "ck-keep-5e1d22"


LOWER = MAID.lower()
FORMS = [ID.encode(), *(f.encode() for f in (LOWER, MAID, LOWER.replace("-", "")))]


def grep(folder: Path, forms: list[bytes] = FORMS) -> list[str]:
    """Every file under ``folder`` (database and WAL included) holding a form of the IDs."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and any(form in p.read_bytes() for form in forms)
    )


def _landing(home: Path, tmp_path: Path) -> None:
    """One file per path raw data takes: loaded (CSV with a quarantined row and a row
    without a valid ID, gzip JSON lines, Parquet) and refused (no header)."""
    landing = home / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "a.csv").write_text(
        HEADER
        + f"2026-11-19T10:00:00Z,{ID},cookie,https://cars.example/?u={ID},,,,,,\n"
        + f"2026-11-19T10:01:00Z,{OTHER},cookie,https://cars.example/,,,,,,\n"
        + f"not-a-time,{ID},cookie,,,,,,,\n"
        + f"2026-11-19T10:02:00Z,{ID},bogus,,,,,,,\n"
        + f"2026-11-19T10:03:00Z,{MAID},idfa,,,,,,,\n"
        # A crowd above the k-anonymity floor, so the segment is exported.
        + "".join(f"2026-11-19T10:04:00Z,ck-crowd-{n},cookie,,,,,,,\n" for n in range(120))
    )
    lines = [
        {"ts": "2026-11-19T11:00:00Z", "id": ID, "id_type": "cookie"},
        {"ts": "2026-11-19T11:00:00Z", "id": OTHER, "id_type": "cookie"},
    ]
    (landing / "c.jsonl.gz").write_bytes(
        gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode())
    )
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT * FROM (VALUES ('2026-11-19T12:00:00Z', '{ID}', 'cookie'),
                                       ('2026-11-19T12:00:00Z', '{OTHER}', 'cookie'))
                  t(ts, id, id_type)) TO '{landing / "d.parquet"}' (FORMAT parquet)"""
    )
    con.close()
    (landing / "b.csv").write_text(f"2026-11-19T10:00:00Z,{ID},cookie\n")


def _ok(result) -> dict | list | None:
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if result.output.startswith(("{", "[")) else None


def test_no_byte_of_a_deleted_id_is_left_in_the_instance(cli, home, tmp_path):
    _ok(cli("init"))
    _landing(home, tmp_path)
    cli("ingest", "--landing")
    assert sorted(p.name for p in (home / "landing" / "failed").iterdir()) == [
        "b.csv",
        "b.csv.reason",
    ]
    config = __import__("dmp.config", fromlist=["load_config"]).load_config(home, env={})
    # A collector's open spool file and a cookie-sync spool, not yet loaded.
    Spool.for_config(config).append([json.dumps({"id": ID, "id_type": "cookie"})])
    synced = home / "landing" / "idsync" / "ttd" / "collector-1.csv"
    synced.parent.mkdir(parents=True)
    synced.write_text(f"{ID},tdid-1\n{OTHER},tdid-2\n")
    # Exports: `dmp segments export` (outside the instance) and a file destination.
    _ok(cli("segments", "create", "cookies", "--rule", '{"id_type": "cookie"}'))
    outside = tmp_path / "outside" / "cookies.csv"
    _ok(cli("segments", "export", "cookies", "--out", str(outside)))
    _ok(cli("destinations", "add", "files", "--kind", "file"))
    _ok(cli("destinations", "link", "files", "cookies"))
    _ok(cli("sync", "--json"))
    held = grep(home)
    for place in (
        "dmp.duckdb",
        "exports/cookies.csv",
        "landing/done/a.csv",
        "landing/failed/b.csv",
    ):
        assert place in held
    assert "landing/failed/b.csv.reason" in held and "landing/done/d.parquet" in held
    assert any(p.startswith("landing/collector-") for p in held)
    assert ID.encode() in outside.read_bytes()

    deleted = _ok(cli("delete", ID, MAID, "--json"))
    assert deleted["found"] == 2 and "unknown" not in deleted
    assert deleted["files"]["lines_removed"] >= 9
    assert deleted["compacted"]["bytes_after"] > 0
    _ok(cli("sync", "--json"))  # the destination's removal confirmed: the queue empties
    with open_store(config) as store:
        assert store.con.execute("SELECT count(*) FROM identity_removals").fetchone()[0] == 0
    _ok(cli("compact", "--json"))

    assert grep(home) == []
    assert ID.encode() not in outside.read_bytes() and OTHER.encode() in outside.read_bytes()
    # Everyone else's lines stay, byte for byte where untouched.
    assert OTHER in (home / "landing" / "done" / "a.csv").read_text()
    assert (
        OTHER in gzip.decompress((home / "landing" / "done" / "c.jsonl.gz").read_bytes()).decode()
    )
    assert OTHER in synced.read_text()
    with open_store(config) as store:
        kept = store.con.execute("SELECT count(*) FROM events WHERE id = ?", [OTHER]).fetchone()
    assert kept[0] == 3


def test_delete_finds_an_id_known_only_from_a_refused_file(cli, home, tmp_path):
    _ok(cli("init"))
    failed = home / "landing" / "failed"
    failed.mkdir(parents=True)
    (failed / "x.csv").write_text(f"2026-11-19T10:00:00Z,{ID},cookie\n")
    (failed / "x.csv.reason").write_text(f"x.csv: first line {ID},cookie\n")
    result = cli("delete", ID)
    assert result.exit_code == 0, result.output
    assert "unknown here" not in result.output
    assert "2 raw lines removed from 2 file(s)" in result.output
    assert not (failed / "x.csv").exists() and grep(home) == []


def test_optout_leaves_the_id_in_the_optout_list_only(cli, home, tmp_path):
    """And in the removal queue, until the next sync has removed it at destinations."""
    _ok(cli("init"))
    _landing(home, tmp_path)
    cli("ingest", "--landing")
    summary = _ok(cli("optout", "add", ID, "--json"))
    assert summary["new_optouts"] == 1 and summary["files"]["lines_removed"] >= 5
    assert grep(home, [ID.encode()]) == ["dmp.duckdb"]
    config = __import__("dmp.config", fromlist=["load_config"]).load_config(home, env={})
    with open_store(config) as store:
        con = store.con
        columns = con.execute(
            """SELECT table_name, column_name FROM duckdb_columns()
               WHERE NOT internal AND data_type = 'VARCHAR'
                 AND table_name NOT IN ('optouts', 'identity_removals')"""
        ).fetchall()
        for table, column in columns:
            hits = con.execute(
                f'SELECT count(*) FROM "{table}" WHERE contains("{column}", ?)', [ID]
            ).fetchone()[0]
            assert hits == 0, (table, column)


def test_duckdb_keeps_deleted_rows_bytes_until_compacted(config):
    from dmp.store import compact

    with open_store(config) as store:
        store.con.execute("INSERT INTO optouts VALUES (?, 'cookie', 'cli', now())", [ID])
    with open_store(config) as store:
        store.con.execute("DELETE FROM optouts")
        store.con.execute("CHECKPOINT")
    database = config.path("store.database")
    assert ID.encode() in database.read_bytes()  # deleted, checkpointed, still there
    with open_store(config) as store:
        sequence_before = store.con.execute("SELECT nextval('file_id_seq')").fetchone()[0]
        tables = store.con.execute("SELECT sql FROM duckdb_tables() ORDER BY 1").fetchall()
    compact(config)
    assert ID.encode() not in database.read_bytes()
    with open_store(config) as store:
        assert store.con.execute("SELECT nextval('file_id_seq')").fetchone()[0] > sequence_before
        assert store.con.execute("SELECT sql FROM duckdb_tables() ORDER BY 1").fetchall() == tables


@pytest.fixture
def app(config, store):
    return create_app(config, store)


def test_http_optout_rewrites_the_open_spool_without_the_browser_lines(app, config):
    browser, other = app.test_client(), app.test_client()
    browser.get("/px.gif?url=https://cars.example/")
    other.get("/px.gif?url=https://cars.example/")
    cookie = browser.get_cookie("dmp_id").value
    kept = other.get_cookie("dmp_id").value
    assert browser.get("/optout").headers["X-Dmp-Optout"] == "recorded"
    landing = config.path("ingest.landing")
    spooled = b"".join(p.read_bytes() for p in landing.glob("collector-*"))
    assert cookie.encode() not in spooled and kept.encode() in spooled
    other.get("/px.gif?url=https://cars.example/again")  # the spool goes on after the pause
    assert len(list(landing.glob("collector-*.part"))) == 1


def test_http_optout_of_a_cookie_not_ours_erases_no_raw_line(app, config):
    """Anyone can send any cookie value: a common one must not erase others' lines."""
    other = app.test_client()
    other.get("/px.gif?url=https://cars.example/&event=pageview")
    hostile = app.test_client()
    hostile.set_cookie("dmp_id", "pageview")
    assert hostile.get("/optout").status_code == 200
    landing = config.path("ingest.landing")
    assert b"pageview" in b"".join(p.read_bytes() for p in landing.glob("collector-*"))


def test_api_optout_scrubs_files(app, config, store):
    from dmp.web.users import add_user, create_token

    add_user(store, "admin", "admin", password="correct horse battery")
    token = create_token(store, "admin")["token"]
    spool = app.extensions["dmp.spool"]
    spool.append([json.dumps({"id": ID, "id_type": "cookie"}), json.dumps({"id": OTHER})])
    response = app.test_client().post(
        "/api/v1/optouts",
        json={"ids": [ID]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.json
    assert response.json["files"]["lines_removed"] == 1
    landing = config.path("ingest.landing")
    data = b"".join(p.read_bytes() for p in landing.glob("collector-*"))
    assert ID.encode() not in data and OTHER.encode() in data


# --- Which lines hold an ID: the value of an ID field, in any spelling ------------------


def _staff_token(store) -> str:
    from dmp.web.users import add_user, create_token, find_user

    if find_user(store, "admin") is None:
        add_user(store, "admin", "admin", password="correct horse battery")
    return create_token(store, "admin")["token"]


def _api_optout(app, store, ids: list[str]) -> dict:
    response = app.test_client().post(
        "/api/v1/optouts",
        json={"ids": ids},
        headers={"Authorization": f"Bearer {_staff_token(store)}"},
    )
    assert response.status_code == 200, response.json
    return response.json


def _snapshot_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _common_value_world(config, store) -> Path:
    """Other people's acknowledged events, each holding ``pageview``, ``cookie`` and
    ``US`` outside their ID fields, loaded (done/) and pending (spools); one person
    whose cookie ID is ``pageview``."""
    from dmp.ingest import ingest_landing
    from tests.conftest import NOW

    landing = config.path("ingest.landing")
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "a.csv").write_text(
        HEADER
        + f"2026-11-19T10:00:00Z,{OTHER},cookie,https://x.example/pageview,pageview,,,US,,\n"
        + "2026-11-19T10:01:00Z,pageview,cookie,https://x.example/,click,,,US,,\n"
        + f"2026-11-19T10:02:00Z,{MAID},idfa,https://x.example/,pageview,,pageview,US,,\n"
    )
    (landing / "b.jsonl").write_text(
        json.dumps({"TS": "2026-11-19T10:03:00Z", "ID": OTHER, "Id_Type": "cookie"})
        + "\n"
        + json.dumps({"ts": "2026-11-19T10:04:00Z", "Id": "pageview", "id_type": "cookie"})
        + "\n"
        + json.dumps(
            {"ts": "2026-11-19T10:05:00Z", "id": "ck-3", "id_type": "cookie", "event": "pageview"}
        )
        + "\n"
    )
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT * FROM (VALUES ('2026-11-19T12:00:00Z', 'pageview', 'cookie', 'click'),
                                       ('2026-11-19T12:00:00Z', '{OTHER}', 'cookie', 'pageview'))
                  t(ts, id, id_type, event)) TO '{landing / "d.parquet"}' (FORMAT parquet)"""
    )
    con.close()
    ingest_landing(store, config, now=NOW)
    Spool.for_config(config).append(
        [json.dumps({"id": OTHER, "id_type": "cookie", "event": "pageview", "country": "US"})]
    )
    synced = landing / "idsync" / "ttd" / "collector-1.csv"
    synced.parent.mkdir(parents=True)
    synced.write_text(f"{OTHER},pageview\nck-4,cookie\n")
    return landing


def test_optout_of_a_common_value_keeps_everyone_elses_lines(app, config, store):
    """``pageview``, ``cookie`` and ``US`` occur in every line; only an ID field holding
    the value makes a line the opted-out person's. ``csv`` in a file's name is its type."""
    landing = _common_value_world(config, store)
    before = _snapshot_files(landing)
    for common in ("cookie", "US", "click", "csv", "jsonl", "gz"):
        files = _api_optout(app, store, [common])["files"]
        assert files["lines_removed"] == 0 and not files["files_rewritten"]
        assert not files["files_removed"] and not files["files_renamed"]
        assert _snapshot_files(landing) == before

    files = _api_optout(app, store, ["pageview"])["files"]
    assert files["lines_removed"] == 3
    assert sorted(Path(p).name for p in files["files_rewritten"]) == [
        "a.csv",
        "b.jsonl",
        "d.parquet",
    ]
    done = landing / "done"
    assert (done / "a.csv").read_text().splitlines() == [
        HEADER.strip(),
        f"2026-11-19T10:00:00Z,{OTHER},cookie,https://x.example/pageview,pageview,,,US,,",
        f"2026-11-19T10:02:00Z,{MAID},idfa,https://x.example/,pageview,,pageview,US,,",
    ]
    kept = (done / "b.jsonl").read_text().splitlines()
    assert [{k.lower(): v for k, v in json.loads(x).items()}["ts"] for x in kept] == [
        "2026-11-19T10:03:00Z",
        "2026-11-19T10:05:00Z",
    ]
    rows = duckdb.sql(f"SELECT id, event FROM '{done / 'd.parquet'}'").fetchall()
    assert rows == [(OTHER, "pageview")]
    for name, data in before.items():
        if not name.startswith("done/"):
            assert (landing / name).read_bytes() == data, name


def test_cli_optout_and_delete_of_a_common_value_keep_spools(cli, home):
    """Pending spools hold acknowledged events no table has yet: none is lost."""
    _ok(cli("init"))
    config = __import__("dmp.config", fromlist=["load_config"]).load_config(home, env={})
    Spool.for_config(config).append(
        [json.dumps({"id": OTHER, "id_type": "cookie", "event": "pageview"})] * 3
    )
    landing = config.path("ingest.landing")
    before = _snapshot_files(landing)
    assert _ok(cli("optout", "add", "pageview", "--json"))["files"]["lines_removed"] == 0
    assert _ok(cli("delete", "cookie", "--json"))["files"]["lines_removed"] == 0
    assert _snapshot_files(landing) == before


def test_delete_of_a_hashed_email_removes_the_raw_email_it_was_hashed_from(cli, home):
    """Ingest hashes a raw email in ``hem`` (trimmed, lower-cased); the file keeps it."""
    import hashlib

    _ok(cli("init"))
    landing = home / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "a.csv").write_text(
        "ts,id,id_type,hem\n"
        f'2026-11-19T10:00:00Z,{ID},cookie," VICTIM.PERSON@EXAMPLE.COM "\n'
        f"2026-11-19T10:01:00Z,{OTHER},cookie,other.person@example.com\n"
    )
    (landing / "b.jsonl").write_text(
        json.dumps(
            {
                "ts": "2026-11-19T10:00:00Z",
                "id": "ck-2",
                "id_type": "cookie",
                "HEM": "Victim.Person@example.com",
            }
        )
        + "\n"
    )
    cli("ingest", "--landing")
    hem = hashlib.sha256(b"victim.person@example.com").hexdigest()
    deleted = _ok(cli("delete", hem, "--json"))
    assert deleted["files"]["lines_removed"] == 2 and deleted["found"] == 1
    assert grep(home, [b"VICTIM.PERSON", b"Victim.Person"]) == []
    assert "other.person@example.com" in (landing / "done" / "a.csv").read_text()


def test_an_id_written_with_json_escapes_is_found(app, config, store):
    landing = config.path("ingest.landing")
    landing.mkdir(parents=True, exist_ok=True)
    escaped = "".join(f"\\u{ord(c):04x}" for c in ID[:3]) + ID[3:]
    (landing / "a.jsonl").write_text(
        f'{{"ts": "2026-11-19T10:00:00Z", "id": "{escaped}", "id_type": "cookie"}}\n'
        f'{{"ts": "2026-11-19T10:00:00Z", "id": "{OTHER}", "id_type": "cookie"}}\n'
    )
    files = _api_optout(app, store, [ID])["files"]
    assert files["lines_removed"] == 1
    assert [json.loads(x)["id"] for x in (landing / "a.jsonl").read_text().splitlines()] == [OTHER]


def test_refused_files_that_cannot_be_searched_go_on_any_erasure(app, config, store):
    """A file refused at ingest that no byte search can read through (another encoding,
    another compression, binary, a broken gzip) might hold anyone's ID."""
    import lzma

    failed = config.path("ingest.landing") / "failed"
    failed.mkdir(parents=True)
    line = f"2026-11-19T10:00:00Z,{ID},cookie\n"
    (failed / "u16.csv").write_bytes((HEADER + line).encode("utf-16"))
    (failed / "x.csv.xz").write_bytes(lzma.compress((HEADER + line).encode()))
    (failed / "bin.parquet").write_bytes(b"PAR1\x00\x01garbage" + ID.encode()[::-1])
    whole = gzip.compress((HEADER + line * 2000).encode())
    (failed / "broken.csv.gz").write_bytes(whole[: len(whole) // 2])
    (failed / "u16.csv.reason").write_text("u16.csv: not UTF-8 (line 1, byte 0)\n")
    (failed / "readable.csv").write_text(f"2026-11-19T10:00:00Z,{OTHER},cookie\n")
    files = _api_optout(app, store, ["ck-someone-else"])["files"]
    removed = ["bin.parquet", "broken.csv.gz", "u16.csv", "x.csv.xz"]
    assert sorted(Path(p).name for p in files["files_removed"]) == removed
    assert files["files_rewritten"] == [] and files["lines_removed"] == 0
    assert sorted(p.name for p in failed.iterdir()) == ["readable.csv", "u16.csv.reason"]


def test_an_id_in_a_file_name_is_renamed_away(cli, home, config):
    """A landing file named after an ID: the name goes, from disk and from the tables
    that recorded it (the file's record, its quarantined rows)."""
    _ok(cli("init"))
    landing = home / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / f"user-{ID}.csv").write_text(
        HEADER
        + f"2026-11-19T10:00:00Z,{OTHER},cookie,,,,,,,\n"
        + f"not-a-time,{OTHER},cookie,,,,,,,\n"
    )
    (landing / f"{ID}.csv").write_text("no header here\n")
    cli("ingest", "--landing")
    summary = _ok(cli("optout", "add", ID, "--json"))
    names = [str(p.relative_to(home)) for p in home.rglob("*")]
    assert not [n for n in names if ID in n]
    assert (landing / "done" / "user-id-removed.csv").read_text().count(OTHER) == 2
    assert sorted(Path(p).name for p in summary["files"]["files_renamed"]) == [
        "id-removed.csv",
        "id-removed.csv.reason",
        "user-id-removed.csv",
    ]
    with open_store(config) as store:
        for table, column in (("ingested_files", "path"), ("quarantine", "file")):
            values = store.con.execute(f"SELECT {column} FROM {table}").fetchall()
            assert values and not [v for (v,) in values if ID in v], table


def test_gzipped_parquet_is_filtered_as_parquet(app, config, store):
    landing = config.path("ingest.landing")
    (landing / "done").mkdir(parents=True)
    plain = landing / "p.parquet"
    duckdb.sql(
        f"""COPY (SELECT * FROM (VALUES ('2026-11-19T12:00:00Z', '{ID}', 'cookie'),
                                       ('2026-11-19T12:00:00Z', '{OTHER}', 'cookie'))
                  t(ts, id, id_type)) TO '{plain}' (FORMAT parquet, COMPRESSION uncompressed)"""
    )
    zipped = landing / "done" / "p.parquet.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    files = _api_optout(app, store, [ID])["files"]
    assert files["lines_removed"] == 1 and files["files_rewritten"] == [str(zipped)]
    plain.write_bytes(gzip.decompress(zipped.read_bytes()))
    assert duckdb.sql(f"SELECT id FROM '{plain}'").fetchall() == [(OTHER,)]


def test_id_fields_follow_the_files_layout_and_records_spanning_lines(app, config, store):
    """``adserver_*`` files name the ID ``device_id`` (config ``[layouts.adserver]``);
    a quoted field may hold a line break, and then a record is more than a line."""
    landing = config.path("ingest.landing")
    landing.mkdir(parents=True, exist_ok=True)
    header = "event_time_ms,device_id,device_os,page_url,action\n"
    (landing / "adserver_1.csv").write_text(
        header
        + f'1795000000000,{OTHER},cookie,"https://x.example/\n{ID}",{ID}\n'
        + f'1795000000000,{ID},cookie,"https://x.example/\nnext",click\n'
        + f"1795000000000,ck-3,cookie,https://x.example/{ID},pageview\n"
    )
    files = _api_optout(app, store, [ID])["files"]
    assert files["lines_removed"] == 1
    with (landing / "adserver_1.csv").open(newline="") as handle:
        kept = list(csv.reader(handle))
    assert [row[1] for row in kept] == ["device_id", OTHER, "ck-3"]
    assert kept[1][3] == f"https://x.example/\n{ID}"


def test_a_raw_email_in_a_parquet_hem_column_goes_with_its_hash(app, config, store):
    import hashlib

    done = config.path("ingest.landing") / "done"
    done.mkdir(parents=True)
    duckdb.sql(
        f"""COPY (SELECT * FROM (VALUES ('{OTHER}', ' Victim@X.example'), ('{ID}', 'o@x.example'))
                  t(id, hem)) TO '{done / "p.parquet"}' (FORMAT parquet)"""
    )
    files = _api_optout(app, store, [hashlib.sha256(b"victim@x.example").hexdigest()])["files"]
    assert files["lines_removed"] == 1
    assert duckdb.sql(f"SELECT id FROM '{done / 'p.parquet'}'").fetchall() == [(ID,)]


def test_a_failure_to_write_the_new_copy_never_costs_the_file(app, config, store):
    """Only a file that cannot be read is removed whole; one whose new copy cannot be
    written (here: a temporary file left in the way) keeps everyone's lines."""
    done = config.path("ingest.landing") / "done"
    done.mkdir(parents=True)
    (done / "a.csv").write_text(
        HEADER
        + f"2026-11-19T10:00:00Z,{ID},cookie,,,,,,,\n2026-11-19T10:00:00Z,{OTHER},cookie,,,,,,,\n"
    )
    (done / ".a.csv.erasing").write_text("left by an erasure that crashed\n")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.test_client().post(
        "/api/v1/optouts",
        json={"ids": [ID]},
        headers={"Authorization": f"Bearer {_staff_token(store)}"},
    )
    assert OTHER in (done / "a.csv").read_text()


def test_an_export_cell_dmp_neutralised_is_read_as_the_id(config, store, tmp_path):
    """``csvsafe`` writes the formula-like ID ``=legacy`` as ``'=legacy``."""
    from dmp.identity.erasure import Erasure
    from dmp.identity.privacy import optout

    out = tmp_path / "members.csv"
    out.write_text('"id","id_type"\n"\'=legacy","cookie"\n"ck-2","cookie"\n')
    store.con.execute("INSERT INTO exported_files VALUES (?, now())", [str(out)])
    summary = optout(store, ["=legacy"], id_type="cookie", erasure=Erasure(config))
    assert summary["files"]["lines_removed"] == 1
    assert out.read_text() == '"id","id_type"\n"ck-2","cookie"\n'
