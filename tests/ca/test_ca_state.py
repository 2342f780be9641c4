"""The self-signed CA kept in a state directory, and the private-file writer."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ca_helpers import DAY, NOW, load_chain
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mizzen.ca import CaError, load_or_create, write_private, write_public


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Modes must not depend on the caller's umask."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_creates_files_with_modes(tmp_path: Path, umask: int) -> None:
    state = tmp_path / "run" / "mesh" / "ca"
    ca = load_or_create(state, "cluster.local", NOW)
    assert mode(state) == 0o700
    assert mode(state / "ca-key.pem") == 0o600
    for name in ("ca-cert.pem", "root-cert.pem", "cert-chain.pem"):
        assert mode(state / name) == 0o644, name
        assert (state / name).read_text() == ca.root_pem
    assert sorted(p.name for p in state.iterdir()) == [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ]
    key = serialization.load_pem_private_key((state / "ca-key.pem").read_bytes(), None)
    assert key.public_key() == ca.signing_cert.public_key()
    assert ca.signing_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "cluster.local"
    )


def test_reload_keeps_the_same_root(tmp_path: Path) -> None:
    state = tmp_path / "ca"
    first = load_or_create(state, "cluster.local", NOW)
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in state.iterdir()}
    second = load_or_create(state, "cluster.local", NOW + 30 * DAY)
    assert second.root_pem == first.root_pem
    assert second.signing_chain_pem == first.signing_chain_pem
    after = {p.name: (p.stat().st_ino, p.read_bytes()) for p in state.iterdir()}
    assert after == before  # nothing rewritten


def test_reload_without_cert_chain(tmp_path: Path) -> None:
    state = tmp_path / "ca"
    first = load_or_create(state, "cluster.local", NOW)
    (state / "cert-chain.pem").unlink()
    assert load_or_create(state, "cluster.local", NOW).root_pem == first.root_pem


def test_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    state = tmp_path / "ca"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    load_or_create(state, "cluster.local", NOW)
    assert mode(state) == 0o755
    assert mode(state / "ca-key.pem") == 0o600


def test_partial_state_is_an_error(tmp_path: Path) -> None:
    state = tmp_path / "ca"
    load_or_create(state, "cluster.local", NOW)
    (state / "ca-cert.pem").unlink()
    key_before = (state / "ca-key.pem").read_bytes()
    with pytest.raises(CaError) as info:
        load_or_create(state, "cluster.local", NOW)
    message = str(info.value)
    assert f"{state} holds ca-key.pem, root-cert.pem but not ca-cert.pem" in message
    assert "delete the CA files" in message
    assert (state / "ca-key.pem").read_bytes() == key_before  # nothing replaced


def test_readable_key_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "ca"
    load_or_create(state, "cluster.local", NOW)
    os.chmod(state / "ca-key.pem", 0o644)
    with pytest.raises(CaError) as info:
        load_or_create(state, "cluster.local", NOW)
    assert str(info.value) == (
        f"{state}/ca-key.pem is accessible by other users (mode 0644); "
        f"run `chmod 600 {state}/ca-key.pem` (it holds a private key)"
    )


def test_expired_stored_root(tmp_path: Path) -> None:
    state = tmp_path / "ca"
    load_or_create(state, "cluster.local", NOW)
    with pytest.raises(CaError, match=r"ca-cert\.pem expired on"):
        load_or_create(state, "cluster.local", NOW + 3651 * DAY)


def test_corrupt_stored_cert(tmp_path: Path) -> None:
    state = tmp_path / "ca"
    load_or_create(state, "cluster.local", NOW)
    (state / "root-cert.pem").write_text("garbage\n")
    with pytest.raises(CaError, match=f"{state}/root-cert.pem: no PEM certificate found"):
        load_or_create(state, "cluster.local", NOW)


def test_state_dir_is_a_file(tmp_path: Path) -> None:
    state = tmp_path / "ca"
    state.write_text("")
    with pytest.raises(CaError, match="not a directory"):
        load_or_create(state, "cluster.local", NOW)


def test_issued_chain_from_reloaded_ca(tmp_path: Path) -> None:
    from mizzen.ca import generate_key, make_csr, spiffe_id

    state = tmp_path / "ca"
    load_or_create(state, "cluster.local", NOW)
    ca = load_or_create(state, "cluster.local", NOW)
    sid = spiffe_id("default", "reviews")
    leaf, root = load_chain(ca.sign_csr(make_csr(generate_key(), sid), sid, DAY, NOW).chain_pem)
    leaf.verify_directly_issued_by(root)
    assert root == x509.load_pem_x509_certificate((state / "root-cert.pem").read_bytes())


# --- write_private / write_public -------------------------------------------------------


def test_write_private_mode(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "key.pem"
    write_private(path, b"secret")
    assert path.read_bytes() == b"secret"
    assert mode(path) == 0o600
    write_public(tmp_path / "cert.pem", b"public")
    assert mode(tmp_path / "cert.pem") == 0o644


def test_write_private_replaces_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]  # no temp file left


def test_write_private_creates_0600_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is born 0600 by os.open: never world-readable, even for an instant."""
    calls: list[tuple[Any, int, int]] = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        calls.append((path, flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    target = tmp_path / "key.pem"
    write_private(target, b"secret")
    created = [c for c in calls if c[1] & os.O_CREAT]
    assert len(created) == 1
    path, flags, file_mode = created[0]
    assert flags & os.O_EXCL and flags & os.O_WRONLY
    assert file_mode == 0o600
    assert Path(path).parent == tmp_path and Path(path) != target  # renamed into place


def test_write_private_failure_names_the_path_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CaError, match=f"cannot write {tmp_path}/missing/key.pem"):
        write_private(tmp_path / "missing" / "key.pem", b"x")

    def broken_replace(src: Any, dst: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CaError, match="Permission denied"):
        write_private(tmp_path / "key.pem", b"x")
    assert list(tmp_path.iterdir()) == []
