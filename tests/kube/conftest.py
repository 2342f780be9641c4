"""Shared helpers of the Kubernetes-mode tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mizzen.cluster.tools import ToolsMissing, bin_dir


def kube_bin(tool: str) -> Path:
    """Path of a Kubernetes tool (helm, kubectl, kube-apiserver, etcd, ...)
    from the build `make kube-tools` made. Running the build from a test would
    take minutes, so a missing tool fails the test with what to run."""
    try:
        found = bin_dir() / tool
    except ToolsMissing as exc:
        pytest.fail(str(exc))
    if not os.access(found, os.X_OK):
        pytest.fail(f"{found} is missing: run `make kube-tools` (kube/build.sh) first")
    return found


@pytest.fixture(scope="session")
def kube_tool() -> Callable[[str], Path]:
    return kube_bin
