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

A document is limited in size, depth and leaves (``segments.rule_max_*``), so any
rule within the limits compiles to SQL that DuckDB plans and runs: leaves become
columns of one grouped pass per table, never a subquery each.
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
        self.names: dict[tuple[str, str], str] = {}
        self.segments: set[str] = set()
        self.max_depth = config.get("segments.rule_max_depth")
        self.max_leaves = config.get("segments.rule_max_leaves")
        self.leaves = 0
        # What each counting leaf looks for, joined to the data as one parameter per
        # table (see ``hits``): a rule of any width is one join per table.
        self.event_specs: list[dict] = []
        self.category_specs: list[dict] = []
        self.segment_specs: list[dict] = []
        self.category_cache: dict[str, list[str]] = {}

    def param(self, value: Any) -> str:
        """A named parameter for ``value``; equal values share one, so the leaves of a
        wide rule repeat the same expressions (``$now - to_days($p1)``)."""
        key = (type(value).__name__, repr(value))
        if key not in self.names:
            self.names[key] = f"p{len(self.params)}"
            self.params[self.names[key]] = value
        return f"${self.names[key]}"

    def node(self, rule: Any, where: str, depth: int = 0) -> str:
        """A boolean SQL expression over the device ``d`` and its leaf columns."""
        if depth > self.max_depth:
            raise RuleError(
                f"{where}: rule nested deeper than {self.max_depth} levels "
                "(segments.rule_max_depth)"
            )
        if not isinstance(rule, dict) or not rule:
            raise RuleError(f'{where}: expected a JSON object such as {{"category": ...}}')
        combinators = {"all", "any", "not"} & set(rule)
        if combinators:
            if len(rule) != 1:
                raise RuleError(f"{where}: {next(iter(combinators))!r} must stand alone")
            return self.combinator(rule, where, depth)
        self.leaves += 1
        if self.leaves > self.max_leaves:
            raise RuleError(f"rule: more than {self.max_leaves} leaves (segments.rule_max_leaves)")
        kinds = (EVENT_LEAVES | {"frequency", "recency", "id_type", "segment"}) & set(rule)
        if len(kinds) != 1:
            known = "all, any, not, category, event, domain, country, frequency, recency, "
            got = ", ".join(sorted(rule))
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

    def window(self, rule: dict, where: str) -> tuple[int, int]:
        """(days, minimum count) from ``within_days`` and ``min_events``."""
        days = self.whole(rule.get("within_days", DEFAULT_WINDOW_DAYS), f"{where}.within_days", 1)
        minimum = self.whole(rule.get("min_events", 1), f"{where}.min_events", 1, 10**9)
        return days, minimum

    def event_leaf(self, kind: str, rule: dict, where: str) -> str:
        self.check_keys(rule, {kind} | WINDOW_KEYS, where)
        value = self.text(rule[kind], f"{where}.{kind}")
        if kind == "category":
            return self.category(value, rule, where)
        if kind == "country":
            value = self.country(value, f"{where}.country")
        return self.devices_with(kind, value if kind == "country" else value.lower(), rule, where)

    def devices_with(self, field: str, value: str, window: dict, where: str) -> str:
        """Usable events whose ``field`` is ``value`` (a domain: or a parent domain), at
        least ``min_events`` of them in the last ``within_days``."""
        days, minimum = self.window(window, where)
        spec = {"field": field, "value": value, "days": days, "minimum": minimum}
        return self.leaf(self.event_specs, [spec])

    def leaf(self, specs: list[dict], looks_for: list[dict]) -> str:
        """Record what a counting leaf looks for; its SQL asks whether it was hit."""
        number = self.leaves
        specs.extend({"leaf": number, **item} for item in looks_for)
        return f"coalesce(list_contains(h.hits, {number}), false)"

    def category(self, value: str, rule: dict, where: str) -> str:
        """Counted on the daily ``activity`` rollup (whole UTC days), not raw events."""
        ids = self.category_ids(value, f"{where}.category")
        days, minimum = self.window(rule, where)
        return self.leaf(
            self.category_specs,
            [{"category": i, "days": days, "minimum": minimum} for i in ids],
        )

    def category_ids(self, value: str, where: str) -> list[str]:
        if value not in self.category_cache:
            self.category_cache[value] = self.lookup_category(value, where)
        return self.category_cache[value]

    def lookup_category(self, value: str, where: str) -> list[str]:
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

    def country(self, value: str, where: str) -> str:
        if len(value) != 2 or not value.isalpha():
            raise RuleError(f"{where}: expected an ISO 3166-1 alpha-2 code such as DE")
        return value.upper()

    def frequency(self, body: Any, where: str) -> str:
        if not isinstance(body, dict):
            raise RuleError(f'{where}: expected {{"min_events": N, "within_days": D}}')
        self.check_keys(body, WINDOW_KEYS, where)
        return self.devices_with("any", "", body, where)

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
        return self.leaf(self.segment_specs, [{"segment": row[0]}])

    def hits(self) -> str | None:
        """A SELECT of (id, id_type, hits): the counting leaves each device satisfies,
        found by joining each table once to its leaves' specs (a parameter)."""
        parts = []
        if self.event_specs:
            parts.append(self.event_hits())
        if self.category_specs:
            parts.append(f"""
                SELECT a.id, a.id_type, l.leaf FROM activity a
                JOIN (SELECT unnest({self.param(self.category_specs)}, recursive := true)) l
                  ON a.category_id = l.category
                WHERE a.day > ($now - to_days(l.days))::DATE AND a.day <= $now::DATE
                GROUP BY a.id, a.id_type, l.leaf, l.minimum HAVING sum(a.events) >= l.minimum""")
        if self.segment_specs:
            parts.append(f"""
                SELECT m.id, m.id_type, l.leaf FROM segment_members m
                JOIN (SELECT unnest({self.param(self.segment_specs)}, recursive := true)) l
                  ON m.segment_id = l.segment
                WHERE m.expires_at > $now""")
        if not parts:
            return None
        union = " UNION ALL ".join(parts)
        return f"SELECT id, id_type, list(leaf) AS hits FROM ({union}) GROUP BY id, id_type"

    def event_hits(self) -> str:
        """Usable events as (field, value) keys (a domain also as each parent domain named
        by a leaf, worked out once per distinct domain), equi-joined to the event
        leaves' specs and counted in each leaf's window."""
        wanted: dict[str, list[str]] = {}
        for spec in self.event_specs:
            wanted.setdefault(spec["field"], []).append(spec["value"])
        keys = [self.event_keys(field, sorted(set(values))) for field, values in wanted.items()]
        widest = max(spec["days"] for spec in self.event_specs)
        return f"""
            SELECT k.id, k.id_type, l.leaf FROM (
                WITH w AS (
                    SELECT u.id, u.id_type, u.ts, u.event, u.country, u.domain
                    FROM ({usable_events_sql(self.config)}) u
                    WHERE u.ts > $now - to_days({self.param(widest)}) AND u.ts <= $now)
                {" UNION ALL ".join(keys)}) k
            JOIN (SELECT unnest({self.param(self.event_specs)}, recursive := true)) l
              ON k.field = l.field AND k.value = l.value
            WHERE k.ts > $now - to_days(l.days)
            GROUP BY k.id, k.id_type, l.leaf, l.minimum HAVING count(*) >= l.minimum"""

    def event_keys(self, field: str, values: list[str]) -> str:
        """(id, id_type, ts, field, value) of the events in ``w`` whose ``field`` is one
        of ``values``; the filter lets DuckDB drop other events early."""
        if field == "any":
            return "SELECT id, id_type, ts, 'any' AS field, '' AS value FROM w"
        if field != "domain":  # event, country: a column of the event
            return f"""SELECT id, id_type, ts, '{field}' AS field, {field} AS value FROM w
                WHERE list_contains({self.param(values)}, {field})"""
        return f"""SELECT w.id, w.id_type, w.ts, 'domain' AS field, s.value FROM w
            JOIN (SELECT domain, value FROM (
                    SELECT domain, unnest(
                        [array_to_string(p[i:], '.') for i in range(1, len(p) + 1)]) AS value
                    FROM (SELECT DISTINCT domain, string_split(domain, '.') AS p FROM w))
                  WHERE list_contains({self.param(values)}, value)) s
              ON s.domain = w.domain"""


def check_size(rule: Any, config: Config) -> None:
    """Refuse a rule document longer than ``segments.rule_max_bytes`` of compact JSON."""
    limit = config.get("segments.rule_max_bytes")
    try:
        size = len(json.dumps(rule, separators=(",", ":"), ensure_ascii=False).encode())
    except RecursionError:
        raise too_deep(config) from None
    except (TypeError, ValueError):
        raise RuleError("rule: expected a JSON document") from None
    if size > limit:
        raise RuleError(f"rule: {size} bytes; at most {limit} (segments.rule_max_bytes)")


def too_deep(config: Config) -> RuleError:
    """JSON nested past what any rule within ``segments.rule_max_depth`` needs."""
    return RuleError(
        f"rule: JSON nested deeper than a rule of {config.get('segments.rule_max_depth')} "
        "levels (segments.rule_max_depth) can be"
    )


def compile_rule(
    store: Store, config: Config, rule: Any, pending: frozenset[str] = frozenset()
) -> Compiled:
    """Validate ``rule`` against the language and its limits (size, depth, leaves) and
    turn it into a SELECT of matching devices.

    ``pending`` names segments about to be created alongside it, which a rule
    may refer to before they exist.
    """
    check_size(rule, config)
    compiler = _Compiler(store, config, pending)
    condition = compiler.node(rule, "rule")
    hits = compiler.hits()
    join = f"LEFT JOIN ({hits}) h ON h.id = d.id AND h.id_type = d.id_type " if hits else ""
    sql = (
        f"SELECT d.id, d.id_type FROM devices d {join}"
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
