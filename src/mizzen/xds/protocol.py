"""The ADS (state of the world) stream protocol as a pure state machine.

Nothing here touches sockets, clocks, threads or gRPC: the adapter
(``mizzen.xds.server``) feeds every ``DiscoveryRequest`` that Envoy sends into
``Stream.receive`` and hands each new per-proxy config to ``Stream.update``,
then writes whatever ``Stream.next_responses`` asks it to send. Tests drive
the very same object in memory.

Rules of one stream (one gRPC ADS stream = one Envoy connection):

1. The first request of the stream carries the ``Node``; later requests may
   omit it (``set_node_on_first_message_only``) and their node is ignored.
2. Per type URL the stream tracks: the names Envoy subscribed to, the last
   response sent (version, nonce, content digest, resource names), the last
   ACKed version and nonce, and the last NACK.
3. A request for a type that has no state yet, or one with an empty
   ``response_nonce``, is a (re)subscription: the current content of that type
   is sent, even if it was sent before.
4. A request whose ``response_nonce`` is not the nonce of the latest response
   of its type is stale: Envoy is answering a response that has since been
   superseded, so it is ignored entirely (names included); Envoy repeats its
   current wishes when it answers the latest response.
5. A request with the latest nonce and no ``error_detail`` ACKs that
   response; with ``error_detail`` it NACKs it. A NACK leaves the last ACKed
   version as the proxy's accepted state and does not trigger a resend: the
   same content would only be rejected again, so the type is sent again only
   when its content (or the subscription) changes.
6. Listener and Cluster are wildcard types: an empty name list (or ``*``)
   means "everything". Other types (RouteConfiguration, ClusterLoadAssignment,
   Secret, ...) get exactly the names Envoy asked for; a change of those names
   on a non-stale request is answered even when the content is unchanged. An
   empty name list on a non-wildcard type is an unsubscription: nothing is
   sent (Envoy would not ACK an empty response for a type it no longer
   watches) and the type counts as in sync.
7. A type is sent when it is subscribed, the stream has a config, and either
   a response was requested (rule 3, 6) or the serialized content of the
   selected resources differs from the last response's. One call to
   ``next_responses`` returns at most one response per type, ordered
   make-before-break: CDS, EDS, LDS, RDS, then any other type by URL.
8. Versions come from the caller (a per-server counter); nonces are
   ``<prefix><n>`` with ``n`` increasing per stream, so they are unique per
   response when the adapter gives each stream its own prefix.
9. A cluster that Envoy receives again, changed, is rebuilt and warms until
   its endpoints arrive again; Envoy does not ask for them with new names,
   so each changed EDS cluster's assignment is resent right after the CDS
   response that changed it, even when the assignment itself did not change.
10. ClusterLoadAssignment responses may be incremental, as xDS allows for
   RDS and EDS in state of the world (a resource left out of the response is
   kept, not removed): when the content changed, the subscription did not,
   and the previous EDS response was ACKed, only the assignments whose bytes
   changed are sent. Anything else (a first answer, a (re)subscription, an
   unACKed or NACKed previous response, an assignment that disappeared) gets
   the full set. The type's state then describes the full set Envoy holds.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeAlias

from google.protobuf.message import Message

TYPE_LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
TYPE_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TYPE_ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
TYPE_ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPE_SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

# Envoy warms a cluster until its endpoints arrive and a listener until its
# routes arrive, so sending what is referenced before what references it
# avoids traffic to names that do not exist yet (make-before-break).
PUSH_ORDER: tuple[str, ...] = (TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE)

WILDCARD_TYPES: frozenset[str] = frozenset({TYPE_LISTENER, TYPE_CLUSTER})

# Types answered with only what changed (rule 9).
INCREMENTAL_TYPES: frozenset[str] = frozenset({TYPE_ENDPOINT})

Resources: TypeAlias = Mapping[str, Mapping[str, Message]]
"""type_url -> resource name -> protobuf message."""


class ProtocolError(Exception):
    """The peer broke the ADS protocol; the adapter should end the stream."""


def short_type(type_url: str) -> str:
    """``type.googleapis.com/envoy.config.listener.v3.Listener`` -> ``Listener``."""
    return type_url.rsplit(".", 1)[-1].rsplit("/", 1)[-1]


def _push_rank(type_url: str) -> tuple[int, str]:
    try:
        return (PUSH_ORDER.index(type_url), "")
    except ValueError:
        return (len(PUSH_ORDER), type_url)


# --------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class ErrorDetail:
    code: int
    message: str


@dataclass(frozen=True)
class Request:
    """The part of a ``DiscoveryRequest`` that the protocol reads."""

    type_url: str
    version_info: str = ""
    response_nonce: str = ""
    resource_names: tuple[str, ...] = ()
    error: ErrorDetail | None = None
    # envoy.config.core.v3.Node; opaque here, the adapter's identify() reads it.
    node: Any = None

    @classmethod
    def from_proto(cls, msg: Any) -> Request:
        error = None
        if msg.HasField("error_detail"):
            error = ErrorDetail(msg.error_detail.code, msg.error_detail.message)
        return cls(
            type_url=msg.type_url,
            version_info=msg.version_info,
            response_nonce=msg.response_nonce,
            resource_names=tuple(msg.resource_names),
            error=error,
            node=msg.node if msg.HasField("node") else None,
        )


@dataclass(frozen=True)
class Resource:
    name: str
    body: bytes  # deterministic serialization of the message


@dataclass(frozen=True)
class Response:
    type_url: str
    version: str
    nonce: str
    resources: tuple[Resource, ...]
    # The encoded ``resources`` field of the DiscoveryResponse (every Any),
    # shared by all responses that carry the same selection.
    payload: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.resources)

    def to_bytes(self) -> bytes:
        """The serialized ``DiscoveryResponse``, equal to ``to_proto()``'s
        deterministic serialization, without building a message per resource."""
        payload = self.payload
        if payload is None:
            payload = encode_resources(self.type_url, self.resources)
        return b"".join(
            (
                _string_field(1, self.version),
                payload,
                _string_field(4, self.type_url),
                _string_field(5, self.nonce),
            )
        )

    def to_proto(self) -> Any:
        # Imported here so that importing the protocol stays cheap and does not
        # pull in the whole generated Envoy API.
        from envoy.service.discovery.v3 import discovery_pb2
        from google.protobuf import any_pb2

        return discovery_pb2.DiscoveryResponse(
            version_info=self.version,
            nonce=self.nonce,
            type_url=self.type_url,
            # The bytes are already serialized for change detection; packing
            # them directly avoids a second serialization per resource.
            resources=[any_pb2.Any(type_url=self.type_url, value=r.body) for r in self.resources],
        )


@dataclass(frozen=True)
class Connected:
    """The first request of the stream named its node."""

    node: Any


@dataclass(frozen=True)
class Subscribed:
    type_url: str
    names: frozenset[str] | None  # None: wildcard


@dataclass(frozen=True)
class Acked:
    type_url: str
    version: str
    nonce: str


@dataclass(frozen=True)
class Nacked:
    type_url: str
    version: str  # the rejected version
    nonce: str
    resource_names: tuple[str, ...]  # of the rejected response
    code: int
    message: str  # Envoy's error_detail.message
    accepted_version: str  # what Envoy still runs (its version_info)


@dataclass(frozen=True)
class Ignored:
    type_url: str
    nonce: str
    reason: str


Event: TypeAlias = Connected | Subscribed | Acked | Nacked | Ignored


@dataclass(frozen=True)
class NackInfo:
    version: str
    nonce: str
    message: str
    resource_names: tuple[str, ...]


@dataclass(frozen=True)
class TypeStatus:
    type_url: str
    subscribed: frozenset[str] | None  # None: wildcard
    sent_version: str | None
    sent_nonce: str | None
    acked_version: str | None
    acked_nonce: str | None
    last_nack: NackInfo | None
    resource_names: tuple[str, ...]  # of the last response sent
    synced: bool


@dataclass(frozen=True)
class ProxyStatus:
    id: str
    node_id: str
    connected_at: float  # wall clock, seconds since the epoch
    types: Mapping[str, TypeStatus]
    synced: bool


# --------------------------------------------------------------------------
# State


@dataclass
class _TypeState:
    names: frozenset[str] | None = None
    requested: bool = False  # Envoy asked for an answer regardless of content
    sent_version: str | None = None
    sent_nonce: str | None = None
    sent_digest: bytes | None = None
    sent_selection: _Selection | None = None  # the full set behind the last response
    sent_part: _Selection | None = None  # what the last response carried
    acked_version: str | None = None
    acked_nonce: str | None = None
    last_nack: NackInfo | None = None
    # The resource names of the last request that changed the subscription,
    # as sent (shared between streams through ``_subscription``): an ACK that
    # repeats them is recognized with one tuple comparison.
    raw_names: tuple[str, ...] = ()
    # Resources to send again in the next response whatever their content
    # (rule 9: assignments of clusters that were just changed).
    refresh: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        # A non-wildcard type with no names is unsubscribed (rule 6).
        return self.names is None or bool(self.names)

    @property
    def sent_names(self) -> tuple[str, ...]:
        return () if self.sent_part is None else self.sent_part.names


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes_field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (omitted when empty, as proto3 does)."""
    if not value:
        return b""
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _string_field(number: int, value: str) -> bytes:
    return _bytes_field(number, value.encode())


def encode_resources(type_url: str, resources: Iterable[Resource]) -> bytes:
    """``DiscoveryResponse.resources`` (field 2): one packed ``Any`` per resource."""
    type_field = _string_field(1, type_url)
    return b"".join(
        _varint(2 << 3 | 2) + _varint(len(packed)) + packed
        for packed in (type_field + _bytes_field(2, r.body) for r in resources)
    )


class _Selection:
    """The resources of one type that a stream sends, in name order."""

    def __init__(self, type_url: str, resources: tuple[Resource, ...]) -> None:
        self.type_url = type_url
        self.resources = resources
        self.digest = _digest(resources)
        # id(older selection) -> (weak ref to it, what changed since): shared
        # by every stream that moves from the same selection to this one.
        self._changes: dict[int, tuple[weakref.ref[_Selection], _Selection | None]] = {}

    @cached_property
    def payload(self) -> bytes:
        return encode_resources(self.type_url, self.resources)

    @cached_property
    def bodies(self) -> dict[str, bytes]:
        return {r.name: r.body for r in self.resources}

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.resources)

    def changes_since(self, old: _Selection) -> _Selection | None:
        """The resources that are new or changed since ``old``; None when a
        resource of ``old`` is gone (a partial answer cannot remove it) or
        nothing changed."""
        found = self._changes.get(id(old))
        if found is not None and found[0]() is old:
            return found[1]
        before = old.bodies
        changed = tuple(
            r for r in self.resources if (b := before.get(r.name)) is not r.body and b != r.body
        )
        gone = len(before) + sum(1 for r in changed if r.name not in before) > len(self.resources)
        result = None if gone or not changed else _Selection(self.type_url, changed)
        self._changes[id(old)] = (weakref.ref(old), result)
        return result


def _incremental(
    sel: _Selection, old: _Selection, unchanged: bool, refresh: frozenset[str]
) -> _Selection:
    """What an incremental response carries: what changed since ``old`` plus
    the resources to resend; everything when a resource is gone (a partial
    answer cannot remove it)."""
    names = set(refresh)
    if not unchanged:
        changes = sel.changes_since(old)
        if changes is None:
            return sel
        if not refresh:
            return changes
        names.update(changes.names)
    picked = tuple(r for r in sel.resources if r.name in names)
    return _Selection(sel.type_url, picked) if picked else sel


class TypeConfig:
    """The serialized resources of one type in a proxy's config (name -> body).

    Immutable once built, and meant to be shared: every stream that gets the
    same ``TypeConfig`` object also shares its sorted selection, its digest
    and its encoded payload, so a thousand proxies with the same clusters cost
    one serialization, one hash and one encoding.
    """

    def __init__(self, type_url: str, bodies: Mapping[str, bytes]) -> None:
        self.type_url = type_url
        self._bodies = dict(bodies)
        # id(names) -> (names, selection): streams with the same (interned)
        # subscription share one selection, found without comparing names.
        self._selections: dict[int, tuple[frozenset[str], _Selection]] = {}

    @property
    def bodies(self) -> Mapping[str, bytes]:
        return self._bodies

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(self._bodies)

    @cached_property
    def full(self) -> _Selection:
        """Every resource, in name order."""
        return self._selection(sorted(self._bodies))

    def select(self, names: frozenset[str] | None) -> _Selection:
        """The resources named (None: all) that exist, in name order."""
        if names is None:
            return self.full
        found = self._selections.get(id(names))
        if found is not None and found[0] is names:
            return found[1]
        sel = self.full if names >= self.names else self._selection(sorted(names & self.names))
        self._selections[id(names)] = (names, sel)
        return sel

    def _selection(self, names: Iterable[str]) -> _Selection:
        return _Selection(self.type_url, tuple(Resource(n, self._bodies[n]) for n in names))


@dataclass(frozen=True, eq=False)
class PreparedConfig:
    """A proxy's whole config, already serialized: type_url -> ``TypeConfig``.

    A generator may return this instead of protobuf messages (see
    ``mizzen.xds.cache``); objects inside are shared between proxies.
    """

    types: Mapping[str, TypeConfig]


def _digest(resources: Iterable[Resource]) -> bytes:
    h = hashlib.sha256()
    for r in resources:
        # Length prefixes keep (name, body) boundaries unambiguous.
        name = r.name.encode()
        h.update(len(name).to_bytes(4, "big"))
        h.update(name)
        h.update(len(r.body).to_bytes(8, "big"))
        h.update(r.body)
    return h.digest()


class _Names(frozenset[str]):
    """A subscription's names, shared by every stream that asked for the same
    list (a thousand proxies subscribe to the same thousand EDS names)."""

    __slots__ = ("raw",)
    raw: tuple[str, ...]


# The requested name list, as sent -> its normalized set; an entry lives as
# long as some stream is subscribed with it.
_INTERNED: weakref.WeakValueDictionary[tuple[str, ...], _Names] = weakref.WeakValueDictionary()

_NO_NAMES: frozenset[str] = frozenset()


def _subscription(
    type_url: str, names: tuple[str, ...]
) -> tuple[tuple[str, ...], frozenset[str] | None]:
    """The names as requested and as subscribed (None: wildcard), both shared
    with the other streams that requested the same list."""
    if not names:
        return (), None if type_url in WILDCARD_TYPES else _NO_NAMES
    found = _INTERNED.get(names)
    if found is not None:
        return found.raw, found
    s = _Names(names)
    if "*" in s:
        return names, None
    s.raw = names
    _INTERNED[names] = s
    return names, s


def serialize(resources: Resources) -> dict[str, dict[str, bytes]]:
    """Serialize every resource deterministically (map order, field order)."""
    return {
        t: {name: msg.SerializeToString(deterministic=True) for name, msg in by_name.items()}
        for t, by_name in resources.items()
    }


class Stream:
    """One ADS stream's state. Mutated only through its methods."""

    def __init__(self, nonce_prefix: str = "") -> None:
        self.nonce_prefix = nonce_prefix
        self.node: Any = None
        self._types: dict[str, _TypeState] = {}
        self._version: str | None = None
        self._config: dict[str, TypeConfig] | None = None
        # Selected resources and digest per type, with the TypeConfig they
        # came from; dropped when that type's config object or subscription
        # changes.
        self._selected: dict[str, tuple[TypeConfig | None, _Selection]] = {}
        self._nonce_counter = 0

    # -- inputs ------------------------------------------------------------

    def receive(self, request: Request | Any) -> list[Event]:
        """Feed one request (``Request`` or a ``DiscoveryRequest``)."""
        req = request if isinstance(request, Request) else Request.from_proto(request)
        events: list[Event] = []
        if self.node is None:
            if req.node is None:
                raise ProtocolError("the first request of an ADS stream must carry the node")
            self.node = req.node
            events.append(Connected(req.node))
        if not req.type_url:
            raise ProtocolError("ADS requests must carry a type_url")

        st = self._types.get(req.type_url)
        raw = req.resource_names
        if st is None or not req.response_nonce:
            raw, names = _subscription(req.type_url, raw)
            st = self._types.setdefault(req.type_url, _TypeState())
            st.names = names
            st.raw_names = raw
            st.requested = True
            self._selected.pop(req.type_url, None)
            events.append(Subscribed(req.type_url, names))
            return events

        if req.response_nonce != st.sent_nonce:
            events.append(Ignored(req.type_url, req.response_nonce, "stale nonce"))
            return events

        if req.error is not None:
            assert st.sent_version is not None  # a nonce matched, so something was sent
            nack = NackInfo(st.sent_version, st.sent_nonce, req.error.message, st.sent_names)
            st.last_nack = nack
            events.append(
                Nacked(
                    type_url=req.type_url,
                    version=nack.version,
                    nonce=nack.nonce,
                    resource_names=nack.resource_names,
                    code=req.error.code,
                    message=req.error.message,
                    accepted_version=req.version_info,
                )
            )
        elif st.acked_nonce != req.response_nonce:
            st.acked_nonce = req.response_nonce
            st.acked_version = st.sent_version
            events.append(Acked(req.type_url, st.sent_version or "", req.response_nonce))

        if raw == st.raw_names:
            # The usual ACK: the same names as before, in the same order.
            return events
        raw, names = _subscription(req.type_url, raw)
        st.raw_names = raw
        if names is not st.names and names != st.names:
            st.names = names
            st.requested = True
            self._selected.pop(req.type_url, None)
            events.append(Subscribed(req.type_url, names))
        return events

    def update(self, version: str, resources: Resources) -> None:
        """Make ``resources`` (all types, unfiltered) this proxy's current config."""
        self.update_serialized(version, serialize(resources))

    def update_serialized(self, version: str, config: Mapping[str, Mapping[str, bytes]]) -> None:
        """Like ``update`` with bodies already serialized (see ``serialize``)."""
        self.update_prepared(version, {t: TypeConfig(t, b) for t, b in config.items()})

    def update_prepared(self, version: str, config: Mapping[str, TypeConfig]) -> None:
        """Like ``update`` with shared, serialized ``TypeConfig`` objects."""
        self._version = version
        self._config = dict(config)
        self._selected = {
            t: kept for t, kept in self._selected.items() if kept[0] is config.get(t) is not None
        }

    # -- outputs -----------------------------------------------------------

    @property
    def configured(self) -> bool:
        return self._config is not None

    @property
    def version(self) -> str | None:
        return self._version

    def _select(self, type_url: str, st: _TypeState) -> _Selection:
        kept = self._selected.get(type_url)
        if kept is not None:
            return kept[1]
        assert self._config is not None
        config = self._config.get(type_url)
        sel = (config or TypeConfig(type_url, {})).select(st.names)
        self._selected[type_url] = (config, sel)
        return sel

    def _due(self, type_url: str, st: _TypeState) -> bool:
        if self._config is None or not st.active:
            return False
        if st.requested or st.refresh:
            return True
        return self._select(type_url, st).digest != st.sent_digest

    def _refresh_changed_clusters(self, sel: _Selection, st: _TypeState) -> None:
        """Rule 9: mark the assignments of clusters changed since the last
        CDS response for a resend."""
        eds = self._types.get(TYPE_ENDPOINT)
        old = st.sent_selection
        if eds is None or not eds.active or old is None:
            return
        changes = sel.changes_since(old)
        if changes is not None:
            changed = set(changes.names)
        else:
            before = old.bodies
            changed = {r.name for r in sel.resources if before.get(r.name) != r.body}
        changed &= old.bodies.keys()  # new clusters are asked for by name anyway
        if eds.names is not None:
            changed &= eds.names
        if changed:
            eds.refresh = eds.refresh | changed

    @property
    def has_pending(self) -> bool:
        """Whether ``next_responses`` would return something now."""
        return any(self._due(t, st) for t, st in self._types.items())

    def pending_types(self) -> list[str]:
        return [t for t, st in self._types.items() if self._due(t, st)]

    def next_responses(self) -> list[Response]:
        """The responses to send now; they count as sent once returned."""
        out: list[Response] = []
        for type_url in sorted(self._types, key=_push_rank):
            st = self._types[type_url]
            if not st.active:
                st.requested = False
                continue
            if not self._due(type_url, st):
                continue
            assert self._version is not None
            sel = self._select(type_url, st)
            if type_url == TYPE_CLUSTER:
                self._refresh_changed_clusters(sel, st)
            send = sel
            if (
                type_url in INCREMENTAL_TYPES
                and not st.requested
                and st.sent_selection is not None
                and st.acked_nonce == st.sent_nonce
            ):
                unchanged = sel.digest == st.sent_digest
                send = _incremental(sel, st.sent_selection, unchanged, st.refresh)
            st.refresh = frozenset()
            self._nonce_counter += 1
            resp = Response(
                type_url=type_url,
                version=self._version,
                nonce=f"{self.nonce_prefix}{self._nonce_counter}",
                resources=send.resources,
                payload=send.payload,
            )
            st.requested = False
            st.sent_version = resp.version
            st.sent_nonce = resp.nonce
            st.sent_digest = sel.digest
            st.sent_selection = sel
            st.sent_part = send
            out.append(resp)
        return out

    def _type_synced(self, type_url: str, st: _TypeState) -> bool:
        if not st.active:
            return True
        if self._due(type_url, st):
            return False
        return st.sent_nonce is not None and st.acked_nonce == st.sent_nonce

    @property
    def synced(self) -> bool:
        """Configured, nothing left to send, and every response sent was ACKed."""
        if self._config is None:
            return False
        return all(self._type_synced(t, st) for t, st in self._types.items())

    def type_status(self) -> dict[str, TypeStatus]:
        return {
            t: TypeStatus(
                type_url=t,
                subscribed=st.names,
                sent_version=st.sent_version,
                sent_nonce=st.sent_nonce,
                acked_version=st.acked_version,
                acked_nonce=st.acked_nonce,
                last_nack=st.last_nack,
                resource_names=st.sent_names,
                synced=self._type_synced(t, st),
            )
            for t, st in sorted(self._types.items(), key=lambda kv: _push_rank(kv[0]))
        }
