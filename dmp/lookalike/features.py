"""Model features: the consented interest profiles as a sparse device x category matrix.

Profiles already hold only usable devices (consented, not bots, not expired,
not opted out), so the eligible population of a lookalike is exactly the set
of devices with a profile. The pivot is done by DuckDB (dense row and column
numbers) and fetched in one go as three numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from dmp.config import Config
from dmp.interests.profiles import scores_sql

DEVICES = "lookalike_devices"  # temp table: id, id_type, row


@dataclass
class Features:
    """``matrix[row]`` is the device in temp table ``DEVICES`` with that row number."""

    matrix: sp.csr_matrix
    categories: list[str]
    kinds: np.ndarray  # per row: its ID type, as a small integer (types in sorted order)

    @property
    def devices(self) -> int:
        return self.matrix.shape[0]


@dataclass
class SeedRows:
    """Matched seed devices: ``rows`` of the matrix, their ID-graph ``keys`` and, when
    the list has a value column, their ``values``."""

    rows: np.ndarray
    keys: np.ndarray
    values: np.ndarray | None


def load_features(con: duckdb.DuckDBPyConnection, config: Config, now: datetime) -> Features:
    """Decayed interest scores as of ``now``, one row per eligible device (in a fixed
    order, so the same data trains the same model)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {DEVICES} AS
        SELECT id, id_type, (row_number() OVER (ORDER BY id_type, id) - 1)::INTEGER AS row
        FROM (SELECT DISTINCT id, id_type FROM profiles)
        """
    )
    categories = [
        r[0] for r in con.execute("SELECT DISTINCT category_id FROM profiles ORDER BY 1").fetchall()
    ]
    con.register("lookalike_categories", pa.table({"category_id": categories}))
    try:
        arrays = con.execute(
            f"""
            SELECT d.row, c.col, s.score::FLOAT AS score
            FROM ({scores_sql(config)}) s
            JOIN {DEVICES} d USING (id, id_type)
            JOIN (SELECT category_id, (row_number() OVER (ORDER BY category_id) - 1)::INTEGER
                         AS col FROM lookalike_categories) c USING (category_id)
            """,
            {"now": now},
        ).fetchnumpy()
    finally:
        con.unregister("lookalike_categories")
    kinds = con.execute(
        f"SELECT (dense_rank() OVER (ORDER BY id_type) - 1)::INTEGER AS kind FROM {DEVICES} "
        "ORDER BY row"
    ).fetchnumpy()["kind"]
    n = len(kinds)
    matrix = sp.csr_matrix(
        (np.asarray(arrays["score"]), (np.asarray(arrays["row"]), np.asarray(arrays["col"]))),
        shape=(n, len(categories)),
        dtype=np.float32,
    )
    return Features(matrix, categories, np.asarray(kinds, dtype=np.int64))


def seed_rows(con: duckdb.DuckDBPyConnection, seed_list_id: int) -> SeedRows:
    """A list's matched devices among the eligible ones: rows, group keys, values."""
    found = con.execute(
        f"""
        SELECT d.row, m.seed_key, m.value FROM seed_matches m
        JOIN {DEVICES} d ON d.id = m.id AND d.id_type = m.id_type
        WHERE m.seed_list_id = ? ORDER BY d.row
        """,
        [seed_list_id],
    ).fetchnumpy()
    values = np.ma.filled(np.ma.asarray(found["value"], dtype=np.float64), np.nan)
    return SeedRows(
        np.asarray(found["row"], dtype=np.int64),
        np.asarray(found["seed_key"], dtype=np.uint64),
        None if np.isnan(values).all() else np.nan_to_num(values, nan=0.0),
    )
