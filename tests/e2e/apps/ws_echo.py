"""A WebSocket echo server for the end-to-end tests (the `websockets` package).

Usage: ws_echo.py PORT. A new connection first gets one JSON text message
naming the pod and the peer address the server sees; every later message is
sent back unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(connection: ServerConnection) -> None:
    peer = connection.remote_address[0]
    await connection.send(json.dumps({"pod": os.environ.get("POD_NAME", ""), "peer": peer}))
    async for message in connection:
        await connection.send(message)


async def main(port: int) -> None:
    async with serve(echo, "0.0.0.0", port, ping_interval=None):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
