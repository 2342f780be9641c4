"""Driving a Mizzen cluster as a user does: `mizzen cluster up|down|kubectl`,
`mizzen exec` in its pods."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import mesh_name

from mizzen.cluster.tools import ToolsMissing, bin_dir

MIZZEN = [sys.executable, "-m", "mizzen"]


class Cluster:
    def __init__(self, name: str) -> None:
        self.name = name

    def run_kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MIZZEN, "cluster", "kubectl", "--name", self.name, "--", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        out = self.run_kubectl(*args, stdin=stdin)
        assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def ready_pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        extra = ("-l", selector) if selector else ()
        pods = self.get("pods", "-n", namespace, *extra)["items"]
        return [
            p
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        ]

    def wait_ready(self, namespace: str, count: int, timeout: float) -> None:
        """Until ``count`` pods of ``namespace`` are Ready; on timeout, fail
        with each pod's conditions and container states."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.ready_pods(namespace)) == count:
                return
            time.sleep(0.5)
        lines = []
        for pod in self.get("pods", "-n", namespace)["items"]:
            status = pod.get("status", {})
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            states = {
                c["name"]: (c.get("ready"), c.get("state"))
                for c in status.get("initContainerStatuses", [])
                + status.get("containerStatuses", [])
            }
            lines.append(f"{pod['metadata']['name']}: {conditions} {states}")
            if conditions.get("Ready") != "True":
                lines += _probe_answers(pod)
        where = f"{count} pods of {namespace} not Ready in {timeout:.0f} s"
        pytest.fail(where + ":\n" + "\n".join(lines))

    def mizzen(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MIZZEN, command, "--name", self.name, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def netns(self, namespace: str, pod: str) -> str:
        return f"mz-{self.name}.{namespace}.{pod}"


@contextmanager
def running_cluster(base: str, keep_logs: Path | None = None) -> Iterator[Cluster]:
    """`mizzen cluster up` (Mizzen installed, control plane ready) ... `down`."""
    try:
        bin_dir()
    except ToolsMissing as exc:
        pytest.fail(str(exc))
    name = mesh_name(base)
    started = time.monotonic()
    up = subprocess.run(
        [*MIZZEN, "cluster", "up", "--name", name], capture_output=True, text=True, timeout=300
    )
    assert up.returncode == 0, up.stderr
    print(f"cluster up in {time.monotonic() - started:.1f} s")
    try:
        yield Cluster(name)
    finally:
        # `down` removes the logs; keep them for a failure's post-mortem.
        logs = Path("/run/mizzen") / name / "logs"
        if keep_logs is not None and logs.is_dir():
            shutil.copytree(logs, keep_logs / name, dirs_exist_ok=True)
        subprocess.run([*MIZZEN, "cluster", "down", "--name", name], timeout=120)


def _probe_answers(pod: dict[str, Any]) -> list[str]:
    """What each readiness probe of a pod answers now, asked from the host
    as the node asks."""
    ip = pod.get("status", {}).get("podIP")
    out = []
    for container in pod["spec"]["containers"]:
        get = (container.get("readinessProbe") or {}).get("httpGet")
        if not ip or not get:
            continue
        url = f"http://{ip}:{get['port']}{get.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                out.append(f"  {url}: {answer.status}")
        except urllib.error.HTTPError as exc:
            out.append(f"  {url}: {exc.code} {exc.read()[:200]!r}")
        except OSError as exc:
            out.append(f"  {url}: {exc}")
    return out
