"""How soon a real `dmp serve` refuses an over-limit /collect body (target: 413 within
50 ms of receiving the limit's worth of bytes).

    python bench/collect_limit.py [--limit 8388608] [--chunk 65536] [--pause 0.005]

Starts `dmp serve` (waitress) on a throw-away instance and, with a raw socket,
sends a chunked body slowly (``--chunk`` bytes every ``--pause`` seconds), timing
from the moment the limit's worth of bytes is sent to the first byte of the
answer; then a body whose declared Content-Length is over the limit, timed from
the end of its headers. Prints both latencies in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time


def start_server(home: str, limit: int) -> tuple[subprocess.Popen, str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp", "--home", home, "--set", f"web.collect_max_bytes={limit}",
         "serve", "--port", "0"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    for line in proc.stderr:
        found = re.search(r"listening on http://([^:/\s]+):(\d+)", line)
        if found:
            return proc, found[1], int(found[2])
    raise SystemExit("dmp serve did not start")


def answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def chunked_latency(host: str, port: int, limit: int, chunk: int, pause: float) -> float:
    """Milliseconds from sending the limit's worth of body to the first answer byte."""
    body = b'{"id":"c1","url":"https://a.example/"}\n' * (chunk // 40 + 1)
    body = body[:chunk]
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"POST /collect HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent, reached = 0, None
        while not answered(sock):
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(body), body))
            except OSError:  # the server answered and closed while we sent
                break
            sent += len(body)
            if reached is None and sent >= limit:
                reached = time.perf_counter()
            if reached is None:
                time.sleep(pause)
        sock.settimeout(30)
        first = sock.recv(64)
        elapsed = (time.perf_counter() - reached) * 1000
    assert first.startswith(b"HTTP/1.1 413"), first
    return elapsed


def declared_latency(host: str, port: int, limit: int) -> float:
    """Milliseconds from the end of headers declaring too much to the answer."""
    with socket.create_connection((host, port)) as sock:
        start = time.perf_counter()
        sock.sendall(
            b"POST /collect HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % (limit + 1)
        )
        sock.settimeout(30)
        first = sock.recv(64)
        elapsed = (time.perf_counter() - start) * 1000
    assert first.startswith(b"HTTP/1.1 413"), first
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--pause", type=float, default=0.005)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        proc, host, port = start_server(home, args.limit)
        try:
            slow = chunked_latency(host, port, args.limit, args.chunk, args.pause)
            declared = declared_latency(host, port, args.limit)
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"limit {args.limit:,} bytes, sent in {args.chunk:,}-byte chunks every {args.pause}s")
    print(f"chunked body: 413 {slow:.1f} ms after the limit's worth was sent (target < 50)")
    print(f"declared Content-Length over the limit: 413 {declared:.1f} ms after the headers")


if __name__ == "__main__":
    main()
