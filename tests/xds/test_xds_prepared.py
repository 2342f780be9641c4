"""Shared serialized configs in the stream protocol: wire encoding, sharing,
incremental EDS (rule 9)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2

from mizzen.xds.protocol import (
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    Resource,
    Response,
    Stream,
    TypeConfig,
)

NODE = base_pb2.Node(id="sidecar~198.18.0.5~a-0.default~default.svc.cluster.local")


def cla(name: str, port: int = 80) -> bytes:
    msg = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    msg.endpoints.add().lb_endpoints.add().endpoint.address.socket_address.port_value = port
    return bytes(msg.SerializeToString(deterministic=True))


def cluster(name: str) -> bytes:
    return bytes(cluster_pb2.Cluster(name=name).SerializeToString(deterministic=True))


def config(ports: dict[str, int]) -> dict[str, TypeConfig]:
    return {
        TYPE_CLUSTER: TypeConfig(TYPE_CLUSTER, {n: cluster(n) for n in ports}),
        TYPE_ENDPOINT: TypeConfig(TYPE_ENDPOINT, {n: cla(n, p) for n, p in ports.items()}),
    }


def request(type_url: str, names: tuple[str, ...] = (), r: Response | None = None) -> object:
    req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
    if r is not None:
        req.response_nonce, req.version_info = r.nonce, r.version
    return req


def subscribed(cfg: dict[str, TypeConfig]) -> tuple[Stream, dict[str, Response]]:
    s = Stream("s-")
    first = discovery_pb2.DiscoveryRequest(type_url=TYPE_CLUSTER)
    first.node.CopyFrom(NODE)
    s.receive(first)
    s.update_prepared("1", cfg)
    (cds,) = s.next_responses()
    s.receive(request(TYPE_CLUSTER, (), cds))
    s.receive(request(TYPE_ENDPOINT, tuple(cfg[TYPE_ENDPOINT].bodies)))
    (eds,) = s.next_responses()
    s.receive(request(TYPE_ENDPOINT, tuple(cfg[TYPE_ENDPOINT].bodies), eds))
    assert s.synced
    return s, {TYPE_CLUSTER: cds, TYPE_ENDPOINT: eds}


def test_to_bytes_is_the_protobuf_serialization() -> None:
    resources = (Resource("a", cla("a")), Resource("b", cla("b", 81)), Resource("e", b""))
    for version, nonce in (("7", "s-3"), ("", "")):
        r = Response(TYPE_ENDPOINT, version, nonce, resources)
        assert r.to_bytes() == r.to_proto().SerializeToString(deterministic=True)
        parsed = discovery_pb2.DiscoveryResponse.FromString(r.to_bytes())
        assert [a.value for a in parsed.resources] == [x.body for x in resources]


def test_streams_with_the_same_type_config_share_selection_and_payload() -> None:
    cfg = config({"a": 1, "b": 2})
    (_, r1), (_, r2) = subscribed(cfg), subscribed(cfg)
    for t in (TYPE_CLUSTER, TYPE_ENDPOINT):
        assert r1[t].payload is not None and r1[t].payload is r2[t].payload
        assert r1[t].names == ("a", "b")


def test_unchanged_config_object_sends_nothing() -> None:
    cfg = config({"a": 1, "b": 2})
    s, _ = subscribed(cfg)
    s.update_prepared("2", dict(cfg))
    assert s.next_responses() == []
    assert s.synced


def test_endpoint_push_after_an_ack_sends_only_the_changed_assignments() -> None:
    s, _ = subscribed(config({"a": 1, "b": 2, "c": 3}))
    new = config({"a": 1, "b": 20, "c": 3})
    new[TYPE_CLUSTER] = config({"a": 1, "b": 2, "c": 3})[TYPE_CLUSTER]  # same bytes
    s.update_prepared("2", new)
    (eds,) = s.next_responses()
    assert eds.type_url == TYPE_ENDPOINT and eds.names == ("b",)
    assert eds.version == "2"
    s.receive(request(TYPE_ENDPOINT, ("a", "b", "c"), eds))
    assert s.synced
    # The stream now describes the full set Envoy holds: the same content
    # again is not resent.
    s.update_prepared("3", config({"a": 1, "b": 20, "c": 3}))
    assert s.next_responses() == []


def test_partial_answers_are_shared_between_streams() -> None:
    old, new = config({"a": 1, "b": 2}), config({"a": 1, "b": 5})
    (s1, _), (s2, _) = subscribed(old), subscribed(old)
    s1.update_prepared("2", new)
    s2.update_prepared("2", new)
    (e1,) = s1.next_responses()
    (e2,) = s2.next_responses()
    assert e1.names == e2.names == ("b",)
    assert e1.payload is e2.payload


def test_full_set_when_previous_unacked_or_something_is_gone() -> None:
    s, _ = subscribed(config({"a": 1, "b": 2}))
    s.update_prepared("2", config({"a": 1, "b": 3}))
    (partial,) = s.next_responses()
    assert partial.names == ("b",)
    # Not ACKed yet: the next change goes out whole.
    s.update_prepared("3", config({"a": 4, "b": 3}))
    (full,) = s.next_responses()
    assert full.names == ("a", "b")
    s.receive(request(TYPE_ENDPOINT, ("a", "b"), full))
    # An assignment that disappears cannot be expressed by leaving it out.
    gone = config({"a": 4})
    gone[TYPE_CLUSTER] = config({"a": 4, "b": 3})[TYPE_CLUSTER]
    s.update_prepared("4", gone)
    (eds,) = s.next_responses()
    assert eds.names == ("a",)


def test_resubscription_gets_the_full_set() -> None:
    s, first = subscribed(config({"a": 1, "b": 2}))
    s.receive(request(TYPE_ENDPOINT, ("a",), first[TYPE_ENDPOINT]))
    (eds,) = s.next_responses()
    assert eds.names == ("a",)
    s.receive(request(TYPE_ENDPOINT, ("a", "b"), eds))
    (eds2,) = s.next_responses()
    assert eds2.names == ("a", "b")


def test_server_applies_injected_overrides_to_prepared_configs() -> None:
    from mizzen.xds.protocol import PreparedConfig
    from mizzen.xds.server import XdsServer

    cfg = config({"a": 1})
    server: XdsServer[str] = XdsServer(identify=str, generate=lambda _: PreparedConfig(cfg))
    assert server._apply_prepared_overrides("p", PreparedConfig(cfg)).types is cfg
    server.inject(None, TYPE_CLUSTER, cluster_pb2.Cluster(name="extra"))
    server.inject("p", TYPE_CLUSTER, cluster_pb2.Cluster(name="a", type=cluster_pb2.Cluster.STATIC))
    merged = server._apply_prepared_overrides("p", PreparedConfig(cfg)).types
    assert set(merged[TYPE_CLUSTER].bodies) == {"a", "extra"}
    assert merged[TYPE_CLUSTER].bodies["a"] != cfg[TYPE_CLUSTER].bodies["a"]
    assert merged[TYPE_ENDPOINT] is cfg[TYPE_ENDPOINT]
    other = server._apply_prepared_overrides("q", PreparedConfig(cfg)).types
    assert other[TYPE_CLUSTER].bodies["a"] == cfg[TYPE_CLUSTER].bodies["a"]


def test_streams_with_the_same_subscription_share_names_and_selection() -> None:
    cfg = config({"a": 80, "b": 81, "c": 82})
    s1, s2 = subscribed(cfg)[0], subscribed(cfg)[0]
    st1, st2 = s1.type_status()[TYPE_ENDPOINT], s2.type_status()[TYPE_ENDPOINT]
    assert st1.subscribed == st2.subscribed == frozenset({"a", "b", "c"})
    assert st1.subscribed is st2.subscribed  # one set for every stream
    # A new EDS config: both streams select from it once, sharing the result.
    cfg2 = {**cfg, TYPE_ENDPOINT: TypeConfig(TYPE_ENDPOINT, {**cfg[TYPE_ENDPOINT].bodies})}
    names = st1.subscribed
    assert names is not None
    assert cfg2[TYPE_ENDPOINT].select(names) is cfg2[TYPE_ENDPOINT].select(st2.subscribed)
    sub = frozenset({"a", "x"})
    assert cfg2[TYPE_ENDPOINT].select(sub).names == ("a",)
    assert cfg2[TYPE_ENDPOINT].select(sub) is cfg2[TYPE_ENDPOINT].select(sub)


def test_an_ack_with_the_same_names_in_another_order_changes_nothing() -> None:
    cfg = config({"a": 80, "b": 81})
    s, first = subscribed(cfg)
    eds = first[TYPE_ENDPOINT]
    assert s.receive(request(TYPE_ENDPOINT, ("b", "a"), eds)) == []
    assert s.receive(request(TYPE_ENDPOINT, ("a", "b"), eds)) == []
    assert s.synced and not s.next_responses()
    # A different list after that is still a subscription change.
    events = s.receive(request(TYPE_ENDPOINT, ("a",), eds))
    assert [type(e).__name__ for e in events] == ["Subscribed"]
    (again,) = s.next_responses()
    assert again.names == ("a",)
    assert s.type_status()[TYPE_ENDPOINT].resource_names == ("a",)
