"""File adapters of the CA: atomic writes with exact modes, guarded reads.

A private file is created mode 0600 (``O_CREAT | O_EXCL``, then an atomic
rename over the target), so its bytes are never readable by another user, not
even for an instant. Public files (certificates) get 0644 the same way. Every
failure is a ``CaError`` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from mizzen.ca.errors import CaError

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, mode 0600 from the first byte."""
    _write_atomic(Path(path), data, PRIVATE_FILE_MODE)


def write_public(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, mode 0644 (certificates)."""
    _write_atomic(Path(path), data, PUBLIC_FILE_MODE)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(tmp, flags, mode)
    except OSError as e:
        raise CaError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            # The umask can only have removed bits; set exactly `mode`.
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise CaError(f"cannot write {path}: {e.strerror or e}") from e
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ensure_private_dir(directory: Path) -> None:
    """Create `directory` mode 0700 (parents as usual) unless it exists.

    An existing directory keeps its mode: it may be shared with other state;
    the private files in it are 0600 anyway.
    """
    directory = Path(directory)
    if directory.is_dir():
        return
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, PRIVATE_DIR_MODE)
        os.chmod(directory, PRIVATE_DIR_MODE)  # undo the umask, if any
    except FileExistsError:
        if not directory.is_dir():
            raise CaError(f"{directory} exists and is not a directory") from None
    except OSError as e:
        raise CaError(f"cannot create {directory}: {e.strerror or e}") from e


def read_file(path: Path) -> bytes:
    """The bytes of `path`, or a CaError naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CaError(f"{path} does not exist") from None
    except OSError as e:
        raise CaError(f"cannot read {path}: {e.strerror or e}") from e


def read_private(path: Path) -> bytes:
    """Like read_file, but refuse a file that other users can read or write."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise CaError(f"{path} does not exist") from None
    except OSError as e:
        raise CaError(f"cannot read {path}: {e.strerror or e}") from e
    if mode & 0o077:
        raise CaError(
            f"{path} is accessible by other users (mode {mode:04o}); "
            f"run `chmod 600 {path}` (it holds a private key)"
        )
    return read_file(path)
