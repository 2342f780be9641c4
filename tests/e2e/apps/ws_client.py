"""Run inside a pod: `ws_client.py URL COUNT QUIET_SECONDS`.

Connects, reads the server's greeting, sends COUNT numbered messages and
checks every echo, then stays silent for QUIET_SECONDS (no pings either) and
sends one more. Prints one JSON object: the greeting, how many echoes
matched, and whether the last one came back after the quiet spell.
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url: str, count: int, quiet: float) -> dict[str, object]:
    # No proxy from the environment, no keepalive pings: the quiet spell
    # must really be quiet.
    async with connect(url, proxy=None, ping_interval=None, open_timeout=10) as ws:
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
    print(json.dumps(asyncio.run(main(url, count, quiet))))
