from __future__ import annotations

from dataclasses import replace

import pytest
from registry_factories import deployment, namespace, pod

from mizzen.api.parse import parse_text
from mizzen.api.resources import PodController, Resource, Source
from mizzen.registry.pods import PodPlan, plan_pods, sidecar_injected

ENABLED = {"istio-injection": "enabled"}
DISABLED = {"istio-injection": "disabled"}
REV = {"istio.io/rev": "default"}
TRUE = {"sidecar.istio.io/inject": "true"}
FALSE = {"sidecar.istio.io/inject": "false"}

INJECTION = [
    # (namespace labels, pod labels, pod annotations, expected)
    ({}, {}, {}, False),
    (ENABLED, {}, {}, True),
    (DISABLED, {}, {}, False),
    (REV, {}, {}, True),
    ({**DISABLED, **REV}, {}, {}, False),  # istio-injection beats istio.io/rev
    ({"istio-injection": "yes"}, {}, {}, False),  # only "enabled" enables
    (ENABLED, FALSE, {}, False),
    (REV, FALSE, {}, False),
    ({}, TRUE, {}, True),  # the pod opts in on its own
    (DISABLED, TRUE, {}, False),  # either side disabled: no sidecar
    (ENABLED, TRUE, {}, True),
    (ENABLED, {}, FALSE, False),  # deprecated annotation still opts out
    ({}, {}, TRUE, False),  # ...but cannot opt in alone
    (ENABLED, TRUE, FALSE, True),  # the label beats the annotation
    (ENABLED, {"sidecar.istio.io/inject": "False"}, {}, False),
    (ENABLED, {"sidecar.istio.io/inject": "nope"}, {}, False),
    ({}, REV, {}, True),  # pod-level revision label opts in
    ({}, {**REV, **FALSE}, {}, False),
]


@pytest.mark.parametrize(("ns", "labels", "annotations", "expected"), INJECTION)
def test_injection_precedence(
    ns: dict[str, str], labels: dict[str, str], annotations: dict[str, str], expected: bool
) -> None:
    assert sidecar_injected("apps", ns, labels, annotations) is expected


@pytest.mark.parametrize("ns_name", ["kube-system", "kube-public"])
def test_system_namespaces_are_never_injected(ns_name: str) -> None:
    assert not sidecar_injected(ns_name, ENABLED, TRUE, {})


def test_host_network_never_gets_a_sidecar() -> None:
    assert not sidecar_injected("apps", ENABLED, TRUE, {}, host_network=True)


def test_deployment_expands_to_indexed_replicas() -> None:
    plans = plan_pods([namespace("default", **ENABLED), deployment("reviews-v1", replicas=3)])
    assert [p.name for p in plans] == ["reviews-v1-0", "reviews-v1-1", "reviews-v1-2"]
    first = plans[0]
    assert first.owner == "reviews-v1"
    assert first.sidecar
    assert first.labels["app"] == "reviews-v1"
    assert first.labels["security.istio.io/tlsMode"] == "istio"
    assert first.labels["service.istio.io/canonical-name"] == "reviews-v1"
    assert first.labels["service.istio.io/canonical-revision"] == "latest"
    assert first.source_dir == "/m"
    assert [p.container_port for p in first.container_ports] == [9080]


def test_bare_pod_is_planned_as_itself_without_owner() -> None:
    (plan,) = plan_pods([pod("sleep", labels={"app": "sleep", "version": "v2"})])
    assert (plan.name, plan.namespace, plan.owner) == ("sleep", "default", "")
    assert not plan.sidecar  # undeclared namespace: no labels
    assert plan.labels == {"app": "sleep", "version": "v2"}


def test_canonical_labels_come_from_app_and_version() -> None:
    dep = deployment("r", labels={"app": "reviews", "version": "v2"})
    (plan,) = plan_pods([namespace("default", **ENABLED), dep])
    assert plan.labels["service.istio.io/canonical-name"] == "reviews"
    assert plan.labels["service.istio.io/canonical-revision"] == "v2"


def test_namespace_labels_apply_only_to_their_namespace() -> None:
    plans = plan_pods(
        [namespace("mesh", **ENABLED), deployment("a", ns="mesh"), deployment("b", ns="other")]
    )
    assert {p.name: p.sidecar for p in plans} == {"a-0": True, "b-0": False}


def test_host_network_deployment_and_fields() -> None:
    res = deployment("gw", ns="istio-system", sa="gw-sa")
    obj = res.obj
    assert isinstance(obj, PodController)
    spec = replace(obj.template.spec, host_network=True)
    hostnet = Resource(
        res.gvk,
        Source("/srv/mesh/gw.yaml", 3),
        replace(obj, template=replace(obj.template, spec=spec)),
    )
    (plan,) = plan_pods([namespace("istio-system", **ENABLED), hostnet])
    assert plan.host_network and not plan.sidecar
    assert plan.service_account == "gw-sa"
    assert plan.source_dir == "/srv/mesh"
    assert plan.containers == spec.containers


def test_zero_replicas_plans_nothing() -> None:
    assert plan_pods([deployment("idle", replicas=0)]) == ()


def _parsed(text: str) -> tuple[PodPlan, ...]:
    result = parse_text(text, "/m/w.yaml")
    assert result.errors == (), result.errors
    return plan_pods(result.resources)


CONTROLLERS = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: data}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, command: [run]}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: cache, namespace: data}
spec:
  serviceName: cache
  podManagementPolicy: Parallel
  replicas: 2
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec: {containers: [{name: c, command: [run]}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: a, command: [run]}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  replicas: 2
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec: {containers: [{name: a, command: [run]}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: OnFailure
      containers: [{name: a, command: [run]}]
"""


def test_controllers_make_their_pods_as_kubernetes_names_them() -> None:
    plans = {p.name: p for p in _parsed(CONTROLLERS)}
    assert list(plans) == [
        *("db-0", "db-1", "db-2", "cache-0", "cache-1"),
        *("agent-0", "rs-0", "rs-1", "once-0"),
    ]
    db1 = plans["db-1"]
    assert (db1.owner_kind, db1.hostname, db1.subdomain) == ("StatefulSet", "db-1", "db")
    # OrderedReady: each waits for the one before it; Parallel does not.
    assert [plans[f"db-{i}"].start_after for i in range(3)] == ["", "data/db-0", "data/db-1"]
    assert plans["cache-1"].start_after == ""
    assert plans["agent-0"].owner_kind == "DaemonSet"
    job = plans["once-0"]
    assert (job.owner_kind, job.restart_policy, job.backoff_limit) == ("Job", "OnFailure", 2)


@pytest.mark.parametrize(
    ("kind", "restart", "message"),
    [
        ("Job", "Always", "Job pods need OnFailure or Never, got 'Always'"),
        ("Deployment", "Never", "Deployment pods need Always, got 'Never'"),
    ],
)
def test_restart_policy_must_suit_the_controller(kind: str, restart: str, message: str) -> None:
    group = "batch" if kind == "Job" else "apps"
    text = f"""\
apiVersion: {group}/v1
kind: {kind}
metadata: {{name: x}}
spec:
  selector: {{matchLabels: {{app: x}}}}
  template:
    metadata: {{labels: {{app: x}}}}
    spec: {{restartPolicy: {restart}, containers: [{{name: a, command: [run]}}]}}
"""
    (error,) = parse_text(text, "/m/x.yaml").errors
    assert error.path == "spec.template.spec.restartPolicy" and error.message == message
