from __future__ import annotations

import dataclasses

import pytest

from mizzen.ca import DEFAULT_TRUST_DOMAIN, SpiffeId, parse_spiffe, spiffe_id


def test_default_trust_domain_is_istios() -> None:
    assert DEFAULT_TRUST_DOMAIN == "cluster.local"
    sid = spiffe_id("default", "bookinfo-productpage")
    assert sid == SpiffeId("cluster.local", "default", "bookinfo-productpage")
    assert str(sid) == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://cluster.local/ns/default/sa/default",
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
        "spiffe://example.org/ns/my_ns/sa/Mixed.Case-SA",
        "spiffe://td-1.corp_x/ns/a/sa/b",
    ],
)
def test_round_trip(uri: str) -> None:
    sid = parse_spiffe(uri)
    assert str(sid) == uri
    assert parse_spiffe(str(sid)) == sid
    assert spiffe_id(sid.namespace, sid.service_account, sid.trust_domain) == sid


def test_parse_fields() -> None:
    sid = parse_spiffe("spiffe://example.org/ns/shop/sa/cart")
    assert (sid.trust_domain, sid.namespace, sid.service_account) == ("example.org", "shop", "cart")


def test_frozen() -> None:
    sid = spiffe_id("a", "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sid.namespace = "c"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("", "is not a SPIFFE ID"),
        ("http://cluster.local/ns/a/sa/b", "is not a SPIFFE ID"),
        ("SPIFFE://cluster.local/ns/a/sa/b", "is not a SPIFFE ID"),
        ("spiffe://cluster.local", "has no path"),
        ("spiffe://cluster.local/", "is not a workload identity"),
        ("spiffe://cluster.local/ns/a", "is not a workload identity"),
        ("spiffe://cluster.local/ns/a/sa/b/c", "is not a workload identity"),
        ("spiffe://cluster.local/ns/a/sa/b/", "is not a workload identity"),
        ("spiffe://cluster.local/namespace/a/sa/b", "is not a workload identity"),
        ("spiffe://cluster.local/sa/b/ns/a", "is not a workload identity"),
        ("spiffe:///ns/a/sa/b", "trust domain is empty"),
        ("spiffe://Cluster.Local/ns/a/sa/b", "lowercase"),
        ("spiffe://cluster.local:443/ns/a/sa/b", "lowercase"),
        ("spiffe://user@cluster.local/ns/a/sa/b", "lowercase"),
        ("spiffe://cluster.local/ns//sa/b", "namespace is empty"),
        ("spiffe://cluster.local/ns/a/sa/", "service account is empty"),
        ("spiffe://cluster.local/ns/a b/sa/c", "namespace 'a b'"),
        ("spiffe://cluster.local/ns/../sa/c", "must not be '.' or '..'"),
        ("spiffe://cluster.local/ns/a/sa/b?x=1", "service account 'b?x=1'"),
        ("spiffe://cluster.local/ns/a/sa/b#frag", "service account 'b#frag'"),
        ("spiffe://cluster.local/ns/a/sa/%41", "service account '%41'"),
    ],
)
def test_parse_rejects(uri: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_spiffe(uri)
    message = str(info.value)
    assert fragment in message
    assert repr(uri) in message
    if "expected" in message:
        assert "spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>" in message


def test_parse_rejects_non_string() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_spiffe(b"spiffe://cluster.local/ns/a/sa/b")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("", "sa"), "namespace is empty"),
        (("ns", ""), "service account is empty"),
        (("ns/x", "sa"), "namespace 'ns/x'"),
        (("ns", "sa", "Example.org"), "lowercase"),
        (("ns", "sa", ""), "trust domain is empty"),
        (("ns", "x" * 3000), "longer than 2048 bytes"),
    ],
)
def test_constructor_rejects(args: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace(".", r"\.")):
        spiffe_id(*args)
