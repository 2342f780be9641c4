"""A mesh's life from `up` to `down`, and what users get wrong on the way.

Real namespaces, iptables and Envoys; the CLI runs as a subprocess, as a user
would run it. `down` must leave nothing behind, also after a crash.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from e2e_helpers import free_port, mesh_name

from mizzen.mesh import control
from mizzen.mesh.layout import MeshLayout
from mizzen.runtime.processes import alive
from mizzen.runtime.state import ProcRef, load_state, resolve_run_dir

MANIFESTS = Path(__file__).resolve().parent / "manifests"


def mizzen(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mizzen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def traces(name: str) -> dict[str, list[str]]:
    """Everything mesh `name` may leave on the machine."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    etc = Path("/etc/netns")
    return {
        "netns": [n.split()[0] for n in netns.splitlines() if n.startswith(f"mz-{name}.")],
        "links": [line for line in links.splitlines() if f"mizzen:{name}" in line],
        "etc": sorted(p.name for p in etc.glob(f"mz-{name}.*")) if etc.exists() else [],
        "run": [str(p) for p in (resolve_run_dir() / name,) if p.exists()],
    }


def host_iptables() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


def recorded_processes(name: str) -> list[ProcRef]:
    state = load_state(resolve_run_dir(), name)
    assert state is not None
    refs = [r for p in state.pods for r in (*p.processes, *p.sidecar_processes)]
    refs += list(state.host_processes)
    assert state.control_plane is not None
    return [*refs, state.control_plane]


def envoy_pids(name: str) -> list[int]:
    """Envoys started for this mesh: their bootstrap lives in its run dir."""
    marker = str(resolve_run_dir() / name) + "/"
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def web_mesh() -> Iterator[str]:
    name = mesh_name("life")
    before = host_iptables()
    result = mizzen(
        "up",
        str(MANIFESTS / "web.yaml"),
        "--detach",
        "--name",
        name,
        "--ingress-port",
        str(free_port()),
    )
    try:
        assert result.returncode == 0, result.stderr + result.stdout
        yield name
    finally:
        mizzen("down", "--name", name)
    assert traces(name) == {"netns": [], "links": [], "etc": [], "run": []}
    assert host_iptables() == before


def test_up_get_exec_logs_down(web_mesh: str) -> None:
    name = web_mesh
    pods = json.loads(mizzen("get", "pods", "--name", name, "-o", "json").stdout)
    assert sorted(p["name"] for p in pods) == ["client-0", "web-0", "web-1"]
    assert all(p["ready"] for p in pods)
    assert {p["name"]: p["sidecar"] for p in pods} == {
        "client-0": False,
        "web-0": True,
        "web-1": True,
    }

    # The client has no sidecar: the service name resolves to the VIP and the
    # runtime's NAT takes it to a pod.
    url = "http://web.shop.svc.cluster.local/"
    fetch = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).status)"
    out = mizzen("exec", "shop/client-0", "--name", name, "--", "python3", "-c", fetch)
    assert out.returncode == 0 and out.stdout.strip() == "200", out.stderr
    # Nothing outside the mesh resolves.
    lookup = "import socket; socket.getaddrinfo('example.com', 80)"
    out = mizzen("exec", "client-0", "--name", name, "--", "python3", "-c", lookup)
    assert out.returncode != 0 and "gaierror" in out.stderr

    # Straight to web-0's address: its sidecar's inbound listener logs it.
    web0 = next(p["ip"] for p in pods if p["name"] == "web-0")
    direct = f"import urllib.request as u; u.urlopen('http://{web0}:8080/x', timeout=5)"
    mizzen("exec", "client-0", "--name", name, "--", "python3", "-c", direct)
    # Envoy flushes its access log about once a second.
    deadline = time.monotonic() + 10
    while True:
        logs = mizzen("logs", "web-0", "--proxy", "--name", name)
        if '"GET /x HTTP/1.1" 404' in logs.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert logs.returncode == 0 and '"GET /x HTTP/1.1" 404' in logs.stdout, logs.stdout
    assert "inbound|8080||" in logs.stdout

    services = json.loads(mizzen("get", "services", "--name", name, "-o", "json").stdout)
    web = next(s for s in services if s["name"] == "web")
    assert web["endpoints"] == 2 and web["vip"].startswith("198.19.")
    proxies = json.loads(mizzen("get", "proxies", "--name", name, "-o", "json").stdout)
    assert len(proxies) == 3 and all(p["synced"] for p in proxies)  # 2 sidecars + gateway


def test_down_after_crash_leaves_nothing(web_mesh: str) -> None:
    name = web_mesh
    procs = recorded_processes(name)
    envoys = envoy_pids(name)
    assert len(envoys) >= 3
    state = load_state(resolve_run_dir(), name)
    assert state is not None and state.control_plane is not None
    # The control plane dies without cleaning up, and so does one pod's app.
    os.kill(state.control_plane.pid, signal.SIGKILL)
    web_app = next(r for p in state.pods if p.name == "web-0" for r in p.processes)
    os.kill(web_app.pid, signal.SIGKILL)

    result = mizzen("down", "--name", name)
    assert result.returncode == 0, result.stderr
    assert not [r.pid for r in procs if alive(r)]
    assert not [pid for pid in envoys if alive(pid)]
    assert traces(name)["netns"] == []


def test_misuse_gets_one_line_errors(web_mesh: str) -> None:
    name = web_mesh
    second = mizzen("up", str(MANIFESTS / "web.yaml"), "--detach", "--name", name)
    assert second.returncode == 1
    assert second.stderr.count("\n") == 1 and "already running" in second.stderr
    assert f"mizzen down --name {name}" in second.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = mizzen("up", "--detach", "--name", mesh_name("busy"), "--ingress-port", port)
    assert busy.returncode == 1 and f"port {port}" in busy.stderr and "in use" in busy.stderr
    assert "Traceback" not in busy.stderr

    usage = mizzen("get", "--name", name)
    assert usage.returncode == 2 and "Usage:" in usage.stderr and "Traceback" not in usage.stderr
    unknown = mizzen("exec", "nope-0", "--name", name, "--", "true")
    assert unknown.returncode == 1 and "no pod 'nope-0'" in unknown.stderr
    bad_name = mizzen("down", "--name", "Bad_Name")
    assert bad_name.returncode == 1 and "invalid mesh name" in bad_name.stderr


def test_missing_tools() -> None:
    # PATH without ip and iptables: only the interpreter's folder.
    env = {"PATH": str(Path(sys.executable).parent), "HOME": "/tmp"}
    result = mizzen("up", "--detach", "--name", mesh_name("tools"), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "iptables" in result.stderr and "apt-get install" in result.stderr


def test_up_without_root_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from mizzen.cli.main import cli

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    name = mesh_name("noroot")
    try:
        result = CliRunner().invoke(cli, ["up", "--detach", "--name", name])
    finally:
        monkeypatch.undo()
        mizzen("down", "--name", name)  # in case the check let it through
    assert result.exit_code == 1
    assert "root" in result.output and "Traceback" not in result.output


def test_exited_container_is_restarted(web_mesh: str) -> None:
    """restartPolicy Always: the pod leaves the endpoints, the container comes
    back after the back-off, and the pod is ready again."""
    name = web_mesh
    state = load_state(resolve_run_dir(), name)
    assert state is not None
    app = next(r for p in state.pods if p.name == "web-1" for r in p.processes)
    os.kill(app.pid, signal.SIGKILL)

    # The control socket directly: a `mizzen get` per poll (a new Python
    # process) can be slower than the whole not-ready window on a busy machine.
    socket_path = MeshLayout.load(name).control_socket
    deadline = time.monotonic() + 30
    seen_not_ready = False
    while time.monotonic() < deadline:
        pods = control.call(socket_path, {"op": "status"})["pods"]
        web1 = next(p for p in pods if p["name"] == "web-1")
        seen_not_ready |= not web1["ready"]
        if web1["restarts"] == 1 and web1["ready"]:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"web-1 was not restarted and ready within 30 s: {web1}")
    assert seen_not_ready
