"""The ADS stream state machine, driven in memory with real DiscoveryRequests."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import status_pb2

from mizzen.xds.protocol import (
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    Acked,
    Connected,
    Ignored,
    Nacked,
    ProtocolError,
    Response,
    Stream,
    Subscribed,
)
from mizzen.xds.push import Debouncer

NODE = base_pb2.Node(id="sidecar~198.18.0.5~reviews-v1-0.default~default.svc.cluster.local")


def config(timeout: int = 1, routes: tuple[str, ...] = ("80", "9080")) -> dict[str, dict]:
    return {
        TYPE_CLUSTER: {
            "a": cluster_pb2.Cluster(name="a", connect_timeout=Duration(seconds=timeout)),
            "b": cluster_pb2.Cluster(name="b"),
        },
        TYPE_ENDPOINT: {
            "a": endpoint_pb2.ClusterLoadAssignment(cluster_name="a"),
            "b": endpoint_pb2.ClusterLoadAssignment(cluster_name="b"),
        },
        TYPE_LISTENER: {"l": listener_pb2.Listener(name="l")},
        TYPE_ROUTE: {n: route_pb2.RouteConfiguration(name=n) for n in routes},
    }


def req(
    type_url: str,
    names: tuple[str, ...] = (),
    *,
    nonce: str = "",
    version: str = "",
    error: str | None = None,
    node: bool = False,
) -> discovery_pb2.DiscoveryRequest:
    r = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=names, response_nonce=nonce, version_info=version
    )
    if node:
        r.node.CopyFrom(NODE)
    if error is not None:
        r.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return r


def ack(r: Response, names: tuple[str, ...] | None = None) -> discovery_pb2.DiscoveryRequest:
    """ACK ``r``; by default keep the subscription (wildcard, or the names it answered)."""
    if names is None:
        names = () if r.type_url in (TYPE_CLUSTER, TYPE_LISTENER) else r.names
    return req(r.type_url, names, nonce=r.nonce, version=r.version)


def by_type(responses: list[Response]) -> dict[str, Response]:
    out = {r.type_url: r for r in responses}
    assert len(out) == len(responses), "at most one response per type per call"
    return out


def connected(version: str = "1") -> tuple[Stream, dict[str, Response]]:
    """A stream that subscribed to all four types and got its first responses."""
    s = Stream("s-")
    s.receive(req(TYPE_CLUSTER, node=True))
    s.receive(req(TYPE_LISTENER))
    s.update(version, config())
    first = by_type(s.next_responses())
    s.receive(req(TYPE_ENDPOINT, ("a", "b")))
    s.receive(req(TYPE_ROUTE, ("9080",)))
    first |= by_type(s.next_responses())
    return s, first


def test_first_request_carries_node_and_subscribes() -> None:
    s = Stream()
    events = s.receive(req(TYPE_CLUSTER, node=True))
    assert events == [Connected(NODE), Subscribed(TYPE_CLUSTER, None)]
    assert s.node.id == NODE.id
    assert s.next_responses() == []  # no config yet: nothing to send
    assert not s.synced


def test_first_request_without_node_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Stream().receive(req(TYPE_CLUSTER))


def test_initial_responses_follow_make_before_break_order() -> None:
    s = Stream("n")
    s.update("1", config())
    for t, names in [
        (TYPE_ROUTE, ("9080",)),
        (TYPE_LISTENER, ()),
        (TYPE_ENDPOINT, ("a",)),
        (TYPE_CLUSTER, ()),
    ]:
        s.receive(req(t, names, node=True))
    out = s.next_responses()
    assert [r.type_url for r in out] == [TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE]
    assert [r.nonce for r in out] == ["n1", "n2", "n3", "n4"]
    assert {r.version for r in out} == {"1"}
    cds, eds, lds, rds = out
    assert cds.names == ("a", "b")  # wildcard: everything
    assert eds.names == ("a",)  # only what was asked for
    assert lds.names == ("l",)
    assert rds.names == ("9080",)
    proto = cds.to_proto()
    assert proto.nonce == "n1" and proto.version_info == "1"
    assert proto.resources[0].type_url == TYPE_CLUSTER
    c = cluster_pb2.Cluster()
    proto.resources[0].Unpack(c)
    assert c.name == "a" and c.connect_timeout.seconds == 1


def test_ack_makes_the_stream_synced() -> None:
    s, first = connected()
    assert not s.synced
    for t in (TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER):
        events = s.receive(ack(first[t]))
        assert events == [Acked(t, "1", first[t].nonce)]
    assert not s.synced  # RDS still unacked
    s.receive(ack(first[TYPE_ROUTE], ("9080",)))
    assert s.synced
    st = s.type_status()[TYPE_ROUTE]
    assert (st.sent_version, st.acked_version, st.acked_nonce) == (
        "1",
        "1",
        first[TYPE_ROUTE].nonce,
    )
    assert st.resource_names == ("9080",)
    # A repeated ACK (Envoy re-sends its request) is not a new event.
    assert s.receive(ack(first[TYPE_ROUTE], ("9080",))) == []


def test_nack_is_recorded_and_not_resent_until_content_changes() -> None:
    s, first = connected()
    for r in first.values():
        s.receive(ack(r))
    assert s.synced
    s.update("2", config(timeout=2))
    cds, eds = s.next_responses()  # cluster a changed: its endpoints follow
    assert cds.type_url == TYPE_CLUSTER and cds.version == "2"
    assert eds.names == ("a",)
    s.receive(ack(eds, ("a", "b")))

    events = s.receive(req(TYPE_CLUSTER, nonce=cds.nonce, version="1", error="bad cluster a"))
    assert events == [
        Nacked(
            type_url=TYPE_CLUSTER,
            version="2",
            nonce=cds.nonce,
            resource_names=("a", "b"),
            code=3,
            message="bad cluster a",
            accepted_version="1",
        )
    ]
    st = s.type_status()[TYPE_CLUSTER]
    assert st.acked_version == "1"  # what Envoy still runs
    assert st.last_nack is not None and st.last_nack.message == "bad cluster a"
    assert st.last_nack.version == "2"
    assert not s.synced
    # Same bad content again (e.g. an unrelated push): no resend loop.
    assert s.next_responses() == []
    s.update("3", config(timeout=2))
    assert s.next_responses() == []
    # Fixed content goes out, and its ACK clears the out-of-sync state.
    s.update("4", config(timeout=4))
    fixed, endpoints = s.next_responses()
    assert fixed.version == "4"
    s.receive(ack(fixed))
    s.receive(ack(endpoints, ("a", "b")))
    assert s.synced


def test_stale_nonce_is_ignored_names_included() -> None:
    s, first = connected()
    old = first[TYPE_ROUTE]
    s.update("2", config(routes=("80", "9080", "x")))
    s.update("3", config(routes=("80", "9080", "y")))
    s.receive(ack(old, ("9080",)))
    # Content of route 9080 did not change, so nothing new is due for RDS.
    assert [r.type_url for r in s.next_responses()] == []
    s.update("4", config(timeout=9))
    cds, _ = s.next_responses()  # with cluster a's endpoints
    s.update("5", config(timeout=10))
    cds2, _ = s.next_responses()
    events = s.receive(req(TYPE_CLUSTER, ("zzz",), nonce=cds.nonce, version="3"))
    assert events == [Ignored(TYPE_CLUSTER, cds.nonce, "stale nonce")]
    assert s.type_status()[TYPE_CLUSTER].acked_nonce != cds.nonce
    assert s.type_status()[TYPE_CLUSTER].subscribed is None  # names ignored too
    assert s.receive(ack(cds2)) == [Acked(TYPE_CLUSTER, "5", cds2.nonce)]


def test_rds_subscription_change_is_answered_with_exactly_the_new_names() -> None:
    s, first = connected()
    rds = first[TYPE_ROUTE]
    assert rds.names == ("9080",)
    # Envoy ACKs and asks for one more route in the same request.
    events = s.receive(ack(rds, ("9080", "80")))
    assert events == [
        Acked(TYPE_ROUTE, "1", rds.nonce),
        Subscribed(TYPE_ROUTE, frozenset({"80", "9080"})),
    ]
    (rds2,) = s.next_responses()
    assert rds2.names == ("80", "9080") and rds2.version == "1"
    assert rds2.nonce != rds.nonce
    # Dropping a name is answered too, even though 9080 itself is unchanged.
    s.receive(ack(rds2, ("9080",)))
    (rds3,) = s.next_responses()
    assert rds3.names == ("9080",)
    # A name that does not exist is simply absent from the answer.
    s.receive(ack(rds3, ("9080", "nope")))
    (rds4,) = s.next_responses()
    assert rds4.names == ("9080",)


def test_unsubscribing_every_route_sends_nothing_and_counts_as_synced() -> None:
    s, first = connected()
    for r in first.values():
        s.receive(ack(r, () if r.type_url == TYPE_ROUTE else None))
    assert s.type_status()[TYPE_ROUTE].subscribed == frozenset()
    assert s.next_responses() == []
    assert s.synced


def test_push_sends_only_the_types_whose_content_changed() -> None:
    s, first = connected()
    for r in first.values():
        s.receive(ack(r))
    assert s.synced
    s.update("2", config())  # regenerated, identical bytes
    assert not s.has_pending
    assert s.next_responses() == []
    assert s.synced
    s.update("3", config(routes=("80", "9080", "extra")))  # an unsubscribed route only
    assert s.next_responses() == []
    s.update("4", config(timeout=5, routes=("80", "9080", "extra")))
    out = s.next_responses()
    assert [r.type_url for r in out] == [TYPE_CLUSTER, TYPE_ENDPOINT]
    assert out[0].version == "4"
    assert not s.synced
    s.receive(ack(out[0]))
    s.receive(ack(out[1], ("a", "b")))
    assert s.synced


def test_only_proxies_whose_output_changed_get_a_response() -> None:
    a, fa = connected()
    b, fb = connected()
    for s, f in ((a, fa), (b, fb)):
        for r in f.values():
            s.receive(ack(r))
    a.update("2", config(timeout=7))
    b.update("2", config())
    assert [r.type_url for r in a.next_responses()] == [TYPE_CLUSTER, TYPE_ENDPOINT]
    assert b.next_responses() == []
    assert b.synced and not a.synced


def test_a_changed_cluster_gets_its_endpoints_again() -> None:
    """Envoy warms a changed EDS cluster until its assignment arrives again,
    and asks for the same names: the assignment is resent unasked."""
    s, first = connected()
    for r in first.values():
        s.receive(ack(r))
    s.update("2", config(timeout=9))
    cds, eds = s.next_responses()
    assert (cds.type_url, cds.names) == (TYPE_CLUSTER, ("a", "b"))
    assert (eds.type_url, eds.names) == (TYPE_ENDPOINT, ("a",))  # b is unchanged
    s.receive(ack(cds))
    s.receive(ack(eds, ("a", "b")))
    assert s.next_responses() == []
    assert s.synced


def test_a_new_cluster_alone_does_not_resend_endpoints() -> None:
    s, first = connected()
    for r in first.values():
        s.receive(ack(r))
    changed = config()
    changed[TYPE_CLUSTER]["c"] = cluster_pb2.Cluster(name="c")
    s.update("2", changed)
    (cds,) = s.next_responses()  # Envoy asks for c's endpoints by name
    assert cds.names == ("a", "b", "c")


def test_resubscription_with_empty_nonce_resends() -> None:
    s, first = connected()
    s.receive(ack(first[TYPE_LISTENER]))
    s.receive(req(TYPE_LISTENER))
    (lds,) = s.next_responses()
    assert lds.type_url == TYPE_LISTENER and lds.nonce != first[TYPE_LISTENER].nonce


def test_debouncer_merges_requests_within_a_window() -> None:
    d = Debouncer(0.1)
    assert d.request("config", now=10.0) == pytest.approx(10.1)
    assert d.request("registry", now=10.05) is None
    assert d.request("config", now=10.08) is None
    assert d.pending
    assert d.take() == (10.0, "config, registry")
    assert not d.pending
    assert d.take() is None
    assert d.request("", now=11.0) == pytest.approx(11.1)
    assert d.take() == (11.0, "")
