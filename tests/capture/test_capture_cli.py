"""`mizzen capture` through click's CliRunner; only --dry-run and misuse (no root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mizzen.capture.rules import CaptureConfig, render_commands
from mizzen.cli import capture as capture_module
from mizzen.cli.capture import capture

AKKA = {
    "traffic.sidecar.istio.io/includeInboundPorts": "8080",
    "traffic.sidecar.istio.io/excludeOutboundPorts": "2552,8558",
}
AKKA_COMMANDS = "\n".join(render_commands(CaptureConfig.from_annotations(AKKA))) + "\n"

MANIFEST = """\
apiVersion: v1
kind: Service
metadata: {name: my-service}
spec: {ports: [{port: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-service
spec:
  replicas: 3
  template:
    metadata:
      annotations:
        traffic.sidecar.istio.io/includeInboundPorts: "8080"
        traffic.sidecar.istio.io/excludeOutboundPorts: "2552,8558"
    spec:
      containers: [{name: my-service, image: "my-service:latest"}]
"""


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(capture, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_dry_run_with_json_annotations() -> None:
    code, out = run("--dry-run", "--annotations", json.dumps(AKKA))
    assert code == 0
    assert out == AKKA_COMMANDS


def test_dry_run_with_pod_annotation_pairs() -> None:
    code, out = run(
        "--dry-run",
        "--pod-annotation",
        "traffic.sidecar.istio.io/includeInboundPorts=8080",
        "--pod-annotation",
        "traffic.sidecar.istio.io/excludeOutboundPorts=2552,8558",
    )
    assert (code, out) == (0, AKKA_COMMANDS)


def test_dry_run_from_manifest(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(MANIFEST)
    assert run("--dry-run", "--from-manifest", str(path)) == (0, AKKA_COMMANDS)
    assert run("--dry-run", "--from-manifest", str(path), "--pod", "my-service") == (
        0,
        AKKA_COMMANDS,
    )


def test_dry_run_defaults() -> None:
    code, out = run("--dry-run")
    assert code == 0
    assert "iptables -t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT" in out


def test_dry_run_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise AssertionError("dry-run must not install")

    monkeypatch.setattr(capture_module, "install", boom)
    assert run("--dry-run", "--netns", "mzcap-x")[0] == 0


def test_install_calls_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, CaptureConfig]] = []
    monkeypatch.setattr(capture_module, "install", lambda ns, cfg: seen.append((ns, cfg)))
    code, out = run("--netns", "mzcap-x", "--annotations", json.dumps(AKKA))
    assert code == 0 and "mzcap-x" in out
    assert seen == [("mzcap-x", CaptureConfig.from_annotations(AKKA))]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--netns is required"),
        (("--dry-run", "--annotations", "{not json"), "not valid JSON"),
        (("--dry-run", "--annotations", "[1]"), "JSON object"),
        (("--dry-run", "--pod-annotation", "novalue"), "KEY=VALUE"),
        (("--dry-run", "--pod", "x"), "--pod needs --from-manifest"),
        (
            ("--dry-run", "--annotations", "{}", "--pod-annotation", "a=b"),
            "only one of",
        ),
        (
            (
                "--dry-run",
                "--pod-annotation",
                "traffic.sidecar.istio.io/excludeOutboundPorts=2552,remoting",
            ),
            "'remoting'",
        ),
        (("--uninstall", "--netns", "x", "--dry-run"), "--uninstall takes only --netns"),
        (("--bogus",), "No such option"),
    ],
)
def test_misuse_prints_usage_not_traceback(args: tuple[str, ...], message: str) -> None:
    code, out = run(*args)
    assert code == 2
    assert "Usage:" in out
    assert message in out
    assert "Traceback" not in out


def test_manifest_with_several_pods_needs_pod(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(MANIFEST + "---\nkind: Pod\nmetadata: {name: other}\n")
    code, out = run("--dry-run", "--from-manifest", str(path))
    assert code == 2 and "--pod" in out and "Pod/other" in out
    code, out = run("--dry-run", "--from-manifest", str(path), "--pod", "nope")
    assert code == 2 and "not in manifest" in out
    code, out = run("--dry-run", "--from-manifest", str(path), "--pod", "Pod/other")
    assert code == 0 and "--dport 2552" not in out


def test_adapter_failure_is_a_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from mizzen.capture.iptables import CaptureError

    def fail(ns: str, cfg: CaptureConfig) -> None:
        raise CaptureError("installing capture", ns, "Permission denied", "needs root")

    monkeypatch.setattr(capture_module, "install", fail)
    code, out = run("--netns", "mzcap-x")
    assert code == 1
    assert "Permission denied" in out and "needs root" in out and "Traceback" not in out
