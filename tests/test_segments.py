"""Rule segments: the rule language, memberships with TTL, preview, export, segments as code."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest

from dmp.errors import DmpError
from dmp.identity.explain import explain
from dmp.interests.profiles import build_profiles
from dmp.segments import rule_segments
from dmp.segments.insights import describe
from dmp.segments.registry import list_segments
from dmp.segments.rules import RuleError
from tests.conftest import NOW
from tests.test_identity import MAID, line, load

DAY = timedelta(days=1)
AUTO = {"category": "Automotive", "min_events": 2, "within_days": 14}


@pytest.fixture
def world(store, config, write):
    """ck1: 3 car pages (one by rule), ck2: one car page, MAID: a purchase in DE, ck3: gpc."""
    load(
        store,
        config,
        write,
        line(NOW - 2 * DAY, "ck1", category="30"),
        line(NOW - DAY, "ck1", category="1"),
        line(NOW - DAY, "ck1", url="https://cars.example/new"),
        line(NOW - 20 * DAY, "ck1", category="1"),
        line(NOW - DAY, "ck2", category="2"),
        line(NOW - DAY, MAID, "maid", event="purchase", country="DE", category="483"),
        line(NOW - DAY, "ck3", category="1", gpc="1"),
        line(NOW - DAY, "ck3", category="1", gpc="1"),
    )
    build_profiles(store, config, NOW)
    return store


def members(store, name, now=NOW):
    segment = {s["name"]: s for s in list_segments(store, now=now)}[name]
    return {
        r[0]
        for r in store.con.execute(
            "SELECT id FROM segment_members WHERE segment_id = ? AND expires_at > ?",
            [segment["segment_id"], now],
        ).fetchall()
    }


RULES = [
    (AUTO, {"ck1"}),  # 3 in window incl. the rule-categorised page; ck3 has no consent
    ({"category": "1", "min_events": 1, "within_days": 14}, {"ck1", "ck2"}),  # descendants
    ({"event": "purchase"}, {MAID}),
    ({"country": "de"}, {MAID}),
    ({"domain": "example"}, {"ck1", "ck2", MAID}),
    ({"frequency": {"min_events": 4, "within_days": 30}}, {"ck1"}),
    ({"recency": {"within_days": 2}}, {"ck1", "ck2", MAID, "ck3"}),
    ({"id_type": "maid"}, {MAID}),
    ({"all": [{"id_type": "cookie"}, {"not": AUTO}]}, {"ck2", "ck3"}),
    ({"any": [AUTO, {"event": "purchase"}]}, {"ck1", MAID}),
]


@pytest.mark.parametrize(("rule", "expected"), RULES)
def test_rule_language(world, config, rule, expected):
    result = rule_segments.create(world, config, "s", rule, now=NOW)
    assert members(world, "s") == expected
    assert result["size"] == len(expected) == rule_segments.preview(world, config, rule, NOW)


def test_segment_membership_of_another_segment_and_cycles(world, config):
    rule_segments.create(world, config, "auto", AUTO, now=NOW)
    rule_segments.create(world, config, "not-auto", {"not": {"segment": "auto"}}, now=NOW)
    assert members(world, "not-auto") == {"ck2", "ck3", MAID}
    with pytest.raises(RuleError, match="circular segment reference"):
        rule_segments.update(world, config, "auto", {"segment": "not-auto"}, now=NOW)


BAD_RULES = [
    ({"category": "Flying Cars"}, "rule.category: unknown content category 'Flying Cars'"),
    ({"all": [AUTO, {"colour": "red"}]}, "rule.all[1]: expected exactly one of"),
    ({"category": "Automotive", "min_events": "3"}, "rule.min_events: expected a whole number"),
    ({"any": []}, "rule.any: expected a non-empty list"),
    ({"category": "Medical Health"}, "rule.category: 'Medical Health' is a sensitive category"),
    ({"segment": "nope"}, "rule.segment: no segment named 'nope'"),
    ({"country": "Germany"}, "rule.country: expected an ISO 3166-1 alpha-2 code"),
    ([1, 2], "rule: expected a JSON object"),
]


@pytest.mark.parametrize(("rule", "message"), BAD_RULES)
def test_invalid_rules_point_at_the_part_and_store_nothing(world, config, rule, message):
    with pytest.raises(RuleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rule_segments.create(world, config, "bad", rule, now=NOW)
    assert list_segments(world, now=NOW) == []


def test_names_are_unique_and_any_text_is_stored_safely(world, config):
    name = "Robert'); DROP TABLE segments;-- <script>"
    rule_segments.create(world, config, name, AUTO, now=NOW)
    with pytest.raises(DmpError, match="already exists"):
        rule_segments.create(world, config, name, AUTO, now=NOW)
    assert [s["name"] for s in list_segments(world, now=NOW)] == [name]


def test_memberships_outlive_a_match_by_the_ttl_and_record_the_exit(world, config):
    rule_segments.create(world, config, "auto", AUTO, ttl_days=20, now=NOW)
    # Two weeks on, ck1's car pages have left the 14-day window: no match, but
    # its membership runs until NOW + 20 days.
    assert rule_segments.refresh_all(world, config, NOW + 14 * DAY)["segments"][0]["added"] == 0
    assert members(world, "auto", NOW + 14 * DAY) == {"ck1"}
    result = rule_segments.refresh_all(world, config, NOW + 21 * DAY)
    assert result["segments"][0]["left"] == 1
    assert world.con.execute("SELECT id, reason FROM segment_exits").fetchall() == [
        ("ck1", "stopped matching; membership TTL ran out")
    ]
    trend = describe(world, "auto", NOW + 21 * DAY)["trend"]
    assert [t["size"] for t in trend] == [1, 1, 0]
    why = explain(world, config, "ck1", now=NOW + 21 * DAY)["segments"]
    assert why["member_of"] == [] and why["left"][0]["segment"] == "auto"


def test_export_dump_apply(world, config, tmp_path):
    rule_segments.create(world, config, "auto", AUTO, description="car intenders", now=NOW)
    out = tmp_path / "auto.csv"
    assert rule_segments.export_members(world, "auto", out, NOW) == 1
    assert list(csv.reader(out.read_text().splitlines())) == [["id", "id_type"], ["ck1", "cookie"]]

    folder = tmp_path / "defs"
    rule_segments.dump(world, folder)
    body = json.loads((folder / "auto.json").read_text())
    assert body["rule"] == AUTO and body["description"] == "car intenders"
    body["rule"] = {"event": "purchase"}
    (folder / "auto.json").write_text(json.dumps(body))
    (folder / "buyers.json").write_text(json.dumps({"name": "buyers", "rule": {"country": "DE"}}))
    plans = rule_segments.apply(world, config, folder, dry_run=True, now=NOW)
    assert [(p["name"], p["change"]) for p in plans] == [("auto", "update"), ("buyers", "create")]
    assert members(world, "auto") == {"ck1"}  # dry run changed nothing
    rule_segments.apply(world, config, folder, now=NOW)
    assert members(world, "buyers") == {MAID}
    (folder / "broken.json").write_text(json.dumps({"name": "x", "rule": {"category": "Nope"}}))
    with pytest.raises(DmpError, match="broken.json: rule.category: unknown content category"):
        rule_segments.apply(world, config, folder, now=NOW)


def test_segments_cli(cli, tmp_path):
    cli("init")
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(AUTO))
    result = cli("segments", "create", "auto", "--rule", f"@{rule}", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(cli("segments", "list", "--json").stdout) == [
        {"name": "auto", "kind": "rule", "size": 0, "agency": None, "status": "live"}
    ]
    bad = cli("segments", "preview", "--rule", '{"category": ')
    assert bad.exit_code == 1 and "rule is not valid JSON" in bad.output
    assert json.loads(
        cli("segments", "preview", "--rule", '{"id_type": "maid"}', "--json").stdout
    ) == {"size": 0}
    assert "Automotive" in cli("taxonomy").stdout
