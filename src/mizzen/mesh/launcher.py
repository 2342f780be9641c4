"""Start, wait for and stop a mesh daemon from the CLI (or a test)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mizzen.api.meshconfig import MeshConfigError, load_mesh_config
from mizzen.ca.authority import load_plugin
from mizzen.ca.errors import CaError
from mizzen.mesh import control
from mizzen.mesh.layout import MeshLayout
from mizzen.runtime import preflight
from mizzen.runtime.errors import MeshRuntimeError
from mizzen.runtime.state import is_locked
from mizzen.runtime.teardown import down


class LaunchError(Exception):
    """The mesh could not be started or did not become ready."""


def launch(
    name: str,
    paths: Sequence[str],
    ingress_port: int,
    run_dir: str | None = None,
    *,
    mesh_config: str | None = None,
    ca_certs: str | None = None,
) -> MeshLayout:
    """Check the machine and the options, then start the daemon in its own session.

    ``mesh_config`` is a MeshConfig YAML file; ``ca_certs`` a directory in
    Istio's plug-in CA layout. Both are checked here, so that a mistake is
    reported at once rather than in the daemon's log.
    """
    try:
        layout = MeshLayout.load(name, run_dir)
        preflight.check()
    except MeshRuntimeError as exc:
        raise LaunchError(str(exc)) from None
    extra: list[str] = []
    if mesh_config is not None:
        try:
            load_mesh_config(mesh_config)
        except MeshConfigError as exc:
            raise LaunchError(str(exc)) from None
        extra += ["--mesh-config", os.path.abspath(mesh_config)]
    if ca_certs is not None:
        try:
            load_plugin(Path(ca_certs))
        except CaError as exc:
            raise LaunchError(str(exc)) from None
        extra += ["--ca-certs", os.path.abspath(ca_certs)]
    if is_locked(layout.run_dir, name):
        raise LaunchError(
            f"mesh {name!r} is already running: stop it with `mizzen down --name {name}` "
            "or choose another --name"
        )
    problem = preflight.port_problem(ingress_port, purpose="the ingress gateway")
    if problem:
        raise LaunchError(f"{problem} (--ingress-port)")
    argv = [sys.executable, "-m", "mizzen", "daemon", "--name", name]
    argv += ["--ingress-port", str(ingress_port), "--run-dir", str(layout.run_dir), *extra]
    start_daemon(layout, [*argv, "--", *paths])
    return layout


def start_daemon(layout: MeshLayout, argv: Sequence[str]) -> None:
    """Start argv (a mesh or cluster daemon) in its own session and wait
    until it answers on the control socket."""
    layout.daemon_log.parent.mkdir(parents=True, exist_ok=True)
    with open(layout.daemon_log, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _wait_for_socket(layout, proc)


def _log_tail(layout: MeshLayout, lines: int = 5) -> str:
    try:
        text = layout.daemon_log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    errors = [line for line in text if "error" in line.lower()]
    return "\n".join((errors or text)[-lines:])


def _wait_for_socket(
    layout: MeshLayout, proc: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(
                f"the mesh daemon exited (status {proc.returncode}):\n{_log_tail(layout)}"
            )
        if layout.control_socket.exists():
            try:
                control.call(layout.control_socket, {"op": "status"}, timeout=5)
                return
            except control.ControlError:
                pass
        time.sleep(0.1)
    raise LaunchError(
        f"the mesh daemon did not start within {timeout:.0f} s; see {layout.daemon_log}"
    )


def status(layout: MeshLayout) -> dict[str, Any]:
    return control.call(layout.control_socket, {"op": "status"}, timeout=30)


def wait_ready(layout: MeshLayout, timeout: float) -> dict[str, Any]:
    """Until every pod is ready and every proxy ACKed the current config."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = status(layout)
        except control.ControlError as exc:
            raise LaunchError(f"{exc}\n{_log_tail(layout)}") from None
        if last.get("ready"):
            return last
        time.sleep(0.2)
    waiting = [
        f"{p['namespace']}/{p['name']}"
        for p in last.get("pods", [])
        if not p["ready"] and p.get("status") not in ("Completed", "Failed")
    ]
    unsynced = [p["id"] for p in last.get("proxies", []) if not p["synced"]]
    raise LaunchError(
        f"mesh {layout.name} not ready after {timeout:.0f} s; pods not ready: "
        f"{', '.join(waiting) or 'none'}; proxies not synced: {', '.join(unsynced) or 'none'}; "
        f"see `mizzen get pods --name {layout.name}` and {layout.daemon_log}"
    )


def stop(layout: MeshLayout, timeout: float = 60) -> list[str]:
    """Ask the daemon to shut down cleanly (pods get their preStop hooks and
    grace periods, 30 s by default), then remove whatever is left."""
    try:
        control.call(layout.control_socket, {"op": "shutdown"}, timeout=5)
        deadline = time.monotonic() + timeout
        while layout.daemon_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    except control.ControlError:
        pass  # not running (or crashed): teardown below finds what is left
    report = down(layout.name, layout.run_dir)
    return [report.summary()] if report.removed_anything else []
