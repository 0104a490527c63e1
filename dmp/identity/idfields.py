"""Which lines (Parquet rows) of a raw file are an erased person's: an ID field holds the ID.

Anyone can opt out any cookie value, and a value such as ``pageview``, ``cookie`` or
``US`` occurs in every line as some other field. So a line is the person's only
when a field that feeds an ID (``id``, ``cookie``, ``maid``, ``hem``, through the
file's layout, as ingest maps it; JSON keys in any case spelling) holds the ID as
ingest normalises it: trimmed; a MAID in any case, with or without hyphens; a
hashed email in any case, or (in a ``hem`` field) the raw email that hashes to it.
JSON escapes are decoded first. A byte search for the ID's forms stays the cheap
first test: only the lines it picks (or, when a hashed email is erased, lines with
an ``@`` where an email may be; in JSON Lines, lines with a ``\\u`` escape) are
parsed. A file without fields to read (no header, not a format ingest reads, a
``.reason`` note) falls back to the ID written whole anywhere in a line: ingest
refused such a file, so no one's loaded events are in it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from typing import Literal

import duckdb

from dmp.csvsafe import FORMULA_LEADS
from dmp.ingest.readers import FORMATS, Layout
from dmp.store import sql_identifier

ID_FIELDS = frozenset({"id", "cookie", "maid", "hem"})
_WORD = re.compile(rb"[A-Za-z0-9]")
# The end of a file name that says what the file is (its format, a spool's .part,
# landing's time stamp for a second file of one name): no ID is looked for there, so
# erasing the cookie ID ``csv`` renames no ``a.csv``.
_SUFFIXES = [*FORMATS, ".gz", ".reason", ".part", ".tmp"]
_TYPE_SUFFIX = re.compile(
    r"\.(?:" + "|".join(s[1:] for s in _SUFFIXES) + r"|\d{8}T\d+)$", re.IGNORECASE
)
# What ingest trims from a hashed email (``validate.hem_sql``); every ID field the same.
_BLANKS = " \t\n\r\xa0"


@dataclass(frozen=True)
class Needle:
    """One ID and the byte strings it may be written as; ``folded``: search lower-cased."""

    id: str
    id_type: str
    forms: tuple[bytes, ...]
    folded: bool


def needles(con: duckdb.DuckDBPyConnection, keys: str) -> list[Needle]:
    """The forms of each (id, id_type) in table ``keys`` as raw files may hold them."""
    found = []
    for value, id_type in con.execute(f"SELECT id, id_type FROM {keys} ORDER BY 1, 2").fetchall():
        if id_type == "cookie":
            found.append(Needle(value, id_type, (value.encode(),), folded=False))
        elif id_type == "maid":
            forms = (value.encode(), value.replace("-", "").encode())
            found.append(Needle(value, id_type, forms, folded=True))
        else:
            found.append(Needle(value, id_type, (value.encode(),), folded=True))
    return found


@dataclass(frozen=True)
class Shape:
    """Where a file's ID fields are. ``csv``: the ``columns`` (indices) of records
    split by ``delimiter``, after a header line when ``header``; ``jsonl``: the keys
    ``layout`` maps to an ID field; ``parquet``: the columns it maps (the rows are
    filtered in DuckDB); ``plain``: no fields, the ID written whole anywhere."""

    kind: Literal["csv", "jsonl", "parquet", "plain"]
    layout: Layout = field(default_factory=Layout)
    delimiter: str = ","
    columns: tuple[int, ...] = ()
    hem_columns: tuple[int, ...] = ()
    header: bool = True

    @property
    def emails(self) -> bool:
        """Whether a line may hold a raw email in a ``hem`` field."""
        return self.kind == "jsonl" or bool(self.hem_columns)


PLAIN = Shape("plain")


def csv_shape(header: str, delimiter: str, layout: Layout, required: tuple[str, ...]) -> Shape:
    """The shape of a CSV/TSV file from its header line; plain unless the header feeds
    every ``required`` column (else the first line is a record: ingest refused the file,
    and a value there such as ``cookie`` is no column name)."""
    names = next(csv.reader([header], delimiter=delimiter), [])
    targets = [layout.canonical_name(name) for name in names]
    if not all(column in targets or column in layout.constants for column in required):
        return PLAIN
    columns = tuple(i for i, target in enumerate(targets) if target in ID_FIELDS)
    hems = tuple(i for i, target in enumerate(targets) if target == "hem")
    return Shape("csv", layout, delimiter, columns, hems) if columns else PLAIN


class Matcher:
    """The erased IDs, looked up by an ID field's value, or found whole in plain text."""

    def __init__(self, found: list[Needle]):
        self.needles = found
        self._exact = {n.id: n for n in found if not n.folded}
        self._folded = {form.decode(): n for n in found if n.folded for form in n.forms}
        self._exact_forms = [form for n in found if not n.folded for form in n.forms]
        self._folded_forms = [form for n in found if n.folded for form in n.forms]
        self._hems = any(n.id_type == "hem" for n in found)
        self.longest = max(len(form) for n in found for form in n.forms)

    def markers(self, shape: Shape) -> tuple[bytes, ...]:
        """Bytes that make a line of ``shape`` worth parsing besides the IDs' own forms:
        an ``@`` where a raw email may hash to an erased one; a JSON escape."""
        return (b"@",) * (self._hems and shape.emails) + (b"\\u",) * (shape.kind == "jsonl")

    def in_bytes(self, data: bytes, markers: tuple[bytes, ...] = ()) -> bool:
        """The cheap test: does any form (or marker) occur in ``data`` at all? Plain
        ``in`` tests, at memory speed on a large buffer (a regular expression of the
        forms is several times slower there), in loops: no generator per line."""
        for form in self._exact_forms:
            if form in data:
                return True
        if self._folded_forms:
            folded = data.lower()
            for form in self._folded_forms:
                if form in folded:
                    return True
        for marker in markers:
            if marker in data:
                return True
        return False

    def value(self, text: str, hem: bool) -> Needle | None:
        """The needle a field's value is, as ingest normalises it; a CSV cell dmp
        neutralised (``'=x``) is also read as ``=x``; in a ``hem`` field, a raw email
        (trimmed, lower-cased) is hashed."""
        value = text.strip(_BLANKS)
        values = [value]
        if value[:1] == "'" and value[1:2] in FORMULA_LEADS:
            values.append(value[1:])
        for candidate in values:
            hit = self._exact.get(candidate) or self._folded.get(candidate.lower())
            if hit is None and hem and self._hems and "@" in candidate:
                digest = hashlib.sha256(candidate.lower().encode()).hexdigest()
                hit = self._folded.get(digest)
            if hit is not None:
                return hit
        return None

    def record(self, record: bytes, shape: Shape) -> list[Needle]:
        """The needles ``record`` (one line; a CSV record may span lines) holds in an ID
        field; a record that does not parse is searched as plain text."""
        try:
            text = record.decode("utf-8-sig")
            if shape.kind == "csv":
                return self._csv(text, shape)
            if shape.kind == "jsonl":
                return self._json(text, shape)
        except (UnicodeDecodeError, ValueError, csv.Error):
            pass
        return self.whole(record)

    def _csv(self, text: str, shape: Shape) -> list[Needle]:
        if '"' in text:
            fields = next(csv.reader(io.StringIO(text, newline=""), delimiter=shape.delimiter), [])
        else:  # no quoting: what the CSV reader returns, at a fraction of the cost
            fields = text.rstrip("\r\n").split(shape.delimiter)
        held = (
            self.value(fields[i], i in shape.hem_columns) for i in shape.columns if i < len(fields)
        )
        return _distinct(held)

    def _json(self, text: str, shape: Shape) -> list[Needle]:
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError("not an object")
        held = []
        for key, value in record.items():
            target = shape.layout.canonical_name(key)
            if target in ID_FIELDS and isinstance(value, str | int | float):
                text = value if isinstance(value, str) else json.dumps(value)
                held.append(self.value(text, target == "hem"))
        return _distinct(held)

    def whole(self, line: bytes) -> list[Needle]:
        """The needles ``line`` holds whole (not run on into a letter or digit)."""
        folded = line.lower() if self._folded else line
        held = []
        for needle in self.needles:
            text = folded if needle.folded else line
            if any(_whole(text, form) for form in needle.forms):
                held.append(needle)
        return held

    def redact_name(self, name: str, replacement: str) -> tuple[str, list[Needle]]:
        """``name`` with each needle it holds whole (before its type suffixes) replaced,
        and those needles."""
        base = name
        while (suffix := _TYPE_SUFFIX.search(base)) and suffix.start() > 0:
            base = base[: suffix.start()]
        held = self.whole(base.encode())
        redacted = base
        for needle in held:
            for _ in range(2):  # a second pass for an ID right after another (ID-ID)
                redacted = re.sub(pattern(needle), rf"\g<1>{replacement}\g<3>", redacted)
        return redacted + name[len(base) :], held

    def parquet_keys(self) -> dict[str, list[str]]:
        """SQL parameters for ``parquet_match``: the exact and the folded keys."""
        return {"exact": list(self._exact), "folded": list(self._folded)}

    def by_key(self, key: str) -> Needle:
        """The needle of a key ``parquet_match`` returned."""
        return self._exact.get(key) or self._folded[key]


def parquet_match(columns: list[str], layout: Layout) -> str | None:
    """SQL: the key (``Matcher.parquet_keys``, parameters ``$exact`` and ``$folded``)
    an ID column of the row holds, else NULL; None when no column feeds an ID."""
    keys = []
    for name in columns:
        target = layout.canonical_name(name)
        if target not in ID_FIELDS:
            continue
        blanks = " || ".join(f"chr({ord(c)})" for c in _BLANKS)
        value = f"trim(CAST({sql_identifier(name)} AS VARCHAR), {blanks})"
        keys.append(f"CASE WHEN list_contains($exact, {value}) THEN {value} END")
        keys.append(f"CASE WHEN list_contains($folded, lower({value})) THEN lower({value}) END")
        if target == "hem":
            digest = f"sha256(lower({value}))"
            keys.append(
                f"CASE WHEN contains({value}, '@') AND list_contains($folded, {digest}) "
                f"THEN {digest} END"
            )
    return f"coalesce({', '.join(keys)})" if keys else None


def pattern(needle: Needle) -> str:
    """An RE2 pattern matching the needle whole, for SQL."""
    forms = "|".join(re.escape(f.decode()) for f in needle.forms)
    flags = "(?i)" if needle.folded else ""
    return f"{flags}(^|[^A-Za-z0-9])({forms})($|[^A-Za-z0-9])"


def _whole(text: bytes, form: bytes) -> bool:
    start = text.find(form)
    while start >= 0:
        end = start + len(form)
        before = text[start - 1 : start] if start else b""
        if not _WORD.match(before) and not _WORD.match(text[end : end + 1]):
            return True
        start = text.find(form, start + 1)
    return False


def _distinct(held) -> list[Needle]:
    return list(dict.fromkeys(n for n in held if n is not None))
