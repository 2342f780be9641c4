"""The generated CRDs against Istio's own (``../shared/istio-api`` beside the
checkout, or ``$MIZZEN_SHARED/istio-api``).

For every kind Mizzen serves: same group, names, scope, versions with their
served/storage flags, status subresource and printer columns; and, for every
version, the same schema at every path of Mizzen's tree (field names, types,
formats, enums, required fields, bounds, "at most one of" groups). A new
difference fails with its path unless it is listed, with its reason, in
``INTENTIONAL``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mizzen.api.parse import SUPPORTED
from mizzen.kube.crds import CRD_SPECS, chart_crd_files, crds

SHARED = Path(os.environ.get("MIZZEN_SHARED") or Path(__file__).resolve().parents[3] / "shared")
ISTIO_CRDS = SHARED / "istio-api" / "customresourcedefinitions.gen.yaml"
CHART_CRDS = Path(__file__).resolve().parents[2] / "charts" / "mizzen" / "crds"

# Schema keywords compared node by node.
COMPARED = (
    "type",
    "format",
    "enum",
    "required",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "maxLength",
    "minProperties",
    "maxProperties",
    "oneOf",
    "allOf",
    "anyOf",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
)

# Keywords Istio's schemas carry and Mizzen's do not, everywhere, and why.
NOT_COMPARED = {
    "description": "documentation; Mizzen's tree holds none",
    "nullable": "Istio marks protobuf wrapper fields nullable; the tree treats null as absent,"
    " which is what the API server does for non-nullable fields (it prunes them)",
    "x-kubernetes-validations": "the tree holds CEL rules as Python callables, not CEL text;"
    " the validating webhook enforces them with Mizzen's messages",
    "x-kubernetes-list-type": "ServiceEntry ports: list-type map keyed by name; the tree"
    " checks unique names with a callable rule (the webhook refuses duplicates), so"
    " Mizzen's list is atomic under server-side apply",
    "x-kubernetes-list-map-keys": "goes with x-kubernetes-list-type",
    "minLength": "AuthorizationPolicy/RequestAuthentication targetRef names and kinds: the"
    " tree checks lengths with callable rules, enforced by the validating webhook",
    "pattern": "targetRef group/kind and outputClaimToHeaders header: callable rules in the"
    " tree, enforced by the validating webhook with Mizzen's messages",
}

# (kind, path, keyword) -> reason. Empty today: every compared keyword agrees
# at every path of every served version.
INTENTIONAL: dict[tuple[str, str, str], str] = {}


def _istio() -> dict[str, dict[str, Any]]:
    if not ISTIO_CRDS.exists():
        pytest.skip(f"Istio's CRDs are not at {ISTIO_CRDS} (set MIZZEN_SHARED)")
    docs = [d for d in yaml.safe_load_all(ISTIO_CRDS.read_text(encoding="utf-8")) if d]
    return {d["spec"]["names"]["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def istio() -> dict[str, dict[str, Any]]:
    return _istio()


def _ours() -> dict[str, dict[str, Any]]:
    return {d["spec"]["names"]["kind"]: d for d in crds()}


MODERN = [s.kind for s in CRD_SPECS if s.group != "authentication.istio.io"]


def schema_differences(ours: Any, theirs: Any, path: str) -> Iterator[tuple[str, str, Any, Any]]:
    """(path, keyword, ours, Istio's) wherever the two schemas disagree,
    walking the paths Mizzen's schema covers."""
    if not isinstance(theirs, dict):
        yield path, "node", "present", "absent"
        return
    for keyword in COMPARED:
        if ours.get(keyword) != theirs.get(keyword):
            yield path, keyword, ours.get(keyword), theirs.get(keyword)
    ours_props, their_props = ours.get("properties", {}), theirs.get("properties", {})
    for name in sorted(set(ours_props) - set(their_props)):
        yield f"{path}.{name}", "property", "present", "absent"
    for name in sorted(set(their_props) - set(ours_props)):
        yield f"{path}.{name}", "property", "absent", "present"
    for name in sorted(set(ours_props) & set(their_props)):
        yield from schema_differences(ours_props[name], their_props[name], f"{path}.{name}")
    if "additionalProperties" in ours or "additionalProperties" in theirs:
        yield from schema_differences(
            ours.get("additionalProperties", {}),
            theirs.get("additionalProperties"),
            f"{path}[*]",
        )
    if "items" in ours:
        yield from schema_differences(ours["items"], theirs.get("items"), f"{path}[]")


def _version(crd: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in crd["spec"]["versions"] if v["name"] == name)


@pytest.mark.parametrize("kind", MODERN)
def test_names_scope_and_group_are_istios(kind: str, istio: dict[str, Any]) -> None:
    ours, theirs = _ours()[kind], istio[kind]
    assert ours["metadata"]["name"] == theirs["metadata"]["name"]
    for key in ("group", "names", "scope"):
        assert ours["spec"][key] == theirs["spec"][key], key


@pytest.mark.parametrize("kind", MODERN)
def test_versions_served_storage_status_and_columns(kind: str, istio: dict[str, Any]) -> None:
    ours, theirs = _ours()[kind], istio[kind]

    def flags(crd: dict[str, Any]) -> set[tuple[str, bool, bool]]:
        return {(v["name"], v["served"], v["storage"]) for v in crd["spec"]["versions"]}

    # Istio's file serves exactly the versions Mizzen parses.
    assert flags(ours) == flags(theirs)
    for version in ours["spec"]["versions"]:
        their_version = _version(theirs, version["name"])
        assert version.get("subresources") == their_version.get("subresources")
        # Column descriptions are prose; name, type and path are the contract.
        columns = [
            (c["name"], c["type"], c["jsonPath"])
            for c in version.get("additionalPrinterColumns", [])
        ]
        their_columns = [
            (c["name"], c["type"], c["jsonPath"])
            for c in their_version.get("additionalPrinterColumns", [])
        ]
        assert columns == their_columns


@pytest.mark.parametrize("kind", MODERN)
def test_schema_matches_istios_at_every_path(kind: str, istio: dict[str, Any]) -> None:
    ours, theirs = _ours()[kind], istio[kind]
    found: dict[tuple[str, str, str], tuple[Any, Any]] = {}
    for version in ours["spec"]["versions"]:
        mine = version["schema"]["openAPIV3Schema"]
        other = _version(theirs, version["name"])["schema"]["openAPIV3Schema"]
        # status is open in Mizzen's CRDs; only the control plane writes it.
        for path, keyword, a, b in schema_differences(
            {**mine, "properties": {"spec": mine["properties"]["spec"]}},
            {**other, "properties": {"spec": other["properties"]["spec"]}},
            version["name"],
        ):
            found[(kind, path.split(".", 1)[1] if "." in path else "", keyword)] = (a, b)
    new = {k: v for k, v in found.items() if k not in INTENTIONAL}
    assert not new, "differences from Istio's CRD (mizzen, istio):\n" + "\n".join(
        f"  {path or '<root>'}: {keyword}: {a!r} != {b!r}"
        for (_, path, keyword), (a, b) in new.items()
    )
    stale = {k for k in INTENTIONAL if k[0] == kind and k not in found}
    assert not stale, f"INTENTIONAL lists differences that no longer exist: {stale}"


def test_istio_keywords_not_compared_are_the_listed_ones(istio: dict[str, Any]) -> None:
    # A keyword Istio starts using must be compared or listed with a reason.
    seen: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            seen.update(node)
            for sub in node.get("properties", {}).values():
                walk(sub)
            for key in ("items", "additionalProperties"):
                walk(node.get(key))

    for kind in MODERN:
        for version in istio[kind]["spec"]["versions"]:
            walk(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    structural = {"properties", "items", "additionalProperties", "not"}
    assert seen - structural - set(COMPARED) - set(NOT_COMPARED) == set()


def test_status_is_an_open_object() -> None:
    for kind in MODERN:
        for version in _ours()[kind]["spec"]["versions"]:
            status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
            assert status == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_every_supported_crd_kind_has_a_crd() -> None:
    expected = {
        (group, kind)
        for group, kinds in SUPPORTED.items()
        if group.endswith(".istio.io")
        for kind in kinds
    }
    assert {(s.group, s.kind) for s in CRD_SPECS} == expected
    for spec in CRD_SPECS:
        assert (
            tuple(v["name"] for v in _ours()[spec.kind]["spec"]["versions"])
            == (SUPPORTED[spec.group][spec.kind])
        )


def test_legacy_kinds_restate_istio_1_4() -> None:
    ours = _ours()
    mesh, policy = ours["MeshPolicy"]["spec"], ours["Policy"]["spec"]
    assert mesh["group"] == policy["group"] == "authentication.istio.io"
    assert mesh["scope"] == "Cluster" and policy["scope"] == "Namespaced"
    assert mesh["names"] == {
        "kind": "MeshPolicy",
        "listKind": "MeshPolicyList",
        "plural": "meshpolicies",
        "singular": "meshpolicy",
        "categories": ["istio-io", "authentication-istio-io"],
    }
    assert policy["names"]["plural"] == "policies"
    assert policy["names"]["singular"] == "policy"
    for spec in (mesh, policy):
        [version] = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        # Istio 1.4 had no status subresource for these.
        assert "subresources" not in version
        root = version["schema"]["openAPIV3Schema"]
        # Unknown fields reach the webhook, which names the misspelling.
        assert root["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"] is True
        targets = root["properties"]["spec"]["properties"]["targets"]["items"]
        assert targets["x-kubernetes-preserve-unknown-fields"] is True
        assert targets["required"] == ["name"]


# ---------------------------------------------------------------------------
# Structural schema rules (what a v1 CRD must satisfy to be accepted)

_JUNCTORS = ("oneOf", "anyOf", "allOf", "not")
# Inside a junctor only value validations may appear.
_FORBIDDEN_IN_JUNCTOR = {
    "type",
    "description",
    "default",
    "additionalProperties",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
}


def structural_problems(node: dict[str, Any], path: str) -> Iterator[str]:
    if "type" not in node and not (
        node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    ):
        yield f"{path}: no type"
    if "properties" in node and "additionalProperties" in node:
        yield f"{path}: properties together with additionalProperties"
    if node.get("type") == "array" and "items" not in node:
        yield f"{path}: array without items"
    for name, sub in node.get("properties", {}).items():
        yield from structural_problems(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from structural_problems(node["additionalProperties"], f"{path}[*]")
    if "items" in node:
        yield from structural_problems(node["items"], f"{path}[]")
    for junctor in _JUNCTORS:
        if junctor in node:
            yield from _junctor_problems(node[junctor], node, f"{path}.{junctor}")


def _junctor_problems(value: Any, owner: dict[str, Any], path: str) -> Iterator[str]:
    for part in value if isinstance(value, list) else [value]:
        bad = _FORBIDDEN_IN_JUNCTOR & set(part)
        if bad:
            yield f"{path}: {sorted(bad)} inside a junctor"
        for name in part.get("required", []):
            if name not in owner.get("properties", {}):
                yield f"{path}: requires {name}, which the object does not declare"
        for junctor in _JUNCTORS:
            if junctor in part:
                yield from _junctor_problems(part[junctor], owner, f"{path}.{junctor}")


@pytest.mark.parametrize("kind", [s.kind for s in CRD_SPECS])
def test_schemas_are_structural(kind: str) -> None:
    for version in _ours()[kind]["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        problems = list(structural_problems(root, version["name"]))
        assert not problems, "\n".join(problems)


def test_exactly_one_storage_version_per_crd() -> None:
    for doc in crds():
        assert sum(v["storage"] for v in doc["spec"]["versions"]) == 1, doc["metadata"]["name"]


# ---------------------------------------------------------------------------
# Output


def test_yaml_round_trips_and_is_deterministic() -> None:
    first, second = chart_crd_files(), chart_crd_files()
    assert first == second
    for name, text in first.items():
        doc = yaml.safe_load(text)
        assert f"{doc['metadata']['name']}.yaml" == name
        assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert [yaml.safe_load(t) for _, t in sorted(first.items())] == crds()


def test_committed_chart_crds_are_current() -> None:
    expected = chart_crd_files()
    committed = {p.name: p.read_text(encoding="utf-8") for p in CHART_CRDS.glob("*.yaml")}
    assert committed == expected, "charts/mizzen/crds is stale: run scripts/gen-chart-crds.py"


# ---------------------------------------------------------------------------
# The schema and the validator agree on real resources

SAMPLES = SHARED / "istio-samples"

# Specs the API server's schema check refuses; Mizzen's validator must too.
SCHEMA_INVALID = [
    ("VirtualService", {"http": [{"route": [{"destination": {"host": "a"}, "weight": "x"}]}]}),
    ("VirtualService", {"http": [{"match": [{"uri": {"exact": "/a", "prefix": "/b"}}]}]}),
    ("DestinationRule", {"trafficPolicy": {"tls": {"mode": "SOMETIMES"}}}),
    ("DestinationRule", {"host": "a", "subsets": [{"labels": {"v": "1"}}]}),
    ("Gateway", {"servers": [{"port": {"number": 80, "name": "http"}, "hosts": ["*"]}]}),
    ("ServiceEntry", {"hosts": []}),
    ("ServiceEntry", {"hosts": ["a"], "ports": [{"number": -1, "name": "p"}]}),
    ("PeerAuthentication", {"mtls": {"mode": "strict"}}),
    ("PeerAuthentication", {"portLevelMtls": {}}),
]


def _sample_specs() -> Iterator[tuple[str, str, Any]]:
    kinds = set(MODERN)
    for path in sorted(SAMPLES.rglob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") in kinds and "spec" in doc:
                yield f"{path.relative_to(SAMPLES)}:{doc['kind']}", doc["kind"], doc["spec"]


def _verdicts(kind: str, spec: Any) -> tuple[bool, bool]:
    """(the CRD schema accepts it, Mizzen's validator accepts it)."""
    import jsonschema

    from mizzen.api.validate_crd import check_spec

    root = _ours()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema_ok = jsonschema.Draft4Validator(root["properties"]["spec"]).is_valid(spec)
    problems: list[tuple[str, str]] = []
    check_spec(kind, spec, problems)
    return schema_ok, not problems


def test_samples_the_validator_accepts_pass_the_schema() -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"Istio's samples are not at {SAMPLES} (set MIZZEN_SHARED)")
    checked = 0
    for where, kind, spec in _sample_specs():
        schema_ok, mizzen_ok = _verdicts(kind, spec)
        # The schema is the tree minus its CEL rules: it can only be laxer.
        assert schema_ok or not mizzen_ok, where
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize(("kind", "spec"), SCHEMA_INVALID)
def test_schema_refusals_are_validator_refusals(kind: str, spec: Any) -> None:
    assert _verdicts(kind, spec) == (False, False)
