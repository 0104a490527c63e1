"""Meta Custom Audiences: ``POST`` (add) or ``DELETE`` (remove)
``{base}/v{version}/{audience_id}/users``, MAIDs only, lower-case, schema ``MADID``.

One upload is a session (``session_id``, ``batch_seq`` from 1, ``last_batch_flag``,
``estimated_num_total``) of at most 10,000 users a request. Throttling comes as HTTP
400 with error codes 4, 17, 613, 80003 or 80004 and no Retry-After, so the base
backs off; code 190 is a bad token. The answer counts ``num_received`` and
``num_invalid_entries`` without naming the invalid ones, so those are counted,
not attributed. The token travels in the body, never in a URL that logs keep.
"""

from __future__ import annotations

import json
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
    json_string,
)
from dmp.errors import DmpError

THROTTLE_CODES = {4, 17, 613, 80003, 80004}
BAD_TOKEN = 190


@dataclass(frozen=True, kw_only=True)
class MetaOptions(Options):
    token_env: str
    base_url: str = "https://graph.facebook.com"
    version: str = "21.0"
    requests_per_second: float = 2.0


class MetaAudiences(Connector):
    kind = "meta"
    Options = MetaOptions
    options: MetaOptions
    external_id_help = "Custom Audience ID (digits)"
    needs_external_id = True
    capabilities = Capabilities(
        id_types=("maid",),
        ttl_scope="audience",
        max_items=10_000,
        max_bytes=4_000_000,  # no documented byte cap; 10,000 MAIDs are ~0.4 MB
    )

    @classmethod
    def check_external_id(cls, value: str) -> None:
        if not value.isdigit():
            raise DmpError(f"Meta needs the Custom Audience ID (digits) to link to, got {value!r}")

    def encoder(self, op: str, target: str) -> Callable[[Item], str | None]:
        def encode(item: Item) -> str | None:
            madid = item.pid.lower()
            if len(madid) != 36 or madid.count("-") != 4:
                return None
            return f"[{json_string(madid)}]"

        return encode

    def build(self, op: str, target: str, encoded: list[str], batch: Batch) -> Request:
        session = {
            "session_id": batch.upload_id,
            "batch_seq": batch.seq,
            "last_batch_flag": batch.last,
            "estimated_num_total": batch.total,
        }
        head = json.dumps({"access_token": self.secret("token_env"), "session": session})
        body = f'{head[:-1]},"payload":{{"schema":"MADID","data":[{",".join(encoded)}]}}}}'
        url = f"{self.options.base_url}/v{self.options.version}/{target}/users"
        method = "DELETE" if op == "remove" else "POST"
        return Request(method, url, {"Content-Type": "application/json"}, body.encode())

    def parse(self, response: requests.Response, size: int) -> Outcome:
        data = body_json(response)
        if response.ok:
            received = int(data.get("num_received", size))
            if received < size:
                return Outcome("retry", message=f"platform received {received} of {size}")
            invalid = int(data.get("num_invalid_entries") or 0)
            return Outcome("ok", unattributed={"invalid entry": invalid} if invalid else {})
        error = data.get("error") or {}
        code = error.get("code")
        message = f"error {code}: {error.get('message', response.reason)}"
        if code in THROTTLE_CODES:
            return Outcome("retry", throttled=True, message=message)
        if code == BAD_TOKEN:
            return Outcome("auth", message=message)
        return Outcome("fatal", message=message)
