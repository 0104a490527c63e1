"""What an erased ID left outside the tables: raw files on disk and quoted text.

An opt-out or a deletion (``privacy``) removes the ID's rows; this module removes
the rest: the lines that hold it in the landing folder (pending collector and
cookie-sync spools, ``done/``, ``failed/`` and ``.reason`` files), in the files
the ``file`` destinations and ``dmp segments export`` wrote, and the ID quoted in
the text of quarantined rows and rejected files' errors.

A line (a Parquet row) holds an ID when the ID appears in it whole: not run on
into letters or digits on either side. A MAID matches in any case, with or
without hyphens; a hashed email in any case. Candidate files are found by a
byte search (one pass per ID form, at memory speed), and only files that hold an
ID are rewritten: beside the original, fsynced, then renamed over it, keeping
its modification time (which ``landing.keep_days`` counts from); a file left
with no line is removed. A file that cannot be read through (a broken gzip
stream) is removed whole when the part that reads holds an ID: it was refused
at ingest, so nothing of it is lost.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dmp.config import Config

CHUNK = 4 << 20
REDACTED = "[id removed]"
_WORD = re.compile(rb"[A-Za-z0-9]")
# The file destination's default folder (activation.connectors.file), relative to home.
_EXPORTS_DEFAULT = "exports"


@dataclass(frozen=True)
class Needle:
    """One ID and the byte strings it may be written as; ``folded``: search lower-cased."""

    id: str
    id_type: str
    forms: tuple[bytes, ...]
    folded: bool


@dataclass
class Scrubbed:
    """What erasure found and changed on disk."""

    files_rewritten: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    lines_removed: int = 0
    found: set[tuple[str, str]] = field(default_factory=set)  # (id, id_type) seen in a file

    def to_dict(self) -> dict:
        return {
            "files_rewritten": self.files_rewritten,
            "files_removed": self.files_removed,
            "lines_removed": self.lines_removed,
        }


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
        or keeps. Files cannot roll back, so this runs outside any transaction."""
        found = needles(con, keys)
        done = Scrubbed()
        if not found:
            return done
        landing = self.config.path("ingest.landing")
        with self.hold():  # listed inside: holding may hand an open spool file over
            for path in [*_regular(landing, "*"), *_regular(landing, "idsync/*/*")]:
                _scrub_file(path, found, done)
        for path in self._archived(con, landing):
            _scrub_file(path, found, done)
        return done

    def _archived(self, con: duckdb.DuckDBPyConnection, landing: Path) -> list[Path]:
        """Regular files no spool writes to: filed raw files and exports."""
        archived = [
            *_regular(landing, "done/*"),
            *_regular(landing, "failed/*"),
            *_regular(landing, "idsync/*/done/*"),
        ]
        folders = con.execute(
            """
            SELECT DISTINCT coalesce(json_extract_string(options, '$.folder'), $default)
            FROM destinations WHERE kind = 'file'
            """,
            {"default": _EXPORTS_DEFAULT},
        ).fetchall()
        for (folder,) in folders:
            archived += _regular(self.config.home / folder, "*")
        exported = con.execute("SELECT path FROM exported_files ORDER BY path").fetchall()
        archived += [Path(p) for (p,) in exported if _is_regular(Path(p))]
        return sorted(set(archived))


def _regular(folder: Path, pattern: str) -> list[Path]:
    """Regular files (never a symbolic link) matching ``pattern`` under ``folder``."""
    return sorted(p for p in folder.glob(pattern) if _is_regular(p)) if folder.is_dir() else []


def _is_regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _scrub_file(path: Path, found: list[Needle], done: Scrubbed) -> None:
    """Rewrite ``path`` without the lines (rows) that hold a needle, if any does."""
    if not _may_hold(path, found):
        return
    if _is_parquet(path):
        removed = _rewrite_parquet(path, found, done)
    else:
        try:
            removed = _rewrite_text(path, found, done)
        except (OSError, EOFError, zlib.error):  # unreadable to the end: it held a needle
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


def _may_hold(path: Path, found: list[Needle]) -> bool:
    """Cheap candidate test: does any form occur in the (inflated) bytes at all?
    Parquet pages may be compressed, so a Parquet file is always a candidate."""
    if _is_parquet(path):
        return True
    longest = max(len(f) for n in found for f in n.forms)
    tail = b""
    try:
        with _open(path) as handle:
            while chunk := handle.read(CHUNK):
                window = tail + chunk
                if _any_form(window, found):
                    return True
                tail = window[-longest:]
    except (OSError, EOFError, zlib.error):
        # Unreadable past here: it holds a needle if its raw bytes or readable part do.
        return _any_form(tail + path.read_bytes(), found)
    return False


def _any_form(data: bytes, found: list[Needle]) -> bool:
    folded = data.lower() if any(n.folded for n in found) else data
    return any(form in (folded if n.folded else data) for n in found for form in n.forms)


def _holds(line: bytes, found: list[Needle]) -> list[Needle]:
    """The needles ``line`` holds whole (not run on into a letter or digit)."""
    folded = line.lower() if any(n.folded for n in found) else line
    held = []
    for needle in found:
        text = folded if needle.folded else line
        if any(_whole(text, form) for form in needle.forms):
            held.append(needle)
    return held


def _whole(text: bytes, form: bytes) -> bool:
    start = text.find(form)
    while start >= 0:
        end = start + len(form)
        before = text[start - 1 : start] if start else b""
        if not _WORD.match(before) and not _WORD.match(text[end : end + 1]):
            return True
        start = text.find(form, start + 1)
    return False


def _rewrite_text(path: Path, found: list[Needle], done: Scrubbed) -> int | None:
    """Copy the lines that hold no needle; replace the file only if some did."""
    partial = path.with_name(f".{path.name}.erasing")
    removed = kept = 0
    gzipped = _gzipped(path)
    try:
        with _open(path) as source, _create(partial, gzipped) as target:
            for line in source:
                held = _holds(line, found)
                if held:
                    removed += 1
                    done.found.update((n.id, n.id_type) for n in held)
                    continue
                target.write(line)
                kept += 1
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if not removed:
        partial.unlink()
        return None
    _replace(partial, path, keep=kept > 0)
    return removed


def _rewrite_parquet(path: Path, found: list[Needle], done: Scrubbed) -> int | None:
    """The rows whose text (every column) holds a needle are left out, in DuckDB."""
    con = duckdb.connect()
    try:
        source = "read_parquet($path) t"
        row = "CAST(t AS VARCHAR)"
        held = 0
        conditions = []
        for needle in found:
            pattern = _pattern(needle)
            hits = con.execute(
                f"SELECT count(*) FROM {source} WHERE regexp_matches({row}, $p)",
                {"path": str(path), "p": pattern},
            ).fetchone()[0]
            if hits:
                done.found.add((needle.id, needle.id_type))
                conditions.append(pattern)
                held += hits
        if not conditions:
            return None
        partial = path.with_name(f".{path.name}.erasing")
        where = " OR ".join(f"regexp_matches({row}, $p{i})" for i in range(len(conditions)))
        params = {"path": str(path), **{f"p{i}": p for i, p in enumerate(conditions)}}
        removed, kept = con.execute(
            f"SELECT count(*) FILTER ({where}), count(*) FILTER (NOT ({where})) FROM {source}",
            params,
        ).fetchone()
        con.execute(
            f"COPY (SELECT t.* FROM {source} WHERE NOT ({where})) TO '{_quoted(partial)}' "
            "(FORMAT parquet)",
            params,
        )
    finally:
        con.close()
    _replace(partial, path, keep=kept > 0)
    return removed


def _pattern(needle: Needle) -> str:
    """An RE2 pattern matching the needle whole, for SQL."""
    forms = "|".join(re.escape(f.decode()) for f in needle.forms)
    flags = "(?i)" if needle.folded else ""
    return f"{flags}(^|[^A-Za-z0-9])({forms})($|[^A-Za-z0-9])"


def redact_quoted(con: duckdb.DuckDBPyConnection, found: list[Needle]) -> None:
    """Replace the IDs quoted in the raw text of quarantined rows (those without a
    valid ID of their own, or quoting another's) and in rejected files' errors."""
    for needle in found:
        params = {"p": _pattern(needle), "r": f"\\1{REDACTED}\\3"}
        for table, column in (("quarantine", "raw"), ("ingested_files", "error")):
            con.execute(
                f"""
                UPDATE {table} SET {column} = regexp_replace({column}, $p, $r, 'g')
                WHERE regexp_matches({column}, $p)
                """,
                params,
            )


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"


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


def _replace(partial: Path, path: Path, keep: bool) -> None:
    """Put the rewritten file in place atomically, with the original's times; or,
    when nothing is left (``keep`` false), remove both."""
    if keep:
        _fsync(partial)
        times = path.stat()
        os.utime(partial, ns=(times.st_atime_ns, times.st_mtime_ns))
        os.replace(partial, path)
    else:
        partial.unlink(missing_ok=True)
        path.unlink()
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
