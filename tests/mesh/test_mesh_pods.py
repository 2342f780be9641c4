"""Pure helpers of the mesh daemon: probes, back-off, container commands."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mizzen.api.resources import (
    Container,
    ContainerPort,
    HTTPGetAction,
    PodSpec,
    Probe,
)
from mizzen.mesh.pods import (
    after_exit,
    app_probers_json,
    container_argv,
    container_mounts,
    host_names,
    liveness_target,
    pre_stop_hook,
    probe_target,
    probe_targets,
    restart_delay,
    volume_files,
)
from mizzen.model.snapshot import Endpoint, MeshService, MeshSnapshot, ServicePort
from mizzen.node.spec import SpecError
from mizzen.registry.pods import PodPlan
from mizzen.runtime.probes import HttpGetProbe, TcpSocketProbe


def plan(*containers: Container) -> PodPlan:
    return PodPlan(
        name="web-0",
        namespace="shop",
        labels={},
        annotations={},
        service_account="default",
        containers=containers,
        sidecar=True,
        owner="web",
        source_dir="/srv",
        host_network=False,
    )


MANAGED = Container(
    name="app",
    ports=(ContainerPort(8558, "management"), ContainerPort(8080, "http")),
    readiness_probe=Probe(http_get=HTTPGetAction(port="management", path="/ready")),
    liveness_probe=Probe(tcp_socket_port="http", timeout_seconds=3),
)


def test_named_probe_ports_resolve_against_container_ports() -> None:
    bare = dataclasses.replace(plan(MANAGED), sidecar=False)
    assert probe_targets(bare) == (HttpGetProbe(8558, "/ready"),)
    assert liveness_target(bare, MANAGED) == TcpSocketProbe(8080)
    assert app_probers_json(bare) == "{}"


def test_probes_of_injected_pods_go_through_the_agent_on_15020() -> None:
    injected = plan(MANAGED)
    assert probe_targets(injected) == (HttpGetProbe(15020, "/app-health/app/readyz"),)
    assert liveness_target(injected, MANAGED) == HttpGetProbe(15020, "/app-health/app/livez")
    assert json.loads(app_probers_json(injected)) == {
        "/app-health/app/readyz": {
            "httpGet": {"path": "/ready", "port": 8558, "scheme": "HTTP"},
            "timeoutSeconds": 1,
        },
        "/app-health/app/livez": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 3},
    }


def test_the_rewrite_annotation_turns_probe_rewriting_off() -> None:
    opted_out = dataclasses.replace(
        plan(MANAGED), annotations={"sidecar.istio.io/rewriteAppHTTPProbers": "false"}
    )
    assert probe_targets(opted_out) == (HttpGetProbe(8558, "/ready"),)
    assert app_probers_json(opted_out) == "{}"


def test_without_a_probe_every_container_port_must_accept() -> None:
    c = Container(name="app", ports=(ContainerPort(80), ContainerPort(81)))
    assert probe_targets(plan(c)) == (TcpSocketProbe(80), TcpSocketProbe(81))


def test_unknown_named_port_gives_no_target() -> None:
    assert probe_target(Probe(tcp_socket_port="nope"), {}) is None
    assert probe_target(Probe(tcp_socket_port="9000"), {}) == TcpSocketProbe(9000)
    assert probe_target(Probe(exec_command=("true",)), {}) is None


@pytest.mark.parametrize(("restarts", "delay"), [(0, 1), (1, 2), (3, 8), (5, 30), (9, 30)])
def test_restart_back_off(restarts: int, delay: float) -> None:
    assert restart_delay(restarts) == delay


def test_container_argv_anchors_relative_paths_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "web.py").write_text("")
    manifests = tmp_path / "platform"
    manifests.mkdir()
    c = Container(name="app", command=("python3", "../apps/web.py"), args=("--port", "80"))
    argv = container_argv(c, str(manifests))
    assert argv == ["python3", str(tmp_path / "apps" / "web.py"), "--port", "80"]


def test_container_without_command_is_refused() -> None:
    with pytest.raises(ValueError, match="has no command"):
        container_argv(Container(name="app", image="nginx"), "/srv")


def test_pod_spec_defaults_are_kubernetes_defaults() -> None:
    assert PodSpec(containers=()).service_account_name == "default"


@pytest.mark.parametrize(
    ("owner_kind", "policy", "code", "failed_before", "outcome"),
    [
        ("Deployment", "Always", 0, 0, "restart"),
        ("Deployment", "Always", 1, 9, "restart"),
        ("Job", "Never", 0, 0, "done"),
        ("Job", "OnFailure", 0, 2, "done"),
        ("Job", "Never", 3, 0, "restart"),
        ("Job", "Never", 3, 1, "restart"),
        ("Job", "Never", 3, 2, "fail"),  # backoffLimit 2: the third failed run ends it
        ("Job", "OnFailure", 3, 2, "fail"),
        ("", "Never", 3, 0, "fail"),  # a bare pod is not retried under Never
        ("", "OnFailure", 3, 5, "restart"),
    ],
)
def test_after_exit_follows_restart_policy_and_backoff_limit(
    owner_kind: str, policy: str, code: int, failed_before: int, outcome: str
) -> None:
    job = dataclasses.replace(
        plan(Container("run")), owner_kind=owner_kind, restart_policy=policy, backoff_limit=2
    )
    assert after_exit(job, code, failed_before) == outcome


def _headless_snapshot() -> MeshSnapshot:
    hostname = "db.shop.svc.cluster.local"
    db = MeshService(
        hostname, "shop", "db", (ServicePort("tcp", 5432, "TCP"),), vip=None, resolution="NONE"
    )
    web = MeshService(
        "web.shop.svc.cluster.local", "shop", "web", (ServicePort("http", 80, "HTTP"),), "10.0.0.9"
    )
    ready = (Endpoint("198.18.0.7", 5432), Endpoint("198.18.0.5", 5432))
    return MeshSnapshot(
        version="1",
        services={db.hostname: db, web.hostname: web},
        endpoints={(hostname, 5432): ready},
        workloads=(),
    )


def test_headless_names_resolve_to_ready_pods_and_stateful_pods_by_name() -> None:
    db1 = dataclasses.replace(plan(Container("db")), name="db-1", hostname="db-1", subdomain="db")
    loose = dataclasses.replace(plan(Container("x")), name="x", hostname="x", subdomain="nothing")
    names = host_names(_headless_snapshot(), "shop", [(db1, "198.18.0.7"), (loose, "198.18.0.8")])
    assert names["db"] == ("198.18.0.5", "198.18.0.7")
    assert names["db.shop.svc.cluster.local"] == ("198.18.0.5", "198.18.0.7")
    assert names["web"] == "10.0.0.9"
    assert names["db-1.db"] == names["db-1.db.shop.svc.cluster.local"] == "198.18.0.7"
    # A subdomain that names no headless Service gives no name.
    assert not [n for n in names if n.startswith("x.")]
    other = host_names(_headless_snapshot(), "default", [(db1, "198.18.0.7")])
    assert "db-1.db" not in other and other["db-1.db.shop"] == "198.18.0.7"


def _with_volumes(
    *volumes: dict[str, object], mounts: list[dict[str, object]]
) -> tuple[Container, PodPlan]:
    container = Container("app", raw={"name": "app", "volumeMounts": mounts})
    return container, dataclasses.replace(plan(container), volumes=volumes)


def test_container_mounts_resolve_sub_paths_and_make_api_volumes_read_only() -> None:
    container, pod = _with_volumes(
        {"name": "scratch", "emptyDir": {}},
        {"name": "config", "configMap": {"name": "settings"}},
        mounts=[
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "config", "mountPath": "/etc/app/app.conf", "subPath": "app.conf"},
        ],
    )
    dirs = {"scratch": Path("/v/scratch"), "config": Path("/v/config")}
    assert container_mounts(container, pod, dirs) == [
        {"path": "/scratch", "source": "/v/scratch", "readOnly": False},
        {"path": "/etc/app/app.conf", "source": "/v/config/app.conf", "readOnly": True},
    ]


def test_a_mount_of_no_volume_and_token_projections_are_refused() -> None:
    container, pod = _with_volumes(mounts=[{"name": "nothing", "mountPath": "/x"}])
    with pytest.raises(SpecError, match="'nothing' names no volume"):
        container_mounts(container, pod, {})
    token = {"serviceAccountToken": {"path": "token", "audience": "a"}}
    _, pod = _with_volumes({"name": "t", "projected": {"sources": [token]}}, mounts=[])
    with pytest.raises(SpecError, match="need an API server"):
        volume_files(pod, "198.18.0.2", {})


def test_volume_files_read_config_maps_and_the_pods_fields() -> None:
    _, pod = _with_volumes(
        {"name": "config", "configMap": {"name": "settings"}},
        {
            "name": "info",
            "downwardAPI": {
                "items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]
            },
        },
        mounts=[],
    )
    sources = {("ConfigMap", "shop", "settings"): {"greeting": "hello"}}
    files = volume_files(pod, "198.18.0.2", sources)
    assert [(f.path, f.data) for f in files["config"]] == [("greeting", b"hello")]
    assert [(f.path, f.data) for f in files["info"]] == [("name", b"web-0")]


def test_pre_stop_hooks() -> None:
    run = Container("a", raw={"lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "x"]}}}})
    assert pre_stop_hook(run) == ("sh", "-c", "x")
    get = Container(
        "a",
        ports=(ContainerPort(8080, name="http"),),
        raw={"lifecycle": {"preStop": {"httpGet": {"port": "http", "path": "/quit"}}}},
    )
    assert pre_stop_hook(get) == HttpGetProbe(8080, "/quit")
    assert pre_stop_hook(Container("a")) is None
