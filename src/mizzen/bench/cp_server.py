"""The control plane under test, in a process of its own.

``python -m mizzen.bench.cp_server --services N [--port P]`` builds the
benchmark mesh in memory (``mizzen.bench.cp_mesh``: api resources and pod
addresses, no Kubernetes, no pods), makes the snapshot with
``build_snapshot`` and serves it with the real ``XdsServer`` and
``build_resources``, wired as the mesh daemon wires them. ``--cache`` puts
``mizzen.xds.cache.ConfigCache`` between the two (the optimized path).

Control channel: one command per line on stdin, one JSON object per line on
stdout (the first line announces the port)::

    stats [trim]     -> {"rss_mb", "cpu_s", "version", "pushes", "proxies", "synced"}
                        (trim: also "rss_trimmed_mb", RSS after malloc_trim)
    change-endpoint  -> {"t_applied", "version", "build_ms"}   (after the push flushed)
    change-vs        -> same
    wait-synced [S]  -> {"synced": bool}
    quit
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict

from mizzen.bench.adsclient import raise_fd_limit
from mizzen.bench.cp_mesh import BenchMesh, bench_mesh
from mizzen.model.proxy import proxy_from_node
from mizzen.model.snapshot import MeshSnapshot, Proxy
from mizzen.translate import build_resources
from mizzen.xds.protocol import Resources
from mizzen.xds.server import XdsServer

__all__ = ["main", "process_stats"]


def process_stats(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS in MB, user + system CPU seconds) of a process, from /proc."""
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
                break
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return rss_kb / 1024, cpu


def _identify(node: Any) -> Proxy:
    metadata: dict[str, Any] = MessageToDict(node.metadata)
    return proxy_from_node(node.id, metadata)


class ControlPlane:
    def __init__(self, mesh: BenchMesh, *, cache: bool, debounce: float) -> None:
        self.mesh = mesh
        self.revision = 1
        self.snapshot: MeshSnapshot = mesh.snapshot(str(self.revision))
        self.generate: Callable[[Proxy], Any]
        if cache:
            from mizzen.xds.cache import ConfigCache

            config_cache = ConfigCache()
            self.generate = lambda proxy: config_cache.config(self.snapshot, proxy)
        else:
            self.generate = self._generate
        self.xds: XdsServer[Proxy] = XdsServer(
            identify=_identify,
            generate=self.generate,
            proxy_key=lambda proxy: proxy.id,
            debounce=debounce,
        )

    def _generate(self, proxy: Proxy) -> Resources:
        return build_resources(self.snapshot, proxy)

    async def change(self, mutate: Callable[[BenchMesh], BenchMesh], reason: str) -> dict[str, Any]:
        applied = time.monotonic()
        before = self.xds.version
        self.mesh = mutate(self.mesh)
        self.revision += 1
        self.snapshot = self.mesh.snapshot(str(self.revision))
        built = time.monotonic()
        self.xds.push(reason)
        while self.xds.version == before:
            await asyncio.sleep(0.001)
        return {
            "t_applied": applied,
            "version": self.xds.version,
            "build_ms": (built - applied) * 1000,
        }

    def stats(self, trim: bool = False) -> dict[str, Any]:
        rss, cpu = process_stats()
        out = {
            "rss_mb": rss,
            "cpu_s": cpu,
            "version": self.xds.version,
            "pushes": int(self.xds.version) - 1,
            "proxies": self.xds.proxy_count,
            "synced": self.xds.synced(),
        }
        if trim:
            # How much of RSS is memory malloc keeps after big transient
            # buffers (responses on their way out) were freed.
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            out["rss_trimmed_mb"] = process_stats()[0]
        return out

    async def handle(self, line: str) -> dict[str, Any] | None:
        words = line.split()
        if not words:
            return {"error": "empty command"}
        op = words[0]
        if op == "stats":
            return self.stats(trim="trim" in words[1:])
        if op == "change-endpoint":
            return await self.change(BenchMesh.change_endpoint, "endpoint")
        if op == "change-vs":
            return await self.change(BenchMesh.change_vs, "virtualservice")
        if op == "wait-synced":
            timeout = float(words[1]) if len(words) > 1 else 60.0
            return {"synced": await self.xds.wait_synced(timeout)}
        if op == "quit":
            return None
        return {"error": f"unknown command {op!r}"}


def _write(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> int:
    raise_fd_limit()  # one socket per connected proxy
    started = time.monotonic()
    mesh = bench_mesh(args.services, args.endpoints)
    cp = ControlPlane(mesh, cache=args.cache, debounce=args.debounce)
    port = await cp.xds.start(f"127.0.0.1:{args.port}")
    _write(
        {
            "ready": True,
            "port": port,
            "pid": os.getpid(),
            "setup_s": time.monotonic() - started,
            "cache": args.cache,
        }
    )
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            reply = await cp.handle(line)
            if reply is None:
                break
            _write(reply)
    finally:
        await cp.xds.stop(0.5)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mizzen.bench.cp_server")
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--debounce", type=float, default=0.1)
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
