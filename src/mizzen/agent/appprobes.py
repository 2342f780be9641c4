"""Application health checks rewritten through the agent (Istio's 15020).

Under STRICT mTLS the kubelet's plain HTTP or TCP probe would be refused by
the sidecar, and a TCP probe through Envoy would only test Envoy. So, as in
Istio, the runtime probes ``http://<pod IP>:15020/app-health/<container>/
readyz`` (or ``livez``) instead, and the agent, which is not captured, runs
the original probe against the app directly and answers with the outcome.

The probers arrive as JSON in Istio's ``ISTIO_KUBE_APP_PROBERS`` shape::

    {"/app-health/web/readyz": {"httpGet": {"path": "/", "port": 8080,
                                             "scheme": "HTTP"},
                                "timeoutSeconds": 1},
     "/app-health/web/livez": {"tcpSocket": {"port": 8080}}}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mizzen.runtime.probes import HttpGetProbe, TcpSocketProbe, check_http, check_tcp

AppProbe = HttpGetProbe | TcpSocketProbe
APP_HEALTH_PREFIX = "/app-health/"


def app_health_path(container: str, kind: str) -> str:
    """``kind`` is ``readyz`` or ``livez``."""
    return f"{APP_HEALTH_PREFIX}{container}/{kind}"


def probers_json(probers: Mapping[str, tuple[AppProbe, float]]) -> str:
    out: dict[str, Any] = {}
    for path, (probe, timeout) in probers.items():
        if isinstance(probe, HttpGetProbe):
            spec: dict[str, Any] = {
                "httpGet": {"path": probe.path, "port": probe.port, "scheme": probe.scheme}
            }
        else:
            spec = {"tcpSocket": {"port": probe.port}}
        spec["timeoutSeconds"] = timeout
        out[path] = spec
    return json.dumps(out, sort_keys=True)


def parse_probers(text: str) -> dict[str, tuple[AppProbe, float]]:
    """Raises ValueError naming the entry that is wrong."""
    try:
        raw = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError("must be a JSON object of path -> probe")
    out: dict[str, tuple[AppProbe, float]] = {}
    for path, spec in raw.items():
        if not path.startswith(APP_HEALTH_PREFIX) or not isinstance(spec, dict):
            raise ValueError(f"{path}: expected {APP_HEALTH_PREFIX}<container>/readyz -> probe")
        timeout = float(spec.get("timeoutSeconds") or 1)
        out[path] = (_probe(path, spec), timeout)
    return out


def _probe(path: str, spec: Mapping[str, Any]) -> AppProbe:
    http = spec.get("httpGet")
    tcp = spec.get("tcpSocket")
    if isinstance(http, dict) and isinstance(http.get("port"), int):
        return HttpGetProbe(
            http["port"], str(http.get("path") or "/"), str(http.get("scheme") or "HTTP")
        )
    if isinstance(tcp, dict) and isinstance(tcp.get("port"), int):
        return TcpSocketProbe(tcp["port"])
    raise ValueError(f"{path}: needs httpGet or tcpSocket with a numeric port")


def app_probe_handler(
    probers: Mapping[str, tuple[AppProbe, float]], pod_ip: str
) -> Callable[[str, str], Awaitable[tuple[int, str] | None]]:
    """An HTTP handler: (method, path) -> (status, body), None if not ours."""

    async def handle(method: str, path: str) -> tuple[int, str] | None:
        found = probers.get(path.split("?", 1)[0])
        if found is None:
            return None
        probe, timeout = found
        if isinstance(probe, HttpGetProbe):
            ok = await asyncio.to_thread(check_http, pod_ip, probe, timeout)
        else:
            ok = await asyncio.to_thread(check_tcp, pod_ip, probe.port, timeout)
        return (200, "ok\n") if ok else (503, "the application is not healthy\n")

    return handle
