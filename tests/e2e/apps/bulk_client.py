"""Runs inside a pod: large and long-lived requests to bulk_http.py, the
outcome of each step as one JSON list on stdout.

Usage: bulk_client.py HOST:PORT STEP...

- ``upload=N``: POST N bytes (streamed, Content-Length); the checksum sent
  beside the server's answer;
- ``download=N``: GET N bytes; the checksum received beside the server's;
- ``expect=N``: POST N bytes with ``Expect: 100-continue`` over a raw
  socket, sending the body only after the interim 100 arrives;
- ``events=N,S``: read an SSE stream of N events S seconds apart, with the
  time each event arrived (seconds from the request).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

CHUNK = 64 * 1024
TIMEOUT_S = 120.0


def _random_chunks(total: int, digest: Any) -> Iterator[bytes]:
    seed = b"upload"
    sent = 0
    while sent < total:
        seed = hashlib.sha256(seed).digest()
        piece = (seed * (CHUNK // 32))[: min(CHUNK, total - sent)]
        digest.update(piece)
        sent += len(piece)
        yield piece


def upload(host: str, port: int, total: int) -> dict[str, Any]:
    digest = hashlib.sha256()
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    started = time.monotonic()
    conn.request(
        "POST",
        "/upload",
        body=_random_chunks(total, digest),
        headers={"Content-Length": str(total), "Content-Type": "application/octet-stream"},
    )
    response = conn.getresponse()
    answer = json.loads(response.read())
    return {
        "status": response.status,
        "server": answer,
        "sent_sha256": digest.hexdigest(),
        "seconds": round(time.monotonic() - started, 3),
    }


def download(host: str, port: int, total: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    started = time.monotonic()
    conn.request("GET", f"/download?bytes={total}")
    response = conn.getresponse()
    digest, received = hashlib.sha256(), 0
    while piece := response.read(CHUNK):
        digest.update(piece)
        received += len(piece)
    return {
        "status": response.status,
        "bytes": received,
        "sha256": digest.hexdigest(),
        "server_sha256": response.getheader("x-content-sha256"),
        "seconds": round(time.monotonic() - started, 3),
    }


def expect_continue(host: str, port: int, total: int) -> dict[str, Any]:
    body = b"x" * total
    with socket.create_connection((host, port), timeout=10) as conn:
        head = (
            f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {total}\r\n"
            "Expect: 100-continue\r\n\r\n"
        )
        conn.sendall(head.encode())
        reader = conn.makefile("rb")
        interim = reader.readline().decode().strip()
        while reader.readline() not in (b"\r\n", b""):
            pass  # the interim response's headers, if any
        conn.sendall(body)
        status = reader.readline().decode().strip()
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        answer = json.loads(reader.read(length))
    return {"interim": interim, "status": status, "server": answer}


def events(host: str, port: int, count: int, every: float) -> dict[str, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=every + 30)
    started = time.monotonic()
    conn.request("GET", f"/events?count={count}&every={every}")
    response = conn.getresponse()
    arrivals, ids = [], []
    for line in response:
        if line.startswith(b"id: "):
            ids.append(int(line[4:]))
            arrivals.append(round(time.monotonic() - started, 3))
    return {
        "status": response.status,
        "type": response.getheader("Content-Type"),
        "ids": ids,
        "arrivals": arrivals,
        "ended": round(time.monotonic() - started, 3),
    }


def main(target: str, steps: list[str]) -> None:
    host, _, port_text = target.rpartition(":")
    port = int(port_text)
    out: list[dict[str, Any]] = []
    for step in steps:
        kind, _, arg = step.partition("=")
        if kind == "upload":
            out.append(upload(host, port, int(arg)))
        elif kind == "download":
            out.append(download(host, port, int(arg)))
        elif kind == "expect":
            out.append(expect_continue(host, port, int(arg)))
        elif kind == "events":
            count, every = arg.split(",")
            out.append(events(host, port, int(count), float(every)))
        else:
            raise SystemExit(f"unknown step {step!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
