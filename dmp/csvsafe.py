"""CSV that is safe to open in a spreadsheet (CSV, or formula, injection).

A spreadsheet program reads a cell that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return as a formula, which can run commands or leak data
(OWASP, "CSV Injection"). One rule, used both ways: ingest refuses IDs that
start like a formula (``starts_like_formula``), and every CSV file dmp writes
for people or partners goes through ``write_csv``, which neutralises any such
cell that is already stored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb

from dmp.store import sql_identifier, sql_string

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def starts_like_formula(col: str) -> str:
    """SQL: true when the text ``col`` starts with a character of ``FORMULA_LEADS``."""
    leads = ", ".join(f"chr({ord(c)})" for c in FORMULA_LEADS)
    return f"left({col}, 1) IN ({leads})"


def neutralise(col: str) -> str:
    """SQL: the text ``col``, with a single quote in front when it starts like a formula
    (the OWASP rule: the spreadsheet then shows the text and runs nothing)."""
    return f"CASE WHEN {starts_like_formula(col)} THEN '''' || {col} ELSE {col} END"


def write_csv(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: dict[str, Any],
    path: Path,
    order_by: tuple[str, ...] = (),
) -> int:
    """Write the rows of ``sql`` to ``path`` as CSV with a header; returns the row count.

    DuckDB streams the rows straight from the query (``COPY``). Text columns are
    neutralised and always quoted, so a neutralised cell stays one text cell; other
    columns are written as they are (a number holds no formula, and a negative
    number stays a number). Rows are sorted by the ``order_by`` columns here, not
    in ``sql``: the order of a subquery is not kept. The file is written beside
    ``path`` and then renamed, so a reader never sees half a file.
    """
    relation = con.sql(sql, params=params)
    columns = zip(relation.columns, relation.types, strict=True)
    text = [sql_identifier(name) for name, kind in columns if kind == "VARCHAR"]
    safe = ", ".join(f"{neutralise(col)} AS {col}" for col in text)
    select = f"SELECT * REPLACE ({safe}) FROM ({sql})" if text else f"SELECT * FROM ({sql})"
    if order_by:
        select += " ORDER BY " + ", ".join(sql_identifier(name) for name in order_by)
    options = "FORMAT csv, HEADER" + (f", FORCE_QUOTE ({', '.join(text)})" if text else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    target = sql_string(str(partial))
    rows = con.execute(f"COPY ({select}) TO {target} ({options})", params).fetchone()[0]
    os.replace(partial, path)
    return rows
