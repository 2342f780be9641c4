"""The agent's SDS server on a real abstract socket: a grpc.aio client that
speaks ``StreamSecrets`` as Envoy does, and a real Envoy that serves TLS
with the certificate it loads from this server.

Every socket name is unique (a uuid), so tests can run in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import ssl
import stat
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.json_format import MessageToDict

from mizzen.agent.envoy import resolve_envoy_binary
from mizzen.agent.sds import (
    CERT_SECRET,
    ROOT_SECRET,
    SdsServer,
    SecretStore,
    certificate_secret,
    root_secret,
    sds_socket_name,
)
from mizzen.ca import (
    CertificateAuthority,
    IssuedCert,
    generate_key,
    make_csr,
    private_key_pem,
    self_signed_root,
    spiffe_id,
)
from mizzen.translate import tls
from mizzen.xds.protocol import TYPE_SECRET

PATH = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"
DEADLINE_S = 10.0
_base_ids = itertools.count(1)


@dataclass(frozen=True)
class Workload:
    key_pem: bytes
    issued: IssuedCert


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    authority, _ = self_signed_root("cluster.local", datetime.now(UTC))
    return authority


def workload(ca: CertificateAuthority) -> Workload:
    key = generate_key()
    identity = spiffe_id("shop", "reviews")
    issued = ca.sign_csr(make_csr(key, identity), identity, timedelta(hours=1), datetime.now(UTC))
    return Workload(private_key_pem(key), issued)


def unique_name() -> str:
    return f"mizzen-test/{os.getpid()}/{uuid.uuid4().hex}/sds"


def request(names: Sequence[str], version: str = "", nonce: str = "", *, node: bool = True) -> Any:
    msg = discovery_pb2.DiscoveryRequest(
        type_url=TYPE_SECRET,
        resource_names=list(names),
        version_info=version,
        response_nonce=nonce,
    )
    if node:
        msg.node.id = "sidecar~198.18.0.7~reviews-v1-0.shop~shop.svc.cluster.local"
        msg.node.cluster = "reviews.shop"
    return msg


def secrets_of(response: Any) -> dict[str, Any]:
    out = {}
    for packed in response.resources:
        assert packed.type_url == TYPE_SECRET
        secret = secret_pb2.Secret()
        packed.Unpack(secret)
        out[secret.name] = secret
    return out


def chain_of(secret: Any) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(secret.tls_certificate.certificate_chain.inline_bytes)


class Client:
    """One SDS stream, as one of Envoy's secret subscriptions opens it."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        method = channel.stream_stream(
            PATH,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )

        async def requests() -> AsyncIterator[Any]:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                yield item

        self.call = method(requests())

    def send(self, msg: Any) -> None:
        self._queue.put_nowait(msg)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def read(self) -> Any:
        response = await asyncio.wait_for(self.call.read(), DEADLINE_S)
        assert response is not grpc.aio.EOF, "the server ended the stream"
        return response

    async def ack(self, response: Any, names: Sequence[str]) -> None:
        self.send(request(names, response.version_info, response.nonce, node=False))


@contextlib.asynccontextmanager
async def serving(store: SecretStore) -> AsyncIterator[tuple[SdsServer, str, grpc.aio.Channel]]:
    name = unique_name()
    server = SdsServer(store)
    await server.start(name)
    try:
        async with grpc.aio.insecure_channel(f"unix-abstract:{name}") as channel:
            yield server, name, channel
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def running(store: SecretStore) -> AsyncIterator[tuple[str, grpc.aio.Channel]]:
    async with serving(store) as (_, name, channel):
        yield name, channel


def test_socket_name_is_per_mesh_and_pod() -> None:
    assert sds_socket_name("m1", "shop", "reviews-v1-0") == "mizzen/m1/shop.reviews-v1-0/sds"


def test_secret_messages() -> None:
    cert = certificate_secret(b"KEY", ["A\n", "B\n"])
    assert cert.name == CERT_SECRET == "default"
    assert cert.tls_certificate.certificate_chain.inline_bytes == b"A\nB\n"
    assert cert.tls_certificate.private_key.inline_bytes == b"KEY"
    root = root_secret("ROOT\n")
    assert root.name == ROOT_SECRET == "ROOTCA"
    assert root.validation_context.trusted_ca.inline_bytes == b"ROOT\n"
    assert not root.HasField("tls_certificate")


def test_store_serves_the_chain_without_the_root(ca: CertificateAuthority) -> None:
    async def main() -> None:
        w = workload(ca)
        store = SecretStore()
        assert not store.ready
        event = store.changed_event()
        store.set(w.key_pem, w.issued.chain_pem, ca.root_pem)
        assert event.is_set() and not store.changed_event().is_set()
        assert store.ready and store.version == 1
        secrets = store.resources()[TYPE_SECRET]
        assert set(secrets) == {"default", "ROOTCA"}
        assert [c.serial_number for c in chain_of(secrets["default"])] == [
            x509.load_pem_x509_certificate(w.issued.leaf_pem.encode()).serial_number
        ]
        # A chain of one (a CA that hands out only the leaf) is served as is.
        store.set(w.key_pem, w.issued.chain_pem[:1], ca.root_pem)
        assert len(chain_of(store.resources()[TYPE_SECRET]["default"])) == 1
        assert store.version == 2

    asyncio.run(main())


def test_stream_serves_default_and_rootca_and_pushes_rotation(ca: CertificateAuthority) -> None:
    first, second = workload(ca), workload(ca)
    root = ca.root_certs[0]

    async def main() -> None:
        store = SecretStore()
        store.set(first.key_pem, first.issued.chain_pem, ca.root_pem)
        async with running(store) as (_, channel):
            certs, roots = Client(channel), Client(channel)
            certs.send(request(["default"]))
            roots.send(request(["ROOTCA"]))

            got = await certs.read()
            assert got.type_url == TYPE_SECRET
            assert got.version_info == "1" and got.nonce
            (secret,) = secrets_of(got).values()
            assert secret.name == "default"
            assert secret.tls_certificate.private_key.inline_bytes == first.key_pem
            chain = chain_of(secret)
            assert [c.serial_number for c in chain] == [int(first.issued.serial, 16)], (
                "the root must not be in the default chain"
            )
            assert root not in chain

            got_root = await roots.read()
            (trust,) = secrets_of(got_root).values()
            assert trust.name == "ROOTCA"
            assert not trust.HasField("tls_certificate")  # only the trust bundle
            assert trust.validation_context.trusted_ca.inline_bytes == ca.root_pem.encode()

            # ACK both; then rotate. The next message on each stream is the
            # rotation: the ACK itself was answered with nothing.
            await certs.ack(got, ["default"])
            await roots.ack(got_root, ["ROOTCA"])
            store.set(second.key_pem, second.issued.chain_pem, ca.root_pem)
            rotated = await certs.read()
            assert rotated.version_info == "2" and rotated.nonce != got.nonce
            (secret,) = secrets_of(rotated).values()
            assert secret.tls_certificate.private_key.inline_bytes == second.key_pem
            assert [c.serial_number for c in chain_of(secret)] == [int(second.issued.serial, 16)]
            # The root did not change: its stream stays quiet through the
            # rotation, as the next (third) change shows.
            await certs.ack(rotated, ["default"])
            third = workload(ca)
            store.set(third.key_pem, third.issued.chain_pem, ca.root_pem + ca.root_pem)
            again = await roots.read()
            assert again.version_info == "3"
            certs.close()
            roots.close()

    asyncio.run(main())


def test_stream_opened_before_the_first_certificate_waits_for_it(
    ca: CertificateAuthority,
) -> None:
    """No empty answer while the agent has no certificate yet: the first
    response is the secret itself."""
    w = workload(ca)

    async def main() -> None:
        store = SecretStore()
        async with serving(store) as (server, _, channel):
            client = Client(channel)
            client.send(request(["default"]))
            # The server counts the streams it handles (its nonce prefixes):
            # wait until it has this one before the certificate appears.
            end = time.monotonic() + DEADLINE_S
            while server._serial < 1:
                assert time.monotonic() < end, "the stream never reached the server"
                await asyncio.sleep(0.01)
            store.set(w.key_pem, w.issued.chain_pem, ca.root_pem)
            got = await client.read()
            assert got.version_info == "1"
            assert set(secrets_of(got)) == {"default"}
            client.close()

    asyncio.run(main())


def test_both_names_on_one_stream(ca: CertificateAuthority) -> None:
    w = workload(ca)

    async def main() -> None:
        store = SecretStore()
        store.set(w.key_pem, w.issued.chain_pem, ca.root_pem)
        async with running(store) as (_, channel):
            client = Client(channel)
            client.send(request(["ROOTCA", "default"]))
            got = await client.read()
            assert set(secrets_of(got)) == {"default", "ROOTCA"}
            # An unknown name is simply not there.
            other = Client(channel)
            other.send(request(["nope", "ROOTCA"]))
            assert set(secrets_of(await other.read())) == {"ROOTCA"}
            client.close()
            other.close()

    asyncio.run(main())


def test_nack_is_not_answered_with_the_same_secret(ca: CertificateAuthority) -> None:
    first, second = workload(ca), workload(ca)

    async def main() -> None:
        store = SecretStore()
        store.set(first.key_pem, first.issued.chain_pem, ca.root_pem)
        async with running(store) as (_, channel):
            client = Client(channel)
            client.send(request(["default"]))
            got = await client.read()
            nack = request(["default"], "", got.nonce, node=False)
            nack.error_detail.message = "bad key"
            client.send(nack)
            store.set(second.key_pem, second.issued.chain_pem, ca.root_pem)
            # The next message is the new secret, not a resend of the rejected one.
            after = await client.read()
            assert after.version_info == "2"
            client.close()

    asyncio.run(main())


def test_a_stream_without_node_is_ended_and_logged(
    ca: CertificateAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    w = workload(ca)
    caplog.set_level(logging.WARNING, logger="mizzen.agent.sds")

    async def main() -> None:
        store = SecretStore()
        store.set(w.key_pem, w.issued.chain_pem, ca.root_pem)
        async with running(store) as (_, channel):
            client = Client(channel)
            client.send(request(["default"], node=False))
            end = await asyncio.wait_for(client.call.read(), DEADLINE_S)
            assert end is grpc.aio.EOF
            client.close()

    asyncio.run(main())
    assert any("must carry the node" in r.getMessage() for r in caplog.records)


def test_socket_in_use_is_an_error(ca: CertificateAuthority) -> None:
    async def main() -> None:
        async with running(SecretStore()) as (name, _):
            other = SdsServer(SecretStore())
            with pytest.raises(OSError, match=f"SDS socket {name}"):
                await other.start(name)
            await other.stop()

    asyncio.run(main())


# -- a real Envoy serving the certificate it got from this server -------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envoy_bootstrap(sds_name: str, port: int) -> dict[str, Any]:
    """A listener on 127.0.0.1 whose certificate and trust bundle come over
    SDS, through the same TLS helpers the translator uses."""
    common = tls._common(("h2", "http/1.1"))
    context = tls_pb2.DownstreamTlsContext(common_tls_context=common)
    context.require_client_certificate.value = False  # Python's client has none
    typed = {"@type": "type.googleapis.com/" + context.DESCRIPTOR.full_name}
    typed.update(MessageToDict(context, preserving_proto_field_name=True))
    router = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    hcm = (
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager"
    )
    http_options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    return {
        "node": {"id": "sidecar~127.0.0.1~sds-test.shop~shop.svc.cluster.local", "cluster": "t"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "tls",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "transport_socket": {
                                "name": tls.TLS_SOCKET,
                                "typed_config": typed,
                            },
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": hcm,
                                        "stat_prefix": "tls",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {"status": 200},
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {"@type": router},
                                            }
                                        ],
                                    },
                                }
                            ],
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": tls.SDS_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": tls.SDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {"endpoint": {"address": {"pipe": {"path": f"@{sds_name}"}}}}
                                ]
                            }
                        ],
                    },
                    "typed_extension_protocol_options": {
                        http_options: {
                            "@type": "type.googleapis.com/" + http_options,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                }
            ],
        },
    }


def served_serial(port: int, root_pem: str) -> int | None:
    """The serial of the certificate a TLS handshake on 127.0.0.1:port shows."""
    context = ssl.create_default_context(cadata=root_pem)
    context.check_hostname = False  # workload certificates name a SPIFFE URI only
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw) as conn,
        ):
            der = conn.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def poll(predicate: Any, what: str, deadline_s: float = 20.0) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def test_real_envoy_serves_the_sds_certificate_and_its_rotation(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    try:
        envoy = resolve_envoy_binary()
    except Exception as e:  # pragma: no cover - the venv ships Envoy
        pytest.skip(f"no Envoy binary: {e}")
    first, second = workload(ca), workload(ca)
    name = unique_name()
    port = free_port()
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(envoy_bootstrap(name, port)))
    log = tmp_path / "envoy.log"

    async def main() -> None:
        store = SecretStore()
        server = SdsServer(store)
        await server.start(name)
        base_id = (os.getpid() % 50000) * 100 + 50 + next(_base_ids)
        argv = [
            str(envoy),
            "--disable-hot-restart",
            "--base-id",
            str(base_id),
            "--concurrency",
            "1",
            "-l",
            "info",
            "-c",
            str(config),
            "--admin-address-path",
            str(tmp_path / "admin"),
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            # The listener waits for its secret: nothing is served before set().
            await poll(lambda: (tmp_path / "admin").exists(), "Envoy's admin address")
            assert await asyncio.to_thread(served_serial, port, ca.root_pem) is None
            store.set(first.key_pem, first.issued.chain_pem, ca.root_pem)
            expected = int(first.issued.serial, 16)
            await poll(
                lambda: served_serial(port, ca.root_pem) == expected, "the first certificate"
            )
            # Rotation: a new connection sees the new certificate.
            store.set(second.key_pem, second.issued.chain_pem, ca.root_pem)
            expected = int(second.issued.serial, 16)
            await poll(lambda: served_serial(port, ca.root_pem) == expected, "the rotated one")
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
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
            await server.stop()

    asyncio.run(main())
    # The private key never reached Envoy's log.
    body = [ln for ln in first.key_pem.decode().splitlines() if "-----" not in ln]
    text = log.read_text(errors="replace")
    assert not any(line in text for line in body)


def test_a_file_socket_is_for_the_proxy_user_only(ca: CertificateAuthority, tmp_path: Path) -> None:
    """The gateway's agent lives in the host's network namespace, where an
    abstract socket would be open to every local user: it gets a 0600 file."""
    mine = workload(ca)
    path = tmp_path / "sds.sock"
    path.write_text("left over by an earlier agent")

    async def main() -> None:
        store = SecretStore()
        store.set(mine.key_pem, mine.issued.chain_pem, ca.root_pem)
        server = SdsServer(store)
        await server.start(str(path))
        try:
            assert stat.S_ISSOCK(path.stat().st_mode)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
                client = Client(channel)
                client.send(request(["default"]))
                (secret,) = secrets_of(await client.read()).values()
                assert secret.tls_certificate.private_key.inline_bytes == mine.key_pem
                client.close()
        finally:
            await server.stop()

    asyncio.run(main())
