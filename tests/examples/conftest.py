"""Helpers to run the Bookinfo apps as real processes on loopback ephemeral ports."""

from __future__ import annotations

import http.client
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BOOKINFO = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"
APPS = BOOKINFO / "apps"
START_DEADLINE = 10.0


@dataclass
class App:
    name: str
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            response = conn.getresponse()
            raw = response.read()
            body = json.loads(raw) if "json" in (response.getheader("Content-Type") or "") else raw
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def read_port(proc: subprocess.Popen[str], deadline: float) -> int:
    """Wait for the app's ``<name> listening on <host>:<port>`` line."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if sel.select(timeout=left):
                line = proc.stdout.readline()
                if not line:
                    break  # EOF: the process died
                if " listening on " in line:
                    return int(line.rsplit(":", 1)[1])
    proc.kill()
    raise AssertionError(f"app did not start (exit code {proc.wait()}); see its stderr above")


def start(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path = APPS) -> App:
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    full_env.update(env or {})
    full_env.update(HOST="127.0.0.1", PORT="0")  # loopback, ephemeral port
    proc = subprocess.Popen(list(argv), cwd=cwd, env=full_env, stdout=subprocess.PIPE, text=True)
    port = read_port(proc, time.monotonic() + START_DEADLINE)
    return App(Path(argv[-1]).stem, proc, port)


@pytest.fixture
def run_process() -> Iterator[Any]:
    """``run_process(argv, env, cwd)`` -> a started App, stopped at teardown."""
    started: list[App] = []

    def run(argv: Sequence[str], env: Mapping[str, str], cwd: Path = APPS) -> App:
        app = start(argv, env, cwd)
        started.append(app)
        return app

    yield run
    for app in reversed(started):
        app.stop()


@pytest.fixture
def run_app(run_process: Any) -> Any:
    """``run_app("reviews", VERSION="v2", RATINGS_URL=...)`` -> a started App."""

    def run(name: str, **env: str) -> App:
        app: App = run_process([sys.executable, str(APPS / f"{name}.py")], env)
        return app

    return run
