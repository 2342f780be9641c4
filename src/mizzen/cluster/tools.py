"""Where the Kubernetes tools built by `make kube-tools` are."""

from __future__ import annotations

import os
from pathlib import Path

TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
BIN_ENV = "MIZZEN_KUBE_BIN"
CACHE_ENV = "MIZZEN_KUBE_CACHE"


class ToolsMissing(Exception):
    """The Kubernetes tools have not been built on this machine."""


def cache_root() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mizzen" / "kube"


def _complete(directory: Path) -> bool:
    return all(os.access(directory / tool, os.X_OK) for tool in TOOLS)


def bin_dir() -> Path:
    """$MIZZEN_KUBE_BIN, else the newest complete build in the cache."""
    explicit = os.environ.get(BIN_ENV)
    if explicit:
        if not _complete(Path(explicit)):
            raise ToolsMissing(f"{BIN_ENV}={explicit} lacks one of: {', '.join(TOOLS)}")
        return Path(explicit)
    root = cache_root()
    builds = sorted(
        (d / "bin" for d in root.glob("k8s-*") if _complete(d / "bin")),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    if not builds:
        raise ToolsMissing(
            f"the Kubernetes tools are not built (looked in {root}): run `make kube-tools` "
            "in a Mizzen checkout (10-25 minutes once; later runs reuse the cache)"
        )
    return builds[0]
