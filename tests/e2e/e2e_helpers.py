"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mesh_name(base: str) -> str:
    """Unique per pytest-xdist worker, so parallel workers never collide.
    MIZZEN_TEST_MESH_PREFIX separates concurrent test runs on one machine.
    Leftovers of an earlier run that was killed mid-test are removed first,
    so that a crash never fails the next run."""
    from mizzen.runtime.teardown import down

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    prefix = os.environ.get("MIZZEN_TEST_MESH_PREFIX", "t")
    name = f"{prefix}{worker}-{base}"[:20]
    down(name)
    return name
