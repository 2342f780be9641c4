"""Throwaway JWT material for the ``mesh-authz`` variant (pure, no IO).

One RSA key made at bench time, its public half as a JWKS for the
RequestAuthentication, and an RS256 token signed with it that hey sends in
``Authorization: Bearer``. Built with ``cryptography`` alone (RFC 7515/7517/
7518): header and payload are compact JSON, base64url without padding; the
signature is RSASSA-PKCS1-v1_5 with SHA-256 over ``header.payload``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "bench@mizzen.test"
SUBJECT = "bench-client"
KID = "mizzen-bench"
# Long enough for the full bench (a few minutes) with a wide margin.
LIFETIME_S = 6 * 3600


@dataclass(frozen=True)
class JwtMaterial:
    jwks: str  # {"keys": [the public key]}, compact JSON
    token: str  # valid: header.payload.signature
    tampered: str  # the same token with another payload: its signature no longer matches
    private_key: rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _uint(value: int) -> str:
    """An unsigned big-endian integer, as JWK's n and e want it (no leading zeros)."""
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def rsa_jwk(public_key: rsa.RSAPublicKey, kid: str = KID) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "n": _uint(numbers.n),
        "e": _uint(numbers.e),
        "kid": kid,
        "alg": "RS256",
    }


def _compact(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def sign_rs256(private_key: rsa.RSAPrivateKey, claims: Mapping[str, Any], kid: str = KID) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    signing_input = f"{b64url(_compact(header))}.{b64url(_compact(claims))}"
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def tamper(token: str, claims: Mapping[str, Any]) -> str:
    """token with its payload replaced by claims and its signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{b64url(_compact(claims))}.{signature}"


def make_jwt_material(
    issuer: str = ISSUER, subject: str = SUBJECT, now: float | None = None
) -> JwtMaterial:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issued = int(time.time() if now is None else now)
    claims = {"iss": issuer, "sub": subject, "iat": issued, "exp": issued + LIFETIME_S}
    token = sign_rs256(key, claims)
    jwks = json.dumps({"keys": [rsa_jwk(key.public_key())]}, separators=(",", ":"))
    return JwtMaterial(
        jwks=jwks,
        token=token,
        tampered=tamper(token, {**claims, "sub": "mallory"}),
        private_key=key,
    )
