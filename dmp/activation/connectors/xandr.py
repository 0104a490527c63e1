"""Xandr real-time segments: ``POST {base}/rt-segment``.

Each user carries a ``seg_block`` of segment IDs with an ``expiration`` in minutes;
-1 removes. Past 1,000 users or 1 MB a request the platform silently drops the
rest while answering ``status: "OK"`` with ``warnings``, so the caps here are
hard limits and warnings are counted. A MAID does not say whether it is an IDFA
or an AAID, so the domain is a destination option.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import requests

from dmp.activation.base import (
    Batch,
    Capabilities,
    Connector,
    Item,
    Options,
    Outcome,
    Request,
    body_json,
    http_error,
    json_string,
)
from dmp.errors import DmpError


@dataclass(frozen=True, kw_only=True)
class XandrOptions(Options):
    token_env: str
    base_url: str = "https://streaming-data.appnexus.com"
    maid_domain: str = "aaid"  # or "idfa"
    ttl_days: int = 30


class XandrSegments(Connector):
    kind = "xandr"
    Options = XandrOptions
    options: XandrOptions
    external_id_help = "Xandr segment ID (seg_id, digits)"
    needs_external_id = True
    capabilities = Capabilities(
        id_types=("maid",),
        ttl_scope="item",
        max_items=1_000,
        max_bytes=1_000_000,
    )

    @classmethod
    def check_external_id(cls, value: str) -> None:
        if not value.isdigit():
            raise DmpError(f"Xandr needs the numeric seg_id to link to, got {value!r}")

    def encoder(self, op: str, target: str) -> Callable[[Item], str | None]:
        minutes = -1 if op == "remove" else self.options.ttl_days * 1440
        domain = json_string(self.options.maid_domain)
        tail = (
            f',"domain":{domain},"seg_block":[{{"seg_id":{int(target)},"expiration":{minutes}}}]}}'
        )
        return lambda item: '{"user_id":' + json_string(item.pid) + tail

    def build(self, op: str, target: str, encoded: list[str], batch: Batch) -> Request:
        headers = {"Authorization": self.secret("token_env"), "Content-Type": "application/json"}
        body = f'{{"rt_segment":[{",".join(encoded)}]}}'.encode()
        return Request("POST", f"{self.options.base_url}/rt-segment", headers, body)

    def parse(self, response: requests.Response, size: int) -> Outcome:
        if not response.ok:
            return http_error(response)
        data = body_json(response)
        data = data.get("response", data)
        if data.get("status") != "OK":
            return Outcome("fatal", message=f"status {data.get('status')}: {data.get('error')}")
        warnings = Counter(f"warning: {str(w)[:80]}" for w in data.get("warnings") or [])
        return Outcome("ok", unattributed=dict(warnings))
