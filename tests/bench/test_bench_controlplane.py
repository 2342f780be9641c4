"""The control-plane benchmark machinery end to end on a tiny mesh: real
control-plane process, real gRPC ADS clients, one round. No timing checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mizzen.bench.controlplane import Case, SuiteConfig, distribution, run_suite, summarize_profile


def _numbers(obj: Any) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v)]
    return []


@pytest.mark.parametrize("cache", [True, False])
def test_tiny_suite_is_well_formed(tmp_path: Path, cache: bool) -> None:
    config = SuiteConfig(
        cases=(Case(10, 5, connect_rounds=1, change_rounds=1),),
        new_proxy_rounds=1,
        workers=2,
        cache=cache,
        profile=cache,  # exercise py-spy once when it is installed
        profile_seconds=20,
        results_dir=str(tmp_path),
    )
    lines: list[str] = []
    result = run_suite(config, lines.append)
    json.dumps(result)  # JSON-serialisable
    assert result["suite"] == "controlplane"
    assert result["machine"]["cores"] >= 1
    assert result["commands"] and all(isinstance(c, str) for c in result["commands"])
    (row,) = result["results"]
    for key in (
        "services",
        "proxies",
        "first_config_ms",
        "all_first_config_s",
        "endpoint_change_ms",
        "vs_change_ms",
        "cp_rss_mb",
        "cp_cpu_s_per_push",
        "bytes_per_proxy",
        "new_proxy_first_config_ms",
        "sidecar_scoping",
    ):
        assert key in row, key
    assert (row["services"], row["proxies"]) == (10, 5)
    assert row["proxies_configured"] == 5 and row["synced"]
    assert row["convergence_missing"] == 0
    for key in ("first_config_ms", "endpoint_change_ms", "vs_change_ms"):
        assert set(row[key]) >= {"p50", "p99", "max"}
    assert all(n >= 0 for n in _numbers(row)), row
    assert row["bytes_per_proxy"]["total"] > 0
    assert set(row["bytes_per_proxy"]) >= {"CDS", "EDS", "LDS", "RDS"}
    assert row["new_proxy_first_config_ms"] is not None
    table = result["table"]
    assert table["title"] and len(table["rows"]) == 1
    assert len(table["rows"][0]) == len(table["columns"])
    assert all(isinstance(cell, str) for cell in table["rows"][0])
    profile = result["profile"]
    if profile["file"]:
        assert Path(profile["file"]).exists()
        assert all(0 <= pct <= 100 for _, pct in profile["top"])
    assert lines  # progress was logged


def test_summarize_profile_aggregates_per_function(tmp_path: Path) -> None:
    frames = [
        {"name": "main", "file": "/x/a.py", "line": 1},
        {"name": "work", "file": "/x/a.py", "line": 5},
        {"name": "work", "file": "/x/a.py", "line": 6},
    ]
    doc = {
        "shared": {"frames": frames},
        "profiles": [{"type": "sampled", "samples": [[0, 1], [0, 2], [0]], "weights": [1, 1, 2]}],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    summary = summarize_profile(path)
    assert summary["samples"] == 3
    assert sorted(summary["top"]) == [["main (a.py)", 50.0], ["work (a.py)", 50.0]]
    assert ["main (a.py)", 100.0] in summary["top_inclusive"]


def test_distribution() -> None:
    assert distribution([]) == {"p50": 0.0, "p99": 0.0, "max": 0.0}
    d = distribution([float(i) for i in range(1, 101)])
    assert d["max"] == 100.0 and 50 <= d["p50"] <= 51 and d["p99"] >= 99
