"""Invalid resources: each is rejected with file, resource and exact field path."""

from __future__ import annotations

import textwrap

import pytest

from mizzen.api import parse_text

FILE = "bad.yaml"


def _vs(spec: str, name: str = "reviews") -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}}}\nspec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")
    )


def _dr(spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\n"
        "metadata: {name: reviews, namespace: prod}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec), "  ")
    )


def _gw(spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\n"
        "metadata: {name: gw}\nspec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")
    )


def _se(spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata: {name: ext}\nspec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")
    )


VS = "VirtualService default/reviews"
DR = "DestinationRule prod/reviews"
GW = "Gateway default/gw"
SE = "ServiceEntry default/ext"
ROUTE = "http:\n- route:\n  - destination: {host: reviews}\n"

CASES: list[tuple[str, str, str]] = [
    # (yaml, expected substring of str(error) after "bad.yaml:0: ")
    (
        _vs("hosts: [reviews]\nhttp:\n- route:\n  - destination: {subset: v1}\n"),
        f"{VS}: spec.http[0].route[0].destination.host: required",
    ),
    (
        _vs(
            "hosts: [reviews]\nhttp:\n- route:\n  - destination: {host: reviews}\n    weight: -5\n"
        ),
        f"{VS}: spec.http[0].route[0].weight: must not be negative, got -5",
    ),
    (
        _vs(
            "hosts: [reviews]\nhttp:\n- route:\n  - destination: {host: a}\n    weight: 0\n"
            "  - destination: {host: b}\n    weight: 0\n"
        ),
        f"{VS}: spec.http[0].route: total weight of the destinations must be greater than 0",
    ),
    (
        _vs(
            "hosts: [reviews]\nhttp:\n- route:\n  - destination: {host: reviews}\n    weight: ten\n"
        ),
        f"{VS}: spec.http[0].route[0].weight: must be an integer, got string",
    ),
    (
        _vs("hosts: [reviews]\nhttp:\n- match:\n  - uri: {prefix: /}\n"),
        f"{VS}: spec.http[0]: needs one of route, redirect, directResponse or delegate",
    ),
    (
        _vs(
            "hosts: [reviews]\nhttp:\n- redirect: {uri: /x}\n  route:\n"
            "  - destination: {host: reviews}\n"
        ),
        f"{VS}: spec.http[0]: route and redirect cannot be used together",
    ),
    (
        _vs("hosts: [reviews]\n" + ROUTE + "  match:\n  - uri: {regex: 'a(b'}\n"),
        f"{VS}: spec.http[0].match[0].uri.regex: invalid RE2 regex 'a(b'",
    ),
    (
        _vs(
            "hosts: [reviews]\n" + ROUTE + "  match:\n  - headers:\n      X-User: {exact: jason}\n"
        ),
        f"{VS}: spec.http[0].match[0].headers[X-User]: header name 'X-User' must be lower-case",
    ),
    (
        _vs("hosts: [reviews]\n" + ROUTE + "  match:\n  - uri: {exact: /a, prefix: /b}\n"),
        f"{VS}: spec.http[0].match[0].uri: only one of exact, prefix, regex may be set",
    ),
    (
        _vs("hosts: [reviews]\nhttp:\n- route:\n  - destination: {host: reviews, subset: V_1}\n"),
        f"{VS}: spec.http[0].route[0].destination.subset: invalid subset name",
    ),
    (
        _vs("hosts: ['*']\n" + ROUTE),
        f"{VS}: spec.hosts[0]: '*' is not allowed for the mesh gateway",
    ),
    (
        _vs("hosts: [reviews]\n" + ROUTE + "  timeout: 10 seconds\n"),
        f"{VS}: spec.http[0].timeout: invalid duration '10 seconds'",
    ),
    (
        _vs("hosts: [reviews]\n" + ROUTE + "  timeout: 0s\n"),
        f"{VS}: spec.http[0].timeout: must be a valid duration greater than 1ms",
    ),
    (
        _vs("hosts: [reviews]\n" + ROUTE + "  retries: {attempts: -1}\n"),
        f"{VS}: spec.http[0].retries.attempts: must not be negative, got -1",
    ),
    (
        _vs("hosts: [reviews]\n" + ROUTE + "  retries: {attempts: 3, retryOn: '5xx,bogus'}\n"),
        f"{VS}: spec.http[0].retries.retryOn: unknown retry condition 'bogus'",
    ),
    (
        _vs(
            "hosts: [reviews]\n" + ROUTE + "  fault:\n    abort:\n      httpStatus: 503\n"
            "      percentage: {value: 150}\n"
        ),
        f"{VS}: spec.http[0].fault.abort.percentage.value: must be between 0 and 100, got 150",
    ),
    (
        _vs("hosts: [reviews]\n" + ROUTE + "  fault:\n    abort: {httpStatus: 99}\n"),
        f"{VS}: spec.http[0].fault.abort.httpStatus: must be between 200 and 599, got 99",
    ),
    (
        _vs("hosts: [reviews]\nhttp:\n- redirect: {uri: /x, redirectCode: 200}\n"),
        f"{VS}: spec.http[0].redirect.redirectCode: must be one of 301, 302, 303, 307, 308",
    ),
    (
        _vs("hosts: [reviews]\nhttp:\n- directResponse: {status: 42}\n"),
        f"{VS}: spec.http[0].directResponse.status: must be between 200 and 599, got 42",
    ),
    (
        _vs("hosts: [reviews]\ngateways: [Bad_Gateway]\n" + ROUTE),
        f"{VS}: spec.gateways[0]: invalid gateway reference 'Bad_Gateway'",
    ),
    (
        _vs(
            "hosts: [reviews]\ntcp:\n- route:\n  - destination: {host: r, port: {number: 70000}}\n"
        ),
        f"{VS}: spec.tcp[0].route[0].destination.port.number: must be between 1 and 65535",
    ),
    (
        _vs("hosts: [reviews]\ntls:\n- route:\n  - destination: {host: reviews}\n"),
        f"{VS}: spec.tls[0].match: required",
    ),
    (
        _vs("hosts: [reviews]\n"),
        f"{VS}: spec: needs at least one of http, tcp or tls routes",
    ),
    (
        _vs("hosts: [reviews]\nexportTo: [Prod]\n" + ROUTE),
        f"{VS}: spec.exportTo[0]: must be '.', '*' or a namespace name",
    ),
    (
        _vs("hosts: [reviews]\n" + ROUTE, name="Reviews"),
        "VirtualService default/Reviews: metadata.name: 'Reviews' is not a valid name",
    ),
    (
        _dr("subsets:\n- name: v1\n"),
        f"{DR}: spec.host: required",
    ),
    (
        _dr("host: reviews\nsubsets:\n- name: v1\n- name: v1\n"),
        f"{DR}: spec.subsets[1].name: duplicate subset name 'v1'",
    ),
    (
        _dr("host: reviews\nsubsets:\n- name: Version1\n"),
        f"{DR}: spec.subsets[0].name: 'Version1' is not a valid DNS label",
    ),
    (
        _dr("host: reviews\ntrafficPolicy:\n  loadBalancer: {simple: FASTEST}\n"),
        f"{DR}: spec.trafficPolicy.loadBalancer.simple: must be one of UNSPECIFIED",
    ),
    (
        _dr("host: reviews\ntrafficPolicy:\n  outlierDetection: {maxEjectionPercent: 101}\n"),
        f"{DR}: spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be between 0 and 100",
    ),
    (
        _dr("host: reviews\ntrafficPolicy:\n  tls: {mode: MUTUAL}\n"),
        f"{DR}: spec.trafficPolicy.tls.clientCertificate: required for MUTUAL mode",
    ),
    (
        _dr("host: reviews\ntrafficPolicy:\n  connectionPool:\n    tcp: {connectTimeout: 5x}\n"),
        f"{DR}: spec.trafficPolicy.connectionPool.tcp.connectTimeout: invalid duration '5x'",
    ),
    (
        _gw("servers:\n- port: {number: 80, name: http, protocol: HTTP}\n"),
        f"{GW}: spec.servers[0].hosts: required",
    ),
    (
        _gw("servers:\n- port: {number: 0, name: http, protocol: HTTP}\n  hosts: ['*']\n"),
        f"{GW}: spec.servers[0].port.number: must be between 1 and 65535, got 0",
    ),
    (
        _gw("servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n"),
        f"{GW}: spec.servers[0].tls: required for HTTPS servers",
    ),
    (
        _gw("servers:\n- port: {number: 80, name: http, protocol: SMTP}\n  hosts: ['*']\n"),
        f"{GW}: spec.servers[0].port.protocol: unknown protocol 'SMTP'",
    ),
    (
        _gw("servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['a.*.com']\n"),
        f"{GW}: spec.servers[0].hosts[0]: 'a.*.com': a wildcard may only appear as the first",
    ),
    (
        _gw(
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n"
            "  tls: {mode: SIMPLE, credentialName: a, credentialNames: [b]}\n"
        ),
        f"{GW}: spec.servers[0].tls: only one of credentialName or credentialNames can be set",
    ),
    (
        _se("ports:\n- {number: 80, name: http}\n"),
        f"{SE}: spec.hosts: required",
    ),
    (
        _se("hosts: ['*']\n"),
        f"{SE}: spec.hosts[0]: hostname cannot be wildcard",
    ),
    (
        _se("hosts: [a.com]\nports:\n- {number: 80, name: http}\n- {number: 80, name: web}\n"),
        f"{SE}: spec.ports: port number cannot be duplicated",
    ),
    (
        _se("hosts: [a.com]\nports:\n- {number: 70000, name: http}\n"),
        f"{SE}: spec.ports[0].number: port must be between 1-65535",
    ),
    (
        _se("hosts: [a.com]\nresolution: STATIC\nports:\n- {number: 80, name: http}\n"),
        f"{SE}: spec.endpoints: STATIC resolution needs endpoints or a workloadSelector",
    ),
    (
        _se("hosts: [a.com]\nresolution: NONE\nendpoints:\n- address: 1.2.3.4\n"),
        f"{SE}: spec: NONE mode cannot set endpoints",
    ),
    (
        _se("hosts: [a.com]\nresolution: STATIC\nendpoints:\n- address: example.com\n"),
        f"{SE}: spec.endpoints[0].address: 'example.com' must be an IP address for STATIC",
    ),
    (
        _se("hosts: ['*.a.com']\nresolution: DNS\nports:\n- {number: 80, name: http}\n"),
        f"{SE}: spec.hosts[0]: wildcard host '*.a.com' needs endpoints with DNS resolution",
    ),
    (
        _se("hosts: [a.com]\nresolution: MAGIC\n"),
        f"{SE}: spec.resolution: must be one of NONE, STATIC, DNS",
    ),
    (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
        "spec:\n  ports:\n  - {port: 0, name: http}\n",
        "Service default/web: spec.ports[0].port: must be between 1 and 65535, got 0",
    ),
    (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n"
        "spec:\n  selector: {matchLabels: {app: web}}\n  template:\n"
        "    metadata: {labels: {app: other}}\n    spec:\n      containers: [{name: web}]\n",
        "Deployment shop/web: spec.selector.matchLabels: selector app=web does not match",
    ),
    (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "spec:\n  replicas: -1\n  selector: {matchLabels: {app: web}}\n  template:\n"
        "    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web}]\n",
        "Deployment default/web: spec.replicas: must be a non-negative integer, got -1",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: []\n",
        "Pod default/p: spec.containers: must have at least one container",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - image: x\n",
        "Pod default/p: spec.containers[0].name: required",
    ),
    (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {key: '!!notbase64'}\n",
        "Secret default/s: data[key]: must be base64 encoded",
    ),
    (
        "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: reviews}\n",
        f"{VS}: apiVersion: networking.istio.io/v2 has no VirtualService",
    ),
    (
        "apiVersion: v1\nkind: Namespace\nmetadata: {}\n",
        "Namespace <unnamed>: metadata.name: required",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[1][:60] for c in CASES])
def test_invalid_resource_is_rejected_with_path(text: str, expected: str) -> None:
    result = parse_text(text, FILE)
    assert result.resources == ()
    messages = [str(e) for e in result.errors]
    assert any(m.startswith(f"{FILE}:0: {expected}") for m in messages), messages


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30
