"""The one place the runtime runs short-lived commands (`ip`, `iptables`)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from mizzen.runtime.errors import CommandError


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True) -> str:
    """Run argv, return stdout; raise CommandError (with stderr) when check is set."""
    args = list(argv)
    try:
        proc = subprocess.run(
            args,
            input=input,
            capture_output=True,
            text=True,
            check=False,
            # A hung `ip` must not hang `up` or `down` forever.
            timeout=30,
        )
    except FileNotFoundError as exc:
        raise CommandError(args, 127, f"{args[0]} not found: install it") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, -1, "timed out after 30 s") from exc
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stderr)
    return proc.stdout


def succeeds(argv: Sequence[str]) -> bool:
    """True when argv exits 0 (used for idempotent deletes and probes)."""
    try:
        run(argv)
    except CommandError:
        return False
    return True
