"""XdsServer against real Envoy processes on loopback."""

from __future__ import annotations

import asyncio
import http.server
import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from mizzen.xds import (
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    ProxyStatus,
    XdsServer,
)

LOGGER = "test.mizzen.xds"
_base_ids = itertools.count(1)


# -- Envoy process ---------------------------------------------------------------


def envoy_binary() -> str:
    local = Path(sys.executable).with_name("envoy")
    found = str(local) if local.exists() else shutil.which("envoy")
    if found is None:
        pytest.skip("no envoy binary")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bootstrap(node_id: str, xds_port: int) -> dict[str, Any]:
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": node_id, "cluster": "test"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                "set_node_on_first_message_only": True,
            },
            "lds_config": ads,
            "cds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "xds-grpc",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }


@dataclass
class Envoy:
    node_id: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class Envoys:
    tmp: Path
    running: list[Envoy] = field(default_factory=list)

    def start(self, node_id: str, xds_port: int) -> Envoy:
        n = next(_base_ids)
        d = self.tmp / f"envoy{n}"
        d.mkdir()
        (d / "bootstrap.json").write_text(json.dumps(bootstrap(node_id, xds_port)))
        log = d / "envoy.log"
        cmd = [
            envoy_binary(),
            "--disable-hot-restart",
            "--base-id",
            # Unique per test process and per Envoy, so parallel runs never share one.
            str((os.getpid() % 50000) * 100 + n),
            "-c",
            str(d / "bootstrap.json"),
            "--admin-address-path",
            str(d / "admin"),
            "--concurrency",
            "1",
            "-l",
            "info",
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        envoy = Envoy(node_id, proc, log)
        self.running.append(envoy)
        return envoy

    def stop(self, envoy: Envoy) -> None:
        if envoy.proc.poll() is None:
            envoy.proc.terminate()
            try:
                envoy.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                envoy.proc.kill()
                envoy.proc.wait(timeout=5)


@pytest.fixture
def envoys(tmp_path: Path) -> Iterator[Envoys]:
    e = Envoys(tmp_path)
    try:
        yield e
    finally:
        for envoy in e.running:
            e.stop(envoy)


@pytest.fixture
def upstream() -> Iterator[int]:
    """A plain HTTP server that only EDS-routed requests reach."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"upstream"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)


# -- config ------------------------------------------------------------------------


def pack(msg: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def socket_address(port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
    )


def http_listener(
    name: str, port: int, route: str, stat_prefix: str = "http"
) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        rds=hcm_pb2.Rds(route_config_name=route, config_source=ads_source()),
        http_filters=[
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.router", typed_config=pack(router_pb2.Router())
            )
        ],
    )
    return listener_pb2.Listener(
        name=name,
        address=socket_address(port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=pack(hcm),
                    )
                ]
            )
        ],
    )


def mesh_config(listen_port: int, upstream_port: int, body: str) -> dict[str, dict[str, Message]]:
    rc = route_components_pb2
    routes = route_pb2.RouteConfiguration(
        name="local_route",
        virtual_hosts=[
            rc.VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    rc.Route(
                        match=rc.RouteMatch(prefix="/up"), route=rc.RouteAction(cluster="backend")
                    ),
                    rc.Route(
                        match=rc.RouteMatch(prefix="/"),
                        direct_response=rc.DirectResponseAction(
                            status=200, body=base_pb2.DataSource(inline_string=body)
                        ),
                    ),
                ],
            )
        ],
    )
    cluster = cluster_pb2.Cluster(
        name="backend",
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_source()),
        connect_timeout=Duration(seconds=1),
    )
    ec = endpoint_components_pb2
    cla = endpoint_pb2.ClusterLoadAssignment(
        cluster_name="backend",
        endpoints=[
            ec.LocalityLbEndpoints(
                lb_endpoints=[
                    ec.LbEndpoint(endpoint=ec.Endpoint(address=socket_address(upstream_port)))
                ]
            )
        ],
    )
    return {
        TYPE_LISTENER: {
            "listener_http": http_listener("listener_http", listen_port, "local_route")
        },
        TYPE_ROUTE: {"local_route": routes},
        TYPE_CLUSTER: {"backend": cluster},
        TYPE_ENDPOINT: {"backend": cla},
    }


# -- helpers -------------------------------------------------------------------------


def http_get(port: int, path: str = "/") -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return str(r.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float,
    what: str,
    envoys: Sequence[Envoy] = (),
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            logs = "\n".join(f"--- {e.node_id}\n{e.tail()}" for e in envoys)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.05)


async def serves(port: int, body: str, path: str = "/") -> bool:
    return await asyncio.to_thread(http_get, port, path) == body


def by_id(status: list[ProxyStatus]) -> dict[str, ProxyStatus]:
    return {p.id: p for p in status}


# -- tests ------------------------------------------------------------------------


def test_envoy_follows_pushes_and_survives_a_nack(
    envoys: Envoys, upstream: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    node_id = "sidecar~127.0.0.1~web-0.default~default.svc.cluster.local"
    listen = free_port()
    body = {"text": "v1"}
    acked: list[tuple[str, float, int]] = []

    async def scenario() -> None:
        server: XdsServer[base_pb2.Node] = XdsServer(
            identify=lambda node: node,
            generate=lambda node: mesh_config(listen, upstream, body["text"]),
            debounce=0.05,
            logger=logging.getLogger(LOGGER),
        )
        server.on_acked = lambda v, s, n: acked.append((v, s, n))
        port = await server.start("127.0.0.1:0")
        try:
            envoy = envoys.start(node_id, port)
            await eventually(lambda: serves(listen, "v1"), 15, "v1 served", [envoy])
            # EDS delivered the upstream's address.
            await eventually(lambda: serves(listen, "upstream", "/up"), 5, "EDS", [envoy])
            assert await server.wait_synced(5, [node_id])
            (st,) = server.status()
            assert st.id == node_id and st.synced
            assert set(st.types) == {TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE}
            for t in st.types.values():
                assert t.acked_version == t.sent_version == "1" and t.last_nack is None
            assert st.types[TYPE_ROUTE].subscribed == frozenset({"local_route"})
            assert st.types[TYPE_ROUTE].resource_names == ("local_route",)
            assert f"proxy {node_id} connected" in caplog.text

            # A config change: only RDS differs, so only RDS is sent.
            body["text"] = "v2"
            server.push("body")
            server.push("body again")  # merged into the same push
            await eventually(lambda: serves(listen, "v2"), 5, "v2 served", [envoy])
            assert await server.wait_synced(5)
            assert server.version == "2"
            (st,) = server.status()
            assert st.types[TYPE_ROUTE].acked_version == "2"
            assert st.types[TYPE_CLUSTER].sent_version == "1"  # unchanged, not resent
            await eventually(lambda: bool(acked), 5, "on_acked")
            assert acked[0][0] == "2" and acked[0][2] == 1 and 0 < acked[0][1] < 5
            assert "push v2 (body, body again) acked by all 1 proxies in" in caplog.text

            # NACK: a listener Envoy's proto validation rejects (empty stat_prefix).
            lds_before = st.types[TYPE_LISTENER]
            bad = http_listener("bad_listener", free_port(), "local_route", stat_prefix="")
            server.inject(None, TYPE_LISTENER, bad)

            def nacked() -> bool:
                return by_id(server.status())[node_id].types[TYPE_LISTENER].last_nack is not None

            await eventually(nacked, 5, "NACK", [envoy])
            lds = by_id(server.status())[node_id].types[TYPE_LISTENER]
            assert lds.last_nack is not None
            assert lds.last_nack.version == "3"
            assert lds.last_nack.resource_names == ("bad_listener", "listener_http")
            assert lds.acked_version == lds_before.acked_version == "1"
            assert not lds.synced
            message = lds.last_nack.message
            assert "stat_prefix" in message.lower() or "statprefix" in message.lower(), message
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert warnings[0].getMessage() == (
                f"NACK from {node_id}: type Listener version 3 "
                f"resources [bad_listener, listener_http]: {message}"
            )
            # Envoy keeps serving the last good config.
            assert await serves(listen, "v2")
            assert not await server.wait_synced(0.2)

            # Unrelated pushes do not resend the rejected content in a loop.
            nonce = lds.sent_nonce
            server.push("unrelated")
            await eventually(lambda: server.version == "4", 5, "push v4")
            await asyncio.sleep(0)  # let the writer run if it (wrongly) had work
            assert by_id(server.status())[node_id].types[TYPE_LISTENER].sent_nonce == nonce
            assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

            # Clearing the injection sends the good listeners again; Envoy ACKs.
            server.inject(None, TYPE_LISTENER, None)
            assert await server.wait_synced(5)
            lds = by_id(server.status())[node_id].types[TYPE_LISTENER]
            assert lds.acked_version == "5" and lds.resource_names == ("listener_http",)
            assert await serves(listen, "v2")
        finally:
            await server.stop(0.5)

    asyncio.run(scenario())


def test_only_proxies_whose_output_changed_are_pushed(
    envoys: Envoys, upstream: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ids = ["sidecar~127.0.0.1~a-0.default~default.svc.cluster.local", "router~127.0.0.1~b"]
    ports = {i: free_port() for i in ids}
    bodies = {i: f"hello {n}" for n, i in enumerate(ids)}
    a, b = ids

    async def scenario() -> None:
        server: XdsServer[base_pb2.Node] = XdsServer(
            identify=lambda node: node,
            generate=lambda node: mesh_config(ports[node.id], upstream, bodies[node.id]),
            debounce=0.02,
            logger=logging.getLogger(LOGGER),
        )
        port = await server.start(["127.0.0.1:0"])
        try:
            running = [envoys.start(i, port) for i in ids]
            assert await server.wait_synced(15, ids), "\n".join(e.tail() for e in running)
            for i in ids:
                assert await serves(ports[i], bodies[i])
            before = by_id(server.status())

            bodies[a] = "changed"
            server.push("a only")
            await eventually(lambda: serves(ports[a], "changed"), 5, "a changed", running)
            assert await server.wait_synced(5, ids)
            after = by_id(server.status())
            for t in (TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE):
                assert after[b].types[t].sent_nonce == before[b].types[t].sent_nonce
                changed = after[a].types[t].sent_nonce != before[a].types[t].sent_nonce
                assert changed == (t == TYPE_ROUTE), t
            assert "push v2 (a only) acked by all 2 proxies" in caplog.text

            # A proxy going away is logged and drops out of status().
            envoys.stop(running[1])
            await eventually(lambda: set(by_id(server.status())) == {a}, 5, "b gone")
            assert f"proxy {b} disconnected" in caplog.text
            assert await server.wait_synced(1)
            assert not await server.wait_synced(0.1, [b])
        finally:
            await server.stop(0.5)

    asyncio.run(scenario())


def test_start_twice_and_stop_without_clients() -> None:
    async def scenario() -> None:
        server: XdsServer[str] = XdsServer(identify=lambda n: str(n.id), generate=lambda p: {})
        port = await server.start("127.0.0.1:0")
        assert port > 0
        with pytest.raises(RuntimeError):
            await server.start("127.0.0.1:0")
        assert await server.wait_synced(0.1)  # nobody connected: trivially synced
        server.push("nobody")
        assert not await server.wait_synced(0)  # a push is pending
        assert await server.wait_synced(2)
        await server.stop(0)
        t = time.monotonic()
        await server.stop(0)  # idempotent
        assert time.monotonic() - t < 1

    asyncio.run(scenario())


def test_a_peer_breaking_the_protocol_gets_invalid_argument() -> None:
    """Not an Envoy stand-in: a raw client sending what no Envoy sends."""
    import grpc
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    def identify(node: base_pb2.Node) -> str:
        if node.id == "bad":
            raise ValueError("unparseable node id")
        return str(node.id)

    async def call(request: discovery_pb2.DiscoveryRequest, port: int) -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            rpc = stub.StreamAggregatedResources(iter([request]))
            try:
                async for _ in rpc:
                    pass
            except grpc.aio.AioRpcError as e:
                return e.code()
            return grpc.StatusCode.OK

    async def scenario() -> None:
        server: XdsServer[str] = XdsServer(identify=identify, generate=lambda p: {})
        port = await server.start("127.0.0.1:0")
        try:
            no_node = discovery_pb2.DiscoveryRequest(type_url=TYPE_CLUSTER)
            code = await asyncio.wait_for(call(no_node, port), 5)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            bad = discovery_pb2.DiscoveryRequest(
                type_url=TYPE_CLUSTER, node=base_pb2.Node(id="bad")
            )
            code = await asyncio.wait_for(call(bad, port), 5)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert server.status() == []
        finally:
            await server.stop(0)

    asyncio.run(scenario())
