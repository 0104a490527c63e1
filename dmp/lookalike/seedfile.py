"""Read one uploaded seed file into a temp table of normalised IDs, in one SQL pass.

A seed file is CSV or plain text with one ID per row, a header line optional.
DuckDB streams the file (``read_csv`` over whole lines), so a 5 GB upload
never sits in Python's memory. Each row is checked and normalised in the same
SELECT that reads it: emails are trimmed, lower-cased and SHA-256 hashed
there, so no table, log or message ever holds a raw address; refused rows
keep only their line number and reason, never their text. (DuckDB's own
rejects table holds the text of lines it cannot decode for the length of one
upload, in memory; only their line numbers are read from it, and it is dropped.)

A file whose header is ``ID,value`` (any ID header, then ``value``) carries a
value per ID, a purchase amount that weights value-based lookalikes; every
valid ID then needs a number >= 0 there.

Whole-file problems (missing, empty, a spreadsheet or UTF-16 big-endian file,
nothing valid, the wrong ID type, a value column with text or negative
numbers) raise :class:`DmpError` before anything is stored.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dmp.csvsafe import starts_like_formula
from dmp.errors import DmpError
from dmp.ingest.validate import EMAIL, ZERO_MAID, cookie_sql, maid_sql
from dmp.store import sql_string

ID_TYPES = ("maid", "cookie", "hem", "email")
MAX_REPORTED_LINES = 1000
MAX_EMAIL_LENGTH = 254
REJECTS, REJECTS_SCAN = "seed_reject_errors", "seed_reject_scans"
_SNIFF_BYTES = 1 << 16

# First-line values taken as a header naming the column rather than an ID.
HEADERS = (
    "id", "ids", "uid", "user_id", "userid", "cookie", "cookies", "cookie_id", "cookieid",
    "maid", "maids", "idfa", "gaid", "aaid", "ifa", "adid", "advertising_id", "device_id",
    "deviceid", "mobile_id", "hem", "hash", "sha256", "email_sha256", "hashed_email",
    "email", "emails", "email_address", "e-mail", "mail",
)  # fmt: skip
_HEX64 = "[0-9a-fA-F]{64}"
_UUID = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_UUID_HYPHENS = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_FORMULA = "formula-like cell (starts with =, +, - or @): refused"
_CONTROL = "control characters in the line (binary data, or UTF-16 without a BOM?)"
_SEVERAL = "several values on one line (expected one ID per row)"
_NOT_UTF8 = "not UTF-8 text (save the file as UTF-8)"


@dataclass
class SeedFile:
    """The temp table ``table`` (id, id_type) of distinct valid IDs, and what was refused."""

    table: str
    rows: int = 0
    valid: int = 0
    ids: int = 0
    invalid_reasons: dict[str, int] = field(default_factory=dict)
    invalid_lines: list[dict] = field(default_factory=list)  # {line, reason}; no values
    value_column: bool = False

    @property
    def invalid(self) -> int:
        return sum(self.invalid_reasons.values())

    @property
    def duplicates(self) -> int:
        return self.valid - self.ids


def read_seed_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    id_type: str,
    max_id_length: int = 256,
    table: str = "seed_upload",
) -> SeedFile:
    """Parse ``path`` as ``id_type`` IDs into temp table ``table``; see the module notes."""
    if id_type not in ID_TYPES:
        raise DmpError(f"unknown seed ID type {id_type!r}; expected one of {', '.join(ID_TYPES)}")
    path = Path(path)
    encoding, compression, line_end, value_column = _sniff(path)
    try:
        _stage(con, path, id_type, (encoding, compression, line_end), max_id_length, value_column)
        result = _summarise(con, path, id_type, table, value_column)
    finally:
        con.execute(
            f"DROP TABLE IF EXISTS seed_stage; DROP TABLE IF EXISTS seed_refused; "
            f"DROP TABLE IF EXISTS {REJECTS}; DROP TABLE IF EXISTS {REJECTS_SCAN}"
        )
    return result


def _sniff(path: Path) -> tuple[str, str, str, bool]:
    """(encoding, compression, line end, has a value column) from the first bytes;
    unusable files are refused."""
    if not path.is_file():
        raise DmpError(f"{path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    name = path.name
    if not head:
        raise DmpError(f"{name}: empty file; nothing stored")
    encoding, compression = "utf-8", "none"
    if head.startswith(b"\x1f\x8b"):
        compression = "gzip"
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(_SNIFF_BYTES)
        except (OSError, EOFError) as exc:
            raise DmpError(f"{name}: broken gzip ({exc})") from None
        if not head:
            raise DmpError(f"{name}: empty file; nothing stored")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise DmpError(f"{name}: a spreadsheet workbook, not text; export it as CSV (UTF-8)")
    if head.startswith(b"\xfe\xff"):
        raise DmpError(f"{name}: UTF-16 big-endian text; save the file as UTF-8")
    if head.startswith(b"\xff\xfe"):
        encoding = "utf-16"
    # DuckDB detects \n and \r\n line ends itself (forcing either misreads the
    # other in parallel); only lone-\r files (classic Mac) must say so.
    lone_cr = b"\r" in head and b"\n" not in head
    line_end = "new_line = '\\r', " if lone_cr else ""
    first = head.decode(encoding, errors="replace").lstrip("\ufeff").splitlines()[:1]
    cells = [c.strip(" \"'").lower() for c in re.split("[,;\t]", first[0])] if first else []
    return encoding, compression, line_end, len(cells) == 2 and cells[1] == "value"


def _stage(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    id_type: str,
    reading: tuple[str, str, str],
    max_id_length: int,
    value_column: bool = False,
) -> None:
    """One pass over the file: per line, the normalised ID or why it was refused.

    ``pos`` numbers the lines the reader accepted, in file order: one reader
    thread feeds ``row_number()`` (a table's rowid is not a file position: a
    parallel CREATE TABLE AS may store rows out of order).
    """
    encoding, compression, line_end = reading
    con.execute(f"DROP TABLE IF EXISTS {REJECTS}; DROP TABLE IF EXISTS {REJECTS_SCAN}")
    reason, looks_like, normal = _checks(id_type, max_id_length, value_column)
    amount = (
        "trim(regexp_extract(line_text, '^[^,;\\t]*[,;\\t]([^,;\\t]*)', 1), "
        "chr(32) || chr(34) || chr(39))"
        if value_column
        else "NULL"
    )
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE seed_stage AS
            WITH lines AS (
                -- Trimming copies the string: only lines that need it pay (BOM 65279).
                SELECT CASE WHEN raw IS NULL THEN ''
                            WHEN ord(raw) <= 32 OR ord(raw) = 65279 OR ord(raw[-1]) <= 32
                            THEN trim(replace(raw, chr(65279), ''), ' ' || chr(9) || chr(13))
                            ELSE raw END AS line_text,
                       row_number() OVER () AS pos
                FROM read_csv($path, header = false, auto_detect = false, delim = chr(31),
                              quote = '', escape = '', columns = {{'raw': 'VARCHAR'}},
                              encoding = $encoding, compression = $compression,
                              {line_end}parallel = false, strict_mode = false, store_rejects = true,
                              rejects_table = '{REJECTS}', rejects_scan = '{REJECTS_SCAN}')
            ),
            split AS (
                SELECT pos, line_text, contains(line_text, ',') OR contains(line_text, ';')
                                  OR contains(line_text, chr(9)) AS split FROM lines
            ),
            cells AS (
                SELECT pos, line_text, split,
                       CASE WHEN split THEN trim(regexp_extract(line_text, '^[^,;\\t]*'), ' "''')
                            WHEN line_text[1] IN ('"', '''') OR line_text[-1] IN ('"', '''')
                            THEN trim(line_text, ' "''') ELSE line_text END AS value,
                       CASE WHEN split THEN len(list_filter(
                                regexp_split_to_array(line_text, '[,;\\t]'),
                                lambda c: trim(c, ' "''') <> ''))
                            ELSE 1 END AS cells,
                       {amount} AS amount
                FROM split
            ),
            checked AS (
                SELECT pos, line_text = '' AS blank,
                       lower(value) IN ({", ".join(f"'{h}'" for h in HEADERS)}) AS known_header,
                       regexp_full_match(value, '[A-Za-z][A-Za-z0-9 _.-]*') AS word_like,
                       {reason} AS first_reason, line_text, value, amount
                FROM cells
            ),
            -- Control characters (UTF-16 without its BOM, binary data) are looked
            -- for only in refused lines, to name the real cause.
            named AS (
                SELECT * EXCLUDE (first_reason), CASE
                    WHEN first_reason IS NOT NULL AND regexp_matches(
                        line_text, '[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]') THEN '{_CONTROL}'
                    ELSE first_reason END AS reason
                FROM checked
            )
            SELECT pos, blank, known_header, word_like, reason, {looks_like} AS looks_like,
                   CASE WHEN reason IS NULL THEN {normal} END AS id, amount
            FROM named
            """,
            {"path": str(path), "encoding": encoding, "compression": compression},
        )
    except duckdb.Error as exc:
        reason = str(exc).split("\n", 1)[0]
        raise DmpError(f"{path.name}: cannot be read as a text file of IDs ({reason})") from None


def _checks(id_type: str, max_length: int, value_column: bool = False) -> tuple[str, str, str]:
    """SQL for the ``reason``, ``looks_like`` and ``id`` of one cell ``value``.

    ``reason`` is the first failed check (NULL when valid; ``line_text`` is the
    whole line), ``looks_like`` the ID type a refused value seems to be
    instead (read from its reason), ``id`` the normalised (emails: hashed) value.
    """
    email = f"regexp_full_match(value, '{EMAIL}')"
    hex64 = f"regexp_full_match(value, '{_HEX64}')"
    uuid = f"regexp_full_match(value, '{_UUID}')"
    hint = "upload it with --id-type"
    limit = max_length
    if id_type == "email":
        limit, normal = MAX_EMAIL_LENGTH, "sha256(lower(value))"
        specific = [
            (hex64, f"a SHA-256 hash, not an email address: {hint} hem", "hem"),
            (uuid, f"a MAID, not an email address: {hint} maid", "maid"),
            (f"NOT {email}", "not a valid email address", None),
        ]
    elif id_type == "hem":
        limit, normal = 64, "lower(value)"
        specific = [
            (email, f"an email address, not its SHA-256 hash: {hint} email", "email"),
            (
                f"regexp_full_match(value, '{_UUID_HYPHENS}')",
                f"a MAID, not a hashed email: {hint} maid",
                "maid",
            ),
            (
                "regexp_full_match(value, '[0-9a-fA-F]{32}|[0-9a-fA-F]{40}')",
                "an MD5 or SHA-1 hash; a hashed email is the SHA-256 of the trimmed, "
                "lower-cased address",
                None,
            ),
            (f"NOT {hex64}", "not a SHA-256 hex digest (64 hex digits)", None),
        ]
    elif id_type == "maid":
        normal = maid_sql("value")
        specific = [
            (email, f"an email address, not a MAID: {hint} email", "email"),
            (hex64, f"a SHA-256 hash, not a MAID: {hint} hem", "hem"),
            (f"{normal} IS NULL", "not a valid MAID (expected a UUID)", None),
            (f"{normal} = '{ZERO_MAID}'", "all-zero MAID (limited ad tracking)", None),
        ]
    else:
        normal = cookie_sql("value")
        specific = [
            (email, f"an email address, not a cookie ID: {hint} email", "email"),
            (f"{normal} IS NULL", "not a valid cookie ID (printable ASCII, no spaces)", None),
        ]
    # In a value column a "-5" is a negative amount, reported as such, not a formula.
    formula = starts_like_formula("value")
    if not value_column:
        formula += " OR (split AND regexp_matches(line_text, '[,;\\t]\\s*[\"'']?[=+\\-@]'))"
    rules = [
        (formula, _FORMULA, None),
        (f"cells > {2 if value_column else 1}", _SEVERAL, None),
        (f"length(value) > {limit}", f"longer than {limit} characters", None),
        *specific,
    ]
    reason = "CASE " + " ".join(f"WHEN {c} THEN {sql_string(why)}" for c, why, _ in rules) + " END"
    looks = " ".join(
        f"WHEN {sql_string(why)} THEN {sql_string(like)}" for _, why, like in rules if like
    )
    return reason, f"CASE reason {looks} END", normal


def _summarise(
    con: duckdb.DuckDBPyConnection, path: Path, id_type: str, table: str, value_column: bool
) -> SeedFile:
    """Line numbers, the header, counts; refuses files with nothing usable in them."""
    # Lines the reader refused (bad encoding, too long) are missing from the
    # staged rows, which shifts the rest: pos + refused lines before it.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE seed_refused AS
        SELECT line, line - row_number() OVER (ORDER BY line) AS before_row,
               CASE any_value(error_type) WHEN 'INVALID ENCODING' THEN '{_NOT_UTF8}'
                    WHEN 'LINE SIZE OVER MAXIMUM' THEN 'line too long'
                    ELSE 'unreadable line' END AS reason
        FROM {REJECTS} GROUP BY line
        """
    )
    # A first line naming the column ("email", "MAID", "Device ID") is a header;
    # it is marked blank.
    first = con.execute(
        "SELECT known_header, word_like, reason, looks_like FROM seed_stage WHERE pos = 1"
    ).fetchone()
    line_one = not con.execute("SELECT count(*) FROM seed_refused WHERE line = 1").fetchone()[0]
    if first and line_one and (first[0] or (first[1] and first[2] and first[3] is None)):
        con.execute("UPDATE seed_stage SET blank = true WHERE pos = 1")
    kept = "NOT blank"
    refused = con.execute("SELECT count(*) FROM seed_refused").fetchone()[0]
    rows, valid = con.execute(f"SELECT count(*), count(id) FROM seed_stage WHERE {kept}").fetchone()
    rows += refused
    name = path.name
    if rows == 0:
        raise DmpError(f"{name}: no IDs in the file (empty, or a header only); nothing stored")
    reasons = dict(
        con.execute(
            f"""
            SELECT reason, count(*) FROM (
                SELECT reason FROM seed_stage WHERE {kept} AND reason IS NOT NULL
                UNION ALL SELECT reason FROM seed_refused)
            GROUP BY reason ORDER BY count(*) DESC, reason
            """
        ).fetchall()
    )
    wrong = con.execute(
        f"SELECT looks_like, count(*) FROM seed_stage WHERE {kept} AND looks_like IS NOT NULL "
        "GROUP BY looks_like ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    if wrong and wrong[1] * 2 > rows:
        raise DmpError(
            f"{name}: {wrong[1]:,} of {rows:,} rows look like {wrong[0]} IDs, not {id_type}; "
            f"upload it with --id-type {wrong[0]}. Nothing stored"
        )
    if valid == 0:
        top = "; ".join(f"{why} ({n:,})" for why, n in list(reasons.items())[:3])
        raise DmpError(f"{name}: no valid {id_type} IDs in {rows:,} rows: {top}. Nothing stored")
    lines = con.execute(
        f"""
        SELECT * FROM (
            SELECT pos + (SELECT count(*) FROM seed_refused r WHERE r.before_row < s.pos)
                       AS line, reason
            FROM (SELECT pos, reason FROM seed_stage WHERE {kept} AND reason IS NOT NULL
                  ORDER BY pos LIMIT $limit) s
            UNION ALL SELECT line, reason FROM seed_refused)
        ORDER BY line LIMIT $limit
        """,
        {"limit": MAX_REPORTED_LINES},
    ).fetchall()
    if value_column:
        _check_values(con, name, kept)
    stored_type = "hem" if id_type == "email" else id_type
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT id, '{stored_type}' AS id_type, max(TRY_CAST(amount AS DOUBLE)) AS value
        FROM seed_stage WHERE {kept} AND id IS NOT NULL GROUP BY id
        """
    )
    ids = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return SeedFile(
        table=table,
        rows=rows,
        valid=valid,
        ids=ids,
        invalid_reasons=reasons,
        invalid_lines=[{"line": line, "reason": why} for line, why in lines],
        value_column=value_column,
    )


def _check_values(con: duckdb.DuckDBPyConnection, name: str, kept: str) -> None:
    """Every valid ID's value must be a number >= 0; else the whole file is refused,
    with how many are wrong and the first lines (a guessed weight is worse than none)."""
    line = "pos + (SELECT count(*) FROM seed_refused r WHERE r.before_row < s.pos)"
    problems = con.execute(
        f"""
        WITH v AS (
            SELECT pos, TRY_CAST(amount AS DOUBLE) AS number FROM seed_stage
            WHERE {kept} AND id IS NOT NULL
        ), s AS (
            SELECT pos, CASE WHEN number IS NULL OR isnan(number) OR isinf(number)
                             THEN 'not a number' WHEN number < 0 THEN 'negative' END AS problem
            FROM v
        )
        SELECT problem, count(*), list({line} ORDER BY pos)[1:3]
        FROM s WHERE problem IS NOT NULL GROUP BY problem ORDER BY problem
        """
    ).fetchall()
    if problems:
        said = "; ".join(
            f"{count:,} {problem} (line{'s' if len(lines) > 1 else ''} "
            f"{', '.join(str(n) for n in lines)}{', ...' if count > len(lines) else ''})"
            for problem, count, lines in problems
        )
        raise DmpError(
            f"{name}: value column: {said}; a value is a purchase amount, a number >= 0. "
            "Nothing stored"
        )
