"""Rule segments: create, preview, refresh, export, and keep definitions as code.

Every operation validates the rule first (``rules.compile_rule``), so nothing
invalid is ever stored, and stores a segment in the same transaction as its first
refresh, so a rule that cannot be filled leaves nothing behind; preview runs the
same SQL as a refresh but stores nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from dmp.clock import utcnow
from dmp.config import Config
from dmp.csvsafe import write_csv
from dmp.errors import DmpError
from dmp.interests.taxonomy import ensure
from dmp.segments.membership import apply_members
from dmp.segments.registry import (
    create_segment,
    get_segment,
    list_segments,
    require_segment,
    update_definition,
)
from dmp.segments.rules import (
    Compiled,
    RuleError,
    check_cycles,
    compile_rule,
    referenced_segments,
    too_deep,
)
from dmp.store import Store

# A name that can be its own file name on any file system (lower case: one file
# even where the file system ignores case), and what is replaced in the others.
_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def parse_rule(text: str, config: Config) -> Any:
    """A rule from JSON text, its size checked before it is parsed; bad JSON says where."""
    limit = config.get("segments.rule_max_bytes")
    size = len(text.encode())
    if size > limit:
        raise RuleError(f"rule: {size} bytes; at most {limit} (segments.rule_max_bytes)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuleError(
            f"rule is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise too_deep(config) from None


def preview(store: Store, config: Config, rule: Any, now: datetime | None = None) -> int:
    """How many devices the rule matches now; stores nothing."""
    ensure(store, config)
    compiled = compile_rule(store, config, rule)
    return store.con.execute(
        f"SELECT count(*) FROM ({compiled.sql})", {**compiled.params, "now": now or utcnow()}
    ).fetchone()[0]


def create(
    store: Store,
    config: Config,
    name: str,
    rule: Any,
    description: str | None = None,
    ttl_days: int | None = None,
    now: datetime | None = None,
) -> dict:
    """Store a rule segment and fill it, in one transaction: an invalid rule, or one
    whose first refresh fails, stores nothing."""
    now = now or utcnow()
    compiled = _validate(store, config, name, rule)
    with store.transaction():
        result = _store_and_fill(store, compiled, name, rule, description, ttl_days, now, True)
    return result | {"segment_id": require_segment(store, name, "rule")["segment_id"]}


def update(
    store: Store,
    config: Config,
    name: str,
    rule: Any,
    description: str | None = None,
    ttl_days: int | None = None,
    now: datetime | None = None,
) -> dict:
    """Change a rule segment and refill it, in one transaction."""
    now = now or utcnow()
    require_segment(store, name, "rule")
    compiled = _validate(store, config, name, rule)
    with store.transaction():
        return _store_and_fill(store, compiled, name, rule, description, ttl_days, now, False)


def _store_and_fill(
    store: Store,
    compiled: Compiled,
    name: str,
    rule: Any,
    description: str | None,
    ttl_days: int | None,
    now: datetime,
    new: bool,
) -> dict:
    """Create (``new``, refusing a taken name) or change the segment ``name`` and fill
    it, inside the caller's transaction."""
    if new:
        create_segment(
            store, name, "rule", rule, ttl_days=ttl_days, description=description, now=now
        )
    else:
        segment_id = require_segment(store, name, "rule")["segment_id"]
        update_definition(store, segment_id, rule, description, ttl_days, now)
    return _fill(store, compiled, require_segment(store, name, "rule"), now)


def _validate(store: Store, config: Config, name: str, rule: Any) -> Compiled:
    """Compile the rule and refuse cycles: nothing invalid is ever stored."""
    ensure(store, config)
    compiled = compile_rule(store, config, rule)
    check_cycles(store, name, compiled.segments)
    return compiled


def refresh(store: Store, config: Config, segment: dict, now: datetime) -> dict:
    """Re-evaluate one rule segment and merge its members, atomically."""
    compiled = compile_rule(store, config, segment["definition"])
    with store.transaction():
        return _fill(store, compiled, segment, now)


def _fill(store: Store, compiled: Compiled, segment: dict, now: datetime) -> dict:
    """Merge the rule's current matches into the segment (inside the caller's transaction)."""
    con = store.con
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE matched AS {compiled.sql}",
        {**compiled.params, "now": now},
    )
    result = apply_members(con, segment["segment_id"], "matched", now, segment["ttl_days"])
    con.execute("DROP TABLE matched")
    return {"name": segment["name"], **result}


def refresh_all(store: Store, config: Config, now: datetime | None = None) -> dict:
    """The segments job: every rule segment, referenced segments first."""
    now = now or utcnow()
    ensure(store, config)
    segments = {s["name"]: s for s in list_segments(store, "rule", now)}
    results, failed = [], {}
    for name in _dependency_order(segments):
        try:
            results.append(refresh(store, config, segments[name], now))
        except (
            DmpError
        ) as exc:  # a segment broken by a taxonomy/config change must not stop the rest
            failed[name] = str(exc)
    return {"refreshed": len(results), "segments": results, "failed": failed}


def _dependency_order(segments: dict[str, dict]) -> list[str]:
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order or name not in segments or name in trail:
            return
        for ref in referenced_segments(segments[name]["definition"]):
            visit(ref, (*trail, name))
        order.append(name)

    for name in sorted(segments):
        visit(name, ())
    return order


def export_members(store: Store, name: str, out: Path, now: datetime | None = None) -> int:
    """CSV ``id,id_type``, one current member a row (any segment kind); formula-like
    cells neutralised (``csvsafe.write_csv``). The file is recorded in
    ``exported_files``, so erasure can reach the IDs it holds."""
    segment = require_segment(store, name)
    out = out.resolve()
    now = now or utcnow()
    store.con.execute("INSERT OR REPLACE INTO exported_files VALUES (?, ?)", [str(out), now])
    return write_csv(
        store.con,
        "SELECT id, id_type FROM segment_members WHERE segment_id = $segment AND expires_at > $now",
        {"segment": segment["segment_id"], "now": now},
        out,
        order_by=("id_type", "id"),
    )


def dump(store: Store, folder: Path) -> list[str]:
    """Every rule segment as one JSON file ({name, description, ttl_days, rule}), named
    by ``_file_name``; ``apply`` reads the name from the file, not from its name."""
    segments = list_segments(store, "rule")
    taken: dict[str, str] = {}
    for segment in segments:
        key = _file_name(segment["name"]).casefold()
        if key in taken:  # only if a plain name is another name's file name with its hash
            raise DmpError(
                f"segments {taken[key]!r} and {segment['name']!r} map to the same file name; "
                "rename one of them; nothing written"
            )
        taken[key] = segment["name"]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for segment in segments:
        path = folder / _file_name(segment["name"])
        body = {
            "name": segment["name"],
            "description": segment["description"],
            "ttl_days": segment["ttl_days"],
            "rule": segment["definition"],
        }
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        written.append(str(path))
    return written


def _file_name(name: str) -> str:
    """``NAME.json`` for a plain lower-case name; any other name keeps its readable
    part and adds a hash of the exact name, so that no two segments share a file (not
    ``a/b`` and ``a_b``, nor ``Auto`` and ``auto`` on a file system that ignores case)."""
    if _PLAIN_NAME.fullmatch(name):
        return f"{name}.json"
    readable = _UNSAFE.sub("_", name).strip("._-") or "segment"
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:10]}.json"


def apply(
    store: Store, config: Config, folder: Path, dry_run: bool = False, now: datetime | None = None
) -> list[dict]:
    """Create or update rule segments from ``dump`` files; with ``dry_run`` only the diff.

    Every file is validated before any is applied, so a bad file changes nothing.
    """
    ensure(store, config)
    bodies = [(path.name, *_read_definition(path)) for path in sorted(folder.glob("*.json"))]
    files: dict[str, str] = {}
    for file, name, _, _ in bodies:
        if name in files:
            raise DmpError(
                f"segment {name!r} is defined by two files: {files[name]} and {file}; "
                "remove one (nothing applied)"
            )
        files[name] = file
    batch = frozenset(files)
    plans = []
    for file, name, rule, body in bodies:
        try:
            compile_rule(store, config, rule, pending=batch)
        except RuleError as exc:
            raise RuleError(f"{file}: {exc}") from None
        change = _change(get_segment(store, name, "rule"), body)
        plans.append({"file": file, "name": name, "change": change, "body": body})
    plans = _referenced_first(plans)
    if not dry_run:
        now = now or utcnow()
        with store.transaction():
            for plan in (p for p in plans if p["change"] != "unchanged"):
                body = plan["body"]
                compiled = _validate(store, config, plan["name"], body["rule"])
                _store_and_fill(store, compiled, plan["name"], body["rule"],
                                body.get("description"), body.get("ttl_days"), now,
                                plan["change"] == "create")  # fmt: skip
    return [{k: v for k, v in plan.items() if k != "body"} for plan in plans]


def _read_definition(path: Path) -> tuple[str, Any, dict]:
    """(name, rule, body) of one ``dump`` file; a file that is not one says so."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(body["name"], str):
            raise TypeError("name is not text")
        return body["name"], body["rule"], body
    except (ValueError, KeyError, TypeError) as exc:
        raise DmpError(f"{path.name}: expected JSON with name and rule ({exc})") from None
    except RecursionError:
        raise DmpError(f"{path.name}: JSON nested too deeply to be a segment definition") from None


def _referenced_first(plans: list[dict]) -> list[dict]:
    """Segments a batch refers to are applied before the ones that refer to them."""
    by_name = {plan["name"]: plan for plan in plans}
    order = _dependency_order(
        {name: {"definition": p["body"]["rule"]} for name, p in by_name.items()}
    )
    return [by_name[name] for name in order]


def _change(current: dict | None, body: dict) -> str:
    if current is None:
        return "create"
    wanted = (body["rule"], body.get("description"), body.get("ttl_days", current["ttl_days"]))
    same = wanted == (current["definition"], current["description"], current["ttl_days"])
    return "unchanged" if same else "update"
