"""`mizzen demo`: Bookinfo on a local mesh and a tour of its routing variants.

Each step applies one variant from examples/bookinfo/routing/ (and at the
end a STRICT PeerAuthentication), waits until every proxy has acknowledged
it, sends requests through the ingress gateway and prints the reviews
versions that answered; then the workload identities behind the mTLS hops.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mizzen.mesh import control

REQUESTS_PER_STEP = 200


@dataclass(frozen=True)
class Step:
    title: str
    file: str  # relative to the Bookinfo example
    users: tuple[str, ...] = ("",)


STEPS = (
    Step("no VirtualService: round robin over v1, v2, v3", ""),
    Step("all traffic to v1", "routing/all-v1.yaml"),
    Step(
        "end-user jason to v2, everyone else to v1",
        "routing/reviews-jason-v2.yaml",
        ("jason", ""),
    ),
    Step("50% v1, 50% v3", "routing/reviews-50-v3.yaml"),
    Step("80% v1, 20% v2", "routing/reviews-80-20.yaml"),
    Step("STRICT mTLS in the namespace (80/20 stays)", "security/mtls-strict.yaml"),
)


def example_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "examples" / "bookinfo"


def fetch_version(url: str, user: str, timeout: float = 5.0) -> str:
    """One request to the product page; returns the reviews version, or the
    error that came back instead."""
    request = urllib.request.Request(url)
    if user:
        request.add_header("end-user", user)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"error: {type(exc).__name__}"
    return str(body.get("reviews_version") or "no reviews")


def measure(url: str, user: str, count: int) -> Counter[str]:
    return Counter(fetch_version(url, user) for _ in range(count))


def _split(counts: Counter[str]) -> str:
    total = sum(counts.values()) or 1
    return "  ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(counts.items()))


def _print_identities(console: Console, layout: Any) -> None:
    """Every hop between sidecars was mutual TLS: show who is who."""
    proxies = control.call(layout.control_socket, {"op": "status"})["proxies"]
    table = Table(title="workload identities: every hop between them is mutual TLS")
    table.add_column("proxy (pod.namespace)")
    table.add_column("SPIFFE identity", no_wrap=True)
    for row in proxies:
        table.add_row(row["id"].split("~")[2], row.get("identity") or "-")
    console.print(table)


def run_demo(name: str, ingress_port: int, once: bool) -> int:
    from mizzen.mesh.launcher import LaunchError, launch, stop, wait_ready

    # Piped (make demo in a log), rich would squeeze the tables to 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    root = example_dir()
    paths = [
        str(root / "platform"),
        str(root / "networking"),
        str(root / "routing" / "destination-rules.yaml"),
    ]
    try:
        layout = launch(name, paths, ingress_port)
        with console.status("starting the Bookinfo mesh (pods, sidecars, ingress gateway) ..."):
            status = wait_ready(layout, timeout=240)
    except LaunchError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    url = f"{status['ingress']}/productpage"
    console.print(f"mesh [bold]{name}[/] is up: {len(status['pods'])} pods, ingress {url}")
    table = Table(title="reviews versions seen through the ingress gateway", header_style="bold")
    table.add_column("variant")
    table.add_column("user")
    table.add_column(f"split over {REQUESTS_PER_STEP} requests")
    try:
        for step in STEPS:
            if step.file:
                answer = control.call(
                    layout.control_socket,
                    {"op": "apply", "paths": [str(root / step.file)]},
                )
                if answer.get("errors"):
                    console.print(f"[red]apply failed:[/] {answer['errors']}")
                    return 1
                wait_ready(layout, timeout=30)
            for user in step.users:
                counts = measure(url, user, REQUESTS_PER_STEP)
                table.add_row(step.title, user or "anonymous", _split(counts))
                console.print(f"  {step.title} [{user or 'anonymous'}]: {_split(counts)}")
        console.print(table)
        _print_identities(console, layout)
        if not once:
            console.print(f"\nthe mesh keeps running: open {url}; Ctrl-C to stop")
            while layout.daemon_alive():
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(layout)
        console.print(f"mesh {name} is down")
    return 0
