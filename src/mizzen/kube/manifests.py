"""What ``mizzen install`` applies to a Kubernetes cluster, as plain dicts.

Pure: ``install_manifests(options)`` returns the objects in apply order
(definitions before the things that use them); ``to_yaml`` turns them into one
deterministic YAML stream. The Helm chart in ``charts/mizzen`` renders the
same objects for its default values, and a test holds the two together.

Names, labels, ports and selectors are Istio's, so that a user who knows an
istiod install finds the same objects under the same names:

- the control plane is the Deployment and Service ``istiod`` (``istiod-<rev>``
  with a revision) in ``istio-system``, labelled ``app: istiod``,
  ``istio: pilot``; ports 15010 (xDS), 15012 (xDS + CA over TLS), 15014
  (monitoring), 15017 (webhooks, 443 on the Service), readiness ``/ready``
  on 8080;
- the mesh config is the ``mesh`` key of the ConfigMap ``istio``;
- injection follows Istio's four webhooks and their selectors on the
  ``istio-injection`` and ``istio.io/rev`` namespace labels and the
  ``sidecar.istio.io/inject`` and ``istio.io/rev`` pod labels;
- webhook ``caBundle``s are empty: the control plane patches them in once its
  serving certificate exists, which is why its role may update exactly those
  two configurations.

RBAC is least privilege and spelled out: no ``*`` verb, resource or group.
Where Mizzen differs from Istio on purpose:

- one validating webhook, which for the default revision has no object
  selector (Istio splits that job between ``istio-validator-<ns>``, for
  objects labelled ``istio.io/rev``, and ``istiod-default-validator``);
- its ``failurePolicy`` is ``Fail`` from the start (Istio installs
  ``Ignore`` and flips it once its webhook serves): until the control plane
  is ready, Istio resources are refused rather than admitted unchecked;
- no ``istio-sidecar-injector`` ConfigMap: the injection template is
  Mizzen's code, not a user-editable Go template.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from mizzen.kube.crds import CRD_SPECS, CrdSpec, crds

__all__ = [
    "DEFAULT_HUB",
    "DEFAULT_TAG",
    "InstallOptions",
    "install_manifests",
    "to_yaml",
]

Json = dict[str, Any]

DEFAULT_HUB = "docker.io/mizzen"
DEFAULT_TAG = "0.1.0"

XDS_PORT = 15010
XDS_TLS_PORT = 15012
MONITORING_PORT = 15014
WEBHOOK_PORT = 15017
READY_PORT = 8080
CA_ROOT_CONFIGMAP = "istio-ca-root-cert"

_READ = ["get", "list", "watch"]


@dataclass(frozen=True)
class InstallOptions:
    namespace: str = "istio-system"
    hub: str = DEFAULT_HUB
    tag: str = DEFAULT_TAG
    replicas: int = 2
    trust_domain: str = "cluster.local"
    revision: str = ""  # "" is Istio's default revision

    @property
    def image(self) -> str:
        return f"{self.hub}/pilot:{self.tag}"

    @property
    def rev_label(self) -> str:
        # The value Istio puts in istio.io/rev for the unnamed revision.
        return self.revision or "default"

    @property
    def istiod(self) -> str:
        """Name of the control plane's Deployment, Service and account."""
        return f"istiod-{self.revision}" if self.revision else "istiod"

    def suffixed(self, name: str) -> str:
        return f"{name}-{self.revision}" if self.revision else name

    @property
    def injector_name(self) -> str:
        return self.suffixed("istio-sidecar-injector")

    @property
    def validator_name(self) -> str:
        return f"{self.suffixed('istio-validator')}-{self.namespace}"

    @property
    def cluster_role_name(self) -> str:
        return f"{self.suffixed('istiod-clusterrole')}-{self.namespace}"


def install_manifests(options: InstallOptions | None = None) -> list[Json]:
    """Every object of an install, in the order to apply them."""
    o = options or InstallOptions()
    return [
        *crds(),
        namespace(o),
        service_account(o),
        cluster_role(o),
        cluster_role_binding(o),
        role(o),
        role_binding(o),
        mesh_config_map(o),
        deployment(o),
        service(o),
        pod_disruption_budget(o),
        injector_webhooks(o),
        validator_webhook(o),
    ]


def to_yaml(documents: Iterable[Json]) -> str:
    """One YAML stream; keys sorted so that equal objects print equally."""
    return yaml.safe_dump_all(list(documents), sort_keys=True, default_flow_style=False)


# ---------------------------------------------------------------------------
# Metadata


def _labels(o: InstallOptions) -> Json:
    return {"app": "istiod", "istio": "pilot", "istio.io/rev": o.rev_label}


def _meta(o: InstallOptions, name: str, *, namespaced: bool = True) -> Json:
    meta: Json = {"name": name, "labels": _labels(o)}
    if namespaced:
        meta["namespace"] = o.namespace
    return meta


def namespace(o: InstallOptions) -> Json:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": o.namespace}}


def service_account(o: InstallOptions) -> Json:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(o, o.istiod)}


# ---------------------------------------------------------------------------
# RBAC


def _rule(
    group: str, resources: Sequence[str], verbs: Sequence[str], names: Sequence[str] = ()
) -> Json:
    rule: Json = {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
    if names:
        rule["resourceNames"] = list(names)
    return rule


def _istio_rules() -> list[Json]:
    """Read every Istio kind; write the status of those that have one."""
    rules = []
    for group in sorted({s.group for s in CRD_SPECS}):
        specs = sorted((s for s in CRD_SPECS if s.group == group), key=lambda s: s.plural)
        rules.append(_rule(group, [s.plural for s in specs], _READ))
        with_status = [f"{s.plural}/status" for s in specs if s.status]
        if with_status:
            rules.append(_rule(group, with_status, ["update"]))
    return rules


def cluster_role(o: InstallOptions) -> Json:
    rules = [
        *_istio_rules(),
        _rule("", ["namespaces", "nodes", "pods", "serviceaccounts", "services"], _READ),
        _rule("discovery.k8s.io", ["endpointslices"], _READ),
        # Workload certificates' credentialName and the remote CA.
        _rule("", ["secrets"], _READ),
        # The root certificate published in every namespace. RBAC cannot
        # restrict "create" by name, so only get/update carry the name.
        _rule("", ["configmaps"], ["create"]),
        _rule("", ["configmaps"], ["get", "update"], [CA_ROOT_CONFIGMAP]),
        # Pod credentials: the CA checks the caller's token, the webhooks
        # the caller's rights.
        _rule("authentication.k8s.io", ["tokenreviews"], ["create"]),
        _rule("authorization.k8s.io", ["subjectaccessreviews"], ["create"]),
        # caBundle patching of exactly the two webhook configurations.
        _rule(
            "admissionregistration.k8s.io",
            ["mutatingwebhookconfigurations"],
            ["get", "patch", "update"],
            [o.injector_name],
        ),
        _rule(
            "admissionregistration.k8s.io",
            ["validatingwebhookconfigurations"],
            ["get", "patch", "update"],
            [o.validator_name],
        ),
    ]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(o, o.cluster_role_name, namespaced=False),
        "rules": rules,
    }


def _subjects(o: InstallOptions) -> list[Json]:
    return [{"kind": "ServiceAccount", "name": o.istiod, "namespace": o.namespace}]


def cluster_role_binding(o: InstallOptions) -> Json:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(o, o.cluster_role_name, namespaced=False),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": o.cluster_role_name,
        },
        "subjects": _subjects(o),
    }


def role(o: InstallOptions) -> Json:
    rules = [
        # No leases: every write of the control plane is idempotent (create
        # or 409, replace only when different), so the replicas need no leader.
        # Its own serving certificate and the plugged-in CA (``cacerts``).
        _rule("", ["secrets"], ["create", "get", "update"]),
        # The mesh config.
        _rule("", ["configmaps"], _READ),
    ]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(o, o.istiod),
        "rules": rules,
    }


def role_binding(o: InstallOptions) -> Json:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(o, o.istiod),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": o.istiod},
        "subjects": _subjects(o),
    }


# ---------------------------------------------------------------------------
# Mesh config and the control plane


def mesh_config(o: InstallOptions) -> Json:
    return {
        "defaultConfig": {"discoveryAddress": f"{o.istiod}.{o.namespace}.svc:{XDS_TLS_PORT}"},
        "rootNamespace": o.namespace,
        "trustDomain": o.trust_domain,
    }


def mesh_config_map(o: InstallOptions) -> Json:
    text = yaml.safe_dump(mesh_config(o), sort_keys=True, default_flow_style=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(o, o.suffixed("istio")),
        "data": {"mesh": text},
    }


def _pod_labels(o: InstallOptions) -> Json:
    # The control plane never gets a sidecar, whatever its namespace says.
    return {**_labels(o), "sidecar.istio.io/inject": "false"}


def _container(o: InstallOptions) -> Json:
    def field_env(name: str, path: str) -> Json:
        return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}

    def port(number: int, name: str) -> Json:
        return {"containerPort": number, "name": name, "protocol": "TCP"}

    return {
        "name": "discovery",
        "image": o.image,
        "args": [
            "discovery",
            f"--monitoringAddr=:{MONITORING_PORT}",
            "--domain",
            "cluster.local",
        ],
        "env": [
            {"name": "REVISION", "value": o.rev_label},
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            # The webhook's serving certificate names the pod's address.
            field_env("POD_IP", "status.podIP"),
        ],
        "ports": [
            port(READY_PORT, "http-debug"),
            port(XDS_PORT, "grpc-xds"),
            port(XDS_TLS_PORT, "tcp-istiod"),
            port(MONITORING_PORT, "http-monitoring"),
            port(WEBHOOK_PORT, "https-webhooks"),
        ],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": READY_PORT},
            "initialDelaySeconds": 1,
            "periodSeconds": 3,
            "timeoutSeconds": 5,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "volumeMounts": [
            {"name": "config-volume", "mountPath": "/etc/istio/config", "readOnly": True},
            {"name": "cacerts", "mountPath": "/etc/cacerts", "readOnly": True},
            {"name": "local-certs", "mountPath": "/var/run/secrets/istio-dns"},
        ],
    }


def _volumes(o: InstallOptions) -> list[Json]:
    return [
        {"name": "config-volume", "configMap": {"name": o.suffixed("istio")}},
        # A plugged-in CA when the operator made one, else the self-signed root.
        {"name": "cacerts", "secret": {"secretName": "cacerts", "optional": True}},
        {"name": "local-certs", "emptyDir": {"medium": "Memory"}},
    ]


def deployment(o: InstallOptions) -> Json:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(o, o.istiod),
        "spec": {
            "replicas": o.replicas,
            "selector": {"matchLabels": {"istio": "pilot", "istio.io/rev": o.rev_label}},
            "template": {
                "metadata": {"labels": _pod_labels(o)},
                "spec": {
                    "serviceAccountName": o.istiod,
                    "containers": [_container(o)],
                    "volumes": _volumes(o),
                },
            },
        },
    }


def service(o: InstallOptions) -> Json:
    def port(name: str, number: int, target: int | None = None) -> Json:
        out: Json = {"name": name, "port": number, "protocol": "TCP"}
        if target is not None:
            out["targetPort"] = target
        return out

    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(o, o.istiod),
        "spec": {
            "selector": {"app": "istiod", "istio.io/rev": o.rev_label},
            "ports": [
                port("grpc-xds", XDS_PORT),
                port("https-dns", XDS_TLS_PORT),
                port("https-webhook", 443, WEBHOOK_PORT),
                port("http-monitoring", MONITORING_PORT),
            ],
        },
    }


def pod_disruption_budget(o: InstallOptions) -> Json:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(o, o.istiod),
        "spec": {
            "minAvailable": 1,
            "selector": {"matchLabels": {"app": "istiod", "istio.io/rev": o.rev_label}},
        },
    }


# ---------------------------------------------------------------------------
# Admission webhooks


def _expr(key: str, operator: str, *values: str) -> Json:
    out: Json = {"key": key, "operator": operator}
    if values:
        out["values"] = list(values)
    return out


def _selector(*exprs: Json) -> Json:
    return {"matchExpressions": list(exprs)}


def injection_selectors(o: InstallOptions) -> list[tuple[str, Json, Json]]:
    """(webhook name, namespaceSelector, objectSelector), as Istio documents
    the choice: a namespace label decides first, ``istio-injection`` over
    ``istio.io/rev``; without one, the pod's labels decide. A pod labelled
    ``sidecar.istio.io/inject: "false"`` is never injected."""
    rev = o.rev_label
    not_false = _expr("sidecar.istio.io/inject", "NotIn", "false")
    no_ns_label = (_expr("istio.io/rev", "DoesNotExist"), _expr("istio-injection", "DoesNotExist"))
    hooks = [
        (
            "rev.namespace.sidecar-injector.istio.io",
            _selector(_expr("istio.io/rev", "In", rev), _expr("istio-injection", "DoesNotExist")),
            _selector(not_false),
        ),
        (
            "rev.object.sidecar-injector.istio.io",
            _selector(*no_ns_label),
            _selector(not_false, _expr("istio.io/rev", "In", rev)),
        ),
    ]
    if not o.revision:
        # Only the default revision answers the revision-less labels.
        hooks += [
            (
                "namespace.sidecar-injector.istio.io",
                _selector(_expr("istio-injection", "In", "enabled")),
                _selector(not_false),
            ),
            (
                "object.sidecar-injector.istio.io",
                _selector(*no_ns_label),
                _selector(
                    _expr("sidecar.istio.io/inject", "In", "true"),
                    _expr("istio.io/rev", "DoesNotExist"),
                ),
            ),
        ]
    return hooks


def _client(o: InstallOptions, path: str) -> Json:
    # caBundle left out: the control plane patches it in at run time.
    return {"service": {"name": o.istiod, "namespace": o.namespace, "path": path, "port": 443}}


def injector_webhooks(o: InstallOptions) -> Json:
    rules = [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    ]
    webhooks = [
        {
            "name": name,
            "clientConfig": _client(o, "/inject"),
            "rules": rules,
            "namespaceSelector": ns_selector,
            "objectSelector": obj_selector,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "reinvocationPolicy": "Never",
        }
        for name, ns_selector, obj_selector in injection_selectors(o)
    ]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": _meta(o, o.injector_name, namespaced=False),
        "webhooks": webhooks,
    }


def _validation_rules() -> list[Json]:
    rules = []
    for group in sorted({s.group for s in CRD_SPECS}):
        specs: list[CrdSpec] = sorted(
            (s for s in CRD_SPECS if s.group == group), key=lambda s: s.plural
        )
        versions = sorted({v for s in specs for v in s.versions})
        rules.append(
            {
                "apiGroups": [group],
                "apiVersions": versions,
                "operations": ["CREATE", "UPDATE"],
                "resources": [s.plural for s in specs],
            }
        )
    return rules


def validator_webhook(o: InstallOptions) -> Json:
    webhook: Json = {
        "name": "rev.validation.istio.io",
        "clientConfig": _client(o, "/validate"),
        "rules": _validation_rules(),
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    if o.revision:
        webhook["objectSelector"] = _selector(_expr("istio.io/rev", "In", o.revision))
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": _meta(o, o.validator_name, namespaced=False),
        "webhooks": [webhook],
    }


def kubectl_apply_argv(kubectl: str, kubeconfig: str | None) -> list[str]:
    """kubectl applying the manifests it reads on stdin."""
    argv = [kubectl]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    # Server-side apply: large CRDs do not fit the client-side
    # last-applied annotation (262144 bytes), and ownership stays tracked.
    return [*argv, "apply", "--server-side", "--field-manager=mizzen", "-f", "-"]
