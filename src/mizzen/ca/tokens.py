"""Per-pod credentials of the local runtime: HMAC-signed, JWT-shaped tokens.

A stand-in for a Kubernetes projected service-account token: the runtime hands
each pod one, the pod's agent presents it with its CSR, and the CA learns from
it which identity to sign. The claims mirror Kubernetes'::

    {"iss": "mizzen",
     "sub": "system:serviceaccount:<ns>:<sa>",
     "kubernetes.io": {"namespace": "<ns>",
                       "pod": {"name": "<pod>", "uid": "<uid>"},
                       "serviceaccount": {"name": "<sa>"}}}

The token is ``base64url(header).base64url(payload).base64url(HMAC-SHA256)``
with header ``{"alg":"HS256","typ":"JWT"}``. It carries no expiry: it lives as
long as the pod, and the key lives as long as the mesh's state directory.
A later issue swaps verification for Kubernetes' TokenReview.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mizzen.ca.errors import CaError
from mizzen.ca.files import ensure_private_dir, read_private, write_private
from mizzen.ca.identity import SpiffeId

DEFAULT_ISSUER = "mizzen"
TOKEN_KEY_BYTES = 32
MAX_TOKEN_CHARS = 8192
_SUBJECT_PREFIX = "system:serviceaccount:"
_HEADER = {"alg": "HS256", "typ": "JWT"}
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(Exception):
    """A token that does not prove anything; ``reason`` is a stable keyword.

    reason: ``malformed``, ``bad-signature`` or ``wrong-issuer``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class PodClaims:
    """Who a pod is: namespace, name, uid and the service account it runs as."""

    namespace: str
    pod: str
    pod_uid: str
    service_account: str

    def __post_init__(self) -> None:
        for name in ("namespace", "pod", "pod_uid", "service_account"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"pod claim {name} must be a non-empty string")
        for name in ("namespace", "service_account"):
            if ":" in getattr(self, name):
                raise ValueError(f"pod claim {name} must not contain ':'")

    @property
    def subject(self) -> str:
        """The Kubernetes token subject: ``system:serviceaccount:<ns>:<sa>``."""
        return f"{_SUBJECT_PREFIX}{self.namespace}:{self.service_account}"

    def identity(self, trust_domain: str) -> SpiffeId:
        """The SPIFFE identity these claims entitle the pod to."""
        return SpiffeId(trust_domain, self.namespace, self.service_account)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(part: str, what: str) -> bytes:
    if _B64URL_RE.fullmatch(part) is None:
        raise TokenError("malformed", f"malformed token: the {what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", f"malformed token: the {what} is not base64url") from None
    if _b64encode(data) != part:  # one encoding per value: no malleable tokens
        raise TokenError("malformed", f"malformed token: the {what} is not canonical base64url")
    return data


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise TokenError("malformed", f"malformed token: the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenError("malformed", f"malformed token: the {what} is not a JSON object")
    return value


def _text(obj: dict[str, Any], *path: str) -> str:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, str) or not value:
        claim = ".".join(path)
        raise TokenError("malformed", f"malformed token: claim {claim} is missing or not a string")
    return value


class TokenSigner:
    """Issues and verifies pod tokens with one HMAC key (never shown in repr)."""

    __slots__ = ("_issuer", "_key")

    def __init__(self, key: bytes, issuer: str = DEFAULT_ISSUER) -> None:
        if len(key) < TOKEN_KEY_BYTES:
            raise ValueError(f"the token key must be at least {TOKEN_KEY_BYTES} bytes")
        if not issuer:
            raise ValueError("the token issuer must not be empty")
        self._key = bytes(key)
        self._issuer = issuer

    def __repr__(self) -> str:
        return f"TokenSigner(issuer={self._issuer!r})"

    @property
    def issuer(self) -> str:
        return self._issuer

    def _mac(self, signing_input: str) -> bytes:
        return hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()

    def issue(self, claims: PodClaims) -> str:
        payload = {
            "iss": self._issuer,
            "sub": claims.subject,
            "kubernetes.io": {
                "namespace": claims.namespace,
                "pod": {"name": claims.pod, "uid": claims.pod_uid},
                "serviceaccount": {"name": claims.service_account},
            },
        }
        signing_input = ".".join(
            _b64encode(json.dumps(part, separators=(",", ":"), sort_keys=True).encode())
            for part in (_HEADER, payload)
        )
        return f"{signing_input}.{_b64encode(self._mac(signing_input))}"

    def verify(self, token: str) -> PodClaims:
        """The claims of a token this signer issued; TokenError otherwise.

        The signature is checked (in constant time) before anything inside
        the token is believed.
        """
        if not isinstance(token, str) or not token:
            raise TokenError("malformed", "malformed token: empty")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("malformed", f"malformed token: longer than {MAX_TOKEN_CHARS}")
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("malformed", "malformed token: expected header.payload.signature")
        header_b64, payload_b64, signature_b64 = parts
        header_raw = _b64decode(header_b64, "header")
        payload_raw = _b64decode(payload_b64, "payload")
        signature = _b64decode(signature_b64, "signature")
        expected = self._mac(f"{header_b64}.{payload_b64}")
        if not hmac.compare_digest(signature, expected):
            raise TokenError("bad-signature", "token signature does not verify")
        header = _json_object(header_raw, "header")
        if header.get("alg") != _HEADER["alg"]:
            raise TokenError("malformed", f"malformed token: unsupported alg {header.get('alg')!r}")
        payload = _json_object(payload_raw, "payload")
        issuer = payload.get("iss")
        if issuer != self._issuer:
            raise TokenError(
                "wrong-issuer", f"token issuer is {issuer!r}, expected {self._issuer!r}"
            )
        namespace = _text(payload, "kubernetes.io", "namespace")
        service_account = _text(payload, "kubernetes.io", "serviceaccount", "name")
        try:
            claims = PodClaims(
                namespace=namespace,
                pod=_text(payload, "kubernetes.io", "pod", "name"),
                pod_uid=_text(payload, "kubernetes.io", "pod", "uid"),
                service_account=service_account,
            )
        except ValueError as e:
            raise TokenError("malformed", f"malformed token: {e}") from None
        if payload.get("sub") != claims.subject:
            raise TokenError(
                "malformed",
                f"malformed token: sub {payload.get('sub')!r} does not match {claims.subject!r}",
            )
        return claims


def load_or_create_key(path: Path) -> bytes:
    """The token key in `path` (32 bytes, mode 0600), made on first use.

    The parent directory is created 0700 if missing. A key of the wrong size,
    or one other users can read, is a CaError (delete or chmod it).
    """
    path = Path(path)
    if path.exists():
        key = read_private(path)
        if len(key) != TOKEN_KEY_BYTES:
            raise CaError(
                f"{path} holds {len(key)} bytes, not a {TOKEN_KEY_BYTES}-byte token key; "
                "delete it to make a new key (running pods then need new tokens)"
            )
        return key
    ensure_private_dir(path.parent)
    key = secrets.token_bytes(TOKEN_KEY_BYTES)
    write_private(path, key)
    return key
