"""Erasure reaches every byte an ID left in the instance: tables, the database file,
raw files in the landing folder, spools, exports and quoted text."""

from __future__ import annotations

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
