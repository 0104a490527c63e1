"""The IAB Tech Lab taxonomies, shipped in ``dmp/data/iab/`` and loaded into ``taxonomy``.

Content Taxonomy 3.1 says what a page is about (the ``category`` IDs of
events and profiles); Audience Taxonomy 1.1 says how a segment is named.
Both are CC BY 3.0: "IAB Tech Lab Audience Taxonomy 1.1 and Content Taxonomy
3.1, (c) IAB Technology Laboratory, Inc., licensed under CC BY 3.0".
"""

from __future__ import annotations

import csv
from importlib import resources

import pyarrow as pa

from dmp.config import Config
from dmp.errors import DmpError
from dmp.store import Store

ATTRIBUTION = (
    "IAB Tech Lab Audience Taxonomy 1.1 and Content Taxonomy 3.1, "
    "(c) IAB Technology Laboratory, Inc., licensed under CC BY 3.0"
)


def _rows(filename: str, skip: int, id_col: int, parent_col: int, tiers: slice) -> list[tuple]:
    """(id, parent_id, name, path, depth) from one of the shipped TSV files."""
    text = resources.files("dmp.data.iab").joinpath(filename).read_text(encoding="utf-8")
    rows = []
    for record in list(csv.reader(text.splitlines(), delimiter="\t"))[skip:]:
        if len(record) <= id_col or not record[id_col].strip():
            continue
        names = [t.strip().rstrip("*").strip() for t in record[tiers] if t.strip()]
        rows.append(
            (
                record[id_col].strip(),
                record[parent_col].strip() or None,
                names[-1],
                " | ".join(names),
                len(names),
            )
        )
    return rows


def install(store: Store, config: Config) -> int:
    """Fill ``taxonomy`` from the shipped files (idempotent); returns the node count.

    Runs again when the sensitive-branch settings change, so the flags always
    follow config.
    """
    content = _rows("content_taxonomy_3.1.tsv", 2, 0, 1, slice(3, 7))
    audience = _rows("audience_taxonomy_1.1.tsv", 1, 1, 2, slice(4, 10))
    columns = ("taxonomy", "id", "parent_id", "name", "path", "depth")
    nodes = pa.Table.from_pylist(
        [
            dict(zip(columns, (kind, *row), strict=True))
            for kind, rows in (("content", content), ("audience", audience))
            for row in rows
        ]
    )
    con = store.con
    with store.transaction():
        con.execute("DELETE FROM taxonomy")
        con.register("taxonomy_nodes", nodes)
        con.execute("INSERT INTO taxonomy SELECT *, false FROM taxonomy_nodes")
        con.unregister("taxonomy_nodes")
        _flag_sensitive(store, config)
    return len(content) + len(audience)


def ensure(store: Store, config: Config) -> None:
    """Install the taxonomies on first use."""
    if store.con.execute("SELECT count(*) FROM taxonomy").fetchone()[0] == 0:
        install(store, config)


def _flag_sensitive(store: Store, config: Config) -> None:
    con = store.con
    con.execute(
        """
        UPDATE taxonomy SET sensitive = true WHERE taxonomy = 'content' AND id IN (
            WITH RECURSIVE tree(id) AS (
                SELECT id FROM taxonomy
                WHERE taxonomy = 'content' AND list_contains($roots, id)
                UNION
                SELECT t.id FROM taxonomy t JOIN tree ON t.parent_id = tree.id
                WHERE t.taxonomy = 'content')
            SELECT id FROM tree)
        """,
        {"roots": config.get("interests.sensitive_content")},
    )
    con.execute(
        """
        UPDATE taxonomy SET sensitive = true WHERE taxonomy = 'audience'
          AND len(list_filter($words, lambda w: contains(path, w))) > 0
        """,
        {"words": config.get("interests.sensitive_audience")},
    )


def _node_id(store: Store, taxonomy: str, key: str) -> str:
    row = store.con.execute(
        """
        SELECT id FROM taxonomy WHERE taxonomy = $taxonomy
          AND (id = $key OR lower(name) = lower($key) OR lower(path) = lower($key))
        ORDER BY id <> $key, depth LIMIT 1
        """,
        {"taxonomy": taxonomy, "key": key},
    ).fetchone()
    if row is None:
        raise DmpError(f"no {taxonomy} category {key!r} (give an ID, a name or a path)")
    return row[0]


def descendants_sql() -> str:
    """A SELECT of the content category ``$category`` (an ID or an exact name, any
    case) and every category below it."""
    return """
        WITH RECURSIVE tree(id) AS (
            SELECT id FROM taxonomy WHERE taxonomy = 'content'
              AND (id = $category OR lower(name) = lower($category)
                   OR lower(path) = lower($category))
            UNION
            SELECT t.id FROM taxonomy t JOIN tree ON t.parent_id = tree.id
            WHERE t.taxonomy = 'content')
        SELECT id FROM tree
    """


def resolve_category(store: Store, category: str) -> list[str]:
    """The content IDs a rule's ``category`` means; an unknown one is an error."""
    ids = [r[0] for r in store.con.execute(descendants_sql(), {"category": category}).fetchall()]
    if not ids:
        raise DmpError(f"unknown content category {category!r}")
    return ids


def browse(store: Store, taxonomy: str = "content", parent: str | None = None) -> list[dict]:
    """Children of ``parent`` (an ID, name or path; top level when None), with how many
    devices hold each branch in their profile."""
    if parent is not None:
        parent = _node_id(store, taxonomy, parent)
    rows = store.con.execute(
        """
        SELECT t.id, t.name, t.path, t.sensitive,
               (SELECT count(*) FROM taxonomy c
                WHERE c.taxonomy = t.taxonomy AND c.parent_id = t.id) AS children,
               (SELECT count(DISTINCT (p.id_type, p.id)) FROM profiles p
                WHERE $taxonomy = 'content' AND p.category_id IN (
                    WITH RECURSIVE tree(id) AS (
                        SELECT t.id UNION
                        SELECT c.id FROM taxonomy c JOIN tree ON c.parent_id = tree.id
                        WHERE c.taxonomy = 'content')
                    SELECT id FROM tree)) AS devices
        FROM taxonomy t
        WHERE t.taxonomy = $taxonomy AND t.parent_id IS NOT DISTINCT FROM $parent
        ORDER BY t.name
        """,
        {"taxonomy": taxonomy, "parent": parent},
    ).fetchall()
    keys = ("id", "name", "path", "sensitive", "children", "devices")
    return [dict(zip(keys, row, strict=True)) for row in rows]
