"""`mizzen install`: put the control plane on a Kubernetes cluster.

Thin: the objects come from ``mizzen.kube.manifests``; this command prints
them (``--dry-run``) or hands them to ``kubectl apply --server-side``, which
owns retries, field ownership and the wait for CRDs to be established.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import click

from mizzen.kube.manifests import (
    DEFAULT_HUB,
    DEFAULT_TAG,
    InstallOptions,
    install_manifests,
    kubectl_apply_argv,
    to_yaml,
)

__all__ = ["install"]


def _resolve_kubectl(kubectl: str) -> str:
    found = shutil.which(kubectl)
    if found is None:
        raise click.ClickException(
            f"kubectl not found ({kubectl!r}); give its path with --kubectl PATH, "
            "build it with `make kube-tools`, or use --dry-run to print the manifests"
        )
    return found


@click.command("install")
@click.option(
    "--dry-run", is_flag=True, help="Print the manifests as one YAML stream; apply nothing."
)
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="kubeconfig for kubectl.")
@click.option("--kubectl", "kubectl", default="kubectl", show_default=True, help="kubectl to run.")
@click.option(
    "--namespace", default="istio-system", show_default=True, help="Control plane namespace."
)
@click.option("--hub", default=DEFAULT_HUB, show_default=True, help="Image registry and path.")
@click.option("--tag", default=DEFAULT_TAG, show_default=True, help="Image tag.")
@click.option("--replicas", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--trust-domain", default="cluster.local", show_default=True)
@click.option("--revision", default="", help="Istio revision name (empty: the default revision).")
def install(
    dry_run: bool,
    kubeconfig: str | None,
    kubectl: str,
    namespace: str,
    hub: str,
    tag: str,
    replicas: int,
    trust_domain: str,
    revision: str,
) -> None:
    """Install Mizzen's CRDs, control plane and webhooks on a cluster."""
    options = InstallOptions(
        namespace=namespace,
        hub=hub,
        tag=tag,
        replicas=replicas,
        trust_domain=trust_domain,
        revision=revision,
    )
    text = to_yaml(install_manifests(options))
    if dry_run:
        click.echo(text, nl=False)
        return
    argv = kubectl_apply_argv(_resolve_kubectl(kubectl), kubeconfig)
    done = subprocess.run(argv, input=text, text=True, check=False)
    if done.returncode != 0:
        click.echo(f"error: {' '.join(argv)} exited with {done.returncode}", err=True)
        sys.exit(done.returncode)
