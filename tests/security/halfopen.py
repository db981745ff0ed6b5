"""Hold N half-open HTTP connections to a server from a separate process (slowloris).

    python -m tests.security.halfopen PORT N

Each connection comes from its own address of 127.0.0.0/8 and sends the start of a
WebSocket upgrade whose headers never end. Prints `held N` once all are open, then
waits for a line (or EOF) on stdin, prints `closed K` (how many the server had closed
by then) and exits. A separate process, so that the test's own process (where the
agent's X11 client lives, which uses select()) keeps its descriptors below 1024.
"""

from __future__ import annotations

import asyncio
import sys

from bench.bruteforce import spread_addresses

REQUEST_START = b"GET /ws/agent HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"


async def hold(port: int, count: int) -> None:
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for source in spread_addresses(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writer.write(REQUEST_START)
        held.append((reader, writer))
    print(f"held {len(held)}", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await asyncio.sleep(0)
    closed = sum(reader.at_eof() or writer.is_closing() for reader, writer in held)
    print(f"closed {closed}", flush=True)
    for _, writer in held:
        writer.transport.abort()


if __name__ == "__main__":
    asyncio.run(hold(int(sys.argv[1]), int(sys.argv[2])))
