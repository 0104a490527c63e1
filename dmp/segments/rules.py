"""The rule language: JSON rules, validated, compiled to parameterised SQL.

A rule is one JSON object; every error names where in the rule it is
(``rule.all[1].category``). Values never enter the SQL text: each becomes a
named parameter. Leaves:

  {"category": "Automotive", "min_events": 3, "within_days": 14}
      usable events in the category or any below it, in the last 14 whole UTC days
  {"event": "purchase", "min_events": 1, "within_days": 30}
  {"domain": "cars.example", "min_events": 1, "within_days": 30}   (and its subdomains)
  {"country": "DE", "within_days": 30}
  {"frequency": {"min_events": 10, "within_days": 7}}               usable events of any kind
  {"recency": {"within_days": 7}}                                   last seen within N days
  {"id_type": "maid"}
  {"segment": "recent-buyers"}                                      member of another segment

and the combinators {"all": [...]}, {"any": [...]}, {"not": {...}}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dmp.config import Config
from dmp.errors import DmpError
from dmp.identity.consent import usable_events_sql
from dmp.interests.taxonomy import descendants_sql
from dmp.store import Store

DEFAULT_WINDOW_DAYS = 30
EVENT_LEAVES = {"category", "event", "domain", "country"}
WINDOW_KEYS = {"min_events", "within_days"}
MAX_DEPTH = 20


class RuleError(DmpError):
    """A rule that cannot be compiled; the message says where."""


@dataclass
class Compiled:
    """A rule as SQL: ``sql`` selects (id, id_type) of matching devices as of ``$now``."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    segments: set[str] = field(default_factory=set)  # names of segments referenced


class _Compiler:
    def __init__(self, store: Store, config: Config, pending: frozenset[str] = frozenset()):
        self.store = store
        self.config = config
        self.pending = pending
        self.params: dict[str, Any] = {}
        self.segments: set[str] = set()
        self.usable = usable_events_sql(config)

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def node(self, rule: Any, where: str, depth: int = 0) -> str:
        """A boolean SQL expression over the device ``d``."""
        if depth > MAX_DEPTH:
            raise RuleError(f"{where}: rule nested deeper than {MAX_DEPTH} levels")
        if not isinstance(rule, dict) or not rule:
            raise RuleError(f'{where}: expected a JSON object such as {{"category": ...}}')
        combinators = {"all", "any", "not"} & set(rule)
        if combinators:
            if len(rule) != 1:
                raise RuleError(f"{where}: {next(iter(combinators))!r} must stand alone")
            return self.combinator(rule, where, depth)
        kinds = (EVENT_LEAVES | {"frequency", "recency", "id_type", "segment"}) & set(rule)
        if len(kinds) != 1:
            known = "all, any, not, category, event, domain, country, frequency, recency, "
            got = ", ".join(sorted(rule)) if isinstance(rule, dict) else type(rule).__name__
            raise RuleError(f"{where}: expected exactly one of {known}id_type, segment; got {got}")
        kind = kinds.pop()
        if kind in EVENT_LEAVES:
            return self.event_leaf(kind, rule, where)
        self.check_keys(rule, {kind}, where)
        return getattr(self, kind)(rule[kind], f"{where}.{kind}")

    def combinator(self, rule: dict, where: str, depth: int) -> str:
        ((op, body),) = rule.items()
        if op == "not":
            return f"NOT ({self.node(body, f'{where}.not', depth + 1)})"
        if not isinstance(body, list) or not body:
            raise RuleError(f"{where}.{op}: expected a non-empty list of rules")
        parts = [self.node(r, f"{where}.{op}[{i}]", depth + 1) for i, r in enumerate(body)]
        return "(" + (" AND " if op == "all" else " OR ").join(parts) + ")"

    def check_keys(self, rule: dict, allowed: set[str], where: str) -> None:
        unknown = set(rule) - allowed
        if unknown:
            raise RuleError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")

    def whole(self, value: Any, where: str, low: int = 0, high: int = 3650) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise RuleError(f"{where}: expected a whole number from {low} to {high}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > 500:
            raise RuleError(f"{where}: expected a non-empty string")
        return value.strip()

    def window(self, rule: dict, where: str) -> tuple[str, str]:
        """(time filter, HAVING) from ``within_days`` and ``min_events``."""
        days = self.whole(rule.get("within_days", DEFAULT_WINDOW_DAYS), f"{where}.within_days", 1)
        minimum = self.whole(rule.get("min_events", 1), f"{where}.min_events", 1, 10**9)
        since = f"$now - to_days({self.param(days)})"
        return f"u.ts > {since} AND u.ts <= $now", f"count(*) >= {self.param(minimum)}"

    def event_leaf(self, kind: str, rule: dict, where: str) -> str:
        self.check_keys(rule, {kind} | WINDOW_KEYS, where)
        value = self.text(rule[kind], f"{where}.{kind}")
        if kind == "category":
            return self.category(value, rule, where)
        since, having = self.window(rule, where)
        match = {
            "event": lambda: f"u.event = {self.param(value.lower())}",
            "domain": lambda: self.domain(value.lower()),
            "country": lambda: self.country(value, f"{where}.country"),
        }[kind]()
        return self.devices_with(f"{since} AND {match}", having)

    def devices_with(self, condition: str, having: str) -> str:
        return f"""(d.id, d.id_type) IN (
            SELECT u.id, u.id_type FROM ({self.usable}) u WHERE {condition}
            GROUP BY u.id, u.id_type HAVING {having})"""

    def category(self, value: str, rule: dict, where: str) -> str:
        """Counted on the daily ``activity`` rollup (whole UTC days), not raw events."""
        ids = self.category_ids(value, f"{where}.category")
        days = self.whole(rule.get("within_days", DEFAULT_WINDOW_DAYS), f"{where}.within_days", 1)
        minimum = self.whole(rule.get("min_events", 1), f"{where}.min_events", 1, 10**9)
        return f"""(d.id, d.id_type) IN (
            SELECT a.id, a.id_type FROM activity a
            WHERE list_contains({self.param(ids)}, a.category_id)
              AND a.day > ($now - to_days({self.param(days)}))::DATE AND a.day <= $now::DATE
            GROUP BY a.id, a.id_type HAVING sum(a.events) >= {self.param(minimum)})"""

    def category_ids(self, value: str, where: str) -> list[str]:
        rows = self.store.con.execute(
            f"""SELECT t.id, t.sensitive FROM ({descendants_sql()}) d
                JOIN taxonomy t ON t.taxonomy = 'content' AND t.id = d.id""",
            {"category": value},
        ).fetchall()
        if not rows:
            raise RuleError(f"{where}: unknown content category {value!r}")
        if any(sensitive for _, sensitive in rows) and not self.config.get(
            "interests.allow_sensitive"
        ):
            raise RuleError(
                f"{where}: {value!r} is a sensitive category (health, religion, politics and "
                "the like); set interests.allow_sensitive = true to use it"
            )
        return [r[0] for r in rows]

    def domain(self, value: str) -> str:
        p = self.param(value)
        return f"(u.domain = {p} OR ends_with(u.domain, '.' || {p}))"

    def country(self, value: str, where: str) -> str:
        if len(value) != 2 or not value.isalpha():
            raise RuleError(f"{where}: expected an ISO 3166-1 alpha-2 code such as DE")
        return f"u.country = {self.param(value.upper())}"

    def frequency(self, body: Any, where: str) -> str:
        if not isinstance(body, dict):
            raise RuleError(f'{where}: expected {{"min_events": N, "within_days": D}}')
        self.check_keys(body, WINDOW_KEYS, where)
        since, having = self.window(body, where)
        return self.devices_with(since, having)

    def recency(self, body: Any, where: str) -> str:
        if not isinstance(body, dict):
            raise RuleError(f'{where}: expected {{"within_days": D}}')
        self.check_keys(body, {"within_days"}, where)
        days = self.whole(body.get("within_days"), f"{where}.within_days", 1)
        return f"d.last_seen > $now - to_days({self.param(days)})"

    def id_type(self, value: Any, where: str) -> str:
        if value not in ("cookie", "maid"):
            raise RuleError(f'{where}: expected "cookie" or "maid"')
        return f"d.id_type = {self.param(value)}"

    def segment(self, value: Any, where: str) -> str:
        name = self.text(value, where)
        row = self.store.con.execute(
            "SELECT segment_id FROM segments WHERE name = ? ORDER BY kind = 'rule' DESC LIMIT 1",
            [name],
        ).fetchone()
        if row is None and name not in self.pending:
            raise RuleError(f"{where}: no segment named {name!r}")
        self.segments.add(name)
        if row is None:  # to be created in the same batch (``apply``): matches nothing yet
            return "false"
        return f"""(d.id, d.id_type) IN (
            SELECT id, id_type FROM segment_members
            WHERE segment_id = {self.param(row[0])} AND expires_at > $now)"""


def compile_rule(
    store: Store, config: Config, rule: Any, pending: frozenset[str] = frozenset()
) -> Compiled:
    """Validate ``rule`` and turn it into a SELECT of matching devices.

    ``pending`` names segments about to be created alongside it, which a rule
    may refer to before they exist.
    """
    compiler = _Compiler(store, config, pending)
    condition = compiler.node(rule, "rule")
    sql = (
        "SELECT d.id, d.id_type FROM devices d "
        f"WHERE NOT d.bot AND d.first_seen <= $now AND {condition}"
    )
    return Compiled(sql, compiler.params, compiler.segments)


def check_cycles(store: Store, name: str, references: set[str]) -> None:
    """Refuse a rule that would reach itself through the segments it names."""
    seen: set[str] = set()
    todo = list(references)
    while todo:
        current = todo.pop()
        if current == name:
            raise RuleError(f"rule: circular segment reference ({name!r} refers back to itself)")
        if current in seen:
            continue
        seen.add(current)
        row = store.con.execute(
            "SELECT definition FROM segments WHERE name = ? AND kind = 'rule'", [current]
        ).fetchone()
        if row and row[0]:
            todo.extend(referenced_segments(json.loads(row[0])))


def referenced_segments(rule: Any) -> list[str]:
    """Names of the segments a rule refers to, at any depth."""
    if isinstance(rule, dict):
        found = [rule["segment"]] if isinstance(rule.get("segment"), str) else []
        return found + [name for value in rule.values() for name in referenced_segments(value)]
    if isinstance(rule, list):
        return [name for item in rule for name in referenced_segments(item)]
    return []
