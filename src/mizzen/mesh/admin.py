"""Reading a proxy's Envoy admin API from the host (process adapter).

A sidecar's admin listens on 127.0.0.1:15000 inside its pod's network
namespace, where the host cannot connect; the request is made by a short
Python process started in that namespace. The gateway's admin is on the
host's loopback, at the address Envoy wrote to ``admin.address``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mizzen.agent.main import ADMIN_ADDRESS_FILE

# Run inside the pod: GET http://HOST:PORT/PATH, body to stdout.
_FETCH = """
import http.client, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection(host, port, timeout=5)
conn.request("GET", path)
response = conn.getresponse()
body = response.read()
if response.status != 200:
    sys.exit(f"Envoy admin answered {response.status} for {path}")
sys.stdout.buffer.write(body)
"""


class AdminError(RuntimeError):
    """The proxy's admin API could not be read; says why."""


def admin_address(proxy_dir: Path) -> tuple[str, int]:
    try:
        text = (proxy_dir / ADMIN_ADDRESS_FILE).read_text().strip()
    except OSError:
        raise AdminError(f"the proxy has no admin address yet ({proxy_dir})") from None
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise AdminError(f"unreadable admin address {text!r} in {proxy_dir}")
    return host, int(port)


def admin_get(proxy_dir: Path, path: str, netns: str | None) -> bytes:
    host, port = admin_address(proxy_dir)
    argv = [sys.executable, "-c", _FETCH, host, str(port), path]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AdminError(f"cannot reach the proxy's admin API: {e}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise AdminError(message[-1] if message else "cannot reach the proxy's admin API")
    return done.stdout
