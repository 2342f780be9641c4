"""Mutual TLS in a real local mesh: certificates from the mesh's CA, served
over SDS, real handshakes between sidecars, PeerAuthentication enforced by
Envoy, and the control plane's secure port refusing what it must.

Pods (``manifests/mtls.yaml``, namespace ``secure``): ``echo`` (a sidecar,
service account ``echo``; ports 80 -> 8080 and 81 -> 8081), ``client`` (a
sidecar, ``client``) and ``legacy`` (no sidecar).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from e2e_helpers import free_port, mesh_name, pod_request, poll

from mizzen.agent.certs import CaClient, CertificateError
from mizzen.ca.authority import generate_key, make_csr, private_key_pem
from mizzen.ca.identity import spiffe_id
from mizzen.mesh import control
from mizzen.mesh.admin import admin_get
from mizzen.mesh.launcher import LaunchError, launch, stop, wait_ready

MANIFESTS = Path(__file__).resolve().parent / "manifests"
SHARED = Path(os.environ.get("MIZZEN_SHARED") or Path(__file__).resolve().parents[3] / "shared")
SEED = SHARED / "seeds" / "004_b60d42e7b0fa9090.txt"
NS = "secure"
ECHO = f"echo.{NS}"
XFCC = re.compile(
    r'^By=spiffe://cluster\.local/ns/secure/sa/echo;Hash=[0-9a-f]{64};Subject="";'
    r"URI=spiffe://cluster\.local/ns/secure/sa/client$"
)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    layout = launch(mesh_name("mtls"), [str(MANIFESTS / "mtls.yaml")], free_port())
    try:
        try:
            wait_ready(layout, timeout=240)
        except LaunchError as exc:
            raise AssertionError(f"{exc}\n{log_tails(layout)}") from None
        yield layout
    finally:
        stop(layout)


def log_tails(layout: Any, lines: int = 15) -> str:
    """The mesh's logs, for a failure message (the run dir goes with `down`)."""
    out = []
    for path in sorted(layout.dir.glob("logs/*.log")) + sorted(
        layout.dir.glob("proxies/*/envoy.log")
    ):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {path.relative_to(layout.dir)}\n" + "\n".join(text))
    return "\n".join(out)


def call(layout: Any, op: str, path: Path) -> dict[str, Any]:
    answer: dict[str, Any] = control.call(layout.control_socket, {"op": op, "paths": [str(path)]})
    assert answer["ok"], answer
    return answer


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def peer_authentication(
    name: str, mode: str = "", selector: str = "", ports: dict[int, str] | None = None
) -> str:
    lines = [
        "apiVersion: security.istio.io/v1",
        "kind: PeerAuthentication",
        f"metadata: {{name: {name}, namespace: {NS}}}",
        "spec:",
    ]
    if selector:
        lines += ["  selector:", f"    matchLabels: {{app: {selector}}}"]
    if mode:
        lines += [f"  mtls: {{mode: {mode}}}"]
    if ports:
        lines += ["  portLevelMtls:"]
        lines += [f"    {port}: {{mode: {m}}}" for port, m in ports.items()]
    return "\n".join(lines) + "\n"


def ok(result: dict[str, Any]) -> bool:
    return result.get("status") == 200


def refused(result: dict[str, Any]) -> bool:
    """Reset or closed by the server's sidecar: never any HTTP answer."""
    return "error" in result and "status" not in result


def status(layout: Any) -> dict[str, Any]:
    found: dict[str, Any] = control.call(layout.control_socket, {"op": "status"})
    return found


def pod(layout: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in status(layout)["pods"] if p["name"] == name)
    return found


def stats(layout: Any, name: str, prefix: str) -> dict[str, int]:
    row = pod(layout, name)
    text = admin_get(layout.proxy_dir(NS, name), f"/stats?filter={prefix}", row["netns"]).decode()
    return {
        k: int(v) for k, _, v in (line.partition(": ") for line in text.splitlines()) if v.isdigit()
    }


def test_sidecars_speak_mtls_and_the_server_learns_the_caller(mesh: Any) -> None:
    answer = pod_request(mesh.name, "client-0", ECHO, 80)
    assert ok(answer), answer
    headers = json.loads(str(answer["body"]))["headers"]
    assert XFCC.match(headers["x-forwarded-client-cert"]), headers
    handshakes = stats(mesh, "echo-0", "listener.0.0.0.0_15006.ssl.handshake")
    assert handshakes["listener.0.0.0.0_15006.ssl.handshake"] > 0
    # PERMISSIVE by default: a pod without a sidecar still gets in, in plaintext.
    plain = pod_request(mesh.name, "legacy-0", ECHO, 80)
    assert ok(plain), plain
    assert "x-forwarded-client-cert" not in json.loads(str(plain["body"]))["headers"]


def test_peer_authentication_scopes_and_precedence(mesh: Any, tmp_path: Path) -> None:
    strict = write(tmp_path, "strict.yaml", peer_authentication("default", "STRICT"))
    call(mesh, "apply", strict)
    try:
        poll(lambda: refused(pod_request(mesh.name, "legacy-0", ECHO, 80)), 15, "STRICT")
        assert ok(pod_request(mesh.name, "client-0", ECHO, 80))
        # Probes go through the agent (15020): the app stays ready under STRICT.
        started = time.monotonic()
        while time.monotonic() - started < 3:
            assert pod(mesh, "echo-0")["ready"]
            time.sleep(0.5)

        # A workload-level PERMISSIVE wins over the namespace's STRICT.
        permissive = write(
            tmp_path, "permissive.yaml", peer_authentication("echo", "PERMISSIVE", "echo")
        )
        call(mesh, "apply", permissive)
        poll(lambda: ok(pod_request(mesh.name, "legacy-0", ECHO, 80)), 15, "workload PERMISSIVE")
        call(mesh, "delete", permissive)

        # A port-level DISABLE opens just that (workload) port.
        port_open = write(
            tmp_path,
            "port.yaml",
            peer_authentication("echo-port", selector="echo", ports={8081: "DISABLE"}),
        )
        call(mesh, "apply", port_open)
        poll(lambda: ok(pod_request(mesh.name, "legacy-0", ECHO, 81)), 15, "port-level DISABLE")
        assert refused(pod_request(mesh.name, "legacy-0", ECHO, 80))
        assert ok(pod_request(mesh.name, "client-0", ECHO, 80))
        call(mesh, "delete", port_open)
    finally:
        call(mesh, "delete", strict)
    poll(lambda: ok(pod_request(mesh.name, "legacy-0", ECHO, 80)), 15, "back to PERMISSIVE")


def test_a_capture_under_strict_shows_tls_never_the_request(mesh: Any, tmp_path: Path) -> None:
    policies = (
        peer_authentication("default", "STRICT")
        + "---\n"
        + peer_authentication("echo-port", selector="echo", ports={8081: "DISABLE"})
    )
    path = write(tmp_path, "policies.yaml", policies)
    call(mesh, "apply", path)
    try:
        poll(lambda: refused(pod_request(mesh.name, "legacy-0", ECHO, 80)), 15, "STRICT")
        poll(lambda: ok(pod_request(mesh.name, "legacy-0", ECHO, 81)), 15, "port-level DISABLE")
        state = json.loads((mesh.dir / "state.json").read_text())
        veth = next(p["veth"] for p in state["pods"] if p["name"] == "echo-0")
        pcap = tmp_path / "echo.pcap"
        dump = subprocess.Popen(
            ["tcpdump", "-i", veth, "-U", "-s", "0", "-w", str(pcap), "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert dump.stderr is not None
            line = dump.stderr.readline()
            assert "listening on" in line, line
            secret = "mizzen-secret-body-0123456789"
            sealed = pod_request(mesh.name, "client-0", ECHO, 80, "/sealed-path", "POST", secret)
            assert ok(sealed), sealed
            # The same kind of request in plaintext: proves the capture sees bodies.
            visible = "mizzen-visible-body-9876543210"
            opened = pod_request(mesh.name, "legacy-0", ECHO, 81, "/open-path", "POST", visible)
            assert ok(opened), opened
            poll(
                lambda: visible.encode() in pcap.read_bytes(),
                10,
                "the plaintext request in the capture",
            )
        finally:
            dump.terminate()
            dump.wait(timeout=10)
        data = pcap.read_bytes()
        assert b"POST /open-path" in data and visible.encode() in data
        # The mTLS request: a TLS handshake (Istio's SNI and ALPN are in the
        # ClientHello, in clear), and nothing of the request itself.
        assert b"outbound_.80_._.echo.secure.svc.cluster.local" in data
        assert b"\x16\x03" in data and b"istio" in data
        assert b"/sealed-path" not in data
        assert secret.encode() not in data
    finally:
        call(mesh, "delete", path)


def host_ip(mesh: Any) -> str:
    return str(json.loads((mesh.dir / "state.json").read_text())["host_ip"])


def _ca_client(mesh: Any, token: str) -> CaClient:
    host = host_ip(mesh)
    bundle = (mesh.dir / "trust-bundle.pem").read_bytes()
    return CaClient(f"{host}:15012", bundle, token)


def _token(mesh: Any, name: str) -> str:
    return (mesh.dir / "secrets" / f"{NS}.{name}" / "istio-token").read_text().strip()


def _sign(mesh: Any, token: str, namespace: str, account: str) -> tuple[bytes, list[str]]:
    key = generate_key()
    csr = make_csr(key, spiffe_id(namespace, account))
    chain = asyncio.run(_ca_client(mesh, token).create_certificate(csr, 600))
    return private_key_pem(key), chain


def _ads(mesh: Any, key: bytes, chain: list[str], pod_name: str, account: str) -> str:
    """Open ADS through the secure port with this certificate, as ``pod_name``;
    the first response's type, or the refusal."""
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import discovery_pb2
    from google.protobuf import struct_pb2

    row = pod(mesh, pod_name)
    host = host_ip(mesh)
    metadata = struct_pb2.Struct()
    metadata.update({"NAME": pod_name, "NAMESPACE": NS, "SERVICE_ACCOUNT": account})
    node = base_pb2.Node(
        id=f"sidecar~{row['ip']}~{pod_name}.{NS}~{NS}.svc.cluster.local", metadata=metadata
    )
    first = discovery_pb2.DiscoveryRequest(
        node=node, type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster"
    )
    credentials = grpc.ssl_channel_credentials(
        (mesh.dir / "trust-bundle.pem").read_bytes(), key, "".join(chain[:-1]).encode()
    )
    options = [("grpc.ssl_target_name_override", "istiod.istio-system.svc")]

    async def run() -> str:
        async with grpc.aio.secure_channel(f"{host}:15012", credentials, options) as channel:
            stream = channel.stream_stream(
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
                request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
            )
            call = stream(iter([first]), timeout=10)
            try:
                async for response in call:
                    return str(response.type_url)
            except grpc.aio.AioRpcError as e:
                return f"{e.code().name}: {e.details()}"
            return "closed"

    return asyncio.run(run())


def test_the_secure_port_refuses_what_it_must(mesh: Any) -> None:
    log = Path(mesh.daemon_log)
    token = _token(mesh, "client-0")

    # A tampered credential.
    head, body, signature = token.split(".")
    forged = ".".join((head, body, signature[::-1]))
    with pytest.raises(CertificateError, match="UNAUTHENTICATED"):
        _sign(mesh, forged, NS, "client")
    # A good credential asking for another namespace's identity.
    with pytest.raises(CertificateError, match=r"PERMISSION_DENIED.*ns/other/sa/client"):
        _sign(mesh, token, "other", "client")
    text = log.read_text()
    assert "refused a certificate request" in text and "bad pod credential" in text
    assert "spiffe://cluster.local/ns/other/sa/client" in text

    # The client's own identity is signed; with it, ADS as itself works, and
    # as another pod is refused and logged.
    key, chain = _sign(mesh, token, NS, "client")
    assert _ads(mesh, key, chain, "client-0", "client").endswith(".Cluster")
    refused_ads = _ads(mesh, key, chain, "echo-0", "echo")
    assert refused_ads.startswith("PERMISSION_DENIED"), refused_ads
    poll(lambda: "refused proxy" in log.read_text(), 5, "the refusal in the log")

    # Plaintext on 15012 gets no answer.
    host = host_ip(mesh)

    async def plaintext() -> str:
        async with grpc.aio.insecure_channel(f"{host}:15012") as channel:
            unary = channel.unary_unary("/istio.v1.auth.IstioCertificateService/CreateCertificate")
            try:
                await unary(b"", timeout=5)
            except grpc.aio.AioRpcError as e:
                return e.code().name
        return "answered"

    assert asyncio.run(plaintext()) == "UNAVAILABLE"

    # Keys stay private: 0600 files, and never in any log.
    for path in (
        mesh.dir / "ca" / "ca-key.pem",
        mesh.dir / "ca" / "token-key",
        mesh.dir / "controlplane" / "key.pem",
        mesh.dir / "secrets" / f"{NS}.client-0" / "istio-token",
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (mesh.dir / "ca").stat().st_mode & 0o777 == 0o700
    # The sockets that hand out keys or are believed about identities.
    gateway_sds = mesh.dir / "proxies" / "istio-system.istio-ingressgateway-0" / "sds.sock"
    assert gateway_sds.is_socket() and gateway_sds.stat().st_mode & 0o777 == 0o600
    assert (mesh.dir / "controlplane" / "xds.sock").is_socket()
    assert (mesh.dir / "controlplane").stat().st_mode & 0o777 == 0o700
    assert (mesh.dir / "secrets" / f"{NS}.client-0").stat().st_mode & 0o777 == 0o700
    secrets = [
        key,
        (mesh.dir / "ca" / "ca-key.pem").read_bytes(),
        (mesh.dir / "controlplane" / "key.pem").read_bytes(),
    ]
    material = [
        line for pem in secrets for line in pem.decode().splitlines() if "-----" not in line
    ]
    logs = [*(mesh.dir / "logs").glob("*.log"), *(mesh.dir / "proxies").glob("*/envoy.log")]
    assert logs
    for path in logs:
        text = path.read_text(errors="replace")
        assert "PRIVATE KEY" not in text, path
        assert not [m for m in material if m in text], path


def test_the_seed_mesh_policy_turns_on_strict(mesh: Any, tmp_path: Path) -> None:
    if not SEED.exists():
        pytest.skip(f"the seed {SEED} is not here (set MIZZEN_SHARED)")
    text = SEED.read_text()
    block = next(b for b in text.split("~~~") if 'kind: "MeshPolicy"' in b)
    path = write(tmp_path, "meshpolicy.yaml", block.strip() + "\n")
    answer = call(mesh, "apply", path)
    try:
        assert not answer["errors"], answer
        warnings = "\n".join(answer["warnings"])
        assert "MeshPolicy" in warnings and "deprecated" in warnings
        assert "PeerAuthentication" in warnings and "mode: STRICT" in warnings
        poll(lambda: refused(pod_request(mesh.name, "legacy-0", ECHO, 80)), 15, "mesh-wide STRICT")
        assert ok(pod_request(mesh.name, "client-0", ECHO, 80))
    finally:
        call(mesh, "delete", path)
    poll(lambda: ok(pod_request(mesh.name, "legacy-0", ECHO, 80)), 15, "back to PERMISSIVE")


def test_bad_peer_authentication_is_refused_and_the_last_good_one_serves(
    mesh: Any, tmp_path: Path
) -> None:
    good = write(tmp_path, "good.yaml", peer_authentication("default", "STRICT"))
    call(mesh, "apply", good)
    try:
        poll(lambda: refused(pod_request(mesh.name, "legacy-0", ECHO, 80)), 15, "STRICT")
        bad = write(tmp_path, "bad.yaml", peer_authentication("default", "STRCT"))
        errors = call(mesh, "apply", bad)["errors"]
        assert len(errors) == 1
        assert errors[0].startswith(f"{bad}:0: PeerAuthentication secure/default: spec.mtls.mode:")
        no_selector = write(
            tmp_path, "noselector.yaml", peer_authentication("ports", ports={8081: "DISABLE"})
        )
        errors = call(mesh, "apply", no_selector)["errors"]
        assert len(errors) == 1 and "PeerAuthentication secure/ports: spec" in errors[0]
        assert "selector" in errors[0]
        assert refused(pod_request(mesh.name, "legacy-0", ECHO, 80))
        assert ok(pod_request(mesh.name, "client-0", ECHO, 80))
    finally:
        call(mesh, "delete", good)


def mizzen(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mizzen", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_proxies_show_their_identity_and_certificates(mesh: Any) -> None:
    rows = json.loads(mizzen("get", "proxies", "--name", mesh.name, "-o", "json"))
    by_pod = {r["id"].split("~")[2]: r for r in rows}
    client = by_pod[f"client-0.{NS}"]
    assert client["identity"] == "spiffe://cluster.local/ns/secure/sa/client"
    gateway = by_pod["istio-ingressgateway-0.istio-system"]
    assert gateway["identity"].endswith("/ns/istio-system/sa/istio-ingressgateway-service-account")
    for row in rows:
        assert row["cert_expires"] > time.strftime("%Y-%m-%dT%H:%M", time.gmtime())

    shown = mizzen("proxy-config", "secret", "client-0", "--name", mesh.name, "-o", "json")
    assert "PRIVATE" not in shown and "redacted" not in shown
    certs = json.loads(shown)
    (leaf,) = [c for c in certs if c["secret"] == "default"]
    assert leaf["sans"] == ["URI:spiffe://cluster.local/ns/secure/sa/client"]
    assert leaf["subject"] == ""
    assert leaf["not_after"] > time.strftime("%Y-%m-%dT%H:%M", time.gmtime())
    assert any(c["secret"] == "ROOTCA" and c["kind"] == "trusted CA" for c in certs)
    table = mizzen("proxy-config", "secret", f"{NS}/client-0", "--name", mesh.name)
    assert leaf["serial"] in table


def test_key_material_from_sds_is_only_in_memory(mesh: Any) -> None:
    """No file under the mesh's run directory holds a workload key: only the
    CA's and the control plane's own keys exist on disk."""
    keys = []
    for path in mesh.dir.rglob("*"):
        if path.is_file() and not path.is_socket():
            try:
                if b"PRIVATE KEY" in path.read_bytes():
                    keys.append(path.relative_to(mesh.dir))
            except OSError:
                continue
    assert sorted(map(str, keys)) == ["ca/ca-key.pem", "controlplane/key.pem"]
