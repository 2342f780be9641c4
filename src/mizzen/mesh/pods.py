"""Pure helpers the daemon uses to turn pod plans into runtime actions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mizzen.agent.appprobes import app_health_path, probers_json
from mizzen.api.resources import ConfigMap, Container, Probe, Resource, Secret
from mizzen.kube.images import PodContext, expand
from mizzen.model.snapshot import MeshSnapshot
from mizzen.node import spec as podspec
from mizzen.node import volumes
from mizzen.node.spec import Sources
from mizzen.node.volumes import VolumeFile
from mizzen.registry.pods import PodPlan
from mizzen.runtime.dns import Addresses, names_for_services
from mizzen.runtime.kubeproxy import ServiceRule
from mizzen.runtime.probes import HttpGetProbe, TcpSocketProbe
from mizzen.runtime.probes import Probe as RuntimeProbe


def pod_key(plan: PodPlan) -> str:
    return f"{plan.namespace}/{plan.name}"


def container_ports(plan: PodPlan) -> dict[str, int]:
    return {p.name: p.container_port for p in plan.container_ports if p.name}


def _resolve_port(port: int | str, named: Mapping[str, int]) -> int | None:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    return named.get(port)


def probe_target(probe: Probe, named: Mapping[str, int]) -> RuntimeProbe | None:
    """Where an httpGet or tcpSocket probe looks; None for probes we cannot run."""
    if probe.http_get is not None:
        port = _resolve_port(probe.http_get.port, named)
        return None if port is None else HttpGetProbe(port, probe.http_get.path or "/")
    if probe.tcp_socket_port is not None:
        port = _resolve_port(probe.tcp_socket_port, named)
        return None if port is None else TcpSocketProbe(port)
    return None


def after_exit(plan: PodPlan, code: int, failed_before: int) -> str:
    """What happens to a container that exited ``code``: ``restart`` it,
    count it ``done``, or ``fail`` the pod.

    restartPolicy Always restarts whatever the code; under OnFailure and
    Never exit 0 is done. A failed run of a Job's pod is retried while fewer
    than ``backoffLimit`` runs failed before it (Kubernetes would start a new
    pod under Never; here the same pod runs again). A bare pod fails at once
    under Never and is restarted under OnFailure.
    """
    if plan.restart_policy == "Always":
        return "restart"
    if code == 0:
        return "done"
    if plan.owner_kind == "Job":
        return "restart" if failed_before < plan.backoff_limit else "fail"
    return "fail" if plan.restart_policy == "Never" else "restart"


# Volumes whose files come from the API: Kubernetes mounts them read-only.
_API_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")


def volume_files(plan: PodPlan, ip: str, sources: Sources) -> dict[str, list[VolumeFile]]:
    """Each volume's files by name ([] for an emptyDir); raises SpecError
    for a missing ConfigMap, Secret or key, or a source the runtime lacks."""
    if volumes.token_requests({"spec": {"volumes": list(plan.volumes)}}):
        raise podspec.SpecError(
            "serviceAccountToken projections need an API server: use Kubernetes mode"
        )
    pod = pod_context(plan, ip)
    return {v["name"]: volumes.render_volume(v, pod, sources, {}) for v in plan.volumes}


def container_mounts(
    container: Container, plan: PodPlan, volume_dirs: Mapping[str, Path]
) -> list[dict[str, Any]]:
    """The container's volumeMounts as podfs wants them: path, source (the
    volume's directory, or a file in it for a subPath) and readOnly."""
    kinds = {v["name"]: next((k for k in v if k != "name"), "") for v in plan.volumes}
    out = []
    for mount in container.raw.get("volumeMounts") or ():
        name = mount["name"]
        if name not in volume_dirs:
            raise podspec.SpecError(f"volumeMount {name!r} names no volume of the pod")
        source = volume_dirs[name] / (mount.get("subPath") or "")
        read_only = bool(mount.get("readOnly")) or kinds[name] in _API_VOLUMES
        out.append({"path": mount["mountPath"], "source": str(source), "readOnly": read_only})
    return out


def pre_stop_hook(container: Container) -> HttpGetProbe | tuple[str, ...] | None:
    """A container's ``lifecycle.preStop``: a command to run in the pod, or
    an HTTP GET to the pod (a named port resolves against the container's)."""
    hook = (container.raw.get("lifecycle") or {}).get("preStop") or {}
    if "exec" in hook:
        return tuple(hook["exec"].get("command") or ()) or None
    if "httpGet" in hook:
        get = hook["httpGet"]
        named = {p.name: p.container_port for p in container.ports if p.name}
        port = _resolve_port(get.get("port", 80), named)
        return None if port is None else HttpGetProbe(port, get.get("path") or "/")
    return None


def restart_delay(restarts: int) -> float:
    """The kubelet's crash-loop back-off, scaled down for a local mesh:
    1 s, 2 s, 4 s, ... capped at 30 s."""
    return float(min(30, 2 ** min(restarts, 5)))


# Istio's agent port for rewritten probes, and the pod annotation that opts out.
STATUS_PORT = 15020
REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"


def rewrites_probes(plan: PodPlan) -> bool:
    """Istio rewrites the probes of injected pods unless told not to: the
    sidecar would refuse a plaintext probe under STRICT mTLS."""
    return plan.sidecar and plan.annotations.get(REWRITE_PROBES, "").lower() != "false"


def _target(plan: PodPlan, container: Container, kind: str) -> RuntimeProbe | None:
    probe = container.readiness_probe if kind == "readyz" else container.liveness_probe
    if probe is None:
        return None
    target = probe_target(probe, container_ports(plan))
    if target is None or not rewrites_probes(plan):
        return target
    return HttpGetProbe(STATUS_PORT, app_health_path(container.name, kind))


def liveness_target(plan: PodPlan, container: Container) -> RuntimeProbe | None:
    return _target(plan, container, "livez")


def app_probers_json(plan: PodPlan) -> str:
    """What the agent runs for the rewritten probes (ISTIO_KUBE_APP_PROBERS)."""
    if not rewrites_probes(plan):
        return "{}"
    named = container_ports(plan)
    found: dict[str, tuple[RuntimeProbe, float]] = {}
    for container in plan.containers:
        for kind, probe in (
            ("readyz", container.readiness_probe),
            ("livez", container.liveness_probe),
        ):
            target = None if probe is None else probe_target(probe, named)
            if probe is not None and target is not None:
                found[app_health_path(container.name, kind)] = (target, probe.timeout_seconds)
    return probers_json(found)


def probe_targets(plan: PodPlan) -> tuple[RuntimeProbe, ...]:
    """The kubelet's view: each container's readinessProbe (rewritten to the
    agent when the pod has a sidecar), or with no probe every declared
    containerPort accepting connections."""
    targets: list[RuntimeProbe] = []
    for container in plan.containers:
        probe: Probe | None = container.readiness_probe
        if probe is None:
            targets.extend(TcpSocketProbe(p.container_port) for p in container.ports)
        elif (target := _target(plan, container, "readyz")) is not None:
            targets.append(target)
    return tuple(targets)


def pod_ports_json(plan: PodPlan) -> str:
    ports = [
        {"name": p.name, "containerPort": p.container_port, "protocol": p.protocol}
        for p in plan.container_ports
    ]
    return json.dumps(ports)


def container_argv(
    container: Container, source_dir: str, env: Mapping[str, str] | None = None
) -> list[str]:
    """Kubernetes semantics: `command` replaces the image entrypoint, `args`
    follow it, ``$(NAME)`` in either is the container's variable. Images
    cannot be pulled here, so a container without a command has nothing to
    run."""
    argv = [expand(arg, env or {}) for arg in (*container.command, *container.args)]
    if not argv:
        raise ValueError(
            f"container {container.name!r} has no command: images cannot be pulled in the "
            "local runtime, give the container a `command`"
        )
    return [_relative_to(arg, source_dir) for arg in argv]


def _relative_to(arg: str, source_dir: str) -> str:
    # Only arguments that look like relative paths to existing files are
    # anchored to the manifest's folder; everything else is passed unchanged.
    if arg.startswith(("./", "../")):
        candidate = Path(source_dir, arg)
        if candidate.exists():
            return str(candidate.resolve())
    return arg


def config_sources(resources: Iterable[Resource]) -> Sources:
    """The ConfigMaps' and Secrets' data a pod's env may read, as text."""
    out: dict[tuple[str, str, str], Mapping[str, str]] = {}
    for resource in resources:
        obj = resource.obj
        if isinstance(obj, ConfigMap | Secret):
            key = (type(obj).__name__, obj.meta.namespace, obj.meta.name)
            out[key] = {k: v.decode(errors="replace") for k, v in obj.data.items()}
    return out


def pod_context(plan: PodPlan, ip: str) -> PodContext:
    return PodContext(
        name=plan.name,
        namespace=plan.namespace,
        ip=ip,
        labels=plan.labels,
        annotations=plan.annotations,
        service_account=plan.service_account,
        node_name="local",
        host_ip=ip,
    )


def container_env(
    container: Container,
    plan: PodPlan,
    ip: str,
    venv_bin: str,
    base_path: str,
    sources: Sources | None = None,
) -> dict[str, str]:
    """The runtime's own variables, then the container's ``envFrom`` and
    ``env`` as the kubelet resolves them (ConfigMaps, Secrets, the pod's
    fields; raises ``SpecError`` for a missing ConfigMap, Secret or key)."""
    env = {
        "PATH": f"{venv_bin}:{base_path}",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "POD_NAME": plan.name,
        "POD_NAMESPACE": plan.namespace,
        "POD_IP": ip,
        "SERVICE_ACCOUNT": plan.service_account,
    }
    if container.raw:
        env.update(podspec.container_env(container.raw, pod_context(plan, ip), sources or {}))
    else:
        env.update({e.name: e.value for e in container.env})
    return env


def host_names(
    snapshot: MeshSnapshot, namespace: str, pods: Iterable[tuple[PodPlan, str]] = ()
) -> dict[str, Addresses]:
    """Names a pod in `namespace` resolves, as Kubernetes' DNS answers them:
    every Service by its qualified names (and by its short name in its own
    namespace) to its VIP, or, headless, to each of its ready pods; and a
    ready pod with a hostname and a subdomain that names a headless Service
    (a StatefulSet's) as ``<hostname>.<subdomain>.<ns>.svc.<domain>``.
    ``pods`` are the ready pods with their addresses."""
    services: list[tuple[str, str, Addresses]] = []
    headless: set[tuple[str, str]] = set()
    for svc in snapshot.services.values():
        if svc.origin != "kubernetes":
            continue
        if svc.vip is not None:
            services.append((svc.name, svc.namespace, svc.vip))
        if svc.resolution != "NONE":
            continue  # ExternalName (DNS) names are not resolved here
        headless.add((svc.namespace, svc.name))
        ready = {e.address for p in svc.ports for e in snapshot.endpoints_of(svc.hostname, p.port)}
        if ready:
            services.append((svc.name, svc.namespace, tuple(sorted(ready))))
    out = names_for_services(services, namespace, snapshot.domain_suffix)
    for plan, ip in pods:
        if plan.hostname and (plan.namespace, plan.subdomain) in headless:
            stable = [(f"{plan.hostname}.{plan.subdomain}", plan.namespace, ip)]
            out.update(names_for_services(stable, namespace, snapshot.domain_suffix))
    return out


def service_nat(snapshot: MeshSnapshot) -> tuple[ServiceRule, ...]:
    """kube-proxy's table: every VIP:port to its ready endpoints."""
    rules: list[ServiceRule] = []
    for svc in sorted(snapshot.services.values(), key=lambda s: s.hostname):
        if svc.origin != "kubernetes" or svc.vip is None:
            continue
        for port in svc.ports:
            eps = snapshot.endpoints_of(svc.hostname, port.port)
            proto = "UDP" if port.protocol == "UDP" else "TCP"
            rules.append(
                ServiceRule(svc.vip, port.port, proto, tuple((e.address, e.port) for e in eps))
            )
    return tuple(rules)
