"""Runs the benchmark suites one after the other and writes the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from mizzen.bench import report

Suite = Callable[[bool, Callable[[str], None]], dict[str, Any]]


def _suites(which: str) -> list[Suite]:
    # Imported lazily: each suite pulls in heavy modules (grpc, the runtime).
    chosen: list[Suite] = []
    if which in ("all", "dataplane"):
        from mizzen.bench.dataplane import run_dataplane

        chosen.append(run_dataplane)
    if which in ("all", "controlplane"):
        from mizzen.bench.controlplane import run_controlplane

        chosen.append(run_controlplane)
    return chosen


def run_bench(
    *, quick: bool, suite: str, results: Path, argv: Sequence[str]
) -> tuple[dict[str, Any], tuple[Path, Path]]:
    console = Console(stderr=True, highlight=False)
    started = time.monotonic()
    done = []
    for run in _suites(suite):
        done.append(run(quick, lambda line: console.print(f"[dim]{line}[/]")))
    full = report.assemble(done, argv, time.monotonic() - started)
    return full, report.write(full, results)
