"""A request's body read to its end before it is held: bounded per request and across all requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from chute_shared.headers import EXPECT, EXPECT_CONTINUE

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BodyTooLarge(Exception):
    """The body is longer than the per-request bound (413)."""


class HeldBytesFull(Exception):
    """Holding this body would pass the bound across all requests (503, never a cut body)."""


class BodyIncomplete(Exception):
    """The client ended its body before its Content-Length."""


class BodyTimeout(Exception):
    """The client did not send its whole body in time (408): a slow or stalled client must not keep
    its share of :class:`HeldBytes` (announced by its Content-Length) forever."""


BODY_TIMEOUT_SECONDS = 120.0
"""Longest a client may take to send its whole body (64 MiB at about 0.5 MiB/s)."""


class HeldBytes:
    """Bytes of request bodies the activator holds now, against one bound for the whole process."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0

    def fits(self, count: int) -> bool:
        """Whether ``count`` more bytes would fit now (nothing taken)."""
        return self.held + count <= self.limit

    def take(self, count: int) -> bool:
        if self.held + count > self.limit:
            return False
        self.held += count
        return True

    def give_back(self, count: int) -> None:
        self.held -= count


class Body:
    """A whole body and its share of :class:`HeldBytes`, given back once (:meth:`release`)."""

    def __init__(self, held: HeldBytes) -> None:
        self.data, self.reserved, self._held = bytearray(), 0, held

    def reserve(self, count: int, limit: int) -> None:
        if self.reserved + count > limit:
            raise BodyTooLarge
        if not self._held.take(count):
            raise HeldBytesFull
        self.reserved += count

    def release(self) -> None:
        """The replica has it (it answered): its bytes no longer count against the bound, and are
        no longer kept (an answer may stream for minutes: what is not counted must not be held)."""
        self._held.give_back(self.reserved)
        self.reserved = 0
        self.data = bytearray()


@contextlib.asynccontextmanager
async def read_body(
    request: web.BaseRequest, *, limit: int, held: HeldBytes, within: float = BODY_TIMEOUT_SECONDS
) -> AsyncIterator[Body]:
    """The request's whole body (Content-Length or chunked), ``limit`` bytes at most; its bytes count
    against ``held`` as they arrive (never before: a head that only announces a large body holds
    nothing of the bound) until :meth:`Body.release` or the block's end. A Content-Length over
    ``limit``, or over what ``held`` has room for now, is refused before a byte is read. A client
    that sent ``Expect: 100-continue`` gets ``100 Continue`` once its Content-Length passed both
    checks (a body refused before it is read gets its final answer instead). The whole body must
    arrive within ``within`` seconds (:class:`BodyTimeout`)."""
    body = Body(held)
    try:
        length = request.content_length
        if length is not None:
            if length > limit:
                raise BodyTooLarge
            if not held.fits(length):
                raise HeldBytesFull
        if request.headers.get(EXPECT, "").lower() == EXPECT_CONTINUE and request.version >= (1, 1):
            await request.writer.write(CONTINUE)  # the client waits for it before it sends the body
        filled = 0
        try:
            async with asyncio.timeout(within):
                while chunk := await request.content.readany():
                    if length is not None and filled + len(chunk) > length:
                        chunk = chunk[: max(length - filled, 0)]  # aiohttp stops at the length
                    body.reserve(len(chunk), limit)
                    body.data += chunk
                    filled += len(chunk)
        except TimeoutError:
            raise BodyTimeout from None
        if length is not None and filled != length:
            raise BodyIncomplete
        yield body
    finally:
        body.release()
