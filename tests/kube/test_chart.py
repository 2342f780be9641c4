"""The Helm chart renders what ``mizzen install --dry-run`` prints.

Rendered by the real ``helm`` (built by ``kube/build.sh``); a missing helm
fails the test rather than skipping it, so the chart is never silently
untested.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mizzen.kube.crds import chart_crd_files
from mizzen.kube.manifests import InstallOptions, install_manifests

CHART = Path(__file__).resolve().parents[2] / "charts" / "mizzen"

# Labels Helm charts conventionally add; none today, ignored if they appear.
HELM_LABELS = frozenset({"helm.sh/chart", "app.kubernetes.io/managed-by", "heritage", "release"})


def render(helm: Path, *values: str, namespace: str = "istio-system") -> list[dict[str, Any]]:
    argv = [str(helm), "template", "mizzen", str(CHART), "--namespace", namespace, "--include-crds"]
    for value in values:
        argv += ["--set", value]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _without_helm_labels(doc: dict[str, Any]) -> dict[str, Any]:
    labels = doc.get("metadata", {}).get("labels")
    if not labels:
        return doc
    kept = {k: v for k, v in labels.items() if k not in HELM_LABELS}
    return {**doc, "metadata": {**doc["metadata"], "labels": kept}}


def _keyed(docs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    # (kind, name) -> canonical JSON: a set of documents, with a readable diff.
    return {
        (d["kind"], d["metadata"]["name"]): json.dumps(_without_helm_labels(d), sort_keys=True)
        for d in docs
    }


def _assert_same(rendered: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    got, want = _keyed(rendered), _keyed(expected)
    assert len(got) == len(rendered), "helm rendered two objects with one kind and name"
    assert sorted(got) == sorted(want)
    for key in sorted(want):
        assert json.loads(got[key]) == json.loads(want[key]), key


@pytest.fixture(scope="module")
def helm(kube_tool: Callable[[str], Path]) -> Path:
    return kube_tool("helm")


def test_default_values_render_the_install_manifests(helm: Path) -> None:
    _assert_same(render(helm), install_manifests(InstallOptions()))


def test_values_reach_the_same_objects(helm: Path) -> None:
    rendered = render(
        helm,
        "hub=registry.test/mesh",
        "tag=1.2.3",
        "replicas=3",
        "trustDomain=example.org",
        "revision=canary",
        namespace="mesh-system",
    )
    options = InstallOptions(
        namespace="mesh-system",
        hub="registry.test/mesh",
        tag="1.2.3",
        replicas=3,
        trust_domain="example.org",
        revision="canary",
    )
    _assert_same(rendered, install_manifests(options))


def test_committed_crds_equal_the_generated_ones() -> None:
    committed = {p.name: p.read_text(encoding="utf-8") for p in (CHART / "crds").glob("*.yaml")}
    assert committed == chart_crd_files(), "stale: run scripts/gen-chart-crds.py"


def test_kube_bin_fails_with_what_to_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kube_tool: Callable[[str], Path]
) -> None:
    monkeypatch.delenv("MIZZEN_KUBE_BIN", raising=False)
    monkeypatch.setenv("MIZZEN_KUBE_CACHE", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="make kube-tools"):
        kube_tool("helm")
