"""`mizzen kube-inject`: add sidecars to a manifest, as `istioctl kube-inject` does.

Thin: reads a YAML stream, hands each object to
`mizzen.kube.inject.kube_inject_object`, writes the stream back. Every
problem becomes a usage error naming the file and the document, never a
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from mizzen.kube.inject import InjectError, InjectOptions, kube_inject_object

__all__ = ["kube_inject"]


def _read(filename: str) -> str:
    if filename == "-":
        return sys.stdin.read()
    try:
        return Path(filename).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.UsageError(f"{filename}: cannot read: {reason}") from None


def _documents(text: str, shown: str) -> Iterator[tuple[int, Any]]:
    stream = yaml.safe_load_all(text)
    index = 0
    while True:
        try:
            doc = next(stream)
        except StopIteration:
            return
        except yaml.YAMLError as exc:
            raise click.UsageError(f"{shown}: document {index}: not valid YAML: {exc}") from None
        yield index, doc
        index += 1


def _label(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    meta = doc.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return f" ({doc.get('kind', '?')} {meta.get('name', '<unnamed>')})"


def inject_stream(text: str, shown: str, options: InjectOptions) -> list[Any]:
    """Every document of `text`, injected where it holds a pod (template)."""
    out: list[Any] = []
    for index, doc in _documents(text, shown):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise click.UsageError(f"{shown}: document {index}: expected a Kubernetes object")
        try:
            if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
                items = [
                    kube_inject_object(i, options) if isinstance(i, dict) else i
                    for i in doc["items"]
                ]
                out.append({**doc, "items": items})
            else:
                out.append(kube_inject_object(doc, options))
        except InjectError as exc:
            raise click.UsageError(f"{shown}: document {index}{_label(doc)}: {exc}") from None
    return out


@click.command("kube-inject")
@click.option(
    "-f",
    "--filename",
    required=True,
    metavar="FILE",
    help="Manifest to inject (YAML stream; - for stdin).",
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    metavar="FILE",
    help="Where to write the injected manifest (- for stdout).",
)
def kube_inject(filename: str, output: str) -> None:
    """Add Istio's sidecar to the pods of a manifest (Pods, Deployments,
    StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs).

    As `istioctl kube-inject`: namespace labels are not consulted; a pod
    template opts out with `sidecar.istio.io/inject: "false"`. Other
    documents pass through unchanged.
    """
    shown = "<stdin>" if filename == "-" else filename
    docs = inject_stream(_read(filename), shown, InjectOptions())
    text = yaml.safe_dump_all(docs, sort_keys=False, explicit_start=False)
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.UsageError(f"{output}: cannot write: {exc.strerror or exc}") from None
