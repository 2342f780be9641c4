"""Container paths through a pod's mount table (mizzen.kube.mounts)."""

from __future__ import annotations

import json
from pathlib import Path

from mizzen.kube.mounts import ENV, mount_table, resolve

CONTAINER = {
    "volumeMounts": [
        {"name": "certs", "mountPath": "/etc/certs/"},
        {"name": "token", "mountPath": "/var/run/secrets/tokens"},
        {"name": "config", "mountPath": "/etc/app/app.yaml", "subPath": "app.yaml"},
        {"name": "missing", "mountPath": "/nowhere"},
    ]
}
VOLUMES = {"certs": "/run/p/v/certs", "token": "/run/p/v/token", "config": "/run/p/v/config"}


def test_the_table_maps_each_mount_path_to_its_volume() -> None:
    assert mount_table(CONTAINER, VOLUMES) == {
        "/etc/certs": "/run/p/v/certs",
        "/var/run/secrets/tokens": "/run/p/v/token",
        "/etc/app/app.yaml": "/run/p/v/config/app.yaml",
    }


def test_paths_resolve_through_the_longest_mount() -> None:
    env = {ENV: json.dumps({"/etc": "/run/p/etc", "/etc/certs": "/run/p/v/certs"})}
    assert resolve("/etc/certs/root-cert.pem", env) == Path("/run/p/v/certs/root-cert.pem")
    assert resolve("/etc/certs", env) == Path("/run/p/v/certs")
    assert resolve("/etc/hosts", env) == Path("/run/p/etc/hosts")


def test_paths_outside_every_mount_stay_as_they_are() -> None:
    env = {ENV: json.dumps({"/etc/certs": "/run/p/v/certs"})}
    assert resolve("/etc/certsx/file", env) == Path("/etc/certsx/file")
    assert resolve("/var/run/x", {}) == Path("/var/run/x")
