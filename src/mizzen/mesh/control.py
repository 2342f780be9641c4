"""The control socket between the `mizzen` CLI and a running mesh daemon.

One request per connection: the client writes one JSON object and a newline,
the daemon answers with one JSON object and a newline. Unix socket permissions
(root only, 0600) are the access control: whoever may talk to it may run
processes in the mesh's pods anyway.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

MAX_MESSAGE = 16 * 1024 * 1024


class ControlError(Exception):
    """The daemon could not be reached or answered with an error."""


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("request must be a JSON object")
                response = await handler(request)
            except Exception as exc:  # the daemon must outlive any bad request
                response = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_MESSAGE)
    path.chmod(0o600)
    return server


def call(path: Path, request: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Send one request to the daemon and return its answer (blocking)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if chunk.endswith(b"\n"):
                    break
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ControlError(f"the mesh is not running (no control socket at {path})") from exc
    except TimeoutError as exc:
        raise ControlError(f"the mesh did not answer within {timeout:.0f} s") from exc
    data = b"".join(chunks)
    if not data:
        raise ControlError("the mesh closed the connection without an answer")
    answer: dict[str, Any] = json.loads(data)
    return answer
