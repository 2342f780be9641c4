"""Where a pod's volumes are, for processes the Mizzen node runs.

The node has no mount namespace per pod yet: a volume's files live in a
directory of the node's, not at the container's ``mountPath``. The node
passes the container's mount table in ``MIZZEN_MOUNTS`` (JSON, mountPath ->
directory), and Mizzen's own programs (`mizzen discovery`, ...) find their
files through :func:`resolve`. Other programs see the table too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

ENV = "MIZZEN_MOUNTS"


def mount_table(container: Mapping[str, Any], volume_paths: Mapping[str, str]) -> dict[str, str]:
    """mountPath -> directory (or file, with subPath) of each mounted volume."""
    table = {}
    for mount in container.get("volumeMounts") or []:
        base = volume_paths.get(mount.get("name", ""))
        if base is None:
            continue
        sub = mount.get("subPath") or ""
        table[mount["mountPath"].rstrip("/") or "/"] = str(Path(base) / sub) if sub else base
    return table


def resolve(path: str, environ: Mapping[str, str] | None = None) -> Path:
    """``path`` as the container sees it, mapped through the longest mountPath
    that contains it; unchanged when no volume is mounted there."""
    raw = (environ if environ is not None else os.environ).get(ENV)
    table: dict[str, str] = json.loads(raw) if raw else {}
    target = PurePosixPath(path)
    best: tuple[int, str, str] | None = None
    for mount, directory in table.items():
        m = PurePosixPath(mount)
        if (target == m or m in target.parents) and (best is None or len(mount) > best[0]):
            best = (len(mount), mount, directory)
    if best is None:
        return Path(path)
    return Path(best[2]) / target.relative_to(best[1])
