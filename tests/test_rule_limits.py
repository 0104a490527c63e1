"""Rule documents within their limits (bytes, depth, leaves) work at any size; past them
they are refused with a clear error before anything is stored, and a segment is created
in one transaction with its first refresh, by the library, the CLI, the API, the
dashboard and `segments apply`."""

from __future__ import annotations

import json

import duckdb
import pytest

from dmp.config import load_config
from dmp.segments import rule_segments
from dmp.segments.registry import list_segments
from dmp.segments.rules import RuleError
from tests.conftest import NOW
from tests.test_identity import MAID
from tests.test_segments import AUTO, members, world  # noqa: F401 (the fixture)

NOWHERE = [{"domain": f"d{i}.nowhere.example", "min_events": 1 + i % 3} for i in range(997)]
# 1,000 leaves: 997 that match nobody, a purchase (the MAID) and ck1's cars as a cookie.
WIDE = {"any": [*NOWHERE, {"event": "purchase"}, {"all": [AUTO, {"id_type": "cookie"}]}]}


def deep(levels: int) -> dict:
    rule: dict = {"id_type": "maid"}
    for _ in range(levels):
        rule = {"not": rule}
    return rule


def nested_text(levels: int) -> str:
    return '{"any": ' * levels + '{"id_type": "maid"}' + "}" * levels


def test_a_rule_at_the_leaf_limit_previews_and_fills(world, config):  # noqa: F811
    assert rule_segments.preview(world, config, WIDE, NOW) == 2
    rule_segments.create(world, config, "wide", WIDE, now=NOW)
    assert members(world, "wide") == {"ck1", MAID}
    assert rule_segments.refresh_all(world, config, NOW)["failed"] == {}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"any": [*NOWHERE, *NOWHERE[:4]]}, "rule: more than 1000 leaves"),
        (deep(21), "rule.not.not.*: rule nested deeper than 20 levels"),
        (
            {"any": [{"domain": "x" * 400 + f"{i}.example"} for i in range(400)]},
            "rule: 1[0-9]{5} bytes",
        ),
    ],
)
def test_rules_past_a_limit_are_refused_and_store_nothing(world, config, rule, message):  # noqa: F811
    with pytest.raises(RuleError, match=message):
        rule_segments.create(world, config, "big", rule, now=NOW)
    with pytest.raises(RuleError, match=message):
        rule_segments.preview(world, config, rule, NOW)
    assert list_segments(world, now=NOW) == []
    assert rule_segments.refresh_all(world, config, NOW)["failed"] == {}


def test_limits_are_config_keys(world, home):  # noqa: F811
    tight = load_config(
        home,
        ["segments.rule_max_leaves=2", "segments.rule_max_depth=1", "segments.rule_max_bytes=80"],
        env={},
    )
    rule_segments.preview(world, tight, {"any": [{"id_type": "maid"}, {"event": "x"}]}, NOW)
    with pytest.raises(RuleError, match="more than 2 leaves"):
        rule_segments.preview(world, tight, {"any": [{"id_type": "maid"}] * 3}, NOW)
    with pytest.raises(RuleError, match="nested deeper than 1 level"):
        rule_segments.preview(world, tight, {"not": {"not": {"id_type": "maid"}}}, NOW)
    with pytest.raises(RuleError, match="bytes; at most 80"):
        rule_segments.preview(world, tight, {"any": [{"domain": "x" * 70}]}, NOW)
    with pytest.raises(RuleError, match="bytes; at most 80"):
        rule_segments.parse_rule(json.dumps({"domain": "x" * 70}), tight)


def test_json_nested_past_any_limit_is_a_rule_error(config):
    with pytest.raises(RuleError, match="rule: JSON nested deeper than"):
        rule_segments.parse_rule(nested_text(5000), config)


def test_a_segment_that_cannot_fill_is_not_stored(world, config):  # noqa: F811
    world.con.execute("ALTER TABLE activity RENAME TO gone")  # the first refresh fails
    with pytest.raises(duckdb.CatalogException):
        rule_segments.create(world, config, "auto", AUTO, now=NOW)
    world.con.execute("ALTER TABLE gone RENAME TO activity")
    assert list_segments(world, now=NOW) == []


def test_apply_is_one_transaction(world, config, tmp_path):  # noqa: F811
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps({"name": "a", "rule": {"id_type": "maid"}}))
    (folder / "b.json").write_text(json.dumps({"name": "b", "rule": AUTO}))
    world.con.execute("ALTER TABLE activity RENAME TO gone")  # b's first refresh fails
    with pytest.raises(duckdb.CatalogException):
        rule_segments.apply(world, config, folder, now=NOW)
    world.con.execute("ALTER TABLE gone RENAME TO activity")
    assert list_segments(world, now=NOW) == []
    (folder / "c.json").write_text(json.dumps({"name": "c", "rule": WIDE | {"x": 1}}))
    with pytest.raises(RuleError, match="c.json: rule: 'any' must stand alone"):
        rule_segments.apply(world, config, folder, now=NOW)
    (folder / "c.json").write_text(json.dumps({"name": "c", "rule": {"any": [*NOWHERE, *NOWHERE]}}))
    with pytest.raises(RuleError, match="c.json: rule: more than 1000 leaves"):
        rule_segments.apply(world, config, folder, now=NOW)
    assert list_segments(world, now=NOW) == []


def test_cli_says_error_for_rules_past_the_limits(cli, tmp_path):
    cli("init")
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"any": NOWHERE * 2}))
    for args in (
        ("segments", "create", "big", "--rule", f"@{big}"),
        ("segments", "preview", "--rule", f"@{big}"),
        ("segments", "create", "deep", "--rule", nested_text(5000)),
        ("segments", "preview", "--rule", nested_text(5000)),
    ):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.output.startswith("error: rule"), result.output
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "deep.json").write_text('{"name": "deep", "rule": ' + nested_text(5000) + "}")
    result = cli("segments", "apply", str(folder))
    assert result.exit_code == 1 and result.output.startswith("error: deep.json: "), result.output
    assert json.loads(cli("segments", "list", "--json").stdout) == []
