"""Run inside a pod: `ws_client.py URL COUNT QUIET_SECONDS [NAME=VALUE...]`.

Connects, reads the server's greeting, sends COUNT numbered messages and
checks every echo, then stays silent for QUIET_SECONDS (no pings either) and
sends one more. Prints one JSON object: the greeting, how many echoes
matched, and whether the last one came back after the quiet spell. Each
NAME=VALUE is a header of the upgrade request.
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url: str, count: int, quiet: float, headers: dict[str, str]) -> dict[str, object]:
    # No proxy from the environment, no keepalive pings: the quiet spell
    # must really be quiet.
    async with connect(
        url, proxy=None, ping_interval=None, open_timeout=10, additional_headers=headers
    ) as ws:
        greeting = json.loads(await ws.recv())
        matched = 0
        for i in range(count):
            await ws.send(f"message {i}")
            matched += await ws.recv() == f"message {i}"
        await asyncio.sleep(quiet)
        await ws.send("after the quiet spell")
        last = await asyncio.wait_for(ws.recv(), 10)
    after_quiet = last == "after the quiet spell"
    return {"greeting": greeting, "matched": matched, "after_quiet": after_quiet}


if __name__ == "__main__":
    url, count, quiet = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    headers = dict(item.split("=", 1) for item in sys.argv[4:])
    print(json.dumps(asyncio.run(main(url, count, quiet, headers))))
