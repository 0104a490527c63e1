"""Properties of the rule compiler over generated rule documents: any document either
compiles to SQL that DuckDB runs, or is refused with a DmpError (never another
exception); no value of the rule is ever pasted into the SQL; the limits hold."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from dmp.config import load_config
from dmp.errors import DmpError
from dmp.interests.taxonomy import ensure
from dmp.segments.rules import compile_rule
from dmp.store import open_store
from tests.conftest import NOW

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = ["segments.rule_max_leaves=12", "segments.rule_max_depth=3", "segments.rule_max_bytes=900"]

words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
marked = st.builds(lambda w: f"zq{w}qz", words)  # a value we can look for in the SQL
numbers = st.one_of(st.integers(-5, 5000), st.booleans(), st.none(), st.floats(), marked)
window = st.fixed_dictionaries({}, optional={"min_events": numbers, "within_days": numbers})
leaves = st.one_of(
    st.builds(lambda k, v, w: {k: v, **w},
              st.sampled_from(["category", "event", "domain", "country"]),
              st.one_of(marked, st.sampled_from(["Automotive", "1", "DE", "Medical Health"]),
                        numbers),
              window),
    st.builds(lambda w: {"frequency": w}, window),
    st.builds(lambda d: {"recency": {"within_days": d}}, numbers),
    st.builds(lambda v: {"id_type": v}, st.one_of(st.sampled_from(["cookie", "maid"]), marked)),
    st.builds(lambda v: {"segment": v}, st.one_of(st.just("base"), marked)),
    st.dictionaries(marked, numbers, max_size=2),
    st.lists(numbers, max_size=2),
    numbers,
)  # fmt: skip
rules = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=5)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, max_size=5)),
        st.builds(lambda x: {"not": x}, inner),
        st.builds(lambda x, y: {"any": [x], "not": y}, inner, inner),
    ),
    max_leaves=30,
)


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """A small instance with one segment (``base``) and the limits made small."""
    home = tmp_path_factory.mktemp("props") / "home"
    config = load_config(home, LIMITS, env={})
    with open_store(config) as store:
        ensure(store, config)
        store.con.execute(
            "INSERT INTO segments (segment_id, name, kind, definition, ttl_days, created_at, "
            "updated_at) VALUES (1, 'base', 'rule', '{\"id_type\": \"maid\"}', 30, ?, ?)",
            [NOW, NOW],
        )
        yield store, config


def _shape(rule) -> tuple[int, int]:
    """(depth of all/any/not, leaves) of a rule the compiler accepted."""
    ((op, body),) = rule.items() if len(rule) == 1 else ((None, None),)
    if op == "not":
        depth, count = _shape(body)
        return depth + 1, count
    if op in ("all", "any"):
        shapes = [_shape(r) for r in body]
        return 1 + max(d for d, _ in shapes), sum(c for _, c in shapes)
    return 0, 1


@SETTINGS
@seed(20261204)  # the same examples in every run and clone
@given(rule=rules)
def test_a_rule_compiles_to_runnable_sql_or_is_refused_clearly(instance, rule):
    store, config = instance
    try:
        compiled = compile_rule(store, config, rule)
    except DmpError:
        return
    store.con.execute(f"SELECT count(*) FROM ({compiled.sql})", {**compiled.params, "now": NOW})
    depth, count = _shape(rule)
    assert depth <= 3 and count <= 12
    assert len(json.dumps(rule, separators=(",", ":"), ensure_ascii=False).encode()) <= 900
    assert "zq" not in compiled.sql and "qz" not in compiled.sql  # values are parameters


@SETTINGS
@seed(20261204)
@given(count=st.integers(1, 30), depth=st.integers(0, 6))
def test_the_limits_decide_acceptance(instance, count, depth):
    store, config = instance
    rule: dict = {"any": [{"id_type": "maid"}] * count}
    for _ in range(depth):
        rule = {"not": rule}
    fits = count <= 12 and depth + 1 <= 3
    try:
        compile_rule(store, config, rule)
    except DmpError as exc:
        assert not fits, exc
    else:
        assert fits
