"""ADS over grpc.aio: the thin IO adapter around ``mizzen.xds.protocol``.

Every ADS stream gets a ``protocol.Stream``; a reader task feeds it Envoy's
requests and a writer (the RPC handler, through ``context.write``) sends
whatever the state machine says is due. The writer pulls responses only when
it is about to write, so a slow proxy that falls behind several pushes
receives the latest content once instead of every intermediate version.

``generate`` returns either protobuf messages per type (serialized here per
proxy) or a ``PreparedConfig`` of shared, already serialized ``TypeConfig``
objects (``mizzen.xds.cache.ConfigCache``), which streams share as they are.
A push regenerates the proxies in short slices, yielding to the loop between
them; "synced" and "acked by all" are kept as a set of unsynced streams
rather than recomputed over every stream on each ACK.

All state is touched on the server's event loop only; ``push`` and ``inject``
may be called from other threads and hop onto the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message

from mizzen.xds.protocol import (
    Acked,
    Connected,
    Ignored,
    Nacked,
    PreparedConfig,
    ProtocolError,
    ProxyStatus,
    Resources,
    Stream,
    TypeConfig,
    short_type,
)
from mizzen.xds.push import Debouncer, Push

P = TypeVar("P")

# Set by the control plane's TLS front (port 15012) from the verified client
# certificate; trusted only on the Unix socket that only the front reaches.
XFCC_HEADER = "x-forwarded-client-cert"


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a stream, as far as the transport says.

    ``secure``: the stream came through the TLS front; ``identity`` is then
    the URI SAN of the client certificate, or "" when none was presented.
    Plaintext peers (the loopback debug port) carry no identity.
    """

    address: str
    secure: bool = False
    identity: str = ""


def peer_of(context: Any) -> Peer:
    address = str(context.peer() or "")
    if not address.startswith("unix:"):
        return Peer(address)
    metadata = dict(context.invocation_metadata() or ())
    return Peer(address, True, xfcc_uri(str(metadata.get(XFCC_HEADER, ""))))


def _split_unquoted(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes (XFCC quotes values that hold
    ``,``, ``;`` or ``=``; a backslash escapes a quote inside them)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def xfcc_uri(header: str) -> str:
    """The ``URI=`` of the last element of an X-Forwarded-Client-Cert header
    (the front sets exactly one: the client it verified)."""
    last = _split_unquoted(header, ",")[-1]
    for part in _split_unquoted(last, ";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "uri":
            return value.strip('"')
    return ""


# Decides whether a proxy may have its config: None to accept, else the
# reason it is refused (logged, and sent to the proxy as PERMISSION_DENIED).
Authorize = Callable[[Any, Peer], "str | None"]

# Full-mesh CDS/EDS for a few thousand services exceeds grpc's 4 MB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# A NACK log line must stay readable when a whole LDS response is rejected.
_MAX_LOGGED_NAMES = 20

_ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"

OnAcked = Callable[[str, float, int], None]

# A push regenerates proxies in slices of about this many seconds, letting
# the loop send to (and hear from) the proxies already done in between.
_FLUSH_SLICE_S = 0.01


def default_proxy_key(proxy: object) -> str:
    """``proxy.id`` when it is a string (a Node or Mizzen's Proxy), else ``str(proxy)``."""
    key = getattr(proxy, "id", None)
    return key if isinstance(key, str) else str(proxy)


def resource_name(message: Message) -> str:
    """The name Envoy knows a resource by (``cluster_name`` for endpoints)."""
    fields = message.DESCRIPTOR.fields_by_name
    for attr in ("name", "cluster_name"):
        if attr in fields:
            return str(getattr(message, attr))
    raise ValueError(f"{message.DESCRIPTOR.full_name} has no name field")


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LOGGED_NAMES])
    if len(names) > _MAX_LOGGED_NAMES:
        shown += f", ... (+{len(names) - _MAX_LOGGED_NAMES} more)"
    return shown


@dataclass(eq=False)
class _Conn(Generic[P]):
    serial: int
    stream: Stream
    connected_at: float
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    proxy: P | None = None
    key: str = ""
    closed: bool = False
    error: str | None = None
    status: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
    peer: Peer = field(default_factory=lambda: Peer(""))

    @property
    def identified(self) -> bool:
        return self.proxy is not None


class XdsServer(Generic[P]):
    """An ADS (state of the world) server for many Envoys."""

    def __init__(
        self,
        identify: Callable[[Any], P],
        generate: Callable[[P], Resources | PreparedConfig],
        proxy_key: Callable[[P], str] = default_proxy_key,
        debounce: float = 0.1,
        logger: logging.Logger | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self._identify = identify
        self._authorize = authorize
        self._generate = generate
        self._proxy_key = proxy_key
        self._log = logger or logging.getLogger(__name__)
        self._debounce = Debouncer(debounce)
        self._counter = 1  # the version a proxy connecting before any push gets
        self._conns: dict[int, _Conn[P]] = {}
        self._serial = 0
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting: Push | None = None  # the latest push not yet ACKed by all
        self._changed: asyncio.Event | None = None
        # proxy key (None: every proxy) -> type_url -> name -> message
        self._overrides: dict[str | None, dict[str, dict[str, Message]]] = {}
        # Serials of identified streams that are not synced: "acked by all"
        # is then a set emptiness test instead of a scan per ACK.
        self._unsynced: set[int] = set()
        self._flushing: asyncio.Task[None] | None = None
        self.on_acked: OnAcked | None = None
        self.ports: list[int] = []

    # -- lifecycle -----------------------------------------------------------

    async def start(
        self,
        address: str | Sequence[str],
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    ) -> int:
        """Listen on one or several addresses (``host:port`` or
        ``unix:PATH``); return the first bound port (1 for a Unix socket).
        ``extra_handlers`` are other gRPC services served on the same
        addresses (the control plane's certificate service)."""
        if self._server is not None:
            raise RuntimeError("XdsServer already started")
        addresses = [address] if isinstance(address, str) else list(address)
        if not addresses:
            raise ValueError("no address to listen on")
        self._loop = asyncio.get_running_loop()
        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        # Only the SotW method is registered: grpc answers UNIMPLEMENTED for
        # Delta, which Envoy configured with api_type GRPC never calls.
        handler = grpc.stream_stream_rpc_method_handler(
            self._ads,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=None,  # _ads yields serialized DiscoveryResponses
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    _ADS_SERVICE, {"StreamAggregatedResources": handler}
                ),
                *extra_handlers,
            )
        )
        ports: list[int] = []
        for a in addresses:
            port: int = server.add_insecure_port(a)
            if port == 0:
                raise OSError(f"cannot listen on {a}")
            ports.append(port)
        await server.start()
        self._server = server
        self.ports = ports
        self._log.info(
            "xDS server listening on %s",
            ", ".join(f"{a} (port {p})" for a, p in zip(addresses, ports, strict=True)),
        )
        return ports[0]

    async def stop(self, grace: float = 1.0) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        for conn in list(self._conns.values()):
            conn.closed = True
            conn.wake.set()
        # A push requested before stop would otherwise fire on a loop that may
        # be gone; clients of a restarted server are generated afresh anyway.
        self._debounce.take()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace)
        self._loop = None
        self._notify()

    # -- pushing ---------------------------------------------------------------

    @property
    def version(self) -> str:
        return str(self._counter)

    def push(self, reason: str = "") -> None:
        """Ask for a push; calls within the debounce window are merged."""
        self._on_loop(self._request_push, reason, time.monotonic())

    def inject(self, proxy_id: str | None, type_url: str, message: Message | None) -> None:
        """TEST SEAM: add or replace one resource in what a proxy (None: all) gets.

        The resource is keyed by its name field (``cluster_name`` for
        endpoints). ``message=None`` clears the injections of ``type_url`` for
        that proxy, or for every proxy when ``proxy_id`` is None. Schedules a
        push; before ``start`` it only records the injection.
        """
        if self._loop is None:
            self._inject(proxy_id, type_url, message)
        else:
            self._on_loop(self._inject, proxy_id, type_url, message)

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            # Not started: nobody is connected, and whoever connects later is
            # generated afresh, so there is nothing to push.
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def _inject(self, proxy_id: str | None, type_url: str, message: Message | None) -> None:
        if message is None:
            targets = list(self._overrides) if proxy_id is None else [proxy_id]
            for target in targets:
                self._overrides.get(target, {}).pop(type_url, None)
        else:
            by_type = self._overrides.setdefault(proxy_id, {})
            by_type.setdefault(type_url, {})[resource_name(message)] = message
        if self._loop is not None:
            self._request_push(f"inject {short_type(type_url)}", time.monotonic())

    def _request_push(self, reason: str, now: float) -> None:
        due = self._debounce.request(reason, now)
        if due is not None and self._loop is not None:
            self._timer = self._loop.call_at(
                self._loop.time() + max(0.0, due - time.monotonic()), self._flush
            )
        self._notify()

    def _flush(self) -> None:
        self._timer = None
        taken = self._debounce.take()
        if taken is None or self._loop is None:
            return
        requested_at, reason = taken
        self._counter += 1
        if self._flushing is not None:
            # The newer push regenerates everyone from the newer state.
            self._flushing.cancel()
        self._flushing = self._loop.create_task(self._push_all(self.version, requested_at, reason))

    async def _push_all(self, version: str, requested_at: float, reason: str) -> None:
        """Regenerate every proxy, yielding to the loop between slices so that
        the proxies done first are sent their config while the rest wait."""
        changed = 0
        slice_started = time.monotonic()
        try:
            for conn in list(self._conns.values()):
                if not conn.identified or conn.closed:
                    continue
                if time.monotonic() - slice_started > _FLUSH_SLICE_S:
                    await asyncio.sleep(0)
                    slice_started = time.monotonic()
                    if conn.closed:
                        continue
                if not self._regenerate(conn, version):
                    continue
                if conn.stream.has_pending:
                    changed += 1
                    conn.wake.set()
        finally:
            if self._flushing is asyncio.current_task():
                self._flushing = None
        self._awaiting = Push(version, requested_at, reason, changed)
        self._log.debug("push v%s (%s): %d proxies changed", version, reason, changed)
        self._check_acked()
        self._notify()

    def _regenerate(self, conn: _Conn[P], version: str) -> bool:
        assert conn.proxy is not None
        try:
            resources = self._generate(conn.proxy)
        except Exception:
            # One proxy's broken config must not stop the push to the others;
            # it keeps what it has.
            self._log.exception("generating config for %s failed", conn.key)
            return False
        if isinstance(resources, PreparedConfig):
            prepared = self._apply_prepared_overrides(conn.key, resources)
            conn.stream.update_prepared(version, prepared.types)
        else:
            conn.stream.update(version, self._apply_overrides(conn.key, resources))
        self._track(conn)
        return True

    def _track(self, conn: _Conn[P]) -> None:
        """Keep ``_unsynced`` in step after anything that may change it."""
        if conn.identified and conn.serial in self._conns and not conn.stream.synced:
            self._unsynced.add(conn.serial)
        else:
            self._unsynced.discard(conn.serial)

    def _apply_prepared_overrides(self, key: str, config: PreparedConfig) -> PreparedConfig:
        layers = [self._overrides.get(None, {}), self._overrides.get(key, {})]
        if not any(layers):
            return config
        merged = dict(config.types)
        for layer in layers:
            for type_url, by_name in layer.items():
                if by_name:
                    current = merged.get(type_url)
                    bodies = dict(current.bodies) if current is not None else {}
                    for name, msg in by_name.items():
                        bodies[name] = msg.SerializeToString(deterministic=True)
                    merged[type_url] = TypeConfig(type_url, bodies)
        return PreparedConfig(merged)

    def _apply_overrides(self, key: str, resources: Resources) -> Resources:
        layers = [self._overrides.get(None, {}), self._overrides.get(key, {})]
        if not any(layers):
            return resources
        merged: dict[str, Mapping[str, Message]] = dict(resources)
        for layer in layers:
            for type_url, by_name in layer.items():
                if by_name:
                    merged[type_url] = {**merged.get(type_url, {}), **by_name}
        return merged

    def _check_acked(self) -> None:
        push = self._awaiting
        if push is None or self._debounce.pending or self._flushing is not None:
            # A pending window supersedes the push; report the later one.
            return
        if self._unsynced:
            return
        proxies = [c for c in self._conns.values() if c.identified]
        self._awaiting = None
        elapsed = time.monotonic() - push.requested_at
        if push.changed_proxies:
            self._log.info(
                "push v%s (%s) acked by all %d proxies in %.0f ms",
                push.version,
                push.reason,
                len(proxies),
                elapsed * 1000,
            )
        else:
            self._log.info(
                "push v%s (%s) changed nothing for %d proxies",
                push.version,
                push.reason,
                len(proxies),
            )
        if self.on_acked is not None:
            try:
                self.on_acked(push.version, elapsed, len(proxies))
            except Exception:
                self._log.exception("on_acked callback failed")

    # -- observing -------------------------------------------------------------

    def status(self) -> list[ProxyStatus]:
        """One entry per connected, identified stream. Call on the server's loop."""
        return [
            ProxyStatus(
                id=c.key,
                node_id=str(c.stream.node.id),
                connected_at=c.connected_at,
                types=c.stream.type_status(),
                synced=c.stream.synced,
            )
            for c in self._conns.values()
            if c.identified
        ]

    @property
    def proxy_count(self) -> int:
        """Connected, identified streams (cheaper than ``len(status())``)."""
        return sum(1 for c in self._conns.values() if c.identified)

    def synced(self) -> bool:
        """No push pending and every connected proxy ACKed all it was sent."""
        return self._synced(None)

    def _synced(self, proxies: set[str] | None) -> bool:
        if self._debounce.pending or self._flushing is not None:
            return False
        if proxies is None:
            return not self._unsynced
        conns = [c for c in self._conns.values() if c.identified and c.key in proxies]
        if {c.key for c in conns} != proxies:
            return False
        return all(c.stream.synced for c in conns)

    async def wait_synced(self, timeout: float, proxies: Iterable[str] | None = None) -> bool:
        """Wait until no push is pending and all (given) proxies are connected and
        have ACKed every response sent to them; False on timeout. Call on the
        server's loop."""
        wanted = None if proxies is None else set(proxies)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._synced(wanted):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed = self._changed_event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True

    def _changed_event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        # Waiters hold the old event; a fresh one is armed for the next change.
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # -- one ADS stream ----------------------------------------------------------

    async def _ads(self, requests: AsyncIterator[Any], context: Any) -> None:
        self._serial += 1
        conn: _Conn[P] = _Conn(self._serial, Stream(f"{self._serial}-"), time.time())
        conn.peer = peer_of(context)
        self._conns[conn.serial] = conn
        reader = asyncio.create_task(self._read(conn, requests))
        try:
            while not conn.closed:
                await conn.wake.wait()
                conn.wake.clear()
                if conn.closed:
                    break
                responses = conn.stream.next_responses()
                self._track(conn)
                for response in responses:
                    self._log.debug(
                        "send %s v%s nonce %s to %s: %d resources",
                        short_type(response.type_url),
                        response.version,
                        response.nonce,
                        conn.key,
                        len(response.resources),
                    )
                    # Serialized here (the handler has no response serializer):
                    # the shared payload is copied, not re-encoded per proxy.
                    # context.write, not a generator: grpc's generator driver
                    # keeps the last message alive while the stream idles,
                    # about one full response per connected proxy.
                    try:
                        await context.write(response.to_bytes())
                    except Exception as e:  # the peer went away mid-write
                        self._log.debug("stream %d write ended: %r", conn.serial, e)
                        conn.closed = True
                        break
        finally:
            conn.closed = True
            reader.cancel()
            self._conns.pop(conn.serial, None)
            self._unsynced.discard(conn.serial)
            if conn.identified:
                self._log.info("proxy %s disconnected (stream %d)", conn.key, conn.serial)
            self._check_acked()
            self._notify()
        if conn.error is not None:
            await context.abort(conn.status, conn.error)

    async def _read(self, conn: _Conn[P], requests: AsyncIterator[Any]) -> None:
        try:
            async for request in requests:
                self._on_request(conn, request)
                if conn.closed:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # The peer went away mid-read; grpc reports it in several ways.
            self._log.debug("stream %d read ended: %r", conn.serial, e)
        finally:
            conn.closed = True
            conn.wake.set()

    def _fail(
        self,
        conn: _Conn[P],
        message: str,
        status: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
    ) -> None:
        self._log.warning("closing xDS stream %d: %s", conn.serial, message)
        conn.error = message
        conn.status = status
        conn.closed = True
        conn.wake.set()

    def _on_request(self, conn: _Conn[P], request: Any) -> None:
        try:
            events = conn.stream.receive(request)
        except ProtocolError as e:
            self._fail(conn, str(e))
            return
        acks = False
        for event in events:
            if isinstance(event, Connected):
                try:
                    proxy = self._identify(event.node)
                    key = self._proxy_key(proxy)
                except Exception as e:
                    self._log.exception("cannot identify node %r", event.node.id)
                    self._fail(conn, f"cannot identify node {event.node.id!r}: {e}")
                    return
                refused = self._authorize(proxy, conn.peer) if self._authorize else None
                if refused is not None:
                    self._fail(
                        conn,
                        f"refused proxy {key} from {conn.peer.address}: {refused}",
                        grpc.StatusCode.PERMISSION_DENIED,
                    )
                    return
                conn.proxy, conn.key = proxy, key
                self._log.info("proxy %s connected (stream %d)", key, conn.serial)
                self._regenerate(conn, self.version)
            elif isinstance(event, Nacked):
                acks = True
                self._log.warning(
                    "NACK from %s: type %s version %s resources [%s]: %s",
                    conn.key,
                    short_type(event.type_url),
                    event.version,
                    _names(event.resource_names),
                    event.message,
                )
            elif isinstance(event, Acked):
                acks = True
                self._log.debug(
                    "ACK from %s: type %s version %s",
                    conn.key,
                    short_type(event.type_url),
                    event.version,
                )
            elif isinstance(event, Ignored):
                self._log.debug(
                    "ignored %s request from %s: %s %s",
                    short_type(event.type_url),
                    conn.key,
                    event.reason,
                    event.nonce,
                )
        if conn.stream.has_pending:
            conn.wake.set()
        self._track(conn)
        if acks:
            self._check_acked()
        self._notify()


__all__ = [
    "MAX_MESSAGE_BYTES",
    "Peer",
    "XdsServer",
    "default_proxy_key",
    "peer_of",
    "resource_name",
    "xfcc_uri",
]
