"""Pure helpers of the mesh daemon: probes, back-off, container commands."""

from __future__ import annotations

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
    container_argv,
    probe_target,
    probe_targets,
    restart_delay,
)
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


def test_named_probe_ports_resolve_against_container_ports() -> None:
    c = Container(
        name="app",
        ports=(ContainerPort(8558, "management"), ContainerPort(8080, "http")),
        readiness_probe=Probe(http_get=HTTPGetAction(port="management", path="/ready")),
    )
    assert probe_targets(plan(c)) == (HttpGetProbe(8558, "/ready"),)


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
