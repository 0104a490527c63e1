"""What an erased ID left outside the tables: raw files on disk and quoted text.

An opt-out or a deletion (``privacy``) removes the ID's rows; this module removes
the rest: the person's lines in the landing folder (pending collector and
cookie-sync spools, ``done/``, ``failed/`` and ``.reason`` files), in the files
the ``file`` destinations and ``dmp segments export`` wrote, and the ID quoted in
the text of quarantined rows and rejected files' errors, or in a landing file's name.

A line (a Parquet row) is the person's when an ID field holds the ID
(``idfields``: a common value such as ``pageview`` in another field is not an
ID). Candidate files are found by a byte search (one pass per ID form, at memory
speed), and only files that hold an ID are rewritten: beside the original,
fsynced, then renamed over it, keeping its modification time (which
``landing.keep_days`` counts from); a file left with no line is removed. A
gzipped file stays gzipped, a gzipped Parquet file is filtered as Parquet. A file
in ``failed/`` that no byte search can read through (another encoding or
compression, binary, a broken gzip stream) is removed on every erasure: ingest
refused it, so nothing of it is lost, and it might hold anyone's ID. A landing
file named after an ID is renamed with the ID replaced. A rewrite is written
beside the original (``.NAME.erasing``, removed whatever happens; one a stopped
process left is removed by the nightly ``prune``).

Rewriting holds the landing lock (``landing.exclusive``), so no ingest moves a file
meanwhile. A file that moved or vanished all the same (another program's doing) is
passed over; one that cannot be rewritten is left as it was and named in
``Scrubbed.errors``, and the other files are cleaned all the same.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from dmp.config import Config
from dmp.identity.idfields import (
    PLAIN,
    Matcher,
    Needle,
    Shape,
    csv_shape,
    needles,
    parquet_match,
    pattern,
)
from dmp.ingest.landing import CLAIMED, PARTIAL, exclusive
from dmp.ingest.readers import FORMATS, REQUIRED, Layout, layout_for, layouts_from_config
from dmp.store import sql_string

CHUNK = 4 << 20
REDACTED = "[id removed]"
# What replaces an ID in a file's name: no spaces or brackets, which shells and globs trip on.
NAME_REDACTED = "id-removed"
# The file destination's default folder (activation.connectors.file), relative to home.
_EXPORTS_DEFAULT = "exports"
# Where a file lies decides how its fields are read (``_shape``).
Place = Literal["landing", "idsync", "export"]
_ANY_READ_ERROR = (OSError, EOFError, zlib.error, duckdb.Error)
# What a broken gzip stream raises while it is read (a failure to write is none of these).
_BROKEN_GZIP = (EOFError, zlib.error, gzip.BadGzipFile)


class _Unreadable(Exception):
    """The file cannot be read to its end: not a failure to write its new copy, which
    must never cost the file."""


@dataclass
class Scrubbed:
    """What erasure found and changed on disk."""

    files_rewritten: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_renamed: list[str] = field(default_factory=list)  # their new paths
    lines_removed: int = 0
    found: set[tuple[str, str]] = field(default_factory=set)  # (id, id_type) seen in a file
    errors: list[str] = field(default_factory=list)  # "path: why" of files left as they were

    def to_dict(self) -> dict:
        return {
            "files_rewritten": self.files_rewritten,
            "files_removed": self.files_removed,
            "files_renamed": self.files_renamed,
            "lines_removed": self.lines_removed,
            "errors": self.errors,
        }


@dataclass
class Erasure:
    """The places of one instance an erased ID may have left raw text in.

    ``hold`` is entered while the pending files (the landing folder's own, and
    cookie-sync spools) are rewritten: in `dmp serve`, it pauses the collector's
    spools, so no line is appended to a file being rewritten.
    """

    config: Config
    hold: Callable[[], AbstractContextManager] = nullcontext

    def scrub(self, con: duckdb.DuckDBPyConnection, keys: str) -> Scrubbed:
        """Remove every line that holds an ID of table ``keys`` from the files dmp wrote
        or keeps, and refused files no search can read. Files cannot roll back, so this
        runs outside any transaction."""
        done = Scrubbed()
        landing = self.config.path("ingest.landing")
        found = needles(con, keys)
        matcher = Matcher(found) if found else None
        layouts = layouts_from_config(self.config.section("layouts"))
        with exclusive():
            _remove_unsearchable(_regular(landing, "failed/*"), done)
            if matcher is None:
                return done
            with self.hold():  # listed inside: holding may hand an open spool file over
                pending = [
                    *_placed(landing, "*", "landing"),
                    *_placed(landing, f"{CLAIMED}/*", "landing"),
                    *_placed(landing, "idsync/*/*", "idsync"),
                ]
                for path, place in pending:
                    _scrub_placed(path, place, layouts, matcher, done)
            for path, place in self._archived(con, landing):
                _scrub_placed(path, place, layouts, matcher, done)
        return done

    def _archived(self, con: duckdb.DuckDBPyConnection, landing: Path) -> list[tuple[Path, Place]]:
        """Regular files no spool writes to: filed raw files and exports."""
        archived = [
            *_placed(landing, "done/*", "landing"),
            *_placed(landing, "failed/*", "landing"),
            *_placed(landing, "idsync/*/done/*", "idsync"),
        ]
        folders = con.execute(
            """
            SELECT DISTINCT coalesce(json_extract_string(options, '$.folder'), $default)
            FROM destinations WHERE kind = 'file'
            """,
            {"default": _EXPORTS_DEFAULT},
        ).fetchall()
        for (folder,) in folders:
            archived += _placed(self.config.home / folder, "*", "export")
        exported = con.execute("SELECT path FROM exported_files ORDER BY path").fetchall()
        archived += [(Path(p), "export") for (p,) in exported if _is_regular(Path(p))]
        return sorted(dict(archived).items())


def _placed(folder: Path, pattern: str, place: Place) -> list[tuple[Path, Place]]:
    return [(path, place) for path in _regular(folder, pattern)]


def _regular(folder: Path, pattern: str) -> list[Path]:
    """Regular files (never a symbolic link, nor a rewrite in progress) matching
    ``pattern`` under ``folder``."""
    if not folder.is_dir():
        return []
    partial = PARTIAL.format(name="*")
    return sorted(p for p in folder.glob(pattern) if _is_regular(p) and not p.match(partial))


def _is_regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _shape(path: Path, place: Place, layouts: Mapping[str, Layout]) -> Shape:
    """How to read ``path``'s ID fields, by where it lies: a log in the landing folder as
    ingest reads it (format from its name, layout from ``[layouts]``), a cookie-sync
    spool as ``cookie,partner ID``, an export (CSV with a header, or Parquet) with the
    canonical column names; a ``.reason`` note as plain text."""
    if path.name.endswith(".reason"):
        return PLAIN
    if place == "idsync":
        return Shape("csv", columns=(0,), header=False)
    layout = layout_for(path, layouts, None) if place == "landing" else Layout()
    if _is_parquet(path):
        return Shape("parquet", layout)
    fmt = "csv" if place == "export" else _format(path)
    if fmt == "jsonl":
        return Shape("jsonl", layout)
    header = _first_line(path) if fmt in ("csv", "tsv") else None
    if header is None:
        return PLAIN
    required = REQUIRED if place == "landing" else ("id",)
    return csv_shape(header, "," if fmt == "csv" else "\t", layout, required)


def _format(path: Path) -> str | None:
    """The format ingest reads ``path`` as, from its name; a name landing gave a time
    stamp (``a.csv.20261120T101500.gz``) still says it."""
    suffixes = [s.lower() for s in path.suffixes]
    return next((FORMATS[s] for s in reversed(suffixes) if s in FORMATS), None)


def _first_line(path: Path) -> str | None:
    """The first line of a text file, or None when it does not read as UTF-8."""
    try:
        with _open(path) as handle:
            return handle.readline(CHUNK).decode("utf-8-sig").rstrip("\r\n")
    except (*_ANY_READ_ERROR, UnicodeDecodeError):
        return None


def _remove_unsearchable(paths: list[Path], done: Scrubbed) -> None:
    """Refused files no byte search reads through: whose ID they hold, none can tell."""
    for path in paths:
        if not path.name.endswith(".reason") and not _searchable(path):
            path.unlink()
            done.files_removed.append(str(path))


def _searchable(path: Path) -> bool:
    """Whether ``path`` reads to its end as a Parquet file, or as UTF-8 text without a
    NUL byte (UTF-16, binary and other compressions have them or are not UTF-8),
    gzipped or not."""
    try:
        if _is_parquet(path):
            with _plain_parquet(path) as plain, duckdb.connect() as con:
                con.execute(
                    f"SELECT count(*) FROM read_parquet({sql_string(str(plain))})"
                ).fetchall()
            return True
        decoder = codecs.getincrementaldecoder("utf-8")()
        with _open(path) as handle:
            while chunk := handle.read(CHUNK):
                if b"\0" in chunk:
                    return False
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except (*_ANY_READ_ERROR, UnicodeDecodeError, _Unreadable):
        return False
    return True


def _scrub_placed(
    path: Path, place: Place, layouts: Mapping[str, Layout], matcher: Matcher, done: Scrubbed
) -> None:
    """Scrub a file read as its place says; a raw file named after an ID is renamed
    first (an export keeps its name: its destination or ``exported_files`` finds it
    by that name)."""
    try:
        shape = _shape(path, place, layouts)
        if place != "export":
            path = _rename(path, matcher, done)
        _scrub_file(path, shape, matcher, done)
    except FileNotFoundError:  # moved or removed by another program meanwhile
        return
    except (OSError, duckdb.Error) as exc:
        done.errors.append(f"{path}: not cleaned, left as it was ({exc})")


def _scrub_file(path: Path, shape: Shape, matcher: Matcher, done: Scrubbed) -> None:
    """Rewrite ``path`` without the lines (rows) that hold a needle, if any does."""
    if shape.kind != "parquet" and not _may_hold(path, matcher, shape):
        return
    try:
        if shape.kind == "parquet":
            removed = _rewrite_parquet(path, shape, matcher, done)
        else:
            removed = _rewrite_text(path, shape, matcher, done)
    except _Unreadable:  # removed when its raw bytes hold a needle: it held one
        if shape.kind != "parquet" or matcher.in_bytes(path.read_bytes()):
            path.unlink()
            done.files_removed.append(str(path))
        return
    if removed is None:
        return
    done.lines_removed += removed
    if path.exists():
        done.files_rewritten.append(str(path))
    else:
        done.files_removed.append(str(path))


def _rename(path: Path, matcher: Matcher, done: Scrubbed) -> Path:
    """A raw file named after an ID gets the ID replaced in its name; the tables' copies
    of the name are redacted by ``redact_quoted``."""
    name, held = matcher.redact_name(path.name, NAME_REDACTED)
    if not held:
        return path
    target = path.with_name(name)
    number = 1
    while target.exists() or target.is_symlink():
        number += 1
        target = path.with_name(f"{NAME_REDACTED}-{number}-{name}")
    os.rename(path, target)
    _fsync(path.parent)
    done.files_renamed.append(str(target))
    done.found.update((n.id, n.id_type) for n in held)
    return target


def _may_hold(path: Path, matcher: Matcher, shape: Shape) -> bool:
    """Cheap candidate test: does any form (or a marker worth a look) occur in the
    (inflated) bytes at all?"""
    markers = matcher.markers(shape)
    tail = b""
    try:
        with _open(path) as handle:
            while chunk := handle.read(CHUNK):
                window = tail + chunk
                if matcher.in_bytes(window, markers):
                    return True
                tail = window[-matcher.longest :]
    except (OSError, EOFError, zlib.error):
        # Unreadable past here: it holds a needle if its raw bytes or readable part do.
        return matcher.in_bytes(tail + path.read_bytes())
    return False


def _records(lines: Iterable[bytes], shape: Shape) -> Iterator[bytes]:
    """The file's records: its lines, but a CSV record whose quoted field holds a line
    break spans lines (until its quotes pair up)."""
    if shape.kind != "csv":
        yield from lines
        return
    record, quotes = b"", 0
    for line in lines:
        record += line
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            yield record
            record, quotes = b"", 0
    if record:
        yield record


def _rewrite_text(path: Path, shape: Shape, matcher: Matcher, done: Scrubbed) -> int | None:
    """Copy the records that hold no needle (and a CSV header); replace the file only
    if some did."""
    partial = _partial(path)
    removed = kept = 0
    gzipped = _gzipped(path)
    markers = matcher.markers(shape)
    try:
        with _open(path) as source, _create(partial, gzipped) as target:
            for number, record in enumerate(_records(source, shape)):
                header = number == 0 and shape.kind == "csv" and shape.header
                candidate = not header and matcher.in_bytes(record, markers)
                held = matcher.record(record, shape) if candidate else []
                if held:
                    removed += 1
                    done.found.update((n.id, n.id_type) for n in held)
                    continue
                target.write(record)
                kept += 1
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, _BROKEN_GZIP):
            raise _Unreadable(path) from exc
        raise
    try:
        if removed:
            _replace(partial, path, keep=kept > 0)
    finally:
        partial.unlink(missing_ok=True)
    return removed or None


def _rewrite_parquet(path: Path, shape: Shape, matcher: Matcher, done: Scrubbed) -> int | None:
    """The rows an ID column of which holds a needle (without such a column: whose text
    holds one whole) are left out, in DuckDB; a gzipped file is filtered unzipped and
    gzipped again."""
    with _plain_parquet(path) as plain, _work_folder(path) as work:
        con = duckdb.connect()
        try:
            source = f"read_parquet({sql_string(str(plain))}) t"
            key, params = _row_match(con, source, shape, matcher)
            hits, removed, kept = _read_parquet(
                con,
                f"""SELECT list(DISTINCT key) FILTER (key IS NOT NULL), count(key),
                           count(*) - count(key)
                    FROM (SELECT {key} AS key FROM {source})""",
                params,
            )[0]
            if not removed:
                return None
            filtered = Path(work) / "filtered.parquet"
            con.execute(
                f"COPY (SELECT t.* FROM {source} WHERE ({key}) IS NULL) "
                f"TO {sql_string(str(filtered))} (FORMAT parquet)",
                params,
            )
        finally:
            con.close()
        done.found.update((n.id, n.id_type) for n in map(matcher.by_key, hits))
        partial = _partial(path)
        try:
            with open(filtered, "rb") as rows, _create(partial, _gzipped(path)) as target:
                shutil.copyfileobj(rows, target, CHUNK)
            _replace(partial, path, keep=kept > 0)
        finally:
            partial.unlink(missing_ok=True)
    return removed


def _row_match(
    con: duckdb.DuckDBPyConnection, source: str, shape: Shape, matcher: Matcher
) -> tuple[str, dict]:
    """SQL (and parameters): the key of the needle a row holds in an ID column, or, in a
    file without one, whose text holds it whole."""
    columns = [c for (c, *_) in _read_parquet(con, f"DESCRIBE SELECT * FROM {source}", {})]
    key = parquet_match(columns, shape.layout)
    return (key, matcher.parquet_keys()) if key is not None else _whole_row_match(matcher)


def _read_parquet(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> list[tuple]:
    """Rows of a query that reads the file: DuckDB failing here means a broken file."""
    try:
        return con.execute(sql, params).fetchall()
    except duckdb.Error as exc:
        raise _Unreadable(sql) from exc


def _whole_row_match(matcher: Matcher) -> tuple[str, dict]:
    """SQL (and parameters): the key of the first needle the row's text holds whole."""
    cases = " ".join(
        f"WHEN regexp_matches(CAST(t AS VARCHAR), $p{i}) THEN $k{i}"
        for i in range(len(matcher.needles))
    )
    params = {}
    for i, needle in enumerate(matcher.needles):
        params |= {f"p{i}": pattern(needle), f"k{i}": needle.id}
    return f"CASE {cases} END", params


@contextlib.contextmanager
def _plain_parquet(path: Path) -> Iterator[Path]:
    """``path`` itself, or, gzipped, its content in a temporary file beside it."""
    if not _gzipped(path):
        yield path
        return
    with _work_folder(path) as work:
        plain = Path(work) / "plain.parquet"
        try:
            with gzip.open(path, "rb") as source, open(plain, "wb") as target:
                shutil.copyfileobj(source, target, CHUNK)
        except _BROKEN_GZIP as exc:
            raise _Unreadable(path) from exc
        yield plain


def _work_folder(path: Path) -> tempfile.TemporaryDirectory:
    """A hidden temporary folder beside ``path``: the data stays in the instance."""
    return tempfile.TemporaryDirectory(prefix=f".{path.name}.", suffix=".work", dir=path.parent)


def redact_quoted(con: duckdb.DuckDBPyConnection, found: list[Needle]) -> None:
    """Replace the IDs quoted in the raw text of quarantined rows (those without a
    valid ID of their own, or quoting another's) and in rejected files' errors, and
    in the names of the files the tables recorded (a file named after an ID)."""
    for needle in found:
        params = {"p": pattern(needle), "r": f"\\1{REDACTED}\\3"}
        for table, column in (("quarantine", "raw"), ("ingested_files", "error")):
            con.execute(
                f"""
                UPDATE {table} SET {column} = regexp_replace({column}, $p, $r, 'g')
                WHERE regexp_matches({column}, $p)
                """,
                params,
            )
    if found:
        _redact_names(con, Matcher(found))


def _redact_names(con: duckdb.DuckDBPyConnection, matcher: Matcher) -> None:
    """Rename the recorded files as ``_rename`` renames them on disk: SQL picks the
    few names that may hold an ID, each is renamed once for all its rows."""
    for table, column in (("quarantine", "file"), ("ingested_files", "path")):
        names = con.execute(
            f"""
            SELECT DISTINCT {column} FROM {table}
            WHERE list_bool_or([regexp_matches(parse_filename({column}), p) FOR p IN $p])
            """,
            {"p": [pattern(n) for n in matcher.needles]},
        ).fetchall()
        for (path,) in names:
            folder, name = os.path.split(path)
            redacted, held = matcher.redact_name(name, NAME_REDACTED)
            if held:
                con.execute(
                    f"UPDATE {table} SET {column} = $new WHERE {column} = $old",
                    {"new": os.path.join(folder, redacted), "old": path},
                )


def _is_parquet(path: Path) -> bool:
    """Whether ``path`` (or, gzipped, its content) starts as a Parquet file does."""
    try:
        with _open(path) as handle:
            return handle.read(4) == b"PAR1"
    except (OSError, EOFError, zlib.error):
        return False


def _gzipped(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _open(path: Path):
    return gzip.open(path, "rb") if _gzipped(path) else open(path, "rb")


@contextlib.contextmanager
def _create(path: Path, gzipped: bool) -> Iterator:
    """A new file, gzip-compressed when the original was."""
    with open(path, "xb") as raw:
        if gzipped:
            with gzip.GzipFile(fileobj=raw, mode="wb", filename="") as handle:
                yield handle
        else:
            yield raw


def _partial(path: Path) -> Path:
    """Where the rewrite of ``path`` is written. One found there is a stopped rewrite's
    (the landing lock is held): it goes first, so the new one is created, not reused."""
    partial = path.with_name(PARTIAL.format(name=path.name))
    partial.unlink(missing_ok=True)
    return partial


def _replace(partial: Path, path: Path, keep: bool) -> None:
    """Put the rewritten file in place atomically, with the original's times; or,
    when nothing is left (``keep`` false), remove the original. The original must still
    be there (FileNotFoundError if not): a rewrite never brings back a moved file."""
    times = path.stat()
    if keep:
        _fsync(partial)
        os.utime(partial, ns=(times.st_atime_ns, times.st_mtime_ns))
        os.replace(partial, path)
    else:
        path.unlink()
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
