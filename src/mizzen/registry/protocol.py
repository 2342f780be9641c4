"""Which protocol a Service port speaks, by Istio's explicit-selection rules.

Order of evaluation (Istio's documented behaviour):

1. a port whose Kubernetes ``protocol`` is UDP is UDP, whatever its name;
2. ``appProtocol`` when set, *instead of* the name (an unrecognised
   ``appProtocol`` does not fall back to the name);
3. otherwise the port name: ``<protocol>[-<suffix>]``, case-insensitive,
   with ``grpc-web`` recognised before the split on ``-``;
4. an unrecognised value is auto-detect (``UNKNOWN``), except on a few
   well-known server-first ports that sniffing cannot handle, which Istio
   treats as plain TCP.

Mizzen's ``Protocol`` is coarser than Istio's list; the mapping is:
``https`` and ``kubernetes.io/wss`` -> TLS (a sidecar does not terminate
them); ``mysql`` and ``redis`` -> TCP (Istio ships those filters off by
default, so they are proxied as TCP); ``http_proxy`` -> HTTP.
"""

from __future__ import annotations

from mizzen.api.resources import ServicePort as ApiServicePort
from mizzen.model.snapshot import Protocol

__all__ = ["parse_protocol", "protocol_for"]

_BY_NAME: dict[str, Protocol] = {
    "http": "HTTP",
    "http_proxy": "HTTP",
    "http2": "HTTP2",
    "grpc": "GRPC",
    "grpc-web": "GRPC_WEB",
    "https": "TLS",
    "tls": "TLS",
    "tcp": "TCP",
    "mongo": "MONGO",
    "mysql": "TCP",
    "redis": "TCP",
    "udp": "UDP",
}

# Standard application protocols from Kubernetes (KEP-3726), valid only as
# appProtocol values.
_KUBERNETES_APP_PROTOCOLS: dict[str, Protocol] = {
    "kubernetes.io/h2c": "HTTP2",
    "kubernetes.io/ws": "HTTP",
    "kubernetes.io/wss": "TLS",
}

# SMTP, DNS, MySQL, MongoDB: the server speaks first, so sniffing would stall;
# Istio treats these ports as TCP unless declared otherwise.
_SERVER_FIRST_PORTS = frozenset({25, 53, 3306, 27017})


def parse_protocol(value: str) -> Protocol:
    """One protocol word (``HTTP``, ``grpc``, ...) as a ``Protocol``;
    ``UNKNOWN`` when not recognised. Used for ServiceEntry and Gateway
    ports, which name the protocol directly."""
    return _BY_NAME.get(value.strip().lower(), "UNKNOWN")


def protocol_for(port: ApiServicePort) -> Protocol:
    if port.protocol.upper() == "UDP":
        return "UDP"
    label = port.name
    if port.app_protocol:
        label = port.app_protocol
        known = _KUBERNETES_APP_PROTOCOLS.get(label.lower())
        if known is not None:
            return known
    selected = _from_label(label)
    if selected == "UNKNOWN" and port.port in _SERVER_FIRST_PORTS:
        return "TCP"
    return selected


def _from_label(label: str) -> Protocol:
    lowered = label.lower()
    # grpc-web contains the separator itself, so it must be checked first.
    if lowered.startswith("grpc-web"):
        return "GRPC_WEB"
    return parse_protocol(lowered.split("-", 1)[0])
