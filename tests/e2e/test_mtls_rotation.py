"""Certificate rotation under load: with 2-minute workload certificates, a
client holding one connection and sending a request every second across
two rotations sees no failure, and the certificate the server's Envoy
serves changes each time.

The lifetime comes from the mesh config (``defaultConfig.proxyMetadata.
SECRET_TTL``), the way an Istio operator sets it; agents renew at half of
it, so the test spans about two and a half minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from e2e_helpers import free_port, mesh_name

from mizzen.ca.describe import SECRETS_DUMP_PATH, describe_secrets
from mizzen.mesh import control
from mizzen.mesh.admin import admin_get
from mizzen.mesh.launcher import launch, stop, wait_ready

MANIFESTS = Path(__file__).resolve().parent / "manifests"
REQUESTS = 140  # one a second: past the second renewal at about 120 s

# Inside the client pod: one HTTP/1.1 connection, one request a second; a
# line per request with the status (or the error) and the local port, which
# must never change (http.client would silently reconnect otherwise).
CLIENT = """
import http.client, json, sys, time
count = int(sys.argv[1])
conn = http.client.HTTPConnection("echo.secure", 80, timeout=5)
for i in range(count):
    started = time.monotonic()
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = json.loads(response.read())
        line = {"status": response.status, "port": conn.sock.getsockname()[1],
                "caller": body["headers"].get("x-forwarded-client-cert", "")}
    except Exception as e:
        line = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(line), flush=True)
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
"""


def served_serial(layout: object, netns: str) -> str:
    dump = json.loads(
        admin_get(layout.proxy_dir("secure", "echo-0"), SECRETS_DUMP_PATH, netns)  # type: ignore[attr-defined]
    )
    (leaf,) = [c for c in describe_secrets(dump) if c.secret == "default"]
    return leaf.serial


def test_rotation_drops_nothing(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("defaultConfig:\n  proxyMetadata:\n    SECRET_TTL: 2m\n")
    layout = launch(
        mesh_name("rotate"),
        [str(MANIFESTS / "mtls.yaml")],
        free_port(),
        mesh_config=str(config),
    )
    try:
        status = wait_ready(layout, timeout=240)
        echo = next(p for p in status["pods"] if p["name"] == "echo-0")
        first = served_serial(layout, echo["netns"])
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mizzen",
                "exec",
                "client-0",
                "--name",
                layout.name,
                "--",
                "python3",
                "-c",
                CLIENT,
                str(REQUESTS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        serials = [first]
        deadline = time.monotonic() + REQUESTS + 60
        while client.poll() is None and time.monotonic() < deadline:
            serial = served_serial(layout, echo["netns"])
            if serial != serials[-1]:
                serials.append(serial)
            time.sleep(2)
        out, err = client.communicate(timeout=30)
        lines = [json.loads(line) for line in out.splitlines()]
        assert len(lines) == REQUESTS, err
        failures = [line for line in lines if line.get("status") != 200]
        assert not failures, failures[:5]
        assert len({line["port"] for line in lines}) == 1  # one connection throughout
        assert all(
            "URI=spiffe://cluster.local/ns/secure/sa/client" in line["caller"] for line in lines
        )
        assert len(serials) >= 3, serials  # two renewals of the server's certificate
        # The control plane issued them: the last one is what it recorded.
        proxies = control.call(layout.control_socket, {"op": "status"})["proxies"]
        row = next(r for r in proxies if "~echo-0.secure~" in r["id"])
        assert row["cert_serial"] == serials[-1]
    finally:
        stop(layout)
