"""The data-plane benchmark: hey's output, the round statistics, one tiny real run."""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any

import pytest

from mizzen.bench.dataplane import (
    HeyOutputError,
    HeyResult,
    Measurement,
    Sizes,
    added_spread,
    aggregate,
    bare_bootstrap,
    describe_defaults,
    hey_argv,
    parse_hey,
    render,
    run_dataplane,
    spread,
    summarize,
    table,
)

# Captured from `hey -z 2s -c 16 -q 62.5` (hey 0.1.4, Debian) against the
# benchmark's nginx; tabs as hey prints them.
HEY_OK = """
Summary:
  Total:\t2.0097 secs
  Slowest:\t0.0024 secs
  Fastest:\t0.0000 secs
  Average:\t0.0003 secs
  Requests/sec:\t987.2112
  \n  Total data:\t2031616 bytes
  Size/request:\t1024 bytes

Response time histogram:
  0.000 [1]\t|
  0.000 [1051]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.001 [587]\t|■■■■■■■■■■■■■■■■■■■■■■
  0.001 [221]\t|■■■■■■■■
  0.001 [87]\t|■■■
  0.001 [13]\t|
  0.001 [6]\t|
  0.002 [2]\t|
  0.002 [3]\t|
  0.002 [5]\t|
  0.002 [8]\t|


Latency distribution:
  10% in 0.0001 secs
  25% in 0.0002 secs
  50% in 0.0003 secs
  75% in 0.0004 secs
  90% in 0.0007 secs
  95% in 0.0008 secs
  99% in 0.0014 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0000 secs, 0.0000 secs, 0.0024 secs
  DNS-lookup:\t0.0000 secs, 0.0000 secs, 0.0000 secs
  req write:\t0.0000 secs, 0.0000 secs, 0.0018 secs
  resp wait:\t0.0003 secs, 0.0000 secs, 0.0023 secs
  resp read:\t0.0000 secs, 0.0000 secs, 0.0007 secs

Status code distribution:
  [200]\t1984 responses



"""

# Captured from `hey -n 6 -c 2 -t 1 http://127.0.0.1:9/` (nothing listening).
HEY_REFUSED = """
Summary:
  Total:\t0.0007 secs
  Slowest:\t0.0000 secs
  Fastest:\t0.0000 secs
  Average:\t NaN secs
  Requests/sec:\t8596.1363
  \n

Response time histogram:


Latency distribution:

Details (average, fastest, slowest):
  DNS+dialup:\t NaN secs, 0.0000 secs, 0.0000 secs
  DNS-lookup:\t NaN secs, 0.0000 secs, 0.0000 secs
  req write:\t NaN secs, 0.0000 secs, 0.0000 secs
  resp wait:\t NaN secs, 0.0000 secs, 0.0000 secs
  resp read:\t NaN secs, 0.0000 secs, 0.0000 secs

Status code distribution:

Error distribution:
  [6]\tGet "http://127.0.0.1:9/": dial tcp 127.0.0.1:9: connect: connection refused
"""


# --- hey --------------------------------------------------------------------------------


def test_parse_hey_summary() -> None:
    result = parse_hey(HEY_OK)
    assert result.requests_per_s == pytest.approx(987.2112)
    assert result.percentiles_ms[50] == pytest.approx(0.3)
    assert result.percentiles_ms[90] == pytest.approx(0.7)
    assert result.percentiles_ms[99] == pytest.approx(1.4)
    assert sorted(result.percentiles_ms) == [10, 25, 50, 75, 90, 95, 99]
    assert result.statuses == {200: 1984}
    assert result.errors == {}
    assert result.requests == 1984 and result.failed == 0


def test_parse_hey_errors_and_bad_statuses() -> None:
    refused = parse_hey(HEY_REFUSED)
    assert refused.percentiles_ms == {}
    assert refused.statuses == {}
    assert refused.errors == {
        'Get "http://127.0.0.1:9/": dial tcp 127.0.0.1:9: connect: connection refused': 6
    }
    assert refused.failed == 6
    mixed = parse_hey(
        HEY_OK.replace("[200]\t1984 responses", "[200]\t10 responses\n  [503]\t2 responses")
    )
    assert mixed.statuses == {200: 10, 503: 2}
    assert mixed.requests == 12 and mixed.failed == 2


def test_parse_hey_rejects_other_text() -> None:
    with pytest.raises(HeyOutputError, match="Requests/sec"):
        parse_hey("flag provided but not defined: -x\nUsage: hey [options...] <url>\n")


def test_hey_argv_splits_the_total_rate_over_workers() -> None:
    argv = hey_argv("/usr/bin/hey", "http://a/", 3, 16, 1000)
    assert argv == ["/usr/bin/hey", "-z", "3s", "-c", "16", "-t", "5", "-q", "62.5", "http://a/"]
    assert "-q" not in hey_argv("hey", "http://a/", 0.5, 4, None)


# --- statistics --------------------------------------------------------------------------


def test_spread_is_median_with_min_and_max() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([1.0, 2.0]) == {"median": 1.5, "min": 1.0, "max": 2.0}
    with pytest.raises(ValueError):
        spread([])


def test_added_is_per_round_then_median() -> None:
    # Rounds: (1.0-0.5, 3.0-0.6, 2.0-1.4): the median of differences (0.6),
    # not the difference of medians (2.0-0.6 = 1.4).
    assert added_spread([1.0, 3.0, 2.0], [0.5, 0.6, 1.4]) == {
        "median": 0.6,
        "min": 0.5,
        "max": 2.4,
    }
    with pytest.raises(ValueError):
        added_spread([1.0], [1.0, 2.0])


def _hey(p50: float, p90: float, p99: float, n: int = 1000) -> HeyResult:
    return HeyResult(n / 1.0, {50: p50, 90: p90, 99: p99}, {200: n}, {})


def _measurements() -> list[Measurement]:
    out = []
    for rnd, (d, b, m) in enumerate([(0.2, 0.6, 0.9), (0.3, 0.6, 1.1), (0.2, 0.8, 1.0)], 1):
        out.append(Measurement(rnd, 1000, "direct", _hey(d, d, d), {}, {}, {}))
        for variant, v, cpu in (("bare-envoy", b, 0.1), ("mesh", m, 0.15)):
            out.append(
                Measurement(
                    rnd,
                    1000,
                    variant,
                    _hey(v, v + 0.1, v + 1),
                    {"client": cpu, "server": cpu},
                    {"client": 20.0 + rnd, "server": 21.0},
                    {"client": 10.0, "server": 11.0},
                )
            )
    return out


def test_aggregate_rows_and_summary() -> None:
    ms = _measurements()
    results = [aggregate(ms, 1000, v) for v in ("direct", "bare-envoy", "mesh")]
    direct, bare, mesh = results
    assert "added_p90_ms" not in direct and "sidecar_cpu_s_per_1000" not in direct
    assert direct["p50_ms"] == {"median": 0.2, "min": 0.2, "max": 0.3}
    # bare p90 - direct p90 per round: 0.5, 0.4, 0.7
    assert bare["added_p90_ms"] == {"median": 0.5, "min": 0.4, "max": 0.7}
    assert mesh["added_p90_ms"] == {"median": 0.9, "min": 0.8, "max": 0.9}
    # (0.15 + 0.15) s over 1000 requests
    assert mesh["sidecar_cpu_s_per_1000"]["median"] == pytest.approx(0.3)
    assert mesh["by_proxy"]["client"]["cpu_s_per_1000"]["median"] == pytest.approx(0.15)
    assert bare["sidecar_rss_mb"] == {"median": 43.0, "min": 42.0, "max": 44.0}
    assert mesh["errors"] == 0 and mesh["requests"] == 3000

    summary = summarize(results)
    assert summary["mesh_over_bare_added_p90"] == {"1000": 1.8, "max": 1.8}
    assert summary["mesh_over_bare_cpu_s_per_1000"]["1000"] == 1.5
    assert summary["mesh_added_p90_ms"] == {"1000": 0.9}

    shown = table(results, Sizes(rounds=3, seconds=10, rates=(1000,)))
    assert len(shown["rows"]) == 3 and all(len(r) == len(shown["columns"]) for r in shown["rows"])
    assert shown["rows"][2][6] == "0.900 ms (0.80–0.90)"
    assert shown["rows"][0][6] == "—"
    json.dumps(shown)


def test_describe_defaults_ignores_the_bootstrap_extension_list() -> None:
    dump = {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": {"node": {"extensions": [{"name": "envoy.transport_sockets.tls"}]}},
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "dynamic_listeners": [
                    {"access_log": [{"name": "envoy.access_loggers.stdout"}]},
                    {"http_filters": [{"name": "envoy.filters.http.router"}]},
                ],
            },
        ]
    }
    out = describe_defaults(json.dumps(dump), ["envoy", "--concurrency", "2"])
    assert "plaintext between sidecars (no mTLS yet)" in out
    assert "HTTP filters: router" in out
    assert any("stdout" in line for line in out)
    assert any("no stats access logger" in line for line in out)
    assert any("--concurrency 2" in line for line in out)


def test_templates_are_filled_completely() -> None:
    assert render("a __X__ b", {"X": "1"}) == "a 1 b"
    with pytest.raises(ValueError, match="__Y__"):
        render("__X__ __Y__", {"X": "1"})
    boot = bare_bootstrap(("127.0.0.1", 15001), ("198.18.0.2", 15006))
    assert "access_log" not in json.dumps(boot)


# --- one real run -------------------------------------------------------------------------


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the data-plane benchmark needs root (network namespaces, iptables)"
    for tool in ("hey", "nginx", "ip", "iptables", "setpriv"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            return f"the data-plane benchmark needs {tool} (apt-get install -y hey nginx-light)"
    return None


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, bool):
        return []
    return [float(value)] if isinstance(value, int | float) else []


@pytest.mark.e2e
@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
def test_tiny_real_run_is_well_formed() -> None:
    tiny = Sizes(rounds=1, seconds=1, rates=(200,), high=False)
    lines: list[str] = []
    report = run_dataplane(True, lines.append, sizes=tiny)

    json.dumps(report)
    assert report["suite"] == "dataplane"
    assert report["machine"]["cores"] >= 1
    for key in ("config", "commands", "defaults", "results", "summary", "table"):
        assert report[key], key
    assert any(" hey " in c or "/hey " in c for c in report["commands"])
    assert any("envoy" in c and "--concurrency 2" in c for c in report["commands"])
    results = {r["variant"]: r for r in report["results"]}
    assert sorted(results) == ["bare-envoy", "direct", "mesh"]
    for variant, row in results.items():
        assert row["rate_asked"] == 200 and row["errors"] == 0 and row["requests"] > 0
        absolute = {k: v for k, v in row.items() if not k.startswith("added_")}
        assert all(n >= 0 and math.isfinite(n) for n in _numbers(absolute)), variant
        for p in (50, 90, 99):
            assert set(row[f"p{p}_ms"]) == {"median", "min", "max"}
        if variant != "direct":
            assert set(row["added_p90_ms"]) == {"median", "min", "max"}
            assert set(row["by_proxy"]) == {"client", "server"}
            assert row["sidecar_rss_mb"]["median"] > 0
    assert set(report["summary"]["mesh_over_bare_added_p90"]) >= {"max"}
    assert len(report["table"]["rows"]) == 3
