"""Runs inside a pod: N unary calls to ``mizzen.test.Echo`` (grpc_echo.py)
on ONE channel, so one HTTP/2 connection from the client, and a JSON
summary: the count per status code and per answering pod.

Usage: grpc_spread.py HOST:PORT N [IN_FLIGHT] [DEADLINE_S]

Up to IN_FLIGHT calls (default 1) are in flight at once; no call starts
after DEADLINE_S seconds (default 30). How many connections the client
opened is for its sidecar's stats to say (the test reads them).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from concurrent import futures
from typing import Any

import grpc

METHOD = "/mizzen.test.Echo/Unary"
# Names resolve as any program's in the pod (getaddrinfo); no proxy.
OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.dns_resolver", "native")]
TIMEOUT_S = 10.0
MAX_CALLS = 10_000


def main(target: str, total: int, in_flight: int, deadline_s: float) -> dict[str, Any]:
    codes: Counter[str] = Counter()
    pods: Counter[str] = Counter()
    lock = threading.Lock()
    started = time.monotonic()
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        call = channel.unary_unary(METHOD)

        def one(index: int) -> None:
            if time.monotonic() - started >= deadline_s:
                with lock:
                    codes["NOT_SENT"] += 1
                return
            try:
                answer = call(str(index).encode(), timeout=TIMEOUT_S)
                pod, code = str(json.loads(answer)["pod"]), "OK"
            except grpc.RpcError as error:
                pod, code = "-", error.code().name
            with lock:
                codes[code] += 1
                pods[pod] += 1

        with futures.ThreadPoolExecutor(max_workers=in_flight) as pool:
            list(pool.map(one, range(total)))
    return {
        "codes": dict(codes),
        "pods": dict(pods),
        "seconds": round(time.monotonic() - started, 3),
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    calls = min(int(args[1]), MAX_CALLS)
    parallel = int(args[2]) if len(args) > 2 else 1
    deadline = float(args[3]) if len(args) > 3 else 30.0
    print(json.dumps(main(args[0], calls, max(1, parallel), deadline)))
