"""Start and stop pod processes.

Each process runs in its own session (so its own process group): it survives
the `up` process, and stop() can kill it together with its children. Output
goes (appended) to a log file under the mesh directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from mizzen.runtime import _exec
from mizzen.runtime.state import ProcRef


def wrap_argv(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> list[str]:
    """The command line that runs argv in netns as uid:gid.

    Both `ip netns exec` and `setpriv` exec() their command, so the pid we
    get is the real process, not a wrapper.
    """
    out: list[str] = []
    if netns is not None:
        out += ["ip", "netns", "exec", netns]
    if uid is not None:
        g = gid if gid is not None else uid
        out += ["setpriv", "--reuid", str(uid), "--regid", str(g), "--clear-groups"]
    return out + list(argv)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    netns: str | None = None,
    uid: int | None = None,
    gid: int | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    role: str = "",
) -> ProcRef:
    """Start argv detached; returns a ProcRef (pid + start time)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            wrap_argv(argv, netns=netns, uid=uid, gid=gid),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    # The Popen object is dropped on purpose: the process outlives us; _reap()
    # collects its exit status if we are still its parent.
    start = start_time(proc.pid)
    return ProcRef(pid=proc.pid, start_time=start if start is not None else 0, role=role)


def start_time(pid: int) -> int | None:
    """Start time of pid in clock ticks since boot, None if it does not exist."""
    stat = _stat(pid)
    return int(stat[19]) if stat is not None else None


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 = index 0)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and ')': split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def exit_status(pid: int) -> int | None:
    """Exit code of our child ``pid`` once it has ended (negative: the signal
    that killed it), None while it runs. Call it instead of alive() for a
    process whose exit code matters: alive() reaps and drops the status."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Not our child, or already reaped: ended, with an unknown code.
        return None if _stat(pid) is not None else -1
    return os.waitstatus_to_exitcode(status) if done else None


def _is_ours(ref: ProcRef) -> bool:
    """True if ref.pid still is the process we started (not a reused pid)."""
    current = start_time(ref.pid)
    return current is not None and (ref.start_time == 0 or current == ref.start_time)


def alive(ref: ProcRef | int) -> bool:
    """True if the process runs (zombies count as dead)."""
    pid = ref.pid if isinstance(ref, ProcRef) else ref
    _reap(pid)
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return not isinstance(ref, ProcRef) or _is_ours(ref)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is pgid."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[0] not in ("Z", "X") and int(stat[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal(pids: Sequence[int], groups: Sequence[int], sig: signal.Signals) -> None:
    for g in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, sig)
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def _remaining(pids: Sequence[int], groups: Sequence[int]) -> list[int]:
    for p in pids:
        _reap(p)
    left = {p for p in pids if alive(p)}
    for g in groups:
        _reap(g)
        left.update(group_members(g))
    return sorted(left)


def stop_many(
    refs: Sequence[ProcRef | int], timeout: float = 5.0, *, groups: bool = True
) -> list[int]:
    """TERM the processes (and their groups), KILL what is left after timeout.

    Skips ProcRefs whose pid was reused by another process, and ourselves.
    Returns the pids that were signalled.
    """
    me = {os.getpid(), os.getppid()}
    pids: list[int] = []
    pgids: list[int] = []
    for ref in refs:
        pid = ref.pid if isinstance(ref, ProcRef) else ref
        if pid in me or pid <= 1:
            continue
        if isinstance(ref, ProcRef) and not _is_ours(ref):
            # Exited already, or pid reused; a leftover group may still exist.
            if groups and group_members(pid):
                pgids.append(pid)
            continue
        pids.append(pid)
        stat = _stat(pid)
        # Only kill a group the process leads (we started it with setsid).
        if groups and stat is not None and int(stat[2]) == pid and pid not in me:
            pgids.append(pid)
    if not pids and not pgids:
        return []
    _signal(pids, pgids, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _remaining(pids, pgids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _remaining(pids, pgids)
    if left:
        _signal(left, pgids, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while _remaining(pids, pgids) and time.monotonic() < deadline:
            time.sleep(0.05)
    return sorted(set(pids) | set(pgids))


def stop(ref: ProcRef | int, timeout: float = 5.0) -> bool:
    """Stop one process and its group; True if it had to be signalled."""
    return bool(stop_many([ref], timeout))


def pids_in_netns(netns: str) -> list[int]:
    """Processes whose network namespace is netns (`ip netns pids`)."""
    out = _exec.run(["ip", "netns", "pids", netns], check=False)
    return sorted(int(x) for x in out.split() if x.isdigit())
