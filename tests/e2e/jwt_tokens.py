"""JWTs for the authorization end-to-end tests, without PyJWT.

- ``load(name)``: one of Istio's sample tokens vendored in
  tests/fixtures/jwt (``demo``, ``groups-scope``), issuer and subject
  ``testing@secure.istio.io``, signed by the key in ``jwks.json``.
- ``tampered(token)``: the same header and payload with a broken signature.
- ``sign(claims)``: a token with any claims (expired, other groups ...),
  signed by Istio's sample key (``key.pem``), so it verifies against the
  vendored ``jwks.json``; ``standard_claims(...)`` builds the usual claim set.
- ``new_issuer(issuer)``: a second, unrelated RSA key with its JWKS, for a
  jwksUri server (apps/jwks_server.py), so that two issuers have different
  keys and a token of one never verifies against the other.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "jwt"
JWKS_FILE = FIXTURES / "jwks.json"
ISSUER = "testing@secure.istio.io"
KID = "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ"


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and the claims of ``token``; the signature is not checked."""
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def load(name: str) -> str:
    """A vendored sample token: ``demo`` or ``groups-scope`` (``.jwt`` optional)."""
    filename = name if name.endswith(".jwt") else f"{name}.jwt"
    return (FIXTURES / filename).read_text().strip()


def tampered(token: str) -> str:
    """``token`` with the first byte of its signature flipped: a well-formed
    JWT whose header and payload are unchanged but whose signature fails."""
    header, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[0] ^= 0xFF
    return f"{header}.{payload}.{b64url_encode(bytes(raw))}"


def standard_claims(
    issuer: str = ISSUER,
    subject: str = ISSUER,
    expires_in: int = 3600,
    **extra: Any,
) -> dict[str, Any]:
    """``iss``, ``sub``, ``iat`` (now) and ``exp`` (now + ``expires_in``; a
    negative value gives an expired token), plus ``extra`` claims."""
    now = int(time.time())
    return {"iss": issuer, "sub": subject, "iat": now, "exp": now + expires_in, **extra}


@cache
def sample_key() -> rsa.RSAPrivateKey:
    """Istio's sample signing key (tests/fixtures/jwt/key.pem)."""
    key = serialization.load_pem_private_key((FIXTURES / "key.pem").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def sign(
    claims: dict[str, Any], key: rsa.RSAPrivateKey | None = None, kid: str | None = None
) -> str:
    """An RS256 JWT with exactly ``claims``. Signed by Istio's sample key
    (kid of the vendored JWKS) unless another ``key`` is given; then the kid
    is that key's thumbprint unless ``kid`` says otherwise."""
    if key is None:
        key = sample_key()
        kid = kid or KID
    header = {"alg": "RS256", "kid": kid or thumbprint(key.public_key()), "typ": "JWT"}
    signing_input = ".".join(
        b64url_encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url_encode(signature)}"


def _uint(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def public_jwk(public: rsa.RSAPublicKey) -> dict[str, str]:
    """The JWK members of an RSA public key (``kty``, ``n``, ``e``)."""
    numbers = public.public_numbers()
    return {"e": _uint(numbers.e), "kty": "RSA", "n": _uint(numbers.n)}


def thumbprint(public: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), which is how Istio's sample kid was made."""
    canonical = json.dumps(public_jwk(public), separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class Issuer:
    """An issuer with its own RSA key; its JWKS goes to a jwksUri server."""

    issuer: str
    key: rsa.RSAPrivateKey

    @property
    def kid(self) -> str:
        return thumbprint(self.key.public_key())

    @property
    def jwks(self) -> dict[str, Any]:
        jwk = {**public_jwk(self.key.public_key()), "alg": "RS256", "kid": self.kid, "use": "sig"}
        return {"keys": [jwk]}

    @property
    def jwks_json(self) -> str:
        return json.dumps(self.jwks)

    def sign(self, claims: dict[str, Any]) -> str:
        """A token with ``claims`` signed by this issuer's key; ``iss`` is
        this issuer's unless ``claims`` names another."""
        return sign({"iss": self.issuer, **claims}, key=self.key, kid=self.kid)


def new_issuer(issuer: str) -> Issuer:
    """An issuer with a freshly generated 2048-bit RSA key."""
    return Issuer(issuer, rsa.generate_private_key(public_exponent=65537, key_size=2048))
