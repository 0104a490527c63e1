"""Landing mode: load what waits in the landing folder, file it under done/ or failed/,
and remove it from there once it has been kept ``landing.keep_days``.

Only regular files directly in the folder are taken. A symbolic link (wherever it
points) or anything that resolves outside the folder is never opened: it is filed
under failed/ with a reason that names the kind of entry, not its content, so a
link cannot make dmp load, quote or move a file that is not the landing folder's.
A file filed away gets the time of filing as its modification time, which is
what ``prune`` measures its age by.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dmp.clock import utcnow
from dmp.config import Config
from dmp.ingest.loader import FileResult, Progress, ingest_files
from dmp.store import Store

# Where filed-away raw files are kept, relative to the landing folder.
ARCHIVES = ("done", "failed", "idsync/*/done")


def ingest_landing(
    store: Store,
    config: Config,
    landing: Path | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[FileResult]:
    """Ingest every file waiting in the landing folder, then file it under done/ or failed/."""
    now = now or utcnow()
    landing = landing or config.path("ingest.landing")
    landing.mkdir(parents=True, exist_ok=True)
    waiting = sorted(
        p
        for p in landing.iterdir()
        if not p.name.startswith(".")
        and not p.name.endswith((".part", ".tmp"))
        and not (p.is_dir() and not p.is_symlink())
    )
    refused = {p: _refusal(p, landing) for p in waiting}
    readable = [p for p in waiting if refused[p] is None]
    done = ingest_files(store, config, readable, now=now, progress=progress)
    loaded = dict(zip(readable, done, strict=True))
    results = []
    for path in waiting:
        result = loaded.get(path) or FileResult(
            file=str(path), status="rejected", error=refused[path]
        )
        target = _move_aside(
            path, landing / ("failed" if result.status == "rejected" else "done"), now
        )
        if result.status == "rejected":
            reason = target.with_name(target.name + ".reason")
            reason.write_text(f"{result.error}\n")
            _stamp(reason, now)
        results.append(result)
    return results


def _refusal(path: Path, landing: Path) -> str | None:
    """Why landing mode will not open ``path`` (None: it may). Decided from the entry
    itself (``lstat``), never from what it points to or holds."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return f"{path}: a symbolic link, not read (landing takes regular files only)"
    if not stat.S_ISREG(mode):
        return f"{path}: not a regular file, not read (landing takes regular files only)"
    if path.resolve().parent != landing.resolve():
        return f"{path}: resolves outside the landing folder, not read"
    return None


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
    loaded cookie-sync spools at least ``landing.keep_days`` old; returns the count."""
    now = now or utcnow()
    landing = config.path("ingest.landing")
    cutoff = (now - timedelta(days=config.get("landing.keep_days"))).replace(tzinfo=UTC)
    old = [
        path
        for pattern in ARCHIVES
        for path in landing.glob(f"{pattern}/*")
        if not path.is_dir() or path.is_symlink()
        if path.lstat().st_mtime <= cutoff.timestamp()
    ]
    if not dry_run:
        for path in old:
            path.unlink()
    return {"raw_files_past_keep_days": len(old)}
