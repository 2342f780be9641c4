"""Shared CA fixtures; keys are made once per session (RSA 4096 is slow)."""

from __future__ import annotations

import pytest
from ca_helpers import NOW, Pki, ec_key, make_pki, rsa_key
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mizzen.ca import CertificateAuthority, self_signed_root


@pytest.fixture(scope="session")
def rsa4096_key() -> rsa.RSAPrivateKey:
    return rsa_key(4096)


@pytest.fixture(scope="session")
def rsa2048_key() -> rsa.RSAPrivateKey:
    return rsa_key(2048)


@pytest.fixture(scope="session")
def ec_pki() -> Pki:
    return make_pki(ec_key(), ec_key())


@pytest.fixture(scope="session")
def rsa_pki(rsa4096_key: rsa.RSAPrivateKey, rsa2048_key: rsa.RSAPrivateKey) -> Pki:
    """Root RSA 4096 (as plug-in roots often are), intermediate RSA 2048."""
    return make_pki(rsa4096_key, rsa2048_key)


@pytest.fixture(params=["ec", "rsa"])
def pki(request: pytest.FixtureRequest, ec_pki: Pki, rsa_pki: Pki) -> Pki:
    return ec_pki if request.param == "ec" else rsa_pki


@pytest.fixture(scope="session")
def self_signed() -> CertificateAuthority:
    ca, _ = self_signed_root("cluster.local", NOW)
    return ca


@pytest.fixture
def workload_key() -> ec.EllipticCurvePrivateKey:
    return ec_key()
