"""Real namespaces, bridges, iptables and processes (root only)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from mizzen.runtime import network, processes
from mizzen.runtime.addresses import link_alias, netns_prefix
from mizzen.runtime.dns import ETC_NETNS, names_for_services
from mizzen.runtime.errors import MeshBusyError, MeshStaleError
from mizzen.runtime.kubeproxy import ServiceRule
from mizzen.runtime.mesh import LocalMesh
from mizzen.runtime.probes import HttpGetProbe, is_ready, wait_until
from mizzen.runtime.state import load_state, mesh_dir
from mizzen.runtime.teardown import down

_missing = [t for t in ("ip", "iptables", "iptables-restore", "setpriv") if not shutil.which(t)]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, bridges, iptables)"),
    pytest.mark.skipif(bool(_missing), reason=f"missing tools: {_missing}"),
]


@dataclass(frozen=True)
class Traces:
    """What of a mesh is visible on the machine, found by name only."""

    netns: frozenset[str]
    links: frozenset[str]
    etc: frozenset[str]
    run_dir: bool

    @property
    def empty(self) -> bool:
        return not (self.netns or self.links or self.etc or self.run_dir)


def traces(name: str, run_dir: Path, bridge: str | None = None) -> Traces:
    prefix = netns_prefix(name)
    etc = {p.name for p in ETC_NETNS.iterdir()} if ETC_NETNS.is_dir() else set()
    return Traces(
        netns=frozenset(n for n in network.list_netns() if n.startswith(prefix)),
        links=frozenset(
            link.name
            for link in network.list_links()
            if link.alias == link_alias(name) or link.name == bridge
        ),
        etc=frozenset(e for e in etc if e.startswith(prefix)),
        run_dir=mesh_dir(run_dir, name).exists(),
    )


def in_pod(netns: str, code: str, timeout: float = 30) -> dict[str, Any]:
    """Run python code in the pod; it prints one JSON object."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": os.environ["PATH"]},  # no proxies, nothing from the host
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


CLIENT = """
import http.client, json, socket, time

def get(host, port):
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", "/hello.txt")
        r = c.getresponse()
        return [r.status, r.read().decode(), round(time.monotonic() - t, 3)]
    except Exception as e:
        return ["error", type(e).__name__, round(time.monotonic() - t, 3)]

def lookup(name):
    t = time.monotonic()
    try:
        return [socket.gethostbyname(name), round(time.monotonic() - t, 3)]
    except OSError as e:
        return ["error", round(time.monotonic() - t, 3)]

print(json.dumps({
    "pod_ip": get(%(b_ip)r, 8080),
    "vip": get(%(vip)r, 80),
    "name": get("web", 80),
    "fqdn": get("web.default.svc.cluster.local", 80),
    "no_endpoints": get(%(empty_vip)r, 80),
    "unknown_vip": get(%(unknown_vip)r, 80),
    "resolve_web": lookup("web.default"),
    "resolve_outside": lookup("example.com"),
    "resolve_bare_outside": lookup("nosuchname"),
    "outside_ip": get("192.0.2.1", 80),
}))
"""


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], object]]]:
    todo: list[Callable[[], object]] = []
    try:
        yield todo
    finally:
        for fn in reversed(todo):
            fn()


def test_two_pods_talk_by_ip_vip_and_name(
    mesh_name: Callable[[], str],
    run_dir: Path,
    tmp_path: Path,
    cleanup: list[Callable[[], object]],
) -> None:
    name = mesh_name()
    before = traces(name, run_dir)
    mesh = LocalMesh.up(name, run_dir)
    cleanup.append(lambda: down(name, run_dir))  # in case the test fails early
    bridge = mesh.state.bridge
    assert before.empty and bridge not in before.links

    with pytest.raises(MeshBusyError, match="already up"):
        LocalMesh.up(name, run_dir)

    a = mesh.add_pod("default", "client")
    b = mesh.add_pod("default", "server")
    svc = IPv4Network(mesh.state.service_cidr)
    vip, empty_vip, unknown_vip = (str(svc.network_address + i) for i in (10, 11, 12))

    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from b")
    server = mesh.spawn(
        "default",
        "server",
        [sys.executable, "-m", "http.server", "8080", "--bind", b.ip],
        role="app",
        cwd=www,
    )
    assert wait_until(lambda: is_ready(b.ip, HttpGetProbe(8080, "/hello.txt")), 15)
    assert processes.pids_in_netns(b.netns) == [server.pid]

    # A process started before the hosts update must see it (same inode).
    marker = tmp_path / "late-seen"
    watcher = mesh.spawn(
        "default",
        "client",
        [
            sys.executable,
            "-c",
            "import socket, sys, time, pathlib\n"
            "while True:\n"
            "    try:\n"
            "        socket.gethostbyname('late')\n"
            "        break\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n"
            f"pathlib.Path({str(marker)!r}).write_text('ok')\n"
            "time.sleep(3600)\n",
        ],
        role="watcher",
    )
    mesh.set_services(
        "default",
        "client",
        [
            ServiceRule(vip, 80, "TCP", ((b.ip, 8080),)),
            ServiceRule(empty_vip, 80, "TCP", ()),
        ],
    )
    names = names_for_services(
        [("web", "default", vip), ("late", "default", vip)], pod_namespace="default"
    )
    mesh.set_hosts("default", "client", names)
    assert wait_until(marker.exists, 10)

    r = in_pod(
        a.netns,
        CLIENT % {"b_ip": b.ip, "vip": vip, "empty_vip": empty_vip, "unknown_vip": unknown_vip},
    )
    assert r["pod_ip"][:2] == [200, "hello from b"]
    assert r["vip"][:2] == [200, "hello from b"]
    assert r["name"][:2] == [200, "hello from b"]
    assert r["fqdn"][:2] == [200, "hello from b"]
    assert r["resolve_web"][0] == vip
    for key in ("no_endpoints", "unknown_vip", "outside_ip"):
        status, _, took = r[key]
        assert status == "error" and took < 3, (key, r[key])
    for key in ("resolve_outside", "resolve_bare_outside"):
        status, took = r[key]
        assert status == "error" and took < 3, (key, r[key])

    routes = network.pod_routes(a.netns)
    assert "default" not in routes
    assert f"{mesh.state.pod_cidr} dev eth0" in routes
    assert f"{mesh.state.service_cidr} via {mesh.state.host_ip} dev eth0" in routes

    during = traces(name, run_dir, bridge)
    assert during.netns == {a.netns, b.netns}
    assert during.links == {bridge, a.veth, b.veth}
    assert during.etc == {a.netns, b.netns}

    # Removing one pod stops its process and leaves the other alone.
    mesh.remove_pod("default", "server")
    assert not processes.alive(server)
    assert b.netns not in network.list_netns()
    assert mesh.state.pod("default", "server") is None
    assert processes.alive(watcher)

    report = mesh.down()
    assert not report.errors, report.errors
    assert watcher.pid in report.processes
    assert not processes.alive(watcher)
    after = traces(name, run_dir, bridge)
    assert after == before, after
    assert load_state(run_dir, name) is None
    again = down(name, run_dir)
    assert not again.removed_anything and not again.errors


CRASHER = """
import json, sys
from pathlib import Path
from mizzen.runtime.mesh import LocalMesh

name, run_dir = sys.argv[1], Path(sys.argv[2])
mesh = LocalMesh.up(name, run_dir)
pods = [mesh.add_pod("default", n) for n in ("a", "b")]
refs = []
for p in pods:
    # A shell that forks a child: down must get the whole group.
    refs.append(mesh.spawn("default", p.name, ["sh", "-c", "sleep 3600 & wait"], role="app"))
host = mesh.spawn_host([sys.executable, "-c", "import time; time.sleep(3600)"], role="gw")
print(json.dumps({"bridge": mesh.state.bridge, "pids": [r.pid for r in refs] + [host.pid],
                  "netns": [p.netns for p in pods]}), flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_down_after_crash_without_state(mesh_name: Callable[[], str], run_dir: Path) -> None:
    name = mesh_name()
    before = traces(name, run_dir)
    parent = subprocess.Popen(
        [sys.executable, "-c", CRASHER, name, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        info = json.loads(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)  # no cleanup at all
        parent.wait(timeout=10)
        pids: list[int] = info["pids"]
        assert all(processes.alive(p) for p in pids)
        assert set(traces(name, run_dir).netns) == set(info["netns"])

        # A new `up` with that name must refuse and point at `down`.
        with pytest.raises(MeshStaleError, match=f"mizzen down --name {name}"):
            LocalMesh.up(name, run_dir)

        # Lose the state too: down must work from discovery alone (except
        # the host-network process, which only the state knew about).
        state_file = mesh_dir(run_dir, name) / "state.json"
        recorded_host_pid = pids[-1]
        state_file.write_text('{"name": "half-writ')
        report = down(name, run_dir)
        assert len(report.errors) == 1 and "unreadable" in report.errors[0]
        assert set(report.netns) == set(info["netns"])
        assert info["bridge"] in report.links
        deadline = time.monotonic() + 10
        while any(processes.alive(p) for p in pids[:-1]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(processes.alive(p) for p in pids[:-1])
        assert traces(name, run_dir, info["bridge"]) == before
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        down(name, run_dir)
        # The host process was lost with the state: stop it here.
        if "recorded_host_pid" in locals() and processes.alive(recorded_host_pid):
            processes.stop(recorded_host_pid, 2)


def test_meshes_are_isolated(mesh_name: Callable[[], str], run_dir: Path) -> None:
    one = LocalMesh.up(mesh_name(), run_dir)
    two = None
    try:
        two = LocalMesh.up(mesh_name(), run_dir)
        assert one.state.slot != two.state.slot
        p1 = one.add_pod("default", "x")
        p2 = two.add_pod("default", "x")
        assert p1.netns != p2.netns
        r = in_pod(
            p1.netns,
            f"""
            import json, socket, time
            t = time.monotonic()
            try:
                socket.create_connection(({p2.ip!r}, 80), timeout=5)
                res = "connected"
            except OSError as e:
                res = type(e).__name__
            print(json.dumps({{"res": res, "took": time.monotonic() - t}}))
            """,
        )
        # No route from one mesh's pods to another's: refused at once.
        assert r["res"] == "OSError" and float(r["took"]) < 1
    finally:
        one.down()
        if two is not None:
            two.down()


def test_service_jump_stays_after_capture_and_uid_switch(
    mesh_name: Callable[[], str], run_dir: Path
) -> None:
    mesh = LocalMesh.up(mesh_name(), run_dir)
    try:
        pod = mesh.add_pod("default", "p")
        rule = ServiceRule(str(IPv4Network(mesh.state.service_cidr)[5]), 80, "TCP", ())
        mesh.set_services("default", "p", [rule])
        ipt = ["ip", "netns", "exec", pod.netns, "iptables", "-w", "5", "-t", "nat"]
        # A sidecar's capture jump installed later lands after ours...
        subprocess.run([*ipt, "-N", "ISTIO_OUTPUT"], check=True)
        subprocess.run([*ipt, "-A", "OUTPUT", "-j", "ISTIO_OUTPUT"], check=True)
        mesh.set_services("default", "p", [rule])  # ...and re-applying fixes the order
        out = subprocess.run([*ipt, "-S", "OUTPUT"], capture_output=True, text=True, check=True)
        jumps = [line for line in out.stdout.splitlines() if line.startswith("-A")]
        assert jumps == ["-A OUTPUT -j ISTIO_OUTPUT", "-A OUTPUT -j MIZZEN-SERVICES"]

        # uid 1337 cannot traverse pytest's 0700 tmp dir; it writes to the
        # log through the fd it inherited, which is what Envoy will do.
        ref = mesh.spawn(
            "default",
            "p",
            ["sh", "-c", 'echo "who: $(id -u) $(id -g) $POD_IP"'],
            role="proxy",
            uid=1337,
            sidecar=True,
        )
        assert wait_until(lambda: not processes.alive(ref), 10)
        log = mesh.log_path("default.p.proxy").read_text()
        assert f"who: 1337 1337 {pod.ip}" in log
        recorded = mesh.state.pod("default", "p")
        assert recorded is not None and recorded.sidecar_processes == (ref,)
    finally:
        report = mesh.down()
        assert not report.errors
