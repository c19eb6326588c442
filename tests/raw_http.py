"""Raw HTTP/1.1 over asyncio streams, for tests that must see the bytes a server sends."""

from __future__ import annotations

import asyncio
import contextlib

READ_TIMEOUT = 10.0


async def read_until_closed(reader: asyncio.StreamReader, reads: int = 10_000) -> bytes:
    """Everything the server sends until it closes the connection (or resets it), bounded in reads
    and in time (READ_TIMEOUT): the answers read this way are small."""
    answer = b""
    async with asyncio.timeout(READ_TIMEOUT):
        with contextlib.suppress(ConnectionError):
            for _ in range(reads):
                data = await reader.read(65536)
                if not data:
                    break
                answer += data
    return answer
