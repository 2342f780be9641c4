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
# The agent runs as the proxy's uid, whose connections to the pod's own IP
# the capture rules send to the inbound listener (and so, under STRICT, to
# a refusal); connections from this address are let through to the app.
PROBE_SOURCE = "127.0.0.6"


def app_health_path(container: str, kind: str) -> str:
    """``kind`` is ``readyz`` or ``livez``."""
    return f"{APP_HEALTH_PREFIX}{container}/{kind}"


def probers_json(probers: Mapping[str, tuple[AppProbe, float]]) -> str:
    out: dict[str, Any] = {}
    for path, (probe, timeout) in probers.items():
        if isinstance(probe, HttpGetProbe):
            http: dict[str, Any] = {"path": probe.path, "port": probe.port, "scheme": probe.scheme}
            if probe.headers:
                http["httpHeaders"] = [{"name": k, "value": v} for k, v in probe.headers.items()]
            spec: dict[str, Any] = {"httpGet": http}
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
        out[path] = (_probe(path, spec), _timeout(path, spec.get("timeoutSeconds")))
    return out


def _timeout(path: str, value: Any) -> float:
    if value is None or (value == 0 and not isinstance(value, bool)):
        return 1.0  # Kubernetes defaults an unset (0) timeout to 1 s
    # A bool is an int to Python, not a number of seconds to anyone else.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise ValueError(f"{path}: timeoutSeconds must be a positive number, not {value!r}")
    return float(value)


def _port(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        return None
    return value


def _headers(path: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list) or not all(
        isinstance(h, dict) and isinstance(h.get("name"), str) and h["name"] for h in raw
    ):
        raise ValueError(f"{path}: httpGet.httpHeaders must be a list of {{name, value}}")
    return {h["name"]: str(h.get("value", "")) for h in raw}


def _probe(path: str, spec: Mapping[str, Any]) -> AppProbe:
    http = spec.get("httpGet")
    tcp = spec.get("tcpSocket")
    if isinstance(http, dict) and (port := _port(http.get("port"))) is not None:
        scheme = str(http.get("scheme") or "HTTP").upper()
        if scheme not in ("HTTP", "HTTPS"):
            raise ValueError(f"{path}: httpGet.scheme must be HTTP or HTTPS, not {scheme!r}")
        headers = _headers(path, http.get("httpHeaders"))
        return HttpGetProbe(port, str(http.get("path") or "/"), scheme, headers)
    if isinstance(tcp, dict) and (port := _port(tcp.get("port"))) is not None:
        return TcpSocketProbe(port)
    raise ValueError(f"{path}: needs httpGet or tcpSocket with a port number (1-65535)")


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
            ok = await asyncio.to_thread(check_http, pod_ip, probe, timeout, PROBE_SOURCE)
        else:
            ok = await asyncio.to_thread(check_tcp, pod_ip, probe.port, timeout, PROBE_SOURCE)
        return (200, "ok\n") if ok else (503, "the application is not healthy\n")

    return handle
