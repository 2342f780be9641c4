"""Thin adapter: apply the rules from `mizzen.capture.rules` inside a pod netns.

Every command runs as `ip netns exec NETNS ...`, so nothing here can touch the
host's own tables. The process runner is injectable (httpx-style transport)
so tests can check the exact commands without root.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mizzen.capture.rules import CaptureConfig, render, render_uninstall

__all__ = ["CaptureError", "Runner", "install", "run_subprocess", "uninstall"]


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


# (argv, stdin text) -> result; never raises for a non-zero exit.
Runner = Callable[[Sequence[str], str | None], Completed]


class CaptureError(RuntimeError):
    """Applying or removing capture rules failed.

    Carries iptables' own stderr (the only precise diagnosis there is) and a
    hint about the usual causes.
    """

    def __init__(self, action: str, netns: str, stderr: str, hint: str) -> None:
        self.action = action
        self.netns = netns
        self.stderr = stderr.strip()
        self.hint = hint
        super().__init__(f"{action} in netns {netns!r} failed: {self.stderr}\nhint: {hint}")


def run_subprocess(argv: Sequence[str], stdin: str | None) -> Completed:
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError as exc:
        return Completed(127, "", f"{exc.filename}: not found")
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def _hint(stderr: str) -> str:
    low = stderr.lower()
    if "permission denied" in low or "operation not permitted" in low:
        return "capture needs root (CAP_NET_ADMIN) in the pod's network namespace"
    if "cannot open network namespace" in low or "no such file" in low:
        return "does the namespace exist? see `ip netns list`"
    if "not found" in low:
        return "install iproute2 and iptables (iptables-restore, iptables-save)"
    if "no chain/target/match" in low or "couldn't load" in low or "extension" in low:
        return "the kernel lacks a netfilter module (nat, REDIRECT or owner match)"
    return "run with --dry-run to see the rules, and check `iptables -t nat -S` in the netns"


def _check_netns(netns: str) -> None:
    # An empty name would make `ip netns exec` fail obscurely; a name with a
    # slash would escape /run/netns. Refuse both before running anything.
    if not netns or "/" in netns or netns in (".", ".."):
        raise ValueError(f"invalid network namespace name {netns!r}")


def _run(runner: Runner, action: str, netns: str, argv: Sequence[str], stdin: str | None) -> str:
    result = runner(["ip", "netns", "exec", netns, *argv], stdin)
    if result.returncode != 0:
        raise CaptureError(action, netns, result.stderr, _hint(result.stderr))
    return result.stdout


def uninstall(netns: str, *, runner: Runner = run_subprocess) -> bool:
    """Remove Mizzen/Istio capture from `netns`. Returns False if none was there.

    Other nat rules in the namespace are left alone.
    """
    _check_netns(netns)
    saved = _run(runner, "iptables-save", netns, ["iptables-save", "-t", "nat"], None)
    text = render_uninstall(saved)
    if not text:
        return False
    _run(runner, "removing capture", netns, ["iptables-restore", "--noflush"], text)
    return True


def install(netns: str, config: CaptureConfig, *, runner: Runner = run_subprocess) -> None:
    """Install capture for `config` in `netns`, replacing any earlier capture.

    Earlier capture is removed first because `--noflush` leaves built-in
    chains alone: re-running would otherwise add a second PREROUTING/OUTPUT
    jump. The new rules then go in with one atomic `iptables-restore`.
    """
    _check_netns(netns)
    uninstall(netns, runner=runner)
    _run(runner, "installing capture", netns, ["iptables-restore", "--noflush"], render(config))
