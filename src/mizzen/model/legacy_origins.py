"""End-user (origin) authentication of a legacy MeshPolicy/Policy
(``authentication.istio.io/v1alpha1`` ``origins[].jwt``) to its modern form:
a RequestAuthentication, plus an AuthorizationPolicy that makes the token
mandatory unless ``originIsOptional`` was set.

Pure: the legacy policy and the Services in, resources and notes out. The
scope follows ``legacy_authn`` (the PeerAuthentication side of the same
policy):

- MeshPolicy -> the root namespace, no selector (mesh-wide);
- Policy without targets -> its namespace, no selector, same name;
- Policy with targets -> per target Service, ``<policy>-<service>`` selecting
  the Service's pods. Legacy ``ports`` name Service ports; the requirement is
  limited to their ``targetPort``s (workload ports). A RequestAuthentication
  cannot be limited to ports, so it validates tokens on every port.

Why the requirement is a DENY policy (``<name>-require-jwt``, action DENY,
``from.source.notRequestPrincipals: ["<issuer>/*", ...]``) and not an ALLOW
policy on ``requestPrincipals``:

- Istio 1.x checked the token of every request to the targets, whoever the
  caller; both forms do that alone.
- An ALLOW policy turns the workloads into allow-list mode and adds up with
  the other ALLOW policies: next to a whitelist translated from Mixer (ALLOW
  ``principals``), a caller would get in with a token OR from a listed
  workload, where Istio 1.x required both. DENY policies compose as "every
  check must pass", which is what the 1.x authentication filter followed by
  Mixer's check meant, and leave other policies' meaning alone.
- Naming each issuer (``<issuer>/*``) rather than ``*`` accepts only tokens
  of this policy's issuers, as 1.x did (one policy applied per workload),
  even when other RequestAuthentications select the same workloads.

Costs, told to the user in notes: a request without a token is refused with
403 ``RBAC: access denied`` instead of 1.x's 401; a token is HTTP-only, so on
TCP ports of the selected workloads the DENY policy refuses every connection
(1.x never checked tokens on TCP) unless ports were targeted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mizzen.api.resources import (
    AuthorizationPolicy,
    AuthzOperation,
    AuthzRule,
    AuthzSource,
    LegacyAuthenticationPolicy,
    ObjectMeta,
    RequestAuthentication,
    Service,
)
from mizzen.model.legacy_authn import workload_port

__all__ = ["REQUIRE_SUFFIX", "origins_to_modern"]

REQUIRE_SUFFIX = "-require-jwt"

Modern = RequestAuthentication | AuthorizationPolicy


@dataclass
class _Scope:
    """The workloads one RequestAuthentication covers."""

    name: str
    namespace: str
    selector: dict[str, str] | None = None
    whole: bool = True  # every port; False: only ``ports``
    ports: list[int] = field(default_factory=list)
    label: str = ""  # for notes: "the workloads of Service tutorial/preference"


def origins_to_modern(
    policy: LegacyAuthenticationPolicy,
    services: Sequence[Service],
    root_namespace: str = "istio-system",
) -> tuple[tuple[Modern, ...], tuple[str, ...]]:
    """The RequestAuthentications and AuthorizationPolicies equivalent to the
    origins of ``policy`` (none without origins), and notes for the user."""
    if not policy.origins:
        return (), ()
    notes: list[str] = []
    where = _label(policy)
    out: list[Modern] = []
    for scope in _scopes(policy, services, root_namespace, notes):
        out.append(
            RequestAuthentication(
                ObjectMeta(scope.name, scope.namespace), policy.origins, scope.selector
            )
        )
        if policy.origin_is_optional:
            continue
        out.append(_requirement(policy, scope))
        _requirement_notes(scope, notes)
    if policy.origin_is_optional and out:
        notes.append(
            f"{where} has originIsOptional: requests without a token still pass, as before;"
            " a request with an invalid token is now refused with 401, where Istio 1.x let"
            " it through."
        )
    return tuple(out), tuple(notes)


def _label(policy: LegacyAuthenticationPolicy) -> str:
    if policy.kind == "MeshPolicy":
        return f"MeshPolicy {policy.meta.name}"
    return f"Policy {policy.meta.namespace}/{policy.meta.name}"


def _requirement(policy: LegacyAuthenticationPolicy, scope: _Scope) -> AuthorizationPolicy:
    issuers: list[str] = []
    for jwt in policy.origins:
        pattern = f"{jwt.issuer}/*" if jwt.issuer else "*"
        if pattern not in issuers:
            issuers.append(pattern)
    operations = () if scope.whole else (AuthzOperation(ports=tuple(map(str, scope.ports))),)
    rule = AuthzRule(
        sources=(AuthzSource(not_request_principals=tuple(issuers)),), operations=operations
    )
    meta = ObjectMeta(_require_name(scope.name), scope.namespace)
    return AuthorizationPolicy(meta, "DENY", (rule,), scope.selector)


def _require_name(name: str) -> str:
    return name[: 253 - len(REQUIRE_SUFFIX)].rstrip("-.") + REQUIRE_SUFFIX


def _requirement_notes(scope: _Scope, notes: list[str]) -> None:
    ns = scope.namespace
    ra = f"RequestAuthentication {ns}/{scope.name}"
    ap = f"AuthorizationPolicy {ns}/{_require_name(scope.name)}"
    notes.append(
        f"For {scope.label}: Istio 1.x refused requests without a valid token with 401. Now"
        f" {ra} refuses a request whose token is invalid with 401, and {ap} refuses a"
        " request without a token with 403 `RBAC: access denied`."
    )
    if scope.whole:
        notes.append(
            f"A token can only be checked on HTTP: {ap} also refuses every connection to a TCP"
            f" port of {scope.label}, which Istio 1.x let through. If they serve TCP, add"
            f" to.operation.ports with their HTTP ports to {ap}."
        )
    else:
        ports = ", ".join(map(str, scope.ports))
        notes.append(
            f"{ra} validates tokens on every port of {scope.label}: a request with an"
            f" invalid token to a port other than {ports} is now refused with 401 (Istio 1.x"
            " checked only the targeted ports); requests without a token still pass there."
        )


def _scopes(
    policy: LegacyAuthenticationPolicy,
    services: Sequence[Service],
    root_namespace: str,
    notes: list[str],
) -> list[_Scope]:
    name = policy.meta.name
    if policy.kind == "MeshPolicy":
        return [_Scope(name, root_namespace, label="every workload of the mesh")]
    ns = policy.meta.namespace
    if not policy.targets:
        return [_Scope(name, ns, label=f"every workload of namespace {ns}")]
    where = _label(policy)
    by_name = {s.meta.name: s for s in services if s.meta.namespace == ns}
    scopes: dict[str, _Scope] = {}
    for target in policy.targets:
        service = by_name.get(target.name)
        if service is None:
            notes.append(
                f"{where} targets Service {ns}/{target.name}, which does not exist; no token"
                " is required for it. Create the Service or remove the target."
            )
            continue
        if not service.selector:
            notes.append(
                f"{where} targets Service {ns}/{target.name}, which has no selector, so its"
                " workloads cannot be told apart; no token is required for it. Write a"
                " RequestAuthentication with a selector matching those workloads' labels."
            )
            continue
        scope = scopes.get(target.name)
        if scope is None:
            scope = _Scope(
                f"{name}-{target.name}",
                ns,
                dict(service.selector),
                whole=False,
                label=f"the workloads of Service {ns}/{target.name}",
            )
            scopes[target.name] = scope
        if not target.ports:
            scope.whole = True
        for ref in target.ports:
            port = _workload_port(service, ref, where, notes)
            if port is not None and port not in scope.ports:
                scope.ports.append(port)
    out = []
    for service_name, scope in scopes.items():
        if not scope.whole and not scope.ports:
            notes.append(
                f"{where}: none of the ports listed for Service {ns}/{service_name} could be"
                " mapped to a workload port, so no token is required for it."
            )
            continue
        scope.ports.sort()
        out.append(scope)
    return out


def _workload_port(service: Service, ref: int | str, where: str, notes: list[str]) -> int | None:
    """The workload port behind Service port ``ref`` (a number or a name)."""
    found = workload_port(service, ref)
    if isinstance(found, int):
        return found
    if "named container port" in found:
        notes.append(
            f"{where} {found}, so no token is required for it. Add its number to"
            f" to.operation.ports of the {REQUIRE_SUFFIX[1:]} AuthorizationPolicy by hand."
        )
    else:
        notes.append(f"{where} {found}; no token is required for it.")
    return None
