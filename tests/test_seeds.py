"""Seed list upload: parsing, bad input, hashing emails, matching, agency scoping."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from dmp.errors import DmpError
from dmp.identity.graph import build_groups
from dmp.identity.privacy import optout
from dmp.lookalike import seedfile, seeds
from dmp.lookalike.seeds import get_seed_list, list_seed_lists, upload_seed_list
from tests.conftest import NOW
from tests.test_identity import line, load

MAID = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
MAID2 = "0f0e4c12-3b1a-4c2d-9e8f-1a2b3c4d5e6f"
EMAIL = "Jane.Doe@Example.com"


def sha(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def upload(store, config, write, content, id_type="maid", name="list", agency="acme", **kw):
    path = write(kw.pop("file", "seeds.csv"), content)
    return upload_seed_list(store, config, path, name, agency, id_type, now=NOW, **kw)


def stored(store, table="seed_ids") -> list[tuple]:
    return sorted(store.con.execute(f"SELECT id, id_type FROM {table}").fetchall())


def all_text(store) -> str:
    """Every value of every table in the database, as one string."""
    tables = [r[0] for r in store.con.execute("SHOW TABLES").fetchall()]
    return json.dumps(
        {t: store.con.execute(f"SELECT * FROM {t}").fetchall() for t in tables}, default=str
    )


def test_email_upload_is_normalised_hashed_and_never_stored_raw(store, config, write, caplog):
    text = f'email\n {EMAIL} \njane.doe@example.com\nnot-an-email\n"bob@example.org"\n'
    report = upload(store, config, write, text, id_type="email")
    assert report["rows"] == 4 and report["valid"] == 3 and report["duplicates"] == 1
    assert report["ids"] == 2
    assert report["invalid_lines"] == [{"line": 4, "reason": "not a valid email address"}]
    assert stored(store) == sorted([(sha(EMAIL), "hem"), (sha("bob@example.org"), "hem")])
    everything = all_text(store) + json.dumps(report) + caplog.text
    for raw in ("jane.doe", "Jane.Doe", "bob@example", "not-an-email"):
        assert raw not in everything
    assert get_seed_list(store, "list", "acme")["id_type"] == "email"


def test_headers_quotes_bom_crlf_and_duplicates(store, config, write):
    text = b"\xef\xbb\xbfMAID\r\n" + f'"{MAID.upper()}"\r\n{MAID}\r\n\r\n{MAID2},\r\n'.encode()
    report = upload(store, config, write, text)
    assert (report["rows"], report["valid"], report["duplicates"], report["invalid"]) == (
        3,
        3,
        1,
        0,
    )
    assert stored(store) == sorted([(MAID, "maid"), (MAID2, "maid")])
    # No header: the first line is an ID; a word that is no ID on line 1 is a header.
    assert upload(store, config, write, f"{MAID}\n", name="b")["rows"] == 1
    assert upload(store, config, write, "Device ID\n" + MAID + "\n", name="c")["invalid"] == 0


def test_bad_rows_are_reported_by_line_and_reason_without_values(store, config, write):
    text = (
        "maid\n"
        f"{MAID}\n"
        "=cmd|' /C calc'!A0\n"
        "+1234\n"
        "@SUM(A1:A2)\n"
        "not-a-maid\n"
        "00000000-0000-0000-0000-000000000000\n"
        f"{MAID2},extra\n"
        "-2+3\n"
    )
    report = upload(store, config, write, text)
    formula = "formula-like cell (starts with =, +, - or @): refused"
    assert report["invalid_lines"] == [
        {"line": 3, "reason": formula},
        {"line": 4, "reason": formula},
        {"line": 5, "reason": formula},
        {"line": 6, "reason": "not a valid MAID (expected a UUID)"},
        {"line": 7, "reason": "all-zero MAID (limited ad tracking)"},
        {"line": 8, "reason": "several values on one line (expected one ID per row)"},
        {"line": 9, "reason": formula},
    ]
    assert report["invalid_reasons"][formula] == 4
    assert stored(store) == [(MAID, "maid")]


def test_wrong_id_type_is_refused_whole_without_echoing_emails(store, config, write, snapshot):
    before = snapshot(store)
    text = "id\n" + "".join(f"person{i}@example.com\n" for i in range(5)) + MAID + "\n"
    with pytest.raises(DmpError, match="5 of 6 rows look like email IDs, not maid") as err:
        upload(store, config, write, text)
    assert "--id-type email" in str(err.value) and "person" not in str(err.value)
    with pytest.raises(DmpError, match="look like email IDs, not hem"):
        upload(store, config, write, text, id_type="hem")
    with pytest.raises(DmpError, match="look like hem IDs, not email"):
        upload(store, config, write, sha("a@b.c") + "\n", id_type="email")
    hem = upload(store, config, write, "5d41402abc4b2a76b9719d911017c592\n" + sha("x@y.z"),
                 id_type="hem")  # fmt: skip
    assert hem["invalid_lines"][0]["reason"].startswith("an MD5 or SHA-1 hash")
    assert snapshot(store) == before
    assert len(list_seed_lists(store, "acme")) == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"maid\n\n  \n", "no IDs in the file"),
        (b"maid\nnot-a-maid\nstill-not\n", "no valid maid IDs in 2 rows: not a valid MAID"),
        (b"PK\x03\x04rest-of-a-zip", "spreadsheet workbook"),
        ("maid\n".encode("utf-16-be").join([b"\xfe\xff", b""]), "UTF-16 big-endian"),
        (b"\x1f\x8b\x08broken", "broken gzip"),
    ],
)
def test_unusable_files_are_refused_and_nothing_is_stored(store, config, write, content, message):
    with pytest.raises(DmpError, match=message):
        upload(store, config, write, content)
    assert store.con.execute("SELECT count(*) FROM seed_lists").fetchone()[0] == 0
    assert stored(store) == []


def test_a_value_column_is_stored_and_reaches_the_matched_devices(store, config, write):
    load(store, config, write, line(NOW, MAID, "gaid"), line(NOW, MAID2, "gaid"))
    report = upload(store, config, write, f"maid,value\n{MAID},120.5\n{MAID2}, 0\n{MAID},80\n")
    assert report["value_column"] and (report["ids"], report["invalid"]) == (2, 0)
    values = store.con.execute("SELECT id, value FROM seed_matches ORDER BY id").fetchall()
    assert values == sorted([(MAID, 120.5), (MAID2, 0.0)])  # a repeated ID keeps its largest
    plain = upload(store, config, write, f"maid\n{MAID}\n", name="plain")
    assert not plain["value_column"]
    assert store.con.execute(
        "SELECT value FROM seed_ids WHERE seed_list_id = ?", [plain["seed_list_id"]]
    ).fetchall() == [(None,)]


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            f"{MAID},12\n{MAID2},-3\nbbbbbbbb-0000-4000-8000-000000000000,-1\n",
            r"value column: 2 negative \(lines 3, 4\); a value is a purchase amount",
        ),
        (
            f"{MAID},twelve\n{MAID2},\n",
            r"value column: 2 not a number \(lines 2, 3\)",
        ),
        (f"{MAID},-1\n{MAID2},n/a\n", r"1 negative \(line 2\); 1 not a number \(line 3\)"),
    ],
)
def test_a_value_column_with_text_or_negatives_is_refused_whole(
    store, config, write, snapshot, rows, message
):
    before = snapshot(store)
    with pytest.raises(DmpError, match=message):
        upload(store, config, write, "maid,value\n" + rows)
    assert store.con.execute("SELECT count(*) FROM seed_lists").fetchone()[0] == 0
    assert stored(store) == [] and snapshot(store) == before


def test_mixed_and_other_encodings(store, config, write):
    latin1 = "email\na@example.com\ncaf\xe9@example.fr\nb@example.com\n".encode("latin-1")
    report = upload(store, config, write, latin1, id_type="email")
    assert report["invalid_lines"] == [
        {"line": 3, "reason": "not UTF-8 text (save the file as UTF-8)"}
    ]
    assert report["ids"] == 2
    utf16 = f"maid\r\n{MAID}\r\n{MAID2}\r\n".encode("utf-16")  # with its BOM, as Excel writes
    assert upload(store, config, write, utf16, name="u16")["ids"] == 2
    gz = gzip.compress(f"{MAID}\n".encode())
    assert upload(store, config, write, gz, name="gz", file="seeds.csv.gz")["ids"] == 1
    mac = f"maid\r{MAID}\rnope\r".encode()
    assert upload(store, config, write, mac, name="mac")["invalid_lines"][0]["line"] == 3


def test_reported_lines_are_capped_but_counted(store, config, write, monkeypatch):
    monkeypatch.setattr(seedfile, "MAX_REPORTED_LINES", 2)
    report = upload(store, config, write, MAID + "\n" + "bad\n" * 5)
    assert len(report["invalid_lines"]) == 2 and report["invalid_lines_omitted"] == 3


def test_a_large_file_streams_through_duckdb(store, config, write):
    lines = "".join(f"{i:08x}-0000-4000-8000-{i:012x}\n" for i in range(1, 100_001))
    report = upload(store, config, write, "maid\n" + lines + "oops\n")
    assert report["ids"] == 100_000
    assert report["invalid_lines"] == [
        {"line": 100_002, "reason": "not a valid MAID (expected a UUID)"}
    ]


def test_seeds_match_devices_directly_and_through_id_links(store, config, write):
    load(
        store,
        config,
        write,
        line(NOW, MAID, "gaid"),
        line(NOW, "ckweb1", hem=sha(EMAIL)),
        line(NOW, "ckweb2", maid=MAID2),
        line(NOW, MAID2, "idfa"),
        line(NOW, "ckother"),
    )
    build_groups(store)
    report = upload(store, config, write, f"{MAID}\n{MAID2}\nbbbbbbbb-0000-4000-8000-000000000000")
    assert (report["ids"], report["matched_ids"], report["matched"]) == (3, 2, 3)
    assert report["match_rate"] == round(2 / 3, 4)
    assert stored(store, "seed_matches") == sorted(
        [(MAID, "maid"), (MAID2, "maid"), ("ckweb2", "cookie")]
    )
    emails = upload(store, config, write, f"{EMAIL}\n", id_type="email", name="e")
    assert (emails["matched_ids"], emails["matched"]) == (1, 1)
    via = store.con.execute(
        "SELECT id, via FROM seed_matches WHERE seed_list_id = ?", [emails["seed_list_id"]]
    ).fetchall()
    assert via == [("ckweb1", "link")]


def test_group_keys_are_shared_by_one_person_only(store, config, write):
    """Unlinked seed devices each get their own key (DuckDB's hash(NULL) is one constant,
    which once gave every unlinked device the same key); linked ones share their group's."""
    unlinked = [f"aaaaaaaa-0000-4000-8000-00000000000{i}" for i in range(3)]
    load(
        store,
        config,
        write,
        *(line(NOW, maid, "gaid") for maid in unlinked),
        line(NOW, "ckweb2", maid=MAID2),
        line(NOW, MAID2, "idfa"),
        line(NOW, "ckweb3", maid=MAID),
        line(NOW, MAID, "gaid"),
    )
    build_groups(store)
    upload(store, config, write, "\n".join([*unlinked, MAID2, MAID]))
    keys = dict(store.con.execute("SELECT id, seed_key FROM seed_matches").fetchall())
    assert len(keys) == 7
    assert keys[MAID2] == keys["ckweb2"] and keys[MAID] == keys["ckweb3"]
    assert len({keys[m] for m in unlinked} | {keys[MAID], keys[MAID2]}) == 5


def test_opted_out_ids_are_dropped_and_opt_outs_reach_stored_seeds(store, config, write):
    load(store, config, write, line(NOW, MAID, "gaid"), line(NOW, MAID2, "gaid"))
    optout(store, [MAID2], now=NOW)
    report = upload(store, config, write, f"{MAID}\n{MAID2}\n")
    assert (report["opted_out"], report["ids"], report["matched"]) == (1, 1, 1)
    optout(store, [MAID], now=NOW)
    assert stored(store) == [] and stored(store, "seed_matches") == []


def test_lists_belong_to_their_agency(store, config, write):
    upload(store, config, write, MAID, name="converters", agency="acme")
    upload(store, config, write, MAID2, name="converters", agency="globex")
    with pytest.raises(DmpError, match="already exists for agency 'acme'; upload with --replace"):
        upload(store, config, write, MAID, name="converters", agency="acme")
    replaced = upload(store, config, write, MAID2, name="converters", agency="acme", replace=True)
    assert replaced["replaced"] and replaced["seed_list_id"] == 1
    assert [s["name"] for s in list_seed_lists(store, "acme")] == ["converters"]
    assert get_seed_list(store, "converters", "globex")["seed_list_id"] == 2
    with pytest.raises(DmpError, match="no seed list named 'x' for agency 'acme'"):
        get_seed_list(store, "x", "acme")
    with pytest.raises(DmpError, match="no seed list named 'converters' for agency 'initech'"):
        seeds.delete_seed_list(store, "converters", "initech")
    with pytest.raises(DmpError, match="agency '../etc'"):
        upload(store, config, write, MAID, agency="../etc")
    assert seeds.delete_seed_list(store, "converters", "globex")["ids_deleted"] == 1
    assert stored(store) == [(MAID2, "maid")]


def test_a_failure_while_storing_leaves_nothing(store, config, write, monkeypatch, snapshot):
    upload(store, config, write, MAID, name="kept")
    before = (stored(store), snapshot(store))

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(seeds, "match_seeds", broken)
    with pytest.raises(RuntimeError):
        upload(store, config, write, f"{MAID2}\n", name="kept", replace=True)
    with pytest.raises(RuntimeError):
        upload(store, config, write, f"{MAID2}\n", name="new")
    assert (stored(store), snapshot(store)) == before
    assert [s["name"] for s in list_seed_lists(store, "acme")] == ["kept"]


def test_cli_upload_and_list(cli, write):
    path = write("emails.csv", f"email\n{EMAIL}\nnope@\n")
    result = cli("seeds", "upload", str(path), "--name", "c", "--agency", "acme",
                 "--id-type", "email")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "line 3: not a valid email address" in result.output
    assert "nope" not in result.output and "Jane" not in result.output
    assert "1 IDs, 0 matched" in result.output
    result = cli("seeds", "upload", str(path), "--name", "c", "--agency", "acme",
                 "--id-type", "maid", "--json")  # fmt: skip
    assert result.exit_code == 1 and "error: c" not in result.output
    assert "already exists" in result.output
    listed = json.loads(cli("seeds", "list", "--agency", "acme", "--json").output)
    assert [(s["name"], s["ids"]) for s in listed] == [("c", 1)]
    assert json.loads(cli("seeds", "list", "--agency", "globex", "--json").output) == []
