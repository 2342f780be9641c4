"""Control-plane benchmark: how fast config reaches many proxies, and at what cost.

``run_controlplane(quick, log)`` runs, per case (services x proxies):

* the control plane under test in its own process
  (``python -m mizzen.bench.cp_server``: real ``XdsServer``, real translation,
  synthetic mesh from ``mizzen.bench.cp_mesh``), so RSS and CPU are its own;
* simulated proxies (``python -m mizzen.bench.adsclient``): real gRPC ADS
  clients, one channel each, spread over a few worker processes;

and measures, each a median over rounds (spread: the range of the round
medians): time to first full config per proxy (stream open -> ACK of the
last of CDS/EDS/LDS/RDS), convergence after an endpoint change and after a
VirtualService change (change applied in the control plane -> the proxy's
ACK of the response carrying it), control-plane RSS and CPU per push,
serialized bytes of a first full config, and the first config of one proxy
joining a loaded mesh. The largest case is profiled with py-spy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["Case", "SuiteConfig", "run_controlplane", "run_suite", "summarize_profile"]

Log = Callable[[str], None]

SIDECAR_SCOPING = "n/a (Sidecar resource not supported yet)"
DEFAULT_RESULTS = Path("bench/results")


@dataclass(frozen=True)
class Case:
    services: int
    proxies: int
    connect_rounds: int = 1
    change_rounds: int = 3


@dataclass(frozen=True)
class SuiteConfig:
    cases: tuple[Case, ...]
    endpoints: int = 10
    new_proxy_rounds: int = 3
    workers: int = 2
    debounce_s: float = 0.1
    cache: bool = True
    profile: bool = True
    profile_seconds: float = 30.0
    timeout_s: float = 90.0
    results_dir: str = str(DEFAULT_RESULTS)
    cases_label: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


QUICK = SuiteConfig(
    cases=(Case(100, 100, connect_rounds=3, change_rounds=5), Case(100, 500, 2, 5)),
    new_proxy_rounds=3,
    profile_seconds=120.0,  # stopped when the case ends
)
FULL = SuiteConfig(
    cases=(
        Case(100, 100, 3, 5),
        Case(100, 1000, 3, 5),
        Case(100, 2000, 3, 5),
        Case(1000, 100, 3, 5),
        Case(1000, 1000, 3, 5),
        Case(1000, 2000, 3, 5),
    ),
    new_proxy_rounds=5,
    workers=2,
    profile_seconds=600.0,  # stopped when the case ends
)


def run_controlplane(quick: bool, log: Log) -> dict[str, Any]:
    return run_suite(QUICK if quick else FULL, log)


# ---------------------------------------------------------------------------
# child processes


class _Child:
    """A child speaking one line in, one JSON line out."""

    def __init__(self, argv: Sequence[str], name: str) -> None:
        self.name = name
        self.argv = list(argv)
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(line.rstrip("\n") + "\n")
        stdin.flush()

    def recv(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            code = self.proc.wait(5)
            raise RuntimeError(f"{self.name} exited with code {code}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {reply['error']}")
        return reply

    def ask(self, line: str) -> dict[str, Any]:
        self.send(line)
        return self.recv()

    def stop(self, quit_line: str) -> None:
        if self.proc.poll() is None:
            try:
                self.send(quit_line)
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


def server_argv(services: int, config: SuiteConfig) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mizzen.bench.cp_server",
        "--services",
        str(services),
        "--endpoints",
        str(config.endpoints),
        "--port",
        "0",
        "--debounce",
        str(config.debounce_s),
        "--cache" if config.cache else "--no-cache",
    ]


def client_argv(port: int, services: int, identities: int, config: SuiteConfig) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mizzen.bench.adsclient",
        "--target",
        f"127.0.0.1:{port}",
        "--services",
        str(services),
        "--endpoints",
        str(config.endpoints),
        "--proxies",
        str(identities),
    ]


# ---------------------------------------------------------------------------
# statistics


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def distribution(values: Sequence[float]) -> dict[str, float]:
    return {"p50": _pct(values, 0.5), "p99": _pct(values, 0.99), "max": max(values, default=0.0)}


def over_rounds(rounds: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Median of each statistic over rounds; the range of the round p50s."""
    if not rounds:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "rounds": 0, "p50_range": [0.0, 0.0]}
    out: dict[str, Any] = {
        key: round(statistics.median(r[key] for r in rounds), 2) for key in ("p50", "p99", "max")
    }
    p50s = [r["p50"] for r in rounds]
    out["rounds"] = len(rounds)
    out["p50_range"] = [round(min(p50s), 2), round(max(p50s), 2)]
    return out


def _median_range(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    if not values:
        return {"median": 0.0, "range": [0.0, 0.0], "rounds": 0}
    return {
        "median": round(statistics.median(values), digits),
        "range": [round(min(values), digits), round(max(values), digits)],
        "rounds": len(values),
    }


# ---------------------------------------------------------------------------
# one case


class _Bench:
    def __init__(self, case: Case, config: SuiteConfig, log: Log) -> None:
        self.case = case
        self.config = config
        self.log = log
        self.server = _Child(server_argv(case.services, config), "cp_server")
        ready = self.server.recv()
        self.port = int(ready["port"])
        self.setup_s = float(ready["setup_s"])
        identities = case.proxies + config.new_proxy_rounds
        n_workers = max(1, min(config.workers, case.proxies // 50 or 1))
        self.workers = [
            _Child(client_argv(self.port, case.services, identities, config), f"adsclient-{w}")
            for w in range(n_workers)
        ]
        for w in self.workers:
            w.recv()

    def close(self) -> None:
        for w in self.workers:
            w.stop(json.dumps({"op": "quit"}))
        self.server.stop("quit")

    def _all(self, request: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Any]:
        requests = request if isinstance(request, Sequence) else [request] * len(self.workers)
        for w, r in zip(self.workers, requests, strict=True):
            w.send(json.dumps(r))
        return [w.recv() for w in self.workers]

    def connect(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        parts = [list(ids[i :: len(self.workers)]) for i in range(len(self.workers))]
        replies = self._all(
            [{"op": "connect", "ids": p, "timeout": self.config.timeout_s} for p in parts]
        )
        return [p for r in replies for p in r["proxies"]]

    def close_proxies(self, ids: Sequence[int] | None = None) -> None:
        self._all({"op": "close", "ids": None if ids is None else list(ids)})

    def wait_synced(self) -> bool:
        return bool(self.server.ask(f"wait-synced {self.config.timeout_s}")["synced"])

    def first_config_round(self) -> tuple[dict[str, float], float, list[dict[str, Any]]]:
        proxies = self.connect(range(self.case.proxies))
        done = [p for p in proxies if p["t_full"] is not None]
        latencies = [(p["t_full"] - p["t_open"]) * 1000 for p in done]
        start = min(p["t_open"] for p in proxies)
        end = max((p["t_full"] for p in done), default=start)
        if len(done) < len(proxies):
            self.log(f"  {len(proxies) - len(done)} proxies got no full config in time")
        return distribution(latencies), end - start, proxies

    def change_round(self, command: str) -> tuple[dict[str, float], float, int, float]:
        before = self.server.ask("stats")
        change = self.server.ask(command)
        replies = self._all(
            {"op": "wait-version", "version": change["version"], "timeout": self.config.timeout_s}
        )
        acked = [t for r in replies for t in r["acked"].values()]
        missing = sum(len(r["missing"]) for r in replies)
        self.wait_synced()
        after = self.server.ask("stats")
        latencies = [(t - change["t_applied"]) * 1000 for t in acked]
        cpu = after["cpu_s"] - before["cpu_s"]
        return distribution(latencies), cpu, missing, float(change["build_ms"])


def _run_case(case: Case, config: SuiteConfig, log: Log, profile_to: Path | None) -> dict[str, Any]:
    log(f"controlplane: {case.services} services x {case.proxies} proxies")
    bench = _Bench(case, config, log)
    profiler: subprocess.Popen[bytes] | None = None
    try:
        if profile_to is not None:
            profiler = _start_profiler(bench.server.pid, profile_to, config.profile_seconds)
        first_rounds: list[dict[str, float]] = []
        all_first: list[float] = []
        connect_cpu: list[float] = []
        proxies: list[dict[str, Any]] = []
        for r in range(case.connect_rounds):
            if r:
                bench.close_proxies()
                time.sleep(0.3)
            cpu_before = bench.server.ask("stats")["cpu_s"]
            dist, total, proxies = bench.first_config_round()
            bench.wait_synced()
            connect_cpu.append(bench.server.ask("stats")["cpu_s"] - cpu_before)
            first_rounds.append(dist)
            all_first.append(total)
            log(f"  connect round {r + 1}: p50 {dist['p50']:.0f} ms, all {total:.2f} s")
        configured = sum(1 for p in proxies if p["t_full"] is not None)
        retries = sum(int(p.get("retries", 0)) for p in proxies)
        synced = bench.wait_synced()
        stats = bench.server.ask("stats")
        bytes_per_proxy = _bytes(proxies)
        changes: dict[str, list[dict[str, float]]] = {"endpoint": [], "vs": []}
        cpu: dict[str, list[float]] = {"endpoint": [], "vs": []}
        build_ms: list[float] = []
        missing = 0
        for kind, command in (("endpoint", "change-endpoint"), ("vs", "change-vs")):
            for _ in range(case.change_rounds):
                dist, cpu_s, lost, built = bench.change_round(command)
                build_ms.append(built)
                changes[kind].append(dist)
                cpu[kind].append(cpu_s)
                missing += lost
                time.sleep(0.05)
            median = statistics.median(d["p50"] for d in changes[kind])
            log(f"  {kind} change: p50 {median:.0f} ms")
        new_proxy: list[float] = []
        for r in range(config.new_proxy_rounds):
            joined = bench.connect([case.proxies + r])
            if joined[0]["t_full"] is not None:
                new_proxy.append((joined[0]["t_full"] - joined[0]["t_open"]) * 1000)
            bench.close_proxies([case.proxies + r])
        final = bench.server.ask("stats trim")
    finally:
        if profiler is not None:
            _stop_profiler(profiler)
        bench.close()
    return {
        "services": case.services,
        "proxies": case.proxies,
        "endpoints_per_service": config.endpoints,
        "proxies_configured": configured,
        "stream_retries": retries,  # streams that failed while connecting and were reopened
        "synced": synced,
        "first_config_ms": over_rounds(first_rounds),
        "all_first_config_s": round(statistics.median(all_first), 3),
        "all_first_config_s_range": [round(min(all_first), 3), round(max(all_first), 3)],
        "endpoint_change_ms": over_rounds(changes["endpoint"]),
        "vs_change_ms": over_rounds(changes["vs"]),
        "convergence_missing": missing,
        "cp_cpu_s_first_config": _median_range(connect_cpu, 2),
        "cp_rss_mb": round(stats["rss_mb"], 1),
        "cp_rss_mb_end": round(final["rss_mb"], 1),
        "cp_rss_mb_end_after_malloc_trim": round(final.get("rss_trimmed_mb", 0.0), 1),
        "cp_cpu_s_per_push": {
            "endpoint": _median_range(cpu["endpoint"]),
            "vs": _median_range(cpu["vs"]),
        },
        "cp_snapshot_build_ms": _median_range(build_ms, 1),
        "bytes_per_proxy": bytes_per_proxy,
        "new_proxy_first_config_ms": round(statistics.median(new_proxy), 2) if new_proxy else None,
        "new_proxy_first_config_range_ms": (
            [round(min(new_proxy), 2), round(max(new_proxy), 2)] if new_proxy else None
        ),
        "cp_setup_s": round(bench.setup_s, 2),
        "sidecar_scoping": SIDECAR_SCOPING,
    }


def _bytes(proxies: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    per_type: dict[str, list[int]] = {}
    totals: list[int] = []
    for p in proxies:
        sizes: Mapping[str, int] = p["bytes"]
        totals.append(sum(sizes.values()))
        for t, n in sizes.items():
            per_type.setdefault(t, []).append(n)
    out = {t: int(statistics.median(v)) for t, v in sorted(per_type.items())}
    out["total"] = int(statistics.median(totals)) if totals else 0
    return out


# ---------------------------------------------------------------------------
# profiling


def _start_profiler(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--format",
        "speedscope",
        "--output",
        str(out),
        "--rate",
        "100",
        "--duration",
        str(int(seconds)),
        "--nonblocking",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it attach before the load starts
    return proc


def _stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive share of samples per function, from a speedscope file."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    # Per function, not per line: py-spy gives each line its own frame.
    names = [f"{f['name']} ({Path(f.get('file', '')).name})" for f in frames]
    own: dict[str, float] = {}
    inclusive: dict[str, float] = {}
    total = 0.0
    samples = 0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            samples += 1
            if stack:
                leaf = names[stack[-1]]
                own[leaf] = own.get(leaf, 0.0) + weight
            for name in {names[i] for i in stack}:
                inclusive[name] = inclusive.get(name, 0.0) + weight

    def ranked(counts: Mapping[str, float]) -> list[list[Any]]:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [[name, round(100 * n / total, 1)] for name, n in best]

    if not total:
        return {"samples": 0, "top": [], "top_inclusive": []}
    return {"samples": samples, "top": ranked(own), "top_inclusive": ranked(inclusive)}


# ---------------------------------------------------------------------------
# the suite


def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _table(results: Sequence[Mapping[str, Any]], title: str) -> dict[str, Any]:
    columns = [
        "services",
        "proxies",
        "first config p50/p99 ms",
        "all configured s",
        "endpoint change p50/p99 ms",
        "VS change p50/p99 ms",
        "CP RSS MB",
        "CP CPU s/push (ep/vs)",
        "KB/proxy",
        "new proxy ms",
    ]
    rows = []
    for r in results:
        fc, ep, vs = r["first_config_ms"], r["endpoint_change_ms"], r["vs_change_ms"]
        cpu = r["cp_cpu_s_per_push"]
        rows.append(
            [
                str(r["services"]),
                str(r["proxies"]),
                f"{_fmt(fc['p50'])}/{_fmt(fc['p99'])}",
                _fmt(r["all_first_config_s"], 2),
                f"{_fmt(ep['p50'])}/{_fmt(ep['p99'])}",
                f"{_fmt(vs['p50'])}/{_fmt(vs['p99'])}",
                _fmt(r["cp_rss_mb"]),
                f"{_fmt(cpu['endpoint']['median'], 2)}/{_fmt(cpu['vs']['median'], 2)}",
                _fmt(r["bytes_per_proxy"].get("total", 0) / 1024, 1),
                _fmt(r["new_proxy_first_config_ms"]),
            ]
        )
    return {"title": title, "columns": columns, "rows": rows}


def run_suite(config: SuiteConfig, log: Log) -> dict[str, Any]:
    started = time.monotonic()
    results_dir = Path(config.results_dir)
    biggest = max(config.cases, key=lambda c: (c.services * c.proxies, c.services))
    profile_file = results_dir / f"flame-cp-{biggest.services}x{biggest.proxies}.speedscope.json"
    results = []
    profile: dict[str, Any] = {"file": None, "top": [], "case": None}
    for case in config.cases:
        profiled = config.profile and case == biggest
        result = _run_case(case, config, log, profile_file if profiled else None)
        results.append(result)
        if profiled and profile_file.exists():
            summary = summarize_profile(profile_file)
            profile = {
                "file": str(profile_file),
                "case": f"{case.services}x{case.proxies}",
                "viewer": "https://www.speedscope.app (or: py-spy record --format flamegraph)",
                **summary,
            }
    cases_cfg = [asdict(c) for c in config.cases]
    example = config.cases[0]
    return {
        "suite": "controlplane",
        "machine": {"cores": os.cpu_count() or 1},
        "config": {
            "cases": cases_cfg,
            "endpoints_per_service": config.endpoints,
            "mesh": "services svc-<i> over 10 namespaces, HTTP port 9080, "
            "2 deployments (v1/v2) per service; VirtualService (90/10 split + /api rule) "
            "and DestinationRule (2 subsets) on every third service",
            "workers": config.workers,
            "debounce_s": config.debounce_s,
            "cache": config.cache,
            "new_proxy_rounds": config.new_proxy_rounds,
            "rounds": "first config: connect_rounds per case (all proxies connect at once); "
            "changes: change_rounds; figures are medians over rounds, "
            "p50_range/range the spread",
            **config.extra,
        },
        "commands": [
            "run_controlplane(quick, log) in mizzen.bench.controlplane",
            "python " + " ".join(server_argv(example.services, config)[1:]),
            "python " + " ".join(client_argv(0, example.services, example.proxies, config)[1:]),
            "py-spy record --pid <cp pid> --format speedscope --rate 100 --nonblocking "
            f"--output {profile_file}",
        ],
        "results": results,
        "profile": profile,
        "elapsed_s": round(time.monotonic() - started, 1),
        "table": _table(results, "Control plane: config distribution to simulated sidecars"),
    }
