"""Ingest: log files -> events, devices, id_links (see ``loader``); the landing folder's
life cycle (see ``landing``)."""

from dmp.ingest.landing import ingest_landing
from dmp.ingest.loader import FileResult, ingest_files

__all__ = ["FileResult", "ingest_files", "ingest_landing"]
