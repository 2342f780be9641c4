"""``install_manifests``: kinds and order, least-privilege RBAC, Istio's
names, ports and webhook selectors, and the ``mizzen install`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mizzen.api.meshconfig import parse_mesh_config
from mizzen.cli.install import install
from mizzen.kube.crds import CRD_SPECS
from mizzen.kube.manifests import InstallOptions, install_manifests, kubectl_apply_argv, to_yaml

Doc = dict[str, Any]

ORDER_AFTER_CRDS = [
    ("Namespace", "istio-system"),
    ("ServiceAccount", "istiod"),
    ("ClusterRole", "istiod-clusterrole-istio-system"),
    ("ClusterRoleBinding", "istiod-clusterrole-istio-system"),
    ("Role", "istiod"),
    ("RoleBinding", "istiod"),
    ("ConfigMap", "istio"),
    ("Deployment", "istiod"),
    ("Service", "istiod"),
    ("PodDisruptionBudget", "istiod"),
    ("MutatingWebhookConfiguration", "istio-sidecar-injector"),
    ("ValidatingWebhookConfiguration", "istio-validator-istio-system"),
]


def _one(docs: list[Doc], kind: str) -> Doc:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return install_manifests(InstallOptions())


def test_kinds_and_apply_order(docs: list[Doc]) -> None:
    crds = len(CRD_SPECS)
    assert all(d["kind"] == "CustomResourceDefinition" for d in docs[:crds])
    assert [(d["kind"], d["metadata"]["name"]) for d in docs[crds:]] == ORDER_AFTER_CRDS


def test_namespaced_objects_live_in_the_control_plane_namespace(docs: list[Doc]) -> None:
    cluster_scoped = {
        "CustomResourceDefinition",
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
    for doc in docs:
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in doc["metadata"], doc["kind"]
        else:
            assert doc["metadata"]["namespace"] == "istio-system", doc["kind"]


def _rules(docs: list[Doc]) -> list[Doc]:
    return [r for kind in ("ClusterRole", "Role") for r in _one(docs, kind)["rules"]]


def test_rbac_has_no_wildcards(docs: list[Doc]) -> None:
    for rule in _rules(docs):
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert not any("*" in v for v in rule.get(key, [])), rule


def _grants(docs: list[Doc], kind: str) -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, resourceName or '') of one role."""
    return {
        (group, resource, verb, name)
        for rule in _one(docs, kind)["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", [""])
    }


def test_cluster_role_is_least_privilege(docs: list[Doc]) -> None:
    grants = _grants(docs, "ClusterRole")
    read = {"get", "list", "watch"}
    for spec in CRD_SPECS:
        assert {v for g, r, v, _ in grants if (g, r) == (spec.group, spec.plural)} == read
        status = {v for g, r, v, _ in grants if (g, r) == (spec.group, f"{spec.plural}/status")}
        assert status == ({"update"} if spec.status else set())
    core = {"namespaces", "services", "pods", "nodes", "serviceaccounts", "secrets"}
    for resource in core:
        assert {v for g, r, v, _ in grants if (g, r) == ("", resource)} == read, resource
    assert {v for g, r, v, _ in grants if r == "endpointslices"} == read
    assert ("discovery.k8s.io", "endpointslices", "list", "") in grants
    # Writes: only these, and by name wherever RBAC can restrict by name.
    writes = {(g, r, v, n) for g, r, v, n in grants if v not in read}
    assert writes == {
        *((s.group, f"{s.plural}/status", "update", "") for s in CRD_SPECS if s.status),
        ("", "configmaps", "create", ""),
        ("", "configmaps", "update", "istio-ca-root-cert"),
        ("authentication.k8s.io", "tokenreviews", "create", ""),
        ("authorization.k8s.io", "subjectaccessreviews", "create", ""),
        *(
            ("admissionregistration.k8s.io", resource, verb, name)
            for resource, name in (
                ("mutatingwebhookconfigurations", "istio-sidecar-injector"),
                ("validatingwebhookconfigurations", "istio-validator-istio-system"),
            )
            for verb in ("patch", "update")
        ),
    }
    # The webhook configurations are readable only by name, too.
    assert {n for g, r, v, n in grants if r.endswith("webhookconfigurations")} == {
        "istio-sidecar-injector",
        "istio-validator-istio-system",
    }


def test_role_covers_own_secrets_and_the_mesh_config_only(docs: list[Doc]) -> None:
    grants = _grants(docs, "Role")
    assert {(g, r) for g, r, _, _ in grants} == {("", "secrets"), ("", "configmaps")}
    assert {v for g, r, v, _ in grants if (g, r) == ("", "secrets")} == {"create", "get", "update"}
    assert _one(docs, "Role")["metadata"]["namespace"] == "istio-system"
    binding = _one(docs, "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "istiod", "namespace": "istio-system"}
    ]


def test_bindings_point_at_the_service_account(docs: list[Doc]) -> None:
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding, role = _one(docs, kind), _one(docs, role_kind)
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"][0]["name"] == _one(docs, "ServiceAccount")["metadata"]["name"]


def test_mesh_config_is_readable_by_mizzen(docs: list[Doc]) -> None:
    cm = _one(docs, "ConfigMap")
    mesh = parse_mesh_config(yaml.safe_load(cm["data"]["mesh"]))
    assert mesh.trust_domain == "cluster.local"
    assert mesh.root_namespace == "istio-system"
    other = install_manifests(InstallOptions(trust_domain="example.org"))
    mesh = parse_mesh_config(yaml.safe_load(_one(other, "ConfigMap")["data"]["mesh"]))
    assert mesh.trust_domain == "example.org"


def test_deployment_is_istiods_shape(docs: list[Doc]) -> None:
    deploy = _one(docs, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "istiod" and labels["istio"] == "pilot"
    assert labels["sidecar.istio.io/inject"] == "false"
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert pod["spec"]["serviceAccountName"] == "istiod"
    [container] = pod["spec"]["containers"]
    assert container["name"] == "discovery"
    assert container["image"] == "docker.io/mizzen/pilot:0.1.0"
    assert container["args"][0] == "discovery"
    ports = {p["containerPort"] for p in container["ports"]}
    assert {15010, 15012, 15014, 15017} <= ports
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounted = {m["name"] for m in container["volumeMounts"]}
    assert mounted == {v["name"] for v in pod["spec"]["volumes"]}


def test_options_reach_the_deployment() -> None:
    docs = install_manifests(InstallOptions(hub="registry.test/m", tag="9", replicas=3))
    deploy = _one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 3
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.test/m/pilot:9"


def test_service_ports_and_selector(docs: list[Doc]) -> None:
    svc = _one(docs, "Service")
    ports = {p["name"]: (p["port"], p.get("targetPort", p["port"])) for p in svc["spec"]["ports"]}
    assert ports == {
        "grpc-xds": (15010, 15010),
        "https-dns": (15012, 15012),
        "https-webhook": (443, 15017),
        "http-monitoring": (15014, 15014),
    }
    pod_labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_pod_disruption_budget(docs: list[Doc]) -> None:
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def _exprs(selector: Doc) -> set[tuple[str, str, tuple[str, ...]]]:
    return {
        (e["key"], e["operator"], tuple(e.get("values", ()))) for e in selector["matchExpressions"]
    }


# Istio's documented selectors for the default revision.
ISTIO_INJECTION_SELECTORS = {
    "namespace.sidecar-injector.istio.io": (
        {("istio-injection", "In", ("enabled",))},
        {("sidecar.istio.io/inject", "NotIn", ("false",))},
    ),
    "rev.namespace.sidecar-injector.istio.io": (
        {("istio.io/rev", "In", ("default",)), ("istio-injection", "DoesNotExist", ())},
        {("sidecar.istio.io/inject", "NotIn", ("false",))},
    ),
    "rev.object.sidecar-injector.istio.io": (
        {("istio.io/rev", "DoesNotExist", ()), ("istio-injection", "DoesNotExist", ())},
        {("sidecar.istio.io/inject", "NotIn", ("false",)), ("istio.io/rev", "In", ("default",))},
    ),
    "object.sidecar-injector.istio.io": (
        {("istio.io/rev", "DoesNotExist", ()), ("istio-injection", "DoesNotExist", ())},
        {("sidecar.istio.io/inject", "In", ("true",)), ("istio.io/rev", "DoesNotExist", ())},
    ),
}


def test_injection_webhooks_are_istios(docs: list[Doc]) -> None:
    config = _one(docs, "MutatingWebhookConfiguration")
    hooks = {h["name"]: h for h in config["webhooks"]}
    assert set(hooks) == set(ISTIO_INJECTION_SELECTORS)
    for name, (ns, obj) in ISTIO_INJECTION_SELECTORS.items():
        hook = hooks[name]
        assert _exprs(hook["namespaceSelector"]) == ns, name
        assert _exprs(hook["objectSelector"]) == obj, name
        assert hook["rules"] == [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
            }
        ]
        assert hook["clientConfig"] == {
            "service": {
                "name": "istiod",
                "namespace": "istio-system",
                "path": "/inject",
                "port": 443,
            }
        }
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["reinvocationPolicy"] == "Never"


def test_a_revision_answers_only_its_own_label() -> None:
    docs = install_manifests(InstallOptions(revision="canary"))
    config = _one(docs, "MutatingWebhookConfiguration")
    assert config["metadata"]["name"] == "istio-sidecar-injector-canary"
    hooks = {h["name"]: h for h in config["webhooks"]}
    assert set(hooks) == {
        "rev.namespace.sidecar-injector.istio.io",
        "rev.object.sidecar-injector.istio.io",
    }
    assert ("istio.io/rev", "In", ("canary",)) in _exprs(
        hooks["rev.namespace.sidecar-injector.istio.io"]["namespaceSelector"]
    )
    assert hooks["rev.object.sidecar-injector.istio.io"]["clientConfig"]["service"]["name"] == (
        "istiod-canary"
    )
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "istiod-canary") in names
    assert ("ValidatingWebhookConfiguration", "istio-validator-canary-istio-system") in names
    assert ("ClusterRole", "istiod-clusterrole-canary-istio-system") in names


def test_validation_webhook_covers_every_served_kind(docs: list[Doc]) -> None:
    config = _one(docs, "ValidatingWebhookConfiguration")
    [hook] = config["webhooks"]
    assert hook["clientConfig"]["service"]["path"] == "/validate"
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    covered = {
        (group, resource, version)
        for rule in hook["rules"]
        if set(rule["operations"]) == {"CREATE", "UPDATE"}
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for version in rule["apiVersions"]
    }
    assert covered == {(s.group, s.plural, v) for s in CRD_SPECS for v in s.versions}


def test_ca_bundles_are_left_for_the_control_plane(docs: list[Doc]) -> None:
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in _one(docs, kind)["webhooks"]:
            assert not hook["clientConfig"].get("caBundle")


def test_yaml_is_deterministic_and_parses(docs: list[Doc]) -> None:
    text = to_yaml(docs)
    assert text == to_yaml(install_manifests())
    assert list(yaml.safe_load_all(text)) == docs


# ---------------------------------------------------------------------------
# The command


def test_install_dry_run_prints_the_manifests() -> None:
    result = CliRunner().invoke(install, ["--dry-run"])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.output)) == install_manifests()


def test_install_dry_run_takes_options() -> None:
    result = CliRunner().invoke(install, ["--dry-run", "--replicas", "3", "--revision", "canary"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.output))
    assert _one(docs, "Deployment")["metadata"]["name"] == "istiod-canary"
    assert _one(docs, "Deployment")["spec"]["replicas"] == 3


def test_install_without_kubectl_says_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "no-kubectl"
    result = CliRunner().invoke(install, ["--kubectl", str(missing)])
    assert result.exit_code != 0
    assert "kubectl not found" in result.output
    assert "--dry-run" in result.output


def test_install_pipes_the_stream_to_kubectl(tmp_path: Path) -> None:
    # A stand-in kubectl that records its arguments and input.
    fake = tmp_path / "kubectl"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\ncat > {tmp_path}/stdin\n')
    fake.chmod(0o755)
    config = tmp_path / "kubeconfig"
    result = CliRunner().invoke(install, ["--kubectl", str(fake), "--kubeconfig", str(config)])
    assert result.exit_code == 0, result.output
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:2] == ["--kubeconfig", str(config)]
    assert argv[2:4] == ["apply", "--server-side"] and argv[-2:] == ["-f", "-"]
    assert list(yaml.safe_load_all((tmp_path / "stdin").read_text())) == install_manifests()


def test_kubectl_argv_without_kubeconfig() -> None:
    assert kubectl_apply_argv("kubectl", None) == [
        "kubectl",
        "apply",
        "--server-side",
        "--field-manager=mizzen",
        "-f",
        "-",
    ]
