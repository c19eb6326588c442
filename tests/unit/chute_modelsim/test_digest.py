"""``POST /v1/echo/digest``: the length and SHA-256 of the body as the model received it, read whole;
directly and through the real sidecar (which forwards any path of a Chute without cords)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import aiohttp

from chute_modelsim.server import DIGEST_PATH, MAX_BODY_BYTES
from chute_sidecar.app import Sidecar

from .conftest import LOOPBACK, Model, StartModel, eventually

MIB = 1024 * 1024
PIECE = 65_536
BODY = memoryview(os.urandom(8 * MIB))
"""Every body is a slice of this one, sent in pieces of :data:`PIECE`, never copied whole: a freed
buffer of megabytes (a body written to a socket at once is copied into the transport's buffer) would
raise glibc's mmap threshold for the rest of the process, and the memory test that runs after
(test_faults.py) would see its allocation reuse that memory instead of growing the RSS."""


def _expected(body: memoryview) -> dict[str, object]:
    return {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


async def _pieces(body: memoryview, size: int = PIECE) -> AsyncIterator[memoryview]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def _digest(
    session: aiohttp.ClientSession, url: str, body: memoryview, chunked: bool = False, size: int = PIECE
) -> tuple[int, dict[str, object]]:
    """POST ``body`` in pieces, with its Content-Length or (``chunked``) without."""
    headers = {} if chunked else {"Content-Length": str(len(body))}
    async with session.post(url, data=_pieces(body, size), headers=headers) as response:
        return response.status, await response.json()


async def test_digest_of_bodies_from_empty_to_eight_mib(model: Model) -> None:
    for size in (0, 1, 65_537, 8 * MIB):
        body = BODY[:size]
        assert await _digest(model.session, model.url(DIGEST_PATH), body) == (200, _expected(body)), size


async def test_digest_of_a_chunked_body(model: Model) -> None:
    body = BODY[5 : 3 * MIB + 12]
    status, answer = await _digest(model.session, model.url(DIGEST_PATH), body, chunked=True, size=100_003)
    assert (status, answer) == (200, _expected(body))


async def test_digest_over_the_limit_is_413(model: Model) -> None:
    async def over() -> AsyncIterator[memoryview]:
        for _ in range(MAX_BODY_BYTES // len(BODY)):
            async for piece in _pieces(BODY):
                yield piece
        yield BODY[:1]

    async with model.session.post(model.url(DIGEST_PATH), data=over()) as response:
        assert response.status == 413
        assert "over" in (await response.json())["error"]["message"]


async def test_digest_is_503_while_loading(start_model: StartModel) -> None:
    model = await start_model(wait_loaded=False, load_seconds=30, loading="unavailable")
    status, answer = await _digest(model.session, model.url(DIGEST_PATH), BODY[:1])
    assert status == 503
    assert "loading" in str(answer)


async def test_digest_through_the_sidecar_is_byte_exact(model: Model, sidecar: Sidecar) -> None:
    session = model.session

    async def ready() -> bool:
        async with session.get(f"http://{LOOPBACK}:{sidecar.admin_port}/readyz") as response:
            return response.status == 200

    await eventually(ready)
    url = f"http://{LOOPBACK}:{sidecar.port}{DIGEST_PATH}"
    assert await _digest(session, url, BODY) == (200, _expected(BODY))
    assert await _digest(session, url, BODY, chunked=True) == (200, _expected(BODY))
    assert await _digest(session, url, BODY[:0]) == (200, _expected(BODY[:0]))
