"""Simulated sidecars: real gRPC ADS clients that behave like Envoy on the wire.

Each proxy has its own channel (``grpc.use_local_subchannel_pool`` and a
distinct channel argument, so grpc opens one TCP connection per proxy) and
one ADS stream. It sends an Istio-style ``Node`` (id and metadata from
``mizzen.model.proxy``), subscribes to CDS and LDS (wildcard), then to EDS
for every EDS cluster it received and to RDS for every route name its
listeners reference, as Envoy does. Every response is parsed (each ``Any``
unpacked into its message type; listeners down to their
HttpConnectionManager) and ACKed with its nonce and version, or NACKed when
parsing fails.

``python -m mizzen.bench.adsclient --target HOST:PORT --services N --proxies M``
is a worker process that runs many proxies on one grpc.aio loop. Commands,
one JSON object per line on stdin, replies on stdout::

    {"op": "connect", "ids": [...], "timeout": s}
        -> {"proxies": [{"id", "t_open", "t_full", "bytes": {type: n}, "nacks"}]}
    {"op": "wait-version", "version": "7", "timeout": s}
        -> {"acked": {id: t}, "missing": [...]}  (ACK time of the last response
           of that version or later, monotonic seconds, per connected proxy)
    {"op": "close", "ids": [...]} -> {"closed": n}
    {"op": "quit"}

Times are ``time.monotonic()``: system-wide on Linux, so they compare with
the control plane's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.json_format import ParseDict

from mizzen.bench.cp_mesh import ProxyIdentity, bench_mesh, proxy_identities

__all__ = ["ADS_METHOD", "SimulatedProxy", "main", "raise_fd_limit"]

ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
HCM = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
SHORT = {CDS: "CDS", EDS: "EDS", LDS: "LDS", RDS: "RDS"}
MESSAGES: dict[str, Any] = {
    CDS: cluster_pb2.Cluster,
    EDS: endpoint_pb2.ClusterLoadAssignment,
    LDS: listener_pb2.Listener,
    RDS: route_pb2.RouteConfiguration,
}
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


@dataclass
class SimulatedProxy:
    index: int
    identity: ProxyIdentity
    target: str
    t_open: float = 0.0
    t_full: float | None = None
    bytes_first: dict[str, int] = field(default_factory=dict)
    nacks: int = 0
    retries: int = 0  # streams that failed and were opened again
    error: str = ""  # the last stream failure
    _closing: bool = False
    # (version, ACK time) of every response, in order
    acks: list[tuple[int, float]] = field(default_factory=list)
    full: asyncio.Event = field(default_factory=asyncio.Event)
    _channel: Any = None
    _call: Any = None
    _task: asyncio.Task[None] | None = None
    _names: dict[str, frozenset[str]] = field(default_factory=dict)
    _acked_types: set[str] = field(default_factory=set)
    _last: dict[str, tuple[str, str]] = field(default_factory=dict)  # type -> (version, nonce)

    async def start(self) -> None:
        """Open the channel and the stream; a failed stream is retried (as
        Envoy does, after a short backoff) until ``close``."""
        options = [
            ("grpc.use_local_subchannel_pool", 1),
            ("mizzen.bench.proxy", self.index),  # distinct args: a channel of its own
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        self.t_open = time.monotonic()
        self._channel = grpc.aio.insecure_channel(self.target, options=options)
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
        if self._channel is not None:
            await self._channel.close(None)

    async def _open(self) -> None:
        method = self._channel.stream_stream(
            ADS_METHOD,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=None,  # raw bytes: sizes are measured before parsing
        )
        self._call = method()
        self._names = {CDS: frozenset(), LDS: frozenset()}
        self._acked_types = set()
        self._last = {}
        node = {"id": self.identity.node_id, "cluster": "bench"}
        request = discovery_pb2.DiscoveryRequest(type_url=CDS, node=node)
        ParseDict(dict(self.identity.metadata), request.node.metadata)
        await self._call.write(request)
        await self._call.write(discovery_pb2.DiscoveryRequest(type_url=LDS))

    async def _run(self) -> None:
        backoff = 0.1
        while not self._closing:
            try:
                await self._open()
                while True:
                    raw = await self._call.read()
                    if raw is grpc.aio.EOF:
                        break
                    await self._on_response(raw)
            except asyncio.CancelledError:
                return
            except grpc.aio.AioRpcError as exc:
                self.error = f"{exc.code().name}: {exc.details()}"
            except Exception as exc:  # grpc also fails writes with its own errors
                self.error = f"{type(exc).__name__}: {exc}"
            if self._closing:
                return
            self.retries += 1
            if self.t_full is None:
                self.bytes_first = {}
            await asyncio.sleep(backoff * (1 + random.random()))
            backoff = min(backoff * 2, 2.0)

    async def _on_response(self, raw: bytes) -> None:
        response = discovery_pb2.DiscoveryResponse.FromString(raw)
        type_url = response.type_url
        error = ""
        wanted: frozenset[str] | None = None
        try:
            wanted = self._parse(type_url, response.resources)
        except Exception as exc:  # a NACK, as Envoy would send
            error = f"{type(exc).__name__}: {exc}"
        if self.t_full is None:
            short = SHORT.get(type_url, type_url)
            self.bytes_first[short] = self.bytes_first.get(short, 0) + len(raw)
        if error:
            self.nacks += 1
            version = self._last.get(type_url, ("", ""))[0]
            ack = discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                version_info=version,
                response_nonce=response.nonce,
                resource_names=sorted(self._names.get(type_url, ())),
                error_detail={"code": 3, "message": error},
            )
            await self._call.write(ack)
            return
        self._last[type_url] = (response.version_info, response.nonce)
        await self._call.write(
            discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                version_info=response.version_info,
                response_nonce=response.nonce,
                resource_names=sorted(self._names.get(type_url, ())),
            )
        )
        now = time.monotonic()
        self.acks.append((int(response.version_info or 0), now))
        self._acked_types.add(type_url)
        if wanted is not None:
            dependent = EDS if type_url == CDS else RDS
            await self._subscribe(dependent, wanted)
        if self.t_full is None and self._complete():
            self.t_full = now
            self.full.set()

    def _complete(self) -> bool:
        return all(
            t in self._acked_types
            for t in (CDS, LDS, EDS, RDS)
            if t in (CDS, LDS) or self._names.get(t)
        )

    async def _subscribe(self, type_url: str, names: frozenset[str]) -> None:
        if self._names.get(type_url) == names:
            return
        self._names[type_url] = names
        version, nonce = self._last.get(type_url, ("", ""))
        await self._call.write(
            discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                version_info=version,
                response_nonce=nonce,
                resource_names=sorted(names),
            )
        )

    def _parse(self, type_url: str, resources: Sequence[Any]) -> frozenset[str] | None:
        """Unpack every resource; for CDS/LDS return the EDS/RDS names they need."""
        cls = MESSAGES.get(type_url)
        if cls is None:
            raise ValueError(f"unexpected type {type_url}")
        names: set[str] = set()
        for any_msg in resources:
            if any_msg.type_url != type_url:
                raise ValueError(f"resource of type {any_msg.type_url} in a {type_url} response")
            msg = cls.FromString(any_msg.value)
            if type_url == CDS and msg.type == cluster_pb2.Cluster.EDS:
                names.add(msg.eds_cluster_config.service_name or msg.name)
            elif type_url == LDS:
                names.update(_route_names(msg))
        return frozenset(names) if type_url in (CDS, LDS) else None


def _route_names(listener: Any) -> set[str]:
    out: set[str] = set()
    for chain in listener.filter_chains:
        for f in chain.filters:
            if f.typed_config.type_url == HCM:
                manager = hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                if manager.HasField("rds"):
                    out.add(manager.rds.route_config_name)
    return out


class Worker:
    def __init__(self, target: str, identities: list[ProxyIdentity]) -> None:
        self.target = target
        self.identities = identities
        self.proxies: dict[int, SimulatedProxy] = {}

    async def connect(self, ids: list[int], timeout: float) -> dict[str, Any]:
        fresh = [SimulatedProxy(i, self.identities[i], self.target) for i in ids]
        for p in fresh:
            self.proxies[p.index] = p
        started = await asyncio.gather(*(p.start() for p in fresh), return_exceptions=True)
        for p, outcome in zip(fresh, started, strict=True):
            if isinstance(outcome, BaseException):
                p.error = f"{type(outcome).__name__}: {outcome}"
        waits = [asyncio.create_task(p.full.wait()) for p in fresh]
        if waits:
            await asyncio.wait(waits, timeout=timeout)
        for w in waits:
            w.cancel()
        return {
            "proxies": [
                {
                    "id": p.index,
                    "t_open": p.t_open,
                    "t_full": p.t_full,
                    "bytes": p.bytes_first,
                    "nacks": p.nacks,
                    "error": p.error,
                    "retries": p.retries,
                }
                for p in fresh
            ]
        }

    async def wait_version(self, version: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            pending = [p for p in self.proxies.values() if not _acked_at(p, version)]
            if not pending or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        # The last ACK of a response of this version (a push may carry
        # several types, each ACKed on its own).
        acked = {}
        for p in self.proxies.values():
            times = [t for v, t in p.acks if v == version]
            if times:
                acked[str(p.index)] = max(times)
        return {"acked": acked, "missing": [p.index for p in pending]}

    async def close(self, ids: list[int]) -> dict[str, Any]:
        gone = [self.proxies.pop(i) for i in ids if i in self.proxies]
        await asyncio.gather(*(p.close() for p in gone))
        return {"closed": len(gone)}

    async def handle(self, request: dict[str, Any]) -> dict[str, Any] | None:
        op = request.get("op")
        if op == "connect":
            return await self.connect(list(request["ids"]), float(request.get("timeout", 120)))
        if op == "wait-version":
            return await self.wait_version(
                int(request["version"]), float(request.get("timeout", 60))
            )
        if op == "close":
            ids = request.get("ids")
            return await self.close(list(self.proxies) if ids is None else list(ids))
        if op == "quit":
            return None
        return {"error": f"unknown op {op!r}"}


def _acked_at(proxy: SimulatedProxy, version: int) -> bool:
    return any(v >= version for v, _ in proxy.acks)


def raise_fd_limit() -> int:
    """One socket per proxy: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def _serve(args: argparse.Namespace) -> int:
    raise_fd_limit()
    mesh = bench_mesh(args.services, args.endpoints)
    worker = Worker(args.target, proxy_identities(mesh, args.proxies))
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            reply = await worker.handle(json.loads(line))
            if reply is None:
                break
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        await worker.close(list(worker.proxies))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mizzen.bench.adsclient")
    parser.add_argument("--target", required=True)
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--proxies", type=int, required=True, help="identities to derive")
    args = parser.parse_args(argv)
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
