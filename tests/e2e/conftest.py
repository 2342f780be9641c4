"""End-to-end fixtures: real meshes (network namespaces, iptables, Envoy).

They need root, `ip` and `iptables`; without them the tests are skipped with
the reason. Each mesh gets a unique name so that tests can run in parallel.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import free_port, mesh_name

ROOT = Path(__file__).resolve().parents[2]
BOOKINFO = ROOT / "examples" / "bookinfo"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "end-to-end tests need root (network namespaces, iptables)"
    for tool in ("ip", "iptables", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None:
            return f"end-to-end tests need {tool}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _missing()
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def bookinfo_mesh() -> Iterator[tuple[object, str]]:
    """A running Bookinfo mesh with its DestinationRules; yields (layout, ingress URL)."""
    from mizzen.mesh.launcher import launch, stop, wait_ready

    layout = launch(
        mesh_name("bookinfo"),
        [
            str(BOOKINFO / "platform"),
            str(BOOKINFO / "networking"),
            str(BOOKINFO / "routing" / "destination-rules.yaml"),
        ],
        free_port(),
    )
    try:
        status = wait_ready(layout, timeout=240)
        yield layout, status["ingress"]
    finally:
        stop(layout)
