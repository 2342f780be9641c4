"""Small builders of api resources for in-memory registry tests."""

from __future__ import annotations

from collections.abc import Mapping

from mizzen.api.resources import (
    Container,
    ContainerPort,
    GroupVersionKind,
    Namespace,
    ObjectMeta,
    Pod,
    PodController,
    PodSpec,
    PodTemplate,
    Resource,
    Source,
    Spec,
)


def res(obj: Spec, group: str = "", file: str = "/m/app.yaml") -> Resource:
    return Resource(GroupVersionKind(group, "v1", type(obj).__name__), Source(file, 0), obj)


def namespace(name: str, **labels: str) -> Resource:
    return res(Namespace(ObjectMeta(name, "", labels)))


def deployment(
    name: str,
    ns: str = "default",
    replicas: int = 1,
    labels: Mapping[str, str] | None = None,
    sa: str = "default",
) -> Resource:
    tpl_labels = dict(labels or {"app": name})
    containers = (Container("app", ports=(ContainerPort(9080, name="http"),)),)
    spec = PodSpec(containers, service_account_name=sa)
    template = PodTemplate(tpl_labels, {}, spec)
    return res(PodController(ObjectMeta(name, ns), replicas, tpl_labels, template), group="apps")


def pod(name: str, ns: str = "default", labels: Mapping[str, str] | None = None) -> Resource:
    spec = PodSpec((Container("app", ports=(ContainerPort(8080, name="http"),)),))
    return res(Pod(ObjectMeta(name, ns, dict(labels or {"app": name})), spec))
