"""`mizzen capture`: install Istio-style transparent capture in a pod netns.

Thin on purpose: annotations are gathered from one of three sources, turned
into a `CaptureConfig`, and either printed (`--dry-run`) or applied by the
iptables adapter. Every user mistake becomes a usage error, not a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
import yaml

from mizzen.capture.iptables import CaptureError, install, uninstall
from mizzen.capture.rules import CaptureConfig, render_commands

__all__ = ["capture", "pod_annotations_from_manifest"]

# Kinds whose pods come from `spec.template`; CronJob nests one level deeper.
_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


def _template_annotations(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        meta = doc.get("metadata") or {}
    elif kind in _TEMPLATE_KINDS:
        meta = (spec.get("template") or {}).get("metadata") or {}
    elif kind == "CronJob":
        job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        meta = (job_spec.get("template") or {}).get("metadata") or {}
    else:
        return None
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise click.UsageError(f"{kind}: metadata.annotations must be a mapping")
    return annotations


def pod_annotations_from_manifest(text: str, pod: str | None) -> dict[str, str]:
    """Pod annotations of the Pod (or workload pod template) named `pod`.

    Without `pod`, the manifest must hold exactly one pod-bearing object.
    """
    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, Mapping)]
    except yaml.YAMLError as exc:
        raise click.UsageError(f"--from-manifest: not valid YAML: {exc}") from None
    found: dict[str, Mapping[str, Any]] = {}
    for doc in docs:
        annotations = _template_annotations(doc)
        if annotations is not None:
            name = str((doc.get("metadata") or {}).get("name", ""))
            found[f"{doc['kind']}/{name}"] = annotations
            found.setdefault(name, annotations)
    kinds_names = [k for k in found if "/" in k]
    if not kinds_names:
        raise click.UsageError("--from-manifest: no Pod or workload with a pod template found")
    if pod is None:
        if len(kinds_names) != 1:
            raise click.UsageError(
                "--from-manifest holds several pods; pick one with --pod: " + ", ".join(kinds_names)
            )
        chosen = found[kinds_names[0]]
    elif pod in found:
        chosen = found[pod]
    else:
        raise click.UsageError(f"--pod {pod!r} not in manifest; found: {', '.join(kinds_names)}")
    return {str(k): str(v) for k, v in chosen.items()}


def _annotations_from_json(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--annotations") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise click.BadParameter("want a JSON object of string values", param_hint="--annotations")
    return {str(k): v for k, v in data.items()}


def _annotations_from_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"want KEY=VALUE, got {pair!r}", param_hint="--pod-annotation")
        result[key] = value
    return result


@click.command("capture")
@click.option("--netns", metavar="NAME", help="Pod network namespace to install capture in.")
@click.option("--annotations", "annotations_json", metavar="JSON", help="Pod annotations as JSON.")
@click.option(
    "--pod-annotation",
    "pod_annotations",
    metavar="KEY=VALUE",
    multiple=True,
    help="One pod annotation (repeatable).",
)
@click.option(
    "--from-manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read pod annotations from a Kubernetes manifest.",
)
@click.option("--pod", metavar="NAME", help="With --from-manifest: which Pod or workload.")
@click.option("--dry-run", is_flag=True, help="Print the iptables rules; change nothing.")
@click.option("--uninstall", "remove", is_flag=True, help="Remove capture from --netns.")
@click.option(
    "--istio-iptables",
    "istio_iptables",
    is_flag=True,
    help="Take Istio's istio-iptables flags after `--` (-p -z -u -g -m -i -x -b -d -o -q), "
    "as the injected istio-init container passes them.",
)
@click.argument("iptables_args", nargs=-1, type=click.UNPROCESSED)
def capture(
    netns: str | None,
    annotations_json: str | None,
    pod_annotations: tuple[str, ...],
    from_manifest: Path | None,
    pod: str | None,
    dry_run: bool,
    remove: bool,
    istio_iptables: bool,
    iptables_args: tuple[str, ...],
) -> None:
    """Redirect a pod's TCP traffic through its sidecar, as Istio's init container does.

    The traffic.sidecar.istio.io/* annotations select what is captured, or
    with --istio-iptables the flags Istio's istio-iptables takes.
    """
    if iptables_args and not istio_iptables:
        raise click.UsageError(f"unexpected arguments: {' '.join(iptables_args)}")
    sources = [s for s in (annotations_json, pod_annotations, from_manifest, istio_iptables) if s]
    if len(sources) > 1:
        raise click.UsageError(
            "use only one of --annotations, --pod-annotation, --from-manifest, --istio-iptables"
        )
    if pod is not None and from_manifest is None:
        raise click.UsageError("--pod needs --from-manifest")
    if not dry_run and not netns:
        raise click.UsageError("--netns is required unless --dry-run")

    if remove:
        if sources or dry_run:
            raise click.UsageError("--uninstall takes only --netns")
        assert netns is not None  # checked above
        _apply(lambda: uninstall(netns))
        click.echo(f"capture removed from netns {netns}")
        return

    if annotations_json is not None:
        annotations = _annotations_from_json(annotations_json)
    elif pod_annotations:
        annotations = _annotations_from_pairs(pod_annotations)
    elif from_manifest is not None:
        annotations = pod_annotations_from_manifest(from_manifest.read_text(), pod)
    else:
        annotations = {}
    try:
        config = (
            _from_istio_iptables(iptables_args)
            if istio_iptables
            else CaptureConfig.from_annotations(annotations)
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    if dry_run:
        click.echo("\n".join(render_commands(config)))
        return
    assert netns is not None  # checked above
    _apply(lambda: install(netns, config))
    click.echo(f"capture installed in netns {netns}")


def _from_istio_iptables(args: tuple[str, ...]) -> CaptureConfig:
    from mizzen.kube.inject import capture_config_from_iptables_args

    return capture_config_from_iptables_args(args)


def _apply(action: Callable[[], object]) -> None:
    try:
        action()
    except (CaptureError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
