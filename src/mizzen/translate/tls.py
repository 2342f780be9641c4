"""Transport sockets: Istio mutual TLS between sidecars, and plaintext.

Certificates never appear in the config: every TLS context names the
workload's secrets by Istio's SDS names (``default`` for the key and chain,
``ROOTCA`` for the trust bundle), which the pod's agent serves to its own
Envoy over the ``sds-grpc`` cluster of the bootstrap.

ALPN is how the two sides recognise each other. The client offers
``istio`` (and ``h2`` first for HTTP/2 clusters); the server matches its
mTLS filter chain on the ``istio`` family of ALPN values and itself offers
only ``h2`` and ``http/1.1``, so a plain ``istio`` offer negotiates nothing
and the HTTP codec falls back to inspecting the first bytes. On a port of
undeclared protocol the bytes inside TLS cannot be sniffed, so the client
says what it carries as Istio's proxies do: ``istio-http/1.1`` for HTTP
(set per request, see ``filters.alpn_override``), ``istio`` for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from mizzen.registry.pods import TLS_MODE
from mizzen.translate.filters import pack

SDS_CLUSTER = "sds-grpc"
CERT_SECRET = "default"
ROOT_SECRET = "ROOTCA"

_DNS = common_pb2.SubjectAltNameMatcher.DNS

TLS_SOCKET = "envoy.transport_sockets.tls"

# What a client sidecar offers, and what a server's mTLS chain accepts (the
# whole family Istio proxies use, so that any Istio-style client matches).
CLIENT_ALPN = ("istio",)
CLIENT_ALPN_H2 = ("istio", "h2")
ISTIO_HTTP_ALPNS = ("istio-http/1.0", "istio-http/1.1", "istio-h2")
ISTIO_TCP_ALPNS = ("istio", "istio-peer-exchange")
ISTIO_ALPNS = ISTIO_TCP_ALPNS + ISTIO_HTTP_ALPNS
# What an HTTP request on a sniffed port offers in place of CLIENT_ALPN.
CLIENT_HTTP_ALPN = "istio-http/1.1"
SERVER_HTTP_ALPN = ("h2", "http/1.1")

# Endpoint metadata that selects the mTLS transport socket (Istio's key).
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
TLS_MODE_KEY = "tlsMode"
TLS_MODE_ISTIO = "istio"
TLS_MODE_LABEL = TLS_MODE  # set on injected pods by the registry


def sni(port: int, hostname: str, subset: str = "") -> str:
    """Istio's SNI for an outbound cluster: ``outbound_.9080_.v1_.reviews.default.svc...``."""
    return f"outbound_.{port}_.{subset}_.{hostname}"


def sds_config_source() -> Any:
    source = config_source_pb2.ConfigSource(
        resource_api_version=config_source_pb2.V3,
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            set_node_on_first_message_only=True,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)
                )
            ],
        ),
    )
    # Wait for the secret rather than start with no certificate at all.
    source.initial_fetch_timeout.FromSeconds(0)
    return source


def _secret(name: str) -> Any:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=sds_config_source())


def _common(alpn: Sequence[str], sans: Sequence[str] = (), dns_sans: Sequence[str] = ()) -> Any:
    context = tls_pb2.CommonTlsContext(
        tls_params=common_pb2.TlsParameters(
            tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2,
            tls_maximum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
        ),
        alpn_protocols=list(alpn),
        tls_certificate_sds_secret_configs=[_secret(CERT_SECRET)],
    )
    combined = context.combined_validation_context
    combined.default_validation_context.SetInParent()
    matchers = combined.default_validation_context.match_typed_subject_alt_names
    for kind, names in ((common_pb2.SubjectAltNameMatcher.URI, sans), (_DNS, dns_sans)):
        for san in names:
            matchers.add(san_type=kind, matcher=string_pb2.StringMatcher(exact=san))
    combined.validation_context_sds_secret_config.CopyFrom(_secret(ROOT_SECRET))
    return context


def transport_socket(name: str, config: Any) -> Any:
    return base_pb2.TransportSocket(name=name, typed_config=pack(config))


def upstream_context(
    sni_name: str, alpn: Sequence[str], sans: Sequence[str] = (), dns_sans: Sequence[str] = ()
) -> Any:
    """A client TLS context with the workload's certificate, trusting the
    mesh root, checking the server's names when given."""
    return tls_pb2.UpstreamTlsContext(
        common_tls_context=_common(alpn, sans, dns_sans), sni=sni_name
    )


def istio_upstream(sni_name: str, sans: Sequence[str], *, http2: bool = False) -> Any:
    """ISTIO_MUTUAL from a client: the server's SPIFFE identity is checked
    when the service's identities are known."""
    context = upstream_context(sni_name, CLIENT_ALPN_H2 if http2 else CLIENT_ALPN, sans)
    return transport_socket(TLS_SOCKET, context)


def istio_downstream(alpn: Sequence[str] = ()) -> Any:
    """The server side of ISTIO_MUTUAL: a client certificate is required and
    must chain to the mesh root; any mesh identity is accepted here
    (authorization decides who may do what)."""
    context = tls_pb2.DownstreamTlsContext(common_tls_context=_common(alpn))
    context.require_client_certificate.value = True
    return transport_socket(TLS_SOCKET, context)
