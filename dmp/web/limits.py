"""Request body caps, enforced while a body is read, never after it was buffered.

Each path has one cap (:func:`body_limit`): ``web.collect_max_bytes`` for the
collector's ``/collect``, ``web.upload_max_bytes`` for seed-list uploads and
``web.request_max_bytes`` for everything else (API JSON, dashboard forms). Two
places apply it:

- in the app (:func:`cap_request`), as Flask's per-request ``max_content_length``:
  a declared ``Content-Length`` over the cap is refused before anything is read,
  a body without one is cut off at the cap while the view reads its stream;
- in `dmp serve` (:func:`create_server`), inside waitress's request parser. Waitress
  buffers a whole body before the app sees it, so only the parser can answer 413
  as soon as the headers declare too much, or a chunked body's bytes pass the cap.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import waitress
from flask import Flask, request
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer

from dmp.config import Config

UPLOAD_PATHS = frozenset({"/seeds", "/api/v1/seeds"})


def body_limit(config: Config, path: str) -> int:
    """The most bytes a request body to ``path`` may have."""
    if path == "/collect":
        return config.get("web.collect_max_bytes")
    if path in UPLOAD_PATHS:
        return config.get("web.upload_max_bytes")
    return config.get("web.request_max_bytes")


def cap_request(app: Flask, config: Config) -> None:
    """Give every request its path's cap before any view or hook reads the body."""

    def _cap() -> None:
        request.max_content_length = body_limit(config, request.path)

    app.before_request_funcs.setdefault(None, []).insert(0, _cap)


def create_server(app: Flask, config: Config, host: str, port: int):
    """A waitress server over ``app`` whose parser refuses a body past its path's cap
    while reading it (413), and never buffers more than that."""
    listeners: dict = {}
    largest = max(body_limit(config, path) for path in ("/collect", *UPLOAD_PATHS, "/"))
    server = waitress.create_server(
        app, map=listeners, host=host, port=port, max_request_body_size=largest + 1
    )
    channel = _capped_channel(partial(body_limit, config))
    for listener in listeners.values():
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = channel
    return server


def _capped_channel(limit_for: Callable[[str], int]) -> type[HTTPChannel]:
    class CappedParser(HTTPRequestParser):
        """Waitress's parser with the request path's cap, known once the headers are."""

        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            cap = limit_for(self.path) + 1  # waitress refuses at >= its maximum
            if cap < self.adj.max_request_body_size:
                self.adj = copy.copy(self.adj)  # the server's settings stay as they are
                self.adj.max_request_body_size = cap

    class CappedChannel(HTTPChannel):
        parser_class = CappedParser

    return CappedChannel
