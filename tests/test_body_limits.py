"""Request bodies are capped while they are read (the collector, API JSON, uploads, in
the app and in a real `dmp serve`), /collect reads its batch as a stream of `\\n` lines,
and hostile bodies (too deep, empty lists, rules past their limits) are clear 4xx."""

from __future__ import annotations

import json
import re
import socket

import pytest

from dmp.config import load_config
from dmp.store import open_store
from dmp.web import create_app
from tests.conftest import read_until
from tests.test_rule_limits import NOWHERE, nested_text
from tests.test_web_api import app, token, world  # noqa: F401 (fixtures)
from tests.test_web_collector import spooled

CANONICAL = ("ts", "id", "id_type", "url", "event", "category", "keywords", "country")


@pytest.fixture
def collector(home, monkeypatch):
    config = load_config(home, ["web.collect_max_bytes=2000", "web.request_max_bytes=3000"], env={})
    with open_store(config) as store:
        yield create_app(config, store).test_client(), config


def test_collect_splits_lines_at_newline_only(collector):
    client, config = collector
    first = json.dumps({"id": "c1", "url": "https://a.example/\u2028x"}, ensure_ascii=False)
    second = json.dumps({"id": "c2", "url": "https://a.example/\u2029y\u0085"}, ensure_ascii=False)
    response = client.post("/collect", data=(first + "\r\n" + second + "\n").encode())
    assert response.status_code == 200 and response.json == {"accepted": 2, "rejected": []}
    assert [e["url"] for e in spooled(config)] == [
        "https://a.example/\u2028x",
        "https://a.example/\u2029y\u0085",
    ]


def test_every_spool_line_carries_every_canonical_field(collector):
    client, config = collector
    client.post("/collect", data='{"id": "c1"}\n{"id": "c2", "consent": "X", "url": "u"}')
    client.get("/px.gif?id=c3&id_type=maid")
    lines = spooled(config)
    assert len(lines) == 3
    for line in lines:
        assert set(CANONICAL) | {"consent", "gpc"} <= set(line), line
    assert lines[0]["consent"] is None and lines[1]["consent"] == "X" and lines[0]["url"] is None


def test_collect_refuses_a_body_past_its_cap_and_spools_nothing(collector):
    client, config = collector
    line = json.dumps({"id": "c1", "url": "https://a.example/" + "x" * 100}) + "\n"
    response = client.post("/collect", data=line * 20)  # ~2,500 bytes
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"
    assert "web.collect_max_bytes" in response.json["error"]["message"]
    many = client.post("/collect", data='{"id": "c"}\n' * 10_001)
    assert many.status_code == 413  # past the byte cap already
    assert spooled(config) == []


def test_collect_counts_lines_while_reading(home):
    config = load_config(home, env={})
    with open_store(config) as store:
        client = create_app(config, store).test_client()
        response = client.post("/collect", data='{"id": "c"}\n' * 10_001)
        assert response.status_code == 413 and "10000 lines" in response.json["error"]["message"]
        deep = client.post("/collect", data='{"id": "c"}\n' + "[" * 5000 + "]" * 5000)
        assert deep.status_code == 200
        assert deep.json["rejected"] == [{"line": 2, "reason": "JSON nested too deeply"}]
    assert len(spooled(config)) == 1


def test_api_bodies_are_capped_and_hostile_json_is_a_400(app, token):  # noqa: F811
    client = app.test_client()
    auth = token("bea", "buyer")
    big = {"rule": {"any": [{"domain": "x" * 400}] * 3000}}
    response = client.post("/api/v1/segments/preview", headers=auth, json=big)
    assert (
        response.status_code == 413 and response.json["error"]["code"] == "request_entity_too_large"
    )
    deep = client.post(
        "/api/v1/segments/preview",
        headers={**auth, "Content-Type": "application/json"},
        data='{"rule": ' + nested_text(5000) + "}",
    )
    assert deep.status_code == 400 and deep.json["error"]["code"] == "invalid"
    empty = client.post("/api/v1/optouts", headers=auth, json={"ids": []})
    assert empty.status_code == 400 and empty.json["error"]["code"] == "invalid"


def test_api_refuses_rules_past_their_limits_and_stores_nothing(app, token):  # noqa: F811
    client = app.test_client()
    auth = token("bea", "buyer")
    wide = {"any": [*NOWHERE, {"id_type": "maid"}, {"id_type": "cookie"}, {"event": "x"}]}
    preview = client.post("/api/v1/segments/preview", headers=auth, json={"rule": wide})
    assert preview.status_code == 200 and preview.json["size"] > 0
    too_wide = {"any": NOWHERE + NOWHERE[:4]}
    for path, body in [
        ("/api/v1/segments", {"name": "wide", "rule": too_wide}),
        ("/api/v1/segments/preview", {"rule": too_wide}),
    ]:
        response = client.post(path, headers=auth, json=body)
        assert response.status_code == 400, response.json
        assert response.json["error"] == {
            "code": "invalid_rule",
            "message": "rule: more than 1000 leaves (segments.rule_max_leaves)",
        }
    names = [s["name"] for s in client.get("/api/v1/segments", headers=auth).json["segments"]]
    assert "wide" not in names


def _serve(dmp_process, *settings: str) -> tuple[str, int]:
    proc = dmp_process(*(f"--set={s}" for s in settings), "serve", "--port", "0")
    listening = read_until(proc.stderr, "dmp serve: listening on")[-1]
    host, port = re.search(r"http://([^:/\s]+):(\d+)", listening).groups()
    return host, int(port)


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_serve_refuses_over_limit_bodies_while_reading(dmp_process):
    host, port = _serve(dmp_process, "web.collect_max_bytes=10000", "web.request_max_bytes=20000")
    line = b'{"id": "c1", "url": "https://a.example/"}\n'
    # Chunked, with no declared length: answered once the cap's worth has come,
    # while the client is still sending.
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"POST /collect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = line * 50
        for _ in range(6):  # 12,600 bytes: past the cap, and the body is not finished
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert _answer(sock).startswith(b"HTTP/1.1 413")
    # A declared length past the cap: answered after the headers, before any body.
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"POST /api/v1/segments HTTP/1.1\r\nHost: x\r\nContent-Length: 20001\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 413")
    # Within the cap, /collect takes the batch.
    with socket.create_connection((host, port)) as sock:
        body = line * 3
        sock.sendall(b"POST /collect HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body)
        assert _answer(sock).startswith(b"HTTP/1.1 200")
