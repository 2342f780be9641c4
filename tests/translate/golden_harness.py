"""Golden cases: Kubernetes + Istio YAML in, the translated resources as JSON out.

A case is ``golden/<case>.yaml``: a header document, then resources::

    mizzenGolden:
      include: [bookinfo.yaml]          # files under golden/shared/, loaded first
      proxy: default/productpage-v1-0   # namespace/pod of the proxy to translate for
      proxyType: sidecar                # or router
      podIPs: {default/productpage-v1-0: 10.1.0.1, ...}   # merged over
      vips: {reviews.default.svc.cluster.local: 10.0.0.12}  # shared/header.yaml
      meshConfig: {extensionProviders: [...]}               # optional MeshConfig
    ---
    <resources>

Its expected output is ``golden/<case>.json``: per resource type, the resources
as ``MessageToDict`` sorted by name. ``MIZZEN_UPDATE_GOLDEN=1`` rewrites them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.json_format import MessageToDict, ParseDict

from mizzen.api.load import load_paths
from mizzen.api.meshconfig import parse_mesh_config
from mizzen.model.build import build_snapshot
from mizzen.model.snapshot import MeshSnapshot, Proxy
from mizzen.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, build_resources

GOLDEN = Path(__file__).parent / "golden"
SHARED = GOLDEN / "shared"
UPDATE_ENV = "MIZZEN_UPDATE_GOLDEN"

# Short, readable keys in the JSON files.
SECTIONS = {"listeners": LISTENER, "routes": ROUTE, "clusters": CLUSTER, "endpoints": ENDPOINT}


@dataclass(frozen=True)
class Case:
    name: str
    header: Mapping[str, Any]
    body: str

    @property
    def expected_path(self) -> Path:
        return GOLDEN / f"{self.name}.json"


def cases() -> list[str]:
    return sorted(p.stem for p in GOLDEN.glob("*.yaml"))


def read_case(name: str) -> Case:
    text = (GOLDEN / f"{name}.yaml").read_text()
    head, _, body = text.partition("\n---\n")
    header = dict(yaml.safe_load(head)["mizzenGolden"])
    defaults = yaml.safe_load((SHARED / "header.yaml").read_text())["mizzenGolden"]
    for key in ("podIPs", "vips"):
        header[key] = {**defaults[key], **header.get(key, {})}
    return Case(name, header, body)


def _pair(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


def case_snapshot(case: Case, workdir: Path) -> MeshSnapshot:
    body = workdir / f"{case.name}.yaml"
    body.write_text(case.body)
    paths = [SHARED / f for f in case.header.get("include", ())] + [body]
    loaded = load_paths(paths)
    assert not loaded.errors, "\n".join(map(str, loaded.errors))
    pod_ips = {_pair(k): v for k, v in case.header.get("podIPs", {}).items()}
    mesh = parse_mesh_config(case.header.get("meshConfig"), f"{case.name}.yaml meshConfig")
    vips = case.header.get("vips", {})
    return build_snapshot(loaded.resources, pod_ips, vips, "golden", mesh=mesh)


def case_proxy(case: Case, snapshot: MeshSnapshot) -> Proxy:
    namespace, name = _pair(case.header["proxy"])
    workload = next(
        (w for w in snapshot.workloads if (w.namespace, w.name) == (namespace, name)), None
    )
    assert workload is not None, f"no workload {namespace}/{name} in the snapshot"
    kind = case.header.get("proxyType", "sidecar")
    return Proxy(
        id=f"{kind}~{workload.ip}~{name}.{namespace}~{namespace}.svc.{snapshot.domain_suffix}",
        type=kind,
        ip=workload.ip,
        name=name,
        namespace=namespace,
        labels=workload.labels,
        annotations=workload.annotations,
        service_account=workload.service_account,
        ports=workload.ports,
    )


def to_json(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {
        section: [MessageToDict(resources[url][name]) for name in sorted(resources[url])]
        for section, url in SECTIONS.items()
    }


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def translate_case(case: Case, workdir: Path) -> dict[str, list[dict[str, Any]]]:
    snapshot = case_snapshot(case, workdir)
    return to_json(build_resources(snapshot, case_proxy(case, snapshot)))


def _message_type(url: str) -> Any:
    from google.protobuf import symbol_database

    return symbol_database.Default().GetSymbol(url.rsplit("/", 1)[1])


def from_json(document: Mapping[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Golden JSON back to messages, keyed like ``build_resources``."""
    out: dict[str, dict[str, Any]] = {}
    for section, url in SECTIONS.items():
        kind = _message_type(url)
        messages = [ParseDict(item, kind()) for item in document[section]]
        key = "cluster_name" if url == ENDPOINT else "name"
        out[url] = {getattr(m, key): m for m in messages}
    return out
