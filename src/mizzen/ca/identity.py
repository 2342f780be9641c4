"""Workload identities: SPIFFE URIs in Istio's Kubernetes form.

An identity is ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``;
the trust domain is ``cluster.local`` unless the mesh says otherwise. The
character rules are the SPIFFE ID specification's: a trust domain is lowercase
letters, digits, ``.``, ``-`` and ``_``; a path segment is letters, digits,
``.``, ``-`` and ``_``, and is neither ``.`` nor ``..``. Kubernetes namespace and
service-account names always fit. A ``SpiffeId`` that breaks these rules cannot
be built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_TRUST_DOMAIN = "cluster.local"
SCHEME = "spiffe://"
MAX_URI_BYTES = 2048  # the SPIFFE specification's limit

_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9._-]+")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")
_FORM = "spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>"


def check_trust_domain(trust_domain: str) -> None:
    """Raise ValueError unless `trust_domain` is a valid SPIFFE trust domain."""
    if not trust_domain:
        raise ValueError("trust domain is empty")
    if _TRUST_DOMAIN_RE.fullmatch(trust_domain) is None:
        raise ValueError(
            f"trust domain {trust_domain!r} may only hold lowercase letters, digits,"
            " '.', '-' and '_'"
        )


def _check_segment(what: str, value: str) -> None:
    if not value:
        raise ValueError(f"{what} is empty")
    if value in (".", "..") or _SEGMENT_RE.fullmatch(value) is None:
        raise ValueError(
            f"{what} {value!r} may only hold letters, digits, '.', '-' and '_'"
            " (and must not be '.' or '..')"
        )


@dataclass(frozen=True)
class SpiffeId:
    """A validated workload identity; ``str()`` gives the URI."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        _check_segment("namespace", self.namespace)
        _check_segment("service account", self.service_account)
        if len(str(self).encode()) > MAX_URI_BYTES:
            raise ValueError(f"SPIFFE ID is longer than {MAX_URI_BYTES} bytes")

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


def spiffe_id(
    namespace: str, service_account: str, trust_domain: str = DEFAULT_TRUST_DOMAIN
) -> SpiffeId:
    """The identity of pods running as `service_account` in `namespace`."""
    return SpiffeId(trust_domain, namespace, service_account)


def parse_spiffe(uri: str) -> SpiffeId:
    """Parse ``spiffe://td/ns/N/sa/S``; ValueError saying what is wrong otherwise."""
    if not isinstance(uri, str):
        raise ValueError(f"SPIFFE ID must be a string, not {type(uri).__name__}")
    if not uri.startswith(SCHEME):
        raise ValueError(f"{uri!r} is not a SPIFFE ID: expected {_FORM}")
    trust_domain, slash, path = uri[len(SCHEME) :].partition("/")
    if not slash:
        raise ValueError(f"{uri!r} has no path: expected {_FORM}")
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
        raise ValueError(f"{uri!r} is not a workload identity: expected {_FORM}")
    try:
        return SpiffeId(trust_domain, parts[1], parts[3])
    except ValueError as e:
        raise ValueError(f"{uri!r} is not a valid SPIFFE ID: {e}") from None
