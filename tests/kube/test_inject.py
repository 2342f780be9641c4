"""Sidecar injection (mizzen.kube.inject) and `mizzen kube-inject`, on Istio's
own Bookinfo manifest and on the Akka and Pekko seeds' Deployments."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mizzen.agent.appprobes import parse_probers
from mizzen.capture.rules import CaptureConfig
from mizzen.cli.kube_inject import kube_inject
from mizzen.kube.inject import (
    InjectError,
    InjectOptions,
    Workload,
    capture_config_from_iptables_args,
    inject_pod,
    iptables_args,
    json_patch,
    kube_inject_object,
    needs_injection,
    workload_for_pod,
)
from mizzen.runtime.probes import HttpGetProbe, TcpSocketProbe

SHARED = Path(os.environ.get("MIZZEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
BOOKINFO = SHARED / "istio-samples" / "bookinfo" / "platform" / "kube" / "bookinfo.yaml"
SEEDS = SHARED / "seeds"
OPTIONS = InjectOptions()
ENABLED = {"istio-injection": "enabled"}


def needs_shared(path: Path) -> Any:
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present (set MIZZEN_SHARED)")


def pod(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-0", "namespace": "shop"}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": containers
            or [
                {
                    "name": "web",
                    "image": "web:1",
                    "ports": [{"name": "http", "containerPort": 8080}],
                }
            ],
            **spec,
        },
    }


def names(items: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in items]


def container(p: dict[str, Any], name: str) -> dict[str, Any]:
    spec = p["spec"]
    found = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name]
    assert len(found) == 1, names(spec["containers"])
    return found[0]


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def arg_after(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


# -- the policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns_labels", "pod_labels", "pod_annotations", "expected"),
    [
        ({}, {}, {}, False),
        (ENABLED, {}, {}, True),
        ({"istio-injection": "disabled"}, {"sidecar.istio.io/inject": "true"}, {}, False),
        (ENABLED, {"sidecar.istio.io/inject": "false"}, {}, False),
        ({}, {"sidecar.istio.io/inject": "true"}, {}, True),
        # The legacy annotation alone cannot opt in (no webhook sees the pod)...
        ({}, {}, {"sidecar.istio.io/inject": "true"}, False),
        # ...but can opt out, and the label wins over it.
        (ENABLED, {}, {"sidecar.istio.io/inject": "false"}, False),
        (ENABLED, {"sidecar.istio.io/inject": "true"}, {"sidecar.istio.io/inject": "false"}, True),
        ({"istio.io/rev": "default"}, {}, {}, True),
        ({"istio.io/rev": "canary"}, {}, {}, False),  # another revision's injector
        ({}, {"istio.io/rev": "default"}, {}, True),
    ],
)
def test_policy(
    ns_labels: dict[str, str],
    pod_labels: dict[str, str],
    pod_annotations: dict[str, str],
    expected: bool,
) -> None:
    p = pod(pod_labels, pod_annotations)
    assert needs_injection(p, ns_labels, OPTIONS) is expected
    injected = inject_pod(p, ns_labels, OPTIONS)
    assert ("istio-proxy" in names(injected["spec"]["containers"])) is expected
    if not expected:
        assert injected == p


def test_host_network_and_system_namespaces_are_never_injected() -> None:
    assert not needs_injection(pod(hostNetwork=True), ENABLED, OPTIONS)
    assert not needs_injection(pod(), ENABLED, OPTIONS, namespace="kube-system")


def test_input_is_not_mutated_and_injecting_twice_is_injecting_once() -> None:
    p = pod(annotations={"traffic.sidecar.istio.io/excludeOutboundPorts": "2552"})
    before = copy.deepcopy(p)
    once = inject_pod(p, ENABLED, OPTIONS)
    assert p == before
    assert not needs_injection(once, ENABLED, OPTIONS)
    assert inject_pod(once, ENABLED, OPTIONS) == once


# -- what injection adds ---------------------------------------------------------


def test_shapes_of_the_injected_pod() -> None:
    p = pod(labels={"app": "web", "version": "v2"})
    out = inject_pod(p, ENABLED, OPTIONS, workload=Workload("web", "kubernetes://x"))
    assert names(out["spec"]["containers"]) == ["web", "istio-proxy"]
    assert names(out["spec"]["initContainers"]) == ["istio-init"]
    init = container(out, "istio-init")
    assert init["image"] == "docker.io/mizzen/proxyv2:0.1.0" == OPTIONS.proxy_image
    assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert init["securityContext"]["runAsUser"] == 0
    proxy = container(out, "istio-proxy")
    assert proxy["args"][:4] == [
        "proxy",
        "sidecar",
        "--domain",
        "$(POD_NAMESPACE).svc.cluster.local",
    ]
    assert proxy["securityContext"]["runAsUser"] == proxy["securityContext"]["runAsGroup"] == 1337
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"} in proxy["ports"]
    values = env(proxy)
    assert values["POD_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert values["INSTANCE_IP"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert values["SERVICE_ACCOUNT"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"
    assert values["CA_ADDR"] == "istiod.istio-system.svc:15012"
    assert json.loads(values["PROXY_CONFIG"]) == {
        "discoveryAddress": "istiod.istio-system.svc:15012"
    }
    assert json.loads(values["ISTIO_META_POD_PORTS"]) == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    ]
    assert values["ISTIO_META_APP_CONTAINERS"] == "web"
    assert values["ISTIO_META_CLUSTER_ID"] == "Kubernetes"
    assert values["ISTIO_META_INTERCEPTION_MODE"] == "REDIRECT"
    assert values["ISTIO_META_WORKLOAD_NAME"] == "web"
    assert values["ISTIO_META_OWNER"] == "kubernetes://x"
    assert values["ISTIO_META_MESH_ID"] == values["TRUST_DOMAIN"] == "cluster.local"
    assert "ISTIO_KUBE_APP_PROBERS" not in values  # no probes to rewrite
    volumes = {v["name"]: v for v in out["spec"]["volumes"]}
    assert volumes["istio-token"]["projected"]["sources"][0]["serviceAccountToken"] == {
        "audience": "istio-ca",
        "expirationSeconds": 43200,
        "path": "istio-token",
    }
    assert volumes["istiod-ca-cert"]["configMap"] == {"name": "istio-ca-root-cert"}
    assert [i["path"] for i in volumes["istio-podinfo"]["downwardAPI"]["items"]] == [
        "labels",
        "annotations",
    ]
    assert {m["name"] for m in proxy["volumeMounts"]} == set(volumes)
    labels = out["metadata"]["labels"]
    assert labels["security.istio.io/tlsMode"] == "istio"
    assert labels["service.istio.io/canonical-name"] == "web"
    assert labels["service.istio.io/canonical-revision"] == "v2"
    annotations = out["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/default-container"] == "web"
    status = json.loads(annotations["sidecar.istio.io/status"])
    assert status == {
        "initContainers": ["istio-init"],
        "containers": ["istio-proxy"],
        "volumes": list(volumes),
        "imagePullSecrets": None,
        "revision": "default",
    }


def test_canonical_defaults_and_existing_init_containers() -> None:
    p = pod(labels={}, initContainers=[{"name": "migrate", "image": "db:1"}])
    out = inject_pod(p, ENABLED, OPTIONS, workload=Workload("web-deploy", ""))
    assert out["metadata"]["labels"]["service.istio.io/canonical-name"] == "web-deploy"
    assert out["metadata"]["labels"]["service.istio.io/canonical-revision"] == "latest"
    # istio-init goes last: earlier init containers still have an open network.
    assert names(out["spec"]["initContainers"]) == ["migrate", "istio-init"]


def test_workload_from_owner_references() -> None:
    p = pod(labels={"pod-template-hash": "5b9f7c"})
    p["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "reviews-v1-5b9f7c",
            "controller": True,
        }
    ]
    assert workload_for_pod(p, "default") == Workload(
        "reviews-v1", "kubernetes://apis/apps/v1/namespaces/default/deployments/reviews-v1"
    )
    p["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": True}
    ]
    assert workload_for_pod(p, "shop").owner == (
        "kubernetes://apis/apps/v1/namespaces/shop/statefulsets/db"
    )
    bare = pod()
    assert workload_for_pod(bare, "shop") == Workload(
        "web-0", "kubernetes://apis/v1/namespaces/shop/pods/web-0"
    )


def test_hold_application_puts_the_proxy_first_with_a_post_start_wait() -> None:
    config = "holdApplicationUntilProxyStarts: true\n"
    out = inject_pod(pod(annotations={"proxy.istio.io/config": config}), ENABLED, OPTIONS)
    assert names(out["spec"]["containers"]) == ["istio-proxy", "web"]
    proxy = out["spec"]["containers"][0]
    assert proxy["lifecycle"] == {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
    assert json.loads(env(proxy)["PROXY_CONFIG"])["holdApplicationUntilProxyStarts"] is True
    # kubectl still defaults to the app.
    assert out["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "web"

    mesh_wide = InjectOptions(hold_application=True)
    assert names(inject_pod(pod(), ENABLED, mesh_wide)["spec"]["containers"])[0] == "istio-proxy"
    opt_out = pod(annotations={"proxy.istio.io/config": "holdApplicationUntilProxyStarts: false"})
    out = inject_pod(opt_out, ENABLED, mesh_wide)
    assert names(out["spec"]["containers"]) == ["web", "istio-proxy"]
    assert "lifecycle" not in out["spec"]["containers"][1]


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"traffic.sidecar.istio.io/excludeOutboundPorts": "2552,x"}, "excludeOutboundPorts"),
        ({"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.1"}, "not a CIDR"),
        ({"proxy.istio.io/config": "holdApplicationUntilProxyStarts: [1"}, "not valid YAML"),
        ({"proxy.istio.io/config": "holdApplicationUntilProxyStarts: maybe"}, "true or false"),
    ],
)
def test_bad_annotations_refuse_injection(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(InjectError, match=message):
        inject_pod(pod(annotations=annotations), ENABLED, OPTIONS)


# -- probes ----------------------------------------------------------------------


def probed_pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return pod(
        annotations=annotations,
        containers=[
            {
                "name": "web",
                "image": "web:1",
                "ports": [{"name": "mgmt", "containerPort": 8558}],
                "readinessProbe": {
                    "httpGet": {"path": "/ready", "port": "mgmt"},
                    "periodSeconds": 5,
                },
                "livenessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 3},
                "startupProbe": {"exec": {"command": ["true"]}},
            }
        ],
    )


def test_http_and_tcp_probes_are_rewritten_to_the_agent() -> None:
    out = inject_pod(probed_pod(), ENABLED, OPTIONS)
    web = container(out, "web")
    assert web["readinessProbe"] == {
        "httpGet": {"path": "/app-health/web/readyz", "port": 15020, "scheme": "HTTP"},
        "periodSeconds": 5,
    }
    assert web["livenessProbe"]["httpGet"]["path"] == "/app-health/web/livez"
    assert web["livenessProbe"]["timeoutSeconds"] == 3
    assert web["startupProbe"] == {"exec": {"command": ["true"]}}  # exec stays
    probers = parse_probers(env(container(out, "istio-proxy"))["ISTIO_KUBE_APP_PROBERS"])
    assert probers == {
        "/app-health/web/readyz": (HttpGetProbe(8558, "/ready"), 1.0),
        "/app-health/web/livez": (TcpSocketProbe(8080), 3.0),
    }


def test_probe_rewrite_can_be_turned_off() -> None:
    p = probed_pod({"sidecar.istio.io/rewriteAppHTTPProbers": "false"})
    out = inject_pod(p, ENABLED, OPTIONS)
    assert container(out, "web")["readinessProbe"] == container(p, "web")["readinessProbe"]
    assert "ISTIO_KUBE_APP_PROBERS" not in env(container(out, "istio-proxy"))
    out = inject_pod(probed_pod(), ENABLED, InjectOptions(rewrite_probes=False))
    assert container(out, "web")["readinessProbe"]["httpGet"]["port"] == "mgmt"
    on = probed_pod({"sidecar.istio.io/rewriteAppHTTPProbers": "true"})
    out = inject_pod(on, ENABLED, InjectOptions(rewrite_probes=False))
    assert container(out, "web")["readinessProbe"]["httpGet"]["port"] == 15020


# -- capture annotations to istio-init and back ------------------------------------

CAPTURE = {
    "traffic.sidecar.istio.io/includeInboundPorts": "8080,9090",
    "traffic.sidecar.istio.io/excludeInboundPorts": "9999",
    "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.1/32",
    "traffic.sidecar.istio.io/includeOutboundPorts": "5432",
    "traffic.sidecar.istio.io/excludeOutboundPorts": "2552,8558",
}


def test_capture_annotations_reach_istio_init() -> None:
    out = inject_pod(pod(annotations=CAPTURE), ENABLED, OPTIONS)
    args = container(out, "istio-init")["args"]
    assert args[0] == "istio-iptables"
    expected = {
        "-p": "15001",
        "-z": "15006",
        "-u": "1337",
        "-m": "REDIRECT",
        "-b": "8080,9090",
        "-d": "15090,15021,15020,9999",
        "-i": "10.0.0.0/8",
        "-x": "10.96.0.1/32",
        "-q": "5432",
        "-o": "2552,8558",
    }
    assert {flag: arg_after(args, flag) for flag in expected} == expected


def test_defaults_of_istio_init() -> None:
    args = iptables_args({})
    assert args == [
        *("istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT"),
        *("-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"),
    ]


@pytest.mark.parametrize(
    "annotations",
    [
        {},
        CAPTURE,
        {"traffic.sidecar.istio.io/includeInboundPorts": ""},
        {"traffic.sidecar.istio.io/includeOutboundIPRanges": ""},
        {"traffic.sidecar.istio.io/excludeOutboundPorts": " 2552 , 8558 "},
    ],
)
def test_istio_iptables_flags_give_the_same_capture_as_the_annotations(
    annotations: dict[str, str],
) -> None:
    config = capture_config_from_iptables_args(iptables_args(annotations))
    assert config == CaptureConfig.from_annotations(annotations)


def test_istio_iptables_long_flags_and_numbers() -> None:
    config = capture_config_from_iptables_args(
        ["--envoy-port=16001", "-z", "16006", "--proxy-uid", "1400", "--istio-inbound-ports", "80"]
    )
    assert (config.outbound_port, config.inbound_port) == (16001, 16006)
    assert config.proxy_uid == config.proxy_gid == 1400
    assert config.include_inbound_ports == (80,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "TPROXY"], "only REDIRECT"),
        (["-k", "eth1"], "unsupported flag '-k'"),
        (["-p"], "needs a value"),
        (["-p", "x"], "not a number"),
        (["-o", "80,x"], "-o: invalid item 'x'"),
    ],
)
def test_istio_iptables_bad_flags(args: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        capture_config_from_iptables_args(args)


# -- Bookinfo, Istio's own manifest ------------------------------------------------


@needs_shared(BOOKINFO)
def test_kube_inject_bookinfo() -> None:
    docs = [d for d in yaml.safe_load_all(BOOKINFO.read_text()) if d]
    injected = [kube_inject_object(d, OPTIONS) for d in docs]
    deployments = 0
    for before, after in zip(docs, injected, strict=True):
        if before["kind"] != "Deployment":
            assert after == before, before["kind"]  # Services, ServiceAccounts untouched
            continue
        deployments += 1
        template = after["spec"]["template"]
        assert names(template["spec"]["initContainers"]) == ["istio-init"]
        assert names(template["spec"]["containers"])[-1] == "istio-proxy"
        proxy = container(template, "istio-proxy")
        name = before["metadata"]["name"]
        assert env(proxy)["ISTIO_META_WORKLOAD_NAME"] == name
        assert env(proxy)["ISTIO_META_OWNER"] == (
            f"kubernetes://apis/apps/v1/namespaces/default/deployments/{name}"
        )
        labels = template["metadata"]["labels"]
        assert labels["service.istio.io/canonical-name"] == before["metadata"]["labels"]["app"]
        # Only the pod template changed.
        assert {k: v for k, v in after.items() if k != "spec"} == {
            k: v for k, v in before.items() if k != "spec"
        }
    assert deployments >= 6


@needs_shared(BOOKINFO)
def test_kube_inject_cli_on_bookinfo(tmp_path: Path) -> None:
    out = tmp_path / "injected.yaml"
    result = CliRunner().invoke(kube_inject, ["-f", str(BOOKINFO), "-o", str(out)])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(out.read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds == [d["kind"] for d in yaml.safe_load_all(BOOKINFO.read_text()) if d]
    # Idempotent through the CLI too: injecting the output changes nothing.
    again = CliRunner().invoke(kube_inject, ["-f", "-"], input=out.read_text())
    assert again.exit_code == 0, again.output
    assert list(yaml.safe_load_all(again.output)) == docs


def test_kube_inject_cli_policy_and_kinds() -> None:
    manifest = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: ops}
spec:
  schedule: "0 1 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: job:1}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy}
spec:
  template:
    metadata:
      annotations: {sidecar.istio.io/inject: "false"}
    spec:
      containers: [{name: app, image: app:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: solo}
spec:
  containers: [{name: app, image: app:1}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
"""
    result = CliRunner().invoke(kube_inject, ["-f", "-"], input=manifest)
    assert result.exit_code == 0, result.output
    cron, legacy, solo, config = yaml.safe_load_all(result.output)
    job_pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    assert "istio-proxy" in names(job_pod["spec"]["containers"])
    assert env(container(job_pod, "istio-proxy"))["ISTIO_META_OWNER"] == (
        "kubernetes://apis/batch/v1/namespaces/ops/cronjobs/nightly"
    )
    assert names(legacy["spec"]["template"]["spec"]["containers"]) == ["app"]
    assert names(solo["spec"]["containers"]) == ["app", "istio-proxy"]
    assert config == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"a": "b"},
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1\n", "<stdin>: document 0: not valid YAML"),
        (
            "kind: Deployment\nmetadata: {name: d}\nspec: {template: 3}\n",
            "spec.template: must be a mapping",
        ),
        ("--- 3\n", "document 0: expected a Kubernetes object"),
        (
            "kind: Pod\nmetadata: {name: p, annotations: "
            '{traffic.sidecar.istio.io/excludeOutboundPorts: "x"}}\n'
            "spec: {containers: [{name: a}]}\n",
            "<stdin>: document 0 (Pod p): annotation traffic.sidecar.istio.io/excludeOutboundPorts",
        ),
    ],
)
def test_kube_inject_cli_bad_input_is_a_usage_error(text: str, message: str) -> None:
    result = CliRunner().invoke(kube_inject, ["-f", "-"], input=text)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert message in result.output


def test_kube_inject_cli_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(kube_inject, ["-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: cannot read" in result.output


# -- the Akka and Pekko seeds ---------------------------------------------------------


def yaml_blocks(text: str) -> list[str]:
    """```yaml fences, and (a seed rendered to plain text) the lines from an
    `apiVersion:` line to the first line that is neither indented nor a key."""
    blocks = re.findall(r"```ya?ml\n(.*?)```", text, flags=re.S)
    for start in re.finditer(r"^apiVersion:.*$", text, flags=re.M):
        lines = []
        for line in text[start.start() :].splitlines():
            if line and not line[0].isspace() and not re.match(r"[A-Za-z]\w*:", line):
                break
            lines.append(line)
        blocks.append("\n".join(lines))
    return blocks


def seed_deployments() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for seed in sorted(SEEDS.glob("*.txt")) if SEEDS.is_dir() else []:
        for block in yaml_blocks(seed.read_text()):
            try:
                doc = yaml.safe_load(block)
            except yaml.YAMLError:
                continue
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                found.setdefault(seed.name, doc)
    return found


@needs_shared(SEEDS)
def test_seed_annotations_reach_istio_init_and_capture() -> None:
    seeds = seed_deployments()
    assert len(seeds) >= 2, "the Akka and Pekko seeds hold a Deployment each"
    for name, deployment in seeds.items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        after = kube_inject_object(deployment, OPTIONS)
        template = after["spec"]["template"]
        args = container(template, "istio-init")["args"]
        include = annotations["traffic.sidecar.istio.io/includeInboundPorts"]
        exclude = annotations["traffic.sidecar.istio.io/excludeOutboundPorts"]
        assert arg_after(args, "-b") == include, name
        assert arg_after(args, "-o") == exclude, name
        assert capture_config_from_iptables_args(args) == CaptureConfig.from_annotations(
            annotations
        ), name
        # The management-port probes go through the agent, which reaches the app directly.
        app = template["spec"]["containers"][0]
        assert app["readinessProbe"]["httpGet"]["port"] == 15020, name
        probers = parse_probers(env(container(template, "istio-proxy"))["ISTIO_KUBE_APP_PROBERS"])
        ports = {p["name"]: p["containerPort"] for p in app["ports"]}
        assert probers[f"/app-health/{app['name']}/readyz"][0] == HttpGetProbe(
            ports["management"], "/ready"
        ), name


# -- JSON patch ------------------------------------------------------------------------


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal RFC 6902 applier (add/replace/remove on object members)."""
    out = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        target = out
        for key in parents:
            target = target[key]
        if op["op"] == "remove":
            del target[last]
        else:
            assert (last in target) == (op["op"] == "replace"), op
            target[last] = op["value"]
    return out


def test_json_patch_turns_the_pod_into_the_injected_pod() -> None:
    before = probed_pod()
    after = inject_pod(before, ENABLED, OPTIONS)
    ops = json_patch(before, after)
    assert {op["path"] for op in ops} == {
        "/metadata/labels",
        "/metadata/annotations",
        "/spec/containers",
        "/spec/initContainers",
        "/spec/volumes",
    }
    assert apply_patch(before, ops) == after
    assert json_patch(after, after) == []


def test_json_patch_replace_remove_and_escaping() -> None:
    before = {"metadata": {"a/b": 1, "gone": 2}, "spec": {"x": [1]}, "top": 1}
    after = {"metadata": {"a/b": 3}, "spec": {"x": [1]}, "top": 2, "new": {}}
    ops = json_patch(before, after)
    assert ops == [
        {"op": "replace", "path": "/metadata/a~1b", "value": 3},
        {"op": "remove", "path": "/metadata/gone"},
        {"op": "replace", "path": "/top", "value": 2},
        {"op": "add", "path": "/new", "value": {}},
    ]
    assert apply_patch(before, ops) == after


# -- `mizzen capture --istio-iptables` (what the node runs for istio-init) ---------------


def test_capture_cli_installs_from_istio_iptables_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from mizzen.cli import capture as capture_module

    installed: list[tuple[str, CaptureConfig]] = []
    monkeypatch.setattr(capture_module, "install", lambda ns, cfg: installed.append((ns, cfg)))
    args = iptables_args(CAPTURE)[1:]
    result = CliRunner().invoke(
        capture_module.capture, ["--netns", "mz-x", "--istio-iptables", "--", *args]
    )
    assert result.exit_code == 0, result.output
    assert installed == [("mz-x", CaptureConfig.from_annotations(CAPTURE))]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dry-run", "--", "-p", "15001"], "unexpected arguments: -p 15001"),
        (
            ["--dry-run", "--istio-iptables", "--annotations", "{}"],
            "use only one of --annotations, --pod-annotation, --from-manifest, --istio-iptables",
        ),
        (["--dry-run", "--istio-iptables", "--", "-m", "TPROXY"], "only REDIRECT"),
    ],
)
def test_capture_cli_istio_iptables_misuse(args: list[str], message: str) -> None:
    from mizzen.cli.capture import capture

    result = CliRunner().invoke(capture, args)
    assert result.exit_code == 2
    assert message in result.output
