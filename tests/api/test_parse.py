"""Parsing behaviour: documents, defaults, skipped kinds, YAML errors, folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from mizzen.api import ConfigError, LoadResult, Skipped, load_paths, parse_text
from mizzen.api.resources import (
    DestinationRule,
    Gateway,
    GroupVersionKind,
    Namespace,
    Pod,
    PodController,
    Secret,
    Service,
    ServiceEntry,
    Source,
    StringMatch,
    VirtualService,
)
from mizzen.api.validate_crd import parse_duration

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
        x-debug: {}
      queryParams:
        q: {}
      uri: {prefix: /api}
    fault:
      delay: {fixedDelay: 1.5s, percentage: {value: 10}}
    retries: {attempts: 3, perTryTimeout: 100ms}
    timeout: 1m
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
      weight: 80
    - destination: {host: reviews, subset: v3}
      weight: 20
  - route:
    - destination: {host: reviews}
"""


def _one(text: str) -> object:
    result = parse_text(text, "f.yaml")
    assert result.errors == (), [str(e) for e in result.errors]
    assert len(result.resources) == 1
    return result.resources[0].obj


def test_virtual_service_model_and_defaults() -> None:
    result = parse_text(VS, "vs.yaml")
    assert result.errors == ()
    (res,) = result.resources
    assert res.gvk == GroupVersionKind("networking.istio.io", "v1", "VirtualService")
    assert res.source == Source("vs.yaml", 0)
    assert str(res.key) == "VirtualService default/reviews"
    vs = res.obj
    assert isinstance(vs, VirtualService)
    first = vs.http[0]
    match = first.match[0]
    assert match.headers["end-user"] == StringMatch("exact", "jason")
    assert match.headers["x-debug"] == StringMatch("present")
    assert match.query_params["q"] == StringMatch("present")
    assert match.uri == StringMatch("prefix", "/api")
    assert first.timeout == 60.0
    assert first.fault is not None and first.fault.delay is not None
    assert first.fault.delay.fixed_delay == 1.5
    assert first.fault.delay.percentage == 10.0
    assert first.retries is not None and first.retries.per_try_timeout == pytest.approx(0.1)
    assert first.route[0].weight is None
    assert [r.weight for r in vs.http[1].route] == [80, 20]
    assert vs.http[1].route[0].destination.port == 9080


def test_durations() -> None:
    assert parse_duration("10s") == 10.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("100ms") == pytest.approx(0.1)
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("10") is None
    assert parse_duration("abc") is None


def test_gateway_protocol_upper_cased() -> None:
    gw = _one(
        "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\n"
        "metadata: {name: g, namespace: x}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  servers:\n"
        "  - port: {number: 8080, name: http, protocol: http}\n    hosts: ['*']\n"
    )
    assert isinstance(gw, Gateway)
    assert gw.servers[0].port.protocol == "HTTP"
    assert gw.meta.namespace == "x"


def test_destination_rule_and_service_entry() -> None:
    dr = _one(
        "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: r}\n"
        "spec:\n  host: reviews\n  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"
        "  subsets:\n  - name: v1\n    labels: {version: v1}\n"
    )
    assert isinstance(dr, DestinationRule)
    assert dr.subsets[0].labels == {"version": "v1"}
    assert dr.traffic_policy is not None
    assert dr.traffic_policy.load_balancer == {"simple": "RANDOM"}
    se = _one(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\n"
        "spec:\n  hosts: [api.example.com]\n  ports: [{number: 443, name: tls, protocol: tls}]\n"
        "  resolution: DNS\n  location: MESH_EXTERNAL\n"
    )
    assert isinstance(se, ServiceEntry)
    assert se.ports[0].protocol == "TLS"
    assert se.resolution == "DNS"


def test_kubernetes_defaults() -> None:
    text = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, name: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{containerPort: 80}]
        readinessProbe: {httpGet: {port: 80, path: /ready}}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
data: {a: aGVsbG8=}
stringData: {b: world}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  serviceAccountName: reader
  containers: [{name: c, command: [sleep, "3600"]}]
"""
    result = parse_text(text, "k.yaml")
    assert result.errors == ()
    ns, svc, dep, secret, pod = (r.obj for r in result.resources)
    assert isinstance(ns, Namespace) and ns.meta.namespace == ""
    assert isinstance(svc, Service) and svc.ports[0].target_port is None
    assert svc.meta.namespace == "default"
    assert isinstance(dep, PodController) and dep.replicas == 1
    assert dep.template.spec.service_account_name == "default"
    probe = dep.template.spec.containers[0].readiness_probe
    assert probe is not None and probe.http_get is not None and probe.http_get.path == "/ready"
    assert isinstance(secret, Secret) and dict(secret.data) == {"a": b"hello", "b": b"world"}
    assert secret.type == "Opaque"
    assert isinstance(pod, Pod) and pod.spec.service_account_name == "reader"
    assert [r.source.doc for r in result.resources] == [0, 1, 2, 3, 4]


def test_unsupported_kinds_are_skipped() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: default}
spec: {accessLogging: [{providers: [{name: envoy}]}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: c}
spec: {schedule: "* * * * *"}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
"""
    result = parse_text(text, "s.yaml")
    assert result.errors == () and result.resources == ()
    assert [s.gvk.kind for s in result.skipped] == [
        "Sidecar",
        "Telemetry",
        "HTTPRoute",
        "CronJob",
        "Widget",
    ]
    first = result.skipped[0]
    assert isinstance(first, Skipped)
    assert first.reason == "kind Sidecar (networking.istio.io) is not supported yet; skipped"
    assert first.name == "istio-system/default"
    # Kinds people write beside workloads say why they are not run.
    assert str(result.skipped[3]) == (
        "s.yaml:3: CronJob c: not run locally yet: nothing schedules its Jobs "
        "(apply a Job to run one now)"
    )


def test_kind_list() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: a}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: b, namespace: x}
- apiVersion: example.com/v1
  kind: Widget
  metadata: {name: c}
"""
    result = parse_text(text, "l.yaml")
    assert [str(r.key) for r in result.resources] == [
        "ServiceAccount default/a",
        "ServiceAccount x/b",
    ]
    assert len(result.skipped) == 1


def test_yaml_syntax_error_reports_line_and_keeps_earlier_documents() -> None:
    text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n---\nkind: [unclosed\n"
    result = parse_text(text, "y.yaml")
    assert len(result.resources) == 1
    (error,) = result.errors
    assert isinstance(error, ConfigError)
    assert error.resource == "document"
    assert str(error).startswith("y.yaml:1: document: YAML syntax error at line 6")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Service\nmetadata: {name: a}\n", "f.yaml:0: document: apiVersion: required"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "f.yaml:0: document: kind: required"),
        ("- a\n- b\n", "f.yaml:0: document: expected a Kubernetes object (a mapping), got list"),
    ],
)
def test_unidentifiable_document(text: str, expected: str) -> None:
    (error,) = parse_text(text, "f.yaml").errors
    assert str(error).startswith(expected)


def test_error_str_format() -> None:
    error = ConfigError(
        Source("a.yaml", 2), "VirtualService default/reviews", "spec.hosts", "required"
    )
    assert str(error) == "a.yaml:2: VirtualService default/reviews: spec.hosts: required"


def test_unknown_fields_are_pruned_like_the_api_server() -> None:
    vs = _one(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n"
        "spec:\n  hosts: [r]\n  futureField: 1\n  http:\n  - route:\n"
        "    - destination: {host: r}\n"
    )
    assert isinstance(vs, VirtualService)


def test_load_paths_walks_folders_sorted(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b}\n")
    (tmp_path / "sub" / "c.yml").write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: c}\n"
    )
    (tmp_path / "a.json").write_text(
        '{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"}}'
    )
    (tmp_path / "notes.txt").write_text("not config")
    result = load_paths([tmp_path, tmp_path / "missing.yaml"])
    assert isinstance(result, LoadResult)
    assert [r.meta.name for r in result.resources] == ["a", "b", "c"]
    (error,) = result.errors
    assert "missing.yaml:0: document: no such file or directory" in str(error)


def test_no_crash_on_mutated_documents() -> None:
    """Replace random fields of real-looking documents with values of the
    wrong type or range: every outcome is a resource, a skip or errors."""
    import copy
    import random

    from mizzen.api.parse import parse_document

    base = [
        d
        for d in __import__("yaml").safe_load_all(VS + "---\n" + _KUBE_DOCS)
        if isinstance(d, dict)
    ]
    junk: list[object] = [None, 0, -1, 70000, "", "*", "A_B", [], {}, [None], {"a": 1}, True, 1.5]
    rnd = random.Random(7)

    def paths(o: object, p: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        out = [p]
        if isinstance(o, dict):
            for k, v in o.items():
                out += paths(v, (*p, k))
        elif isinstance(o, list):
            for i, v in enumerate(o):
                out += paths(v, (*p, i))
        return out

    for _ in range(3000):
        doc = copy.deepcopy(rnd.choice(base))
        where = rnd.choice(paths(doc)[1:])
        target: object = doc
        for step in where[:-1]:
            target = target[step]  # type: ignore[index]
        target[where[-1]] = copy.deepcopy(rnd.choice(junk))  # type: ignore[index]
        parse_document(doc, Source("fuzz.yaml", 0))


_KUBE_DOCS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {a: b}}
    spec:
      containers:
      - name: web
        image: nginx
        env: [{name: A, value: b}]
        ports: [{containerPort: 80}]
        readinessProbe: {httpGet: {port: 80, path: /}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, name: http, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se}
spec:
  hosts: [a.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 1.2.3.4, ports: {http: 8080}, labels: {a: b}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 10}}
    portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: RANDOM}}]
  subsets: [{name: v1, labels: {version: v1}}]
"""
