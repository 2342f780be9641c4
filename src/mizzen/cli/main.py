"""`mizzen`: a tiny kubectl for a local mesh. Thin: every command calls the
layers below and prints; nothing here is worth testing on its own."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from mizzen.mesh import control

NAME_HELP = "Which mesh (several can run at once)."


def _console() -> Console:
    # Piped (a script, a log) rich would squeeze tables to 80 columns and
    # cut ids and serials: print them whole.
    return Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 250)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _layout(name: str, run_dir: str | None = None) -> Any:
    from mizzen.mesh.layout import MeshLayout
    from mizzen.runtime.errors import MeshNameError

    try:
        return MeshLayout.load(name, run_dir)
    except MeshNameError as exc:
        _fail(str(exc))


def _call(name: str, request: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    layout = _layout(name)
    try:
        answer = control.call(layout.control_socket, request, timeout=timeout)
    except control.ControlError as exc:
        _fail(f"{exc}; start it with `mizzen up PATH --name {name}`")
        raise  # unreachable, for type checkers
    if not answer.get("ok", False) and "error" in answer:
        _fail(str(answer["error"]))
    return answer


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mizzen")
def cli() -> None:
    """Mizzen: the Istio API on Envoy sidecars, run as a local mesh."""


# -- up / down ---------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
@click.option("--detach", "-d", is_flag=True, help="Return once the mesh is ready.")
@click.option("--ingress-port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for readiness.")
@click.option(
    "--mesh-config",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Istio MeshConfig YAML (trustDomain, rootNamespace, enableAutoMtls, "
    "defaultConfig.proxyMetadata).",
)
@click.option(
    "--ca-certs",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Plug-in CA: a directory with ca-cert.pem, ca-key.pem, root-cert.pem and "
    "cert-chain.pem (Istio's cacerts layout) [default: a self-signed root].",
)
def up(
    paths: tuple[str, ...],
    name: str,
    detach: bool,
    ingress_port: int,
    timeout: float,
    mesh_config: str | None,
    ca_certs: str | None,
) -> None:
    """Start a local mesh with the resources in PATHS (files or folders)."""
    from mizzen.mesh.launcher import LaunchError, launch, wait_ready

    try:
        layout = launch(
            name,
            [str(Path(p).resolve()) for p in paths],
            ingress_port,
            mesh_config=mesh_config,
            ca_certs=ca_certs,
        )
    except LaunchError as exc:
        _fail(str(exc))
        return
    console = _console()
    with console.status(f"starting mesh [bold]{name}[/] ..."):
        try:
            status = wait_ready(layout, timeout)
        except LaunchError as exc:
            _fail(str(exc))
            return
    _print_status(console, status)
    for row in status.get("skipped", []):
        click.echo(
            f"skipped: {row['source']}: {row['kind']} {row['name']}: {row['reason']}", err=True
        )
    console.print(f"ingress gateway: [bold]{status['ingress']}[/]")
    if detach:
        console.print(f"stop it with: mizzen down --name {name}")
        return
    console.print("press Ctrl-C to stop the mesh")
    try:
        while layout.daemon_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    _down(name)


@cli.command()
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
def down(name: str) -> None:
    """Stop a mesh and remove everything it created."""
    _down(name)


def _down(name: str) -> None:
    from mizzen.mesh.launcher import stop

    removed = stop(_layout(name))
    click.echo(f"mesh {name} is down" + (f" (removed: {', '.join(removed)})" if removed else ""))


# -- apply / delete ----------------------------------------------------------


def _print_changes(answer: dict[str, Any]) -> None:
    for key in answer.get("added", []):
        click.echo(f"{key} created")
    for key in answer.get("updated", []):
        click.echo(f"{key} configured")
    for key in answer.get("deleted", []):
        click.echo(f"{key} deleted")
    if answer.get("unchanged"):
        click.echo(f"{answer['unchanged']} unchanged")
    for reason in answer.get("skipped", []):
        click.echo(f"skipped: {reason}", err=True)
    for note in answer.get("warnings", []):
        click.echo(f"warning: {note}", err=True)
    for error in answer.get("errors", []):
        click.echo(f"error: {error}", err=True)
    if answer.get("errors"):
        sys.exit(1)


@cli.command()
@click.option(
    "-f", "--filename", "paths", multiple=True, required=True, type=click.Path(exists=True)
)
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
def apply(paths: tuple[str, ...], name: str) -> None:
    """Create or update resources from files or folders."""
    answer = _call(name, {"op": "apply", "paths": [str(Path(p).resolve()) for p in paths]})
    _print_changes(answer)


@cli.command()
@click.option(
    "-f", "--filename", "paths", multiple=True, required=True, type=click.Path(exists=True)
)
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
def delete(paths: tuple[str, ...], name: str) -> None:
    """Delete the resources named in files or folders."""
    answer = _call(name, {"op": "delete", "paths": [str(Path(p).resolve()) for p in paths]})
    _print_changes(answer)


# -- get ---------------------------------------------------------------------


@cli.command()
@click.argument("what", type=click.Choice(["pods", "services", "proxies", "skipped", "authz"]))
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def get(what: str, name: str, output: str) -> None:
    """List pods, services, proxies, the documents that were skipped, or
    `authz`: the authorization policies and JWT issuers each workload
    enforces, in the order its proxy applies them."""
    status = _call(name, {"op": "status"})
    rows = status[what]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    _console().print(_table(what, rows))


def _table(what: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    if what == "pods":
        for col in ("NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "IP", "SIDECAR", "AGE"):
            table.add_column(col)
        for r in rows:
            ready = "yes" if r["ready"] else ("error: " + r["error"] if r["error"] else "no")
            table.add_row(
                r["namespace"],
                r["name"],
                ready,
                r["status"],
                str(r["restarts"]),
                r["ip"],
                "yes" if r["sidecar"] else "no",
                f"{r['age']:.0f}s",
            )
    elif what == "skipped":
        for col in ("SOURCE", "KIND", "NAME", "REASON"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["source"], r["kind"], r["name"], r["reason"])
    elif what == "authz":
        for col in ("NAMESPACE", "WORKLOAD", "ACTION", "POLICY", "SCOPE", "RULES", "NOTE"):
            table.add_column(col)
        for r in rows:
            rules = str(r["rules"]) if r["action"] != "JWT" else ""
            table.add_row(
                r["namespace"],
                r["workload"],
                r["action"],
                r["policy"],
                r["scope"],
                rules,
                r["note"],
            )
    elif what == "services":
        for col in ("NAMESPACE", "NAME", "VIP", "PORTS", "ENDPOINTS"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["namespace"],
                r["name"],
                r["vip"] or "None",
                ",".join(r["ports"]),
                str(r["endpoints"]),
            )
    else:
        for col in ("PROXY", "SYNCED", "VERSION", "IDENTITY", "CERT EXPIRES", "LAST NACK"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["id"],
                "yes" if r["synced"] else "no",
                r["version"] or "-",
                r.get("identity") or "-",
                r.get("cert_expires") or "-",
                r["nack"] or "",
            )
    return table


def _print_status(console: Console, status: dict[str, Any]) -> None:
    console.print(_table("pods", status["pods"]))
    console.print()
    console.print(_table("proxies", status["proxies"]))


# -- exec / logs -------------------------------------------------------------


def _find_pod(name: str, pod: str) -> dict[str, Any]:
    namespace, _, short = pod.rpartition("/")
    pods: list[dict[str, Any]] = _call(name, {"op": "status"})["pods"]
    matches = [
        p for p in pods if p["name"] == short and (not namespace or p["namespace"] == namespace)
    ]
    if not matches:
        _fail(f"no pod {pod!r} in mesh {name}: see `mizzen get pods --name {name}`")
    if len(matches) > 1:
        _fail(f"pod name {short!r} is ambiguous: write it as NAMESPACE/{short}")
    return matches[0]


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
def exec_(pod: str, command: tuple[str, ...], name: str) -> None:
    """Run COMMAND inside POD's network namespace (POD or NAMESPACE/POD)."""
    found = _find_pod(name, pod)
    os.execvp("ip", ["ip", "netns", "exec", found["netns"], *command])


@cli.command()
@click.argument("pod")
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
@click.option("--proxy", is_flag=True, help="Show the sidecar's (agent and Envoy) log.")
@click.option("-c", "--container", default=None, help="Container name (default: the first).")
def logs(pod: str, name: str, proxy: bool, container: str | None) -> None:
    """Print a pod's container log, or its proxy's."""
    found = _find_pod(name, pod)
    layout = _layout(name)
    ns, pod_name = found["namespace"], found["name"]
    role = "proxy" if proxy else (container or found["containers"][0])
    paths = [layout.log_path(ns, pod_name, role)]
    if proxy:  # the agent's own log, then Envoy's (with its access log)
        paths.append(layout.proxy_dir(ns, pod_name) / "envoy.log")
    existing = [p for p in paths if p.exists()]
    if not existing:
        _fail(f"no log yet for {pod} ({role})")
    for path in existing:
        sys.stdout.write(path.read_text(errors="replace"))


# -- proxy-config ------------------------------------------------------------


GATEWAY = ("istio-system", "istio-ingressgateway-0")


@cli.command(name="proxy-config")
@click.argument("what", type=click.Choice(["secret"]))
@click.argument("pod")
@click.option("--name", default="default", show_default=True, help=NAME_HELP)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def proxy_config(what: str, pod: str, name: str, output: str) -> None:
    """Show what a proxy holds: `secret` lists its certificates (never keys).

    POD is a pod with a sidecar (POD or NAMESPACE/POD), or the ingress
    gateway, istio-ingressgateway-0.
    """
    from mizzen.ca.describe import SECRETS_DUMP_PATH, describe_secrets
    from mizzen.mesh.admin import AdminError, admin_get

    layout = _layout(name)
    namespace, _, short = pod.rpartition("/")
    if short == GATEWAY[1] and namespace in ("", GATEWAY[0]):
        ns, pod_name, netns = *GATEWAY, None
    else:
        found = _find_pod(name, pod)
        if not found["sidecar"]:
            _fail(f"pod {found['namespace']}/{found['name']} has no sidecar")
        ns, pod_name, netns = found["namespace"], found["name"], found["netns"]
    try:
        dump = json.loads(admin_get(layout.proxy_dir(ns, pod_name), SECRETS_DUMP_PATH, netns))
    except (AdminError, ValueError) as exc:
        _fail(f"{ns}/{pod_name}: {exc}")
    certs = describe_secrets(dump)
    if output == "json":
        click.echo(json.dumps([c.to_json() for c in certs], indent=2))
        return
    table = Table(box=None, header_style="bold")
    for col in ("SECRET", "KIND", "SERIAL", "NOT BEFORE", "NOT AFTER", "SUBJECT", "SANS"):
        table.add_column(col)
    for c in certs:
        table.add_row(
            c.secret,
            c.kind,
            c.serial,
            c.not_before.isoformat(timespec="seconds"),
            c.not_after.isoformat(timespec="seconds"),
            c.subject or '""',
            ", ".join(c.sans) or "-",
        )
    _console().print(table)


# -- internal ----------------------------------------------------------------


@cli.command(hidden=True)
@click.option("--name", required=True)
@click.option("--ingress-port", type=int, required=True)
@click.option("--run-dir", default=None)
@click.option("--mesh-config", default=None)
@click.option("--ca-certs", default=None)
@click.argument("paths", nargs=-1)
def daemon(
    name: str,
    ingress_port: int,
    run_dir: str | None,
    mesh_config: str | None,
    ca_certs: str | None,
    paths: tuple[str, ...],
) -> None:
    """Run a mesh's control plane and pod supervisor in the foreground."""
    import asyncio
    import logging

    from mizzen.api.meshconfig import MeshConfigError, load_mesh_config
    from mizzen.mesh.daemon import run_daemon

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_mesh_config(mesh_config) if mesh_config else None
    except MeshConfigError as exc:
        _fail(str(exc))
    plugin = Path(ca_certs) if ca_certs else None
    layout = _layout(name, run_dir)
    sys.exit(asyncio.run(run_daemon(layout, ingress_port, list(paths), config, plugin)))


@cli.command()
@click.option("--once", is_flag=True, help="Run the tour once, then bring the mesh down.")
@click.option("--name", default="demo", show_default=True, help=NAME_HELP)
@click.option("--ingress-port", default=8080, show_default=True, type=int)
def demo(once: bool, name: str, ingress_port: int) -> None:
    """Bring up the Bookinfo example and tour its routing variants."""
    from mizzen.demo import run_demo

    sys.exit(run_demo(name=name, ingress_port=ingress_port, once=once))


@cli.command()
@click.option("--quick", is_flag=True, help="Small sizes, for a quick look (< 3 minutes).")
@click.option(
    "--suite",
    type=click.Choice(["all", "dataplane", "controlplane"]),
    default="all",
    show_default=True,
)
@click.option(
    "--results",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench/results"),
    show_default=True,
    help="Where latest.json and latest.md go.",
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def bench(quick: bool, suite: str, results: Path, output: str) -> None:
    """Measure data-plane overhead and control-plane scale, side by side."""
    from mizzen.bench.runner import run_bench

    report, paths = run_bench(quick=quick, suite=suite, results=results, argv=sys.argv)
    if output == "json":
        click.echo(json.dumps(report, indent=2))
        return
    from mizzen.bench.report import rich_table

    console = _console()
    for result in report["suites"]:
        console.print(rich_table(result["table"]))
    console.print(f"results: {paths[0]} and {paths[1]}")


def _register_optional() -> None:
    # The agent and capture commands live next to their layers.
    from mizzen.cli.agent import agent
    from mizzen.cli.capture import capture
    from mizzen.cli.cluster import cluster, cluster_daemon
    from mizzen.cli.discovery import discovery
    from mizzen.cli.install import install
    from mizzen.cli.kube_inject import kube_inject

    cli.add_command(agent)
    cli.add_command(capture)
    cli.add_command(cluster)
    cli.add_command(cluster_daemon)
    cli.add_command(discovery)
    cli.add_command(install)
    cli.add_command(kube_inject)


def main() -> None:
    _register_optional()
    cli()
