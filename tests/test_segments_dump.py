"""Segments as code: `dump` writes one file per rule segment, whatever the names, and
`apply` reads back exactly what `dump` wrote."""

from __future__ import annotations

import json

import pytest

from dmp.config import load_config
from dmp.errors import DmpError
from dmp.segments import rule_segments
from dmp.segments.registry import list_segments
from dmp.store import open_store
from tests.conftest import NOW

# Names that map to the same file name when unsafe characters are replaced, or
# that differ only in case (one file on a case-insensitive file system).
NAMES = ["a/b", "a_b", "a b", "Auto", "auto", "AUTO", "é", "..", "-x", "x" * 200]
COUNTRIES = ["DE", "FR", "GB", "US", "IT", "ES", "NL", "BE", "AT", "CH"]


def definitions(store) -> dict[str, dict]:
    return {s["name"]: s["definition"] for s in list_segments(store, "rule", now=NOW)}


@pytest.fixture
def named(store, config):
    for name, country in zip(NAMES, COUNTRIES, strict=True):
        rule_segments.create(store, config, name, {"country": country}, now=NOW)
    return store


def test_dump_writes_one_file_per_segment_whatever_the_names(named, config, tmp_path):
    folder = tmp_path / "defs"
    written = rule_segments.dump(named, folder)
    files = sorted(folder.iterdir())
    assert len(written) == len(files) == len(NAMES)
    assert len({f.name.casefold() for f in files}) == len(NAMES)
    assert all(f.name[0] not in ".-" and f.suffix == ".json" for f in files)
    assert sorted(json.loads(f.read_text())["name"] for f in files) == sorted(NAMES)
    # A plain lower-case name keeps its own file name, easy to find in a review.
    rule_segments.create(named, config, "recent-buyers", {"event": "purchase"}, now=NOW)
    rule_segments.dump(named, folder)
    assert json.loads((folder / "recent-buyers.json").read_text())["name"] == "recent-buyers"


def test_apply_reads_back_what_dump_wrote(named, config, tmp_path):
    folder = tmp_path / "defs"
    rule_segments.dump(named, folder)
    plans = rule_segments.apply(named, config, folder, dry_run=True, now=NOW)
    assert sorted(p["name"] for p in plans) == sorted(NAMES)
    assert {p["change"] for p in plans} == {"unchanged"}
    other = load_config(tmp_path / "other", env={})
    with open_store(other) as fresh:
        rule_segments.apply(fresh, other, folder, now=NOW)
        assert definitions(fresh) == definitions(named)


def test_apply_refuses_two_files_for_one_segment(named, config, tmp_path):
    folder = tmp_path / "defs"
    rule_segments.dump(named, folder)
    body = {"name": "a/b", "rule": {"event": "purchase"}}
    (folder / "copy.json").write_text(json.dumps(body))
    with pytest.raises(DmpError, match=r"segment 'a/b' is defined by two files: .*copy\.json"):
        rule_segments.apply(named, config, folder, now=NOW)
    assert definitions(named)["a/b"] == {"country": "DE"}
    (folder / "copy.json").write_text(json.dumps({"name": ["a/b"], "rule": {}}))
    with pytest.raises(DmpError, match="copy.json: expected JSON with name and rule"):
        rule_segments.apply(named, config, folder, now=NOW)
