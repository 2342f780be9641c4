"""Pod volumes as files on the node (pure rendering; ``write_volume`` is the
edge).

Each volume becomes a directory under the pod's own directory, with the
files Kubernetes would put in it: ConfigMap and Secret keys (or the listed
``items``), downwardAPI fields, and projected sources, including the
service-account token the node requests for the pod. The node has no mount
namespaces yet, so a container does not see them at its ``mountPath``:
Mizzen's own images get the paths as options (kube/images.py); see
docs/kubernetes.md for what that means for other images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mizzen.kube.images import PodContext
from mizzen.node.spec import Sources, SpecError, field_value

DEFAULT_MODE = 0o644

# (audience, expirationSeconds) -> token, requested by the node per pod.
Tokens = Mapping[tuple[str, int], str]

SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class VolumeFile:
    path: str  # relative to the volume's directory
    data: bytes
    mode: int = DEFAULT_MODE


def token_requests(pod: Mapping[str, Any]) -> set[tuple[str, int]]:
    """(audience, expirationSeconds) of every serviceAccountToken projection."""
    wanted = set()
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken")
            if token is not None:
                wanted.add((token.get("audience", ""), int(token.get("expirationSeconds", 3600))))
    return wanted


def _keyed(
    data: Mapping[str, str], items: list[Mapping[str, Any]] | None, mode: int
) -> list[VolumeFile]:
    if not items:
        return [VolumeFile(k, v.encode(), mode) for k, v in sorted(data.items())]
    files = []
    for item in items:
        if item["key"] not in data:
            raise SpecError(f"key {item['key']!r} not found")
        files.append(VolumeFile(item["path"], data[item["key"]].encode(), item.get("mode", mode)))
    return files


def _from_source(
    kind: str, ref: Mapping[str, Any], name: str, namespace: str, sources: Sources, mode: int
) -> list[VolumeFile]:
    data = sources.get((kind, namespace, name))
    if data is None:
        if ref.get("optional"):
            return []
        raise SpecError(f"{kind.lower()} {name!r} not found")
    return _keyed(data, ref.get("items"), ref.get("defaultMode", mode))


def _downward(items: list[Mapping[str, Any]], pod: PodContext, mode: int) -> list[VolumeFile]:
    files = []
    for item in items:
        if "fieldRef" not in item:
            continue  # resourceFieldRef: the node enforces no limits
        value = field_value(item["fieldRef"]["fieldPath"], pod)
        files.append(VolumeFile(item["path"], value.encode(), item.get("mode", mode)))
    return files


def render_volume(
    volume: Mapping[str, Any], pod: PodContext, sources: Sources, tokens: Tokens
) -> list[VolumeFile]:
    """The files of one volume; [] for an emptyDir."""
    ns = pod.namespace
    if "configMap" in volume:
        ref = volume["configMap"]
        return _from_source("ConfigMap", ref, ref["name"], ns, sources, DEFAULT_MODE)
    if "secret" in volume:
        ref = volume["secret"]
        return _from_source("Secret", ref, ref["secretName"], ns, sources, DEFAULT_MODE)
    if "downwardAPI" in volume:
        ref = volume["downwardAPI"]
        return _downward(ref.get("items") or [], pod, ref.get("defaultMode", DEFAULT_MODE))
    if "projected" in volume:
        projected = volume["projected"]
        mode = projected.get("defaultMode", DEFAULT_MODE)
        files: list[VolumeFile] = []
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                t = source["serviceAccountToken"]
                key = (t.get("audience", ""), int(t.get("expirationSeconds", 3600)))
                files.append(VolumeFile(t["path"], tokens[key].encode(), mode))
            elif "configMap" in source:
                ref = source["configMap"]
                files += _from_source("ConfigMap", ref, ref["name"], ns, sources, mode)
            elif "secret" in source:
                ref = source["secret"]
                files += _from_source("Secret", ref, ref["name"], ns, sources, mode)
            elif "downwardAPI" in source:
                files += _downward(source["downwardAPI"].get("items") or [], pod, mode)
        return files
    if "emptyDir" in volume:
        return []
    kinds = sorted(k for k in volume if k != "name")
    raise SpecError(f"volume {volume.get('name')!r}: {', '.join(kinds)} is not supported here")


def volume_sources(pod: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret the pod's volumes read."""
    found: set[tuple[str, str]] = set()
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            found.add(("Secret", volume["secret"]["secretName"]))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                found.add(("ConfigMap", source["configMap"]["name"]))
            if "secret" in source:
                found.add(("Secret", source["secret"]["name"]))
    return found


def write_volume(directory: Path, files: list[VolumeFile]) -> None:
    """Replace the volume's files (each written whole, then renamed)."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = directory / f.path
        if not target.resolve().is_relative_to(directory.resolve()):
            raise SpecError(f"volume path {f.path!r} leaves the volume")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
        with os.fdopen(fd, "wb") as out:
            out.write(f.data)
        os.chmod(tmp, f.mode)
        os.replace(tmp, target)
