"""The control plane's TLS front (15012): the rendered bootstrap, Envoy's
verdict on it, and a real front Envoy on 127.0.0.1 in front of a grpc.aio
server on a Unix socket, reached by grpc clients with and without mesh
certificates."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from mizzen.agent.envoy import resolve_envoy_binary
from mizzen.ca import (
    CertificateAuthority,
    IssuedCert,
    generate_key,
    make_csr,
    private_key_pem,
    self_signed_root,
    spiffe_id,
)
from mizzen.mesh.identity import CONTROL_PLANE_NAMES
from mizzen.mesh.tlsfront import BACKEND_CLUSTER, SECURE_PORT, front_bootstrap
from mizzen.xds.server import XFCC_HEADER, xfcc_uri

ME = "spiffe://cluster.local/ns/shop/sa/reviews"
_base_ids = itertools.count(1)


@dataclass(frozen=True)
class Files:
    directory: Path
    chain: Path
    key: Path
    bundle: Path
    backend: Path
    admin: Path


@dataclass(frozen=True)
class ClientCert:
    key_pem: bytes
    chain_pem: bytes
    issued: IssuedCert


@pytest.fixture(scope="module")
def mesh_ca() -> CertificateAuthority:
    ca, _ = self_signed_root("cluster.local", datetime.now(UTC))
    return ca


def client_cert(
    ca: CertificateAuthority, namespace: str = "shop", sa: str = "reviews"
) -> ClientCert:
    key = generate_key()
    identity = spiffe_id(namespace, sa)
    issued = ca.sign_csr(make_csr(key, identity), identity, timedelta(hours=1), datetime.now(UTC))
    return ClientCert(private_key_pem(key), "".join(issued.chain_pem[:-1]).encode(), issued)


@pytest.fixture
def files(mesh_ca: CertificateAuthority) -> Iterator[Files]:
    # A short directory of its own: Unix socket paths are limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="mz-front-"))
    try:
        key_pem, cert = mesh_ca.issue_server_cert(
            CONTROL_PLANE_NAMES, ["127.0.0.1"], timedelta(hours=1), datetime.now(UTC)
        )
        chain, key = directory / "cert-chain.pem", directory / "key.pem"
        chain.write_text("".join(cert.chain_pem[:-1]))
        key.write_bytes(key_pem)
        key.chmod(0o600)
        bundle = directory / "trust-bundle.pem"
        bundle.write_text(mesh_ca.root_pem)
        yield Files(directory, chain, key, bundle, directory / "xds.sock", directory / "admin.sock")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def envoy_binary() -> Path:
    try:
        return resolve_envoy_binary()
    except Exception as e:  # pragma: no cover - the venv ships Envoy
        pytest.skip(f"no Envoy binary: {e}")


# -- the rendered bootstrap -------------------------------------------------------------


def test_bootstrap_shape(files: Files) -> None:
    b = front_bootstrap(
        "198.18.0.1", files.chain, files.key, files.bundle, files.backend, files.admin
    )
    (listener,) = b["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {
        "address": "198.18.0.1",
        "port_value": SECURE_PORT,
    }
    assert SECURE_PORT == 15012
    (chain,) = listener["filter_chains"]
    context = chain["transport_socket"]["typed_config"]
    # A client certificate is asked for, checked when given, never required.
    assert context["require_client_certificate"] is False
    common = context["common_tls_context"]
    assert common["validation_context"] == {"trusted_ca": {"filename": str(files.bundle)}}
    assert common["tls_certificates"] == [
        {
            "certificate_chain": {"filename": str(files.chain)},
            "private_key": {"filename": str(files.key)},
        }
    ]
    assert common["alpn_protocols"] == ["h2"]
    hcm = chain["filters"][0]["typed_config"]
    assert hcm["forward_client_cert_details"] == "SANITIZE_SET"
    assert hcm["set_current_client_cert_details"] == {"uri": True}
    assert hcm["stream_idle_timeout"] == "0s"
    (cluster,) = b["static_resources"]["clusters"]
    assert cluster["name"] == BACKEND_CLUSTER
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"] == {"pipe": {"path": str(files.backend)}}
    # No key material in the config: files only.
    assert "PRIVATE KEY" not in json.dumps(b)
    assert b["admin"]["address"] == {"pipe": {"path": str(files.admin), "mode": 0o600}}


def test_envoy_validates_the_bootstrap(files: Files) -> None:
    config = files.directory / "tls-front.json"
    config.write_text(
        json.dumps(
            front_bootstrap(
                "127.0.0.1", files.chain, files.key, files.bundle, files.backend, files.admin
            )
        )
    )
    result = subprocess.run(
        [
            str(envoy_binary()),
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "OK" in output
    assert "deprecated" not in output.lower(), output


# -- the front for real ------------------------------------------------------------------


_SERVICE = "test.Echo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def poll(predicate: Any, what: str, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def front(files: Files) -> AsyncIterator[int]:
    """The backend (grpc.aio on the Unix socket, echoing the metadata it
    got) and the front Envoy on an ephemeral 127.0.0.1 port."""

    async def echo(request: bytes, context: Any) -> bytes:
        metadata = {k: v for k, v in context.invocation_metadata() or ()}
        return json.dumps({"peer": context.peer(), "metadata": metadata}).encode()

    backend = grpc.aio.server()
    backend.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                _SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    assert backend.add_insecure_port(f"unix:{files.backend}")
    await backend.start()
    port = free_port()
    config = files.directory / "tls-front.json"
    config.write_text(
        json.dumps(
            front_bootstrap(
                "127.0.0.1",
                files.chain,
                files.key,
                files.bundle,
                files.backend,
                files.admin,
                port,
            )
        )
    )
    log = files.directory / "tls-front.log"
    argv = [
        str(envoy_binary()),
        "--disable-hot-restart",
        "--base-id",
        str((os.getpid() % 50000) * 100 + 80 + next(_base_ids) % 20),
        "--concurrency",
        "1",
        "-l",
        "info",
        "-c",
        str(config),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        await poll(lambda: listening(port) or proc.poll() is not None, "the front to listen")
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        yield port
    except BaseException:
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
        await backend.stop(None)


async def call(
    port: int,
    credentials: grpc.ChannelCredentials | None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    options = [
        ("grpc.ssl_target_name_override", "istiod.istio-system.svc"),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.aio.insecure_channel(target, options)
        if credentials is None
        else grpc.aio.secure_channel(target, credentials, options)
    )
    async with channel:
        raw = await channel.unary_unary(f"/{_SERVICE}/Echo")(b"", metadata=metadata, timeout=10)
    reply: dict[str, Any] = json.loads(raw)
    return reply


def test_front_passes_the_verified_identity_and_nothing_else(
    files: Files, mesh_ca: CertificateAuthority
) -> None:
    mine = client_cert(mesh_ca)
    root = mesh_ca.root_pem.encode()
    with_cert = grpc.ssl_channel_credentials(root, mine.key_pem, mine.chain_pem)
    without_cert = grpc.ssl_channel_credentials(root)
    forged = ((XFCC_HEADER, "URI=spiffe://cluster.local/ns/istio-system/sa/admin"),)

    async def main() -> None:
        async with front(files) as port:
            # A mesh certificate: its URI arrives in XFCC, set by the front.
            got = await call(port, with_cert)
            assert got["peer"].startswith("unix:")
            assert xfcc_uri(got["metadata"][XFCC_HEADER]) == ME
            # Envoy appends the client's address to X-Forwarded-For (for a
            # loopback client, the host's own address): what the CA logs.
            assert got["metadata"]["x-forwarded-for"]
            # No certificate: TLS still works, and no XFCC arrives.
            got = await call(port, without_cert)
            assert XFCC_HEADER not in got["metadata"]
            # A forged header is removed (no certificate) or replaced.
            got = await call(port, without_cert, forged)
            assert XFCC_HEADER not in got["metadata"]
            got = await call(port, with_cert, forged)
            assert xfcc_uri(got["metadata"][XFCC_HEADER]) == ME
            assert "admin" not in got["metadata"][XFCC_HEADER]
            # A client's own X-Forwarded-For never ends up last.
            got = await call(port, with_cert, (("x-forwarded-for", "203.0.113.9"),))
            last = got["metadata"]["x-forwarded-for"].rsplit(",", 1)[-1].strip()
            assert last and last != "203.0.113.9"

    asyncio.run(main())


def test_front_refuses_foreign_certificates_and_plaintext(
    files: Files, mesh_ca: CertificateAuthority
) -> None:
    other_ca, _ = self_signed_root("cluster.local", datetime.now(UTC))
    foreign = client_cert(other_ca)
    root = mesh_ca.root_pem.encode()

    async def main() -> None:
        async with front(files) as port:
            # A certificate of another root: the handshake fails.
            creds = grpc.ssl_channel_credentials(root, foreign.key_pem, foreign.chain_pem)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(port, creds)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            # Plaintext HTTP/2 to a TLS port: no answer from the backend.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(port, None)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            # The front still serves a good client afterwards.
            good = await call(port, grpc.ssl_channel_credentials(root))
            assert "metadata" in good

    asyncio.run(main())


def test_front_presents_istiods_name(files: Files, mesh_ca: CertificateAuthority) -> None:
    """A client that expects another server name refuses the front."""

    async def main() -> None:
        async with front(files) as port:
            options = [
                ("grpc.ssl_target_name_override", "evil.example"),
                ("grpc.use_local_subchannel_pool", 1),
            ]
            creds = grpc.ssl_channel_credentials(mesh_ca.root_pem.encode())
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds, options) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await channel.unary_unary(f"/{_SERVICE}/Echo")(b"", timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE

    asyncio.run(main())
