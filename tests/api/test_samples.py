"""Real Istio sample files: accepted, and our schema verdict equals the CRD's."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mizzen.api import load_paths
from mizzen.api.parse import (
    ISTIO_KINDS,
    ISTIO_NETWORKING,
    ISTIO_SECURITY,
    LEGACY_AUTHN,
    SECURITY_KINDS,
    SUPPORTED,
)
from mizzen.api.resources import Source
from mizzen.api.validate_crd import check_spec

# Istio's reference data lives beside the checkout (../shared), never in it.
SHARED = Path(os.environ.get("MIZZEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
SAMPLES = SHARED / "istio-samples"
ANALYZER = SAMPLES / "analyzer-inputs"
CRDS = SHARED / "istio-api" / "customresourcedefinitions.gen.yaml"

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared Istio samples not present")


def _sample_files() -> list[Path]:
    return sorted(
        p for p in SAMPLES.rglob("*") if p.suffix in (".yaml", ".yml") and ANALYZER not in p.parents
    )


def _supported(doc: Any) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("apiVersion"), str):
        return False
    group, _, version = doc["apiVersion"].rpartition("/")
    return version in SUPPORTED.get(group, {}).get(str(doc.get("kind")), ())


@pytest.mark.parametrize("path", _sample_files(), ids=lambda p: str(p.relative_to(SAMPLES)))
def test_sample_file_is_accepted(path: Path) -> None:
    result = load_paths([path])
    assert [str(e) for e in result.errors] == []
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(result.resources) == sum(1 for d in docs if _supported(d))


def test_samples_folder_loads_many_kinds() -> None:
    result = load_paths([SAMPLES / "bookinfo"])
    kinds = {r.gvk.kind for r in result.resources}
    assert {"Service", "Deployment", "ServiceAccount", "VirtualService", "Gateway"} <= kinds
    assert {"DestinationRule", "ServiceEntry"} <= kinds


# ---------------------------------------------------------------------------
# (b) analyzer inputs: our schema layer against the CRD's openAPIV3Schema.


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for crd in yaml.load_all(CRDS.read_text(), Loader=yaml.CSafeLoader):
        if not crd:
            continue
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            out[(kind, version["name"])] = version["schema"]["openAPIV3Schema"]
    return out


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _analyzer_istio_docs() -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    for path in sorted(ANALYZER.glob("*.yaml")):
        for n, doc in enumerate(yaml.safe_load_all(path.read_text())):
            items = (
                doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
            )
            for item in items or []:
                if isinstance(item, dict) and _has_crd_schema(item):
                    found.append((path.name, n, item))
    return found


def _has_crd_schema(doc: dict[str, Any]) -> bool:
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    kind = doc.get("kind")
    return (group == ISTIO_NETWORKING and kind in ISTIO_KINDS) or (
        group == ISTIO_SECURITY and kind in SECURITY_KINDS
    )


# Documents a CEL rule (x-kubernetes-validations) rejects; jsonschema cannot
# evaluate CEL, so these are the hand-checked verdicts, one rule each.
CEL_REJECTS = {
    # ServiceEntry spec.hosts[]: rule `self != "*"` ("hostname cannot be wildcard")
    ("virtualservice_destinationhosts.yaml", "service-entry-ignore"),
}
# Rejected by the API server's own metadata.name rule (a lower-case RFC 1123
# subdomain), which no CRD schema states.
NAME_REJECTS = {
    ("condition-analyzer.yaml", "negative-condition-svcEntry"),
    ("gateway-secrets.yaml", "defaultgateway-bogusCredentialName"),
}


def test_cel_expectations_cover_real_documents() -> None:
    names = {(f, d["metadata"]["name"]) for f, _, d in _analyzer_istio_docs()}
    assert names >= CEL_REJECTS | NAME_REJECTS


@pytest.mark.parametrize(
    ("file", "doc_index", "doc"),
    _analyzer_istio_docs(),
    ids=lambda v: str(v) if not isinstance(v, dict) else v["metadata"]["name"],
)
def test_schema_verdict_matches_crd(file: str, doc_index: int, doc: dict[str, Any]) -> None:
    version = doc["apiVersion"].rpartition("/")[2]
    schema = copy.deepcopy(_crd_schemas()[(doc["kind"], version)])
    # The whole object against the version's openAPIV3Schema (metadata is
    # checked by the API server itself, not by the CRD).
    body = {"spec": _drop_nulls(doc["spec"])} if doc.get("spec") is not None else {}
    crd_valid = jsonschema.Draft4Validator(schema).is_valid(body)
    name = doc["metadata"]["name"]
    if (file, name) in CEL_REJECTS:
        crd_valid = False
    problems: list[tuple[str, str]] = []
    check_spec(doc["kind"], body.get("spec"), problems)
    assert (not problems) == crd_valid, problems

    # The full pipeline adds the name rule and istiod's checks on top.
    result = load_paths([ANALYZER / file])
    errors = [
        e
        for e in result.errors
        if e.source == Source(str(ANALYZER / file), doc_index) and f"/{name}:" in str(e)
    ]
    if (file, name) in NAME_REJECTS or not crd_valid:
        assert errors
    elif (file, name) not in SEMANTIC_REJECTS:
        assert [str(e) for e in errors] == []
    else:
        assert [e.message for e in errors if SEMANTIC_REJECTS[(file, name)] in e.message]


# Schema-valid documents that istiod's validation refuses, with the reason.
SEMANTIC_REJECTS = {
    ("authorizationpolicies.yaml", "istio"): "needs endpoints with DNS resolution",
    ("deprecation.yaml", "productpage"): "needs one of route, redirect",
    ("gateway-no-workload.yaml", "httpbin-gateway"): "at least one server is required",
    ("gateway-secrets.yaml", "defaultgateway-nocredential"): "required for SIMPLE mode",
    ("virtualservice_gateways.yaml", "httpbin-gateway"): "at least one server is required",
    ("virtualservice_gateways.yaml", "crossnamespace-gw"): "at least one server is required",
    ("virtualservice_gateways.yaml", "httpbin"): "needs at least one of http, tcp or tls",
    ("virtualservice_gateways.yaml", "httpbin-bogus"): "needs at least one of http, tcp or tls",
    ("virtualservice_gateways.yaml", "httpbin-mesh"): "not allowed for the mesh gateway",
    ("virtualservice_gateways.yaml", "cross-test"): "needs at least one of http, tcp or tls",
}


def test_crd_schema_agrees_on_hand_written_invalid_specs() -> None:
    """Spot checks that our schema layer and jsonschema reject the same shapes."""
    schemas = _crd_schemas()
    cases = [
        ("VirtualService", {"http": [{"route": [{"destination": {}}]}]}),
        ("VirtualService", {"http": [{"match": [{"uri": {"exact": "/", "prefix": "/"}}]}]}),
        ("DestinationRule", {"subsets": [{"name": "v1"}]}),
        ("DestinationRule", {"host": "a", "trafficPolicy": {"tls": {"mode": "BOGUS"}}}),
        ("Gateway", {"servers": [{"hosts": ["*"], "port": {"number": 80, "name": "h"}}]}),
        ("ServiceEntry", {"hosts": []}),
        ("ServiceEntry", {"hosts": ["a"], "ports": [{"number": 80}]}),
        ("VirtualService", {"hosts": "a"}),
    ]
    for kind, spec in cases:
        assert not jsonschema.Draft4Validator(schemas[(kind, "v1")]["properties"]["spec"]).is_valid(
            spec
        ), (kind, spec)
        problems: list[tuple[str, str]] = []
        check_spec(kind, spec, problems)
        assert problems, (kind, spec)


# ---------------------------------------------------------------------------
# (c) peer authentication: every sample that mentions it, and the CRD's verdict
# on hand-written PeerAuthentication specs.


def _yaml_docs(path: Path) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []


def _peer_authentication_mentions() -> list[tuple[Path, int, dict[str, Any]]]:
    found = []
    for path in sorted(SAMPLES.rglob("*.yaml")):
        if "peerauthentication" not in path.read_text().lower():
            continue
        for n, doc in enumerate(_yaml_docs(path)):
            found.append((path, n, doc))
    return found


def test_peer_authentication_samples_load_as_istio_would() -> None:
    """The corpus holds no PeerAuthentication object today, only the CRD that
    defines it (an analyzer input), which is a kind Mizzen skips. Any
    PeerAuthentication added later is held to the CRD's verdict."""
    mentions = _peer_authentication_mentions()
    assert mentions, "expected at least the PeerAuthentication CRD among the samples"
    schemas = _crd_schemas()
    for path, n, doc in mentions:
        result = load_paths([path])
        ours = [e for e in result.errors if e.source.doc == n]
        if doc.get("kind") == "CustomResourceDefinition":
            assert ours == []
            assert [s.name for s in result.skipped if s.source.doc == n] == [
                doc["metadata"]["name"]
            ]
            continue
        if doc.get("kind") != "PeerAuthentication":
            continue
        version = doc["apiVersion"].rpartition("/")[2]
        body = {"spec": _drop_nulls(doc["spec"])} if doc.get("spec") is not None else {}
        crd_valid = jsonschema.Draft4Validator(schemas[("PeerAuthentication", version)]).is_valid(
            body
        )
        assert (not ours) == crd_valid, [str(e) for e in ours]


def test_legacy_authentication_kinds_are_supported() -> None:
    assert SUPPORTED[ISTIO_SECURITY]["PeerAuthentication"] == ("v1", "v1beta1")
    assert set(SUPPORTED[LEGACY_AUTHN]) == {"MeshPolicy", "Policy"}


# (spec, verdict of the openAPIV3Schema, verdict of the CEL rules). jsonschema
# cannot run CEL, so those verdicts are stated by hand, one rule each.
PEER_AUTHENTICATION_SPECS: list[tuple[dict[str, Any], bool, bool]] = [
    ({}, True, True),
    ({"mtls": {"mode": "STRICT"}}, True, True),
    ({"mtls": {"mode": "UNSET"}, "selector": {}}, True, True),
    ({"mtls": {"mode": "BOGUS"}}, False, True),
    ({"mtls": "STRICT"}, False, True),
    ({"selector": {"matchLabels": ["a"]}}, False, True),
    ({"selector": {"matchLabels": {"app": "a" * 64}}}, False, True),
    ({"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {}}, False, True),
    (
        {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"8080": {"mode": "X"}}},
        False,
        True,
    ),
    (
        {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        True,
        True,
    ),
    ({"futureField": 1}, True, True),
    # CEL: portLevelMtls requires selector
    ({"portLevelMtls": {"8080": {"mode": "DISABLE"}}}, True, False),
    ({"selector": {}, "portLevelMtls": {"8080": {}}}, True, False),
    # CEL: port must be between 1-65535
    ({"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"0": {}}}, True, False),
    ({"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"65536": {}}}, True, False),
    # CEL: wildcard not allowed in label key / value match; key must not be empty
    ({"selector": {"matchLabels": {"a*": "b"}}}, True, False),
    ({"selector": {"matchLabels": {"a": "b*"}}}, True, False),
    ({"selector": {"matchLabels": {"": "b"}}}, True, False),
]


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
@pytest.mark.parametrize(("spec", "schema_ok", "cel_ok"), PEER_AUTHENTICATION_SPECS)
def test_peer_authentication_schema_matches_crd(
    version: str, spec: dict[str, Any], schema_ok: bool, cel_ok: bool
) -> None:
    schema = _crd_schemas()[("PeerAuthentication", version)]
    assert jsonschema.Draft4Validator(schema).is_valid({"spec": spec}) == schema_ok
    problems: list[tuple[str, str]] = []
    check_spec("PeerAuthentication", spec, problems)
    assert (not problems) == (schema_ok and cel_ok), problems
