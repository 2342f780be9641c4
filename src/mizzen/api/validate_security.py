"""Peer authentication: istiod's checks for PeerAuthentication, and the whole
of the legacy ``authentication.istio.io/v1alpha1`` MeshPolicy and Policy.

Every check returns ``(errors, warnings)``: a warning keeps the resource, an
error refuses it. Paths start at the document root (``spec.mtls.mode``).

PeerAuthentication
    The CRD layer (``validate_crd.PEER_AUTHENTICATION``) has already checked
    the shape, the mode enum and the CEL rules; istiod adds little on top:
    a ``selector`` without labels is legal but only a warning, because it
    silently turns a workload policy into a namespace-wide one.

MeshPolicy and Policy (Istio 1.0 to 1.5; removed in 1.6)
    Their CRDs never pruned unknown fields, so the shape is checked here, and
    strictly: a misspelt field (the classic ``target:`` for ``targets:``) is
    an error naming the field meant, never a silently wider policy.
    The rules Istio 1.x enforced (messages are ours):

    - a MeshPolicy is named ``default`` and has no targets;
    - a Policy without targets covers its namespace and must be named
      ``default``; the Policy named ``default`` has no targets;
    - a target names a Service by short name (a DNS label); a port selector
      is a Service port number (1..65535) or port name;
    - JWT issuers are set and unique within one policy, ``jwksUri`` is an
      http(s) URL, audiences, header and parameter names are not empty.

    What ``peers`` means (``legacy_peer_mode``): the first ``mtls`` entry
    decides, with its ``mode``, STRICT when it has none (``mtls: {}`` or a bare
    ``mtls:``); ``peerIsOptional: true`` relaxes that to PERMISSIVE; no
    ``mtls`` entry at all means DISABLE (Istio 1.4: plaintext accepted, mTLS
    not required). Origins (end-user JWT) are accepted but not enforced, and
    say so in a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from mizzen.api.resources import MtlsMode
from mizzen.api.validate_crd import (
    U32,
    Arr,
    Bool,
    Int,
    Map,
    Obj,
    Problems,
    Str,
    check,
    index,
    join,
    key,
)
from mizzen.api.validate_names import check_labels, dns_label_problem

Spec = Mapping[str, Any]
# (errors, warnings), each a list of (path, message)
Findings = tuple[Problems, Problems]

LEGACY_API_VERSION = "authentication.istio.io/v1alpha1"
REPLACEMENT = "PeerAuthentication (security.istio.io/v1)"

# ---------------------------------------------------------------------------
# PeerAuthentication


def check_peer_authentication(spec: Spec) -> Findings:
    errors: Problems = []
    warnings: Problems = []
    selector = spec.get("selector")
    labels = (selector or {}).get("matchLabels") or {}
    if selector is not None and not labels:
        # istiod: "workload selector specified without labels" (a warning).
        warnings.append(
            (
                "spec.selector",
                "has no matchLabels, so it selects every workload: this policy applies to the"
                " whole namespace (the whole mesh in the root namespace); add matchLabels or"
                " remove the selector",
            )
        )
    check_labels(labels, "spec.selector.matchLabels", errors)
    port_level = spec.get("portLevelMtls")
    if port_level is not None:
        # The CRD's CEL rules refuse these first; istiod keeps them for
        # configurations that bypass the API server (files, tests).
        if not port_level:
            errors.append(("spec.portLevelMtls", "must list at least one port when given"))
        elif not labels:
            errors.append(
                (
                    "spec.portLevelMtls",
                    "a namespace- or mesh-wide policy cannot set port-level mTLS;"
                    " add selector.matchLabels",
                )
            )
        for port in port_level:
            if not str(port).isdigit() or not 1 <= int(port) <= 65535:
                errors.append(
                    (key("spec.portLevelMtls", str(port)), "port must be between 1 and 65535")
                )
    return errors, warnings


CHECKS: Mapping[str, Callable[[Spec], Findings]] = {
    "PeerAuthentication": check_peer_authentication,
}

# ---------------------------------------------------------------------------
# Legacy MeshPolicy / Policy: the shape (proto istio.authentication.v1alpha1)

_STRING_MATCH = Obj(
    {"exact": Str(), "prefix": Str(), "suffix": Str(), "regex": Str()},
    exclusive=(("exact", "prefix", "suffix", "regex"),),
    closed=True,
)

_JWT = Obj(
    {
        "issuer": Str(),
        "audiences": Arr(Str()),
        "jwksUri": Str(),
        "jwks": Str(),
        "jwtHeaders": Arr(Str()),
        "jwtParams": Arr(Str()),
        "triggerRules": Arr(
            Obj(
                {"excludedPaths": Arr(_STRING_MATCH), "includedPaths": Arr(_STRING_MATCH)},
                closed=True,
            )
        ),
    },
    closed=True,
)

_PEER = Obj(
    {
        "mtls": Obj(
            {"allowTls": Bool(), "mode": Str(enum=("STRICT", "PERMISSIVE"))},
            closed=True,
        ),
        "jwt": _JWT,
    },
    exclusive=(("mtls", "jwt"),),
    closed=True,
)

_TARGET = Obj(
    {
        "name": Str(),
        "labels": Map(Str()),
        "ports": Arr(
            Obj(
                {"number": Int(0, U32), "name": Str()}, exclusive=(("number", "name"),), closed=True
            )
        ),
    },
    required=("name",),
    closed=True,
)

LEGACY_POLICY = Obj(
    {
        "targets": Arr(_TARGET),
        "peers": Arr(_PEER),
        "peerIsOptional": Bool(),
        "origins": Arr(Obj({"jwt": _JWT}, required=("jwt",), closed=True)),
        "originIsOptional": Bool(),
        "principalBinding": Str(enum=("USE_PEER", "USE_ORIGIN")),
    },
    closed=True,
)


def legacy_peer_mode(spec: Spec) -> MtlsMode:
    """What a valid legacy spec's ``peers`` mean as a PeerAuthentication mode."""
    for peer in spec.get("peers") or ():
        # "mtls" present with no value (``- mtls:``) still selects mTLS.
        if isinstance(peer, dict) and "mtls" in peer:
            if spec.get("peerIsOptional") is True:
                return "PERMISSIVE"
            mode = (peer["mtls"] or {}).get("mode") or "STRICT"
            return "PERMISSIVE" if mode == "PERMISSIVE" else "STRICT"
    return "DISABLE"


def check_legacy_policy(kind: str, name: str, spec: Any) -> Findings:
    """Errors and warnings of a MeshPolicy or Policy; ``spec`` as written
    (nulls kept: a bare ``mtls:`` is meaningful)."""
    errors: Problems = []
    body = {} if spec is None else spec
    check(LEGACY_POLICY, body, "spec", errors)
    if errors:
        return errors, []
    _check_legacy_scope(kind, name, body, errors)
    for i, target in enumerate(body.get("targets") or ()):
        _check_target(target, index("spec.targets", i), errors)
    _check_jwts(body, errors)
    if errors:
        return errors, []
    return errors, _legacy_warnings(kind, body)


def _check_legacy_scope(kind: str, name: str, spec: Spec, out: Problems) -> None:
    has_targets = bool(spec.get("targets"))
    if kind == "MeshPolicy":
        if name and name != "default":
            out.append(
                (
                    "metadata.name",
                    f"a MeshPolicy must be named 'default' (Istio reads no other), got {name!r}",
                )
            )
        if has_targets:
            out.append(
                (
                    "spec.targets",
                    "a MeshPolicy covers the whole mesh and cannot have targets;"
                    " put them in a Policy in the Services' namespace",
                )
            )
        return
    if not has_targets and name and name != "default":
        out.append(
            (
                "metadata.name",
                "a Policy without targets covers its whole namespace and must be named"
                f" 'default', got {name!r}; add targets or rename it",
            )
        )
    if has_targets and name == "default":
        out.append(
            (
                "spec.targets",
                "the Policy named 'default' is the namespace-wide one and cannot have targets;"
                " move them to a Policy with another name",
            )
        )


def _check_target(target: Spec, path: str, out: Problems) -> None:
    name = target["name"]
    if not name:
        out.append((join(path, "name"), "required"))
    elif problem := dns_label_problem(name):
        out.append((join(path, "name"), f"must be a Service name: {problem}"))
    check_labels(target.get("labels"), join(path, "labels"), out)
    for j, port in enumerate(target.get("ports") or ()):
        where = index(join(path, "ports"), j)
        number, port_name = port.get("number"), port.get("name")
        if number is None and not port_name:
            out.append((where, "needs a Service port number or name"))
        elif number is not None and not 1 <= number <= 65535:
            out.append((join(where, "number"), f"must be between 1 and 65535, got {number}"))
        elif port_name:
            problem = dns_label_problem(port_name)
            if problem:
                out.append((join(where, "name"), f"must be a Service port name: {problem}"))


def _jwts(spec: Spec) -> list[tuple[str, Spec]]:
    found = [
        (join(index("spec.peers", i), "jwt"), p["jwt"])
        for i, p in enumerate(spec.get("peers") or ())
        if p.get("jwt") is not None
    ]
    found += [
        (join(index("spec.origins", i), "jwt"), o["jwt"])
        for i, o in enumerate(spec.get("origins") or ())
    ]
    return found


def _check_jwts(spec: Spec, out: Problems) -> None:
    issuers: set[str] = set()
    for path, jwt in _jwts(spec):
        issuer = jwt.get("issuer") or ""
        if not issuer:
            out.append((join(path, "issuer"), "required"))
        elif issuer in issuers:
            out.append(
                (
                    join(path, "issuer"),
                    f"issuer {issuer!r} is already used by another jwt of this policy",
                )
            )
        issuers.add(issuer)
        for field in ("audiences", "jwtHeaders", "jwtParams"):
            for j, value in enumerate(jwt.get(field) or ()):
                if value == "":
                    out.append((index(join(path, field), j), "must not be empty"))
        uri = jwt.get("jwksUri")
        if uri and not _is_http_url(uri):
            out.append(
                (join(path, "jwksUri"), f"{uri!r} must be an http:// or https:// URL with a host")
            )


def _is_http_url(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


# ---------------------------------------------------------------------------
# Legacy warnings: what is deprecated, ignored, or not enforced


def deprecation_message(kind: str) -> str:
    return (
        f"{kind} ({LEGACY_API_VERSION}) is deprecated since Istio 1.4 and was removed in 1.6;"
        f" Mizzen reads its mTLS part as the equivalent {REPLACEMENT}, the form to write instead"
    )


def _legacy_warnings(kind: str, spec: Spec) -> Problems:
    out: Problems = [("", deprecation_message(kind))]
    mode = legacy_peer_mode(spec)
    seen_mtls = False
    for i, peer in enumerate(spec.get("peers") or ()):
        where = index("spec.peers", i)
        if "mtls" in peer:
            if seen_mtls:
                out.append(
                    (join(where, "mtls"), "ignored: only the first mtls entry of peers counts")
                )
            elif (peer["mtls"] or {}).get("allowTls") is True:
                out.append(
                    (
                        join(join(where, "mtls"), "allowTls"),
                        "ignored: PeerAuthentication has no mode that accepts TLS without a"
                        f" client certificate; this policy's mode is {mode}",
                    )
                )
            seen_mtls = True
        elif peer.get("jwt") is not None:
            out.append(
                (
                    join(where, "jwt"),
                    "ignored: peer JWT authentication was never available in Istio;"
                    " it does not count as a peer method",
                )
            )
        else:
            out.append(
                (where, "an empty peer method is ignored; write `mtls: {}` to require mutual TLS")
            )
    for i, target in enumerate(spec.get("targets") or ()):
        if target.get("labels"):
            out.append(
                (
                    join(index("spec.targets", i), "labels"),
                    "ignored: Istio never implemented target labels; the Service named in"
                    " name chooses the workloads",
                )
            )
    if spec.get("origins"):
        out.append(
            (
                "spec.origins",
                f"end-user JWT authentication from this {kind} is NOT enforced yet: requests"
                " are accepted without any token check. Its modern form is"
                " RequestAuthentication (security.istio.io/v1), with an AuthorizationPolicy"
                " on requestPrincipals to refuse requests without a valid token",
            )
        )
    if spec.get("principalBinding") == "USE_ORIGIN":
        out.append(
            (
                "spec.principalBinding",
                "USE_ORIGIN is NOT enforced yet: the request principal stays the peer (mTLS)"
                " identity. In the modern API, AuthorizationPolicy matches end-user"
                " identities with requestPrincipals",
            )
        )
    return out
