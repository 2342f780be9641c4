"""Can this machine run a local mesh? Each problem is one actionable line."""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from mizzen.runtime.errors import PreflightError

_TOOLS = (
    ("ip", "iproute2 is missing: apt-get install iproute2"),
    ("iptables", "iptables is missing: apt-get install iptables"),
    ("iptables-restore", "iptables-restore is missing: apt-get install iptables"),
    ("setpriv", "setpriv is missing: apt-get install util-linux"),
)


def problems(
    *,
    euid: Callable[[], int] | None = None,
    which: Callable[[str], str | None] | None = None,
    netns_path: Path = Path("/proc/self/ns/net"),
) -> list[str]:
    """Every reason `up` would fail, as one line each; empty when all is well."""
    # Looked up at call time (not as defaults) so that a test can patch os.
    euid = euid or os.geteuid
    which = which or shutil.which
    out: list[str] = []
    if euid() != 0:
        out.append("mizzen up needs root (namespaces, bridges, iptables): run it with sudo")
    for tool, fix in _TOOLS:
        if which(tool) is None:
            out.append(fix)
    if not netns_path.exists():
        out.append(
            "this kernel has no network namespaces (CONFIG_NET_NS): use a kernel that has them"
        )
    return out


def check() -> None:
    """Raise PreflightError listing every problem found."""
    found = problems()
    if found:
        raise PreflightError(found)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something is bound to host:port (TCP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR so a port in TIME_WAIT does not count as taken: the
        # real listener sets it too.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def port_problem(port: int, host: str = "127.0.0.1", purpose: str = "") -> str | None:
    """One-line error if host:port is taken, else None."""
    if not port_in_use(port, host):
        return None
    what = f" (needed for {purpose})" if purpose else ""
    return (
        f"port {port} on {host} is already in use{what}: stop what listens there "
        f"(`ss -ltnp 'sport = :{port}'`) or choose another port"
    )
