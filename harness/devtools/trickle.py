"""A hostile HTTP server for deadline tests: it answers 200 at once, then sends its body a byte at a time.

Per-read timeouts never fire against it; only a total deadline per request ends the exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# Long enough that a client without a total deadline would still be reading when a test gives up.
TRICKLE_BYTES = 100_000
TRICKLE_GAP = 0.2


@asynccontextmanager
async def trickling_server(content_type: str) -> AsyncIterator[str]:
    """An HTTP server on loopback that answers 200 at once, then trickles its body a byte at a time."""

    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {TRICKLE_BYTES}\r\n\r\n"
            writer.write(head.encode())
            for _ in range(TRICKLE_BYTES):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(TRICKLE_GAP)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
