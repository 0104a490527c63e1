"""Page categorisation: events that arrive without IAB categories get them from rules.

Rules live in a TOML file (``interests.category_rules``; see
config/categories.toml): ordered, first match wins, each a set of matchers on
the domain, URL path and keywords. They are applied in SQL to the distinct
pages of uncategorised events, never row by row in Python.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import duckdb

from dmp.config import DEFAULTS_FILE, Config
from dmp.errors import DmpError
from dmp.interests.taxonomy import resolve_category
from dmp.store import Store

MATCHERS = ("domain", "path", "keyword")


def rules_path(config: Config) -> Path:
    """The configured file; a bare name not in DMP_HOME falls back to the shipped config/."""
    configured = Path(config.get("interests.category_rules")).expanduser()
    if configured.is_absolute():
        return configured
    in_home = config.home / configured
    return in_home if in_home.exists() else DEFAULTS_FILE.with_name(configured.name)


def load_rules(
    store: Store, config: Config
) -> list[tuple[int, str | None, str | None, str | None, str]]:
    """(priority, domain, path, keyword, category_id) per rule; a bad rule names its number."""
    path = rules_path(config)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DmpError(f"category rules {path}: {exc}") from None
    unknown_top = set(data) - {"rule"}
    if unknown_top:
        raise DmpError(f"category rules {path}: unknown key(s) {', '.join(sorted(unknown_top))}")
    rules = []
    for number, rule in enumerate(data.get("rule", []), start=1):
        where = f"category rules {path}, rule {number}"
        unknown = set(rule) - {*MATCHERS, "category"}
        if unknown:
            raise DmpError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if not any(rule.get(m) for m in MATCHERS):
            raise DmpError(f"{where}: needs at least one of {', '.join(MATCHERS)}")
        if not isinstance(rule.get("category"), str):
            raise DmpError(f"{where}: needs a category (an IAB Content Taxonomy 3.1 ID or name)")
        try:
            category = resolve_category(store, rule["category"])[0]
        except DmpError as exc:
            raise DmpError(f"{where}: {exc}") from None
        domain, url_path, keyword = (rule.get(m) for m in MATCHERS)
        rules.append(
            (number, domain and domain.lower(), url_path, keyword and keyword.lower(), category)
        )
    return rules


def categorise(store: Store, config: Config, events: str) -> dict:
    """Create temp table ``page_categories`` (domain, url, keywords -> category_id) for
    the uncategorised events in the table ``events``; returns match counts."""
    con = store.con
    _rules_table(con, load_rules(store, config))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE page_categories AS
        WITH pages AS (
            SELECT DISTINCT domain, url, keywords FROM {events}
            WHERE categories IS NULL AND (domain IS NOT NULL OR keywords IS NOT NULL)
        )
        SELECT p.domain, p.url, p.keywords, arg_min(r.category_id, r.priority) AS category_id
        FROM pages p JOIN category_rules r ON
            (r.domain IS NULL OR p.domain = r.domain OR ends_with(p.domain, '.' || r.domain))
            AND (r.path IS NULL OR starts_with(
                regexp_extract(p.url, '^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?(?://[^/?#]*)?([^?#]*)', 1),
                r.path))
            AND (r.keyword IS NULL OR contains(lower(p.keywords), r.keyword))
        GROUP BY ALL
        """
    )
    return {"pages_matched": con.execute("SELECT count(*) FROM page_categories").fetchone()[0]}


def _rules_table(con: duckdb.DuckDBPyConnection, rules: list[tuple]) -> None:
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE category_rules (
            priority INTEGER, domain VARCHAR, path VARCHAR, keyword VARCHAR, category_id VARCHAR)
        """
    )
    if rules:
        con.executemany("INSERT INTO category_rules VALUES (?, ?, ?, ?, ?)", rules)
