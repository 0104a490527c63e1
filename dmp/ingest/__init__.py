"""Ingest: log files -> events, devices, id_links (see ``loader``)."""

from dmp.ingest.loader import FileResult, ingest_files, ingest_landing

__all__ = ["FileResult", "ingest_files", "ingest_landing"]
