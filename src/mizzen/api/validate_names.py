"""Name and label syntax shared by the Kubernetes and Istio checks."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from mizzen.api.validate_crd import Problems, key

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# Hostnames in Istio may carry upper-case letters and underscores are refused.
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$")


def dns_label_problem(value: str) -> str | None:
    if len(value) > 63:
        return f"{value!r} is longer than 63 characters"
    if not _DNS_LABEL.match(value):
        return (
            f"{value!r} is not a valid DNS label: use lower-case letters, digits and '-',"
            " starting and ending with a letter or digit"
        )
    return None


def dns_subdomain_problem(value: str) -> str | None:
    if len(value) > 253:
        return f"{value!r} is longer than 253 characters"
    if not _DNS_SUBDOMAIN.match(value):
        return (
            f"{value!r} is not a valid name: use lower-case letters, digits, '-' and '.',"
            " starting and ending with a letter or digit"
        )
    return None


def label_key_problem(k: str) -> str | None:
    prefix, slash, name = k.rpartition("/")
    if slash and (not prefix or dns_subdomain_problem(prefix)):
        return f"label key {k!r} has an invalid prefix"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"label key {k!r} is invalid: at most 63 letters, digits, '-', '_' or '.',"
            " starting and ending with a letter or digit"
        )
    return None


def label_value_problem(v: str) -> str | None:
    if v and (len(v) > 63 or not _LABEL_NAME.match(v)):
        return (
            f"label value {v!r} is invalid: at most 63 letters, digits, '-', '_' or '.',"
            " starting and ending with a letter or digit"
        )
    return None


def check_labels(labels: Mapping[str, Any] | None, path: str, out: Problems) -> None:
    for k, v in (labels or {}).items():
        problem = label_key_problem(str(k)) or label_value_problem(str(v))
        if problem:
            out.append((key(path, str(k)), problem))


def fqdn_problem(host: str) -> str | None:
    """Problem with a plain DNS name (no wildcard); trailing dot allowed."""
    name = host[:-1] if host.endswith(".") else host
    if not name:
        return "domain name must not be empty"
    if len(name) > 255:
        return "domain name is longer than 255 characters"
    for part in name.split("."):
        if len(part) > 63:
            return f"domain name part {part!r} is longer than 63 characters"
        if not _HOST_LABEL.match(part):
            return f"{host!r} is not a valid domain name"
    return None


def wildcard_domain_problem(host: str) -> str | None:
    """Istio hosts: a DNS name optionally starting with '*', or '*' alone."""
    if host == "":
        return "host must not be empty"
    if host == "*":
        return None
    if host.startswith("*"):
        rest = host[1:]
        if not rest.startswith("."):
            return f"{host!r}: a wildcard must be the whole first label, as in *.example.com"
        return fqdn_problem(rest[1:])
    if "*" in host:
        return f"{host!r}: a wildcard may only appear as the first label"
    return fqdn_problem(host)


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True
