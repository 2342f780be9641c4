"""CustomResourceDefinitions for the Istio kinds Mizzen serves, generated from
the schema trees its validator already holds (``api.validate_crd`` and, for
the legacy ``authentication.istio.io`` kinds, ``api.validate_security``).

One tree, two uses: the same nodes that check a resource read from a file
become the ``openAPIV3Schema`` a real API server checks on ``kubectl apply``,
so the two can never drift apart.

What is restated from Istio (facts, not code): the group, the served and
storage versions, the names (plural, singular, kind, listKind, shortNames,
categories), the scope, the ``status`` subresource and the printer columns.

What the schema does and does not carry:

- types, enums, ``required``, ``format`` (``int32`` for unbounded integers and
  ``double`` for numbers, as Istio's protobuf-generated schemas say; ``byte``
  for base64 strings), bounds, ``maxLength``, item and property counts, and
  "at most one of" groups as the usual ``oneOf``/``not``/``anyOf`` of
  ``required``;
- **no** ``x-kubernetes-validations``: the tree holds the CEL rules as Python
  callables, not as CEL text, so they cannot be emitted. Those checks are the
  validating webhook's job, which refuses a resource with Mizzen's exact
  message;
- objects the tree marks ``closed`` (the legacy MeshPolicy and Policy) keep
  unknown fields (``x-kubernetes-preserve-unknown-fields``) instead of
  letting the API server prune them: a misspelt field must reach the webhook
  and be refused by name, never silently vanish from a security policy;
- ``status`` is an open object, written only by the control plane.

Every output is a structural schema (every node typed, no
``additionalProperties`` beside ``properties``), which a v1 CRD requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mizzen.api.parse import (
    ISTIO_NETWORKING,
    ISTIO_SECURITY,
    LEGACY_AUTHN,
    SUPPORTED,
)
from mizzen.api.validate_crd import (
    SPEC_REQUIRED,
    SPEC_SCHEMAS,
    Arr,
    Bool,
    Int,
    Map,
    Node,
    Num,
    Obj,
    Str,
)
from mizzen.api.validate_security import LEGACY_POLICY

__all__ = [
    "CRD_SPECS",
    "CrdSpec",
    "PrinterColumn",
    "chart_crd_files",
    "crd",
    "crds",
    "schema",
]

Json = dict[str, Any]

# Istio stores the newest version; older ones stay served for old manifests.
_STORAGE_VERSION = {ISTIO_NETWORKING: "v1", ISTIO_SECURITY: "v1", LEGACY_AUTHN: "v1alpha1"}

_AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was"
    " created. It is not guaranteed to be set in happens-before order across separate"
    " operations. Clients may not set this value. It is represented in RFC3339 form and is"
    " in UTC. Populated by the system. Read-only. Null for lists."
)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    description: str
    type: str = "string"


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", _AGE_DESCRIPTION, "date")


@dataclass(frozen=True)
class CrdSpec:
    """What a CRD says besides its schema."""

    group: str
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec_schema: Obj
    namespaced: bool = True
    printer_columns: tuple[PrinterColumn, ...] = ()
    status: bool = True  # the status subresource and schema

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def versions(self) -> tuple[str, ...]:
        return SUPPORTED[self.group][self.kind]

    @property
    def categories(self) -> tuple[str, ...]:
        # "istio-io" plus the group with dots as dashes, as Istio names them.
        return ("istio-io", self.group.replace(".", "-"))


def _networking(kind: str, plural: str, short: str, *columns: PrinterColumn) -> CrdSpec:
    return CrdSpec(
        ISTIO_NETWORKING,
        kind,
        plural,
        (short,),
        SPEC_SCHEMAS[kind],
        printer_columns=(*columns, _AGE) if columns else (),
    )


CRD_SPECS: tuple[CrdSpec, ...] = (
    _networking(
        "VirtualService",
        "virtualservices",
        "vs",
        PrinterColumn(
            "Gateways",
            ".spec.gateways",
            "The names of gateways and sidecars that should apply these routes",
        ),
        PrinterColumn(
            "Hosts", ".spec.hosts", "The destination hosts to which traffic is being sent"
        ),
    ),
    _networking(
        "DestinationRule",
        "destinationrules",
        "dr",
        PrinterColumn("Host", ".spec.host", "The name of a service from the service registry"),
    ),
    _networking("Gateway", "gateways", "gw"),
    _networking(
        "ServiceEntry",
        "serviceentries",
        "se",
        PrinterColumn("Hosts", ".spec.hosts", "The hosts associated with the ServiceEntry"),
        PrinterColumn(
            "Location",
            ".spec.location",
            "Whether the service is external to the mesh or part of the mesh"
            " (MESH_EXTERNAL or MESH_INTERNAL)",
        ),
        PrinterColumn(
            "Resolution",
            ".spec.resolution",
            "Service resolution mode for the hosts (NONE, STATIC, or DNS)",
        ),
    ),
    CrdSpec(
        ISTIO_SECURITY,
        "PeerAuthentication",
        "peerauthentications",
        ("pa",),
        SPEC_SCHEMAS["PeerAuthentication"],
        printer_columns=(
            PrinterColumn(
                "Mode", ".spec.mtls.mode", "Defines the mTLS mode used for peer authentication."
            ),
            _AGE,
        ),
    ),
    CrdSpec(
        ISTIO_SECURITY,
        "AuthorizationPolicy",
        "authorizationpolicies",
        ("ap",),
        SPEC_SCHEMAS["AuthorizationPolicy"],
        printer_columns=(
            PrinterColumn("Action", ".spec.action", "The operation to take."),
            _AGE,
        ),
    ),
    CrdSpec(
        ISTIO_SECURITY,
        "RequestAuthentication",
        "requestauthentications",
        ("ra",),
        SPEC_SCHEMAS["RequestAuthentication"],
    ),
    # Istio 1.0-1.5 declared these without a schema, status or columns.
    CrdSpec(
        LEGACY_AUTHN,
        "MeshPolicy",
        "meshpolicies",
        (),
        LEGACY_POLICY,
        namespaced=False,
        status=False,
    ),
    CrdSpec(LEGACY_AUTHN, "Policy", "policies", (), LEGACY_POLICY, status=False),
)


# ---------------------------------------------------------------------------
# Schema nodes -> OpenAPI v3


def schema(node: Node) -> Json:
    """The structural OpenAPI v3 schema of one validator node."""
    if isinstance(node, Str):
        return _string(node)
    if isinstance(node, Int):
        return _integer(node)
    if isinstance(node, Num):
        return _bounded({"type": "number", "format": "double"}, node.minimum, node.maximum)
    if isinstance(node, Bool):
        return {"type": "boolean"}
    if isinstance(node, Arr):
        return _array(node)
    if isinstance(node, Map):
        return _map(node)
    return _object(node)


def _string(node: Str) -> Json:
    out: Json = {"type": "string"}
    if node.enum:
        out["enum"] = list(node.enum)
    if node.max_length is not None:
        out["maxLength"] = node.max_length
    if node.byte:
        out["format"] = "byte"
    return out


def _integer(node: Int) -> Json:
    # Istio's generator marks proto int32 fields with a format and gives
    # unsigned and wrapper fields bounds instead; the tree holds only the
    # bounds, so an unbounded integer is an int32.
    if node.minimum is None and node.maximum is None:
        return {"type": "integer", "format": "int32"}
    return _bounded({"type": "integer"}, node.minimum, node.maximum)


def _bounded(out: Json, lo: float | None, hi: float | None) -> Json:
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


def _array(node: Arr) -> Json:
    out: Json = {"type": "array", "items": schema(node.item)}
    if node.min_items is not None:
        out["minItems"] = node.min_items
    if node.max_items is not None:
        out["maxItems"] = node.max_items
    return out


def _map(node: Map) -> Json:
    out: Json = {"type": "object", "additionalProperties": schema(node.value)}
    if node.min_properties is not None:
        out["minProperties"] = node.min_properties
    if node.max_properties is not None:
        out["maxProperties"] = node.max_properties
    return out


def _object(node: Obj) -> Json:
    out: Json = {
        "type": "object",
        "properties": {name: schema(sub) for name, sub in node.props.items()},
    }
    if node.required:
        out["required"] = list(node.required)
    exclusive = [_at_most_one(group) for group in node.exclusive]
    if len(exclusive) == 1:
        out.update(exclusive[0])
    elif exclusive:
        out["allOf"] = exclusive
    if node.closed:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _at_most_one(group: tuple[str, ...]) -> Json:
    # "none of them, or exactly one": OpenAPI has no "at most one", and a
    # structural schema allows only value checks (no types) under oneOf.
    one_each = [{"required": [name]} for name in group]
    return {"oneOf": [{"not": {"anyOf": one_each}}, *one_each]}


# ---------------------------------------------------------------------------
# CRDs


def _status_schema() -> Json:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _root_schema(spec: CrdSpec) -> Json:
    properties: Json = {"spec": schema(spec.spec_schema)}
    if spec.status:
        properties["status"] = _status_schema()
    root: Json = {"type": "object", "properties": properties}
    if spec.kind in SPEC_REQUIRED:
        root["required"] = ["spec"]
    return root


def _version(spec: CrdSpec, name: str) -> Json:
    out: Json = {
        "name": name,
        "served": True,
        "storage": name == _STORAGE_VERSION[spec.group],
        "schema": {"openAPIV3Schema": _root_schema(spec)},
    }
    if spec.printer_columns:
        out["additionalPrinterColumns"] = [_column(c) for c in spec.printer_columns]
    if spec.status:
        out["subresources"] = {"status": {}}
    return out


def _column(column: PrinterColumn) -> Json:
    return {
        "name": column.name,
        "type": column.type,
        "jsonPath": column.json_path,
        "description": column.description,
    }


def _names(spec: CrdSpec) -> Json:
    out: Json = {
        "kind": spec.kind,
        "listKind": f"{spec.kind}List",
        "plural": spec.plural,
        "singular": spec.singular,
        "categories": list(spec.categories),
    }
    if spec.short_names:
        out["shortNames"] = list(spec.short_names)
    return out


def crd(spec: CrdSpec, labels: Mapping[str, str] | None = None) -> Json:
    """One ``apiextensions.k8s.io/v1`` CustomResourceDefinition."""
    metadata: Json = {"name": spec.name}
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": spec.group,
            "names": _names(spec),
            "scope": "Namespaced" if spec.namespaced else "Cluster",
            "versions": [_version(spec, v) for v in spec.versions],
        },
    }


def crds(labels: Mapping[str, str] | None = None) -> list[Json]:
    """Every CRD Mizzen serves, in a stable order (by name)."""
    return [crd(s, labels) for s in sorted(CRD_SPECS, key=lambda s: s.name)]


def chart_crd_files() -> dict[str, str]:
    """The Helm chart's ``crds/`` folder: file name -> YAML, one CRD each.

    Helm installs that folder before the templates and never templates it,
    which is why it is generated once and committed rather than rendered.
    """
    return {
        f"{doc['metadata']['name']}.yaml": yaml.safe_dump(
            doc, sort_keys=True, default_flow_style=False
        )
        for doc in crds()
    }
