"""Turn one log file into a SQL relation of canonical text columns.

Every format ends up as the same shape: one VARCHAR column per canonical
field (NULL when the file lacks it), the file's own columns as ``f0..fN`` (to
rebuild a bad record's text and find its line), and the flags ``malformed``,
``conflict`` (a record that gives one field two different values) and ``blank``.
Whole-file problems (broken gzip, not UTF-8, a header without the required
columns) raise :class:`RejectedFile` before anything is loaded.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import hashlib
import json
import re
import shutil
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dmp.errors import DmpError, RejectedFile
from dmp.store import sql_identifier, sql_string

CANONICAL = (
    "ts",
    "id",
    "id_type",
    "url",
    "event",
    "category",
    "keywords",
    "country",
    "consent",
    "gpc",
    "hem",
    "maid",
    "cookie",
)
REQUIRED = ("ts", "id", "id_type")
# Other names of a canonical column in logs and tags (the collector takes them too).
ALIASES = {"gdpr_consent": "consent"}
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
_EMAIL = re.compile(r"[^\s@'\"]+@[^\s@'\"]+\.[^\s@'\"]+")
REJECTS_TABLE = "ingest_reject_errors"
REJECTS_SCAN_TABLE = "ingest_reject_scans"
_CHUNK = 1 << 20
LINE_MARGIN = 64
# A format whose reader refuses malformed records itself flags none of its records.
_NO_FLAGS = "false AS malformed, false AS conflict, false AS blank"
KEY_SCAN_LINE_FACTOR = 16  # JSON Lines keys are read from lines up to 16 x max_line (>= 1 MB)


@dataclass(frozen=True)
class Layout:
    """How a file's columns map to canonical ones (see ``[layouts]`` in config)."""

    name: str | None = None
    match: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)

    def canonical_name(self, header: str) -> str | None:
        """The canonical column a file header feeds, if any (in any case, or an alias
        such as ``gdpr_consent``, the TCF string's name in IAB's URL macros)."""
        if header in self.columns:
            return self.columns[header]
        lowered = header.strip().lower()
        lowered = ALIASES.get(lowered, lowered)
        return lowered if lowered in CANONICAL and lowered not in self.columns.values() else None


def layouts_from_config(section: Mapping[str, Mapping]) -> dict[str, Layout]:
    """Validate the ``[layouts.*]`` tables; a bad one names its key."""
    layouts = {}
    for name, spec in section.items():
        where = f"config [layouts.{name}]"
        unknown = set(spec) - {"match", "columns", "constants"}
        if unknown:
            raise DmpError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        columns, constants = dict(spec.get("columns", {})), dict(spec.get("constants", {}))
        for target in [*columns.values(), *constants]:
            if target not in CANONICAL:
                raise DmpError(
                    f"{where}: {target!r} is not a canonical column ({', '.join(CANONICAL)})"
                )
        layouts[name] = Layout(name, spec.get("match"), columns, constants)
    return layouts


def layout_for(path: Path, layouts: Mapping[str, Layout], name: str | None) -> Layout:
    """The layout named on the command line, else the first whose glob matches, else default."""
    if name:
        if name not in layouts:
            raise DmpError(f"unknown layout {name!r}; configured: {', '.join(layouts) or 'none'}")
        return layouts[name]
    for layout in layouts.values():
        if layout.match and fnmatch.fnmatch(path.name, layout.match):
            return layout
    return Layout()


def detect_format(path: Path) -> tuple[str, bool]:
    """(format, gzipped) from the file name; an unknown suffix rejects the file."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if gzipped:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise RejectedFile(f"unknown file type {path.name!r}: expected {known} (optionally .gz)")
    return fmt, gzipped


@dataclass
class FileScan:
    """What one pass over a file's bytes tells before DuckDB reads it."""

    sha256: str
    size: int
    long_lines: list[tuple[int, int, str]]  # (line, bytes, the line's first bytes) over the cap


def fingerprint(path: Path, gzipped: bool, max_line: int) -> FileScan:
    """SHA-256 of the file's bytes and its size; a gzip file is fully inflated to prove it whole.

    DuckDB reads a truncated gzip up to the break without complaint, so the
    check has to happen here, in the same pass as the hash. The same pass notes
    lines longer than ``max_line`` bytes: DuckDB's readers refuse those, and past
    a size drop them without a word, so the loader quarantines them from here.
    """
    digest = hashlib.sha256()
    inflater = zlib.decompressobj(wbits=31) if gzipped else None
    # DuckDB is told ``max_line``; past it, a line is refused or dropped. A little
    # beyond it (line ends counted differently) is surely one of those.
    lines = _LineLengths(max(max_line, _CHUNK) + LINE_MARGIN)
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            size += len(chunk)
            digest.update(chunk)
            if inflater is None:
                lines.feed(chunk)
            else:
                inflater = _inflate(path, inflater, chunk, lines.feed)
    if inflater is not None and not inflater.eof:
        raise RejectedFile(f"{path.name}: broken gzip (the stream ends early; truncated upload?)")
    lines.end()
    return FileScan(digest.hexdigest(), size, lines.long)


class _LineLengths:
    """Finds lines over ``limit`` bytes (at least a chunk) in a stream of chunks at
    memchr speed: a line longer than a chunk ends in a chunk's first newline, or runs
    through the whole chunk."""

    PREFIX = 200  # bytes of a long line kept to show in quarantine

    def __init__(self, limit: int):
        self.limit = limit
        self.line, self.length = 1, 0
        self.prefix = b""
        self.long: list[tuple[int, int, str]] = []

    def feed(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if first < 0:
            self._grow(chunk)
            return
        self._grow(chunk[:first])
        self._end_line()
        self.line += chunk.count(b"\n", first + 1)
        last = chunk.rfind(b"\n")
        self.prefix, self.length = b"", 0
        self._grow(chunk[last + 1 :])

    def end(self) -> None:
        if self.length:
            self._end_line()

    def _grow(self, part: bytes) -> None:
        if len(self.prefix) < self.PREFIX:
            self.prefix += part[: self.PREFIX - len(self.prefix)]
        self.length += len(part)

    def _end_line(self) -> None:
        if self.length > self.limit:
            self.long.append((self.line, self.length, self.prefix.decode("utf-8", "ignore")))
        self.line += 1
        self.prefix, self.length = b"", 0


def _inflate(path: Path, inflater, chunk: bytes, out: Callable[[bytes], None]):
    """Feed a chunk through gzip, following concatenated members; ``out`` gets the text,
    a chunk at a time (a small chunk may inflate to gigabytes)."""
    while chunk:
        try:
            text = inflater.decompress(chunk, _CHUNK)
            out(text)
            # A full answer may leave input, or output zlib still holds: ask again.
            while not inflater.eof and (inflater.unconsumed_tail or len(text) == _CHUNK):
                text = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
                out(text)
        except zlib.error as exc:
            raise RejectedFile(f"{path.name}: broken gzip ({exc})") from None
        chunk = inflater.unused_data
        if chunk:
            inflater = zlib.decompressobj(wbits=31)
    return inflater


def _first_line(path: Path, gzipped: bool, skip_blank: bool = False) -> str:
    """The first line of a text file, decoded strictly as UTF-8."""
    opener = gzip.open if gzipped else open
    with opener(path, "rb") as handle:
        for raw in handle:
            if skip_blank and not raw.strip():
                continue
            try:
                return raw.decode("utf-8-sig").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise RejectedFile(
                    f"{path.name}: not UTF-8 (line 1, byte {exc.start}); "
                    "re-export the file as UTF-8"
                ) from None
    raise RejectedFile(f"{path.name}: empty file")


def _map_headers(path: Path, headers: list[str], layout: Layout) -> dict[str, str]:
    """canonical -> file header; rejects files that miss required columns."""
    seen: dict[str, str] = {}
    for header in headers:
        target = layout.canonical_name(header)
        if target is None:
            continue
        if target in seen:
            raise RejectedFile(
                f"{path.name}: columns {seen[target]!r} and {header!r} both map to {target!r}"
            )
        seen[target] = header
    _check_required(path, list(seen), headers, layout)
    return seen


def _check_required(path: Path, found: list[str], headers: list[str], layout: Layout) -> None:
    """Refuse a file none of whose columns feed a required one: a wrong layout or
    delimiter, not a few bad records."""
    missing = [c for c in REQUIRED if c not in found and c not in layout.constants]
    if missing:
        # A file without a header shows its first record here: no email in the message.
        shown = ", ".join(repr(_EMAIL.sub("[email removed]", h)) for h in headers[:20])
        shown = shown or "nothing"
        hint = f" (layout {layout.name!r})" if layout.name else " (or use --layout)"
        raise RejectedFile(
            f"{path.name}: missing required column(s) {', '.join(missing)}{hint}; "
            f"found {shown}. Is the delimiter or layout right?"
        )


@dataclass
class Source:
    """A file ready to stage: the SELECT that reads it, and facts about it."""

    name: str
    sql: str  # canonical columns, file columns f0..fN, malformed, conflict, blank
    raw_expr: str  # the record's text, from f0..fN; evaluated only for bad rows
    columns: int  # how many of the file's own columns, f0..fN, the SELECT carries
    fmt: str
    line_offset: int  # header lines before the first record
    has_rejects: bool  # CSV structural rejects land in REJECTS_TABLE
    ignored_columns: list[str]
    lines_sql: str | None = None  # a CSV's lines whole, header included (see loader)
    text_key: str = "NULL::UBIGINT"  # hash(line) of the line a bad record must be on

    @property
    def record_key(self) -> str:
        """A hash of the record's own fields, to find a staged record's place in the file."""
        return "hash(" + ", ".join(f"f{i}" for i in range(self.columns)) + ")"


def _select_canonical(mapping: Mapping, layout: Layout, expr) -> str:
    """One VARCHAR column per canonical name, fed by ``expr(file_column)``."""
    parts: list[str] = []
    for name in CANONICAL:
        if name in mapping:
            parts.append(f"{expr(mapping[name])} AS {name}")
        elif name in layout.constants:
            parts.append(f"{sql_string(str(layout.constants[name]))} AS {name}")
        else:
            parts.append(f"NULL::VARCHAR AS {name}")
    return ", ".join(parts)


def open_source(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    gzipped: bool,
    layout: Layout,
    tmp: Path,
    max_line: int,
) -> Source:
    """Build the SELECT for ``path``; raises RejectedFile for whole-file problems.
    Text lines over ``max_line`` bytes are left to the loader (``fingerprint``)."""
    if fmt in ("csv", "tsv"):
        return _csv_source(path, fmt, gzipped, layout, max_line)
    if fmt == "jsonl":
        return _jsonl_source(con, path, gzipped, layout, max_line)
    return _parquet_source(con, path, gzipped, layout, tmp)


def _csv_source(path: Path, fmt: str, gzipped: bool, layout: Layout, max_line: int) -> Source:
    delim = "," if fmt == "csv" else "\t"
    first = _first_line(path, gzipped)
    if "\r" in first:
        raise RejectedFile(
            f"{path.name}: lines end in a bare carriage return (CR); "
            "re-export the file with LF or CR LF line ends"
        )
    try:
        headers = next(csv.reader([first], delimiter=delim))
    except csv.Error as exc:
        raise RejectedFile(f"{path.name}: the header line cannot be read ({exc})") from None
    if len(set(headers)) != len(headers) or any(not h.strip() for h in headers):
        raise RejectedFile(f"{path.name}: the header has empty or repeated column names")
    mapping = _map_headers(path, headers, layout)
    columns = "{" + ", ".join(f"{sql_string(h)}: 'VARCHAR'" for h in headers) + "}"
    reader = (
        f"read_csv({sql_string(str(path))}, header = true, auto_detect = false, "
        f"delim = {sql_string(delim)}, quote = '\"', escape = '\"', columns = {columns}, "
        f"compression = {sql_string('gzip' if gzipped else 'none')}, max_line_size = {max_line}, "
        f"store_rejects = true, rejects_table = '{REJECTS_TABLE}', "
        f"rejects_scan = '{REJECTS_SCAN_TABLE}')"
    )
    originals = ", ".join(f"{sql_identifier(h)} AS f{i}" for i, h in enumerate(headers))
    raw = f"concat_ws({sql_string(delim)}, "
    raw += ", ".join(f"coalesce(f{i}, '')" for i in range(len(headers))) + ")"
    select = _select_canonical(mapping, layout, sql_identifier)
    sql = f"SELECT {select}, {originals}, {_NO_FLAGS} FROM {reader}"
    ignored = [h for h in headers if h not in mapping.values()]
    # Lines up to the fingerprint pass's limit can be read whole (see ``fingerprint``).
    whole = max(max_line, _CHUNK) + LINE_MARGIN
    lines = f"SELECT line FROM {_lines_reader(path, gzipped, whole, 'raise')}"
    # The record as a CSV writer quotes it (only fields that need quotes): a line with
    # exactly this text can only hold exactly these fields.
    written = f"concat_ws({sql_string(delim)}, "
    written += ", ".join(_csv_field(f"f{i}", delim) for i in range(len(headers))) + ")"
    text_key = f"hash({written})"
    return Source(path.name, sql, raw, len(headers), fmt, 1, True, ignored, lines, text_key)


def _lines_reader(path: Path, gzipped: bool, max_line: int, errors: str) -> str:
    """read_csv of the file's lines whole, as one column ``line``, in file order: no
    quoting, and a delimiter (the unit separator) that never occurs in text files.
    ``errors``: ``store`` unreadable lines in REJECTS_TABLE, ``skip`` or ``raise`` them."""
    options = {
        "store": f"store_rejects = true, rejects_table = '{REJECTS_TABLE}', "
        f"rejects_scan = '{REJECTS_SCAN_TABLE}'",
        "skip": "ignore_errors = true",
        # Not strict: a CSV whose lines end in CR LF may hold a bare LF in a quoted field.
        "raise": "store_rejects = false, strict_mode = false",
    }
    return (
        f"read_csv({sql_string(str(path))}, header = false, auto_detect = false, "
        f"delim = chr(31), quote = '', escape = '', columns = {{'line': 'VARCHAR'}}, "
        f"compression = {sql_string('gzip' if gzipped else 'none')}, "
        f"max_line_size = {max_line}, {options[errors]})"
    )


def _csv_field(col: str, delim: str) -> str:
    """One field as CSV writers write it: quoted (quotes doubled) only when it holds
    the delimiter, a quote or a line break, or is an empty string (not NULL)."""
    needs = " OR ".join(
        f"contains({col}, {c})" for c in (sql_string(delim), "'\"'", "chr(10)", "chr(13)")
    )
    return (
        f"CASE WHEN {col} IS NULL THEN '' WHEN {col} = '' OR {needs} "
        f"THEN '\"' || replace({col}, '\"', '\"\"') || '\"' ELSE {col} END"
    )


def _jsonl_source(
    con: duckdb.DuckDBPyConnection, path: Path, gzipped: bool, layout: Layout, max_line: int
) -> Source:
    """Each record is read for every key any record of the file carries: no record's
    fields depend on another's shape (a spool whose first hit had no consent string
    must not lose every later one's). A record missing a required field is
    quarantined alone; only a file where no record has one is refused."""
    _first_line(path, gzipped, skip_blank=True)  # an empty file, or not UTF-8
    is_object = "json_valid(line) AND json_type(line) = 'OBJECT'"
    # Keys are gathered from long lines too (their records are quarantined, yet they
    # say which columns the file carries), up to a bound on what one line may cost.
    key_scan = max(max_line, _CHUNK) * KEY_SCAN_LINE_FACTOR
    every_line = _lines_reader(path, gzipped, key_scan, "skip")
    # Every key, and whether any record names one key twice (DuckDB keeps the first).
    found = con.execute(
        f"""
        SELECT key, bool_or(twice) FROM (
            SELECT unnest(keys) AS key, len(keys) > len(list_distinct(keys)) AS twice
            FROM (SELECT json_keys(line) AS keys FROM {every_line} WHERE {is_object}))
        GROUP BY key ORDER BY key
        """
    ).fetchall()
    if not found:
        raise RejectedFile(f"{path.name}: not JSON Lines (no line is a JSON object)")
    keys = [key for key, _ in found]
    reader = _lines_reader(path, gzipped, max_line, "store")
    sources = _json_keys_by_column(path, keys, layout)
    used = [key for column in sources.values() for key in column]
    # One parse of each record for most keys; DuckDB's structs ignore case, so a key
    # that differs from another only in case is read on its own.
    parsed_keys: dict[str, str] = {}
    for key in used:
        parsed_keys.setdefault(key.lower(), key)
    schema = json.dumps({key: "VARCHAR" for key in parsed_keys.values()})
    parsed = f"CASE WHEN {is_object} THEN json_transform(line, {sql_string(schema)}) END"

    def read(key: str) -> str:
        if parsed_keys[key.lower()] == key:
            return f"j[{sql_string(key)}]"
        return f"CASE WHEN j IS NOT NULL THEN f0->>{sql_string(key)} END"

    def value(keys: list[str]) -> str:
        """A column's one spelling, or the first of several that is not blank."""
        if len(keys) == 1:
            return read(keys[0])
        return "coalesce(" + ", ".join(f"{_not_blank(read(k))}" for k in keys) + ")"

    # Ambiguous records are quarantined, never guessed: two spellings of one column
    # with different values (``consent`` empty, ``Consent`` refusing), or a key twice.
    conflicts = [
        f"({_not_blank(read(a))} <> {_not_blank(read(b))})"
        for feeding in sources.values()
        for i, a in enumerate(feeding)
        for b in feeding[i + 1 :]
    ]
    if any(twice for _, twice in found):
        conflicts.append(
            "(j IS NOT NULL AND len(json_keys(f0)) > len(list_distinct(json_keys(f0))))"
        )
    conflict = f"coalesce({' OR '.join(conflicts)}, false)" if conflicts else "false"
    select = _select_canonical(sources, layout, value)
    sql = (
        f"SELECT {select}, f0, j IS NULL AS malformed, {conflict} AS conflict, "
        f"trim(coalesce(f0, '')) = '' AS blank "
        f"FROM (SELECT line AS f0, {parsed} AS j FROM {reader})"
    )
    ignored = [k for k in keys if k not in used]
    return Source(path.name, sql, "f0", 1, "jsonl", 0, True, ignored)


def _not_blank(value: str) -> str:
    return f"CASE WHEN trim({value}) <> '' THEN {value} END"


def _json_keys_by_column(path: Path, keys: list[str], layout: Layout) -> dict[str, list[str]]:
    """canonical -> the keys that feed it, the canonical name itself first (records
    may spell a key differently: ``ID`` in one, ``id`` in the next)."""
    sources: dict[str, list[str]] = {}
    for key in keys:
        target = layout.canonical_name(key)
        if target is not None:
            sources.setdefault(target, []).append(key)
    for target, feeding in sources.items():
        feeding.sort(key=lambda k: (k != target, k))
    _check_required(path, list(sources), keys, layout)
    return sources


def _parquet_source(
    con: duckdb.DuckDBPyConnection, path: Path, gzipped: bool, layout: Layout, tmp: Path
) -> Source:
    if gzipped:
        plain = tmp / (path.name[: -len(".gz")])
        tmp.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "rb") as src, plain.open("wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        path = plain
    reader = f"read_parquet({sql_string(str(path))})"
    try:
        headers = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    except duckdb.Error as exc:
        raise RejectedFile(
            f"{path.name}: not a readable Parquet file ({_first_sentence(exc)})"
        ) from exc
    mapping = _map_headers(path, headers, layout)
    select = _select_canonical(mapping, layout, lambda h: f"CAST({sql_identifier(h)} AS VARCHAR)")
    originals = ", ".join(f"{sql_identifier(h)} AS f{i}" for i, h in enumerate(headers))
    raw = "to_json({" + ", ".join(f"{sql_string(h)}: f{i}" for i, h in enumerate(headers)) + "})"
    sql = f"SELECT {select}, {originals}, {_NO_FLAGS} FROM {reader}"
    ignored = [h for h in headers if h not in mapping.values()]
    return Source(path.name, sql, f"{raw}::VARCHAR", len(headers), "parquet", 0, False, ignored)


def _first_sentence(exc: Exception) -> str:
    return str(exc).split("\n", 1)[0]
