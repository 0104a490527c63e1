"""Lists of IDs given by people (opt-outs, deletions, partner matches): parsed and checked.

The same normalisation as ingest (``validate.maid_sql``/``cookie_lookup_sql``), so
an ID typed on the command line finds the row a log file stored. A line that is
not a usable ID is reported with its line number; the valid ones still apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dmp.errors import DmpError
from dmp.ingest.validate import ZERO_MAID, cookie_lookup_sql, maid_sql

ID_TYPES = ("cookie", "maid", "hem")
_UUID_LIKE = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"


@dataclass
class IdList:
    """The temp table ``table`` (line, id, id_type) of valid IDs, and what was refused."""

    table: str
    given: int = 0
    valid: int = 0
    invalid: list[dict] = field(default_factory=list)  # {line, value, reason}


def load_ids(
    con: duckdb.DuckDBPyConnection,
    values: list[str] | None = None,
    path: Path | None = None,
    id_type: str | None = None,
    table: str = "given_ids",
) -> IdList:
    """Parse IDs from arguments or a file (one a line, optionally ``id,id_type``).

    Without ``id_type`` each value's type is inferred: 64 hex digits are a
    hashed email, a UUID is a MAID, anything else printable is a cookie.
    """
    if id_type is not None and id_type not in ID_TYPES:
        raise DmpError(f"unknown ID type {id_type!r}; expected one of {', '.join(ID_TYPES)}")
    read_lines(con, values, path)
    forced = "NULL" if id_type is None else f"'{id_type}'"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE parsed_ids AS
        WITH split AS (
            SELECT line, raw,
                   nullif(trim(split_part(raw, ',', 1)), '') AS value,
                   coalesce({forced}, nullif(lower(trim(split_part(raw, ',', 2))), '')) AS hint
            FROM raw_lines WHERE trim(raw) <> ''
        ),
        typed AS (
            SELECT *, CASE
                WHEN hint IS NOT NULL THEN CASE WHEN hint IN ('idfa', 'gaid', 'aaid') THEN 'maid'
                                                ELSE hint END
                WHEN regexp_full_match(value, '[0-9a-fA-F]{{64}}') THEN 'hem'
                WHEN regexp_full_match(value, '{_UUID_LIKE}') THEN 'maid'
                ELSE 'cookie' END AS id_type
            FROM split
        )
        SELECT line, raw, id_type, CASE id_type
                WHEN 'maid' THEN {maid_sql("value")}
                WHEN 'cookie' THEN {cookie_lookup_sql("value")}
                WHEN 'hem' THEN CASE WHEN regexp_full_match(value, '[0-9a-fA-F]{{64}}')
                                     THEN lower(value) END
            END AS id
        FROM typed
        """
    )
    invalid = con.execute(
        f"""
        SELECT line, raw, CASE
            WHEN id_type NOT IN ('cookie', 'maid', 'hem') THEN 'unknown ID type ' || id_type
            WHEN id = '{ZERO_MAID}' THEN 'all-zero MAID (limited ad tracking)'
            WHEN id IS NULL THEN 'not a valid ' || id_type END
        FROM parsed_ids
        WHERE id IS NULL OR id = '{ZERO_MAID}' OR id_type NOT IN ('cookie', 'maid', 'hem')
        ORDER BY line
        """
    ).fetchall()
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT min(line) AS line, id, id_type FROM parsed_ids
        WHERE id IS NOT NULL AND id <> '{ZERO_MAID}' AND id_type IN ('cookie', 'maid', 'hem')
        GROUP BY id, id_type
        """
    )
    given = con.execute("SELECT count(*) FROM parsed_ids").fetchone()[0]
    valid = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    con.execute("DROP TABLE parsed_ids; DROP TABLE raw_lines")
    return IdList(
        table=table,
        given=given,
        valid=valid,
        invalid=[{"line": line, "value": raw, "reason": reason} for line, raw, reason in invalid],
    )


def read_lines(con: duckdb.DuckDBPyConnection, values: list[str] | None, path: Path | None):
    """One row per line with its number; a header line naming the columns is skipped.

    One reader thread, so ``row_number()`` follows the file (with parallel
    reading its order is not guaranteed); ID lists are small.
    """
    if path is not None:
        if not path.is_file():
            raise DmpError(f"{path}: no such file")
        try:
            con.execute(
                """
                CREATE OR REPLACE TEMP TABLE raw_lines AS
                SELECT row_number() OVER () AS line, raw FROM read_csv(
                    ?, header = false, auto_detect = false, delim = chr(31), quote = '',
                    escape = '', columns = {'raw': 'VARCHAR'}, parallel = false)
                """,
                [str(path)],
            )
        except duckdb.Error as exc:
            reason = str(exc).split("\n", 1)[0]
            raise DmpError(f"{path}: cannot be read as a text file of IDs ({reason})") from None
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE raw_lines (line BIGINT, raw VARCHAR)")
        con.executemany(
            "INSERT INTO raw_lines VALUES (?, ?)",
            [[i, v] for i, v in enumerate(values or [], start=1)],
        )
    con.execute(
        """
        DELETE FROM raw_lines WHERE line = 1
          AND lower(trim(split_part(raw, ',', 1))) IN ('id', 'cookie_id', 'maid', 'hem', 'email')
        """
    )
