"""dmp: an anonymous-audience data management platform.

Stages, in data-flow order: ``store`` (DuckDB + migrations), ``ingest``
(logs -> events, devices, id_links), then identity, interests, segments,
lookalike and activation as they land. ``cli`` and ``jobs`` are thin shells.
"""

__version__ = "0.1.0"
