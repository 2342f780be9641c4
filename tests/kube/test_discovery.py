"""The control plane's handling of watch events that need no API server
(mizzen.kube.discovery); the API paths are exercised in
tests/e2e/test_kube_mesh.py against a real one."""

from __future__ import annotations

import asyncio
from typing import Any

from mizzen.api.meshconfig import MeshConfig
from mizzen.kube.client import Credentials, KubeClient
from mizzen.kube.discovery import DiscoveryOptions, KubeDiscovery


def discovery() -> KubeDiscovery:
    # Never entered: no request is made.
    kube = KubeClient(Credentials(server="https://198.18.0.1:6443"))
    return KubeDiscovery(DiscoveryOptions("istio-system", "198.18.0.2"), kube, MeshConfig())


def mesh_config_map(text: str) -> dict[str, Any]:
    return {"metadata": {"name": "istio", "namespace": "istio-system"}, "data": {"mesh": text}}


def test_the_mesh_config_map_applies_live_and_a_bad_one_changes_nothing() -> None:
    async def run() -> None:
        d = discovery()
        await d._on_mesh_config("MODIFIED", mesh_config_map("enableAutoMtls: false\n"))
        assert d.mesh.enable_auto_mtls is False
        assert d._changed.is_set()
        d._changed.clear()
        await d._on_mesh_config("MODIFIED", mesh_config_map("enableAutoMtls: [not, a, bool]\n"))
        assert d.mesh.enable_auto_mtls is False
        assert not d._changed.is_set()
        await d._on_mesh_config("DELETED", mesh_config_map(""))
        assert d.mesh == MeshConfig()

    asyncio.run(run())


def test_a_pod_record_comes_from_the_watched_pod() -> None:
    d = discovery()
    d.informers["Pod"].cache["shop/reviews-1"] = {
        "metadata": {"name": "reviews-1", "namespace": "shop", "uid": "u-1"},
        "spec": {"serviceAccountName": "reviews"},
    }
    record = d.pod_record("shop", "reviews-1")
    assert record is not None and (record.uid, record.service_account) == ("u-1", "reviews")
    assert d.pod_record("shop", "gone") is None


def test_the_webhook_certificate_names_the_service_and_the_pod() -> None:
    options = DiscoveryOptions("istio-system", "198.18.0.2")
    assert options.service_names == [
        "istiod",
        "istiod.istio-system",
        "istiod.istio-system.svc",
        "istiod.istio-system.svc.cluster.local",
    ]
