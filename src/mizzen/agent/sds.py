"""The agent's SDS server: the workload certificate and trust bundle, served
to the pod's own Envoy over gRPC on an abstract Unix socket.

Resource names are Istio's: ``default`` (key and certificate chain) and
``ROOTCA`` (the mesh's trust bundle). The private key lives only in this
process's memory and in Envoy's; it is never written to a file.

Why an *abstract* socket: its name lives in the pod's network namespace, so
only processes of this pod can connect, although every pod's agent and
Envoy share uid 1337 and the host's file system. An agent in the host's
network namespace (the ingress gateway) would share that namespace with
every local user, so it is given a file path instead (a name starting with
``/``): a socket of mode 0600 owned by the proxy's uid.

Each gRPC stream is driven by the same sans-IO ``Stream`` state machine
the control plane uses for ADS; ``SecretStore.set`` (a rotation) wakes
every stream, and each sends whatever changed for the names it watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from mizzen.translate.tls import CERT_SECRET, ROOT_SECRET
from mizzen.xds.protocol import TYPE_SECRET, ProtocolError, Request, Stream

log = logging.getLogger("mizzen.agent.sds")

_SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"


def grpc_address(socket_name: str) -> str:
    """``/path`` is a file socket, anything else an abstract socket name."""
    if socket_name.startswith("/"):
        return f"unix:{socket_name}"
    return f"unix-abstract:{socket_name}"


def sds_socket_name(mesh: str, namespace: str, pod: str) -> str:
    """The abstract socket name (without the leading NUL / ``@``)."""
    return f"mizzen/{mesh}/{namespace}.{pod}/sds"


def certificate_secret(key_pem: bytes, chain_pem: Sequence[str]) -> Any:
    secret = secret_pb2.Secret(name=CERT_SECRET)
    cert = secret.tls_certificate
    cert.certificate_chain.CopyFrom(base_pb2.DataSource(inline_bytes="".join(chain_pem).encode()))
    cert.private_key.CopyFrom(base_pb2.DataSource(inline_bytes=key_pem))
    return secret


def root_secret(root_pem: str) -> Any:
    return secret_pb2.Secret(
        name=ROOT_SECRET,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=root_pem.encode())
        ),
    )


class SecretStore:
    """The current secrets, versioned; waiters learn of every change."""

    def __init__(self) -> None:
        self.version = 0
        self._secrets: dict[str, Any] = {}
        self._changed = asyncio.Event()

    def set(self, key_pem: bytes, chain_pem: Sequence[str], root_pem: str) -> None:
        """New secrets: ``chain_pem`` is leaf first; Envoy gets the leaf and
        the intermediates, the root goes to ``ROOTCA`` only."""
        served = list(chain_pem[:-1]) if len(chain_pem) > 1 else list(chain_pem)
        self._secrets = {
            CERT_SECRET: certificate_secret(key_pem, served),
            ROOT_SECRET: root_secret(root_pem),
        }
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def ready(self) -> bool:
        return bool(self._secrets)

    def resources(self) -> dict[str, dict[str, Any]]:
        return {TYPE_SECRET: dict(self._secrets)}

    def changed_event(self) -> asyncio.Event:
        """Set at the next change after this call."""
        return self._changed


class SdsServer:
    def __init__(self, store: SecretStore) -> None:
        self._store = store
        self._server: grpc.aio.Server | None = None
        self._serial = 0

    async def start(self, socket_name: str) -> None:
        server = grpc.aio.server()
        handler = grpc.stream_stream_rpc_method_handler(
            self._stream,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=None,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_SDS_SERVICE, {"StreamSecrets": handler}),)
        )
        # grpc raises RuntimeError when the bind fails (older versions
        # returned 0); callers handle OSError, so both become one.
        path = Path(socket_name) if socket_name.startswith("/") else None
        if path is not None:
            path.unlink(missing_ok=True)  # a previous agent's
        try:
            bound = server.add_insecure_port(grpc_address(socket_name))
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise OSError(
                f"cannot listen on the SDS socket {socket_name} "
                "(another agent of this pod already does?)"
            )
        await server.start()
        if path is not None:
            path.chmod(0o600)  # before Envoy starts: nobody else connects
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(0.5)

    async def _stream(self, requests: AsyncIterator[Any], context: Any) -> None:
        self._serial += 1
        stream = Stream(f"sds{self._serial}-")
        wake = asyncio.Event()
        failed: list[str] = []

        async def read() -> None:
            try:
                async for request in requests:
                    try:
                        stream.receive(Request.from_proto(request))
                    except ProtocolError as e:
                        failed.append(str(e))
                        break
                    wake.set()
            finally:
                failed.append("")  # the reader ended: so does the stream
                wake.set()

        reader = asyncio.create_task(read())
        version = -1
        try:
            while not failed:
                # Taken before reading the version, so no change is missed
                # while a write below yields to the loop.
                changed = self._store.changed_event()
                if version != self._store.version and self._store.ready:
                    version = self._store.version
                    stream.update(str(version), self._store.resources())
                for response in stream.next_responses():
                    await context.write(response.to_bytes())
                change = asyncio.ensure_future(changed.wait())
                woken = asyncio.ensure_future(wake.wait())
                await asyncio.wait({change, woken}, return_when=asyncio.FIRST_COMPLETED)
                for task in (change, woken):
                    task.cancel()
                wake.clear()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if failed and failed[0]:
            log.warning("SDS stream ended: %s", failed[0])
