"""The ID graph: which cookies, MAIDs and hashed emails belong together.

``id_links`` holds pairs seen on one event; their connected components are
device groups. Components come from label propagation in SQL: every ID takes
the smallest label among itself and its neighbours until nothing changes,
which for the star-shaped graphs of real devices takes a handful of rounds.
"""

from __future__ import annotations

import duckdb

from dmp.errors import DmpError
from dmp.store import Store

MAX_ROUNDS = 100


def build_groups(store: Store) -> dict:
    """Rebuild ``id_groups`` from ``id_links``; returns groups, IDs and rounds taken."""
    con = store.con
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE graph_nodes AS
        SELECT id, id_type, row_number() OVER (ORDER BY id_type, id) AS node FROM (
            SELECT id, id_type FROM id_links
            UNION SELECT linked_id, linked_type FROM id_links)
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE graph_edges AS
        SELECT a.node AS src, b.node AS dst FROM id_links l
        JOIN graph_nodes a ON a.id = l.id AND a.id_type = l.id_type
        JOIN graph_nodes b ON b.id = l.linked_id AND b.id_type = l.linked_type
        """
    )
    con.execute("INSERT INTO graph_edges SELECT dst, src FROM graph_edges")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE graph_labels AS SELECT node, node AS label FROM graph_nodes"
    )
    rounds = _propagate(con)
    with store.transaction():
        con.execute("DELETE FROM id_groups")
        con.execute(
            """
            INSERT INTO id_groups
            SELECT n.id, n.id_type, l.label FROM graph_nodes n JOIN graph_labels l USING (node)
            """
        )
    ids, groups = con.execute("SELECT count(*), count(DISTINCT group_id) FROM id_groups").fetchone()
    con.execute("DROP TABLE graph_nodes; DROP TABLE graph_edges; DROP TABLE graph_labels")
    return {"ids": ids, "groups": groups, "rounds": rounds}


def _propagate(con: duckdb.DuckDBPyConnection) -> int:
    for rounds in range(1, MAX_ROUNDS + 1):
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE graph_next AS
            SELECT l.node, least(l.label, min(n.label)) AS label
            FROM graph_labels l
            JOIN graph_edges e ON e.src = l.node
            JOIN graph_labels n ON n.node = e.dst
            GROUP BY l.node, l.label
            """
        )
        changed = con.execute(
            """
            SELECT count(*) FROM graph_next x JOIN graph_labels l USING (node)
            WHERE x.label < l.label
            """
        ).fetchone()[0]
        con.execute("DROP TABLE graph_labels")
        con.execute("ALTER TABLE graph_next RENAME TO graph_labels")
        if changed == 0:
            return rounds
    raise DmpError(f"ID graph did not settle in {MAX_ROUNDS} rounds; check id_links for chains")


def linked_ids(store: Store, id_: str, id_type: str) -> list[tuple[str, str]]:
    """Every other ID in the same group as (id, id_type)."""
    return store.con.execute(
        """
        SELECT m.id_type, m.id FROM id_groups g
        JOIN id_groups m ON m.group_id = g.group_id
        WHERE g.id = $id AND g.id_type = $type AND NOT (m.id = $id AND m.id_type = $type)
        ORDER BY 1, 2
        """,
        {"id": id_, "type": id_type},
    ).fetchall()
