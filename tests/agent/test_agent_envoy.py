"""Envoy binary resolution and the copy for uid 1337 (no Envoy started here)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from mizzen.agent.envoy import (
    EnvoyCommand,
    NotReachable,
    ensure_binary_for,
    resolve_envoy_binary,
    unreachable_reason,
)

UID = GID = 1337


def test_resolves_the_real_binary_not_the_python_launcher() -> None:
    binary = resolve_envoy_binary()
    assert binary.is_absolute()
    with binary.open("rb") as f:
        assert f.read(4) == b"\x7fELF"


def test_explicit_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        resolve_envoy_binary(tmp_path / "nope")


def _fake_binary(directory: Path, content: bytes = b"\x7fELF fake") -> Path:
    path = directory / "envoy"
    path.write_bytes(content)
    os.chmod(path, 0o755)
    return path


def test_unreachable_reason_names_the_0700_directory(
    open_dir: Callable[[], Path],
) -> None:
    base = open_dir()
    private = base / "home"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    binary = _fake_binary(private)
    reason = unreachable_reason(binary, UID, GID, 5)
    assert reason is not None
    assert str(private) in reason and "0700" in reason
    os.chmod(private, 0o755)
    assert unreachable_reason(binary, UID, GID, 5) is None
    os.chmod(binary, 0o700)
    assert unreachable_reason(binary, UID, GID, 5) == f"{binary} is mode 0700"


def test_reachable_binary_is_used_in_place(open_dir: Callable[[], Path]) -> None:
    binary = _fake_binary(open_dir())
    copy_dir = open_dir() / "bin"
    assert ensure_binary_for(binary, UID, GID, copy_dir) == binary
    assert not copy_dir.exists()


def test_binary_under_0700_is_copied_once(open_dir: Callable[[], Path]) -> None:
    private = open_dir() / "root-home"
    private.mkdir(mode=0o700)
    binary = _fake_binary(private)
    copy_dir = open_dir() / "run" / "mesh" / "bin"

    target = ensure_binary_for(binary, UID, GID, copy_dir)
    assert target == copy_dir / "envoy"
    assert target.read_bytes() == binary.read_bytes()
    st = target.stat()
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert int(st.st_mtime) == int(binary.stat().st_mtime)
    assert unreachable_reason(target, UID, GID, 5) is None
    # Created parents are searchable by uid 1337 despite the umask.
    assert stat.S_IMODE((copy_dir.parent).stat().st_mode) == 0o755

    # Same size and mtime: no second copy (same inode).
    inode = st.st_ino
    assert ensure_binary_for(binary, UID, GID, copy_dir) == target
    assert target.stat().st_ino == inode

    # A changed source replaces the copy atomically, leaving no temp file.
    binary.write_bytes(b"\x7fELF newer and longer")
    ensure_binary_for(binary, UID, GID, copy_dir)
    assert target.read_bytes() == b"\x7fELF newer and longer"
    assert [p.name for p in copy_dir.iterdir()] == ["envoy"]


def test_unreachable_copy_dir_is_a_clear_error(
    open_dir: Callable[[], Path], tmp_path: Path
) -> None:
    private = open_dir() / "home"
    private.mkdir(mode=0o700)
    binary = _fake_binary(private)
    hidden = open_dir() / "closed"
    hidden.mkdir(mode=0o700)
    with pytest.raises(NotReachable, match="--envoy-bin-dir"):
        ensure_binary_for(binary, UID, GID, hidden / "bin")


def test_envoy_command_line() -> None:
    argv = EnvoyCommand(
        binary=Path("/opt/envoy"),
        bootstrap=Path("/w/bootstrap.json"),
        admin_address_path=Path("/w/admin.address"),
    ).argv()
    assert argv[0] == "/opt/envoy"
    joined = " ".join(argv)
    for part in (
        "--disable-hot-restart",
        "-c /w/bootstrap.json",
        "--concurrency 2",
        "--log-level warning",
        "--drain-time-s 1",
        "--parent-shutdown-time-s 2",
        "--admin-address-path /w/admin.address",
    ):
        assert part in joined
