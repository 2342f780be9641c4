"""Runs inside a pod: a bounded load of HTTP requests to one URL, summed up
as one JSON document on stdout. Python's standard library only.

Usage: load_client.py URL [options]

- ``-n N``: at most N requests in all (default 100);
- ``-c C``: C clients at once, each a thread with its own connection
  (HTTP/1.1 keep-alive), its own cookies and its own tally (default 1);
- ``--deadline S``: no request starts after S seconds (default 30);
- ``--timeout S``: each request's timeout (default 5);
- ``-H 'Name: value'``: a header on every request (repeatable);
- ``--key-header NAME --keys K``: request number i carries
  ``NAME: key-<i % K>``, and the summary tallies the pods per key;
- ``--cookies``: each client keeps the cookies its answers set and sends
  them back, as a browser does;
- ``--new-connection``: a new connection for every request.

The answers are JSON documents naming the pod that answered (echo.py,
echo_modes.py); an answer without one (the sidecar's own, e.g. a 503 when a
circuit breaker trips) is tallied with its ``x-envoy-*`` headers and the
start of its body, where Envoy says why (``reset reason: overflow``).

The summary: ``status`` (count per status, ``error`` for no answer),
``pods`` (count per answering pod), ``status_by_pod``, ``keys``,
``clients`` (per client: its pods, the indexes of its answers that set a
cookie, the first ``set-cookie`` it got), ``envoy_headers``,
``unnamed_bodies``, ``errors``, ``connections`` (opened in all),
``requests``, ``seconds`` and ``deadline_hit``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

MAX_REQUESTS = 10_000
MAX_CONCURRENCY = 64
MAX_DEADLINE_S = 300.0
# Failures of a kept-alive connection the server closed while it was idle:
# the request is sent again once, on a new connection, as HTTP clients do.
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        url = urlsplit(args.url)
        self.host = url.hostname or "localhost"
        self.port = url.port or 80
        self.target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.headers = dict(_header(h) for h in args.header)
        self.lock = threading.Lock()
        self.next_index = 0
        self.started = time.monotonic()
        self.deadline_hit = False
        self.status: Counter[str] = Counter()
        self.pods: Counter[str] = Counter()
        self.status_by_pod: dict[str, Counter[str]] = {}
        self.keys: dict[str, Counter[str]] = {}
        self.envoy_headers: Counter[str] = Counter()
        self.unnamed_bodies: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.connections = 0

    def take(self) -> int | None:
        """The next request's index, or None when the load is done."""
        with self.lock:
            if self.next_index >= self.args.requests:
                return None
            if time.monotonic() - self.started >= self.args.deadline:
                self.deadline_hit = True
                return None
            self.next_index += 1
            return self.next_index - 1

    def connect(self) -> http.client.HTTPConnection:
        with self.lock:
            self.connections += 1
        return http.client.HTTPConnection(self.host, self.port, timeout=self.args.timeout)

    def client(self, tally: dict[str, Any]) -> None:
        conn: http.client.HTTPConnection | None = None
        jar: dict[str, str] = {}
        answers = 0
        while (index := self.take()) is not None:
            headers = dict(self.headers)
            key = ""
            if self.args.key_header:
                key = f"key-{index % self.args.keys}"
                headers[self.args.key_header] = key
            if jar:
                headers["Cookie"] = "; ".join(jar.values())
            for attempt in (0, 1):
                fresh = conn is None
                if conn is None:
                    conn = self.connect()
                try:
                    conn.request(self.args.method, self.target, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                except STALE as error:
                    conn.close()
                    conn = None
                    if attempt == 0 and not fresh:
                        continue
                    self.record_error(error)
                    break
                except (OSError, http.client.HTTPException) as error:
                    conn.close()
                    conn = None
                    self.record_error(error)
                    break
                cookies = response.msg.get_all("Set-Cookie") or []
                if cookies:
                    tally["set_cookie_at"].append(answers)
                    tally["set_cookie"] = tally["set_cookie"] or cookies[0]
                    if self.args.cookies:
                        _keep(jar, cookies)
                pod = self.record(response, body, key)
                tally["pods"][pod or "-"] += 1
                answers += 1
                if self.args.new_connection or response.will_close:
                    conn.close()
                    conn = None
                break
        if conn is not None:
            conn.close()
        tally["requests"] = answers
        tally["cookie"] = "; ".join(jar.values())

    def record(self, response: http.client.HTTPResponse, body: bytes, key: str) -> str:
        status = str(response.status)
        pod = ""
        try:
            document = json.loads(body)
            if isinstance(document, dict):
                pod = str(document.get("pod") or "")
        except ValueError:
            pass
        with self.lock:
            self.status[status] += 1
            if pod:
                self.pods[pod] += 1
                self.status_by_pod.setdefault(pod, Counter())[status] += 1
                if key:
                    self.keys.setdefault(key, Counter())[pod] += 1
            if response.status >= 300:
                for name, value in response.getheaders():
                    if name.lower().startswith("x-envoy-") and name.lower() != (
                        "x-envoy-upstream-service-time"
                    ):
                        self.envoy_headers[f"{name.lower()}: {value}"] += 1
                if not pod:
                    self.unnamed_bodies[body[:120].decode(errors="replace")] += 1
        return pod

    def record_error(self, error: BaseException) -> None:
        with self.lock:
            self.status["error"] += 1
            self.errors[f"{type(error).__name__}: {error}"] += 1

    def run(self) -> dict[str, Any]:
        tallies: list[dict[str, Any]] = [
            {"pods": Counter(), "set_cookie_at": [], "set_cookie": ""}
            for _ in range(self.args.concurrency)
        ]
        threads = [
            threading.Thread(target=self.client, args=(tally,), daemon=True) for tally in tallies
        ]
        for thread in threads:
            thread.start()
        # Every request is bounded by its timeout (twice, with one resend).
        limit = self.args.deadline + 2 * self.args.timeout + 5
        for thread in threads:
            thread.join(max(0.0, limit - (time.monotonic() - self.started)))
        return {
            "requests": sum(self.status.values()),
            "seconds": round(time.monotonic() - self.started, 3),
            "deadline_hit": self.deadline_hit,
            "status": dict(self.status),
            "pods": dict(self.pods),
            "status_by_pod": {pod: dict(c) for pod, c in self.status_by_pod.items()},
            "keys": {key: dict(c) for key, c in sorted(self.keys.items())},
            "clients": [{**t, "pods": dict(t["pods"])} for t in tallies],
            "envoy_headers": dict(self.envoy_headers),
            "unnamed_bodies": dict(self.unnamed_bodies),
            "errors": dict(self.errors),
            "connections": self.connections,
        }


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise SystemExit(f"a header is 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _keep(jar: dict[str, str], cookies: list[str]) -> None:
    """Keeps each cookie's ``name=value`` as it was sent (Envoy's are quoted);
    a ``Max-Age=0`` one is removed."""
    for cookie in cookies:
        pair, *attributes = (part.strip() for part in cookie.split(";"))
        name = pair.partition("=")[0].strip()
        if any(a.lower().replace(" ", "") == "max-age=0" for a in attributes):
            jar.pop(name, None)
        elif name:
            jar[name] = pair


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("-n", "--requests", type=int, default=100)
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("-H", "--header", action="append", default=[])
    parser.add_argument("--key-header", default="")
    parser.add_argument("--keys", type=int, default=1)
    parser.add_argument("--cookies", action="store_true")
    parser.add_argument("--new-connection", action="store_true")
    parser.add_argument("--method", default="GET")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"-n: 1 to {MAX_REQUESTS}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"-c: 1 to {MAX_CONCURRENCY}")
    if not 0 < args.deadline <= MAX_DEADLINE_S:
        parser.error(f"--deadline: more than 0, at most {MAX_DEADLINE_S:.0f}")
    if args.keys < 1:
        parser.error("--keys: at least 1")
    return args


def main() -> None:
    print(json.dumps(Load(parse()).run()))


if __name__ == "__main__":
    main()
