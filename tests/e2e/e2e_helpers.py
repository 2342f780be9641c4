"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


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


# Runs inside a pod: one HTTP request, the outcome as one JSON line.
_REQUEST = """
import http.client, json, sys
host, port, method, path, body = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
try:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request(method, path, body=body.encode() if body else None)
    response = conn.getresponse()
    text = response.read().decode(errors="replace")
    print(json.dumps({"status": response.status, "body": text}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
"""


def pod_request(
    mesh: str, pod: str, host: str, port: int, path: str = "/", method: str = "GET", body: str = ""
) -> dict[str, object]:
    """One request from inside ``pod``: ``{"status", "body"}`` or ``{"error"}``."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mizzen",
            "exec",
            pod,
            "--name",
            mesh,
            "--",
            "python3",
            "-c",
            _REQUEST,
            host,
            str(port),
            method,
            path,
            body,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"cannot run a request in {pod}: {done.stderr.strip()}")
    result: dict[str, object] = json.loads(lines[-1])
    return result


def poll(check: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Seconds until ``check()`` holds; fails the test at the deadline."""
    import time

    import pytest

    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {deadline_s:.0f} s")


def steady(check: Callable[[], bool], deadline_s: float, what: str, times: int = 3) -> None:
    """Polls until ``check()`` holds ``times`` in a row: after a config
    change, connections the sidecars already hold keep the old filters
    until they drain (about a second), so one answer can still be stale."""
    streak = [0]

    def holds() -> bool:
        streak[0] = streak[0] + 1 if check() else 0
        return streak[0] >= times

    poll(holds, deadline_s, what)


def apply_text(layout: Any, directory: Path, name: str, text: str) -> Path:
    """Applies ``text`` (written to ``directory/<name>.yaml``) to a running
    mesh; fails the test on any error."""
    from mizzen.mesh import control

    path = directory / f"{name}.yaml"
    path.write_text(text)
    answer = control.call(layout.control_socket, {"op": "apply", "paths": [str(path)]})
    assert answer["ok"] and not answer.get("errors"), answer
    return path


def delete_path(layout: Any, path: Path) -> None:
    from mizzen.mesh import control

    answer = control.call(layout.control_socket, {"op": "delete", "paths": [str(path)]})
    assert answer["ok"], answer


def injected_namespace(name: str) -> dict[str, object]:
    """A Namespace with sidecar injection on."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"istio-injection": "enabled"}},
    }


def mizzen(*args: str, timeout: float = 120) -> Any:
    """``python -m mizzen ARGS`` with its output captured (a CompletedProcess)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "mizzen", *args], capture_output=True, text=True, timeout=timeout
    )


def service(namespace: str, name: str, *ports: dict[str, Any], app: str = "") -> dict[str, object]:
    """A Service selecting ``app=<app or name>``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": app or name}, "ports": list(ports)},
    }


def command_deployment(namespace: str, name: str, command: list[str]) -> dict[str, object]:
    """One replica of one container running ``command``, labelled app=<name>."""
    container = {"name": name, "image": "python:3.11", "command": command}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }


@contextlib.contextmanager
def running_mesh(docs: list[Any], base: str, directory: Path) -> Iterator[str]:
    """`mizzen up --detach` on ``docs`` (written to ``directory``, with what
    `up` printed on stderr in ``up.stderr``); yields the mesh's name, then
    `mizzen down`."""
    import subprocess
    import sys

    import yaml

    mizzen = [sys.executable, "-m", "mizzen"]
    path = directory / f"{base}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    name = mesh_name(base)
    up = subprocess.run(
        [*mizzen, "up", str(path), "--detach", "--name", name, "--ingress-port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr + up.stdout
    (directory / "up.stderr").write_text(up.stderr)
    try:
        yield name
    finally:
        subprocess.run([*mizzen, "down", "--name", name], capture_output=True, timeout=120)
