"""Helpers shared by the agent tests (a uniquely named module, unlike conftest)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], object], deadline_s: float, what: str) -> object:
    """Poll `predicate` every 50 ms until truthy; fail with `what` at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.05)


def pids_with_arg(needle: str) -> list[int]:
    """Processes whose command line contains `needle` (e.g. a unique work dir)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmdline and int(entry) != os.getpid():
            found.append(int(entry))
    return found


def proc_status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def alive(pid: int) -> bool:
    try:
        state = proc_status(pid).get("State", "")
    except OSError:
        return False
    return not state.startswith("Z")


@dataclass
class AgentRun:
    proc: subprocess.Popen[bytes]
    workdir: Path
    stderr_path: Path
    extra: list[str] = field(default_factory=list)

    @property
    def health_port(self) -> int:
        text = wait_until(
            lambda: _read(self.workdir / "health.port"), 15, "the agent to write health.port"
        )
        return int(str(text))

    @property
    def admin(self) -> str:
        text = wait_until(
            lambda: _read(self.workdir / "admin.address"), 15, "Envoy to write admin.address"
        )
        return str(text).strip()

    def envoy_pids(self) -> list[int]:
        return pids_with_arg(str(self.workdir / "bootstrap.json"))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def _read(path: Path) -> str | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    return text if text.strip() else None
