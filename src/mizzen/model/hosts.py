"""How a host named in a VirtualService or DestinationRule becomes a registry
hostname: Istio's short-name rule, in one place for indexing and translation."""

from __future__ import annotations


def qualify_host(host: str, namespace: str, domain_suffix: str) -> str:
    """A name without dots is a Kubernetes service in the namespace of the
    resource that names it (``reviews`` -> ``reviews.<ns>.svc.<suffix>``);
    anything with a dot, and wildcards, are taken as written, as Istio does.
    Use the full name for a service in another namespace."""
    if host.startswith("*") or "." in host:
        return host
    return f"{host}.{namespace}.svc.{domain_suffix}"
