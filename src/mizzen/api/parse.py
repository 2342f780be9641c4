"""YAML text to typed resources: one file's content in, a ``LoadResult`` out.

Each document goes through identification (apiVersion/kind), the schema layer,
the semantic layer, and only then into a model, so models never hold
unchecked data. Every problem is reported; nothing raises. Warnings (deprecated
forms, parts not enforced yet) travel with accepted resources only.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mizzen.api import parse_mixer, validate_istio, validate_kube, validate_security
from mizzen.api.errors import ConfigError, ConfigWarning, LoadResult, Skipped
from mizzen.api.resources import (
    AuthorizationPolicy,
    AuthzCondition,
    AuthzOperation,
    AuthzRule,
    AuthzSource,
    ClaimToHeader,
    ConfigMap,
    Container,
    ContainerPort,
    Destination,
    DestinationRule,
    EnvVar,
    FaultAbort,
    FaultDelay,
    Gateway,
    GatewayPort,
    GroupVersionKind,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPGetAction,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    JWTHeader,
    JWTRule,
    L4MatchAttributes,
    LegacyAuthenticationPolicy,
    LegacyTarget,
    Namespace,
    ObjectMeta,
    PeerAuthentication,
    Pod,
    PodController,
    PodSpec,
    PodTemplate,
    PolicyTargetRef,
    Probe,
    RequestAuthentication,
    Resource,
    RouteDestination,
    Secret,
    Server,
    Service,
    ServiceAccount,
    ServiceEntry,
    ServiceEntryPort,
    ServicePort,
    Source,
    Spec,
    StringMatch,
    Subset,
    TCPRoute,
    TLSMatchAttributes,
    TLSRoute,
    TrafficPolicy,
    VirtualService,
    WorkloadEntry,
)
from mizzen.api.validate_crd import Problems, check_spec, parse_duration, type_name

Raw = Mapping[str, Any]

ISTIO_NETWORKING = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
ISTIO_KINDS = ("VirtualService", "DestinationRule", "Gateway", "ServiceEntry")
ISTIO_SECURITY = "security.istio.io"
SECURITY_KINDS = ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication")
# Istio 1.0-1.5 authentication policy, removed in Istio 1.6.
LEGACY_AUTHN = "authentication.istio.io"
LEGACY_AUTHN_KINDS = ("MeshPolicy", "Policy")
# group -> kind -> supported versions
SUPPORTED: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "": {
        k: ("v1",) for k in ("Namespace", "ServiceAccount", "Service", "Pod", "Secret", "ConfigMap")
    },
    "apps": {k: ("v1",) for k in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet")},
    "batch": {"Job": ("v1",)},
    ISTIO_NETWORKING: {k: ISTIO_VERSIONS for k in ISTIO_KINDS},
    ISTIO_SECURITY: {k: ("v1", "v1beta1") for k in SECURITY_KINDS},
    LEGACY_AUTHN: {k: ("v1alpha1",) for k in LEGACY_AUTHN_KINDS},
}
# Kinds people write beside their workloads that the local runtime does not
# act on, with why (any other unknown kind gets a generic reason).
NOT_RUN: Mapping[str, str] = {
    "CronJob": "not run locally yet: nothing schedules its Jobs (apply a Job to run one now)",
    "Ingress": "not served locally: use an Istio Gateway and VirtualService",
    "HorizontalPodAutoscaler": "not acted on locally: replicas stay as written",
    "PodDisruptionBudget": "not acted on locally: nothing evicts pods",
    "NetworkPolicy": "not enforced locally: use an AuthorizationPolicy",
    "PersistentVolumeClaim": "not provisioned locally: use an emptyDir volume",
    "Role": "not enforced locally (the local runtime has no API server)",
    "RoleBinding": "not enforced locally (the local runtime has no API server)",
    "ClusterRole": "not enforced locally (the local runtime has no API server)",
    "ClusterRoleBinding": "not enforced locally (the local runtime has no API server)",
}
CLUSTER_SCOPED = frozenset({("", "Namespace"), (LEGACY_AUTHN, "MeshPolicy")})
# Groups whose kinds have a CRD schema (validate_crd) and istiod checks.
CRD_GROUPS = frozenset({ISTIO_NETWORKING, ISTIO_SECURITY})


@dataclass(frozen=True)
class _Doc:
    source: Source
    body: Any


def parse_text(text: str, file: str) -> LoadResult:
    """Parse every YAML (or JSON) document of one file."""
    resources: list[Resource] = []
    errors: list[ConfigError] = []
    skipped: list[Skipped] = []
    warnings: list[ConfigWarning] = []
    for doc in _documents(text, file, errors):
        for item in _expand_lists(doc, errors):
            outcome = parse_document(item.body, item.source)
            resources.extend(outcome.resources)
            errors.extend(outcome.errors)
            skipped.extend(outcome.skipped)
            warnings.extend(outcome.warnings)
    return LoadResult(tuple(resources), tuple(errors), tuple(skipped), tuple(warnings))


def _documents(text: str, file: str, errors: list[ConfigError]) -> Iterator[_Doc]:
    n = 0
    stream = yaml.safe_load_all(text)
    while True:
        try:
            body = next(stream)
        except StopIteration:
            return
        except yaml.YAMLError as exc:
            errors.append(ConfigError(Source(file, n), "document", "", _yaml_message(exc)))
            # The parser cannot resynchronise after a syntax error.
            return
        if body is not None:
            yield _Doc(Source(file, n), _normalise(body))
        n += 1


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"YAML syntax error: {problem}"


def _normalise(value: Any) -> Any:
    # Kubernetes turns YAML into JSON, where every key is a string.
    if isinstance(value, dict):
        return {_key_text(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _key_text(k: object) -> str:
    if isinstance(k, bool):
        return "true" if k else "false"
    return "null" if k is None else str(k)


def _expand_lists(doc: _Doc, errors: list[ConfigError]) -> Iterator[_Doc]:
    body = doc.body
    if isinstance(body, dict) and body.get("kind") == "List" and "items" in body:
        items = body["items"]
        if not isinstance(items, list):
            errors.append(ConfigError(doc.source, "List", "items", "must be a list"))
            return
        for item in items:
            if item is not None:
                yield _Doc(doc.source, item)
        return
    yield doc


def resource_label(kind: str, namespace: str, name: str) -> str:
    shown = name or "<unnamed>"
    return f"{kind} {namespace}/{shown}" if namespace else f"{kind} {shown}"


def parse_document(body: Any, source: Source) -> LoadResult:
    """Identify, validate and build one document: a resource (with its
    warnings), a skipped document, or errors."""

    def fail(resource: str, path: str, message: str) -> LoadResult:
        return LoadResult(errors=(ConfigError(source, resource, path, message),))

    if not isinstance(body, dict):
        return fail(
            "document", "", f"expected a Kubernetes object (a mapping), got {type_name(body)}"
        )
    api_version = body.get("apiVersion")
    kind = body.get("kind")
    if not api_version or not isinstance(api_version, str):
        return fail("document", "apiVersion", "required (for example networking.istio.io/v1)")
    if not kind or not isinstance(kind, str):
        return fail("document", "kind", "required (for example VirtualService)")
    group, _, version = api_version.rpartition("/")
    raw_meta = body.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    raw_name = meta.get("name")
    name = raw_name if isinstance(raw_name, str) else ""
    namespaced = (group, kind) not in CLUSTER_SCOPED
    raw_ns = meta.get("namespace")
    namespace = (raw_ns if isinstance(raw_ns, str) and raw_ns else "default") if namespaced else ""
    label = resource_label(kind, namespace, name)
    gvk = GroupVersionKind(group, version, kind)

    versions = SUPPORTED.get(group, {}).get(kind)
    if group == parse_mixer.MIXER_GROUP:
        # Every Mixer kind is known: translated, or refused with its replacement.
        versions = parse_mixer.MIXER_VERSIONS
    if versions is None:
        where = f" ({group})" if group else ""
        # The scope of an unknown kind is unknown: show only what was written.
        shown = f"{raw_ns}/{name}" if isinstance(raw_ns, str) and raw_ns else name
        reason = NOT_RUN.get(kind) or f"kind {kind}{where} is not supported yet; skipped"
        return LoadResult(skipped=(Skipped(source, gvk, shown, reason),))
    if version not in versions:
        wanted = " or ".join(f"{group}/{v}" if group else v for v in versions)
        return fail(label, "apiVersion", f"{api_version} has no {kind}; use {wanted}")

    problems: Problems = []
    warnings: Problems = []
    validate_kube.check_metadata(body, namespaced=namespaced, out=problems)
    spec: Any = None
    if group in CRD_GROUPS:
        spec = _drop_nulls(body.get("spec"))
        check_spec(kind, spec, problems)
        if spec is None:
            spec = {}
        if not problems:
            errors, warnings = _istiod_checks(kind, spec)
            problems.extend(errors)
            annotations = meta.get("annotations") or {}
            problems.extend(validate_security.check_dry_run_annotation(kind, annotations, spec))
    elif group == LEGACY_AUTHN:
        # Nulls stay: a bare `mtls:` in peers means "mutual TLS, STRICT".
        spec = body.get("spec")
        errors, warnings = validate_security.check_legacy_policy(kind, name, spec)
        problems.extend(errors)
    elif group == parse_mixer.MIXER_GROUP:
        spec = body.get("spec")
        refused = parse_mixer.untranslated_reason(kind, spec)
        if refused is not None:
            problems.append(("kind", refused))
        else:
            problems.extend(parse_mixer.check_mixer(kind, spec))
            warnings = [("", parse_mixer.deprecation_message(kind))]
    else:
        problems.extend(validate_kube.CHECKS[kind](body))
    if problems:
        return LoadResult(
            errors=tuple(ConfigError(source, label, path, message) for path, message in problems)
        )

    object_meta = ObjectMeta(
        name=name,
        namespace=namespace,
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
    )
    if group in CRD_GROUPS:
        obj: Spec = _ISTIO_BUILDERS[kind](object_meta, spec)
    elif group == LEGACY_AUTHN:
        obj = _legacy_policy(object_meta, kind, spec or {})
    elif group == parse_mixer.MIXER_GROUP:
        obj = parse_mixer.build_mixer(kind, object_meta, spec)
    else:
        obj = _KUBE_BUILDERS[kind](object_meta, body)
    return LoadResult(
        resources=(Resource(gvk, source, obj),),
        warnings=tuple(ConfigWarning(source, label, path, message) for path, message in warnings),
    )


def _istiod_checks(kind: str, spec: Raw) -> tuple[Problems, Problems]:
    """istiod's verdict as (errors, warnings)."""
    if kind in validate_security.CHECKS:
        return validate_security.CHECKS[kind](spec)
    return validate_istio.CHECKS[kind](spec), []


def _drop_nulls(value: Any) -> Any:
    # The API server prunes nulls of non-nullable fields before validating.
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Builders: inputs are validated, so they read fields without re-checking.


def _seconds(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


def _strmap(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(value or ())


def _string_match(raw: Any, *, present: bool) -> StringMatch | None:
    if raw is None:
        return None
    for kind in ("exact", "prefix", "regex"):
        if kind in raw:
            return StringMatch(kind, raw[kind])
    return StringMatch("present") if present else None


def _match_map(raw: Any) -> dict[str, StringMatch]:
    out: dict[str, StringMatch] = {}
    for name, value in (raw or {}).items():
        match = _string_match(value, present=True)
        if match is not None:
            out[name] = match
    return out


def _destination(raw: Raw) -> Destination:
    return Destination(
        host=raw["host"],
        subset=raw.get("subset", ""),
        port=(raw.get("port") or {}).get("number"),
    )


def _header_ops(raw: Any) -> HeaderOperations | None:
    if raw is None:
        return None
    return HeaderOperations(
        _strmap(raw.get("set")), _strmap(raw.get("add")), _tuple(raw.get("remove"))
    )


def _headers(raw: Any) -> Headers | None:
    if raw is None:
        return None
    return Headers(_header_ops(raw.get("request")), _header_ops(raw.get("response")))


def _percent(raw: Any, fallback: Any = None) -> float:
    if raw is not None and raw.get("value") is not None:
        return float(raw["value"])
    return 100.0 if fallback is None else float(fallback)


def _http_match(raw: Raw) -> HTTPMatchRequest:
    return HTTPMatchRequest(
        name=raw.get("name", ""),
        uri=_string_match(raw.get("uri"), present=False),
        scheme=_string_match(raw.get("scheme"), present=False),
        method=_string_match(raw.get("method"), present=False),
        authority=_string_match(raw.get("authority"), present=False),
        headers=_match_map(raw.get("headers")),
        without_headers=_match_map(raw.get("withoutHeaders")),
        query_params=_match_map(raw.get("queryParams")),
        port=raw.get("port"),
        source_labels=_strmap(raw.get("sourceLabels")),
        source_namespace=raw.get("sourceNamespace", ""),
        gateways=_tuple(raw.get("gateways")),
        ignore_uri_case=bool(raw.get("ignoreUriCase", False)),
    )


def _http_route(raw: Raw) -> HTTPRoute:
    redirect = raw.get("redirect")
    direct = raw.get("directResponse")
    rewrite = raw.get("rewrite")
    retries = raw.get("retries")
    fault = raw.get("fault")
    mirror = raw.get("mirror")
    mirrors = raw.get("mirrors") or []
    mirror_percentage: float | None = None
    if mirror is None and mirrors:
        # The model carries one mirror; the first of ``mirrors`` stands for it.
        mirror = mirrors[0]["destination"]
        if mirrors[0].get("percentage") is not None:
            mirror_percentage = _percent(mirrors[0]["percentage"])
    elif raw.get("mirrorPercentage") is not None:
        mirror_percentage = _percent(raw["mirrorPercentage"])
    else:
        legacy = raw.get("mirrorPercent", raw.get("mirror_percent"))
        mirror_percentage = None if legacy is None else float(legacy)
    body: str | None = None
    if direct is not None and direct.get("body") is not None:
        b = direct["body"]
        if "string" in b:
            body = b["string"]
        elif "bytes" in b:
            body = base64.b64decode(b["bytes"]).decode("utf-8", errors="replace")
    delay = (fault or {}).get("delay")
    abort = (fault or {}).get("abort")
    regex_rewrite = (rewrite or {}).get("uriRegexRewrite")
    return HTTPRoute(
        name=raw.get("name", ""),
        match=tuple(_http_match(m) for m in raw.get("match") or ()),
        route=tuple(
            HTTPRouteDestination(
                _destination(r["destination"]), r.get("weight"), _headers(r.get("headers"))
            )
            for r in raw.get("route") or ()
        ),
        redirect=None
        if redirect is None
        else HTTPRedirect(
            uri=redirect.get("uri", ""),
            authority=redirect.get("authority", ""),
            port=redirect.get("port"),
            scheme=redirect.get("scheme", ""),
            redirect_code=redirect.get("redirectCode") or 301,
        ),
        direct_response=None if direct is None else HTTPDirectResponse(direct["status"], body),
        rewrite=None
        if rewrite is None
        else HTTPRewrite(
            uri=rewrite.get("uri", ""),
            authority=rewrite.get("authority", ""),
            uri_regex=None
            if regex_rewrite is None
            else (regex_rewrite.get("match", ""), regex_rewrite.get("rewrite", "")),
        ),
        timeout=_seconds(raw.get("timeout")),
        retries=None
        if retries is None
        else HTTPRetry(
            attempts=retries.get("attempts", 0),
            per_try_timeout=_seconds(retries.get("perTryTimeout")),
            retry_on=retries.get("retryOn", ""),
            retry_remote_localities=bool(retries.get("retryRemoteLocalities", False)),
        ),
        fault=None
        if fault is None
        else HTTPFaultInjection(
            delay=None
            if delay is None
            else FaultDelay(
                fixed_delay=_seconds(delay.get("fixedDelay", delay.get("exponentialDelay"))) or 0.0,
                percentage=_percent(delay.get("percentage"), delay.get("percent")),
            ),
            abort=None
            if abort is None
            else FaultAbort(
                http_status=abort.get("httpStatus"),
                grpc_status=abort.get("grpcStatus"),
                percentage=_percent(abort.get("percentage")),
            ),
        ),
        mirror=None if mirror is None else _destination(mirror),
        mirror_percentage=mirror_percentage,
        headers=_headers(raw.get("headers")),
        cors_policy=raw.get("corsPolicy"),
    )


def _l4_match(m: Mapping[str, Any]) -> dict[str, Any]:
    """The fields L4 and TLS match blocks share."""
    return {
        "destination_subnets": _tuple(m.get("destinationSubnets")),
        "port": m.get("port"),
        "source_labels": _strmap(m.get("sourceLabels")),
        "source_namespace": m.get("sourceNamespace", ""),
        "gateways": _tuple(m.get("gateways")),
    }


def _l4_routes(raw: Any) -> tuple[RouteDestination, ...]:
    return tuple(
        RouteDestination(_destination(r["destination"]), r.get("weight")) for r in raw or ()
    )


def _virtual_service(meta: ObjectMeta, spec: Raw) -> VirtualService:
    return VirtualService(
        meta=meta,
        hosts=_tuple(spec.get("hosts")),
        gateways=_tuple(spec.get("gateways")),
        http=tuple(_http_route(r) for r in spec.get("http") or ()),
        tcp=tuple(
            TCPRoute(
                match=tuple(L4MatchAttributes(**_l4_match(m)) for m in r.get("match") or ()),
                route=_l4_routes(r.get("route")),
            )
            for r in spec.get("tcp") or ()
        ),
        tls=tuple(
            TLSRoute(
                match=tuple(
                    TLSMatchAttributes(sni_hosts=_tuple(m.get("sniHosts")), **_l4_match(m))
                    for m in r.get("match") or ()
                ),
                route=_l4_routes(r.get("route")),
            )
            for r in spec.get("tls") or ()
        ),
        export_to=_tuple(spec.get("exportTo")),
    )


def _traffic_policy(raw: Any) -> TrafficPolicy | None:
    if raw is None:
        return None
    return TrafficPolicy(
        load_balancer=raw.get("loadBalancer"),
        connection_pool=raw.get("connectionPool"),
        outlier_detection=raw.get("outlierDetection"),
        tls=raw.get("tls"),
        port_level_settings=tuple(raw.get("portLevelSettings") or ()),
        raw=raw,
    )


def _destination_rule(meta: ObjectMeta, spec: Raw) -> DestinationRule:
    selector = spec.get("workloadSelector")
    return DestinationRule(
        meta=meta,
        host=spec["host"],
        traffic_policy=_traffic_policy(spec.get("trafficPolicy")),
        subsets=tuple(
            Subset(s["name"], _strmap(s.get("labels")), _traffic_policy(s.get("trafficPolicy")))
            for s in spec.get("subsets") or ()
        ),
        export_to=_tuple(spec.get("exportTo")),
        workload_selector=None if selector is None else _strmap(selector.get("matchLabels")),
    )


def _gateway(meta: ObjectMeta, spec: Raw) -> Gateway:
    return Gateway(
        meta=meta,
        servers=tuple(
            Server(
                port=GatewayPort(
                    number=s["port"]["number"],
                    protocol=s["port"]["protocol"].upper(),
                    name=s["port"].get("name", ""),
                    target_port=s["port"].get("targetPort"),
                ),
                hosts=_tuple(s.get("hosts")),
                bind=s.get("bind", ""),
                name=s.get("name", ""),
                tls=s.get("tls"),
            )
            for s in spec.get("servers") or ()
        ),
        selector=_strmap(spec.get("selector")),
    )


def _service_entry(meta: ObjectMeta, spec: Raw) -> ServiceEntry:
    selector = spec.get("workloadSelector")
    return ServiceEntry(
        meta=meta,
        hosts=_tuple(spec.get("hosts")),
        ports=tuple(
            ServiceEntryPort(
                number=p["number"],
                protocol=str(p.get("protocol", "")).upper(),
                name=p.get("name", ""),
                target_port=p.get("targetPort"),
            )
            for p in spec.get("ports") or ()
        ),
        addresses=_tuple(spec.get("addresses")),
        location=spec.get("location", "MESH_EXTERNAL"),
        resolution=spec.get("resolution", "NONE"),
        endpoints=tuple(
            WorkloadEntry(
                address=e.get("address", ""),
                ports=dict(e.get("ports") or {}),
                labels=_strmap(e.get("labels")),
                network=e.get("network", ""),
                locality=e.get("locality", ""),
                weight=e.get("weight"),
                service_account=e.get("serviceAccount", ""),
            )
            for e in spec.get("endpoints") or ()
        ),
        workload_selector=None if selector is None else _strmap(selector.get("labels")),
        export_to=_tuple(spec.get("exportTo")),
        subject_alt_names=_tuple(spec.get("subjectAltNames")),
    )


def _peer_authentication(meta: ObjectMeta, spec: Raw) -> PeerAuthentication:
    labels = (spec.get("selector") or {}).get("matchLabels")
    return PeerAuthentication(
        meta=meta,
        selector=_strmap(labels) if labels else None,
        mode=(spec.get("mtls") or {}).get("mode", "UNSET"),
        # JSON map keys are strings; the model keys ports by number.
        port_level_mtls={
            int(port): (mtls or {}).get("mode", "UNSET")
            for port, mtls in (spec.get("portLevelMtls") or {}).items()
        },
    )


def _selector(spec: Raw) -> dict[str, str] | None:
    labels = (spec.get("selector") or {}).get("matchLabels")
    return _strmap(labels) if labels else None


def _target_refs(spec: Raw) -> tuple[PolicyTargetRef, ...]:
    refs = list(spec.get("targetRefs") or ())
    if spec.get("targetRef"):
        refs.insert(0, spec["targetRef"])
    return tuple(PolicyTargetRef(r["kind"], r["name"], r.get("group", "")) for r in refs)


_SOURCE_FIELDS = {
    "principals": "principals",
    "notPrincipals": "not_principals",
    "trustDomains": "trust_domains",
    "notTrustDomains": "not_trust_domains",
    "requestPrincipals": "request_principals",
    "notRequestPrincipals": "not_request_principals",
    "namespaces": "namespaces",
    "notNamespaces": "not_namespaces",
    "serviceAccounts": "service_accounts",
    "notServiceAccounts": "not_service_accounts",
    "ipBlocks": "ip_blocks",
    "notIpBlocks": "not_ip_blocks",
    "remoteIpBlocks": "remote_ip_blocks",
    "notRemoteIpBlocks": "not_remote_ip_blocks",
}
_OPERATION_FIELDS = {
    "hosts": "hosts",
    "notHosts": "not_hosts",
    "ports": "ports",
    "notPorts": "not_ports",
    "methods": "methods",
    "notMethods": "not_methods",
    "paths": "paths",
    "notPaths": "not_paths",
}


def _authz_rule(raw: Raw) -> AuthzRule:
    return AuthzRule(
        sources=tuple(
            AuthzSource(**{f: _tuple(f_raw["source"].get(k)) for k, f in _SOURCE_FIELDS.items()})
            for f_raw in raw.get("from") or ()
        ),
        operations=tuple(
            AuthzOperation(
                **{f: _tuple(t_raw["operation"].get(k)) for k, f in _OPERATION_FIELDS.items()}
            )
            for t_raw in raw.get("to") or ()
        ),
        when=tuple(
            AuthzCondition(c["key"], _tuple(c.get("values")), _tuple(c.get("notValues")))
            for c in raw.get("when") or ()
        ),
    )


def _authorization_policy(meta: ObjectMeta, spec: Raw) -> AuthorizationPolicy:
    action = spec.get("action", "ALLOW")
    annotation = meta.annotations.get(validate_security.DRY_RUN_ANNOTATION, "")
    dry_run = validate_security.parse_bool(annotation)
    return AuthorizationPolicy(
        meta=meta,
        action=action,
        rules=tuple(_authz_rule(r) for r in spec.get("rules") or ()),
        selector=_selector(spec),
        target_refs=_target_refs(spec),
        provider=(spec.get("provider") or {}).get("name", ""),
        # istiod enforces a policy whose annotation does not parse.
        dry_run=bool(dry_run) and action in ("ALLOW", "DENY"),
    )


def _jwt_rule(raw: Raw) -> JWTRule:
    return JWTRule(
        issuer=raw.get("issuer", ""),
        audiences=_tuple(raw.get("audiences")),
        jwks_uri=raw.get("jwksUri") or raw.get("jwks_uri") or "",
        jwks=raw.get("jwks", ""),
        from_headers=tuple(
            JWTHeader(h["name"], h.get("prefix", "")) for h in raw.get("fromHeaders") or ()
        ),
        from_params=_tuple(raw.get("fromParams")),
        from_cookies=_tuple(raw.get("fromCookies")),
        forward_original_token=raw.get("forwardOriginalToken") is True,
        output_payload_to_header=raw.get("outputPayloadToHeader", ""),
        output_claim_to_headers=tuple(
            ClaimToHeader(c["header"], c["claim"]) for c in raw.get("outputClaimToHeaders") or ()
        ),
        timeout=_seconds(raw.get("timeout")),
        space_delimited_claims=_tuple(raw.get("spaceDelimitedClaims")),
    )


def _request_authentication(meta: ObjectMeta, spec: Raw) -> RequestAuthentication:
    return RequestAuthentication(
        meta=meta,
        jwt_rules=tuple(_jwt_rule(r) for r in spec.get("jwtRules") or ()),
        selector=_selector(spec),
        target_refs=_target_refs(spec),
    )


_ISTIO_BUILDERS: Mapping[str, Callable[[ObjectMeta, Raw], Spec]] = {
    "VirtualService": _virtual_service,
    "DestinationRule": _destination_rule,
    "Gateway": _gateway,
    "ServiceEntry": _service_entry,
    "PeerAuthentication": _peer_authentication,
    "AuthorizationPolicy": _authorization_policy,
    "RequestAuthentication": _request_authentication,
}


def _legacy_port(raw: Raw) -> int | str:
    number = raw.get("number")
    return int(number) if number is not None else str(raw["name"])


def _legacy_policy(meta: ObjectMeta, kind: str, spec: Raw) -> LegacyAuthenticationPolicy:
    return LegacyAuthenticationPolicy(
        meta=meta,
        kind="MeshPolicy" if kind == "MeshPolicy" else "Policy",
        mode=validate_security.legacy_peer_mode(spec),
        targets=tuple(
            LegacyTarget(t["name"], tuple(_legacy_port(p) for p in t.get("ports") or ()))
            for t in spec.get("targets") or ()
        ),
        origins=tuple(_legacy_jwt(o["jwt"]) for o in spec.get("origins") or ()),
        origin_is_optional=spec.get("originIsOptional") is True,
        use_origin=spec.get("principalBinding") == "USE_ORIGIN",
    )


def _legacy_jwt(raw: Raw) -> JWTRule:
    # jwtHeaders were read as-is or after "Bearer " (Istio 1.x); the modern
    # fromHeaders prefix strips one of them, so "Bearer " is the faithful one
    # for Authorization and nothing for a custom header.
    headers = tuple(
        JWTHeader(h, "Bearer " if h.lower() == "authorization" else "")
        for h in raw.get("jwtHeaders") or ()
    )
    return JWTRule(
        issuer=raw.get("issuer") or "",
        audiences=_tuple(raw.get("audiences")),
        jwks_uri=raw.get("jwksUri") or "",
        jwks=raw.get("jwks") or "",
        from_headers=headers,
        from_params=_tuple(raw.get("jwtParams")),
    )


# ---------------------------------------------------------------------------
# Kubernetes builders


def _probe(raw: Any) -> Probe | None:
    if raw is None:
        return None
    http_get = raw.get("httpGet")
    tcp = raw.get("tcpSocket")
    exec_ = raw.get("exec")
    return Probe(
        http_get=None
        if http_get is None
        else HTTPGetAction(
            port=http_get["port"],
            path=http_get.get("path", "/"),
            scheme=http_get.get("scheme", "HTTP"),
        ),
        tcp_socket_port=None if tcp is None else tcp.get("port"),
        exec_command=None if exec_ is None else tuple(exec_.get("command") or ()),
        initial_delay_seconds=raw.get("initialDelaySeconds", 0),
        period_seconds=raw.get("periodSeconds", 10),
        timeout_seconds=raw.get("timeoutSeconds", 1),
        failure_threshold=raw.get("failureThreshold", 3),
    )


def _container(c: Raw) -> Container:
    return Container(
        name=c["name"],
        image=c.get("image", ""),
        command=_tuple(c.get("command")),
        args=_tuple(c.get("args")),
        env=tuple(EnvVar(e["name"], e.get("value") or "") for e in c.get("env") or ()),
        ports=tuple(
            ContainerPort(p["containerPort"], p.get("name", ""), p.get("protocol", "TCP"))
            for p in c.get("ports") or ()
        ),
        readiness_probe=_probe(c.get("readinessProbe")),
        liveness_probe=_probe(c.get("livenessProbe")),
        working_dir=c.get("workingDir"),
        raw=c,
    )


def _pod_spec(raw: Raw) -> PodSpec:
    grace = raw.get("terminationGracePeriodSeconds")
    return PodSpec(
        containers=tuple(_container(c) for c in raw.get("containers") or ()),
        init_containers=tuple(_container(c) for c in raw.get("initContainers") or ()),
        termination_grace_period_seconds=30.0 if grace is None else float(grace),
        volumes=tuple(raw.get("volumes") or ()),
        service_account_name=raw.get("serviceAccountName")
        or raw.get("serviceAccount")
        or "default",
        host_network=bool(raw.get("hostNetwork", False)),
        restart_policy=raw.get("restartPolicy") or "Always",
        hostname=raw.get("hostname") or "",
        subdomain=raw.get("subdomain") or "",
    )


def _namespace(meta: ObjectMeta, body: Raw) -> Namespace:
    return Namespace(meta)


def _service_account(meta: ObjectMeta, body: Raw) -> ServiceAccount:
    return ServiceAccount(meta)


def _secret(meta: ObjectMeta, body: Raw) -> Secret:
    data = {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
    # stringData wins over data, as the API server merges it.
    data.update({k: v.encode() for k, v in (body.get("stringData") or {}).items()})
    return Secret(meta, body.get("type") or "Opaque", data)


def _service(meta: ObjectMeta, body: Raw) -> Service:
    spec = body.get("spec") or {}
    selector = spec.get("selector")
    return Service(
        meta=meta,
        ports=tuple(
            ServicePort(
                port=p["port"],
                name=p.get("name", ""),
                target_port=p.get("targetPort"),
                protocol=p.get("protocol", "TCP"),
                app_protocol=p.get("appProtocol"),
            )
            for p in spec.get("ports") or ()
        ),
        selector=None if selector is None else _strmap(selector),
        type=spec.get("type", "ClusterIP"),
        cluster_ip=spec.get("clusterIP"),
        external_name=spec.get("externalName"),
    )


def _pod(meta: ObjectMeta, body: Raw) -> Pod:
    return Pod(meta, _pod_spec(body["spec"]))


def _controller(kind: str) -> Callable[[ObjectMeta, Raw], PodController]:
    def build(meta: ObjectMeta, body: Raw) -> PodController:
        spec = body["spec"]
        template = spec["template"]
        tmeta = template.get("metadata") or {}
        replicas = spec.get("completions" if kind == "Job" else "replicas")
        return PodController(
            meta=meta,
            replicas=1 if replicas is None or kind == "DaemonSet" else replicas,
            selector=_strmap((spec.get("selector") or {}).get("matchLabels")),
            template=PodTemplate(
                labels=_strmap(tmeta.get("labels")),
                annotations=_strmap(tmeta.get("annotations")),
                spec=_pod_spec(template.get("spec") or {}),
            ),
            kind=kind,
            service_name=spec.get("serviceName") or "",
            ordered=spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady",
            backoff_limit=spec.get("backoffLimit", 6),
        )

    return build


def _config_map(meta: ObjectMeta, body: Raw) -> ConfigMap:
    data = {k: str(v).encode() for k, v in (body.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (body.get("binaryData") or {}).items()})
    return ConfigMap(meta, data)


_KUBE_BUILDERS: Mapping[str, Callable[[ObjectMeta, Raw], Spec]] = {
    "Namespace": _namespace,
    "ServiceAccount": _service_account,
    "Secret": _secret,
    "Service": _service,
    "Pod": _pod,
    "ConfigMap": _config_map,
    **{
        kind: _controller(kind)
        for kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job")
    },
}
