"""Load log files into events, devices and id_links, one atomic transaction a file.

A file is fingerprinted (SHA-256) first: the same bytes load once. Its rows
are staged and checked in one pass (``validate.staged_sql``); bad rows go to
``quarantine`` with their line and reason; good rows are de-duplicated within
the file and against stored events, then appended, and the ``devices`` and
``id_links`` tables are merged from them. Any failure rolls the file back
whole and records it as rejected.

Staging does not keep the file's order (keeping it costs a fifth of the pass):
a bad row's line number is found afterwards, only when there are bad rows, by
a narrow second read that does keep it (``_locate_bad_rows``).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

from dmp.clock import utcnow
from dmp.config import Config
from dmp.errors import RejectedFile
from dmp.ingest import readers
from dmp.ingest.validate import DROP_REASONS, SKIP_REASONS, redact_emails, staged_sql
from dmp.store import Store

Progress = Callable[[str, float], None]
DEDUPE_KEY = ("id_type", "id", "ts", "event", "url")
EVENT_COLUMNS = "ts, id, id_type, event, url, domain, categories, keywords, country, consent, gpc"
_TO_QUARANTINE = "reason IS NOT NULL AND reason NOT IN ({})".format(
    ", ".join(f"'{r}'" for r in sorted(DROP_REASONS | SKIP_REASONS))
)


@dataclass
class FileResult:
    """What happened to one file: the machine-readable ingest contract."""

    file: str
    status: str  # loaded | skipped | rejected
    rows: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    dropped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    new_devices: int = 0
    updated_devices: int = 0
    format: str | None = None
    layout: str | None = None
    ignored_columns: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.error is None:
            data.pop("error")
        return data


@dataclass(frozen=True)
class Limits:
    """The validation bounds for one run, fixed at its start."""

    now: datetime
    latest: datetime
    earliest: datetime
    max_id: int
    max_field: int
    max_line: int

    @classmethod
    def from_config(cls, config: Config, now: datetime) -> Limits:
        earliest = date.fromisoformat(config.get("ingest.earliest_date"))
        return cls(
            now=now,
            latest=now + timedelta(minutes=config.get("ingest.max_future_minutes")),
            earliest=datetime(earliest.year, earliest.month, earliest.day),  # noqa: DTZ001 (UTC)
            max_id=config.get("ingest.max_id_length"),
            max_field=config.get("ingest.max_field_length"),
            max_line=config.get("ingest.max_line_bytes"),
        )


def ingest_files(
    store: Store,
    config: Config,
    paths: Iterable[Path],
    layout: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[FileResult]:
    """Ingest each file on its own; one bad file never stops the others."""
    layouts = readers.layouts_from_config(config.section("layouts"))
    limits = Limits.from_config(config, now or utcnow())
    results = []
    for path in paths:
        chosen = readers.layout_for(Path(path), layouts, layout)
        results.append(ingest_file(store, config, Path(path), chosen, limits, progress))
    return results


def ingest_file(
    store: Store,
    config: Config,
    path: Path,
    layout: readers.Layout,
    limits: Limits,
    progress: Progress | None = None,
    shown_as: str | None = None,
) -> FileResult:
    """Load one file atomically, or record why it was rejected. ``shown_as``: the path
    results and records name, when it is read from elsewhere (landing's claimed copy)."""
    started = utcnow()
    result = FileResult(file=shown_as or str(path), status="loaded", layout=layout.name)
    try:
        if not path.is_file():
            raise RejectedFile(f"{path}: no such file")
        result.format, gzipped = readers.detect_format(path)
        scan = readers.fingerprint(path, gzipped, limits.max_line)
    except RejectedFile as exc:
        return _reject(store, result, str(exc), "", 0, started)
    sha256, size = scan.sha256, scan.size
    if _already_loaded(store, sha256):
        result.status = "skipped"
        return result
    tmp = config.path("store.temp_directory") / "ingest"
    con = store.con
    try:
        # Staging writes only temp tables, so it runs before the transaction.
        source = readers.open_source(
            con, path, result.format, gzipped, layout, tmp, limits.max_line
        )
        result.ignored_columns = source.ignored_columns
        big = size >= config.get("ingest.progress_min_bytes")
        with _watch(con, path.name, progress if big else None):
            _stage(con, source, limits)
        _set_aside_long_lines(con, scan.long_lines)
        _drop_opted_out(con)
        _count(con, result)
        _locate_bad_rows(con, source)
        with store.transaction():
            file_id = con.execute("SELECT nextval('file_id_seq')").fetchone()[0]
            _quarantine(con, file_id, result.file, limits.now)
            _load(con, result, file_id)
            _record(con, result, file_id, sha256, size, started)
    except RejectedFile as exc:
        return _reject(store, result, str(exc), sha256, size, started)
    finally:
        _drop_scratch(con)
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _already_loaded(store: Store, sha256: str) -> bool:
    row = store.con.execute(
        "SELECT 1 FROM ingested_files WHERE sha256 = ? AND status = 'loaded'", [sha256]
    ).fetchone()
    return row is not None


def _stage(con: duckdb.DuckDBPyConnection, source: readers.Source, limits: Limits) -> None:
    """Read, normalise and check the whole file in one pass into a temp table, in any
    order (see the module docstring)."""
    select = staged_sql(source)
    # This connection only: other cursors (the web app, the scheduler) keep their order.
    con.execute("SET SESSION preserve_insertion_order = false")
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE staged AS {select}",
            {
                "latest": limits.latest,
                "earliest": limits.earliest,
                "max_id": limits.max_id,
                "max_field": limits.max_field,
            },
        )
    except (duckdb.InvalidInputException, duckdb.IOException) as exc:
        message = str(exc).split("\n", 1)[0]
        raise RejectedFile(f"{source.name}: cannot be read ({message})") from None
    finally:
        con.execute("SET SESSION preserve_insertion_order = true")
    if not source.has_rejects:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE rejected_lines "
            "(line BIGINT, raw VARCHAR, too_long BOOLEAN)"
        )
        return
    bad_encoding = con.execute(
        f"SELECT min(line) FROM {readers.REJECTS_TABLE} WHERE error_type = 'INVALID ENCODING'"
    ).fetchone()[0]
    if bad_encoding is not None:
        raise RejectedFile(
            f"{source.name}: not UTF-8 (line {bad_encoding}); re-export the file as UTF-8"
        )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE rejected_lines AS
        SELECT line, any_value(ltrim(csv_line, chr(13) || chr(10))) AS raw,
               bool_or(error_type = 'LINE SIZE OVER MAXIMUM') AS too_long
        FROM {readers.REJECTS_TABLE}
        GROUP BY line
        """
    )


def _set_aside_long_lines(
    con: duckdb.DuckDBPyConnection, found: list[tuple[int, int, str]]
) -> None:
    """``long_lines``: lines over ``ingest.max_line_bytes``, quarantined as
    ``oversize_line`` with their first bytes. DuckDB refuses such a line (then it is
    among the rejected lines) or, past some size, skips it without a trace: the
    fingerprint pass found them all, so none is lost uncounted."""
    con.execute("CREATE OR REPLACE TEMP TABLE long_lines (line BIGINT, bytes BIGINT, raw VARCHAR)")
    if found:
        con.executemany("INSERT INTO long_lines VALUES (?, ?, ?)", found)
    con.execute(
        """
        INSERT INTO long_lines
        SELECT line, NULL, left(raw, 200) FROM rejected_lines
        WHERE too_long AND line NOT IN (SELECT line FROM long_lines);
        DELETE FROM rejected_lines WHERE line IN (SELECT line FROM long_lines);
        """
    )


def _drop_opted_out(con: duckdb.DuckDBPyConnection) -> None:
    """A person's opt-out wins over their device's logs, good or bad: such rows are
    counted, never kept (not even in quarantine)."""
    if con.execute("SELECT count(*) FROM optouts").fetchone()[0] == 0:
        return
    con.execute(
        """
        UPDATE staged s SET reason = 'opted_out', raw = NULL
        WHERE (reason IS NULL OR reason <> 'blank_line')
          AND EXISTS (SELECT 1 FROM optouts o WHERE o.id = s.id AND o.id_type = s.id_type)
        """
    )


def _count(con: duckdb.DuckDBPyConnection, result: FileResult) -> None:
    """Rows read and reasons, straight from the staged table."""
    by_reason = con.execute(
        """
        SELECT reason, count(*) FROM staged GROUP BY reason
        UNION ALL
        SELECT 'malformed_row', count(*) FROM rejected_lines HAVING count(*) > 0
        UNION ALL
        SELECT 'oversize_line', count(*) FROM long_lines HAVING count(*) > 0
        """
    ).fetchall()
    reasons: dict[str, int] = {}
    for reason, count in by_reason:
        if reason in SKIP_REASONS:
            continue
        result.rows += count
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + count
    result.reasons = dict(sorted(reasons.items()))
    result.dropped = sum(n for r, n in reasons.items() if r in DROP_REASONS)
    result.quarantined = sum(reasons.values()) - result.dropped


def _locate_bad_rows(con: duckdb.DuckDBPyConnection, source: readers.Source) -> None:
    """``bad_lines``: the file line of each staged row to quarantine.

    Staging read the file in no particular order, so this reads it again, in order,
    only when there are such rows. A CSV's lines are read whole first (cheap: no
    fields are parsed) and matched by their exact text to rows whose text has no
    quotes and no delimiter inside a field: such a line can only hold that record.
    Other formats, and rows the lines cannot place, are matched by a hash of the
    record's fields in a read of the records (counting a record over several lines
    as one line). Runs before the transaction: tables made inside one number their
    rows from far above 0.

    Line numbers are counted as DuckDB's CSV reader counts them, a record over several
    lines (a quoted line break) as one, until the end: then a CSV's are turned into
    the file's own lines (``_to_file_lines``)."""
    count = con.execute(f"SELECT count(*) FROM staged WHERE {_TO_QUARANTINE}").fetchone()[0]
    refused = con.execute(
        "SELECT (SELECT count(*) FROM rejected_lines) + (SELECT count(*) FROM long_lines)"
    ).fetchone()[0]
    try:
        lines = bool(source.lines_sql and (count or refused)) and _read_lines(con, source)
        if count:
            _find_lines(con, source, lines)
        else:
            con.execute("CREATE OR REPLACE TEMP TABLE bad_lines (staged_row BIGINT, line BIGINT)")
        if lines:
            _to_file_lines(con)
    finally:  # the second read is large: give its memory back before the load
        con.execute("DROP TABLE IF EXISTS file_lines; DROP TABLE IF EXISTS file_records")


def _find_lines(con: duckdb.DuckDBPyConnection, source: readers.Source, lines: bool) -> None:
    """The reads of ``_locate_bad_rows``, the cheap one first (``lines``: the lines
    were read whole into ``file_lines``)."""
    params = {"offset": source.line_offset}
    # Lines that hold no staged record.
    skipped = "SELECT line FROM rejected_lines UNION ALL SELECT line FROM long_lines"
    if lines:
        # The CSV reader skips blank lines, except in a file of one column.
        blank = "blank" if source.columns > 1 else "false"
        where = (
            f"reader_line > $offset AND NOT {blank} "
            "AND reader_line NOT IN (SELECT line FROM rejected_lines)"
        )
        _match(con, "text_key", "file_lines", where, "reader_line", params)
        if not con.execute("SELECT count(*) FROM bad_lines WHERE line IS NULL").fetchone()[0]:
            return
        skipped += (
            f" UNION ALL SELECT reader_line FROM file_lines WHERE {blank} AND reader_line > $offset"
        )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE file_records AS "
        f"SELECT {source.record_key} AS key FROM ({source.sql})"
    )
    # Record n sits on line n + 1 + offset, shifted by each skipped line before it.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE skipped_lines AS "
        f"SELECT line - $offset - row_number() OVER (ORDER BY line) AS before FROM ({skipped})",
        params,
    )
    line = "place + 1 + $offset + (SELECT count(*) FROM skipped_lines s WHERE s.before <= place)"
    _match(con, "record_key", "file_records", "true", line, params)


def _read_lines(con: duckdb.DuckDBPyConnection, source: readers.Source) -> bool:
    """``file_lines``: the hash of each line, in order, and ``reader_line``, the number
    the CSV reader gives the line (NULL for a line inside a quoted field: one where the
    lines before it hold an odd number of quotes). False when the lines cannot be read
    whole (a line too long even for the fingerprint pass, a unit separator in the text)."""
    # The whole-line reader would skip such a long line silently, numbering the rest wrong.
    if con.execute("SELECT count(*) FROM long_lines WHERE bytes IS NOT NULL").fetchone()[0]:
        return False
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE file_lines AS "
            "SELECT hash(line) AS key, coalesce(line, '') = '' AS blank, "
            "strlen(line) - strlen(replace(line, '\"', '')) AS quotes "
            f"FROM ({source.lines_sql})"
        )
    except duckdb.Error:
        return False
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE file_lines AS
        SELECT key, blank,
               CASE WHEN NOT inside THEN count(*) FILTER (WHERE NOT inside)
                   OVER (ORDER BY place ROWS UNBOUNDED PRECEDING) END AS reader_line
        FROM (
            SELECT rowid AS place, key, blank,
                   coalesce(sum(quotes) OVER (ORDER BY rowid ROWS BETWEEN UNBOUNDED PRECEDING
                                              AND 1 PRECEDING), 0) % 2 = 1 AS inside
            FROM file_lines)
        ORDER BY place
        """
    )
    return True


def _to_file_lines(con: duckdb.DuckDBPyConnection) -> None:
    """Turn the reader's line numbers of bad rows, refused and long lines into the
    file's own, when a quoted line break made them differ."""
    if not con.execute("SELECT count(*) FROM file_lines WHERE reader_line IS NULL").fetchone()[0]:
        return
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE line_map AS
        SELECT reader_line, rowid + 1 AS line FROM file_lines WHERE reader_line IS NOT NULL;
        UPDATE bad_lines b SET line = m.line FROM line_map m WHERE b.line = m.reader_line;
        UPDATE rejected_lines r SET line = m.line FROM line_map m WHERE r.line = m.reader_line;
        UPDATE long_lines l SET line = m.line FROM line_map m
        WHERE l.line = m.reader_line AND l.bytes IS NULL;
        DROP TABLE line_map;
        """
    )


def _match(
    con: duckdb.DuckDBPyConnection,
    staged_key: str,
    table: str,
    where: str,
    line: str,
    params: dict,
) -> None:
    """Pair the bad staged rows with the rows of ``table`` (keys in file order) of the
    same key and ``where``, the n-th row with the n-th place, at ``line`` (an expression
    of the table's columns and ``place``, the rowid). A key is trusted only where it has
    as many places as rows and those rows are alike (same reason and text), so that any
    pairing gives the same quarantine records; elsewhere ``line`` stays NULL."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE bad_lines AS
        WITH bad AS (
            SELECT rowid AS staged_row, {staged_key} AS key,
                   row_number() OVER k AS nth, count(*) OVER k AS rows,
                   min(reason) OVER k = max(reason) OVER k
                       AND min(raw) OVER k = max(raw) OVER k AS alike
            FROM staged WHERE {_TO_QUARANTINE}
            WINDOW k AS (PARTITION BY key ORDER BY rowid
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        ),
        found AS (
            SELECT rowid AS place, * FROM {table}
            WHERE key IN (SELECT key FROM bad) AND {where}
        ),
        candidates AS (
            SELECT {line} AS line, key, row_number() OVER k AS nth, count(*) OVER k AS places
            FROM found
            WINDOW k AS (PARTITION BY key ORDER BY place
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        )
        SELECT staged_row, CASE WHEN places = rows AND alike THEN line END AS line
        FROM bad LEFT JOIN candidates USING (key, nth)
        """,
        params,
    )


def _quarantine(con: duckdb.DuckDBPyConnection, file_id: int, file: str, now: datetime) -> None:
    """Keep every bad row with its line number (``_locate_bad_rows``), and every
    record the reader refused, emails removed from their text."""
    con.execute(
        f"""
        INSERT INTO quarantine (file_id, file, line, reason, raw, quarantined_at, id, id_type)
        SELECT $file_id, $file, b.line, s.reason, s.raw, $now, s.id, s.id_type
        FROM staged s JOIN bad_lines b ON s.rowid = b.staged_row
        UNION ALL
        SELECT $file_id, $file, line, 'malformed_row', {redact_emails("raw")}, $now, NULL, NULL
        FROM rejected_lines
        UNION ALL
        SELECT $file_id, $file, line, 'oversize_line',
               {redact_emails("raw")} || ' ... (' || coalesce(bytes || ' bytes', 'too long') || ')',
               $now, NULL, NULL
        FROM long_lines
        """,
        {"file_id": file_id, "file": file, "now": now},
    )


def _load(con: duckdb.DuckDBPyConnection, result: FileResult, file_id: int) -> None:
    """Append the file's new events, then merge devices and ID links from them.

    The exact de-duplication steps cost a pass each, so they run only when
    needed: against stored events only if some already fall in the file's
    time range, within the file only if the row hashes show a repeated key.
    """
    low, high, rows, distinct = con.execute(
        f"""
        SELECT min(ts), max(ts), count(*), count(DISTINCT hash({", ".join(DEDUPE_KEY)}))
        FROM staged WHERE reason IS NULL
        """
    ).fetchone()
    overlap = con.execute(
        "SELECT count(*) > 0 FROM events WHERE ts BETWEEN $low AND $high",
        {"low": low, "high": high},
    ).fetchone()[0]
    stored = """
        AND NOT EXISTS (
            SELECT 1 FROM events e
            WHERE e.ts BETWEEN $low AND $high
              AND e.ts = s.ts AND e.id = s.id AND e.id_type = s.id_type
              AND e.event = s.event AND e.url IS NOT DISTINCT FROM s.url)
    """
    # Repeats keep one row, the same whatever order staging read them in; a GPC
    # signal in any of them wins.
    rest = "gpc DESC NULLS LAST, " + ", ".join(
        c for c in EVENT_COLUMNS.split(", ") if c not in (*DEDUPE_KEY, "gpc")
    )
    key = ", ".join(DEDUPE_KEY)
    repeated = f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {rest}) = 1"
    result.loaded = con.execute(
        f"""
        INSERT INTO events
        SELECT {EVENT_COLUMNS}, $file_id FROM staged s
        WHERE s.reason IS NULL {stored if overlap else ""}
        {repeated if distinct < rows else ""}
        """,
        {"file_id": file_id, **({"low": low, "high": high} if overlap else {})},
    ).fetchone()[0]
    result.duplicates = rows - result.loaded
    result.new_devices, result.updated_devices = _merge_devices(con, file_id, result.duplicates)
    _merge_links(con)


def _merge_devices(
    con: duckdb.DuckDBPyConnection, file_id: int, duplicates: int
) -> tuple[int, int]:
    """Fold the file's events into ``devices``: from the staged rows (the cheaper read),
    or from the events stored when de-duplication left some of them out."""
    source = "events WHERE file_id = $file_id" if duplicates else "staged WHERE reason IS NULL"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fresh_devices AS
        SELECT id, id_type, min(ts) AS first_seen, max(ts) AS last_seen, count(*) AS events
        FROM {source} GROUP BY id, id_type
        """,
        {"file_id": file_id} if duplicates else {},
    )
    new, updated = con.execute(
        """
        SELECT count(*) FILTER (WHERE d.id IS NULL), count(*) FILTER (WHERE d.id IS NOT NULL)
        FROM fresh_devices f LEFT JOIN devices d USING (id_type, id)
        """
    ).fetchone()
    con.execute(
        """
        MERGE INTO devices d USING fresh_devices f
        ON d.id_type = f.id_type AND d.id = f.id
        WHEN MATCHED THEN UPDATE SET
            first_seen = least(d.first_seen, f.first_seen),
            last_seen = greatest(d.last_seen, f.last_seen),
            event_count = d.event_count + f.events
        WHEN NOT MATCHED THEN INSERT (id, id_type, first_seen, last_seen, event_count)
            VALUES (f.id, f.id_type, f.first_seen, f.last_seen, f.events)
        """
    )
    return new, updated


def _merge_links(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        MERGE INTO id_links l USING (
            SELECT id, id_type, linked_id, linked_type,
                   min(ts) AS first_seen, max(ts) AS last_seen
            FROM (
                SELECT id, id_type, link_hem AS linked_id, 'hem' AS linked_type, ts
                FROM staged WHERE reason IS NULL AND link_hem IS NOT NULL
                UNION ALL
                SELECT id, id_type, link_maid, 'maid', ts
                FROM staged WHERE reason IS NULL AND link_maid IS NOT NULL
                UNION ALL
                SELECT id, id_type, link_cookie, 'cookie', ts
                FROM staged WHERE reason IS NULL AND link_cookie IS NOT NULL
            ) l
            WHERE NOT EXISTS (
                SELECT 1 FROM optouts o WHERE o.id = l.linked_id AND o.id_type = l.linked_type)
            GROUP BY ALL
        ) f
        ON l.id_type = f.id_type AND l.id = f.id
           AND l.linked_type = f.linked_type AND l.linked_id = f.linked_id
        WHEN MATCHED THEN UPDATE SET
            first_seen = least(l.first_seen, f.first_seen),
            last_seen = greatest(l.last_seen, f.last_seen)
        WHEN NOT MATCHED THEN INSERT (id, id_type, linked_id, linked_type, first_seen, last_seen)
            VALUES (f.id, f.id_type, f.linked_id, f.linked_type, f.first_seen, f.last_seen)
        """
    )


def _record(
    con: duckdb.DuckDBPyConnection,
    result: FileResult,
    file_id: int | None,
    sha256: str,
    size: int,
    started: datetime,
) -> None:
    con.execute(
        """
        INSERT INTO ingested_files VALUES (
            coalesce($file_id, nextval('file_id_seq')), $path, $sha256, $size, $format, $layout,
            $status, $rows, $loaded, $duplicates, $quarantined, $dropped, $reasons,
            $new_devices, $updated_devices, $error, $started, $finished)
        """,
        {
            "file_id": file_id,
            "path": result.file,
            "sha256": sha256,
            "size": size,
            "format": result.format,
            "layout": result.layout,
            "status": result.status,
            "rows": result.rows,
            "loaded": result.loaded,
            "duplicates": result.duplicates,
            "quarantined": result.quarantined,
            "dropped": result.dropped,
            "reasons": json.dumps(result.reasons),
            "new_devices": result.new_devices,
            "updated_devices": result.updated_devices,
            "error": result.error,
            "started": started,
            "finished": utcnow(),
        },
    )


def _reject(
    store: Store, result: FileResult, error: str, sha256: str, size: int, started: datetime
) -> FileResult:
    """Nothing of the file was kept; say why, and remember it for the status page."""
    rejected = FileResult(
        file=result.file,
        status="rejected",
        format=result.format,
        layout=result.layout,
        error=error,
    )
    if sha256:
        with store.transaction() as con:
            _record(con, rejected, None, sha256, size, started)
    return rejected


def _drop_scratch(con: duckdb.DuckDBPyConnection) -> None:
    for table in (
        "staged",
        "skipped_lines",
        "bad_lines",
        "fresh_devices",
        "rejected_lines",
        "long_lines",
        readers.REJECTS_TABLE,
        readers.REJECTS_SCAN_TABLE,
    ):
        con.execute(f"DROP TABLE IF EXISTS {table}")


@contextmanager
def _watch(con: duckdb.DuckDBPyConnection, name: str, progress: Progress | None):
    """Report DuckDB's own progress of the running query from a side thread."""
    if progress is None:
        yield
        return
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.2):
            percent = con.query_progress()
            if percent >= 0:
                progress(name, min(percent, 100.0) / 100)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        progress(name, 1.0)
