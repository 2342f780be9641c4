"""Data-plane benchmark: latency and sidecar cost added by Mizzen's Envoys.

Six variants run side by side, interleaved round by round, so that drift
of the machine (turbo, other load) hits all of them alike:

    direct           hey (client pod) ─────────────────────────────────► nginx (server pod)
    bare-envoy       hey ─► Envoy 127.0.0.1:15001 ─► Envoy pod IP:15006 ─► nginx
    bare-envoy-mtls  hey ─► Envoy 127.0.0.1:15002 ═mTLS═► Envoy pod IP:15007 ─► nginx
    mesh-mtls        hey ─► Mizzen sidecar ─► Mizzen sidecar ─► nginx   (a real mesh, as is)
    mesh-plaintext   the same in a second mesh with mTLS switched off the Istio way
    mesh-authz       the same in a third mesh (mTLS) with one ALLOW AuthorizationPolicy
                     and one RequestAuthentication on the server; hey sends a JWT

``direct`` and both bare pairs share one LocalMesh (two pods, no capture, one
nginx); the bare pairs are the floor a proxy costs with the same transport
work as the mesh: static config, files for certificates (see ``statictls``).
``mesh-mtls`` is a full mesh from ``assets/mesh.yaml``; ``mesh-plaintext`` a
second one from the same file plus ``assets/mesh-plaintext.yaml`` (a
mesh-wide PeerAuthentication DISABLE and a DestinationRule with ``tls.mode:
DISABLE``); ``mesh-authz`` a third one from the same file plus
``assets/mesh-authz.yaml`` rendered with a JWKS made at bench time (see
``jwtkeys``): the server's sidecar checks the client's SPIFFE principal
(RBAC) and the token (jwt_authn) on every request. Envoy's token cache only
works when a provider sets ``jwt_cache_config``; the mesh's config sets none
today, so each request's RS256 signature is verified (the notes give the
sidecar's cache hit/miss counters). Before measuring, the bench checks that
the variant enforces: no token passes, a tampered one gets 401, a caller
without the client's identity gets 403. Meshes side by
side rather than one reconfigured between measurements: every variant is
measured in its steady state, as the bare pairs are, and no measurement
waits on or follows a config change (Envoy keeps an updated cluster warming
until it gets endpoints again, so a switch can stall). Each extra mesh costs
about 200 MB of private memory (daemon, agents, Envoys) and 3% of one core
while idle, the same for every variant.

Each round measures every rate, and at each rate every variant in the order
above. The load generator is Debian's ``hey`` at a fixed total rate (``-c``
workers times ``-q`` each), HTTP/1.1 keep-alive, against a 1 kB static body.
Every figure is the median over rounds with its min/max; "added" figures are
per-round differences to ``direct`` at the same rate, then the median.

hey prints latencies in seconds with four decimals: figures are quantised to
0.1 ms, which is why several rounds and a median are reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mizzen.agent.envoy import EnvoyCommand, resolve_envoy_binary
from mizzen.api.load import load_paths
from mizzen.bench.jwtkeys import ISSUER, JwtMaterial, make_jwt_material
from mizzen.bench.statictls import (
    TlsFiles,
    downstream_tls_socket,
    outbound_sni,
    spiffe_id,
    upstream_tls_socket,
    write_static_mtls,
)
from mizzen.mesh.launcher import launch, stop, wait_ready
from mizzen.mesh.layout import MeshLayout
from mizzen.runtime.mesh import LocalMesh
from mizzen.runtime.state import ProcRef

Log = Callable[[str], None]

ASSETS = Path(__file__).resolve().parent / "assets"
VARIANTS = (
    "direct",
    "bare-envoy",
    "bare-envoy-mtls",
    "mesh-mtls",
    "mesh-plaintext",
    "mesh-authz",
)
# Added to mesh.yaml for mesh-plaintext: mTLS off the Istio way.
PLAINTEXT_OVERLAY = "mesh-plaintext.yaml"
# Added to mesh.yaml for mesh-authz: a template, rendered with the JWKS.
AUTHZ_OVERLAY = "mesh-authz.yaml"
# The client's identity in mesh-authz's ALLOW policy (mesh.yaml's pods set no
# serviceAccountName: they run as "default").
CLIENT_PRINCIPAL = "cluster.local/ns/bench/sa/default"
# (summary key, numerator, denominator, what it says): each mesh variant
# against the bare pair that does the same transport work, and mesh-authz
# against the mesh it adds to. The first is the key figure.
PAIRS = (
    ("mesh_over_bare", "mesh-mtls", "bare-envoy-mtls", "key figure"),
    ("mesh_plaintext_over_bare", "mesh-plaintext", "bare-envoy", "both plaintext"),
    ("bare_mtls_over_bare", "bare-envoy-mtls", "bare-envoy", "what mTLS costs two bare Envoys"),
    (
        "mesh_authz_over_mesh",
        "mesh-authz",
        "mesh-mtls",
        "what one ALLOW policy and one RequestAuthentication cost",
    ),
)
BODY_BYTES = 1024
NAMESPACE = "bench"
# The agent's default (mizzen.agent.main.AgentConfig.concurrency and the
# `mizzen agent --concurrency` default): the bare Envoys must match it.
SIDECAR_CONCURRENCY = 2
CLIENT_LISTEN = ("127.0.0.1", 15001)
SERVER_PROXY_PORT = 15006
MTLS_CLIENT_LISTEN = ("127.0.0.1", 15002)
MTLS_SERVER_PROXY_PORT = 15007
SERVER_HOST = f"server.{NAMESPACE}.svc.cluster.local"
NGINX_PORT = 80
LATENCY_RESOLUTION_MS = 0.1
HEY_TIMEOUT_S = 5


@dataclass(frozen=True)
class Sizes:
    """How long and how often to measure; quick and full presets below."""

    rounds: int
    seconds: float
    rates: tuple[int, ...]
    high: bool = True  # also measure at high_fraction x direct's unthrottled rate
    probe_seconds: float = 2.0
    high_fraction: float = 0.8
    # hey's workers tick in phase, so each tick sends `connections` requests at
    # once: 16 (Istio's figure) turns 1000 rps into bursts of 16 every 16 ms and
    # the added latency into queueing in the proxies. 4 is the least bursty
    # setting the issue allows.
    connections: int = 4


QUICK = Sizes(rounds=2, seconds=3, rates=(1000,), probe_seconds=2)
FULL = Sizes(rounds=5, seconds=10, rates=(1000,), probe_seconds=5)


# --- hey: command lines and output (pure) -----------------------------------------------


@dataclass(frozen=True)
class HeyResult:
    requests_per_s: float
    percentiles_ms: dict[int, float]
    statuses: dict[int, int]
    errors: dict[str, int]

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        """Transport errors plus non-2xx answers."""
        bad = sum(n for code, n in self.statuses.items() if not 200 <= code < 300)
        return bad + sum(self.errors.values())


class HeyOutputError(ValueError):
    """hey printed something that is not its summary."""


_RPS = re.compile(r"^\s*Requests/sec:\s*([0-9.]+)", re.M)
_PERCENTILE = re.compile(r"^\s*(\d+)% in ([0-9.]+) secs", re.M)
_BRACKET = re.compile(r"^\s*\[(\d+)\]\s+(.*)$")


def parse_hey(text: str) -> HeyResult:
    """The summary hey prints without ``-o``: rate, percentiles, statuses, errors."""
    rps = _RPS.search(text)
    if rps is None:
        raise HeyOutputError(f"no 'Requests/sec' in hey output: {text[-500:]!r}")
    percentiles = {int(p): float(s) * 1000 for p, s in _PERCENTILE.findall(text)}
    return HeyResult(
        requests_per_s=float(rps.group(1)),
        percentiles_ms=percentiles,
        statuses={
            int(code): int(rest.split()[0])
            for code, rest in _section(text, "Status code distribution")
        },
        errors={rest: int(count) for count, rest in _section(text, "Error distribution")},
    )


def _section(text: str, heading: str) -> list[tuple[str, str]]:
    """``[N] rest`` lines under heading, as (N, rest) pairs.

    Statuses read ``[200] 1984 responses``, errors ``[3] Get ...: refused``.
    """
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == heading + ":")
    except StopIteration:
        return []
    found = []
    for line in lines[start + 1 :]:
        m = _BRACKET.match(line)
        if m is None:
            if line.strip():
                break
            continue
        found.append((m.group(1), m.group(2)))
    return found


def hey_argv(
    hey: str,
    url: str,
    seconds: float,
    connections: int,
    rate: int | None,
    headers: Sequence[str] = (),
) -> list[str]:
    """hey at a fixed total rate (``-q`` is per worker), or unthrottled with rate None;
    each of headers (``"Name: value"``) is sent with every request."""
    argv = [hey, "-z", f"{seconds:g}s", "-c", str(connections), "-t", str(HEY_TIMEOUT_S)]
    if rate is not None:
        argv += ["-q", f"{rate / connections:g}"]
    for header in headers:
        argv += ["-H", header]
    return [*argv, url]


_BEARER = re.compile(r"(Authorization: Bearer )\S+")


def redact(argv: Sequence[str]) -> list[str]:
    """argv with bearer tokens shown as <JWT> (for the report's command list)."""
    return [_BEARER.sub(r"\1<JWT>", a) for a in argv]


# --- statistics (pure) -----------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median over rounds with the min/max around it."""
    if not values:
        raise ValueError("spread of no values")
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def added_spread(values: Sequence[float], direct: Sequence[float]) -> dict[str, float]:
    """Per round variant - direct (same round, same rate), then median/min/max."""
    if len(values) != len(direct):
        raise ValueError("added_spread needs one direct figure per round")
    return spread([v - d for v, d in zip(values, direct, strict=True)])


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator > 0 else None


# --- processes: Envoy pids, CPU and memory ------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    cpu_s: float
    rss_mb: float
    private_mb: float = 0.0  # RssAnon: what this Envoy costs beyond the shared binary


def sample_process(pid: int) -> ProcSample:
    """utime+stime (all threads), VmRSS and RssAnon of pid.

    VmRSS counts the Envoy binary's mapped pages (about 50 MB here), which
    every Envoy on the machine shares; RssAnon is the memory one more
    sidecar really adds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rfind(")") + 2 :].split()  # comm may hold spaces: cut after ')'
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    kb = {"VmRSS:": 0, "RssAnon:": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line else ""
        if key in kb:
            kb[key] = int(line.split()[1])
    return ProcSample(ticks / os.sysconf("SC_CLK_TCK"), kb["VmRSS:"] / 1024, kb["RssAnon:"] / 1024)


def envoy_pid_in(netns: str) -> int:
    """The one Envoy in a pod: by process tree in its netns, comm == envoy."""
    out = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    envoys = []
    for pid in (int(p) for p in out.split() if p.isdigit()):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "envoy":
                envoys.append(pid)
    if len(envoys) != 1:
        raise RuntimeError(f"expected one envoy in netns {netns}, found pids {envoys}")
    return envoys[0]


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


# --- environments ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where hey runs and what it calls; proxies maps role → Envoy pid."""

    variant: str
    netns: str
    url: str
    proxies: Mapping[str, int] = field(default_factory=dict)
    headers: tuple[str, ...] = ()  # sent with every request (hey -H)


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``__KEY__`` placeholders (braces and dollars stay nginx's and YAML's)."""
    for key, value in values.items():
        template = template.replace(f"__{key}__", value)
    leftover = re.search(r"__[A-Z]+__", template)
    if leftover:
        raise ValueError(f"placeholder {leftover.group(0)} not filled")
    return template


def render_authz_overlay(jwks: str, issuer: str = ISSUER) -> str:
    """assets/mesh-authz.yaml with the key set inline (in single quotes: JSON has none)."""
    if "'" in jwks or "\n" in jwks:
        raise ValueError("the JWKS must be compact JSON without single quotes")
    return render((ASSETS / AUTHZ_OVERLAY).read_text(), {"JWKS": jwks, "ISSUER": issuer})


def bearer(token: str) -> str:
    return f"Authorization: Bearer {token}"


def write_nginx(prefix: Path) -> Path:
    """nginx.conf plus the 1 kB body under prefix; readable by nginx's workers."""
    (prefix / "www").mkdir(parents=True)
    (prefix / "www" / "1k.bin").write_bytes(b"x" * BODY_BYTES)
    conf = prefix / "nginx.conf"
    text = (ASSETS / "nginx.conf").read_text()
    conf.write_text(render(text, {"PREFIX": str(prefix), "LISTEN": f"0.0.0.0:{NGINX_PORT}"}))
    # Workers drop to nobody: every directory on the way must be searchable.
    for path in (prefix, prefix / "www"):
        path.chmod(0o755)
    return conf


def nginx_argv(prefix: Path) -> list[str]:
    return [_tool("nginx"), "-c", str(prefix / "nginx.conf"), "-p", str(prefix)]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise RuntimeError(f"{name} not found: apt-get install -y hey nginx-light")
    return found


def bare_bootstrap(
    listen: tuple[str, int],
    upstream: tuple[str, int],
    *,
    upstream_tls: Mapping[str, Any] | None = None,
    downstream_tls: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The floor for a proxy: one listener, HCM + router, one static cluster, no logs.

    upstream_tls is the cluster's transport socket (the client of an mTLS
    pair); downstream_tls makes the listener what a mesh's inbound is with
    mTLS: a TLS inspector, a filter chain matched on ``transport_protocol:
    tls`` (plaintext finds no chain and is closed), and an HCM that forwards
    the peer's identity in ``X-Forwarded-Client-Cert``. The admin endpoint
    listens on a free port of the pod's loopback (its address goes to the
    file named by ``--admin-address-path``).
    """
    hcm_type = (
        "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager"
    )
    hcm: dict[str, Any] = {
        "@type": hcm_type,
        "stat_prefix": "bench",
        "route_config": {
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [_route_to("upstream")]}]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    chain: dict[str, Any] = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    }
    listener: dict[str, Any] = {"name": "bench", "address": _address(*listen)}
    if downstream_tls is not None:
        hcm["forward_client_cert_details"] = "APPEND_FORWARD"
        hcm["set_current_client_cert_details"] = {"subject": True, "dns": True, "uri": True}
        chain["filter_chain_match"] = {"transport_protocol": "tls"}
        chain["transport_socket"] = dict(downstream_tls)
        listener["listener_filters"] = [
            {
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
                },
            }
        ]
    listener["filter_chains"] = [chain]
    cluster: dict[str, Any] = {
        "name": "upstream",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "upstream",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(*upstream)}}]}],
        },
    }
    if upstream_tls is not None:
        cluster["transport_socket"] = dict(upstream_tls)
    return {
        "admin": {"address": _address("127.0.0.1", 0)},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


def _route_to(cluster: str) -> dict[str, Any]:
    return {"match": {"prefix": "/"}, "route": {"cluster": cluster}}


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


class Bench:
    """Everything a run brings up; close() (via the ExitStack) removes it all."""

    def __init__(self, stack: contextlib.ExitStack, workdir: Path, base: str, log: Log) -> None:
        self.stack = stack
        self.workdir = workdir
        self.base = base
        self.log = log
        self.commands: list[str] = []
        # (variant, role) → (netns, file holding the Envoy's admin address)
        self.admins: dict[tuple[str, str], tuple[str, Path]] = {}
        self.tls: dict[str, TlsFiles] = {}
        self.mtls_server_url = ""
        self.jwt: JwtMaterial | None = None
        self.authz_overlay = ""  # as rendered for mesh-authz
        self.server_ips: dict[str, str] = {}  # variant → the server pod's IP

    def record(self, argv: Sequence[str]) -> None:
        line = " ".join(argv)
        if line not in self.commands:
            self.commands.append(line)

    # -- direct and the bare pairs: one LocalMesh, two pods, no capture ----------------

    def up_raw(self) -> tuple[Target, Target, Target]:
        """direct, bare-envoy and bare-envoy-mtls: one nginx, two Envoys per pod."""
        local = LocalMesh.up(f"{self.base}-raw")
        self.stack.callback(self._down_raw, local)
        server = local.add_pod(NAMESPACE, "server")
        client = local.add_pod(NAMESPACE, "client")
        prefix = self.workdir / "raw-nginx"
        write_nginx(prefix)
        self._spawn(local, "server", nginx_argv(prefix), "nginx")
        envoy = resolve_envoy_binary()
        # The bare Envoys run as whoever runs the bench (LocalMesh.spawn without
        # a uid): the 0600 keys below are theirs.
        self.tls = write_static_mtls(
            self.workdir / "tls",
            {role: spiffe_id(NAMESPACE, role) for role in ("client", "server")},
        )
        plain_server = (server.ip, SERVER_PROXY_PORT)
        mtls_server = (server.ip, MTLS_SERVER_PROXY_PORT)
        nginx = ("127.0.0.1", NGINX_PORT)
        pids = {
            ("bare-envoy", "server"): self._bare_envoy(
                local, "bare-envoy", "server", envoy, bare_bootstrap(plain_server, nginx)
            ),
            ("bare-envoy", "client"): self._bare_envoy(
                local, "bare-envoy", "client", envoy, bare_bootstrap(CLIENT_LISTEN, plain_server)
            ),
            ("bare-envoy-mtls", "server"): self._bare_envoy(
                local,
                "bare-envoy-mtls",
                "server",
                envoy,
                bare_bootstrap(
                    mtls_server, nginx, downstream_tls=downstream_tls_socket(self.tls["server"])
                ),
            ),
            ("bare-envoy-mtls", "client"): self._bare_envoy(
                local,
                "bare-envoy-mtls",
                "client",
                envoy,
                bare_bootstrap(
                    MTLS_CLIENT_LISTEN,
                    mtls_server,
                    upstream_tls=upstream_tls_socket(
                        self.tls["client"],
                        outbound_sni(SERVER_HOST, NGINX_PORT),
                        self.tls["server"].spiffe,
                    ),
                ),
            ),
        }
        self.mtls_server_url = f"http://{server.ip}:{MTLS_SERVER_PROXY_PORT}/"
        direct = Target("direct", client.netns, f"http://{server.ip}:{NGINX_PORT}/")
        bare, bare_mtls = (
            Target(
                variant,
                client.netns,
                f"http://{host}:{port}/",
                {role: pids[(variant, role)] for role in ("client", "server")},
            )
            for variant, (host, port) in (
                ("bare-envoy", CLIENT_LISTEN),
                ("bare-envoy-mtls", MTLS_CLIENT_LISTEN),
            )
        )
        return direct, bare, bare_mtls

    def _spawn(self, local: LocalMesh, pod: str, argv: list[str], role: str) -> ProcRef:
        self.record(["ip", "netns", "exec", local.pod(NAMESPACE, pod).netns, *argv])
        return local.spawn(NAMESPACE, pod, argv, role=role)

    def _bare_envoy(
        self, local: LocalMesh, variant: str, pod: str, binary: Path, bootstrap: dict[str, Any]
    ) -> int:
        """Start one static Envoy in pod; its pid (``ip netns exec`` execs it)."""
        boot = self.workdir / f"{variant}-{pod}.json"
        boot.write_text(json.dumps(bootstrap, indent=1))
        admin = self.workdir / f"{variant}-{pod}.admin"
        command = EnvoyCommand(
            binary=binary,
            bootstrap=boot,
            admin_address_path=admin,
            concurrency=SIDECAR_CONCURRENCY,
        )
        ref = self._spawn(local, pod, command.argv(), f"envoy-{variant}")
        self.admins[(variant, pod)] = (local.pod(NAMESPACE, pod).netns, admin)
        return ref.pid

    def _down_raw(self, local: LocalMesh) -> None:
        self.log(f"dataplane: removing {local.name}")
        local.down()

    # -- mesh: three real Mizzen meshes from assets/mesh.yaml -----------------------------

    def up_meshes(self) -> tuple[Target, Target, Target]:
        """mesh-mtls (mesh.yaml as is), mesh-plaintext and mesh-authz (plus their
        overlays), started together and waited for together."""
        prefix = self.workdir / "mesh-nginx"
        write_nginx(prefix)
        manifest = self.workdir / "mesh.yaml"
        values = {"NGINX": _tool("nginx"), "PREFIX": str(prefix), "SLEEP": _tool("sleep")}
        manifest.write_text(render((ASSETS / "mesh.yaml").read_text(), values))
        overlay = self.workdir / PLAINTEXT_OVERLAY
        shutil.copyfile(ASSETS / PLAINTEXT_OVERLAY, overlay)
        self.jwt = make_jwt_material()
        self.authz_overlay = render_authz_overlay(self.jwt.jwks)
        authz = self.workdir / AUTHZ_OVERLAY
        authz.write_text(self.authz_overlay)
        wanted = {
            "mesh-mtls": (f"{self.base}-mtls", [str(manifest)]),
            "mesh-plaintext": (f"{self.base}-plain", [str(manifest), str(overlay)]),
            "mesh-authz": (f"{self.base}-authz", [str(manifest), str(authz)]),
        }
        layouts = {}
        for variant, (name, paths) in wanted.items():
            layout = MeshLayout.load(name)
            # Registered before launch: a launch that fails half-way still gets stopped.
            self.stack.callback(self._stop_mesh, layout)
            launch(name, paths, _free_port())
            layouts[variant] = layout
        return (
            self._mesh_target("mesh-mtls", layouts["mesh-mtls"]),
            self._mesh_target("mesh-plaintext", layouts["mesh-plaintext"]),
            self._mesh_target("mesh-authz", layouts["mesh-authz"], (bearer(self.jwt.token),)),
        )

    def _mesh_target(
        self, variant: str, layout: MeshLayout, headers: tuple[str, ...] = ()
    ) -> Target:
        pods = {p["name"]: p for p in wait_ready(layout, timeout=120)["pods"]}
        netns = {role: pods[f"{role}-0"]["netns"] for role in ("client", "server")}
        self.server_ips[variant] = str(pods["server-0"].get("ip", ""))
        proxies = {role: envoy_pid_in(ns) for role, ns in netns.items()}
        self.record(cmdline(proxies["client"]))
        for role, ns in netns.items():
            self.admins[(variant, role)] = (
                ns,
                layout.proxy_dir(NAMESPACE, f"{role}-0") / "admin.address",
            )
        return Target(variant, netns["client"], f"http://{SERVER_HOST}/", proxies, headers)

    def _stop_mesh(self, layout: MeshLayout) -> None:
        self.log(f"dataplane: stopping mesh {layout.name}")
        stop(layout)

    def admin_get(self, variant: str, role: str, path: str) -> str:
        """GET path from the admin endpoint of a variant's client or server Envoy.

        Fetched from inside the pod: admin endpoints listen on the pod's loopback."""
        netns, address_file = self.admins[(variant, role)]
        deadline = time.monotonic() + 30
        while not address_file.exists() or not address_file.read_text().strip():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{variant} {role}: no admin address in {address_file}")
            time.sleep(0.1)
        url = f"http://{address_file.read_text().strip()}{path}"
        fetch = (
            "import sys, urllib.request as u; "
            f"sys.stdout.write(u.urlopen({url!r}, timeout=10).read().decode())"
        )
        return subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", fetch],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout

    def mesh_defaults(self, target: Target) -> list[str]:
        """What the mesh's client sidecar runs with, from its own config dump."""
        dump = self.admin_get(target.variant, "client", "/config_dump")
        return describe_defaults(dump, cmdline(target.proxies["client"]))

    def mesh_transport(self, target: Target) -> str:
        """Whether the mesh's sidecars have TLS configured between them right now."""
        client = describe_transport(
            self.admin_get(target.variant, "client", "/config_dump"), "cluster", SERVER_HOST
        )
        server = describe_transport(
            self.admin_get(target.variant, "server", "/config_dump"), "listener", "virtualInbound"
        )
        return (
            f"{target.variant}: client sidecar's cluster for {SERVER_HOST}: {client}; "
            f"server sidecar's virtualInbound: {server}"
        )

    def authz_enforced(self, target: Target) -> list[str]:
        """Check that mesh-authz enforces what it claims to, or raise: its server
        sidecar has the RBAC and JWT filters, a request without a token passes
        (RequestAuthentication alone requires none), one with a tampered token
        gets 401, and one without the client's identity (plaintext from the host,
        no peer certificate) gets 403. What was seen, as report notes."""
        if self.jwt is None:
            raise RuntimeError("mesh-authz: no JWT material (up_meshes not run)")
        dump = _xds_part(self.admin_get(target.variant, "server", "/config_dump"))
        missing = [
            what
            for what in ("envoy.filters.http.rbac", "envoy.filters.http.jwt_authn")
            if what not in dump
        ]
        for what in (CLIENT_PRINCIPAL, ISSUER):
            if what not in dump:
                missing.append(repr(what))
        if missing:
            raise RuntimeError(
                f"{target.variant}: the server sidecar's config lacks {', '.join(missing)}: "
                f"the mesh did not apply assets/{AUTHZ_OVERLAY}, so this variant would "
                "measure an unenforced path"
            )
        checks = {
            "no token": (replace(target, headers=()), {200}),
            "tampered token": (replace(target, headers=(bearer(self.jwt.tampered),)), {401}),
        }
        server_ip = self.server_ips.get(target.variant, "")
        if server_ip:
            # The root namespace reaches pods over the mesh's bridge; nothing
            # there captures: plaintext, no client certificate, no principal.
            checks["no client identity (plaintext from the host)"] = (
                Target(target.variant, "", f"http://{server_ip}:{NGINX_PORT}/"),
                {403},
            )
        notes = []
        for what, (probe, wanted) in checks.items():
            result = self.hey(probe, 0.5, 1, 10)
            if result.requests == 0 or set(result.statuses) != wanted:
                raise RuntimeError(
                    f"{target.variant}: a request with {what} should get "
                    f"{'/'.join(map(str, sorted(wanted)))}, got statuses {result.statuses}, "
                    f"errors {result.errors}: the policies are not enforced as configured, "
                    "so this variant would measure the wrong path"
                )
            notes.append(f"{what}: {result.requests} × {'/'.join(map(str, sorted(wanted)))}")
        return notes

    def authz_counters(self, variant: str) -> str:
        """The server sidecar's JWT and RBAC counters so far, as one line: whether
        tokens were verified (cache misses) or served from Envoy's token cache."""
        stats = self.admin_get(variant, "server", "/stats?filter=jwt_authn|rbac")
        shown = ", ".join(f"{name} {n}" for name, n in authz_counters(stats).items())
        return f"{variant} server sidecar over the run: {shown}"

    def handshakes(self, variant: str, role: str) -> int:
        """TLS handshakes so far between a variant's two proxies, seen from role."""
        stats = self.admin_get(variant, role, "/stats?filter=ssl.handshake")
        return count_stat(stats, DATA_PATH_HANDSHAKES[role])

    # -- hey --------------------------------------------------------------------------

    def hey(self, target: Target, seconds: float, connections: int, rate: int | None) -> HeyResult:
        """hey in the target's netns (in the bench's own with an empty netns)."""
        argv = ["ip", "netns", "exec", target.netns] if target.netns else []
        argv += hey_argv(_tool("hey"), target.url, seconds, connections, rate, target.headers)
        self.record(redact(argv))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
        return parse_hey(proc.stdout)

    def wait_serving(self, target: Target, timeout: float = 60) -> None:
        """Warm up and check the path end to end: only 200s, no errors."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.hey(target, 0.5, 4, 200)
            if result.requests > 0 and result.failed == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{target.variant}: {target.url} does not answer 200 "
                    f"(statuses {result.statuses}, errors {result.errors})"
                )
            time.sleep(0.5)


def describe_defaults(config_dump: str, envoy_argv: Sequence[str]) -> list[str]:
    """What a mesh user gets today, read off a sidecar's config dump and command line."""
    config_dump = _xds_part(config_dump)
    out = []
    if "envoy.transport_sockets.tls" in config_dump:
        out.append("TLS transport sockets configured between sidecars")
    else:
        out.append("plaintext between sidecars (no mTLS yet)")
    if "envoy.access_loggers.stdout" in config_dump:
        out.append("access log to stdout for every request, in the client and server sidecar")
    if "envoy.access_loggers.stats" not in config_dump:
        out.append("no stats access logger (no per-request Istio metrics yet)")
    filters = sorted(set(re.findall(r'"(envoy\.filters\.http\.[a-z_]+)"', config_dump)))
    if filters:
        out.append("HTTP filters: " + ", ".join(f.rsplit(".", 1)[1] for f in filters))
    if '"retry_policy"' in config_dump:
        out.append(
            "Istio's default retry policy on routes (2 attempts on connect-failure, 503 ...)"
        )
    if "--concurrency" in envoy_argv:
        workers = envoy_argv[list(envoy_argv).index("--concurrency") + 1]
        out.append(f"Envoy --concurrency {workers} (worker threads per sidecar)")
    out.append(
        "iptables REDIRECT capture in both pods: outbound to 15001, inbound to 15006; "
        "inbound traffic reaches the app on 127.0.0.1 from 127.0.0.6"
    )
    return out


def describe_transport(config_dump: str, kind: str, name_contains: str) -> str:
    """ "TLS configured", "plaintext" or "not found" for the xDS clusters or
    listeners (kind) whose name contains name_contains.

    Looks for Envoy's TLS transport socket anywhere in them, so a cluster that
    uses TLS only for some endpoints (``transport_socket_matches``, as auto
    mTLS does) counts as TLS configured."""
    type_suffix = {"cluster": ".Cluster", "listener": ".Listener"}[kind]
    found = [
        r
        for r in _typed_resources(json.loads(_xds_part(config_dump)))
        if str(r.get("@type", "")).endswith(type_suffix) and name_contains in str(r.get("name"))
    ]
    if not found:
        return "not found"
    return "TLS configured" if "envoy.transport_sockets.tls" in json.dumps(found) else "plaintext"


def _typed_resources(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "@type" in value and "name" in value:
            yield value
            return
        for item in value.values():
            yield from _typed_resources(item)
    elif isinstance(value, list):
        for item in value:
            yield from _typed_resources(item)


def _xds_part(config_dump: str) -> str:
    """The dump without its bootstrap section, which lists every compiled-in
    extension (TLS, all HTTP filters) whether used or not."""
    configs = json.loads(config_dump).get("configs", [])
    used = [c for c in configs if not str(c.get("@type", "")).endswith("BootstrapConfigDump")]
    return json.dumps(used)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    round: int
    rate: int
    variant: str
    hey: HeyResult
    cpu_s: dict[str, float]
    rss_mb: dict[str, float]
    private_mb: dict[str, float]


def measure(bench: Bench, target: Target, rate: int, round_no: int, sizes: Sizes) -> Measurement:
    """One hey run; Envoy CPU is the /proc delta over exactly that run."""
    before = {role: sample_process(pid) for role, pid in target.proxies.items()}
    result = bench.hey(target, sizes.seconds, sizes.connections, rate)
    after = {role: sample_process(pid) for role, pid in target.proxies.items()}
    if not {50, 90, 99} <= result.percentiles_ms.keys():
        # hey prints no percentiles when nothing succeeded: say why instead.
        raise RuntimeError(
            f"{target.variant} at {rate} rps: no successful requests "
            f"(statuses {result.statuses}, errors {result.errors})"
        )
    return Measurement(
        round=round_no,
        rate=rate,
        variant=target.variant,
        hey=result,
        cpu_s={r: after[r].cpu_s - before[r].cpu_s for r in after},
        rss_mb={r: after[r].rss_mb for r in after},
        private_mb={r: after[r].private_mb for r in after},
    )


def find_high_rate(bench: Bench, direct: Target, sizes: Sizes) -> tuple[float, int]:
    """direct's unthrottled rate and the fixed "high" rate derived from it.

    hey's per-worker limiter loses ticks at short periods, so high_fraction of
    the unthrottled rate may not be reached even by direct: check it with
    throttled runs and step down until direct sustains 90% of what is asked
    (the last step is taken unchecked: the run reports achieved vs asked).
    """
    result = bench.hey(direct, sizes.probe_seconds, sizes.connections, None)
    high = _round_rate(result.requests_per_s * sizes.high_fraction)
    for _ in range(3):
        achieved = bench.hey(direct, sizes.probe_seconds, sizes.connections, high).requests_per_s
        if achieved >= 0.9 * high:
            break
        high = _round_rate(achieved)
    return result.requests_per_s, high


def _round_rate(rate: float) -> int:
    return max(int(rate) // 100 * 100, 100)


# --- report (pure) ---------------------------------------------------------------------------


def aggregate(measurements: Sequence[Measurement], rate: int, variant: str) -> dict[str, Any]:
    """One result row: medians over rounds, added figures against direct."""
    mine = sorted(
        (m for m in measurements if m.rate == rate and m.variant == variant), key=lambda m: m.round
    )
    direct = {m.round: m for m in measurements if m.rate == rate and m.variant == "direct"}
    row: dict[str, Any] = {
        "rate_asked": rate,
        "variant": variant,
        "rounds": len(mine),
        "rate_achieved": spread([m.hey.requests_per_s for m in mine]),
        "requests": sum(m.hey.requests for m in mine),
        "errors": sum(m.hey.failed for m in mine),
    }
    for p in (50, 90, 99):
        row[f"p{p}_ms"] = spread([m.hey.percentiles_ms[p] for m in mine])
        if variant != "direct":
            ours = [m.hey.percentiles_ms[p] for m in mine]
            base = [direct[m.round].hey.percentiles_ms[p] for m in mine]
            row[f"added_p{p}_ms"] = added_spread(ours, base)
    if mine and mine[0].cpu_s:
        row.update(_sidecar_figures(mine))
    return row


def _sidecar_figures(mine: Sequence[Measurement]) -> dict[str, Any]:
    def per_1000(m: Measurement, role: str | None) -> float:
        cpu = sum(m.cpu_s.values()) if role is None else m.cpu_s[role]
        return cpu / max(m.hey.requests, 1) * 1000

    roles = sorted(mine[0].cpu_s)
    return {
        "sidecar_cpu_s_per_1000": spread([per_1000(m, None) for m in mine]),
        "sidecar_rss_mb": spread([sum(m.rss_mb.values()) for m in mine]),
        "sidecar_private_mb": spread([sum(m.private_mb.values()) for m in mine]),
        "by_proxy": {
            role: {
                "cpu_s_per_1000": spread([per_1000(m, role) for m in mine]),
                "rss_mb": spread([m.rss_mb[role] for m in mine]),
                "private_mb": spread([m.private_mb[role] for m in mine]),
            }
            for role in roles
        },
    }


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each pair of PAIRS: numerator ÷ denominator of the added latency, the
    sidecar CPU per request and the private memory, per rate and worst.

    ``mesh_over_bare_*`` is the key figure: the mesh as it runs by default
    (mTLS) against two bare Envoys doing the same TLS work."""
    by = {(r["rate_asked"], r["variant"]): r for r in results}
    rates = sorted({r["rate_asked"] for r in results})
    summary: dict[str, Any] = {"pairs": {name: [num, den] for name, num, den, _ in PAIRS}}
    keys = (
        "added_p50_ms",
        "added_p90_ms",
        "added_p99_ms",
        "sidecar_cpu_s_per_1000",
        "sidecar_private_mb",
    )
    for pair, num, den, _ in PAIRS:
        for key in keys:
            ratios: dict[str, float | None] = {}
            for rate in rates:
                top, bottom = by.get((rate, num)), by.get((rate, den))
                if top and bottom and key in top and key in bottom:
                    ratios[str(rate)] = ratio(top[key]["median"], bottom[key]["median"])
            known = [v for v in ratios.values() if v is not None]
            ratios["max"] = max(known) if known else None
            name = key.removesuffix("_ms").removeprefix("sidecar_")
            summary[f"{pair}_{name}"] = ratios
    summary["added_p90_ms_by_variant"] = {
        variant: {
            str(rate): by[(rate, variant)]["added_p90_ms"]["median"]
            for rate in rates
            if "added_p90_ms" in by.get((rate, variant), {})
        }
        for variant in VARIANTS
        if variant != "direct"
    }
    # Kept from the three-variant report; "mesh" is now mesh-mtls.
    summary["mesh_added_p90_ms"] = summary["added_p90_ms_by_variant"].get("mesh-mtls", {})
    return summary


def summary_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The pairs of PAIRS in words, one line per pair and rate (shown under the table)."""
    by = {(r["rate_asked"], r["variant"]): r for r in results}
    rates = sorted({r["rate_asked"] for r in results})
    lines = []
    for _, num, den, what in PAIRS:
        for rate in rates:
            top, bottom = by.get((rate, num)), by.get((rate, den))
            if not top or not bottom:
                continue
            parts = [
                _compare(top, bottom, "added_p90_ms", "added p90", "{:.2f} ms"),
                _compare(top, bottom, "sidecar_cpu_s_per_1000", "CPU/1000 req", "{:.3f} s"),
                _compare(top, bottom, "sidecar_private_mb", "private memory", "{:.1f} MB"),
            ]
            lines.append(f"{num} vs {den} ({what}) at {rate} rps: " + "; ".join(parts))
    return lines


def _compare(
    top: Mapping[str, Any], bottom: Mapping[str, Any], key: str, label: str, fmt: str
) -> str:
    if key not in top or key not in bottom:
        return f"{label} —"
    a, b = top[key]["median"], bottom[key]["median"]
    shown = ratio(a, b)
    times = "—" if shown is None else f"{shown:.2f}×"
    return f"{label} {fmt.format(a)} vs {fmt.format(b)} = {times}"


def _ms(s: Mapping[str, float] | None) -> str:
    if s is None:
        return "—"
    return f"{s['median']:.3f} ms ({s['min']:.2f}–{s['max']:.2f})"


def _num(s: Mapping[str, float] | None, unit: str, digits: int) -> str:
    if s is None:
        return "—"
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def table(results: Sequence[Mapping[str, Any]], sizes: Sizes) -> dict[str, Any]:
    columns = [
        "rate asked",
        "rate achieved",
        "variant",
        "p50",
        "p90",
        "p99",
        "added p90",
        "sidecar CPU s/1000 req (client+server)",
        "sidecar RSS MB (client+server)",
        "of which private (RssAnon)",
        "errors",
    ]
    rows = [
        [
            str(r["rate_asked"]),
            _num(r["rate_achieved"], "", 0),
            r["variant"],
            _ms(r["p50_ms"]),
            _ms(r["p90_ms"]),
            _ms(r["p99_ms"]),
            _ms(r.get("added_p90_ms")),
            _num(r.get("sidecar_cpu_s_per_1000"), " s", 3),
            _num(r.get("sidecar_rss_mb"), " MB", 1),
            _num(r.get("sidecar_private_mb"), " MB", 1),
            str(r["errors"]),
        ]
        for r in results
    ]
    title = (
        f"Data plane: hey -c {sizes.connections}, HTTP/1.1 keep-alive, 1 kB nginx body, "
        f"{sizes.rounds} rounds × {sizes.seconds:g} s, median (min–max)"
    )
    return {"title": title, "columns": columns, "rows": rows, "caption": summary_lines(results)}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count() or 0,
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "envoy": _version([str(resolve_envoy_binary()), "--version"]),
        "nginx": _version([_tool("nginx"), "-v"]),
        "hey": _version(["dpkg-query", "-W", "-f", "${Version}", "hey"]),
    }


def _version(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return "unknown"
    return (proc.stdout + proc.stderr).strip().splitlines()[-1] if proc.stdout + proc.stderr else ""


# --- the suite ------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_workdir() -> Iterator[Path]:
    # Pods run nginx whose workers drop to nobody: the dir must be searchable.
    with tempfile.TemporaryDirectory(prefix="mizzen-bench-") as tmp:
        Path(tmp).chmod(0o755)
        yield Path(tmp)


def run_dataplane(quick: bool, log: Log, sizes: Sizes | None = None) -> dict[str, Any]:
    """Bring up the raw pods and the mesh once, interleave rounds, tear all down."""
    sizes = sizes or (QUICK if quick else FULL)
    base = f"bd-{secrets.token_hex(3)}"
    timings: dict[str, float] = {}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(bench_workdir())
        bench = Bench(stack, workdir, base, log)
        log(
            f"dataplane: bringing up {base}-raw (direct, bare pairs), {base}-mtls, "
            f"{base}-plain, {base}-authz"
        )
        direct, bare, bare_mtls = bench.up_raw()
        mesh_mtls, mesh_plaintext, mesh_authz = bench.up_meshes()
        targets = (direct, bare, bare_mtls, mesh_mtls, mesh_plaintext, mesh_authz)
        for target in targets:
            bench.wait_serving(target)
        defaults = bench.mesh_defaults(mesh_mtls)
        meshes = (mesh_mtls, mesh_plaintext, mesh_authz)
        transports = [bench.mesh_transport(t) for t in meshes]
        enforced = bench.authz_enforced(mesh_authz)
        log("dataplane: mesh-authz enforces: " + "; ".join(enforced))
        timings["setup_s"] = time.monotonic() - started
        rates, direct_max = _rates(bench, direct, sizes, log)
        timings["probe_s"] = time.monotonic() - started - timings["setup_s"]
        measurements = measure_rounds(bench, targets, rates, sizes, log)
        timings["measure_s"] = time.monotonic() - started - timings["setup_s"] - timings["probe_s"]
        handshakes = {
            (target.variant, role): bench.handshakes(target.variant, role)
            for target in (bare, bare_mtls, *meshes)
            for role in ("client", "server")
        }
        counters = bench.authz_counters(mesh_authz.variant)
        teardown_started = time.monotonic()
    timings["teardown_s"] = time.monotonic() - teardown_started
    timings["total_s"] = time.monotonic() - started
    results = [aggregate(measurements, r, v) for r in rates for v in VARIANTS]
    return {
        "suite": "dataplane",
        "machine": machine(),
        "config": _config(sizes, base, direct_max, rates, bench.authz_overlay),
        "commands": bench.commands,
        "defaults": defaults,
        "notes": _notes(transports, handshakes, [*enforced, counters]),
        "results": results,
        "summary": summarize(results),
        "table": table(results, sizes),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }


def count_stat(stats: str, name: re.Pattern[str]) -> int:
    """Sum of the counters in Envoy's text /stats whose whole name matches."""
    total = 0
    for line in stats.splitlines():
        stat, _, value = line.partition(": ")
        if name.fullmatch(stat) and value.strip().isdigit():
            total += int(value)
    return total


# TLS handshakes on the data path between the two proxies of a variant: the
# client's cluster to the server (bare: "upstream"), the server's listener on
# its proxy port (mesh: virtualInbound on 15006). Not the proxies' own
# connections to the control plane or to a local SDS server.
DATA_PATH_HANDSHAKES = {
    "client": re.compile(
        r"cluster\.(upstream|outbound\|\d+\|[^|]*\|" + re.escape(SERVER_HOST) + r")\.ssl\.handshake"
    ),
    "server": re.compile(
        rf"listener\.[0-9.]+_({SERVER_PROXY_PORT}|{MTLS_SERVER_PROXY_PORT})\.ssl\.handshake"
    ),
}


def overlay_skipped() -> list[str]:
    """What Mizzen's loader skips of the plaintext overlay (kinds not supported yet)."""
    return [s.reason for s in load_paths([ASSETS / PLAINTEXT_OVERLAY]).skipped]


AUTHZ_COUNTERS = (
    "jwt_authn.allowed",
    "jwt_authn.denied",
    "jwt_authn.jwt_cache_hit",
    "jwt_authn.jwt_cache_miss",
    "rbac.allowed",
    "rbac.denied",
)


def authz_counters(stats: str) -> dict[str, int]:
    """AUTHZ_COUNTERS of the inbound HTTP connection managers in Envoy's text /stats."""
    return {
        name: count_stat(stats, re.compile(r"http\.inbound_\S*\." + re.escape(name)))
        for name in AUTHZ_COUNTERS
    }


def _notes(
    transports: Sequence[str],
    handshakes: Mapping[tuple[str, str], int],
    authz: Sequence[str] = (),
) -> list[str]:
    """authz: what mesh-authz's check saw before measuring, then its counters."""
    notes = [
        "bare-envoy-mtls: static certificates from files (throwaway ECDSA P-256 root, "
        "leaves with SPIFFE URI SANs .../sa/client and .../sa/server), TLS 1.2–1.3; client: "
        f"SNI {outbound_sni(SERVER_HOST, NGINX_PORT)}, ALPN istio, server URI SAN checked; "
        "server: TLS inspector, chain matched on transport_protocol tls, client certificate "
        "required, ALPN h2/http/1.1, X-Forwarded-Client-Cert APPEND_FORWARD",
        "mesh-mtls and mesh-plaintext are two meshes from the same manifest, run side by "
        f"side; mesh-plaintext adds assets/{PLAINTEXT_OVERLAY} (PeerAuthentication DISABLE "
        "mesh-wide, DestinationRule tls DISABLE for the server)",
        f"mesh-authz is a third mesh from the same manifest plus assets/{AUTHZ_OVERLAY}: one "
        f"ALLOW AuthorizationPolicy (source.principals {CLIENT_PRINCIPAL}) and one "
        f"RequestAuthentication (issuer {ISSUER}, inline JWKS of a 2048-bit RSA key made at "
        "bench time) on the server; hey sends an RS256 token in Authorization: Bearer",
        *(f"mesh-authz checked before measuring, {line}" for line in authz[:-1]),
        *authz[-1:],
        *transports,
    ]
    shown = [t.split(": ", 1)[1] for t in transports[:2]]
    if len(set(shown)) == 1:
        notes.append(
            "mesh-mtls and mesh-plaintext ran the same transport configuration: the overlay "
            "changed nothing this check sees"
        )
    notes += [f"the mesh skips part of the overlay: {reason}" for reason in overlay_skipped()]
    notes += [
        f"TLS handshakes between the proxies over the run, {variant} {role}: {n}"
        for (variant, role), n in handshakes.items()
    ]
    return notes


def _rates(bench: Bench, direct: Target, sizes: Sizes, log: Log) -> tuple[list[int], float | None]:
    if not sizes.high:
        return list(sizes.rates), None
    direct_max, high = find_high_rate(bench, direct, sizes)
    log(f"dataplane: direct unthrottled {direct_max:.0f} req/s; high rate {high}")
    return sorted({*sizes.rates, high}), direct_max


def measure_rounds(
    bench: Bench, targets: Sequence[Target], rates: Sequence[int], sizes: Sizes, log: Log
) -> list[Measurement]:
    out = []
    for round_no in range(1, sizes.rounds + 1):
        for rate in rates:
            for target in targets:
                m = measure(bench, target, rate, round_no, sizes)
                log(
                    f"dataplane: round {round_no} {rate} rps {target.variant}: "
                    f"{m.hey.requests_per_s:.0f} rps, p90 {m.hey.percentiles_ms[90]:.2f} ms"
                )
                out.append(m)
    return out


def _config(
    sizes: Sizes,
    base: str,
    direct_max: float | None,
    rates: Sequence[int],
    authz_overlay: str = "",
) -> dict[str, Any]:
    return {
        **asdict(sizes),
        "rates_measured": list(rates),
        "direct_unthrottled_rps": direct_max,
        "body_bytes": BODY_BYTES,
        "envoy_concurrency": SIDECAR_CONCURRENCY,
        "latency_resolution_ms": LATENCY_RESOLUTION_MS,
        "meshes": [f"{base}-raw", f"{base}-mtls", f"{base}-plain", f"{base}-authz"],
        "variants": list(VARIANTS),
        "order": "per round, per rate, the variants in the order above",
        "mesh_plaintext_overlay": (ASSETS / PLAINTEXT_OVERLAY).read_text(),
        "mesh_authz_overlay": authz_overlay,
        "load_shape": (
            f"hey -c {sizes.connections} -q rate/c: workers tick in phase, so requests arrive "
            f"in bursts of {sizes.connections}; latency includes queueing within a burst"
        ),
        "cpu": "utime+stime of each Envoy process from /proc/PID/stat over each hey run",
        "rss": "VmRSS of each Envoy after each hey run (MiB); RssAnon beside it is the "
        "private part (VmRSS also counts the binary's pages, shared by every Envoy)",
    }
