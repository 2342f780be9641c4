"""The vendored Istio sample JWTs (tests/fixtures/jwt): both RS256 signatures
verify against the key in jwks.json, and the claims are the documented ones."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "jwt"
ISSUER = "testing@secure.istio.io"
KID = "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ"
TOKENS = ["demo.jwt", "groups-scope.jwt"]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(text: str) -> Any:
    return json.loads(_b64url(text))


def _jwks_key() -> tuple[str, rsa.RSAPublicKey]:
    (jwk,) = json.loads((FIXTURES / "jwks.json").read_text())["keys"]
    assert jwk["kty"] == "RSA", jwk
    n = int.from_bytes(_b64url(jwk["n"]), "big")
    e = int.from_bytes(_b64url(jwk["e"]), "big")
    return jwk["kid"], rsa.RSAPublicNumbers(e, n).public_key()


def _token(name: str) -> tuple[str, str, str]:
    header, payload, signature = (FIXTURES / name).read_text().strip().split(".")
    return header, payload, signature


def _verify(name: str, public: rsa.RSAPublicKey) -> None:
    header, payload, signature = _token(name)
    public.verify(
        _b64url(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )


def _claims(name: str) -> dict[str, Any]:
    claims: dict[str, Any] = _json(_token(name)[1])
    return claims


@pytest.mark.parametrize("name", TOKENS)
def test_signature_verifies_against_the_jwks_key(name: str) -> None:
    kid, public = _jwks_key()
    assert kid == KID
    assert public.key_size == 2048
    assert _json(_token(name)[0]) == {"alg": "RS256", "kid": KID, "typ": "JWT"}
    _verify(name, public)
    # The check is not vacuous: the same signature over other claims fails.
    header, _, signature = _token(name)
    forged = base64.urlsafe_b64encode(json.dumps({**_claims(name), "sub": "x"}).encode())
    with pytest.raises(InvalidSignature):
        public.verify(
            _b64url(signature),
            f"{header}.{forged.decode().rstrip('=')}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )


def test_demo_claims() -> None:
    claims = _claims("demo.jwt")
    assert claims == {
        "exp": 4685989700,
        "foo": "bar",
        "iat": 1532389700,
        "iss": ISSUER,
        "sub": ISSUER,
    }
    assert claims["exp"] > time.time()


def test_groups_scope_claims() -> None:
    claims = _claims("groups-scope.jwt")
    assert claims == {
        "exp": 3537391104,
        "groups": ["group1", "group2"],
        "iat": 1537391104,
        "iss": ISSUER,
        "scope": ["scope1", "scope2"],
        "sub": ISSUER,
    }
    assert claims["exp"] > time.time()
