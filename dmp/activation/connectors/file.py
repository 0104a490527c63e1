"""File export: the whole audience of a segment as one CSV or Parquet file in a folder,
for partners that take files (and for demos).

A file is a snapshot, not a delta: each run rewrites it (written beside and then
renamed, so a reader never sees half a file), streamed by DuckDB straight from
the query. A segment below the minimum audience, or unlinked, has its file removed.
A CSV file neutralises formula-like cells (``csvsafe.write_csv``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from dmp.activation.base import Capabilities, Connector, Options
from dmp.csvsafe import write_csv
from dmp.errors import DmpError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True, kw_only=True)
class FileOptions(Options):
    folder: str = "exports"  # relative to DMP_HOME
    format: str = "csv"

    def __post_init__(self) -> None:
        if self.format not in ("csv", "parquet"):
            raise DmpError(f"option format: expected csv or parquet, got {self.format!r}")


class FileExport(Connector):
    kind = "file"
    Options = FileOptions
    options: FileOptions
    external_id_help = "file name, without extension"
    capabilities = Capabilities(id_types=("cookie", "maid"), snapshot=True)

    @classmethod
    def check_external_id(cls, value: str) -> None:
        if not _SAFE_NAME.match(value):
            raise DmpError(f"file name {value!r}: use letters, digits, '.', '_' and '-'")

    def path(self, target: str) -> Path:
        return self.home / self.options.folder / f"{target}.{self.options.format}"

    def export(
        self, con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any], target: str
    ) -> Path:
        """Write the rows of ``sql`` (id, id_type) as the segment's file; returns its path."""
        path = self.path(target)
        if self.dry_run:
            return path
        if self.options.format == "csv":
            write_csv(con, sql, params, path)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        con.sql(sql, params=params).write_parquet(str(partial))
        os.replace(partial, path)
        return path

    def remove(self, target: str) -> bool:
        """Delete the segment's file; True if there was one."""
        path = self.path(target)
        if self.dry_run or not path.exists():
            return False
        path.unlink()
        return True
