"""Istio's plug-in CA directory: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from ca_helpers import (
    DAY,
    NOW,
    Pki,
    ca_cert,
    ec_key,
    key_pem,
    load_chain,
    make_pki,
    pem,
    write_pki,
    write_plugin,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import SignatureAlgorithmOID
from cryptography.x509.verification import PolicyBuilder, Store

from mizzen.ca import (
    CaError,
    ca_from_plugin_pem,
    load_or_create,
    load_plugin,
    make_csr,
    spiffe_id,
)

IDENTITY = spiffe_id("default", "reviews")


def load_error(directory: Path, now: datetime = NOW) -> str:
    with pytest.raises(CaError) as info:
        load_plugin(directory, now)
    return str(info.value)


# --- good directories ------------------------------------------------------------


def test_load_and_sign(tmp_path: Path, pki: Pki) -> None:
    ca = load_plugin(write_pki(tmp_path, pki), NOW)
    assert load_chain(ca.signing_chain_pem) == [pki.inter, pki.root]
    assert ca.root_pem == pem(pki.root).decode()
    assert ca.signing_cert == pki.inter

    key = ec_key()
    issued = ca.sign_csr(make_csr(key, IDENTITY), IDENTITY, DAY, NOW)
    leaf, inter, root = load_chain(issued.chain_pem)
    assert (inter, root) == (pki.inter, pki.root)
    assert leaf.issuer == pki.inter.subject
    inter_ski = pki.inter.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == inter_ski.digest
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    if isinstance(pki.inter_key, rsa.RSAPrivateKey):
        assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    else:
        assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    verifier = PolicyBuilder().store(Store([pki.root])).time(NOW).build_client_verifier()
    verified = verifier.verify(leaf, [inter])
    assert verified.chain == [leaf, pki.inter, pki.root]


def test_rsa_4096_root_signs_directly(tmp_path: Path, rsa4096_key: rsa.RSAPrivateKey) -> None:
    """The root itself as the signing CA: cert-chain.pem is just the root."""
    root = ca_cert("Plug-in Root", rsa4096_key)
    ca = load_plugin(write_plugin(tmp_path, root, rsa4096_key, [root], [root]), NOW)
    issued = ca.sign_csr(make_csr(ec_key(), IDENTITY), IDENTITY, DAY, NOW)
    leaf, anchor = load_chain(issued.chain_pem)
    assert anchor == root
    assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    leaf.verify_directly_issued_by(root)


def test_chain_without_root_gets_root_appended(tmp_path: Path, ec_pki: Pki) -> None:
    write_plugin(tmp_path, ec_pki.inter, ec_pki.inter_key, [ec_pki.root], [ec_pki.inter])
    ca = load_plugin(tmp_path, NOW)
    assert load_chain(ca.signing_chain_pem) == [ec_pki.inter, ec_pki.root]


def test_two_intermediates(tmp_path: Path, ec_pki: Pki) -> None:
    key2 = ec_key()
    inter2 = ca_cert("Second Intermediate", key2, (ec_pki.inter, ec_pki.inter_key))
    write_plugin(tmp_path, inter2, key2, [ec_pki.root], [inter2, ec_pki.inter, ec_pki.root])
    ca = load_plugin(tmp_path, NOW)
    issued = ca.sign_csr(make_csr(ec_key(), IDENTITY), IDENTITY, DAY, NOW)
    leaf, *rest = load_chain(issued.chain_pem)
    assert rest == [inter2, ec_pki.inter, ec_pki.root]
    verifier = PolicyBuilder().store(Store([ec_pki.root])).time(NOW).build_client_verifier()
    assert verifier.verify(leaf, rest[:-1]).chain == [leaf, *rest]


def test_trust_bundle_with_two_roots(tmp_path: Path, ec_pki: Pki) -> None:
    """During a root rotation root-cert.pem holds the old and the new root."""
    old_root = ca_cert("Old Root", ec_key())
    write_plugin(tmp_path, ec_pki.inter, ec_pki.inter_key, [old_root, ec_pki.root], [ec_pki.inter])
    ca = load_plugin(tmp_path, NOW)
    assert ca.root_pem == pem(old_root, ec_pki.root).decode()
    assert load_chain(ca.signing_chain_pem) == [ec_pki.inter, ec_pki.root]


def test_load_plugin_defaults_to_the_current_time(tmp_path: Path) -> None:
    root_key, inter_key = ec_key(), ec_key()
    now = datetime.now(UTC)
    root = ca_cert("Root", root_key, not_before=now - DAY, not_after=now + DAY)
    inter = ca_cert("Inter", inter_key, (root, root_key), not_before=now - DAY, not_after=now + DAY)
    write_plugin(tmp_path, inter, inter_key, [root], [inter, root])
    assert load_plugin(tmp_path).signing_cert == inter


def test_load_or_create_prefers_the_plugin(tmp_path: Path, ec_pki: Pki) -> None:
    plugin = write_pki(tmp_path / "cacerts", ec_pki)
    state = tmp_path / "state"
    ca = load_or_create(state, "cluster.local", NOW, plugin_dir=plugin)
    assert ca.signing_cert == ec_pki.inter
    assert not state.exists()


def test_from_pem_mapping(ec_pki: Pki) -> None:
    files = {
        "ca-cert.pem": pem(ec_pki.inter),
        "ca-key.pem": key_pem(ec_pki.inter_key),
        "root-cert.pem": pem(ec_pki.root),
    }
    ca = ca_from_plugin_pem(files, NOW, source="secret istio-system/cacerts")
    assert load_chain(ca.signing_chain_pem) == [ec_pki.inter, ec_pki.root]
    del files["ca-key.pem"]
    with pytest.raises(CaError, match=r"secret istio-system/cacerts is missing ca-key\.pem"):
        ca_from_plugin_pem(files, NOW, source="secret istio-system/cacerts")


# --- bad directories -------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope")
    assert f"{tmp_path / 'nope'} does not exist" in message
    assert "ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem" in message


def test_every_missing_file_named(tmp_path: Path, ec_pki: Pki) -> None:
    write_pki(tmp_path, ec_pki)
    (tmp_path / "ca-key.pem").unlink()
    (tmp_path / "cert-chain.pem").unlink()
    message = load_error(tmp_path)
    assert f"{tmp_path} is missing ca-key.pem, cert-chain.pem;" in message
    assert "root-cert.pem," not in message.split(";")[0]


def test_empty_directory_names_all_four(tmp_path: Path) -> None:
    message = load_error(tmp_path)
    assert "is missing ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem" in message


def test_key_does_not_match(tmp_path: Path, ec_pki: Pki) -> None:
    write_pki(tmp_path, ec_pki)
    (tmp_path / "ca-key.pem").write_bytes(key_pem(ec_key()))
    message = load_error(tmp_path)
    assert f"{tmp_path}/ca-key.pem does not match the public key in ca-cert.pem" in message


def test_encrypted_key(tmp_path: Path, ec_pki: Pki) -> None:
    write_pki(tmp_path, ec_pki)
    (tmp_path / "ca-key.pem").write_bytes(key_pem(ec_pki.inter_key, password=b"secret"))
    message = load_error(tmp_path)
    assert f"{tmp_path}/ca-key.pem" in message
    assert "encrypted" in message


def test_garbage_key_is_not_echoed(tmp_path: Path, ec_pki: Pki) -> None:
    write_pki(tmp_path, ec_pki)
    good = key_pem(ec_pki.inter_key)
    broken = good.replace(good.splitlines()[1], b"A" * 64)
    (tmp_path / "ca-key.pem").write_bytes(broken)
    message = load_error(tmp_path)
    assert message == f"{tmp_path}/ca-key.pem: not a PEM private key"


def test_signing_cert_not_a_ca(tmp_path: Path, ec_pki: Pki) -> None:
    key = ec_key()
    leafish = ca_cert("Not a CA", key, (ec_pki.root, ec_pki.root_key), ca=False)
    write_plugin(tmp_path, leafish, key, [ec_pki.root], [leafish, ec_pki.root])
    message = load_error(tmp_path)
    assert f"{tmp_path}/ca-cert.pem is not a CA certificate" in message
    assert "BasicConstraints CA:TRUE" in message


def test_signing_cert_without_key_cert_sign(tmp_path: Path, ec_pki: Pki) -> None:
    key = ec_key()
    cert = ca_cert("No certSign", key, (ec_pki.root, ec_pki.root_key), key_cert_sign=False)
    write_plugin(tmp_path, cert, key, [ec_pki.root], [cert, ec_pki.root])
    message = load_error(tmp_path)
    assert f"{tmp_path}/ca-cert.pem may not sign certificates" in message
    assert "keyCertSign" in message


def test_ca_cert_with_several_certificates(tmp_path: Path, ec_pki: Pki) -> None:
    write_pki(tmp_path, ec_pki)
    (tmp_path / "ca-cert.pem").write_bytes(pem(ec_pki.inter, ec_pki.root))
    message = load_error(tmp_path)
    assert f"{tmp_path}/ca-cert.pem holds 2 certificates" in message
    assert "cert-chain.pem" in message


@pytest.mark.parametrize("name", ["ca-cert.pem", "root-cert.pem", "cert-chain.pem"])
def test_not_pem(tmp_path: Path, ec_pki: Pki, name: str) -> None:
    write_pki(tmp_path, ec_pki)
    (tmp_path / name).write_bytes(b"not a certificate\n")
    assert load_error(tmp_path) == f"{tmp_path}/{name}: no PEM certificate found"


def test_corrupt_pem(tmp_path: Path, ec_pki: Pki) -> None:
    write_pki(tmp_path, ec_pki)
    (tmp_path / "root-cert.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    assert load_error(tmp_path).startswith(f"{tmp_path}/root-cert.pem: not a valid PEM certificate")


def test_chain_must_start_with_ca_cert(tmp_path: Path, ec_pki: Pki) -> None:
    write_plugin(
        tmp_path, ec_pki.inter, ec_pki.inter_key, [ec_pki.root], [ec_pki.root, ec_pki.inter]
    )
    message = load_error(tmp_path)
    assert f"{tmp_path}/cert-chain.pem must start with the certificate in ca-cert.pem" in message
    assert "CN=Test Root CA" in message


def test_chain_with_wrong_issuer(tmp_path: Path, ec_pki: Pki) -> None:
    stranger = ca_cert("Stranger CA", ec_key())
    write_plugin(tmp_path, ec_pki.inter, ec_pki.inter_key, [ec_pki.root], [ec_pki.inter, stranger])
    message = load_error(tmp_path)
    assert f"{tmp_path}/cert-chain.pem: certificate 1" in message
    assert "is not issued by certificate 2" in message
    assert "CN=Stranger CA" in message
    assert "in order up to the root" in message


def test_chain_with_forged_signature(tmp_path: Path, ec_pki: Pki) -> None:
    """Same issuer name as the root, but signed by another key."""
    key = ec_key()
    forged = ca_cert(
        "Forged Intermediate",
        key,
        (ec_pki.root, ec_key()),
        issuer_name=ec_pki.root.subject,
    )
    write_plugin(tmp_path, forged, key, [ec_pki.root], [forged, ec_pki.root])
    message = load_error(tmp_path)
    assert f"{tmp_path}/cert-chain.pem: the signature of certificate 1" in message
    assert "does not verify with certificate 2" in message


def test_chain_to_unknown_root(tmp_path: Path, ec_pki: Pki) -> None:
    other_root = ca_cert("Other Root", ec_key())
    write_plugin(tmp_path, ec_pki.inter, ec_pki.inter_key, [other_root], [ec_pki.inter])
    message = load_error(tmp_path)
    assert f"{tmp_path}/cert-chain.pem does not chain to root-cert.pem" in message
    assert "CN=Test Root CA" in message  # who issued the last certificate


def test_chain_root_not_in_bundle(tmp_path: Path, ec_pki: Pki) -> None:
    other_root = ca_cert("Other Root", ec_key())
    write_plugin(
        tmp_path, ec_pki.inter, ec_pki.inter_key, [other_root], [ec_pki.inter, ec_pki.root]
    )
    assert "does not chain to root-cert.pem" in load_error(tmp_path)


def test_issuer_in_chain_must_be_a_ca(tmp_path: Path) -> None:
    root_key, key = ec_key(), ec_key()
    not_ca_root = ca_cert("Root Without CA Flag", root_key, ca=False)
    inter = ca_cert("Inter", key, (not_ca_root, root_key))
    write_plugin(tmp_path, inter, key, [not_ca_root], [inter, not_ca_root])
    message = load_error(tmp_path)
    assert "certificate 2 (CN=Root Without CA Flag,O=Mizzen Test) is not a CA" in message


def test_expired_signing_cert(tmp_path: Path, ec_pki: Pki) -> None:
    key = ec_key()
    expired = ca_cert(
        "Expired",
        key,
        (ec_pki.root, ec_pki.root_key),
        not_before=NOW - 10 * DAY,
        not_after=NOW - DAY,
    )
    write_plugin(tmp_path, expired, key, [ec_pki.root], [expired, ec_pki.root])
    message = load_error(tmp_path)
    assert f"{tmp_path}/ca-cert.pem expired on 2026-11-21 12:00:00 UTC" in message
    assert "install a renewed certificate" in message


def test_signing_cert_not_yet_valid(tmp_path: Path, ec_pki: Pki) -> None:
    key = ec_key()
    future = ca_cert("Future", key, (ec_pki.root, ec_pki.root_key), not_before=NOW + DAY)
    write_plugin(tmp_path, future, key, [ec_pki.root], [future, ec_pki.root])
    message = load_error(tmp_path)
    assert f"{tmp_path}/ca-cert.pem is not valid until 2026-11-23 12:00:00 UTC" in message


def test_expired_root(tmp_path: Path) -> None:
    root_key, key = ec_key(), ec_key()
    root = ca_cert("Old Root", root_key, not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    inter = ca_cert("Inter", key, (root, root_key))
    write_plugin(tmp_path, inter, key, [root], [inter, root])
    message = load_error(tmp_path)
    assert f"{tmp_path}/root-cert.pem: root CN=Old Root,O=Mizzen Test expired on" in message


def test_expired_intermediate_in_chain(tmp_path: Path, ec_pki: Pki) -> None:
    k1, k2 = ec_key(), ec_key()
    inter1 = ca_cert(
        "Expired Inter",
        k1,
        (ec_pki.root, ec_pki.root_key),
        not_before=NOW - 10 * DAY,
        not_after=NOW - DAY,
    )
    inter2 = ca_cert("Signing", k2, (inter1, k1))
    write_plugin(tmp_path, inter2, k2, [ec_pki.root], [inter2, inter1, ec_pki.root])
    message = load_error(tmp_path)
    assert f"{tmp_path}/cert-chain.pem: certificate 2 (CN=Expired Inter,O=Mizzen Test)" in message
    assert "expired on" in message


def test_path_length_constraint(tmp_path: Path) -> None:
    root_key, k1, k2 = ec_key(), ec_key(), ec_key()
    root = ca_cert("Root", root_key, path_length=1)
    inter1 = ca_cert("Inter 1", k1, (root, root_key))
    inter2 = ca_cert("Inter 2", k2, (inter1, k1))
    write_plugin(tmp_path, inter2, k2, [root], [inter2, inter1, root])
    message = load_error(tmp_path)
    assert "certificate 3 (CN=Root,O=Mizzen Test) allows 1 CA certificate(s)" in message
    assert "the chain has 2" in message
    assert "pathLenConstraint" in message


def test_path_length_one_is_enough_for_one_intermediate(tmp_path: Path) -> None:
    root_key, key = ec_key(), ec_key()
    root = ca_cert("Root", root_key, path_length=1)
    inter = ca_cert("Inter", key, (root, root_key), path_length=0)
    write_plugin(tmp_path, inter, key, [root], [inter, root])
    assert load_plugin(tmp_path, NOW).signing_cert == inter


def test_signing_with_an_rsa_intermediate_under_an_ec_root(tmp_path: Path) -> None:
    from ca_helpers import rsa_key

    pki = make_pki(ec_key(), rsa_key(2048))
    ca = load_plugin(write_pki(tmp_path, pki), NOW)
    key = ec.generate_private_key(ec.SECP384R1())
    issued = ca.sign_csr(make_csr(key, IDENTITY), IDENTITY, DAY, NOW)
    leaf = load_chain(issued.chain_pem)[0]
    assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    leaf.verify_directly_issued_by(pki.inter)
