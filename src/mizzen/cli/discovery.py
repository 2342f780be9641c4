"""`mizzen discovery`: the control plane in Kubernetes mode (what the
``pilot`` image runs in the istiod pods)."""

from __future__ import annotations

import sys

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--domain", default="cluster.local", show_default=True, help="Cluster DNS suffix.")
@click.option(
    "--monitoringAddr",
    "monitoring_address",
    default=":15014",
    show_default=True,
    help="Accepted for istiod compatibility.",
)
def discovery(domain: str, monitoring_address: str) -> None:
    """Run the control plane inside a Kubernetes cluster (in an istiod pod)."""
    import asyncio
    import logging

    from mizzen.kube.discovery import run_discovery

    del monitoring_address  # metrics are not served yet
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(asyncio.run(run_discovery(domain)))
