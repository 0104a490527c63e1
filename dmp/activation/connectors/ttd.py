"""The Trade Desk Data API, first-party data: ``POST {base}/data/advertiser``.

MAIDs go as ``DAID``; cookies only as TTD's own ID (``TDID``) from the partner ID
sync table. Every membership carries its TTL (``TtlInMinutes``, at most 180
days); a TTL of 0 removes it. Failures of single items come back with HTTP 200
as ``FailedLines`` whose ``ItemNumber`` counts items from 1.
"""

from __future__ import annotations

import json
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

MAX_TTL_MINUTES = 180 * 24 * 60


@dataclass(frozen=True, kw_only=True)
class TradeDeskOptions(Options):
    advertiser_id: str
    token_env: str
    data_provider_id: str = ""
    base_url: str = "https://use-data.adsrvr.org"
    partner: str = "ttd"  # whose matches in partner_ids turn our cookies into TDIDs
    ttl_days: int = 30


class TradeDesk(Connector):
    kind = "ttd"
    Options = TradeDeskOptions
    options: TradeDeskOptions
    external_id_help = "TTD data name of the segment"
    capabilities = Capabilities(
        id_types=("maid", "cookie"),
        cookies_via_partner=True,
        ttl_scope="item",
        max_items=100_000,  # no documented item cap: the byte cap binds (~25,000 MAIDs)
        max_bytes=2_500_000,  # past it: 413 MaxRequestSizeExceeded
    )

    def encoder(self, op: str, target: str) -> Callable[[Item], str | None]:
        ttl = 0 if op == "remove" else min(self.options.ttl_days * 1440, MAX_TTL_MINUTES)
        data = f',"Data":[{{"Name":{json_string(target)},"TtlInMinutes":{ttl}}}]}}'

        def encode(item: Item) -> str | None:
            pid = item.pid
            if len(pid) != 36 or pid.count("-") != 4:  # DAIDs and TDIDs are both GUIDs
                return None
            key = '{"DAID":' if item.id_type == "maid" else '{"TDID":'
            return key + json_string(pid) + data

        return encode

    def build(self, op: str, target: str, encoded: list[str], batch: Batch) -> Request:
        head = {"AdvertiserId": self.options.advertiser_id}
        if self.options.data_provider_id:
            head["DataProviderId"] = self.options.data_provider_id
        body = f'{json.dumps(head)[:-1]},"Items":[{",".join(encoded)}]}}'
        headers = {"TTD-Auth": self.secret("token_env"), "Content-Type": "application/json"}
        return Request("POST", f"{self.options.base_url}/data/advertiser", headers, body.encode())

    def parse(self, response: requests.Response, size: int) -> Outcome:
        if not response.ok:
            return http_error(response)
        rejected: dict[int, str] = {}
        unattributed: Counter = Counter()
        for line in body_json(response).get("FailedLines") or []:
            reason = line.get("ErrorCode") or "Unknown"
            number = str(line.get("ItemNumber") or "")
            if number.isdigit() and 1 <= int(number) <= size:
                rejected[int(number) - 1] = reason
            else:
                unattributed[reason] += 1
        return Outcome("ok", rejected=rejected, unattributed=dict(unattributed))
