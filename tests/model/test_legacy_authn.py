"""Legacy MeshPolicy/Policy to PeerAuthentication, and the modern YAML that
Mizzen's own loader reads back to the same objects."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from mizzen.api import parse_text
from mizzen.api.resources import (
    LegacyAuthenticationPolicy,
    LegacyTarget,
    MtlsMode,
    ObjectMeta,
    PeerAuthentication,
    Service,
    ServicePort,
)
from mizzen.model.legacy_authn import modern_yaml, to_peer_authentications

SEED = (
    Path(os.environ.get("MIZZEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    / "seeds"
    / "004_b60d42e7b0fa9090.txt"
)


def policy(
    name: str = "reviews-mtls",
    ns: str = "shop",
    mode: MtlsMode = "STRICT",
    *targets: LegacyTarget,
) -> LegacyAuthenticationPolicy:
    return LegacyAuthenticationPolicy(ObjectMeta(name, ns), "Policy", mode, tuple(targets))


def service(
    name: str,
    ns: str = "shop",
    ports: tuple[ServicePort, ...] = (ServicePort(9080, "http", 8080),),
    selector: dict[str, str] | None = None,
) -> Service:
    return Service(ObjectMeta(name, ns), ports, {"app": name} if selector is None else selector)


def pa(
    name: str,
    ns: str,
    mode: MtlsMode = "UNSET",
    selector: dict[str, str] | None = None,
    ports: dict[int, MtlsMode] | None = None,
) -> PeerAuthentication:
    return PeerAuthentication(ObjectMeta(name, ns), selector, mode, ports or {})


def roundtrip(pas: tuple[PeerAuthentication, ...]) -> tuple[object, ...]:
    result = parse_text(modern_yaml(pas), "modern.yaml")
    assert [str(e) for e in result.errors] == []
    assert result.warnings == ()
    assert {r.gvk.api_version for r in result.resources} <= {"security.istio.io/v1"}
    return tuple(r.obj for r in result.resources)


# ---------------------------------------------------------------------------
# Scope: mesh, namespace


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE", "DISABLE"])
def test_mesh_policy_becomes_root_namespace_default(mode: MtlsMode) -> None:
    mesh = LegacyAuthenticationPolicy(ObjectMeta("default", ""), "MeshPolicy", mode)
    pas, notes = to_peer_authentications(mesh, [service("reviews")])
    assert pas == (pa("default", "istio-system", mode),)
    assert notes == ()
    assert roundtrip(pas) == pas


def test_mesh_policy_follows_the_root_namespace() -> None:
    mesh = LegacyAuthenticationPolicy(ObjectMeta("default", ""), "MeshPolicy", "STRICT")
    pas, _ = to_peer_authentications(mesh, [], root_namespace="mesh-root")
    assert pas == (pa("default", "mesh-root", "STRICT"),)


def test_namespace_policy_keeps_name_and_namespace() -> None:
    pas, notes = to_peer_authentications(policy("default", "tutorial", "PERMISSIVE"), [])
    assert (pas, notes) == ((pa("default", "tutorial", "PERMISSIVE"),), ())
    assert roundtrip(pas) == pas


# ---------------------------------------------------------------------------
# Targets


def test_target_without_ports_is_a_workload_policy() -> None:
    pas, notes = to_peer_authentications(
        policy("reviews-mtls", "shop", "DISABLE", LegacyTarget("reviews")),
        [service("reviews"), service("reviews", ns="other", selector={"app": "nope"})],
    )
    assert pas == (pa("reviews-mtls-reviews", "shop", "DISABLE", {"app": "reviews"}),)
    assert notes == ()
    assert roundtrip(pas) == pas


def test_target_ports_become_port_level_mtls_on_target_ports() -> None:
    svc = service(
        "reviews",
        ports=(
            ServicePort(9080, "http", 8080),  # number -> targetPort 8080
            ServicePort(9090, "grpc"),  # no targetPort: same as port
            ServicePort(9443, "https", 8443),
        ),
        selector={"app": "reviews", "tier": "backend"},
    )
    target = LegacyTarget("reviews", (9080, "grpc"))
    pas, notes = to_peer_authentications(policy("r", "shop", "PERMISSIVE", target), [svc])
    assert pas == (
        pa(
            "r-reviews",
            "shop",
            "UNSET",  # other ports keep inheriting, as they did
            {"app": "reviews", "tier": "backend"},
            {8080: "PERMISSIVE", 9090: "PERMISSIVE"},
        ),
    )
    assert notes == ()
    assert roundtrip(pas) == pas


def test_targets_naming_one_service_merge() -> None:
    pas, _ = to_peer_authentications(
        policy("p", "shop", "STRICT", LegacyTarget("reviews", (9080,)), LegacyTarget("reviews")),
        [service("reviews")],
    )
    assert pas == (pa("p-reviews", "shop", "STRICT", {"app": "reviews"}, {8080: "STRICT"}),)


def test_several_targets_give_one_policy_each() -> None:
    pas, notes = to_peer_authentications(
        policy("p", "shop", "STRICT", LegacyTarget("reviews"), LegacyTarget("ratings", (9080,))),
        [service("ratings"), service("reviews")],
    )
    assert [p.meta.name for p in pas] == ["p-reviews", "p-ratings"]
    assert notes == ()
    assert roundtrip(pas) == pas


def test_missing_service_is_a_note_not_a_guess() -> None:
    pas, notes = to_peer_authentications(
        policy("p", "shop", "STRICT", LegacyTarget("ghost"), LegacyTarget("reviews")),
        [service("reviews"), service("ghost", ns="elsewhere")],
    )
    assert [p.meta.name for p in pas] == ["p-reviews"]
    assert notes == (
        "Policy shop/p targets Service shop/ghost, which does not exist; no PeerAuthentication"
        " was made for it. Create the Service or remove the target.",
    )


@pytest.mark.parametrize("selector", [{}, None])
def test_service_without_selector_is_a_note(selector: dict[str, str] | None) -> None:
    svc = Service(ObjectMeta("db", "shop"), (ServicePort(5432, "tcp"),), selector)
    pas, notes = to_peer_authentications(policy("p", "shop", "STRICT", LegacyTarget("db")), [svc])
    assert pas == ()
    assert notes == (
        "Policy shop/p targets Service shop/db, which has no selector, so its workloads cannot"
        " be told apart; no PeerAuthentication was made for it. Write a PeerAuthentication"
        " with a selector matching those workloads' labels.",
    )


def test_named_target_port_cannot_be_resolved_without_pods() -> None:
    svc = service(
        "reviews", ports=(ServicePort(9080, "http", "http-web"), ServicePort(9090, "grpc", 7070))
    )
    pas, notes = to_peer_authentications(
        policy("p", "shop", "STRICT", LegacyTarget("reviews", ("http", 9090))), [svc]
    )
    assert pas == (pa("p-reviews", "shop", "UNSET", {"app": "reviews"}, {7070: "STRICT"}),)
    assert notes == (
        "Policy shop/p targets port 9080 of Service shop/reviews, whose targetPort is the named"
        " container port 'http-web'; its number is known only from the pods, so that port was"
        " left out. Add portLevelMtls for that container port number by hand.",
    )


def test_unknown_service_port_is_a_note_and_nothing_empty_is_emitted() -> None:
    pas, notes = to_peer_authentications(
        policy("p", "shop", "STRICT", LegacyTarget("reviews", (1234, "metrics"))),
        [service("reviews")],
    )
    assert pas == ()
    assert notes == (
        "Policy shop/p targets port 1234 of Service shop/reviews, which has no such port"
        " (it has: 9080 (http)); that port was left out.",
        "Policy shop/p targets port named 'metrics' of Service shop/reviews, which has no such"
        " port (it has: 9080 (http)); that port was left out.",
        "Policy shop/p: none of the ports listed for Service shop/reviews could be mapped to a"
        " workload port, so no PeerAuthentication was made for it.",
    )


# ---------------------------------------------------------------------------
# Modern YAML


def test_modern_yaml_is_plain_istio_yaml() -> None:
    text = modern_yaml(
        (
            pa("default", "istio-system", "STRICT"),
            pa("p-reviews", "shop", "UNSET", {"app": "reviews"}, {9090: "DISABLE", 8080: "STRICT"}),
        )
    )
    docs = list(yaml.safe_load_all(text))
    assert docs == [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "istio-system"},
            "spec": {"mtls": {"mode": "STRICT"}},
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "p-reviews", "namespace": "shop"},
            "spec": {
                "selector": {"matchLabels": {"app": "reviews"}},
                "portLevelMtls": {8080: {"mode": "STRICT"}, 9090: {"mode": "DISABLE"}},
            },
        },
    ]
    assert text.count("\n---\n") == 1
    assert modern_yaml(()) == ""


# ---------------------------------------------------------------------------
# The seed, end to end: its YAML through the loader, the conversion, and back


def _seed_block(marker: str) -> str:
    parts = re.split(r"^~~~[ \t]*$", SEED.read_text(encoding="utf-8"), flags=re.M)
    (block,) = [p for p in parts[1::2] if marker in p]
    return block


@pytest.mark.skipif(not SEED.is_file(), reason="shared seed not present")
def test_seed_policies_convert_and_round_trip() -> None:
    target_fragment = _seed_block("target:").replace("target:", "targets:")
    text = (
        _seed_block('kind: "MeshPolicy"')
        + "---\n"
        + _seed_block('kind: "Policy"')
        + "---\n"
        + "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\n"
        + "metadata: {name: preference-mtls, namespace: tutorial}\n"
        + target_fragment
        + "  peers:\n  - mtls: {}\n"
    )
    result = parse_text(text, "seed.yaml")
    assert [str(e) for e in result.errors] == []
    legacy = [r.obj for r in result.resources]
    services = [service("preference", "tutorial", (ServicePort(9000, "http", 8080),))]
    converted = []
    for obj in legacy:
        assert isinstance(obj, LegacyAuthenticationPolicy)
        pas, notes = to_peer_authentications(obj, services)
        assert notes == ()
        converted.extend(pas)
    assert converted == [
        pa("default", "istio-system", "STRICT"),
        pa("default", "tutorial", "STRICT"),
        pa(
            "preference-mtls-preference",
            "tutorial",
            "UNSET",
            {"app": "preference"},
            {8080: "STRICT"},
        ),
    ]
    assert roundtrip(tuple(converted)) == tuple(converted)
