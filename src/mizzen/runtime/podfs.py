"""A container's own view of the file system: its volumes at their
``mountPath``, the host's files untouched.

Run as ``python -m mizzen.runtime.podfs SPEC -- COMMAND...`` inside the
pod's network namespace (``ip netns exec`` has already given the process a
mount namespace of its own, whose mounts never reach the host). It

1. mounts a tmpfs for the container's state and, on it, an overlay whose
   lower layer is the host's root file system, so that directories a
   ``mountPath`` needs can be made without writing to the host (what the
   container writes outside its volumes lands in the tmpfs and is gone when
   it ends, as a container's writable layer);
2. binds every file system mounted on the host (``/proc``, ``/sys``,
   ``/dev``, ``/run``, the pod's own ``/etc/hosts`` ...) into the overlay;
3. binds each volume (a directory, or a file for a ``subPath``) at its
   ``mountPath``, read-only when asked;
4. changes root to the overlay and directory to ``workingDir``, and execs
   COMMAND (same process, so the runtime sees its exit code).

SPEC is JSON: ``{"state": DIR, "mounts": [{"path", "source", "readOnly"}],
"cwd": DIR}``. It needs root, as the local runtime does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def host_mounts(mountinfo: str, skip: Path) -> list[str]:
    """The host's mount points to carry into the overlay: those right under
    the root (nested ones come along with ``--rbind``), none under ``skip``."""
    points = sorted(
        {line.split()[4].replace("\\040", " ") for line in mountinfo.splitlines() if line}
    )
    out: list[str] = []
    for point in points:
        path = Path(point)
        if point == "/" or path == skip or skip in path.parents:
            continue
        if any(Path(kept) in path.parents for kept in out):
            continue
        out.append(point)
    return out


def _inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def prepare(spec: dict[str, Any]) -> Path:
    """Build the container's root (steps 1-3); returns it."""
    state = Path(spec["state"])
    state.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "mode=0700", "tmpfs", str(state))
    upper, work, root = state / "upper", state / "work", state / "root"
    for d in (upper, work, root):
        d.mkdir()
    _mount(
        "-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={upper},workdir={work}", str(root)
    )
    for point in host_mounts(Path("/proc/self/mountinfo").read_text(), state):
        target = _inside(root, point)
        if not target.exists():
            continue  # under a path the overlay does not show (never expected)
        _mount("--rbind", point, str(target))
    for mount in spec["mounts"]:
        source, target = Path(mount["source"]), _inside(root, mount["path"])
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        _mount("--bind", str(source), str(target))
        if mount.get("readOnly"):
            _mount("-o", "remount,bind,ro", str(target))
    return root


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m mizzen.runtime.podfs SPEC -- COMMAND...")
    spec = json.loads(argv[0])
    command = argv[2:]
    try:
        root = prepare(spec)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        sys.exit(f"mizzen: cannot set up the container's volumes: {detail}")
    os.chroot(root)
    os.chdir(spec.get("cwd") or "/")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
