"""A small fake of the ad platforms' HTTP APIs, on a real loopback port.

It speaks the request shapes of The Trade Desk (``/data/advertiser``), Meta
(``/v{N}/{audience}/users``), Xandr (``/rt-segment``) and the webhook (``/hook``),
checks credentials and limits like they do, and keeps each segment's membership,
so a test can compare what the platform holds with what dmp meant it to hold.
Faults are injected: canned answers for the next requests (429 with Retry-After,
503...), IDs refused per item, and paths that are down.

``python -m tests.fake_dsp [PORT]`` serves until killed and prints its port (the
bench runs it in a process of its own so its work is not counted as dmp's).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "fake-token"
SECRET = "fake-secret"
TTD_MAX_BYTES = 2_500_000
_META_PATH = re.compile(r"^/v[\d.]+/(?P<audience>\d+)/users$")


class FakeDSP:
    """The fake's state and fault controls; ``with FakeDSP() as dsp: dsp.url``."""

    def __init__(self, record: bool = True, port: int = 0):
        self.record = record
        self.lock = threading.Lock()
        self.members: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.received: set[str] = set()  # every ID in any payload, ever
        self.requests: list[tuple[str, str, int]] = []  # method, path, items
        self.canned: list[tuple[int, dict, bytes]] = []
        self.rejected: dict[str, str] = {}  # ID -> reason it is refused with
        self.down: set[str] = set()  # path prefixes answering 503
        self.tokens = {TOKEN}
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.server.dsp = self
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeDSP:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, count: int, status: int, headers: dict | None = None, body=b"") -> None:
        """Answer the next ``count`` requests with this, whatever they are."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.canned.extend([(status, headers or {}, body)] * count)

    def reject(self, ids, reason: str = "UserNotMapped") -> None:
        self.rejected.update(dict.fromkeys(ids, reason))

    def segment(self, platform: str, name: str) -> set[str]:
        return set(self.members[(platform, str(name))])

    # --- platforms: each returns (status, body) -----------------------------------

    def ttd(self, headers, body: bytes):
        if headers.get("TTD-Auth") not in self.tokens:
            return 401, {"Message": "AuthenticationFailed"}
        if len(body) > TTD_MAX_BYTES:
            return 413, {"ErrorCode": "MaxRequestSizeExceeded"}
        failed = []
        items = json.loads(body)["Items"]
        for number, item in enumerate(items, start=1):
            uid = item.get("DAID") or item.get("TDID")
            if self._refused(uid):
                failed.append({"ErrorCode": self.rejected[uid], "ItemNumber": str(number)})
                continue
            for data in item["Data"]:
                self._apply("ttd", data["Name"], uid, data["TtlInMinutes"] > 0)
        return 200, {"FailedLines": failed}, len(items)

    def meta(self, method: str, audience: str, body: bytes):
        data = json.loads(body)
        if data.get("access_token") not in self.tokens:
            return 400, {"error": {"code": 190, "message": "Invalid OAuth access token"}}
        rows = data["payload"]["data"]
        if len(rows) > 10_000:
            return 400, {"error": {"code": 100, "message": "Too many users"}}
        for (madid,) in rows:
            self._apply("meta", audience, madid, method == "POST")
        session = data["session"]["session_id"]
        answer = {"audience_id": audience, "session_id": session, "num_received": len(rows)}
        return 200, {**answer, "num_invalid_entries": 0}, len(rows)

    def xandr(self, headers, body: bytes):
        if headers.get("Authorization") not in self.tokens:
            return 401, {"response": {"status": "UNAUTH"}}
        users = json.loads(body)["rt_segment"]
        warnings = []
        if len(users) > 1000 or len(body) > 1_000_000:  # silently drops the rest, like Xandr
            users, warnings = users[:1000], ["request over the cap: users dropped"]
        for user in users:
            for block in user["seg_block"]:
                self._apply("xandr", str(block["seg_id"]), user["user_id"], block["expiration"] > 0)
        return 200, {"response": {"status": "OK", "warnings": warnings}}, len(users)

    def webhook(self, headers, body: bytes):
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if headers.get("X-Signature") != f"sha256={expected}" or not headers.get("Idempotency-Key"):
            return 401, {"error": "bad signature"}
        data = json.loads(body)
        rejected = []
        for index, entry in enumerate(data["ids"]):
            if self._refused(entry["id"]):
                rejected.append({"index": index, "reason": self.rejected[entry["id"]]})
            else:
                self._apply("webhook", data["segment"], entry["id"], data["op"] == "add")
        return 200, {"rejected": rejected}, len(data["ids"])

    def _refused(self, uid: str) -> bool:
        if self.record:
            self.received.add(uid)
        return uid in self.rejected

    def _apply(self, platform: str, segment: str, uid: str, add: bool) -> None:
        if self.record:
            self.received.add(uid)
        members = self.members[(platform, segment)]
        if add:
            members.add(uid)
        else:
            members.discard(uid)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the platforms allow

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        dsp: FakeDSP = self.server.dsp
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with dsp.lock:
            if dsp.canned:
                status, headers, raw = dsp.canned.pop(0)
                return self._answer(status, raw, headers)
            if any(self.path.startswith(prefix) for prefix in dsp.down):
                dsp.requests.append((self.command, self.path, 0))
                return self._answer(503, b"down")
            answer = self._route(dsp, body)
            status, data, items = (*answer, 0)[:3]
            if dsp.record:
                dsp.requests.append((self.command, self.path, items))
        self._answer(status, json.dumps(data).encode())

    def _route(self, dsp: FakeDSP, body: bytes):
        meta = _META_PATH.match(self.path)
        if meta:
            return dsp.meta(self.command, meta["audience"], body)
        if self.path == "/data/advertiser":
            return dsp.ttd(self.headers, body)
        if self.path == "/rt-segment":
            return dsp.xandr(self.headers, body)
        if self.path.startswith("/hook"):
            return dsp.webhook(self.headers, body)
        return 404, {"error": f"no route {self.path}"}

    def _answer(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet: tests read the fake's state instead
        pass


if __name__ == "__main__":
    with FakeDSP(record=False, port=int(sys.argv[1]) if len(sys.argv) > 1 else 0) as dsp:
        print(dsp.server.server_address[1], flush=True)
        dsp.thread.join()
