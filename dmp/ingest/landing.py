"""Landing mode: load what waits in the landing folder, file it under done/ or failed/,
and remove it from there once it has been kept ``landing.keep_days``.

Only regular files directly in the folder are taken, one at a time. Each entry is first
claimed: renamed (an atomic step that moves a link as the link itself) into the
private folder ``.claimed/`` (mode 0700, dmp's own), and only there checked with
``lstat`` and read. An entry that is a symbolic link (wherever it points), not a regular
file, or a file with other hard links (which may be a file from outside the folder) is
never opened: it is filed under failed/ with a reason that names the kind of entry,
not its content. Checked after the claim, the check holds for what is read: an entry
swapped in the landing folder after the run began is claimed and checked as it is
then. An entry gone before its turn is skipped with a note. A file filed away gets
the time of filing as its modification time, which is what ``prune`` measures its age by.

The landing folder's files change hands under one lock per process (:func:`exclusive`):
ingest holds it while it claims, loads and files one entry; erasure (opt-outs,
deletions) while it rewrites raw files and forgets the IDs; ``prune`` while it removes
files. In `dmp serve` the web threads and the scheduler share one process, and two
processes cannot both hold the database, so no file is moved while another rewrites it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dmp.clock import utcnow
from dmp.config import Config
from dmp.errors import DmpError
from dmp.ingest import readers
from dmp.ingest.loader import FileResult, Limits, Progress, ingest_file
from dmp.store import Store

# Where filed-away raw files are kept, relative to the landing folder.
ARCHIVES = ("done", "failed", "idsync/*/done")
# Where entries are claimed into before they are checked and read.
CLAIMED = ".claimed"
# Erasure writes a rewrite beside the original under this name, then renames it over.
PARTIAL = ".{name}.erasing"

_LOCK = threading.RLock()


def exclusive() -> AbstractContextManager:
    """The one lock over the landing folder's files in this process (see the module
    docstring); re-entrant, so a holder may call another holder."""
    return _LOCK


def ingest_landing(
    store: Store,
    config: Config,
    landing: Path | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[FileResult]:
    """Ingest every file waiting in the landing folder, one by one, each filed under
    done/ or failed/ as soon as it is loaded or refused."""
    now = now or utcnow()
    landing = landing or config.path("ingest.landing")
    landing.mkdir(parents=True, exist_ok=True)
    claimed = _claimed_folder(landing)
    layouts = readers.layouts_from_config(config.section("layouts"))
    limits = Limits.from_config(config, now)

    def take(path: Path) -> FileResult:
        shown = str(landing / path.name)
        refused = _refusal(path)
        if refused:
            return FileResult(file=shown, status="rejected", error=f"{shown}: {refused}")
        layout = readers.layout_for(path, layouts, None)
        return ingest_file(store, config, path, layout, limits, progress, shown_as=shown)

    results = []
    # Claimed by a run that stopped before filing them: their turn comes first.
    for path in sorted(claimed.iterdir()):
        with exclusive():
            results.append(_file_away(landing, path, take(path), now))
    for entry in _waiting(landing):
        with exclusive():
            path = _claim(entry, claimed)
            if path is None:
                note = "vanished before its turn (moved or removed meanwhile)"
                results.append(FileResult(file=str(entry), status="skipped", error=note))
                continue
            results.append(_file_away(landing, path, take(path), now))
    return results


def _waiting(landing: Path) -> list[Path]:
    """The entries to take: neither hidden, nor still being written, nor a folder."""
    return sorted(
        p
        for p in landing.iterdir()
        if not p.name.startswith(".")
        and not p.name.endswith((".part", ".tmp"))
        and not (p.is_dir() and not p.is_symlink())
    )


def _claimed_folder(landing: Path) -> Path:
    """The private folder entries are claimed into; refused when it is not dmp's own
    folder (a link planted there would send reads elsewhere)."""
    folder = landing / CLAIMED
    with contextlib.suppress(FileExistsError):  # judged below, never followed
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise DmpError(
            f"{folder}: not a folder of dmp's own (a link, a file or another user's); "
            "remove it and run again"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        folder.chmod(0o700)
    return folder


def _claim(entry: Path, claimed: Path) -> Path | None:
    """Move ``entry`` into the private folder; None when it is gone."""
    target = claimed / entry.name
    try:
        os.rename(entry, target)
    except FileNotFoundError:
        return None
    return target


def _refusal(path: Path) -> str | None:
    """Why landing mode will not open the claimed ``path`` (None: it may). Decided from
    the entry itself (``lstat``), never from what it points to or holds."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link, not read (landing takes regular files only)"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file, not read (landing takes regular files only)"
    if info.st_nlink > 1:
        return (
            f"a file with {info.st_nlink - 1} other hard link(s), not read "
            "(it may be a file from outside the landing folder; copy it in instead)"
        )
    return None


def _file_away(landing: Path, path: Path, result: FileResult, now: datetime) -> FileResult:
    """File the claimed ``path`` under done/ or failed/ (with a ``.reason`` file)."""
    rejected = result.status == "rejected"
    target = _move_aside(path, landing / ("failed" if rejected else "done"), now)
    if rejected:
        reason = target.with_name(target.name + ".reason")
        reason.write_text(f"{result.error}\n")
        _stamp(reason, now)
    return result


def _move_aside(path: Path, folder: Path, now: datetime) -> Path:
    """Move (a link as the link itself) without overwriting an earlier file of the same
    name, stamped with the time of filing."""
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if target.exists() or target.is_symlink():
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        target = folder / f"{path.stem}.{stamp}{''.join(path.suffixes[-1:])}"
    os.rename(path, target)
    _stamp(target, now)
    return target


def _stamp(path: Path, now: datetime) -> None:
    moment = now.replace(tzinfo=UTC).timestamp()
    os.utime(path, (moment, moment), follow_symlinks=False)


def prune(config: Config, now: datetime | None = None, dry_run: bool = False) -> dict:
    """Remove raw files filed under done/ and failed/ (with their ``.reason`` files) and
    loaded cookie-sync spools at least ``landing.keep_days`` old, and the temp files of
    rewrites a stopped erasure left; returns the counts."""
    now = now or utcnow()
    landing = config.path("ingest.landing")
    cutoff = (now - timedelta(days=config.get("landing.keep_days"))).replace(tzinfo=UTC)
    with exclusive():  # no erasure is under way: every temp file found is a leftover
        old = [
            path
            for pattern in ARCHIVES
            for path in landing.glob(f"{pattern}/*")
            if not path.is_dir() or path.is_symlink()
            if path.lstat().st_mtime <= cutoff.timestamp()
            if not _is_partial(path)
        ]
        leftovers = [p for p in landing.rglob(PARTIAL.format(name="*")) if _is_partial(p)]
        if not dry_run:
            for path in old + leftovers:
                path.unlink()
    return {"raw_files_past_keep_days": len(old), "erasure_leftovers": len(leftovers)}


def _is_partial(path: Path) -> bool:
    """An erasure's temp file (never a folder of that name: it is not dmp's)."""
    name = path.name
    return (
        name.startswith(".")
        and name.endswith(".erasing")
        and not stat.S_ISDIR(path.lstat().st_mode)
    )
