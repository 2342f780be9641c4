"""Peer authentication resources: PeerAuthentication (security.istio.io) and
the legacy MeshPolicy / Policy (authentication.istio.io/v1alpha1).

Every refusal is asserted as the full ``file:doc: resource: path: message``
line a user would read."""

from __future__ import annotations

import copy
import os
import random
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from mizzen.api import ConfigWarning, LoadResult, parse_text
from mizzen.api.parse import parse_document
from mizzen.api.resources import (
    GroupVersionKind,
    LegacyAuthenticationPolicy,
    LegacyTarget,
    PeerAuthentication,
    Source,
)

FILE = "f.yaml"
SHARED = Path(os.environ.get("MIZZEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
SEED = SHARED / "seeds" / "004_b60d42e7b0fa9090.txt"
needs_seed = pytest.mark.skipif(not SEED.is_file(), reason="shared seed not present")

DEPRECATED = (
    "{kind} (authentication.istio.io/v1alpha1) is deprecated since Istio 1.4 and was removed"
    " in 1.6; Mizzen enforces its mTLS part as the equivalent PeerAuthentication"
    " (security.istio.io/v1) and its origins as a RequestAuthentication with an"
    " AuthorizationPolicy, the forms to write instead"
)


def _pa(spec: str, version: str = "v1", name: str = "pa") -> str:
    return (
        f"apiVersion: security.istio.io/{version}\nkind: PeerAuthentication\n"
        f"metadata: {{name: {name}}}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec).rstrip("\n") + "\n", "  ")
    )


def _legacy(kind: str, name: str, spec: str, namespace: str = "tutorial") -> str:
    ns = f", namespace: {namespace}" if kind == "Policy" else ""
    body = textwrap.indent(textwrap.dedent(spec).rstrip("\n") + "\n", "  ") if spec else "  {}\n"
    return (
        f"apiVersion: authentication.istio.io/v1alpha1\nkind: {kind}\n"
        f"metadata: {{name: {name}{ns}}}\nspec:\n" + body
    )


def _one(text: str) -> tuple[Any, LoadResult]:
    result = parse_text(text, FILE)
    assert [str(e) for e in result.errors] == []
    (resource,) = result.resources
    return resource.obj, result


def _errors(text: str) -> list[str]:
    result = parse_text(text, FILE)
    assert result.resources == ()
    assert result.warnings == ()
    return [str(e) for e in result.errors]


# ---------------------------------------------------------------------------
# PeerAuthentication: accepted


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_peer_authentication_versions_build_the_same_model(version: str) -> None:
    obj, result = _one(
        _pa(
            "selector: {matchLabels: {app: reviews}}\nmtls: {mode: STRICT}\n"
            "portLevelMtls:\n  9080: {mode: PERMISSIVE}\n  '8080': {mode: DISABLE}\n  15020: {}\n",
            version,
        )
    )
    assert obj == PeerAuthentication(
        meta=obj.meta,
        selector={"app": "reviews"},
        mode="STRICT",
        port_level_mtls={9080: "PERMISSIVE", 8080: "DISABLE", 15020: "UNSET"},
    )
    (resource,) = result.resources
    assert resource.gvk == GroupVersionKind("security.istio.io", version, "PeerAuthentication")
    # One object whatever the version: the key carries no version.
    assert str(resource.key) == "PeerAuthentication default/pa"
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("spec", "selector", "mode"),
    [
        ("{}", None, "UNSET"),
        ("mtls: {}", None, "UNSET"),
        ("mtls: {mode: null}", None, "UNSET"),
        ("mtls: {mode: DISABLE}", None, "DISABLE"),
        ("mtls: {mode: UNSET}\nselector: {matchLabels: {app: a}}", {"app": "a"}, "UNSET"),
        (
            "selector: {matchLabels: {app.kubernetes.io/name: a}}",
            {"app.kubernetes.io/name": "a"},
            "UNSET",
        ),
        ("mtls: {mode: PERMISSIVE}\nfutureField: 1", None, "PERMISSIVE"),
    ],
)
def test_peer_authentication_defaults(
    spec: str, selector: dict[str, str] | None, mode: str
) -> None:
    obj, _ = _one(_pa(spec))
    assert isinstance(obj, PeerAuthentication)
    assert (obj.selector, obj.mode, dict(obj.port_level_mtls)) == (selector, mode, {})


def test_peer_authentication_without_spec_is_namespace_wide_unset() -> None:
    obj, _ = _one(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: d}\n"
    )
    assert obj == PeerAuthentication(obj.meta)


@pytest.mark.parametrize("selector", ["{}", "{matchLabels: {}}", "{matchLabels: null}"])
def test_selector_without_labels_is_a_warning_and_namespace_wide(selector: str) -> None:
    obj, result = _one(_pa(f"selector: {selector}\nmtls: {{mode: STRICT}}\n"))
    assert obj.selector is None and obj.mode == "STRICT"
    assert [str(w) for w in result.warnings] == [
        f"{FILE}:0: PeerAuthentication default/pa: spec.selector: has no matchLabels, so it"
        " selects every workload: this policy applies to the whole namespace (the whole mesh"
        " in the root namespace); add matchLabels or remove the selector"
    ]
    assert all(isinstance(w, ConfigWarning) for w in result.warnings)


# ---------------------------------------------------------------------------
# PeerAuthentication: refused, with the exact line

PA = f"{FILE}:0: PeerAuthentication default/pa"
MODES = "must be one of UNSET, DISABLE, PERMISSIVE, STRICT"
NEEDS_SELECTOR = (
    "spec: portLevelMtls requires selector: port-level modes apply only to the workloads"
    " chosen by selector.matchLabels"
)

PA_REFUSED: list[tuple[str, str]] = [
    (_pa("mtls: {mode: MUTUAL}"), f"{PA}: spec.mtls.mode: {MODES}; got 'MUTUAL'"),
    (_pa("mtls: {mode: strict}"), f"{PA}: spec.mtls.mode: {MODES}; got 'strict'"),
    (_pa("mtls: {mode: 1}"), f"{PA}: spec.mtls.mode: must be a string, got integer"),
    (_pa("mtls: STRICT"), f"{PA}: spec.mtls: must be an object, got string"),
    (
        _pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {8080: {mode: ISTIO_MUTUAL}}"),
        f"{PA}: spec.portLevelMtls[8080].mode: {MODES}; got 'ISTIO_MUTUAL'",
    ),
    (_pa("portLevelMtls: {8080: {mode: DISABLE}}"), f"{PA}: {NEEDS_SELECTOR}"),
    (
        _pa("selector: {}\nportLevelMtls: {8080: {mode: DISABLE}}"),
        f"{PA}: {NEEDS_SELECTOR}",
    ),
    (
        _pa("selector: {matchLabels: {}}\nportLevelMtls: {8080: {mode: DISABLE}}"),
        f"{PA}: {NEEDS_SELECTOR}",
    ),
    (
        _pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {0: {mode: DISABLE}}"),
        f"{PA}: spec.portLevelMtls: port must be between 1-65535, got 0",
    ),
    (
        _pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {65536: {mode: DISABLE}}"),
        f"{PA}: spec.portLevelMtls: port must be between 1-65535, got 65536",
    ),
    (
        _pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {http: {mode: DISABLE}}"),
        f"{PA}: spec.portLevelMtls: keys must be port numbers, got 'http'",
    ),
    (
        _pa("selector: {matchLabels: {app: a}}\nportLevelMtls: {}"),
        f"{PA}: spec.portLevelMtls: must have at least 1 entry",
    ),
    (
        _pa("selector: {matchLabels: {app: a}}\nportLevelMtls: [8080]"),
        f"{PA}: spec.portLevelMtls: must be a map, got list",
    ),
    (
        _pa("selector: {matchLabels: {app: 're*'}}"),
        f"{PA}: spec.selector.matchLabels[app]: wildcard not allowed in label value match",
    ),
    (
        _pa("selector: {matchLabels: {'a*': x}}"),
        f"{PA}: spec.selector.matchLabels: wildcard not allowed in label key match",
    ),
    (
        _pa("selector: {matchLabels: {'': x}}"),
        f"{PA}: spec.selector.matchLabels: key must not be empty",
    ),
    (
        _pa(f"selector: {{matchLabels: {{app: {'a' * 64}}}}}"),
        f"{PA}: spec.selector.matchLabels[app]: must be at most 63 characters",
    ),
    (
        _pa("selector: {matchLabels: {app: 'two words'}}"),
        f"{PA}: spec.selector.matchLabels[app]: label value 'two words' is invalid: at most 63"
        " letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    ),
    (
        _pa("selector: {matchLabels: [app]}"),
        f"{PA}: spec.selector.matchLabels: must be a map, got list",
    ),
    (
        _pa("mtls: {mode: STRICT}", version="v1alpha1"),
        f"{PA}: apiVersion: security.istio.io/v1alpha1 has no PeerAuthentication;"
        " use security.istio.io/v1 or security.istio.io/v1beta1",
    ),
    (
        _pa("mtls: {mode: STRICT}", name="Default"),
        f"{FILE}:0: PeerAuthentication default/Default: metadata.name: 'Default' is not a valid"
        " name: use lower-case letters, digits, '-' and '.', starting and ending with a letter"
        " or digit",
    ),
]


@pytest.mark.parametrize(("text", "expected"), PA_REFUSED, ids=[c[1][30:90] for c in PA_REFUSED])
def test_peer_authentication_refused(text: str, expected: str) -> None:
    assert _errors(text) == [expected]


# ---------------------------------------------------------------------------
# Legacy MeshPolicy / Policy: what peers mean


@pytest.mark.parametrize(
    ("spec", "mode"),
    [
        ("peers:\n- mtls: {}\n", "STRICT"),
        ("peers:\n- mtls:\n", "STRICT"),
        ("peers:\n- mtls: null\n", "STRICT"),
        ("peers:\n- mtls: {mode: STRICT}\n", "STRICT"),
        ("peers:\n- mtls: {mode: null}\n", "STRICT"),
        ("peers:\n- mtls: {mode: PERMISSIVE}\n", "PERMISSIVE"),
        ("peers:\n- mtls: {}\npeerIsOptional: true\n", "PERMISSIVE"),
        ("peers:\n- mtls: {}\npeerIsOptional: false\n", "STRICT"),
        ("peers:\n- mtls: {mode: PERMISSIVE}\n- mtls: {mode: STRICT}\n", "PERMISSIVE"),
        ("peers: []\n", "DISABLE"),
        ("peers:\n", "DISABLE"),
        ("peerIsOptional: true\n", "DISABLE"),
        ("", "DISABLE"),
    ],
)
@pytest.mark.parametrize("kind", ["MeshPolicy", "Policy"])
def test_legacy_peers_mean_a_mode(kind: str, spec: str, mode: str) -> None:
    obj, _ = _one(_legacy(kind, "default", spec))
    assert isinstance(obj, LegacyAuthenticationPolicy)
    assert (obj.kind, obj.mode, obj.targets, bool(obj.origins)) == (kind, mode, (), False)


def test_mesh_policy_is_cluster_scoped() -> None:
    text = (
        "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\n"
        "metadata: {name: default, namespace: ignored}\nspec: {peers: [{mtls: {}}]}\n"
    )
    obj, result = _one(text)
    assert obj.meta.namespace == ""
    assert str(result.resources[0].key) == "MeshPolicy default"


def test_legacy_without_spec_is_plaintext() -> None:
    text = (
        "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\n"
        "metadata: {name: default}\n"
    )
    obj, _ = _one(text)
    assert obj.mode == "DISABLE"


def test_legacy_targets_with_ports_by_number_and_name() -> None:
    obj, _ = _one(
        _legacy(
            "Policy",
            "reviews-mtls",
            """\
            targets:
            - name: reviews
              ports: [{number: 9080}, {name: grpc}]
            - name: ratings
            peers: [{mtls: {mode: PERMISSIVE}}]
            """,
        )
    )
    assert obj == LegacyAuthenticationPolicy(
        meta=obj.meta,
        kind="Policy",
        mode="PERMISSIVE",
        targets=(LegacyTarget("reviews", (9080, "grpc")), LegacyTarget("ratings")),
    )
    assert obj.meta.namespace == "tutorial"


# ---------------------------------------------------------------------------
# Legacy: refused

MP = f"{FILE}:0: MeshPolicy default"
POL = f"{FILE}:0: Policy tutorial/svc-mtls"
TARGET = "targets:\n- name: preference\n"

LEGACY_REFUSED: list[tuple[str, str]] = [
    (
        _legacy("MeshPolicy", "mesh", "peers: [{mtls: {}}]"),
        f"{FILE}:0: MeshPolicy mesh: metadata.name: a MeshPolicy must be named 'default'"
        " (Istio reads no other), got 'mesh'",
    ),
    (
        _legacy("MeshPolicy", "default", TARGET),
        f"{MP}: spec.targets: a MeshPolicy covers the whole mesh and cannot have targets;"
        " put them in a Policy in the Services' namespace",
    ),
    (
        _legacy("Policy", "svc-mtls", "peers: [{mtls: {}}]"),
        f"{POL}: metadata.name: a Policy without targets covers its whole namespace and must be"
        " named 'default', got 'svc-mtls'; add targets or rename it",
    ),
    (
        _legacy("Policy", "default", TARGET),
        f"{FILE}:0: Policy tutorial/default: spec.targets: the Policy named 'default' is the"
        " namespace-wide one and cannot have targets; move them to a Policy with another name",
    ),
    (
        _legacy("Policy", "svc-mtls", "target:\n- name: preference\n"),
        f"{POL}: spec.target: unknown field; did you mean targets?",
    ),
    (
        _legacy("Policy", "svc-mtls", TARGET + "principaBinding: USE_ORIGIN\n"),
        f"{POL}: spec.principaBinding: unknown field; did you mean principalBinding?",
    ),
    (
        _legacy("MeshPolicy", "default", "peer:\n- mtls: {}\n"),
        f"{MP}: spec.peer: unknown field; did you mean peers?",
    ),
    (
        _legacy("MeshPolicy", "default", "mtls: {mode: STRICT}\n"),
        f"{MP}: spec.mtls: unknown field; expected one of targets, peers, peerIsOptional,"
        " origins, originIsOptional, principalBinding",
    ),
    (
        _legacy("MeshPolicy", "default", "peers:\n- mtls: {mod: STRICT}\n"),
        f"{MP}: spec.peers[0].mtls.mod: unknown field; did you mean mode?",
    ),
    (
        _legacy("MeshPolicy", "default", "peers:\n- mtls: {mode: DISABLE}\n"),
        f"{MP}: spec.peers[0].mtls.mode: must be one of STRICT, PERMISSIVE; got 'DISABLE'",
    ),
    (
        _legacy("MeshPolicy", "default", "peers:\n- mtls: {}\n  jwt: {issuer: a}\n"),
        f"{MP}: spec.peers[0]: only one of mtls, jwt may be set",
    ),
    (
        _legacy("MeshPolicy", "default", "peers: STRICT\n"),
        f"{MP}: spec.peers: must be a list, got string",
    ),
    (
        _legacy("MeshPolicy", "default", "peers:\n-\n"),
        f"{MP}: spec.peers[0]: must be an object, got null",
    ),
    (
        _legacy("MeshPolicy", "default", "peers: [{mtls: {}}]\npeerIsOptional: 'yes'\n"),
        f"{MP}: spec.peerIsOptional: must be true or false, got string",
    ),
    (
        _legacy("MeshPolicy", "default", "peers: [{mtls: {allowTls: 1}}]\n"),
        f"{MP}: spec.peers[0].mtls.allowTls: must be true or false, got integer",
    ),
    (
        _legacy("MeshPolicy", "default", "principalBinding: USE_BOTH\n"),
        f"{MP}: spec.principalBinding: must be one of USE_PEER, USE_ORIGIN; got 'USE_BOTH'",
    ),
    (
        "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\n"
        "metadata: {name: default}\nspec: [peers]\n",
        f"{MP}: spec: must be an object, got list",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- name: preference\n  ports: [{number: 70000}]\n"),
        f"{POL}: spec.targets[0].ports[0].number: must be between 1 and 65535, got 70000",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- name: preference\n  ports: [{number: 0}]\n"),
        f"{POL}: spec.targets[0].ports[0].number: must be between 1 and 65535, got 0",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- name: preference\n  ports: [{}]\n"),
        f"{POL}: spec.targets[0].ports[0]: needs a Service port number or name",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- name: p\n  ports: [{number: 80, name: http}]\n"),
        f"{POL}: spec.targets[0].ports[0]: only one of number, name may be set",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- name: p\n  ports: [{number: '80'}]\n"),
        f"{POL}: spec.targets[0].ports[0].number: must be an integer, got string",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- name: p\n  ports: [{name: Http_Port}]\n"),
        f"{POL}: spec.targets[0].ports[0].name: must be a Service port name: 'Http_Port' is"
        " not a valid DNS label: use lower-case letters, digits and '-', starting and ending"
        " with a letter or digit",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- ports: [{number: 80}]\n"),
        f"{POL}: spec.targets[0].name: required",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- name: ''\n"),
        f"{POL}: spec.targets[0].name: required",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- name: reviews.default.svc.cluster.local\n"),
        f"{POL}: spec.targets[0].name: must be a Service name:"
        " 'reviews.default.svc.cluster.local' is not a valid DNS label: use lower-case"
        " letters, digits and '-', starting and ending with a letter or digit",
    ),
    (
        _legacy("Policy", "svc-mtls", "targets:\n- name: p\n  port: [{number: 80}]\n"),
        f"{POL}: spec.targets[0].port: unknown field; did you mean ports?",
    ),
    (
        _legacy("MeshPolicy", "default", "origins:\n- jwt: {audiences: [a]}\n"),
        f"{MP}: spec.origins[0].jwt.issuer: required",
    ),
    (
        _legacy("MeshPolicy", "default", "origins:\n- {}\n"),
        f"{MP}: spec.origins[0].jwt: required",
    ),
    (
        _legacy(
            "MeshPolicy",
            "default",
            "origins:\n- jwt: {issuer: https://a}\n- jwt: {issuer: https://a}\n",
        ),
        f"{MP}: spec.origins[1].jwt.issuer: issuer 'https://a' is already used by another jwt"
        " of this policy",
    ),
    (
        _legacy("MeshPolicy", "default", "peers:\n- jwt: {issuer: a}\n- mtls: {}\n"),
        f"{MP}: spec.peers[0].jwt: peer JWT authentication is not supported: Istio never"
        " implemented it and the modern API has no equivalent. Move the jwt to origins to"
        " authenticate end users, or remove it (use `mtls: {}` for peers)",
    ),
    (
        _legacy(
            "MeshPolicy",
            "default",
            "origins:\n- jwt:\n    issuer: a\n    triggerRules:\n"
            "    - excludedPaths: [{exact: /health}]\n",
        ),
        f"{MP}: spec.origins[0].jwt.triggerRules: triggerRules cannot be translated"
        " faithfully: RequestAuthentication checks a token on every path, so a request"
        " carrying an invalid token on an excluded path would be refused (401) where Istio"
        " 1.x let it through. Remove triggerRules, and write the modern form instead: a"
        " RequestAuthentication with this jwt, plus an AuthorizationPolicy (ALLOW) with one"
        ' rule requiring from.source.requestPrincipals ["*"] and one rule whose'
        " to.operation.paths lists the paths that need no token (notPaths for includedPaths)",
    ),
    (
        _legacy("MeshPolicy", "default", "origins:\n- jwt: {issuer: a, jwksUri: 'ftp://k/c'}\n"),
        f"{MP}: spec.origins[0].jwt.jwksUri: 'ftp://k/c' must be an http:// or https:// URL"
        " with a host",
    ),
    (
        _legacy("MeshPolicy", "default", "origins:\n- jwt: {issuer: a, jwksUri: 'https://k:x'}\n"),
        f"{MP}: spec.origins[0].jwt.jwksUri: 'https://k:x' must be an http:// or https:// URL"
        " with a host",
    ),
    (
        _legacy("MeshPolicy", "default", "origins:\n- jwt: {issuer: a, audiences: ['']}\n"),
        f"{MP}: spec.origins[0].jwt.audiences[0]: must not be empty",
    ),
    (
        _legacy("MeshPolicy", "default", "origins:\n- jwt: {issuer: a, jwtHeaders: ['']}\n"),
        f"{MP}: spec.origins[0].jwt.jwtHeaders[0]: must not be empty",
    ),
    (
        _legacy(
            "MeshPolicy",
            "default",
            "origins:\n- jwt:\n    issuer: a\n    triggerRules:\n"
            "    - excludedPaths: [{exact: /a, prefix: /b}]\n",
        ),
        f"{MP}: spec.origins[0].jwt.triggerRules[0].excludedPaths[0]: only one of exact,"
        " prefix, suffix, regex may be set",
    ),
    (
        _legacy("MeshPolicy", "default", "origins:\n- jwt: {issuer: a, jwks_uri: 'https://k'}\n"),
        f"{MP}: spec.origins[0].jwt.jwks_uri: unknown field; did you mean jwksUri?",
    ),
    (
        "apiVersion: authentication.istio.io/v1beta1\nkind: Policy\n"
        "metadata: {name: default, namespace: tutorial}\n",
        f"{FILE}:0: Policy tutorial/default: apiVersion: authentication.istio.io/v1beta1 has no"
        " Policy; use authentication.istio.io/v1alpha1",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), LEGACY_REFUSED, ids=[c[1][20:80] for c in LEGACY_REFUSED]
)
def test_legacy_refused(text: str, expected: str) -> None:
    assert _errors(text) == [expected]


def test_tables_are_large_enough() -> None:
    assert len(PA_REFUSED) >= 20 and len(LEGACY_REFUSED) >= 30


# ---------------------------------------------------------------------------
# Legacy: warnings


def _warnings(text: str) -> list[str]:
    _, result = _one(text)
    return [str(w) for w in result.warnings]


def test_every_legacy_policy_warns_about_its_replacement() -> None:
    assert _warnings(_legacy("MeshPolicy", "default", "peers: [{mtls: {}}]")) == [
        f"{MP}: " + DEPRECATED.format(kind="MeshPolicy")
    ]
    assert _warnings(_legacy("Policy", "default", "")) == [
        f"{FILE}:0: Policy tutorial/default: " + DEPRECATED.format(kind="Policy")
    ]


def test_origins_are_enforced_and_use_origin_warns() -> None:
    # Origins become a RequestAuthentication and an AuthorizationPolicy: no
    # "not enforced" warning any more (triggerRules are refused, see above).
    text = _legacy(
        "Policy",
        "svc-mtls",
        """\
        targets: [{name: preference}]
        peers: [{mtls: {}}]
        origins:
        - jwt:
            issuer: https://keycloak.tutorial:8080/auth/realms/istio
            audiences: [preference]
            jwksUri: https://keycloak.tutorial:8080/auth/realms/istio/protocol/openid-connect/certs
            jwtHeaders: [x-jwt]
            jwtParams: [token]
        originIsOptional: false
        principalBinding: USE_ORIGIN
        """,
    )
    obj, _ = _one(text)
    assert obj.origins and obj.mode == "STRICT"
    assert _warnings(text) == [
        f"{POL}: " + DEPRECATED.format(kind="Policy"),
        f"{POL}: spec.principalBinding: USE_ORIGIN has no modern counterpart: an"
        " AuthorizationPolicy names end users with requestPrincipals (<iss>/<sub> of the token)"
        " and calling workloads with principals; rewrite rules that relied on the origin being"
        " the principal",
    ]


def test_use_peer_gives_no_extra_warning() -> None:
    assert len(_warnings(_legacy("MeshPolicy", "default", "principalBinding: USE_PEER"))) == 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "peers: [{mtls: {allowTls: true}}]",
            "spec.peers[0].mtls.allowTls: ignored: PeerAuthentication has no mode that accepts"
            " TLS without a client certificate; this policy's mode is STRICT",
        ),
        (
            "peers: [{}]",
            "spec.peers[0]: an empty peer method is ignored; write `mtls: {}` to require"
            " mutual TLS",
        ),
        (
            "peers: [{mtls: {mode: PERMISSIVE}}, {mtls: {}}]",
            "spec.peers[1].mtls: ignored: only the first mtls entry of peers counts",
        ),
    ],
)
def test_ignored_peer_parts_warn(spec: str, expected: str) -> None:
    warnings = _warnings(_legacy("MeshPolicy", "default", spec))
    assert warnings[1:] == [f"{MP}: {expected}"]


def test_allow_tls_false_is_the_default_and_silent() -> None:
    assert (
        len(_warnings(_legacy("MeshPolicy", "default", "peers: [{mtls: {allowTls: false}}]"))) == 1
    )


def test_target_labels_warn() -> None:
    warnings = _warnings(
        _legacy("Policy", "svc-mtls", "targets: [{name: preference, labels: {app: p}}]")
    )
    assert warnings[1:] == [
        f"{POL}: spec.targets[0].labels: ignored: Istio never implemented target labels; the"
        " Service named in name chooses the workloads"
    ]


def test_refused_documents_carry_no_warnings() -> None:
    result = parse_text(_legacy("MeshPolicy", "mesh", "origins: [{jwt: {issuer: a}}]"), FILE)
    assert result.errors and result.warnings == ()


# ---------------------------------------------------------------------------
# The seed: a tutorial written for Istio 1.0 (read from the seed file itself)


def _seed_blocks() -> list[str]:
    """The ``~~~`` fenced YAML blocks of the seed, in order."""
    parts = re.split(r"^~~~[ \t]*$", SEED.read_text(encoding="utf-8"), flags=re.M)
    return [p.strip("\n") + "\n" for p in parts[1::2]]


def _seed_block(marker: str) -> str:
    (block,) = [b for b in _seed_blocks() if marker in b]
    return block


@needs_seed
def test_seed_mesh_policy_loads_as_strict() -> None:
    block = _seed_block('kind: "MeshPolicy"')
    obj, result = _one(block)
    assert obj == LegacyAuthenticationPolicy(
        meta=obj.meta, kind="MeshPolicy", mode="STRICT", targets=()
    )
    assert obj.meta.name == "default" and obj.meta.namespace == ""
    assert [str(w) for w in result.warnings] == [f"{MP}: " + DEPRECATED.format(kind="MeshPolicy")]


@needs_seed
def test_seed_namespace_policy_loads_as_strict_in_tutorial() -> None:
    obj, result = _one(_seed_block('kind: "Policy"'))
    assert (obj.kind, obj.mode, obj.targets) == ("Policy", "STRICT", ())
    assert (obj.meta.namespace, obj.meta.name) == ("tutorial", "default")
    assert len(result.warnings) == 1


def _seed_policy(fragment: str, name: str = "preference-mtls") -> str:
    head = (
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\n"
        f"metadata: {{name: {name}, namespace: tutorial}}\n"
    )
    return head + fragment


@needs_seed
def test_seed_target_fragment_misspells_targets() -> None:
    # The tutorial writes `target:`; Istio's field is `targets`. Pruning it
    # would silently widen the policy to the whole namespace.
    fragment = _seed_block("target:")
    assert _errors(_seed_policy(fragment)) == [
        f"{FILE}:0: Policy tutorial/preference-mtls: spec.target: unknown field;"
        " did you mean targets?"
    ]


@needs_seed
def test_seed_target_fragment_with_the_field_fixed() -> None:
    fragment = _seed_block("target:").replace("target:", "targets:")
    peers = yaml.safe_load(_seed_block('kind: "Policy"'))["spec"]["peers"]
    text = _seed_policy(fragment + textwrap.indent(yaml.safe_dump({"peers": peers}), "  "))
    obj, result = _one(text)
    assert obj.targets == (LegacyTarget("preference", (9000,)),)
    assert obj.mode == "STRICT"
    assert len(result.warnings) == 1
    # Without peers the same targets mean "no mTLS for preference:9000".
    obj, _ = _one(_seed_policy(fragment))
    assert obj.mode == "DISABLE"


@needs_seed
def test_seed_origins_fragment_misspells_principal_binding() -> None:
    fragment = _seed_block("origins:")
    assert _errors(_seed_policy(fragment, "default")) == [
        f"{FILE}:0: Policy tutorial/default: spec.principaBinding: unknown field;"
        " did you mean principalBinding?"
    ]
    fixed = fragment.replace("principaBinding", "principalBinding")
    obj, result = _one(_seed_policy(fixed, "default"))
    assert obj.origins
    assert [w.path for w in result.warnings] == ["", "spec.principalBinding"]


# ---------------------------------------------------------------------------
# Warnings travel through LoadResult


def test_warning_str_and_load_result_addition() -> None:
    warning = ConfigWarning(Source("a.yaml", 1), "MeshPolicy default", "spec.origins", "x")
    assert str(warning) == "a.yaml:1: MeshPolicy default: spec.origins: x"
    whole = ConfigWarning(Source("a.yaml", 1), "MeshPolicy default", "", "y")
    assert str(whole) == "a.yaml:1: MeshPolicy default: y"
    total = LoadResult(warnings=(warning,)) + LoadResult(warnings=(whole,))
    assert total.warnings == (warning, whole) and total.ok


def test_warnings_keep_document_indexes_across_a_file() -> None:
    text = (
        _pa("mtls: {mode: STRICT}")
        + "---\n"
        + _legacy("MeshPolicy", "default", "peers: [{mtls: {}}]")
        + "---\n"
        + _pa("selector: {}", name="pb")
    )
    result = parse_text(text, FILE)
    assert len(result.resources) == 3
    assert [(w.source.doc, w.resource) for w in result.warnings] == [
        (1, "MeshPolicy default"),
        (2, "PeerAuthentication default/pb"),
    ]


def test_no_crash_on_mutated_security_documents() -> None:
    base = [
        d
        for d in yaml.safe_load_all(
            _pa(
                "selector: {matchLabels: {app: a}}\nmtls: {mode: STRICT}\n"
                "portLevelMtls: {8080: {mode: DISABLE}}\n"
            )
            + "---\n"
            + _legacy(
                "Policy",
                "p",
                "targets: [{name: a, ports: [{number: 80}, {name: http}], labels: {a: b}}]\n"
                "peers: [{mtls: {mode: PERMISSIVE, allowTls: true}}, {jwt: {issuer: i}}]\n"
                "peerIsOptional: true\n"
                "origins: [{jwt: {issuer: j, audiences: [a], jwksUri: 'https://k/c',"
                " triggerRules: [{excludedPaths: [{exact: /h}]}]}}]\n"
                "principalBinding: USE_ORIGIN\n",
            )
        )
        if isinstance(d, dict)
    ]
    junk: list[object] = [None, 0, -1, 70000, "", "*", "A_B", [], {}, [None], {"a": 1}, True]
    rnd = random.Random(11)

    def paths(o: object, p: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        out = [p]
        if isinstance(o, dict):
            for k, v in o.items():
                out += paths(v, (*p, k))
        elif isinstance(o, list):
            for i, v in enumerate(o):
                out += paths(v, (*p, i))
        return out

    for _ in range(2000):
        doc = copy.deepcopy(rnd.choice(base))
        where = rnd.choice(paths(doc)[1:])
        target: Any = doc
        for step in where[:-1]:
            target = target[step]
        target[where[-1]] = copy.deepcopy(rnd.choice(junk))
        parse_document(doc, Source("fuzz.yaml", 0))
