"""Fixtures for the agent tests: open directories, real agent processes.

Directories that uid 1337 must reach cannot live under pytest's tmp_path
(/tmp/pytest-of-root is 0700), so `open_dir` makes 0755 ones under /tmp.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_helpers import ROOT, AgentRun


@pytest.fixture
def open_dir() -> Iterator[Callable[[], Path]]:
    made: list[Path] = []

    def make() -> Path:
        d = Path(tempfile.mkdtemp(prefix="mizzen-agent-test-"))
        os.chmod(d, 0o755)
        made.append(d)
        return d

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_agent(open_dir: Callable[[], Path]) -> Iterator[Callable[..., AgentRun]]:
    """Start `python -m mizzen.cli.agent` with ephemeral admin and health ports."""
    runs: list[AgentRun] = []

    def start(*args: str, xds: str = "127.0.0.1:1", workdir: Path | None = None) -> AgentRun:
        base = open_dir()
        wd = workdir or base / "proxy"
        stderr_path = base / "agent.stderr"
        argv = [
            sys.executable,
            "-m",
            "mizzen.cli.agent",
            "--xds-address",
            xds,
            "--pod",
            "reviews-v1-abc",
            "--namespace",
            "default",
            "--ip",
            "127.0.0.1",
            "--labels",
            '{"app": "reviews", "version": "v1"}',
            "--pod-ports",
            '[{"name": "http", "containerPort": 9080, "protocol": "TCP"}]',
            "--workdir",
            str(wd),
            "--admin-port",
            "0",
            "--health-address",
            "127.0.0.1",
            "--health-port",
            "0",
            "-v",
            *args,
        ]
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=ROOT
            )
        run = AgentRun(proc=proc, workdir=wd, stderr_path=stderr_path)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(10)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
        # Whatever the test did, leave no Envoy behind.
        for pid in run.envoy_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
