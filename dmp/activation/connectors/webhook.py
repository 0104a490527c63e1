"""A generic webhook: JSON adds and removes posted to a configured URL.

Each body is signed with HMAC-SHA256 (``X-Signature: sha256=<hex>``) so the
receiver knows it came from us, and carries an ``Idempotency-Key`` derived from
the body, so a batch sent again after a retry or a crash has the same key and
the receiver can drop the repeat. The receiver may refuse single IDs by
answering ``{"rejected": [{"index": i, "reason": "..."}]}`` (index from 0).
"""

from __future__ import annotations

import hashlib
import hmac
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
    http_error,
    json_string,
)


@dataclass(frozen=True, kw_only=True)
class WebhookOptions(Options):
    url: str
    secret_env: str


class Webhook(Connector):
    kind = "webhook"
    Options = WebhookOptions
    options: WebhookOptions
    capabilities = Capabilities(id_types=("cookie", "maid"), max_items=5_000)

    def encoder(self, op: str, target: str) -> Callable[[Item], str | None]:
        return lambda item: f'{{"id":{json_string(item.pid)},"id_type":"{item.id_type}"}}'

    def build(self, op: str, target: str, encoded: list[str], batch: Batch) -> Request:
        head = json.dumps({"destination": self.name, "segment": target, "op": op})
        body = f'{head[:-1]},"ids":[{",".join(encoded)}]}}'.encode()
        signature = hmac.new(self.secret("secret_env").encode(), body, hashlib.sha256)
        headers = {
            "Content-Type": "application/json",
            "X-Signature": f"sha256={signature.hexdigest()}",
            "Idempotency-Key": hashlib.sha256(body).hexdigest()[:32],
        }
        return Request("POST", self.options.url, headers, body)

    def parse(self, response: requests.Response, size: int) -> Outcome:
        if not response.ok:
            return http_error(response)
        outcome = Outcome("ok")
        for entry in body_json(response).get("rejected") or []:
            index = entry.get("index")
            if isinstance(index, int) and 0 <= index < size:
                outcome.rejected[index] = str(entry.get("reason") or "rejected")
        return outcome
