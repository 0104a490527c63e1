"""Ingest: formats, normalisation, quarantine, rejection, idempotence, landing mode."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import datetime

import duckdb
import pytest

from dmp.ingest import ingest_files, ingest_landing
from dmp.ingest import loader as ingest_loader
from tests.conftest import NOW

IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"
HEM = "a" * 64
HEADER = "ts,id,id_type,url,event,category,country,gpc,hem,maid\n"


def ingest(store, config, *paths, **kwargs):
    return ingest_files(store, config, list(paths), now=NOW, **kwargs)


def rows(store, sql, *params):
    return store.con.execute(sql, list(params)).fetchall()


def test_csv_loads_and_normalises(store, config, write):
    path = write(
        "web.csv",
        HEADER
        + f"2026-11-19T10:00:00+02:00,{IDFA},idfa,https://WWW.Cars.example/a?b=1,"
        + f",1| 30|,us,1,{HEM.upper()},\n"
        + "2026-11-19 09:00:00,ck1,cookie,http://news.example:8080/x,Click,7|8,GB,0,,"
        + GAID.replace("-", "").upper()
        + "\n"
        + "1795082400,ck1,cookie,,pageview,,,,,\n"
        + "1795082400123,ck2,cookie,,,,,,,\n",
    )
    [result] = ingest(store, config, path)
    assert (result.status, result.rows, result.loaded, result.quarantined) == ("loaded", 4, 4, 0)
    assert (result.new_devices, result.updated_devices) == (3, 0)
    events = rows(
        store,
        "SELECT ts, id, id_type, event, domain, categories, country, gpc FROM events ORDER BY ts",
    )
    assert events == [
        (datetime(2026, 11, 19, 8, 0), IDFA.lower(), "maid", "pageview", "cars.example",
         ["1", "30"], "US", True),
        (datetime(2026, 11, 19, 9, 0), "ck1", "cookie", "click", "news.example", ["7", "8"], "GB",
         False),
        (datetime(2026, 11, 19, 10, 0), "ck1", "cookie", "pageview", None, None, None, None),
        (datetime(2026, 11, 19, 10, 0, 0, 123000), "ck2", "cookie", "pageview", None, None, None,
         None),
    ]  # fmt: skip
    assert rows(store, "SELECT id, id_type, event_count, first_seen, last_seen FROM devices "
                "WHERE id = 'ck1'") == [
        ("ck1", "cookie", 2, datetime(2026, 11, 19, 9, 0), datetime(2026, 11, 19, 10, 0))
    ]  # fmt: skip
    assert sorted(rows(store, "SELECT id, linked_id, linked_type FROM id_links")) == [
        (IDFA.lower(), HEM, "hem"),
        ("ck1", GAID, "maid"),
    ]


BAD_ROWS = [
    ("missing_id", "2026-11-19T10:00:00Z,,cookie,,,,,,,"),
    ("bad_id_type", "2026-11-19T10:00:00Z,x1,fax,,,,,,,"),
    ("bad_id", "2026-11-19T10:00:00Z,not-a-uuid,gaid,,,,,,,"),
    ("bad_id", "2026-11-19T10:00:00Z,has space,cookie,,,,,,,"),
    ("bad_timestamp", "last tuesday,ck1,cookie,,,,,,,"),
    ("bad_timestamp", ",ck1,cookie,,,,,,,"),
    ("bad_timestamp", "2026-11-19T10:00:00 Europe/ParisZ,ck1,cookie,,,,,,,"),
    ("future_timestamp", "2026-11-20T13:30:00Z,ck1,cookie,,,,,,,"),
    ("old_timestamp", "1999-12-31T23:59:59Z,ck1,cookie,,,,,,,"),
    ("bad_hem", "2026-11-19T10:00:00Z,ck1,cookie,,,,,,nothex,"),
    ("bad_linked_id", f"2026-11-19T10:00:00Z,ck1,cookie,,,,,,,{GAID[:-1]}"),
    ("bad_country", "2026-11-19T10:00:00Z,ck1,cookie,,,,USA,,,"),
    ("bad_gpc", "2026-11-19T10:00:00Z,ck1,cookie,,,,,maybe,,"),
    (
        "oversize_field",
        "2026-11-19T10:00:00Z,ck1,cookie,https://x.example/" + "a" * 9000 + ",,,,,,",
    ),
    ("oversize_field", f"2026-11-19T10:00:00Z,{'c' * 300},cookie,,,,,,,"),
]


def test_every_bad_row_class_is_quarantined_with_line_and_reason(store, config, write):
    good = "2026-11-19T10:00:00Z,ckgood,cookie,,,,,,,"
    lines = (
        [good] + [line for _, line in BAD_ROWS] + ["2026-11-19T10:00:00Z,ck9"] + [good[:-1] + ","]
    )
    path = write("bad.csv", HEADER + "\n".join(lines) + "\n")
    [result] = ingest(store, config, path)
    assert result.status == "loaded"
    assert result.rows == len(lines)
    assert result.loaded == 1 and result.duplicates == 1
    expected = {}
    for reason, _ in BAD_ROWS:
        expected[reason] = expected.get(reason, 0) + 1
    expected["malformed_row"] = 1
    assert result.reasons == dict(sorted(expected.items()))
    assert result.quarantined == len(BAD_ROWS) + 1
    stored = rows(store, "SELECT line, reason, raw FROM quarantine ORDER BY line")
    # line 1 is the header, line 2 the good row; each bad row keeps its own line.
    # A bad row's text is kept whole up to 4 KB, then shortened (oversized fields).
    for (_line, reason, raw), (want_reason, text) in zip(stored, BAD_ROWS, strict=False):
        assert reason == want_reason
        assert raw == (text if len(text) <= 4096 else f"{text[:4096]} ... ({len(text)} bytes)")
    assert [s[0] for s in stored] == list(range(3, 3 + len(BAD_ROWS) + 1))
    assert stored[-1][1:] == ("malformed_row", "2026-11-19T10:00:00Z,ck9")


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_line_numbers_count_blank_malformed_and_repeated_lines(store, config, write, quoted):
    """Staging reads in no particular order; lines are found by a second read of the
    lines whole, matched by their text without quotes."""
    bad = '"soon",ck2,cookie,"https://a.example/x,y"' if quoted else "soon,ck2,cookie,"
    lines = [
        "2026-11-19T10:00:00Z,ck1,cookie,",  # 2
        "2026-11-19T10:00:00Z,ck1",  # 3: malformed, refused by the reader
        bad,  # 4
        "",  # 5
        bad,  # 6: the same record again
        "2026-11-19T10:00:00Z,ck3,fax,",  # 7
    ]
    path = write("lines.csv", "ts,id,id_type,url\n" + "\n".join(lines) + "\n")
    [result] = ingest(store, config, path)
    assert result.quarantined == 4
    found = rows(store, "SELECT line, reason FROM quarantine ORDER BY line")
    assert found == [
        (3, "malformed_row"),
        (4, "bad_timestamp"),
        (6, "bad_timestamp"),
        (7, "bad_id_type"),
    ]


def test_line_numbers_of_a_record_over_two_lines_come_from_its_fields(store, config, write):
    lines = [
        "2026-11-19T10:00:00Z,ck1,cookie,",  # 2
        "2026-11-19T10:00:00Z,ck1",  # 3: malformed, refused by the reader
        "",  # 4
        '"soon",ck2,cookie,"https://a.example/x',  # 5: a record over two lines,
        'y"',  # which no line's text matches
    ]
    path = write("multiline.csv", "ts,id,id_type,url\n" + "\n".join(lines) + "\n")
    [result] = ingest(store, config, path)
    found = rows(store, "SELECT line, reason, raw FROM quarantine ORDER BY line")
    assert found == [
        (3, "malformed_row", "2026-11-19T10:00:00Z,ck1"),
        (5, "bad_timestamp", "soon,ck2,cookie,https://a.example/x\ny"),
    ]


def test_no_raw_email_is_stored(store, config, write):
    """A raw email in hem is hashed on arrival; emails in URLs, keywords and bad rows'
    text are removed before anything is kept."""
    lines = [
        "2026-11-19T10:00:00Z,ck1,cookie,https://shop.example/,, John.Doe@Example.com ",  # 2
        "2026-11-19T10:00:01Z,ck1,cookie,https://shop.example/c?email=jane%40example.org&x=1,"
        "write to bob@example.net,",  # 3
        "soon,ck2,cookie,https://a.example/?u=mary@example.com,,",  # 4: bad timestamp
        "2026-11-19T10:00:00Z,eve@example.com",  # 5: malformed
    ]
    path = write("pii.csv", "ts,id,id_type,url,keywords,hem\n" + "\n".join(lines) + "\n")
    [result] = ingest(store, config, path)
    assert (result.loaded, result.quarantined) == (2, 2)
    hem = hashlib.sha256(b"john.doe@example.com").hexdigest()
    assert rows(store, "SELECT linked_id FROM id_links") == [(hem,)]
    assert rows(store, "SELECT url, domain, keywords FROM events ORDER BY ts") == [
        ("https://shop.example/", "shop.example", None),
        ("https://shop.example/c?email=[email removed]&x=1", "shop.example",
         "write to [email removed]"),
    ]  # fmt: skip
    assert rows(store, "SELECT line, raw FROM quarantine ORDER BY line") == [
        (4, "soon,ck2,cookie,https://a.example/?u=[email removed],,"),
        (5, "2026-11-19T10:00:00Z,[email removed]"),
    ]
    for table in ("events", "quarantine", "id_links", "devices"):
        text = str(rows(store, f"SELECT * FROM {table}")).lower()
        assert "@" not in text and "%40" not in text, table


@pytest.mark.parametrize(
    "lines, expected",
    [
        # A unit separator in a field: the lines cannot be read whole; fields decide.
        (
            ["2026-11-19T10:00:00Z,ck\x1f1,cookie,", "soon,ck2,cookie,"],
            [(2, "2026-11-19T10:00:00Z,ck\x1f1,cookie,"), (3, "soon,ck2,cookie,")],
        ),
        # A bad value that, unquoted, reads like the good line before it.
        (
            ["2026-11-19T10:00:00Z,ck1,cookie,US", '2026-11-19T10:00:00Z,ck1,cookie,"""US""",'],
            [(3, '2026-11-19T10:00:00Z,ck1,cookie,"US"')],
        ),
        # Two bad rows whose texts differ only by quotes keep their own lines.
        (
            ['soon,"ck""2",cookie,', "2026-11-19T10:00:00Z,ck1,cookie,", "soon,ck2,cookie,"],
            [(2, 'soon,ck"2,cookie,'), (4, "soon,ck2,cookie,")],
        ),
    ],
    ids=["unit-separator", "quoted-lookalike", "quote-twins"],
)
def test_line_numbers_where_line_text_misleads(store, config, write, lines, expected):
    path = write("tricky.csv", "ts,id,id_type,country\n" + "\n".join(lines) + "\n")
    ingest(store, config, path)
    assert rows(store, "SELECT line, raw FROM quarantine ORDER BY line") == expected


def test_no_raw_email_is_stored_however_it_is_written(store, config, write):
    lines = [
        "2026-11-19T10:00:00Z,jane@example.com,cookie,,,,",  # an email as a cookie ID
        "2026-11-19T10:00:01Z,ck1,cookie,https://a.example/?e=j%C3%B6rg%2540example.com,"
        "signup dan@example.com,news|a@example.com,",
        "2026-11-19T10:00:02Z,ck1,cookie,https://a.example/?e=jörg@bücher.de,,,"
        "\tTab@Example.com\u00a0",
    ]
    path = write("pii2.csv", "ts,id,id_type,url,event,category,hem\n" + "\n".join(lines) + "\n")
    [result] = ingest(store, config, path)
    assert (result.loaded, result.reasons) == (2, {"bad_id": 1})
    hem = hashlib.sha256(b"tab@example.com").hexdigest()
    assert rows(store, "SELECT linked_id FROM id_links") == [(hem,)]
    jsonl = json.dumps({"ts": "soon", "id": "ck2", "id_type": "cookie", "url": "?u=ann@x.org"})
    path = write("pii.jsonl", jsonl.replace("@", "\\u0040") + "\n")
    assert ingest(store, config, path)[0].quarantined == 1
    for table in ("events", "quarantine", "id_links", "devices"):
        text = str(rows(store, f"SELECT * FROM {table}")).lower()
        for marker in ("@", "%40", "%2540", "u0040", "jane", "dan", "ann"):
            assert marker not in text, (table, marker)


def test_a_rejected_file_message_quotes_no_email(store, config, write):
    path = write("nohdr.csv", "2026-11-19T10:00:00Z,ck1,cookie,https://a.example/?u=ann@x.org\n")
    [result] = ingest(store, config, path)
    assert result.status == "rejected" and "missing required column" in result.error
    assert "@" not in str(rows(store, "SELECT * FROM ingested_files"))


def test_limited_ad_tracking_maid_is_dropped_and_counted_not_quarantined(store, config, write):
    zero = "00000000-0000-0000-0000-000000000000"
    path = write("lat.csv", HEADER + f"2026-11-19T10:00:00Z,{zero},idfa,,,,,,,\n")
    [result] = ingest(store, config, path)
    assert (result.rows, result.loaded, result.dropped, result.quarantined) == (1, 0, 1, 0)
    assert result.reasons == {"limited_ad_tracking": 1}
    assert rows(store, "SELECT count(*) FROM quarantine") == [(0,)]
    assert rows(store, "SELECT count(*) FROM devices") == [(0,)]


def test_reingest_of_same_file_is_a_noop(store, config, write, snapshot):
    path = write("a.csv", HEADER + "2026-11-19T10:00:00Z,ck1,cookie,,,,,,,\n")
    assert ingest(store, config, path)[0].status == "loaded"
    before = snapshot(store)
    [again] = ingest(store, config, path)
    assert again.status == "skipped"
    assert snapshot(store) == before


def test_duplicate_events_load_once_within_and_across_files(store, config, write):
    row = "2026-11-19T10:00:00Z,ck1,cookie,https://a.example/,,,,,,\n"
    other = "2026-11-19T10:00:01Z,ck1,cookie,https://a.example/,,,,,,\n"
    [first] = ingest(store, config, write("a.csv", HEADER + row + row + other))
    assert (first.loaded, first.duplicates) == (2, 1)
    [second] = ingest(store, config, write("b.csv", HEADER + other + row.replace("ck1", "ck2")))
    assert (second.loaded, second.duplicates) == (1, 1)
    assert (second.new_devices, second.updated_devices) == (1, 0)
    assert rows(store, "SELECT count(*) FROM events") == [(3,)]
    assert rows(store, "SELECT event_count FROM devices WHERE id = 'ck1'") == [(2,)]


@pytest.mark.parametrize("name", ["e.tsv", "e.tsv.gz", "e.csv.gz"])
def test_tsv_and_gzip(store, config, write, name):
    sep = "\t" if ".tsv" in name else ","
    text = (
        HEADER.replace(",", sep)
        + sep.join(["2026-11-19T10:00:00Z", GAID, "gaid", "", "", "", "", "", "", ""])
        + "\n"
    )
    [result] = ingest(store, config, write(name, text))
    assert (result.status, result.loaded, result.format) == (
        "loaded",
        1,
        "tsv" if ".tsv" in name else "csv",
    )


def test_json_lines_with_malformed_and_blank_lines(store, config, write):
    lines = [
        json.dumps({"ts": 1795082400, "id": "ck1", "id_type": "cookie", "gpc": True}),
        "",
        "{not json",
        json.dumps({"ts": "2026-11-19T10:00:00Z", "id": GAID, "id_type": "aaid", "extra": [1]}),
        json.dumps({"ts": "2026-11-19T10:00:00Z", "id": "", "id_type": "cookie"}),
    ]
    [result] = ingest(store, config, write("e.jsonl.gz", "\n".join(lines) + "\n"))
    assert (result.rows, result.loaded, result.quarantined) == (4, 2, 2)
    assert result.reasons == {"malformed_row": 1, "missing_id": 1}
    assert rows(store, "SELECT line, reason, raw FROM quarantine ORDER BY line") == [
        (3, "malformed_row", "{not json"),
        (5, "missing_id", lines[4]),
    ]
    assert result.ignored_columns == ["extra"]
    assert rows(store, "SELECT gpc FROM events WHERE id = 'ck1'") == [(True,)]


def test_parquet(store, config, tmp_path):
    path = tmp_path / "e.parquet"
    duckdb.sql(
        f"""COPY (SELECT TIMESTAMP '2026-11-19 10:00:00' AS ts, '{GAID}' AS id,
                         'gaid' AS id_type, 'x' AS unused
                  UNION ALL SELECT TIMESTAMP '2026-11-19 10:00:00', 'bad', 'gaid', 'y')
            TO '{path}' (FORMAT parquet)"""
    )
    [result] = ingest(store, config, path)
    assert (result.format, result.loaded, result.quarantined) == ("parquet", 1, 1)
    assert result.ignored_columns == ["unused"]
    [(line, raw)] = rows(store, "SELECT line, raw FROM quarantine")
    assert line == 2 and json.loads(raw)["id"] == "bad"


def test_layout_maps_other_headers_and_epoch_ms(store, config, write):
    text = (
        "event_time_ms,device_id,device_os,page_url,action,geo,tcf\n"
        f"1795082400000,{IDFA},idfa,https://shop.example/p/1,purchase,DE,\n"
    )
    [result] = ingest(store, config, write("adserver_20261119.csv", text))
    assert (result.status, result.layout, result.loaded) == ("loaded", "adserver", 1)
    assert rows(store, "SELECT ts, id, event, domain, country FROM events") == [
        (datetime(2026, 11, 19, 10, 0), IDFA.lower(), "purchase", "shop.example", "DE")
    ]


def test_unknown_layout_is_a_clear_error(store, config, write):
    with pytest.raises(Exception, match="unknown layout 'nope'"):
        ingest(store, config, write("a.csv", HEADER), layout="nope")


ROW = "2026-11-19T10:00:00Z,ck1,cookie,,,,,,,\n"
LATIN1_ROW = "2026-11-19T10:00:00Z,ck\xe9,cookie,,,,,,,\n"
REJECTS = [
    ("broken.csv.gz", lambda: gzip.compress((HEADER + ROW * 99).encode())[:-6], "broken gzip"),
    ("garbage.csv.gz", lambda: b"\x1f\x8b\x08\x00garbage", "broken gzip"),
    ("latin1.csv", lambda: (HEADER + LATIN1_ROW).encode("latin-1"), "not UTF-8 (line 2)"),
    ("latin1head.csv", lambda: "ts,id,id_type,caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("cols.csv", lambda: b"time,user\n1,2\n", "missing required column(s) ts, id, id_type"),
    ("semicolon.csv", lambda: b"ts;id;id_type\n1;2;3\n", "missing required column(s)"),
    ("empty.csv", lambda: b"", "empty file"),
    ("data.xlsx", lambda: b"PK\x03\x04", "unknown file type"),
    ("fake.parquet", lambda: b"not parquet at all", "not a readable Parquet file"),
    ("array.jsonl", lambda: b"[1,2,3]\n", "not JSON Lines"),
    ("dup.csv", lambda: b"ts,id,id,id_type\n", "empty or repeated column names"),
]  # fmt: skip


@pytest.mark.parametrize("name,content,message", REJECTS, ids=[r[0] for r in REJECTS])
def test_unreadable_files_are_rejected_whole_and_change_nothing(
    store, config, write, snapshot, name, content, message
):
    ingest(store, config, write("good.csv", HEADER + "2026-11-19T10:00:00Z,ck0,cookie,,,,,,,\n"))
    before = snapshot(store)
    [result] = ingest(store, config, write(name, content()))
    assert result.status == "rejected"
    assert message in result.error and name.split(".")[0] in result.error
    after = snapshot(store)
    assert after.pop("ingested_files")[:1] == before.pop("ingested_files")
    assert after == before


def test_failure_mid_load_rolls_back_the_whole_file(store, config, write, snapshot, monkeypatch):
    ingest(store, config, write("good.csv", HEADER + "2026-11-19T10:00:00Z,ck0,cookie,,,,,,,\n"))
    before = snapshot(store)

    def explode(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ingest_loader, "_merge_devices", explode)
    path = write(
        "b.csv", HEADER + "2026-11-19T10:00:00Z,ck1,cookie,,,,,,,\nbad,ck2,cookie,,,,,,,\n"
    )
    with pytest.raises(RuntimeError):
        ingest(store, config, path)
    assert snapshot(store) == before
    monkeypatch.undo()
    [result] = ingest(store, config, path)
    assert (result.status, result.loaded, result.quarantined) == ("loaded", 1, 1)


def test_landing_moves_files_to_done_and_failed(store, config, write):
    landing = config.path("ingest.landing")
    landing.mkdir(parents=True)
    (landing / "a.csv").write_text(HEADER + "2026-11-19T10:00:00Z,ck1,cookie,,,,,,,\n")
    (landing / "b.csv").write_text("nope\n")
    (landing / "c.csv.part").write_text("still uploading")
    results = ingest_landing(store, config, now=NOW)
    assert [(r.file.rsplit("/", 1)[1], r.status) for r in results] == [
        ("a.csv", "loaded"),
        ("b.csv", "rejected"),
    ]
    assert (landing / "done" / "a.csv").exists()
    assert (landing / "failed" / "b.csv").exists()
    assert "missing required column" in (landing / "failed" / "b.csv.reason").read_text()
    assert (landing / "c.csv.part").exists()
    # The same bytes dropped in again are skipped and filed as done, without overwriting.
    (landing / "a.csv").write_text(HEADER + "2026-11-19T10:00:00Z,ck1,cookie,,,,,,,\n")
    [again] = ingest_landing(store, config, now=NOW)
    assert again.status == "skipped"
    assert len(list((landing / "done").iterdir())) == 2


def test_json_lines_records_are_read_whatever_the_first_one_holds(store, config, write):
    """Every record is read for the union of the file's keys: the first record's shape
    decides nothing (it had no consent, url or categories; one spells ``ID``)."""
    lines = [
        json.dumps({"ts": "2026-11-19T10:00:00Z", "id": "ck0", "id_type": "cookie"}),
        json.dumps({"ts": "2026-11-19T10:00:01Z", "ID": "ck1", "id_type": "cookie", "x": 1}),
        json.dumps(
            {
                "ts": "2026-11-19T10:00:02Z",
                "id": "ck2",
                "id_type": "cookie",
                "url": "https://cars.example/a",
                "category": "2|3",
                "consent": "CPXxRfA",
                "gpc": 1,
            }
        ),
        json.dumps({"id": "ck3"}),
        "{not json",
    ]
    [result] = ingest(store, config, write("mixed.jsonl", "\n".join(lines) + "\n"))
    assert (result.status, result.loaded, result.reasons) == (
        "loaded",
        3,
        {"bad_id_type": 1, "malformed_row": 1},
    )
    assert result.ignored_columns == ["x"]
    assert rows(store, "SELECT id, domain, categories, consent, gpc FROM events ORDER BY id") == [
        ("ck0", None, None, None, None),
        ("ck1", None, None, None, None),
        ("ck2", "cars.example", ["2", "3"], "CPXxRfA", True),
    ]
    assert rows(store, "SELECT line, reason FROM quarantine ORDER BY line") == [
        (4, "bad_id_type"),
        (5, "malformed_row"),
    ]


def test_a_json_lines_file_no_record_of_which_has_an_id_is_rejected(store, config, write):
    path = write("nothing.jsonl", json.dumps({"ts": "2026-11-19T10:00:00Z", "who": "ck"}) + "\n")
    [result] = ingest(store, config, path)
    assert result.status == "rejected" and "missing required column(s) id, id_type" in result.error


@pytest.mark.parametrize("megabytes", [3, 200], ids=["refused", "skipped-by-duckdb"])
@pytest.mark.parametrize("name", ["long.csv", "long.jsonl", "long.csv.gz"])
def test_an_oversized_line_is_quarantined_and_counted_never_lost(
    store, config, tmp_path, megabytes, name
):
    """Regression: DuckDB's readers refuse a line over ``max_line_size``, and past some
    size skip it without a trace; such a line was neither loaded nor counted."""
    big = "x" * (megabytes * 1_000_000)
    if name.startswith("long.csv"):
        records = [
            f"2026-11-19T10:00:0{n}Z,ck{n},cookie,https://a.example/{big if n == 1 else n}"
            for n in range(4)
        ] + ["2026-11-19T10:00:05Z,,cookie,"]
        text = "ts,id,id_type,url\n" + "\n".join(records) + "\n"
        long_line, bad_line = 3, 6
    else:
        records = [
            json.dumps(
                {"ts": f"2026-11-19T10:00:0{n}Z", "id": f"ck{n}", "id_type": "cookie"}
                | ({"url": f"https://a.example/{big}"} if n == 1 else {})
            )
            for n in range(4)
        ] + [json.dumps({"ts": "2026-11-19T10:00:05Z", "id": "", "id_type": "cookie"})]
        text = "\n".join(records) + "\n"
        long_line, bad_line = 2, 5
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data, 1) if name.endswith(".gz") else data)
    [result] = ingest(store, config, path)
    assert (result.status, result.rows, result.loaded) == ("loaded", 5, 3)
    assert result.reasons == {"missing_id": 1, "oversize_line": 1}
    quarantined = rows(store, "SELECT line, reason, raw FROM quarantine ORDER BY line")
    assert [(line, reason) for line, reason, _ in quarantined] == [
        (long_line, "oversize_line"),
        (bad_line, "missing_id"),
    ]
    shown = quarantined[0][2]
    assert shown.startswith(records[1][:100]) and len(shown) < 300
    assert f"({len(records[1])} bytes)" in shown


@pytest.mark.parametrize("end", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_line_numbers_after_a_record_over_several_lines_are_physical_lines(
    store, config, write, end
):
    """Regression (found by tests/test_ingest_properties.py): DuckDB numbers a quoted
    record over several lines as one line, so every bad row after it was quarantined
    lines too early; and its text of a refused row kept the line break before it."""
    lines = [
        "ts,id,id_type,url",
        '2026-11-19T10:00:00Z,ck1,cookie,"https://a.example/x\ny\nz"',  # 2-4
        "",  # 5
        "0",  # 6: malformed
        "soon,ck2,cookie,",  # 7: bad timestamp
        '"soon",ck3,cookie,"https://a.example/\n"',  # 8-9: bad timestamp
        "2026-11-19T10:00:00Z,ck4",  # 10: malformed
    ]
    path = write("breaks.csv", end.join(lines) + end)
    [result] = ingest(store, config, path)
    assert (result.loaded, result.quarantined) == (1, 4)
    assert rows(store, "SELECT line, reason, raw FROM quarantine ORDER BY line") == [
        (6, "malformed_row", "0"),
        (7, "bad_timestamp", "soon,ck2,cookie,"),
        (8, "bad_timestamp", "soon,ck3,cookie,https://a.example/\n"),
        (10, "malformed_row", "2026-11-19T10:00:00Z,ck4"),
    ]


def test_no_raw_email_is_stored_in_a_consent_string(store, config, write):
    """Regression (found by tests/test_ingest_properties.py): emails were removed from
    every stored text field but the consent string."""
    record = {"ts": "2026-11-19T10:00:00Z", "id": "ck1", "id_type": "cookie"}
    path = write("c.jsonl", json.dumps(record | {"consent": "CP x jane@example.com"}) + "\n")
    assert ingest(store, config, path)[0].loaded == 1
    assert rows(store, "SELECT consent FROM events") == [("CP x [email removed]",)]


def test_a_cookie_id_that_is_an_escaped_email_is_refused(store, config, write):
    """Regression (found by tests/test_ingest_properties.py): an ID holding an email
    written with an escaped @ passed the no-@ rule and was stored as a cookie ID."""
    lines = ["2026-11-19T10:00:00Z,jane%40example.com,cookie", "soon,ann%2540x.org,cookie"]
    [result] = ingest(store, config, write("ids.csv", "ts,id,id_type\n" + "\n".join(lines) + "\n"))
    assert (result.loaded, result.reasons) == (0, {"bad_id": 2})
    for table in ("events", "devices", "quarantine"):
        text = str(rows(store, f"SELECT * FROM {table}")).lower()
        assert "jane" not in text and "ann" not in text, table


def test_json_lines_spellings_that_disagree_are_quarantined_not_guessed(store, config, write):
    """Regression (independent review): a blank ``consent`` hid ``Consent``'s refusal,
    a duplicate key kept DuckDB's first value, and ``Gpc`` lost to ``gpc``."""
    base = '"ts": "2026-11-19T10:00:00Z", "id_type": "cookie"'
    lines = [
        '{"id": "c01", "consent": "", "Consent": "R", ' + base + "}",
        '{"id": "c02", "consent": "   ", "Consent": "R", ' + base + "}",
        '{"id": "c03", "consent": null, "consent": "R", ' + base + "}",
        '{"id": "c04", "gpc": "0", "Gpc": "1", ' + base + "}",
        '{"id": "c05", "consent": "R", "Consent": "R", ' + base + "}",
        '{"id": "c06", ' + base + "}",
    ]
    [result] = ingest(store, config, write("spell.jsonl", "\n".join(lines) + "\n"))
    assert result.reasons == {"conflicting_fields": 2}
    assert rows(store, "SELECT id, consent, gpc FROM events ORDER BY id") == [
        ("c01", "R", None),
        ("c02", "R", None),
        ("c05", "R", None),
        ("c06", None, None),
    ]
    assert rows(store, "SELECT line, reason FROM quarantine ORDER BY line") == [
        (3, "conflicting_fields"),
        (4, "conflicting_fields"),
    ]


def test_a_bad_first_json_line_is_quarantined_alone(store, config, write):
    """Regression (independent review): a first line that was not an object rejected
    the whole file; where a line sits must not decide what happens to the others."""
    good = json.dumps({"ts": "2026-11-19T10:00:00Z", "id": "fb8", "id_type": "cookie"})
    for name, first in [("firstbad.jsonl", '{"ts": "2026-11'), ("firstarr.jsonl", "[1]")]:
        [result] = ingest(store, config, write(name, f"{first}\n{good}\n"))
        assert (result.status, result.loaded, result.reasons) == (
            "loaded",
            1 if name == "firstbad.jsonl" else 0,
            {"malformed_row": 1},
        ), name
    [result] = ingest(store, config, write("none.jsonl", "[1]\n\n"))
    assert result.status == "rejected" and "no line is a JSON object" in result.error


def test_a_file_with_bare_cr_line_ends_is_rejected_and_the_others_load(store, config, write):
    """Regression (independent review): a CR-only CSV crashed the run before any file."""
    bad = write("a_cr.csv", "ts,id,id_type\r2026-11-19T10:00:00Z,x,cookie\r")
    good = write("b_good.csv", "ts,id,id_type\n2026-11-19T10:00:00Z,y,cookie\n")
    first, second = ingest(store, config, bad, good)
    assert first.status == "rejected" and "carriage return" in first.error
    assert (second.status, second.loaded) == ("loaded", 1)


def test_gdpr_consent_is_read_as_consent(store, config, write):
    """Regression (second review): a log's ``gdpr_consent`` (the name the collector and
    IAB's URL macros use) was ignored, so a refusal there was stored as no string."""
    line = {"ts": "2026-11-19T10:00:00Z", "id": "k01", "id_type": "cookie", "gdpr_consent": "R"}
    [result] = ingest(store, config, write("g.jsonl", json.dumps(line) + "\n"))
    assert result.ignored_columns == []
    assert rows(store, "SELECT id, consent FROM events") == [("k01", "R")]
    both = write(
        "g.csv", "ts,id,id_type,consent,gdpr_consent\n2026-11-19T10:00:00Z,k2,cookie,G,R\n"
    )
    [result] = ingest(store, config, both)
    assert result.status == "rejected" and "both map to 'consent'" in result.error


def test_a_json_lines_file_of_one_oversized_record_quarantines_it(store, config, write):
    """Regression (property suite): the file's keys came only from lines short enough
    to read, so a file whose one record was too long was refused as not JSON Lines."""
    record = {"ts": "2026-11-19T10:00:00Z", "id": "big", "id_type": "cookie"}
    line = json.dumps(record | {"url": "https://a.example/" + "x" * 3_000_000})
    [result] = ingest(store, config, write("one.jsonl", line + "\n"))
    assert (result.status, result.reasons) == ("loaded", {"oversize_line": 1})
