"""`mizzen cluster up|down|kubectl`: a real Kubernetes control plane and a
Mizzen node on this machine."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from mizzen.cluster.tools import ToolsMissing, bin_dir
from mizzen.kube.images import ImageError, load_image_map
from mizzen.mesh import control, launcher
from mizzen.mesh.layout import MeshLayout
from mizzen.runtime import preflight
from mizzen.runtime.errors import MeshRuntimeError
from mizzen.runtime.state import is_locked

NAME_HELP = "Cluster name: its files live under /run/mizzen/NAME."


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _layout(name: str) -> MeshLayout:
    try:
        return MeshLayout.load(name)
    except MeshRuntimeError as exc:
        _fail(str(exc))


def _status(layout: MeshLayout) -> dict[str, Any]:
    try:
        return control.call(layout.control_socket, {"op": "status"}, timeout=10)
    except control.ControlError as exc:
        _fail(f"cluster {layout.name!r}: {exc}")


@click.group()
def cluster() -> None:
    """A local Kubernetes cluster (etcd, kube-apiserver, kube-controller-manager,
    kube-scheduler, built from their Go modules) with a Mizzen node."""


@cluster.command()
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for readiness.")
@click.option(
    "--image-map",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML mapping image -> argv: what the node runs for a container of that image "
    "(a trailing * matches by prefix).",
)
def up(name: str, timeout: float, image_map: Path | None) -> None:
    """Start the cluster and wait until it is ready."""
    layout = _layout(name)
    try:
        if image_map is not None:
            load_image_map(image_map.read_text(), str(image_map))
        tools = bin_dir()
        preflight.check()
    except (ToolsMissing, MeshRuntimeError, ImageError) as exc:
        _fail(str(exc))
    if is_locked(layout.run_dir, name):
        _fail(f"{name!r} is already running: `mizzen cluster down --name {name}` stops it")
    started = time.monotonic()
    argv = [
        sys.executable,
        "-m",
        "mizzen",
        "cluster-daemon",
        "--name",
        name,
        "--bin-dir",
        str(tools),
        *(("--image-map", str(image_map.resolve())) if image_map else ()),
    ]
    console = Console(stderr=True)
    try:
        launcher.start_daemon(layout, argv)
    except launcher.LaunchError as exc:
        _fail(str(exc))
    deadline = started + timeout
    with console.status("starting the cluster") as spinner:
        while True:
            status = _status(layout)
            if status["ready"]:
                break
            if status["phase"] == "failed" or time.monotonic() > deadline:
                launcher.stop(layout)
                reason = status["error"] or f"not ready after {timeout:.0f} s ({status['phase']})"
                _fail(f"cluster {name!r} did not start: {reason}; see {layout.daemon_log}")
            spinner.update(status["phase"])
            time.sleep(0.2)
    console.print(
        f"cluster [bold]{name}[/] is ready in {time.monotonic() - started:.1f} s: "
        f"API server {status['server']}, kubeconfig {status['kubeconfig']}"
    )
    console.print(f"try: mizzen cluster kubectl --name {name} -- get nodes")


@cluster.command()
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
def down(name: str) -> None:
    """Stop the cluster and remove everything it created."""
    layout = _layout(name)
    for line in launcher.stop(layout, timeout=60):
        click.echo(line)
    click.echo(f"cluster {name!r} is down")


@cluster.command(context_settings={"ignore_unknown_options": True})
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(name: str, args: tuple[str, ...]) -> None:
    """Run the built kubectl against the cluster: `mizzen cluster kubectl -- get pods -A`."""
    layout = _layout(name)
    kubeconfig = layout.dir / "kubeconfig"
    if not kubeconfig.exists():
        _fail(f"cluster {name!r} is not running: start it with `mizzen cluster up --name {name}`")
    try:
        tool = bin_dir() / "kubectl"
    except ToolsMissing as exc:
        _fail(str(exc))
    os.execv(tool, [str(tool), f"--kubeconfig={kubeconfig}", *args])


@click.command(name="cluster-daemon", hidden=True)
@click.option("--name", required=True)
@click.option("--bin-dir", "tools", required=True, type=click.Path(path_type=Path))
@click.option("--image-map", type=click.Path(path_type=Path))
def cluster_daemon(name: str, tools: Path, image_map: Path | None) -> None:
    """Run a cluster's control plane and node in the foreground."""
    import asyncio
    import logging

    from mizzen.cluster.daemon import run_cluster

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    images = load_image_map(image_map.read_text(), str(image_map)) if image_map else {}
    sys.exit(asyncio.run(run_cluster(_layout(name), tools, images)))
