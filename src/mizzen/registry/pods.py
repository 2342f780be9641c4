"""Which pods exist: what Kubernetes' controllers would make of Deployments,
ReplicaSets, StatefulSets, DaemonSets and Jobs, and bare Pods as they are,
each with Istio's sidecar-injection decision made.

Pods are named ``<controller>-<index>``: a StatefulSet's ordinals exactly as
Kubernetes names them, the others in place of Kubernetes' random suffixes
(so that a name stays the same from one apply to the next). One node runs
everything: a DaemonSet has one pod. A StatefulSet pod gets the stable name
``<pod>.<serviceName>``; under OrderedReady each pod starts once the one
before it is ready. A Job runs ``completions`` pods at once (parallelism is
not modelled).

Injection follows what Istio's default webhooks and injector do together:

* A namespace is *enabled* by ``istio-injection=enabled``, or by an
  ``istio.io/rev`` label when ``istio-injection`` is absent; any other
  ``istio-injection`` value (``disabled`` included) shuts injection off for
  the whole namespace, whatever the pods say.
* In an unlabeled namespace only a pod label opts in:
  ``sidecar.istio.io/inject: "true"`` or an ``istio.io/rev`` pod label.
  The (deprecated) annotation alone cannot, because no webhook sees the pod.
* Once a pod is considered, its ``sidecar.istio.io/inject`` label (or else
  the annotation) decides: y/yes/true/on inject, any other non-empty value
  does not; no value means the default policy, which is to inject.
* hostNetwork pods and pods in ``kube-system``/``kube-public`` never get one.

So the documented rule holds: if either the namespace or the pod says
disabled, there is no sidecar; if either says enabled, there is one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mizzen.api.resources import (
    Container,
    ContainerPort,
    Namespace,
    Pod,
    PodController,
    PodTemplate,
    Resource,
)

__all__ = ["PodPlan", "namespace_labels", "plan_pods", "sidecar_injected"]

INJECT = "sidecar.istio.io/inject"
NAMESPACE_INJECTION = "istio-injection"
REVISION = "istio.io/rev"
TLS_MODE = "security.istio.io/tlsMode"
CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"

_NEVER_INJECTED_NAMESPACES = frozenset({"kube-system", "kube-public"})
_TRUTHY = frozenset({"y", "yes", "true", "on"})


@dataclass(frozen=True)
class PodPlan:
    """A pod the runtime should run.

    ``labels`` are the template's, plus what Istio's injector adds to an
    injected pod (``security.istio.io/tlsMode: istio`` and the canonical
    service name/revision), so that endpoints and telemetry see the same
    labels as on an Istio cluster.
    """

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    containers: tuple[Container, ...] = ()
    sidecar: bool = False
    owner: str = ""  # the controller's name, "" for a bare Pod
    source_dir: str = ""  # directory of the manifest: base for relative command paths
    host_network: bool = False
    owner_kind: str = ""  # Deployment, StatefulSet, ..., "" for a bare Pod
    restart_policy: str = "Always"
    backoff_limit: int = 6  # Job pods: failed runs retried before the pod fails
    hostname: str = ""  # with subdomain: <hostname>.<subdomain>.<ns>.svc.<domain>
    subdomain: str = ""
    start_after: str = ""  # "ns/pod" that must be ready before this one starts
    init_containers: tuple[Container, ...] = ()
    grace_period: float = 30.0  # terminationGracePeriodSeconds
    volumes: tuple[Mapping[str, Any], ...] = ()  # as written

    @property
    def container_ports(self) -> tuple[ContainerPort, ...]:
        return tuple(p for c in self.containers for p in c.ports)


def plan_pods(resources: Sequence[Resource]) -> tuple[PodPlan, ...]:
    """Pods in resource order; a controller's are ``<name>-0`` ...
    ``<name>-<replicas-1>``."""
    ns_labels = namespace_labels(resources)
    plans: list[PodPlan] = []
    for resource in resources:
        obj = resource.obj
        source_dir = os.path.dirname(resource.source.file)
        if isinstance(obj, PodController):
            labels = ns_labels.get(obj.meta.namespace, {})
            plans.extend(_replicas(obj, labels, source_dir))
        elif isinstance(obj, Pod):
            labels = ns_labels.get(obj.meta.namespace, {})
            plans.append(_bare_pod(obj, labels, source_dir))
    return tuple(plans)


def namespace_labels(resources: Sequence[Resource]) -> dict[str, Mapping[str, str]]:
    """Labels of each declared Namespace; undeclared namespaces have none."""
    return {r.obj.meta.name: r.obj.meta.labels for r in resources if isinstance(r.obj, Namespace)}


def sidecar_injected(
    namespace: str,
    ns_labels: Mapping[str, str],
    pod_labels: Mapping[str, str],
    pod_annotations: Mapping[str, str],
    host_network: bool = False,
) -> bool:
    """Whether Istio would inject a sidecar into this pod (rules above)."""
    if host_network or namespace in _NEVER_INJECTED_NAMESPACES:
        return False
    if not _webhook_sees(ns_labels, pod_labels):
        return False
    value = pod_labels.get(INJECT, pod_annotations.get(INJECT, ""))
    if value == "":
        return True
    return value.lower() in _TRUTHY


def _webhook_sees(ns_labels: Mapping[str, str], pod_labels: Mapping[str, str]) -> bool:
    # Mirrors the namespace/object selectors of Istio's injection webhooks:
    # they compare label values exactly, unlike the injector's own parsing.
    if NAMESPACE_INJECTION in ns_labels:
        return ns_labels[NAMESPACE_INJECTION] == "enabled" and pod_labels.get(INJECT) != "false"
    if REVISION in ns_labels:
        return pod_labels.get(INJECT) != "false"
    if REVISION in pod_labels:
        return pod_labels.get(INJECT) != "false"
    return pod_labels.get(INJECT) == "true"


def _replicas(
    controller: PodController, ns_labels: Mapping[str, str], source_dir: str
) -> list[PodPlan]:
    meta, template = controller.meta, controller.template
    stateful = controller.kind == "StatefulSet"
    first = _plan(
        meta.name,
        meta.namespace,
        template,
        ns_labels,
        source_dir,
        owner=meta.name,
        owner_kind=controller.kind,
        backoff_limit=controller.backoff_limit,
    )
    plans = []
    for index in range(controller.replicas):
        name = f"{meta.name}-{index}"
        ordered = stateful and controller.ordered and index > 0
        plans.append(
            replace(
                first,
                name=name,
                hostname=name if stateful else first.hostname,
                subdomain=controller.service_name if stateful else first.subdomain,
                start_after=f"{meta.namespace}/{meta.name}-{index - 1}" if ordered else "",
            )
        )
    return plans


def _bare_pod(pod: Pod, ns_labels: Mapping[str, str], source_dir: str) -> PodPlan:
    meta = pod.meta
    template = PodTemplate(meta.labels, meta.annotations, pod.spec)
    return _plan(meta.name, meta.namespace, template, ns_labels, source_dir)


def _plan(
    name: str,
    namespace: str,
    template: PodTemplate,
    ns_labels: Mapping[str, str],
    source_dir: str,
    *,
    owner: str = "",
    owner_kind: str = "",
    backoff_limit: int = 6,
) -> PodPlan:
    """One pod of ``template`` (a bare Pod is its own template), with
    Istio's injection decision and the labels its injector adds."""
    spec = template.spec
    sidecar = sidecar_injected(
        namespace, ns_labels, template.labels, template.annotations, spec.host_network
    )
    return PodPlan(
        name=name,
        namespace=namespace,
        labels=_pod_labels(template.labels, owner or name, sidecar),
        annotations=dict(template.annotations),
        service_account=spec.service_account_name,
        containers=spec.containers,
        sidecar=sidecar,
        source_dir=source_dir,
        host_network=spec.host_network,
        restart_policy=spec.restart_policy,
        hostname=spec.hostname,
        subdomain=spec.subdomain,
        init_containers=spec.init_containers,
        grace_period=spec.termination_grace_period_seconds,
        volumes=spec.volumes,
        owner=owner,
        owner_kind=owner_kind,
        backoff_limit=backoff_limit,
    )


def _pod_labels(labels: Mapping[str, str], workload: str, sidecar: bool) -> dict[str, str]:
    out = dict(labels)
    if not sidecar:
        return out
    out.setdefault(TLS_MODE, "istio")
    name = _first(labels, ("app.kubernetes.io/name", "app"), workload)
    revision = _first(labels, ("app.kubernetes.io/version", "version"), "latest")
    out.setdefault(CANONICAL_NAME, name)
    out.setdefault(CANONICAL_REVISION, revision)
    return out


def _first(labels: Mapping[str, str], keys: tuple[str, ...], default: str) -> str:
    return next((labels[k] for k in keys if labels.get(k)), default)
