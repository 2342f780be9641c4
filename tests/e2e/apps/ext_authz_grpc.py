"""A gRPC external authorization server for the end-to-end tests: Envoy's
``envoy.service.auth.v3.Authorization/Check``, with the same decision as
ext_authz_http.py (modelled on Istio's sample ext-authz server).

Usage: ext_authz_grpc.py PORT. Binds 0.0.0.0 (``BIND_ADDRESS`` in the
environment overrides it, e.g. 127.0.0.1 for a test on loopback).

- request header ``x-ext-authz: allow`` -> status OK, ``ok_response`` adds
  the header ``x-ext-authz-check-result: allowed`` to the request;
- anything else -> status PERMISSION_DENIED, ``denied_response`` 403 with
  body ``denied by ext_authz for header x-ext-authz: <value>`` and header
  ``x-ext-authz-check-result: denied``.

The header is read from ``attributes.request.http.headers``, or from
``header_map`` when Envoy sends raw headers (``encode_raw_headers``). Each
decision is one JSON line on stdout: pod (``POD_NAME``), decision, method,
path and the header's value.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent import futures
from typing import Any

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3 import external_auth_pb2 as auth
from envoy.service.auth.v3 import external_auth_pb2_grpc as auth_grpc
from envoy.type.v3.http_status_pb2 import Forbidden, HttpStatus
from google.rpc import code_pb2, status_pb2

CHECK_HEADER = "x-ext-authz"
ALLOWED_VALUE = "allow"
RESULT_HEADER = "x-ext-authz-check-result"
POD = os.environ.get("POD_NAME", "")


def header(http: Any, name: str) -> str:
    """The value of request header ``name`` (lower case), '' when absent."""
    if name in http.headers:
        return str(http.headers[name])
    for entry in http.header_map.headers:
        if entry.key.lower() == name:
            return str(entry.value or entry.raw_value.decode(errors="replace"))
    return ""


def _result(value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=RESULT_HEADER, value=value))


def decide(request: auth.CheckRequest) -> auth.CheckResponse:
    http = request.attributes.request.http
    value = header(http, CHECK_HEADER)
    if value == ALLOWED_VALUE:
        result = "allowed"
        response = auth.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=auth.OkHttpResponse(headers=[_result(result)]),
        )
    else:
        result = "denied"
        response = auth.CheckResponse(
            status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
            denied_response=auth.DeniedHttpResponse(
                status=HttpStatus(code=Forbidden),
                headers=[_result(result)],
                body=f"denied by ext_authz for header {CHECK_HEADER}: {value}",
            ),
        )
    decision = {
        "pod": POD,
        "decision": result,
        "method": http.method,
        "path": http.path,
        CHECK_HEADER: value,
    }
    print(json.dumps(decision), flush=True)
    return response


class Authorization(auth_grpc.AuthorizationServicer):
    def Check(self, request: auth.CheckRequest, context: Any) -> auth.CheckResponse:
        return decide(request)


def main(port: int) -> None:
    address = os.environ.get("BIND_ADDRESS", "0.0.0.0")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    auth_grpc.add_AuthorizationServicer_to_server(Authorization(), server)
    server.add_insecure_port(f"{address}:{port}")
    server.start()
    print(f"gRPC ext_authz on {address}:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main(int(sys.argv[1]))
