"""Run inside a pod (`mizzen exec POD -- python pod_client.py STEP...`).

Each STEP is done in order and its result printed as one JSON list:

- ``stats``: the sidecar's counters, read from Envoy's admin on
  127.0.0.1:15000 in this pod's network namespace (name -> value);
- ``http=URL``: GET URL, the answer's status and JSON body;
- ``tcp=HOST:PORT``: one line to a remoting port, the JSON line it echoes.

Doing several steps in one exec keeps the "before" and "after" snapshots of
the calling pod's Envoy tight around the connection under test.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from typing import Any

ADMIN = "http://127.0.0.1:15000"
# Only what traffic can move: listeners, clusters and their filters' stats.
STATS_FILTER = r"^(listener|cluster|http|tcp)\."

# No *_proxy variable may send a request anywhere but where it is addressed.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def stats() -> dict[str, int]:
    url = f"{ADMIN}/stats?format=json&filter={STATS_FILTER}"
    with OPENER.open(url, timeout=5) as answer:
        data = json.load(answer)
    return {s["name"]: s["value"] for s in data["stats"] if isinstance(s.get("value"), int)}


def http(url: str) -> dict[str, Any]:
    try:
        with OPENER.open(url, timeout=5) as answer:
            return {"status": answer.status, "body": json.load(answer)}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode(errors="replace")}


def tcp(target: str) -> dict[str, Any]:
    host, _, port = target.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        local = conn.getsockname()[0]
        conn.sendall(b"hello\n")
        line = conn.makefile("rb").readline()
    return {"local": local, "body": json.loads(line)}


def main(steps: list[str]) -> None:
    out: list[Any] = []
    for step in steps:
        kind, _, arg = step.partition("=")
        if kind == "stats":
            out.append(stats())
        elif kind == "http":
            out.append(http(arg))
        elif kind == "tcp":
            out.append(tcp(arg))
        else:
            raise SystemExit(f"unknown step {step!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
