"""A gRPC server for the end-to-end tests, without generated code: the
service ``mizzen.test.Echo`` takes and returns raw bytes (grpcio's generic
handlers), so no .proto has to be compiled.

Usage: grpc_echo.py PORT.

- ``Unary``: answers a JSON object naming the pod, the request and the
  metadata the server received; it sends initial metadata
  ``x-echo-initial`` and trailing metadata ``x-echo-trailer``. A request
  of ``fail`` is refused with NOT_FOUND, its details and trailing metadata
  ``x-reason``, so that a non-OK status can be followed through the mesh.
- ``Count``: server streaming; the request is a number N and the answer N
  messages ``0`` .. ``N-1``, then trailing metadata ``x-count``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

SERVICE = "mizzen.test.Echo"
POD = os.environ.get("POD_NAME", "")


def _identity(data: bytes) -> bytes:
    return data


def unary(request: bytes, context: Any) -> bytes:
    received = {key: value for key, value in context.invocation_metadata()}
    context.send_initial_metadata((("x-echo-initial", POD),))
    if request == b"fail":
        context.set_trailing_metadata((("x-reason", "missing"),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no greeting named fail")
    context.set_trailing_metadata((("x-echo-trailer", "done"),))
    answer = {"pod": POD, "request": request.decode(), "metadata": received}
    return json.dumps(answer).encode()


def count(request: bytes, context: Any) -> Iterator[bytes]:
    total = int(request.decode())
    for index in range(total):
        yield str(index).encode()
    context.set_trailing_metadata((("x-count", str(total)),))


def main(port: int) -> None:
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=_identity, response_serializer=_identity
        ),
        "Count": grpc.unary_stream_rpc_method_handler(
            count, request_deserializer=_identity, response_serializer=_identity
        ),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    print(f"gRPC echo on {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main(int(sys.argv[1]))
