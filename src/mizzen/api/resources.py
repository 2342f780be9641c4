"""Typed, immutable models of the Kubernetes and Istio resources Mizzen reads.

These dataclasses are the contract between parsing (``mizzen.api.parse``) and
everything downstream (config store, registry, translation). They hold only
validated data: anything that reaches a model has passed both the CRD-schema
layer and istiod's semantic checks, so consumers never re-validate.

Conventions:
- lists are tuples, maps are ``Mapping`` (plain dicts, never mutated);
- field names are snake_case versions of the YAML names;
- durations are seconds as ``float``;
- optional Istio blocks are ``None`` when absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# ---------------------------------------------------------------------------
# Envelope


@dataclass(frozen=True)
class Source:
    """Where a resource came from: file path and 0-based document index."""

    file: str
    doc: int

    def __str__(self) -> str:
        return f"{self.file}:{self.doc}"


@dataclass(frozen=True)
class GroupVersionKind:
    group: str  # "" for the Kubernetes core group
    version: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    namespace: str  # defaulted to "default" for namespaced kinds; "" for cluster-scoped
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceKey:
    """Identity of a resource in the config store. Version is not part of it:
    v1alpha3, v1beta1 and v1 of one Istio kind name the same object."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


# ---------------------------------------------------------------------------
# Kubernetes core / apps


@dataclass(frozen=True)
class Namespace:
    meta: ObjectMeta


@dataclass(frozen=True)
class ServiceAccount:
    meta: ObjectMeta


@dataclass(frozen=True)
class Secret:
    meta: ObjectMeta
    type: str
    data: Mapping[str, bytes]  # stringData merged in, base64 decoded


@dataclass(frozen=True)
class ConfigMap:
    meta: ObjectMeta
    data: Mapping[str, bytes]  # binaryData merged in, base64 decoded


@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str = ""
    target_port: int | str | None = None  # None: same as port
    protocol: str = "TCP"  # TCP, UDP, SCTP
    app_protocol: str | None = None


@dataclass(frozen=True)
class Service:
    meta: ObjectMeta
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str] | None = None  # None: no selector (manual endpoints)
    type: str = "ClusterIP"
    cluster_ip: str | None = None  # "None" for headless
    external_name: str | None = None


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True)
class HTTPGetAction:
    port: int | str
    path: str = "/"
    scheme: str = "HTTP"


@dataclass(frozen=True)
class Probe:
    http_get: HTTPGetAction | None = None
    tcp_socket_port: int | str | None = None
    exec_command: tuple[str, ...] | None = None
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str = ""


@dataclass(frozen=True)
class Container:
    name: str
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    working_dir: str | None = None
    # The container as written (camelCase): what the typed fields leave out
    # (env valueFrom, envFrom, volumeMounts, lifecycle) is read from here.
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PodSpec:
    containers: tuple[Container, ...]
    service_account_name: str = "default"
    host_network: bool = False
    restart_policy: str = "Always"  # Always, OnFailure, Never
    hostname: str = ""  # with subdomain: <hostname>.<subdomain>.<ns>.svc.<domain>
    subdomain: str = ""
    init_containers: tuple[Container, ...] = ()
    termination_grace_period_seconds: float = 30.0
    volumes: tuple[Mapping[str, Any], ...] = ()  # as written (camelCase)


@dataclass(frozen=True)
class PodTemplate:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec: PodSpec


@dataclass(frozen=True)
class PodController:
    """What makes pods from a template: a Deployment, ReplicaSet,
    StatefulSet, DaemonSet or Job (``kind``)."""

    meta: ObjectMeta
    replicas: int  # a Job's completions; 1 for a DaemonSet (one node)
    selector: Mapping[str, str]  # matchLabels
    template: PodTemplate
    kind: str = "Deployment"
    # StatefulSet: the headless Service that names its pods, and whether pods
    # start one after the other (OrderedReady) or all at once (Parallel).
    service_name: str = ""
    ordered: bool = True
    backoff_limit: int = 6  # Job: failed attempts retried before it fails


@dataclass(frozen=True)
class Pod:
    meta: ObjectMeta
    spec: PodSpec


# ---------------------------------------------------------------------------
# Istio networking


@dataclass(frozen=True)
class StringMatch:
    """Istio StringMatch. ``present`` is the empty match ``{}`` in ``headers``
    and ``queryParams``: the header must exist, any value."""

    kind: Literal["exact", "prefix", "regex", "present"]
    value: str = ""


@dataclass(frozen=True)
class HTTPMatchRequest:
    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: Mapping[str, StringMatch] = field(default_factory=dict)
    without_headers: Mapping[str, StringMatch] = field(default_factory=dict)
    query_params: Mapping[str, StringMatch] = field(default_factory=dict)
    port: int | None = None
    source_labels: Mapping[str, str] = field(default_factory=dict)
    source_namespace: str = ""
    gateways: tuple[str, ...] = ()
    ignore_uri_case: bool = False


@dataclass(frozen=True)
class PortSelector:
    number: int


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str = ""
    port: int | None = None


@dataclass(frozen=True)
class HeaderOperations:
    set: Mapping[str, str] = field(default_factory=dict)
    add: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Headers:
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


@dataclass(frozen=True)
class HTTPRouteDestination:
    destination: Destination
    weight: int | None = None  # None: not given (single destination gets 100)
    headers: Headers | None = None


@dataclass(frozen=True)
class HTTPRedirect:
    uri: str = ""
    authority: str = ""
    port: int | None = None
    scheme: str = ""
    redirect_code: int = 301


@dataclass(frozen=True)
class HTTPDirectResponse:
    status: int
    body: str | None = None


@dataclass(frozen=True)
class HTTPRewrite:
    uri: str = ""
    authority: str = ""
    uri_regex: tuple[str, str] | None = None  # (match, rewrite)


@dataclass(frozen=True)
class HTTPRetry:
    attempts: int
    per_try_timeout: float | None = None
    retry_on: str = ""
    retry_remote_localities: bool = False


@dataclass(frozen=True)
class FaultDelay:
    fixed_delay: float
    percentage: float = 100.0


@dataclass(frozen=True)
class FaultAbort:
    http_status: int | None = None
    grpc_status: str | None = None
    percentage: float = 100.0


@dataclass(frozen=True)
class HTTPFaultInjection:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True)
class HTTPRoute:
    name: str = ""
    match: tuple[HTTPMatchRequest, ...] = ()  # empty: matches everything
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    rewrite: HTTPRewrite | None = None
    timeout: float | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirror_percentage: float | None = None
    headers: Headers | None = None
    cors_policy: Mapping[str, Any] | None = None  # kept raw until translated


@dataclass(frozen=True)
class L4MatchAttributes:
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: Mapping[str, str] = field(default_factory=dict)
    source_namespace: str = ""
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteDestination:
    destination: Destination
    weight: int | None = None


@dataclass(frozen=True)
class TCPRoute:
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True)
class TLSMatchAttributes:
    sni_hosts: tuple[str, ...]
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: Mapping[str, str] = field(default_factory=dict)
    source_namespace: str = ""
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class TLSRoute:
    match: tuple[TLSMatchAttributes, ...]
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True)
class VirtualService:
    meta: ObjectMeta
    hosts: tuple[str, ...]
    gateways: tuple[str, ...] = ()  # empty means ("mesh",)
    http: tuple[HTTPRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    export_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrafficPolicy:
    """DestinationRule traffic policy. Typed where translation reads it today;
    the rest stays in ``raw`` (validated, camelCase keys) until it is built."""

    load_balancer: Mapping[str, Any] | None = None
    connection_pool: Mapping[str, Any] | None = None
    outlier_detection: Mapping[str, Any] | None = None
    tls: Mapping[str, Any] | None = None
    port_level_settings: tuple[Mapping[str, Any], ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Subset:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True)
class DestinationRule:
    meta: ObjectMeta
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: Mapping[str, str] | None = None


@dataclass(frozen=True)
class GatewayPort:
    number: int
    protocol: str  # upper-cased: HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS
    name: str = ""
    target_port: int | None = None


@dataclass(frozen=True)
class Server:
    port: GatewayPort
    hosts: tuple[str, ...]
    bind: str = ""
    name: str = ""
    tls: Mapping[str, Any] | None = None  # ServerTLSSettings, camelCase keys


@dataclass(frozen=True)
class Gateway:
    meta: ObjectMeta
    servers: tuple[Server, ...]
    selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceEntryPort:
    number: int
    protocol: str = ""  # upper-cased; "" when not given
    name: str = ""
    target_port: int | None = None


@dataclass(frozen=True)
class WorkloadEntry:
    address: str = ""
    ports: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    locality: str = ""
    weight: int | None = None
    service_account: str = ""


@dataclass(frozen=True)
class ServiceEntry:
    meta: ObjectMeta
    hosts: tuple[str, ...]
    ports: tuple[ServiceEntryPort, ...] = ()
    addresses: tuple[str, ...] = ()
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] = "MESH_EXTERNAL"
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] = "NONE"
    endpoints: tuple[WorkloadEntry, ...] = ()
    workload_selector: Mapping[str, str] | None = None
    export_to: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# Istio security: peer (mutual TLS) authentication

MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


@dataclass(frozen=True)
class PeerAuthentication:
    """security.istio.io PeerAuthentication (v1 and v1beta1)."""

    meta: ObjectMeta
    # matchLabels; None when there is no selector or it has no matchLabels
    # (then the policy is namespace-wide, or mesh-wide in the root namespace)
    selector: Mapping[str, str] | None = None
    mode: MtlsMode = "UNSET"  # "UNSET" when spec.mtls or its mode is absent
    # keyed by workload (container) port, not Service port
    port_level_mtls: Mapping[int, MtlsMode] = field(default_factory=dict)


@dataclass(frozen=True)
class LegacyTarget:
    """One ``targets`` entry of an authentication.istio.io/v1alpha1 Policy."""

    name: str  # a Service name in the policy's namespace
    ports: tuple[int | str, ...] = ()  # Service port number or name; empty = all ports


@dataclass(frozen=True)
class LegacyAuthenticationPolicy:
    """authentication.istio.io/v1alpha1 MeshPolicy (cluster-scoped, named
    ``default``) or Policy (namespaced), as Istio 1.0-1.4 read them. Only the
    peer part is kept as data: ``mode`` is what ``peers`` and
    ``peerIsOptional`` mean (no mTLS peer method: DISABLE)."""

    meta: ObjectMeta
    kind: Literal["MeshPolicy", "Policy"]
    mode: MtlsMode
    targets: tuple[LegacyTarget, ...] = ()
    # origins[].jwt, and whether a request without a token still passes
    # (originIsOptional); principalBinding USE_ORIGIN is ``use_origin``.
    origins: tuple[JWTRule, ...] = ()
    origin_is_optional: bool = False
    use_origin: bool = False


# ---------------------------------------------------------------------------
# Istio security: authorization and end-user (JWT) authentication

AuthzAction = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


@dataclass(frozen=True)
class AuthzSource:
    """``rules[].from[].source``: every list set must match (AND); within a
    list any value (OR); ``not_*`` lists must all miss."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    trust_domains: tuple[str, ...] = ()
    not_trust_domains: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    not_service_accounts: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzOperation:
    """``rules[].to[].operation``."""

    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzCondition:
    """``rules[].when[]``: ``key`` is one of Istio's attribute names."""

    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzRule:
    """One rule: any ``sources`` (from) and any ``operations`` (to) and every
    ``when`` condition; an empty list matches everything."""

    sources: tuple[AuthzSource, ...] = ()
    operations: tuple[AuthzOperation, ...] = ()
    when: tuple[AuthzCondition, ...] = ()


@dataclass(frozen=True)
class PolicyTargetRef:
    """``targetRef``/``targetRefs[]``: a Service, ServiceEntry or Gateway API
    Gateway(Class) in the policy's namespace."""

    kind: str
    name: str
    group: str = ""


@dataclass(frozen=True)
class AuthorizationPolicy:
    """security.istio.io AuthorizationPolicy (v1 and v1beta1). No rules is
    Istio's "allow nothing" for ALLOW; ``rules: [{}]`` matches every request."""

    meta: ObjectMeta
    action: AuthzAction = "ALLOW"
    rules: tuple[AuthzRule, ...] = ()
    selector: Mapping[str, str] | None = None  # matchLabels; None: namespace/mesh-wide
    target_refs: tuple[PolicyTargetRef, ...] = ()
    provider: str = ""  # CUSTOM: an extensionProviders name in the mesh config
    dry_run: bool = False  # istio.io/dry-run: decisions are only logged


@dataclass(frozen=True)
class JWTHeader:
    name: str
    prefix: str = ""


@dataclass(frozen=True)
class ClaimToHeader:
    header: str
    claim: str


@dataclass(frozen=True)
class JWTRule:
    """One ``jwtRules`` entry of a RequestAuthentication."""

    issuer: str = ""
    audiences: tuple[str, ...] = ()
    jwks_uri: str = ""
    jwks: str = ""  # inline JSON Web Key Set
    from_headers: tuple[JWTHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    forward_original_token: bool = False
    output_payload_to_header: str = ""
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    timeout: float | None = None  # seconds, for fetching jwks_uri
    space_delimited_claims: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestAuthentication:
    """security.istio.io RequestAuthentication (v1 and v1beta1)."""

    meta: ObjectMeta
    jwt_rules: tuple[JWTRule, ...] = ()
    selector: Mapping[str, str] | None = None
    target_refs: tuple[PolicyTargetRef, ...] = ()


# ---------------------------------------------------------------------------
# Mixer policy (config.istio.io/v1alpha2, Istio 1.0-1.4): the list checker
# adapter, its listentry template and the rule that binds them.


@dataclass(frozen=True)
class MixerListChecker:
    """A ``listchecker`` handler: a whitelist (or ``blacklist``) of values."""

    meta: ObjectMeta
    overrides: tuple[str, ...] = ()
    blacklist: bool = False
    entry_type: str = "STRINGS"  # STRINGS, CASE_INSENSITIVE_STRINGS, IP_ADDRESSES, REGEX
    provider_url: str = ""


@dataclass(frozen=True)
class MixerListEntry:
    """A ``listentry`` instance: the attribute expression checked."""

    meta: ObjectMeta
    value: str


@dataclass(frozen=True)
class MixerAction:
    handler: str  # "name.kind" or "name.kind.namespace", or "name"
    instances: tuple[str, ...] = ()


@dataclass(frozen=True)
class MixerRule:
    """A ``rule``: when ``match`` holds, run the actions' handlers."""

    meta: ObjectMeta
    match: str = ""
    actions: tuple[MixerAction, ...] = ()


Spec = (
    Namespace
    | ServiceAccount
    | Secret
    | Service
    | PodController
    | ConfigMap
    | Pod
    | VirtualService
    | DestinationRule
    | Gateway
    | ServiceEntry
    | PeerAuthentication
    | LegacyAuthenticationPolicy
    | AuthorizationPolicy
    | RequestAuthentication
    | MixerListChecker
    | MixerListEntry
    | MixerRule
)


@dataclass(frozen=True)
class Resource:
    """One accepted resource: identity, where it came from, and its model."""

    gvk: GroupVersionKind
    source: Source
    obj: Spec

    @property
    def meta(self) -> ObjectMeta:
        return self.obj.meta

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.gvk.group, self.gvk.kind, self.meta.namespace, self.meta.name)
