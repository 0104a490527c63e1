"""Interests: taxonomy, page categorisation rules, decayed profiles (incremental == full)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dmp.config import load_config
from dmp.errors import DmpError
from dmp.interests import taxonomy
from dmp.interests.categorise import load_rules
from dmp.interests.profiles import build_profiles, scores_sql
from tests.conftest import NOW
from tests.test_identity import line, load


def profile_rows(store):
    return sorted(
        store.con.execute(
            "SELECT id, category_id, round(score_log2, 9), events, last_seen FROM profiles"
        ).fetchall()
    )


def test_taxonomies_load_with_sensitive_branches_flagged(store, config):
    assert taxonomy.install(store, config) == 704 + 1558
    automotive = taxonomy.resolve_category(store, "automotive")
    assert "1" in automotive and "30" in automotive and len(automotive) == 41
    sensitive = dict(
        store.con.execute(
            "SELECT path, sensitive FROM taxonomy WHERE path IN "
            "('Medical Health', 'Automotive', 'Interest | Health and Medical Services')"
        ).fetchall()
    )
    assert sensitive == {
        "Medical Health": True,
        "Automotive": False,
        "Interest | Health and Medical Services": True,
    }
    with pytest.raises(DmpError, match="unknown content category 'Flying Cars'"):
        taxonomy.resolve_category(store, "Flying Cars")


def test_category_rules_first_match_wins_and_bad_rules_name_themselves(store, config, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\ndomain = "news.example"\npath = "/sport/"\ncategory = "Sports"\n'
        '[[rule]]\ndomain = "news.example"\ncategory = "Automotive"\n'
    )
    custom = load_config(config.home, (f"interests.category_rules={rules}",), env={})
    taxonomy.ensure(store, custom)
    assert [r[-1] for r in load_rules(store, custom)] == ["483", "1"]
    rules.write_text('[[rule]]\ncategory = "Sports"\n')
    with pytest.raises(DmpError, match="rule 1: needs at least one of domain, path, keyword"):
        load_rules(store, custom)
    rules.write_text('[[rule]]\ndomain = "a.example"\ncategory = "Nope"\n')
    with pytest.raises(DmpError, match="rule 1: unknown content category 'Nope'"):
        load_rules(store, custom)


def test_uncategorised_pages_get_rule_categories_or_are_counted(store, config, write):
    load(
        store,
        config,
        write,
        line(NOW, "ck1", url="https://m.news.example/sport/match?id=1"),
        line(NOW, "ck1", url="https://news.example/economy/"),
        line(NOW, "ck2", url="https://unknown.example/"),
        line(NOW, "ck2", url="https://unknown.example/x", category="1|30"),
    )
    result = build_profiles(store, config, NOW)
    assert result["uncategorised_events"] == 1
    cats = sorted((r[0], r[1]) for r in profile_rows(store))
    assert cats == [("ck1", "483"), ("ck1", "52"), ("ck2", "1"), ("ck2", "30")]


def test_incremental_profiles_equal_a_full_rebuild_and_decay(store, config, write):
    day = timedelta(days=1)
    load(
        store,
        config,
        write,
        line(NOW - 20 * day, "ck1", category="1"),
        line(NOW - 10 * day, "ck2", category="1|483"),
        name="a.csv",
    )
    build_profiles(store, config, NOW - 9 * day)
    load(
        store,
        config,
        write,
        line(NOW - day, "ck1", category="1"),
        line(NOW, "ck3", category="483", gpc="1"),  # no consent: never profiled
        name="b.csv",
    )
    incremental = build_profiles(store, config, NOW)
    assert (incremental["full"], incremental["devices_touched"]) == (False, 2)
    after_incremental = profile_rows(store)
    build_profiles(store, config, NOW, full=True)
    assert profile_rows(store) == after_incremental
    scores = dict(
        (r[0], r[3])
        for r in store.con.execute(
            f"SELECT * FROM ({scores_sql(config)}) WHERE category_id = '1'", {"now": NOW}
        ).fetchall()
    )
    # Half-life 14 days: ck1 has events 20 and 1 days old, ck2 one 10 days old.
    assert scores["ck1"] == pytest.approx(2 ** (-20 / 14) + 2 ** (-1 / 14))
    assert scores["ck2"] == pytest.approx(2 ** (-10 / 14))
    assert "ck3" not in {r[0] for r in after_incremental}
