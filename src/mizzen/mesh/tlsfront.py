"""The control plane's secure port, 15012: an Envoy in front of the Python
gRPC server.

Istio serves ADS and its certificate service on one TLS port where a
client certificate is optional: a new pod has none yet when it asks for
one, and a proxy proves its identity with it afterwards. grpc's Python
server can only require client certificates or ignore them, so this Envoy
terminates TLS instead (client certificate requested, verified against the
mesh root when presented, the connection refused when it does not verify)
and hands each request to the control plane over a Unix socket, with the
verified identity in ``X-Forwarded-Client-Cert`` (``SANITIZE_SET``: whatever
a client sent in that header is replaced). Only this Envoy can reach that
socket, so the control plane trusts the header there and nowhere else.

Pure: renders the bootstrap; the daemon writes it and runs the process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SECURE_PORT = 15012
BACKEND_CLUSTER = "control-plane"
_TYPE = "type.googleapis.com/"
_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_TLS = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_UNLIMITED = 1_000_000


def _file(path: Path) -> dict[str, str]:
    return {"filename": str(path)}


def front_bootstrap(
    listen_address: str,
    cert_chain: Path,
    private_key: Path,
    trust_bundle: Path,
    backend_socket: Path,
    admin_socket: Path,
    port: int = SECURE_PORT,
) -> dict[str, Any]:
    tls_context = {
        "@type": _TYPE + _TLS,
        "require_client_certificate": False,
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "tls_certificates": [
                {"certificate_chain": _file(cert_chain), "private_key": _file(private_key)}
            ],
            # Verified when presented; a client without one still gets TLS.
            "validation_context": {"trusted_ca": _file(trust_bundle)},
        },
    }
    manager = {
        "@type": _TYPE + _HCM,
        "stat_prefix": "xds_tls",
        "codec_type": "HTTP2",
        # ADS streams live as long as the pod: no idle or request timeouts.
        "stream_idle_timeout": "0s",
        "request_timeout": "0s",
        "use_remote_address": True,
        "forward_client_cert_details": "SANITIZE_SET",
        "set_current_client_cert_details": {"uri": True},
        "http2_protocol_options": {"max_concurrent_streams": 1024},
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "control-plane",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": BACKEND_CLUSTER, "timeout": "0s"},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _TYPE + "envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    listener = {
        "name": "xds-tls",
        "address": {"socket_address": {"address": listen_address, "port_value": port}},
        "filter_chains": [
            {
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": tls_context,
                },
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ],
            }
        ],
    }
    limits = {
        "max_connections": _UNLIMITED,
        "max_pending_requests": _UNLIMITED,
        "max_requests": _UNLIMITED,
    }
    backend = {
        "name": BACKEND_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": BACKEND_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"pipe": {"path": str(backend_socket)}}}}
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": {
            _HTTP_OPTIONS: {
                "@type": _TYPE + _HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        # One proxy's stream is one request: the defaults (1024) would cap the mesh.
        "circuit_breakers": {"thresholds": [limits, {"priority": "HIGH", **limits}]},
    }
    return {
        "node": {"id": "control-plane~tls-front", "cluster": "istiod"},
        # Admin only on a 0600 Unix socket: on a TCP port any local user could
        # stop the front or turn on trace logs that show the pods' credentials.
        "admin": {"address": {"pipe": {"path": str(admin_socket), "mode": 0o600}}},
        "static_resources": {"listeners": [listener], "clusters": [backend]},
    }
