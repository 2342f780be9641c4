"""Runs inside a pod: gRPC calls to ``mizzen.test.Echo`` (see grpc_echo.py),
the outcome of each as one JSON list on stdout.

Usage: grpc_client.py HOST:PORT STEP...

- ``unary``: one call with metadata ``x-caller: client``;
- ``fail``: the call the server refuses with NOT_FOUND;
- ``count=N``: one server-streaming call of N messages;
- ``parallel=N``: N unary calls in flight at once on one channel;
- ``web=REQUEST``: the unary call as a browser makes it with gRPC-Web
  (HTTP/1.1 POST, ``application/grpc-web+proto``, length-prefixed frames),
  reporting the HTTP status, the response headers and the decoded frames.

The gRPC steps report the status code, details, answer(s) and the initial and
trailing metadata the client received.
"""

from __future__ import annotations

import http.client
import json
import sys
from typing import Any

import grpc

SERVICE = "/mizzen.test.Echo"
# No proxy variable may send a call elsewhere; names resolve like any
# program's in the pod (getaddrinfo), not through gRPC's own DNS client.
OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.dns_resolver", "native")]
TIMEOUT_S = 10.0


def _metadata(items: Any) -> dict[str, str]:
    return {key: value for key, value in (items or ()) if not key.endswith("-bin")}


def _unary(channel: grpc.Channel, request: bytes) -> dict[str, Any]:
    call = channel.unary_unary(f"{SERVICE}/Unary")
    try:
        answer, state = call.with_call(
            request, metadata=(("x-caller", "client"),), timeout=TIMEOUT_S
        )
        reply: Any = json.loads(answer)
    except grpc.RpcError as error:
        state, reply = error, None
    return {
        "code": state.code().name,
        "details": state.details(),
        "reply": reply,
        "initial": _metadata(state.initial_metadata()),
        "trailing": _metadata(state.trailing_metadata()),
    }


def _count(channel: grpc.Channel, total: int) -> dict[str, Any]:
    call = channel.unary_stream(f"{SERVICE}/Count")
    stream = call(str(total).encode(), metadata=(("x-caller", "client"),), timeout=TIMEOUT_S)
    messages = [message.decode() for message in stream]
    return {
        "code": stream.code().name,
        "messages": messages,
        "initial": _metadata(stream.initial_metadata()),
        "trailing": _metadata(stream.trailing_metadata()),
    }


def _parallel(channel: grpc.Channel, total: int) -> dict[str, Any]:
    call = channel.unary_unary(f"{SERVICE}/Unary")
    pending = [call.future(str(i).encode(), timeout=TIMEOUT_S) for i in range(total)]
    answers = [json.loads(future.result())["request"] for future in pending]
    return {"code": "OK", "answers": answers}


def _frames(body: bytes) -> tuple[list[str], dict[str, str]]:
    """gRPC-Web frames: messages, then trailers in a frame flagged 0x80."""
    messages, trailers, at = [], {}, 0
    while at + 5 <= len(body):
        flags, size = body[at], int.from_bytes(body[at + 1 : at + 5], "big")
        payload = body[at + 5 : at + 5 + size]
        at += 5 + size
        if flags & 0x80:
            for line in payload.decode().split("\r\n"):
                key, sep, value = line.partition(":")
                if sep:
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload.decode())
    return messages, trailers


def _web(target: str, request: bytes) -> dict[str, Any]:
    host, _, port = target.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    frame = b"\x00" + len(request).to_bytes(4, "big") + request
    headers = {
        "Content-Type": "application/grpc-web+proto",
        "X-Grpc-Web": "1",
        "X-Caller": "browser",
    }
    conn.request("POST", f"{SERVICE}/Unary", body=frame, headers=headers)
    response = conn.getresponse()
    messages, trailers = _frames(response.read())
    return {
        "status": response.status,
        "headers": {k.lower(): v for k, v in response.getheaders()},
        "messages": messages,
        "trailers": trailers,
    }


def main(target: str, steps: list[str]) -> None:
    out: list[dict[str, Any]] = []
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        for step in steps:
            kind, _, arg = step.partition("=")
            if kind == "unary":
                out.append(_unary(channel, b"hello"))
            elif kind == "fail":
                out.append(_unary(channel, b"fail"))
            elif kind == "count":
                out.append(_count(channel, int(arg)))
            elif kind == "parallel":
                out.append(_parallel(channel, int(arg)))
            elif kind == "web":
                out.append(_web(target, arg.encode()))
            else:
                raise SystemExit(f"unknown step {step!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
