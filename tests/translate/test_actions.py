from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from mizzen.api.resources import (
    FaultAbort,
    FaultDelay,
    HTTPFaultInjection,
    HTTPRedirect,
    HTTPRetry,
)
from mizzen.translate.actions import (
    DEFAULT_RETRY_ON,
    destination_port,
    fault_config,
    redirect_action,
    retry_policy,
    split_weights,
)

from .factories import service


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([None], [100]),
        ([None, None], [50, 50]),
        ([None, None, None], [34, 33, 33]),
        ([80, 20], [80, 20]),
        ([100, None], [100, 0]),
        ([1, 1], [50, 50]),
        ([30, 30, 30], [34, 33, 33]),
        ([0, 0], [50, 50]),
    ],
)
def test_split_weights(weights: list[int | None], expected: list[int]) -> None:
    assert split_weights(weights) == expected


def as_dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = MessageToDict(message)
    return result


def test_default_retry_policy_is_istios() -> None:
    policy = as_dict(retry_policy(None))
    assert policy["retryOn"] == DEFAULT_RETRY_ON
    assert policy["numRetries"] == 2
    assert policy["retriableStatusCodes"] == [503]
    assert policy["retryHostPredicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        (HTTPRetry(0), None),
        (
            HTTPRetry(5),
            {"numRetries": 5, "retryOn": DEFAULT_RETRY_ON, "retriableStatusCodes": [503]},
        ),
        (
            HTTPRetry(3, per_try_timeout=1.5, retry_on="gateway-error,connect-failure"),
            {
                "numRetries": 3,
                "retryOn": "gateway-error,connect-failure",
                "perTryTimeout": "1.500s",
            },
        ),
        (
            HTTPRetry(1, retry_on="5xx,429,503"),
            {
                "numRetries": 1,
                "retryOn": "5xx,retriable-status-codes",
                "retriableStatusCodes": [429, 503],
            },
        ),
    ],
)
def test_retry_policy(retry: HTTPRetry, expected: dict[str, Any] | None) -> None:
    policy = retry_policy(retry)
    if expected is None:
        assert policy is None
        return
    found = as_dict(policy)
    assert {k: found.get(k) for k in expected} == expected


def test_fault_percentages_are_per_million() -> None:
    fault = HTTPFaultInjection(
        delay=FaultDelay(2.0, 10.0), abort=FaultAbort(grpc_status="UNAVAILABLE", percentage=0.1)
    )
    assert as_dict(fault_config(fault)) == {
        "delay": {
            "fixedDelay": "2s",
            "percentage": {"numerator": 100000, "denominator": "MILLION"},
        },
        "abort": {"grpcStatus": 14, "percentage": {"numerator": 1000, "denominator": "MILLION"}},
    }


@pytest.mark.parametrize(
    ("redirect", "expected"),
    [
        (HTTPRedirect(uri="/new"), {"pathRedirect": "/new"}),
        (
            HTTPRedirect(authority="b", redirect_code=302),
            {"hostRedirect": "b", "responseCode": "FOUND"},
        ),
        (
            HTTPRedirect(scheme="https", port=8443, redirect_code=308),
            {"schemeRedirect": "https", "portRedirect": 8443, "responseCode": "PERMANENT_REDIRECT"},
        ),
    ],
)
def test_redirect(redirect: HTTPRedirect, expected: dict[str, Any]) -> None:
    assert as_dict(redirect_action(redirect)) == expected


TWO_PORTS = service("multi", ports=(("http", 8080, "HTTP"), ("http-admin", 9090, "HTTP")))


@pytest.mark.parametrize(
    ("svc", "given", "listener", "expected"),
    [
        (service("one"), None, 80, 9080),  # one port: that port
        (TWO_PORTS, None, 9090, 9090),  # several: the listener's
        (TWO_PORTS, 8080, 9090, 8080),  # given wins
        (TWO_PORTS, None, 7000, 8080),  # listener port unknown: the first
        (None, None, 7000, 7000),  # unknown service: the listener's
    ],
)
def test_destination_port(svc: Any, given: int | None, listener: int, expected: int) -> None:
    assert destination_port(svc, given, listener) == expected
