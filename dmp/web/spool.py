"""Durable spool files: how the collector hands events to the ingest job without
touching DuckDB on the request path.

Lines are appended to ``NAME.jsonl.part`` (or ``.csv.part``) in a folder, flushed
and fsynced before the request is acknowledged, so an acknowledged event survives
a crash. At ``max_bytes`` or ``max_seconds`` the file is closed and renamed
without ``.part``: the ingest job (which skips ``.part`` files) then loads it. A
``.part`` file left by a process that died is handed over the same way when the
next spool over that folder starts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dmp.clock import utcnow
from dmp.config import Config


class Spool:
    """Thread-safe appender of whole lines to rotating files in ``folder``."""

    def __init__(self, folder: Path, suffix: str, max_bytes: int, max_seconds: float):
        self.folder, self.suffix = folder, suffix
        self.max_bytes, self.max_seconds = max_bytes, max_seconds
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self._seq = 0
        self._tag = f"{os.getpid()}-{id(self):x}"
        self.recover()

    @classmethod
    def for_config(cls, config: Config, kind: str = "events") -> Spool:
        landing = config.path("ingest.landing")
        folder, suffix = (landing, ".jsonl") if kind == "events" else (landing / kind, ".csv")
        return cls(
            folder, suffix, config.get("web.spool_max_bytes"), config.get("web.spool_max_seconds")
        )

    def append(self, lines: list[str]) -> None:
        """Write the lines (each without its newline) durably; returns once on disk."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        with self._lock:
            if self._path is None:
                self._open()
            with open(self._path, "ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._size += len(data)
            if self._size >= self.max_bytes or self._age() >= self.max_seconds:
                self._close()

    def rotate(self, min_age: float = 0.0) -> Path | None:
        """Hand the current file to ingest now (if it is at least ``min_age`` s old)."""
        with self._lock:
            if self._path is None or self._age() < min_age:
                return None
            return self._close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hand the current file to ingest and hold every append until the block ends:
        erasure rewrites the folder's files meanwhile, none of them open."""
        with self._lock:
            if self._path is not None:
                self._close()
            yield

    def recover(self) -> list[Path]:
        """Hand over ``.part`` files another (dead) process left in the folder."""
        if not self.folder.exists():
            return []
        done = []
        for part in sorted(self.folder.glob(f"collector-*{self.suffix}.part")):
            if self._tag in part.name:
                continue
            target = part.with_name(part.name.removesuffix(".part"))
            part.rename(target)
            done.append(target)
        return done

    def _age(self) -> float:
        return time.monotonic() - self._opened

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = utcnow().strftime("%Y%m%dT%H%M%S")
        self._path = self.folder / f"collector-{stamp}-{self._tag}-{self._seq}{self.suffix}.part"
        self._size, self._opened = 0, time.monotonic()

    def _close(self) -> Path:
        target = self._path.with_name(self._path.name.removesuffix(".part"))
        self._path.rename(target)
        self._path = None
        return target


class Rotator(threading.Thread):
    """In `dmp serve`: hands over spool files past their age even when no request
    comes, so the ingest job never waits on a quiet collector."""

    def __init__(self, spools: Callable[[], list[Spool]], every: float):
        super().__init__(name="spool-rotator", daemon=True)
        self.spools, self.every = spools, every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            for spool in self.spools():
                spool.rotate(min_age=spool.max_seconds)

    def stop(self) -> None:
        """Stop, handing every open spool file to ingest (a clean shutdown)."""
        self.stopped.set()
        for spool in self.spools():
            spool.rotate()
