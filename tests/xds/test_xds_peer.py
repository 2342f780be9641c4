"""Who is at the other end of an ADS stream: ``xfcc_uri`` and ``peer_of``.

``xfcc_uri`` is table-tested on Envoy's X-Forwarded-Client-Cert forms;
``peer_of`` runs inside a real grpc.aio server, reached once over a Unix
socket (what the TLS front uses) and once over loopback TCP.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from mizzen.xds.server import XFCC_HEADER, Peer, peer_of, xfcc_uri

ME = "spiffe://cluster.local/ns/shop/sa/reviews"
OTHER = "spiffe://cluster.local/ns/other/sa/evil"
FRONT = "spiffe://cluster.local/ns/istio-system/sa/istiod"
HASH = "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # What the front (set_current_client_cert_details: uri) sends.
        (f"Hash={HASH};URI={ME}", ME),
        (f"By={FRONT};Hash={HASH};URI={ME}", ME),
        # Envoy's field order puts Subject (always quoted) before URI.
        (f'By={FRONT};Hash={HASH};Subject="CN=reviews,O=shop,C=US";URI={ME}', ME),
        (f'Hash={HASH};Subject="/C=US/CN=x";URI={ME};DNS=reviews.shop.svc', ME),
        # Quoted values.
        (f'Hash={HASH};URI="{ME}"', ME),
        (f'By="{FRONT}";Hash={HASH};URI="{ME}"', ME),
        (f'By="spiffe://odd,domain/x";URI={ME}', ME),
        # Keys are case-insensitive; spaces around elements and pairs are not significant.
        (f"hash={HASH}; uri={ME}", ME),
        (f"Hash={HASH} ; URI={ME} ", ME),
        # Several elements (APPEND_FORWARD upstream of us): the last one wins.
        (f"By={FRONT};URI={OTHER},By={FRONT};Hash={HASH};URI={ME}", ME),
        (f"URI={OTHER}, URI={ME}", ME),
        (f'URI={OTHER};Subject="CN=a,O=b",Hash={HASH};Subject="CN=c,O=d";URI={ME}', ME),
        # The last element is the verified client's: no URI there means none,
        # never an earlier element's.
        (f"URI={ME},Hash={HASH}", ""),
        (f"Hash={HASH};DNS=reviews.shop.svc", ""),
        ("", ""),
        ("garbage", ""),
    ],
)
def test_xfcc_uri(header: str, expected: str) -> None:
    assert xfcc_uri(header) == expected


def test_xfcc_uri_quoted_comma_after_uri() -> None:
    assert xfcc_uri(f'Hash={HASH};URI={ME};Subject="CN=a,O=b"') == ME


# -- peer_of inside a real grpc.aio server -------------------------------------------


_SERVICE = "test.Peer"


async def _ask(target: str, metadata: tuple[tuple[str, str], ...], server_address: str) -> Peer:
    async def whoami(request: bytes, context: Any) -> bytes:
        peer = peer_of(context)
        return json.dumps([peer.address, peer.secure, peer.identity]).encode()

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(whoami)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(_SERVICE, {"WhoAmI": handler}),)
    )
    port = server.add_insecure_port(server_address)
    assert port, server_address
    await server.start()
    try:
        async with grpc.aio.insecure_channel(target.replace(":0", f":{port}")) as channel:
            call = channel.unary_unary(f"/{_SERVICE}/WhoAmI")
            raw = await call(b"", metadata=metadata, timeout=10)
    finally:
        await server.stop(None)
    address, secure, identity = json.loads(raw)
    return Peer(address, secure, identity)


def test_peer_of_unix_socket_reads_xfcc(tmp_path: Path) -> None:
    """The front's Unix socket: secure, identity from the header."""
    sock = f"unix:{tmp_path / 'xds.sock'}"
    peer = asyncio.run(_ask(sock, ((XFCC_HEADER, f"Hash={HASH};URI={ME}"),), sock))
    assert peer.secure is True
    assert peer.identity == ME
    assert peer.address.startswith("unix:")


def test_peer_of_unix_socket_without_certificate(tmp_path: Path) -> None:
    sock = f"unix:{tmp_path / 'xds.sock'}"
    peer = asyncio.run(_ask(sock, (), sock))
    assert (peer.secure, peer.identity) == (True, "")


def test_peer_of_tcp_ignores_xfcc() -> None:
    """The plaintext debug port: whatever a client claims in the header is
    not believed, and the peer is not secure."""
    peer = asyncio.run(
        _ask("127.0.0.1:0", ((XFCC_HEADER, f"URI={ME}"),), "127.0.0.1:0"),
    )
    assert peer.secure is False
    assert peer.identity == ""
    assert peer.address.startswith("ipv4:127.0.0.1:")


def test_peer_of_abstract_socket_counts_as_unix() -> None:
    """grpc reports an abstract socket's peer as ``unix:`` too: only the
    daemon's own file socket must ever reach ``peer_of`` that way."""
    name = f"unix-abstract:mizzen-test-peer-{uuid.uuid4().hex}"
    peer = asyncio.run(_ask(name, ((XFCC_HEADER, f"URI={ME}"),), name))
    assert peer.secure is True and peer.identity == ME
