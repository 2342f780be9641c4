"""The agent for real: a subprocess that starts Envoy, serves readiness, stops.

No control plane is needed: either the xDS address is a closed port (Envoy
stays PRE_INITIALIZING, readiness 503) or a tiny in-test ADS stub sends empty
CDS and LDS responses (readiness 200).
"""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from agent_helpers import AgentRun, alive, proc_status, wait_until
from click.testing import CliRunner
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from mizzen.agent.envoy import resolve_envoy_binary
from mizzen.cli.agent import agent

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to uid 1337 needs root")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ready(run: AgentRun) -> tuple[int, str]:
    return get(f"http://127.0.0.1:{run.health_port}/healthz/ready")


def admin_live(run: AgentRun) -> bool:
    try:
        return get(f"http://{run.admin}/server_info")[0] == 200
    except OSError:
        return False


def stop_and_check(run: AgentRun) -> None:
    envoys = run.envoy_pids()
    assert envoys, "no Envoy found for this agent"
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=10) == 0, run.stderr()
    wait_until(lambda: not any(alive(p) for p in envoys), 10, "Envoy to exit")
    assert run.envoy_pids() == []


def test_not_ready_without_xds_then_clean_stop(start_agent: Callable[..., AgentRun]) -> None:
    run = start_agent("--no-drop")
    wait_until(lambda: admin_live(run), 20, "Envoy admin to answer")
    # The monitor polls every 200 ms: wait for it to have seen Envoy.
    wait_until(lambda: "PRE_INITIALIZING" in ready(run)[1], 10, "a poll of the live Envoy")
    status, body = ready(run)
    assert status == 503
    assert body == "not ready: Envoy is PRE_INITIALIZING: no CDS and LDS received from xDS yet\n"
    bootstrap = (run.workdir / "bootstrap.json").read_text()
    assert "sidecar~127.0.0.1~reviews-v1-abc.default~default.svc.cluster.local" in bootstrap
    assert get(f"http://127.0.0.1:{run.health_port}/other")[0] == 404
    stop_and_check(run)


def test_envoy_dies_with_a_killed_agent(start_agent: Callable[..., AgentRun]) -> None:
    run = start_agent("--no-drop")
    wait_until(lambda: admin_live(run), 20, "Envoy admin to answer")
    envoys = run.envoy_pids()
    run.proc.kill()
    run.proc.wait(timeout=5)
    # The parent-death signal stops Envoy: no orphan holds the pod's ports.
    wait_until(lambda: not any(alive(p) for p in envoys), 10, "the orphaned Envoy to exit")


def _ids(pid: int) -> tuple[str, str, str]:
    st = proc_status(pid)
    return st["Uid"], st["Gid"], st["Groups"]


@as_root
def test_agent_and_envoy_run_as_1337_with_binary_copied_out_of_0700(
    start_agent: Callable[..., AgentRun], open_dir: Callable[[], Path]
) -> None:
    # A root-only home holding the Envoy, as a venv under /root would.
    private = open_dir() / "root-home"
    private.mkdir(mode=0o700)
    hidden = private / "envoy"
    real = resolve_envoy_binary()
    try:
        os.link(real, hidden)
    except OSError:
        import shutil

        shutil.copy2(real, hidden)
    bin_dir = open_dir() / "bin"

    run = start_agent("--envoy-binary", str(hidden), "--envoy-bin-dir", str(bin_dir))
    wait_until(lambda: admin_live(run), 30, "Envoy admin to answer")
    (envoy,) = run.envoy_pids()
    everyone = "1337\t1337\t1337\t1337"
    assert _ids(run.proc.pid) == (everyone, everyone, ""), run.stderr()
    assert _ids(envoy) == (everyone, everyone, "")
    assert proc_status(envoy)["PPid"] == str(run.proc.pid)
    assert os.readlink(f"/proc/{envoy}/exe") == str(bin_dir / "envoy")
    st = run.workdir.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1337, 1337, 0o750)
    assert ready(run)[0] == 503
    stop_and_check(run)


@as_root
def test_unreachable_workdir_is_refused_before_starting(
    start_agent: Callable[..., AgentRun], tmp_path: Path
) -> None:
    # pytest's tmp_path sits under a 0700 directory.
    run = start_agent(workdir=tmp_path / "proxy")
    assert run.proc.wait(timeout=20) == 1
    err = run.stderr()
    assert "Error: uid 1337 cannot use work directory" in err and "0700" in err
    assert "Traceback" not in err


def test_misuse_prints_usage_not_a_traceback() -> None:
    result = CliRunner().invoke(
        agent,
        ["--xds-address", "127.0.0.1:15010", "--pod", "p", "--ip", "1.2.3.4", "--labels", "[1"],
    )
    assert result.exit_code == 2
    assert "Usage:" in result.output and "--labels" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(agent, ["--xds-address", "nope", "--pod", "p", "--ip", "1.2.3.4"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output


def test_bad_ip_is_an_error_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(
        agent, ["--xds-address", "127.0.0.1:15010", "--pod", "p", "--ip", "x", "--no-drop"]
    )
    assert result.exit_code == 1
    assert "Error: ip: 'x' is not an IP address" in result.output


# --- with a minimal ADS stub ------------------------------------------------------

CDS_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LDS_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


class EmptyAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """Answers each first CDS/LDS request with an empty resource list; ignores ACKs."""

    def __init__(self) -> None:
        self.nodes: list[str] = []

    def StreamAggregatedResources(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        for request in request_iterator:
            if request.node.id:
                self.nodes.append(request.node.id)
            if request.response_nonce or request.type_url not in (CDS_TYPE, LDS_TYPE):
                continue
            yield discovery_pb2.DiscoveryResponse(
                version_info="1", type_url=request.type_url, nonce="n1"
            )


@pytest.fixture
def ads_stub() -> Iterator[tuple[int, EmptyAds]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = EmptyAds()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(grace=None).wait(5)


def test_ready_after_first_cds_and_lds(
    start_agent: Callable[..., AgentRun], ads_stub: tuple[int, EmptyAds]
) -> None:
    port, servicer = ads_stub
    run = start_agent("--no-drop", xds=f"127.0.0.1:{port}")
    wait_until(lambda: ready(run)[0] == 200, 30, "readiness 200 after empty CDS + LDS")
    assert ready(run)[1] == "ready\n"
    assert servicer.nodes[0] == (
        "sidecar~127.0.0.1~reviews-v1-abc.default~default.svc.cluster.local"
    )
    stop_and_check(run)


def test_envoy_failure_exits_1_with_its_log(start_agent: Callable[..., AgentRun]) -> None:
    run = start_agent("--no-drop", "--envoy-log-level", "no-such-level")
    assert run.proc.wait(timeout=20) == 1
    err = run.stderr()
    assert "Envoy exited unexpectedly" in err and "envoy.log" in err
    assert run.envoy_pids() == []


def test_without_root_the_agent_asks_for_no_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    import mizzen.agent.main

    monkeypatch.setattr(mizzen.agent.main.os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(
        agent, ["--xds-address", "127.0.0.1:15010", "--pod", "p", "--ip", "127.0.0.1"]
    )
    assert result.exit_code == 1
    assert "must start as root" in result.output and "--no-drop" in result.output
