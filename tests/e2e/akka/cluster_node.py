"""A stand-in for one Akka/Pekko cluster node, stdlib only.

It listens on the three ports of the seed's container spec, on all
addresses (Envoy's inbound passthrough delivers from 127.0.0.6 over lo):

- http (the service's REST port): any GET answers JSON saying which pod
  answered and which peer address it saw.
- management: ``/ready`` (readiness) and ``/alive`` (liveness) as Akka
  Management serves them, ``/probes`` (what the readiness probes looked
  like) and any other path like the http port. ``/ready`` refuses the first
  ``--refuse-ready`` requests with 503, so a mesh that reports the pod ready
  must have waited for the probe on this port to succeed.
- remoting: a plain TCP echo; each line received is answered with one JSON
  line holding the pod name, the peer address it sees and the line.

Usage: cluster_node.py --http 8080 --remoting 2552 --management 8558
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POD = os.environ.get("POD_NAME", "?")


class ProbeLog:
    """What `/ready` has seen, shared by the management handler threads."""

    def __init__(self, refuse: int) -> None:
        self.lock = threading.Lock()
        self.refuse = refuse
        self.refused = 0
        self.accepted = 0
        self.first_accepted_at: float | None = None  # wall clock, for the test
        self.peers: set[str] = set()
        self.agents: set[str] = set()

    def ready(self, peer: str, agent: str) -> bool:
        with self.lock:
            self.peers.add(peer)
            self.agents.add(agent)
            if self.refused < self.refuse:
                self.refused += 1
                return False
            self.accepted += 1
            if self.first_accepted_at is None:
                self.first_accepted_at = time.time()
            return True

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "refused": self.refused,
                "accepted": self.accepted,
                "first_accepted_at": self.first_accepted_at,
                "peers": sorted(self.peers),
                "agents": sorted(self.agents),
            }


class Handler(BaseHTTPRequestHandler):
    server_version = "cluster-node"
    role = "http"
    probes: ProbeLog | None = None

    def do_GET(self) -> None:
        peer = self.client_address[0]
        status = 200
        body: dict[str, Any] = {
            "pod": POD,
            "role": self.role,
            "port": self.connection.getsockname()[1],
            "peer": peer,
            "path": self.path,
        }
        if self.probes is not None:
            if self.path == "/ready":
                if not self.probes.ready(peer, self.headers.get("User-Agent", "")):
                    status = 503
            elif self.path == "/probes":
                body["probes"] = self.probes.snapshot()
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        print(f"{self.role} {self.client_address[0]} {format % args}", flush=True)


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        peer = self.client_address[0]
        print(f"remoting connection from {peer}", flush=True)
        for line in self.rfile:
            answer = {"pod": POD, "role": "remoting", "peer": peer, "echo": line.decode().strip()}
            self.wfile.write((json.dumps(answer) + "\n").encode())
            self.wfile.flush()


class TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, required=True)
    parser.add_argument("--remoting", type=int, required=True)
    parser.add_argument("--management", type=int, required=True)
    parser.add_argument("--refuse-ready", type=int, default=2)
    args = parser.parse_args()

    class Management(Handler):
        role = "management"
        probes = ProbeLog(args.refuse_ready)

    servers: list[socketserver.TCPServer] = [
        ThreadingHTTPServer(("0.0.0.0", args.http), Handler),
        ThreadingHTTPServer(("0.0.0.0", args.management), Management),
        TcpServer(("0.0.0.0", args.remoting), Echo),
    ]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"{POD}: http {args.http}, remoting {args.remoting}, management {args.management}")
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
