from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from mizzen.ca import CaError, PodClaims, TokenError, TokenSigner, load_or_create_key, spiffe_id

KEY = bytes(range(32))
CLAIMS = PodClaims(
    namespace="default", pod="reviews-v1-0", pod_uid="0b7c3e0e-1", service_account="bookinfo"
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def signed(header: Any, payload: Any, key: bytes = KEY, raw: bool = False) -> str:
    """A token with arbitrary contents and a valid signature."""
    parts = [p if raw else json.dumps(p).encode() for p in (header, payload)]
    signing_input = ".".join(b64(p) for p in parts)
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def good_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "iss": "mizzen",
        "sub": "system:serviceaccount:default:bookinfo",
        "kubernetes.io": {
            "namespace": "default",
            "pod": {"name": "reviews-v1-0", "uid": "0b7c3e0e-1"},
            "serviceaccount": {"name": "bookinfo"},
        },
    }
    payload.update(changes)
    return payload


HEADER = {"alg": "HS256", "typ": "JWT"}


def reason(signer: TokenSigner, token: str) -> str:
    with pytest.raises(TokenError) as info:
        signer.verify(token)
    return info.value.reason


def test_round_trip() -> None:
    signer = TokenSigner(KEY)
    token = signer.issue(CLAIMS)
    assert signer.verify(token) == CLAIMS
    assert TokenSigner(KEY).verify(token) == CLAIMS  # any signer with the key


def test_token_shape() -> None:
    token = TokenSigner(KEY, issuer="mizzen/mesh-a").issue(CLAIMS)
    header, payload, signature = token.split(".")
    assert "=" not in token
    assert json.loads(unb64(header)) == HEADER
    assert json.loads(unb64(payload)) == {
        "iss": "mizzen/mesh-a",
        "sub": "system:serviceaccount:default:bookinfo",
        "kubernetes.io": {
            "namespace": "default",
            "pod": {"name": "reviews-v1-0", "uid": "0b7c3e0e-1"},
            "serviceaccount": {"name": "bookinfo"},
        },
    }
    expected = hmac.new(KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert unb64(signature) == expected


def test_hand_made_token_verifies() -> None:
    assert TokenSigner(KEY).verify(signed(HEADER, good_payload())) == CLAIMS


def test_claims_helpers() -> None:
    assert CLAIMS.subject == "system:serviceaccount:default:bookinfo"
    assert CLAIMS.identity("cluster.local") == spiffe_id("default", "bookinfo")


def test_tampered_payload() -> None:
    signer = TokenSigner(KEY)
    header, _, signature = signer.issue(CLAIMS).split(".")
    forged = b64(
        json.dumps(good_payload(**{"sub": "system:serviceaccount:kube-system:admin"})).encode()
    )
    assert reason(signer, f"{header}.{forged}.{signature}") == "bad-signature"


def test_tampered_header() -> None:
    signer = TokenSigner(KEY)
    _, payload, signature = signer.issue(CLAIMS).split(".")
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    assert reason(signer, f"{header}.{payload}.{signature}") == "bad-signature"
    assert reason(signer, f"{header}.{payload}.") == "malformed"


def test_tampered_signature() -> None:
    signer = TokenSigner(KEY)
    header, payload, signature = signer.issue(CLAIMS).split(".")
    mac = bytearray(unb64(signature))
    mac[0] ^= 1
    assert reason(signer, f"{header}.{payload}.{b64(bytes(mac))}") == "bad-signature"
    assert reason(signer, f"{header}.{payload}.{b64(bytes(mac[:16]))}") == "bad-signature"


def test_wrong_key() -> None:
    token = TokenSigner(os.urandom(32)).issue(CLAIMS)
    with pytest.raises(TokenError, match="signature does not verify"):
        TokenSigner(KEY).verify(token)


def test_wrong_issuer() -> None:
    token = TokenSigner(KEY, issuer="another-mesh").issue(CLAIMS)
    with pytest.raises(TokenError) as info:
        TokenSigner(KEY).verify(token)
    assert info.value.reason == "wrong-issuer"
    assert str(info.value) == "token issuer is 'another-mesh', expected 'mizzen'"
    assert reason(TokenSigner(KEY), signed(HEADER, good_payload(iss=None))) == "wrong-issuer"


def test_signature_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    signer = TokenSigner(KEY)
    signer.verify(signer.issue(CLAIMS))
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("", "empty"),
        ("abc", "expected header.payload.signature"),
        ("a.b", "expected header.payload.signature"),
        ("a.b.c.d", "expected header.payload.signature"),
        ("!!.e30.AAAA", "header is not base64url"),
        ("e30.e30.AA==", "signature is not base64url"),
        ("e30.e30.A", "signature is not base64url"),
        ("e30.e30.AB", "signature is not canonical base64url"),
        ("x" * 9000, "longer than 8192"),
    ],
)
def test_malformed(token: str, fragment: str) -> None:
    with pytest.raises(TokenError) as info:
        TokenSigner(KEY).verify(token)
    assert info.value.reason == "malformed"
    assert fragment in str(info.value)
    assert str(info.value).startswith("malformed token")


@pytest.mark.parametrize(
    ("header", "payload", "fragment"),
    [
        (b"not json", json.dumps(good_payload()).encode(), "header is not JSON"),
        (json.dumps(HEADER).encode(), b"\xff\xfe", "payload is not JSON"),
        (json.dumps(HEADER).encode(), b"[1, 2]", "payload is not a JSON object"),
        (json.dumps({"alg": "HS512"}).encode(), json.dumps(good_payload()).encode(), "HS512"),
    ],
)
def test_signed_but_malformed_contents(header: bytes, payload: bytes, fragment: str) -> None:
    token = signed(header, payload, raw=True)
    with pytest.raises(TokenError) as info:
        TokenSigner(KEY).verify(token)
    assert info.value.reason == "malformed"
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (good_payload(**{"kubernetes.io": None}), "claim kubernetes.io.namespace is missing"),
        (
            good_payload(**{"kubernetes.io": {"namespace": "default"}}),
            "claim kubernetes.io.serviceaccount.name is missing",
        ),
        (
            good_payload(
                **{
                    "kubernetes.io": {
                        "namespace": "default",
                        "pod": {"name": "p", "uid": 7},
                        "serviceaccount": {"name": "bookinfo"},
                    }
                }
            ),
            "claim kubernetes.io.pod.uid is missing or not a string",
        ),
        (good_payload(sub="system:serviceaccount:default:other"), "does not match"),
        (good_payload(sub=None), "does not match"),
        (
            good_payload(
                sub="system:serviceaccount:a:b:c",
                **{
                    "kubernetes.io": {
                        "namespace": "a:b",
                        "pod": {"name": "p", "uid": "u"},
                        "serviceaccount": {"name": "c"},
                    }
                },
            ),
            "must not contain ':'",
        ),
    ],
)
def test_bad_claims(payload: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TokenError) as info:
        TokenSigner(KEY).verify(signed(HEADER, payload))
    assert info.value.reason == "malformed"
    assert fragment in str(info.value)


def test_signer_rejects_short_key_and_hides_key() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenSigner(b"short")
    with pytest.raises(ValueError, match="issuer"):
        TokenSigner(KEY, issuer="")
    signer = TokenSigner(KEY)
    assert repr(signer) == "TokenSigner(issuer='mizzen')"
    assert signer.issuer == "mizzen"


@pytest.mark.parametrize(
    "changes",
    [{"namespace": ""}, {"pod": ""}, {"pod_uid": ""}, {"service_account": "a:b"}],
)
def test_pod_claims_validation(changes: dict[str, str]) -> None:
    fields = {
        "namespace": "default",
        "pod": "p",
        "pod_uid": "u",
        "service_account": "sa",
        **changes,
    }
    with pytest.raises(ValueError, match="pod claim"):
        PodClaims(**fields)


# --- the key file ---------------------------------------------------------------------


def test_load_or_create_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "token.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes() == key
    assert load_or_create_key(path) == key
    assert load_or_create_key(tmp_path / "other.key") != key


def test_key_of_wrong_size(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    path.write_bytes(b"x" * 16)
    os.chmod(path, 0o600)
    with pytest.raises(CaError, match=r"holds 16 bytes, not a 32-byte token key; delete it"):
        load_or_create_key(path)


def test_readable_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    load_or_create_key(path)
    os.chmod(path, 0o640)
    with pytest.raises(CaError, match="chmod 600"):
        load_or_create_key(path)
