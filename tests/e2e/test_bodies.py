"""Large and long-lived HTTP through two sidecars (apps/bulk_http.py,
apps/bulk_client.py): 50 MB each way with matching checksums and no
sidecar holding the body, Server-Sent Events delivered as they are written
for a minute, and ``Expect: 100-continue``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import command_deployment, injected_namespace, mizzen, running_mesh, service

from mizzen.bench.dataplane import envoy_pid_in

APPS = Path(__file__).resolve().parent / "apps"
NS = "bodies"
MB = 1_000_000
BODY = 50 * MB
# A sidecar streams a body with bounded buffers (1 MiB per connection by
# default); its peak memory must not follow the body's size.
MAX_PEAK_GROWTH_MB = 16
EVENTS, EVERY_S = 5, 15.0  # the stream stays open for a minute


def manifest() -> list[dict[str, Any]]:
    return [
        injected_namespace(NS),
        command_deployment(NS, "bulk", ["python3", str(APPS / "bulk_http.py"), "8080"]),
        command_deployment(NS, "client", ["python3", "-c", "import time; time.sleep(86400)"]),
        service(NS, "bulk", {"name": "http", "port": 80, "targetPort": 8080}),
    ]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mesh(manifest(), "bodies", tmp_path_factory.mktemp("bodies")) as name:
        yield name


def run(mesh: str, *steps: str, timeout: float = 180) -> list[dict[str, Any]]:
    client = (sys.executable, str(APPS / "bulk_client.py"), "bulk:80", *steps)
    out = mizzen("exec", f"{NS}/client-0", "--name", mesh, "--", *client, timeout=timeout)
    assert out.returncode == 0, out.stderr
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def peak_rss_mb(mesh: str, pod: str) -> float:
    """The pod's Envoy's peak resident memory so far (VmHWM), in MB."""
    pods = json.loads(mizzen("get", "pods", "--name", mesh, "-o", "json").stdout)
    (found,) = [p for p in pods if p["name"] == pod and p["namespace"] == NS]
    status = Path(f"/proc/{envoy_pid_in(found['netns'])}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


def test_fifty_megabytes_each_way_with_checksums_and_bounded_memory(mesh: str) -> None:
    run(mesh, "upload=1000", "download=1000")  # connections and buffers warmed up
    before = {pod: peak_rss_mb(mesh, pod) for pod in ("client-0", "bulk-0")}
    up, down = run(mesh, f"upload={BODY}", f"download={BODY}")
    after = {pod: peak_rss_mb(mesh, pod) for pod in ("client-0", "bulk-0")}
    assert up["status"] == 200 and up["server"]["bytes"] == BODY, up
    assert up["server"]["sha256"] == up["sent_sha256"], up
    assert down["status"] == 200 and down["bytes"] == BODY, down
    assert down["sha256"] == down["server_sha256"], down
    growth = {pod: round(after[pod] - before[pod], 1) for pod in after}
    print(f"peak RSS growth (MB) {growth}; up {up['seconds']} s, down {down['seconds']} s")
    assert all(g < MAX_PEAK_GROWTH_MB for g in growth.values()), (growth, before, after)


def test_server_sent_events_arrive_as_they_are_written(mesh: str) -> None:
    (stream,) = run(mesh, f"events={EVENTS},{EVERY_S}", timeout=EVENTS * EVERY_S + 60)
    assert stream["status"] == 200 and stream["type"] == "text/event-stream", stream
    assert stream["ids"] == list(range(EVENTS)), stream
    # The first event is there long before the stream ends, and each later
    # one about when it was written: nothing waits for the end of the body.
    assert stream["arrivals"][0] < EVERY_S / 2, stream
    assert stream["ended"] >= (EVENTS - 1) * EVERY_S, stream
    gaps = [b - a for a, b in zip(stream["arrivals"], stream["arrivals"][1:], strict=False)]
    assert all(EVERY_S / 2 < gap < EVERY_S * 2 for gap in gaps), stream


def test_expect_100_continue(mesh: str) -> None:
    (answer,) = run(mesh, "expect=100000")
    # The caller's sidecar answers the 100 itself, as Envoy does in Istio's
    # configuration, and forwards the body once it comes.
    assert answer["interim"] == "HTTP/1.1 100 Continue", answer
    assert answer["status"] == "HTTP/1.1 200 OK", answer
    assert answer["server"]["bytes"] == 100000, answer
