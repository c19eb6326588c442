"""Forward a held request to a ready replica and stream its response back as it arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from chute_shared.headers import EXPECT, FORWARDED_FOR, HOP_BY_HOP


def origin_form(target: str) -> bool:
    """Whether a request target is a path (``/v1/chat/completions?x=1``): the only form forwarded.
    CONNECT's ``host:port``, an absolute URL and ``*`` name a destination, which is never the client's
    to choose."""
    return target.startswith("/")


def upstream_url(endpoint: str, target: str) -> URL:
    """The replica's URL for an origin-form ``target``: the host and port are the replica's, built as
    parts (never by pasting the client's text after ``http://host:port``, where ``@other:port`` would
    make the replica's address a user name and send the request to ``other``)."""
    base = URL(f"http://{endpoint}")
    path, _, query = target.partition("?")
    return URL.build(
        scheme=base.scheme, authority=base.raw_authority, path=path, query_string=query, encoded=True
    )


NOT_FORWARDED = frozenset(h.lower() for h in (*HOP_BY_HOP, "Host", "Content-Length", EXPECT))
"""Hop-by-hop headers, those aiohttp sets itself (Host is set again for the replica), and Expect
(answered here: the replica gets the whole body at once)."""


UPLOAD_PIECE = 256 * 1024
"""A held body goes to the replica in pieces of this size, each written once the socket took the last:
written at once, the part the socket cannot take would be copied into the transport's buffer, and
every body held would be in memory twice while it is forwarded."""


async def _pieces(body: bytes | bytearray) -> AsyncIterator[memoryview]:
    view = memoryview(body)
    for start in range(0, len(view), UPLOAD_PIECE):
        yield view[start : start + UPLOAD_PIECE]


class ConnectFailed(Exception):
    """The replica could not be reached; nothing was sent, another replica may be tried."""


class ReplicaDisconnected(Exception):
    """The replica closed the connection before answering; nothing was sent to the client yet, but
    the replica may have read the whole request: only an idempotent one may be tried elsewhere."""


class ReplicaBadAnswer(Exception):
    """The replica answered something that is not a valid HTTP answer; it may have acted on the
    request, so it is not sent elsewhere."""


class ReplicaTimeout(Exception):
    """The replica did not answer within the request timeout; it may still be working on the request,
    so it is not sent elsewhere."""


def _request_headers(request: web.BaseRequest) -> CIMultiDict[str]:
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED)
    headers["Host"] = request.headers.get("Host", "")
    forwarded_for = request.headers.get(FORWARDED_FOR)
    peer = request.remote or ""
    headers[FORWARDED_FOR] = f"{forwarded_for}, {peer}" if forwarded_for else peer
    return headers


async def forward(
    session: aiohttp.ClientSession,
    request: web.BaseRequest,
    body: bytes | bytearray,
    endpoint: str,
    *,
    timeout: float,  # noqa: ASYNC109 (aiohttp's own total timeout for the upstream request)
    on_answer: Callable[[], None] = lambda: None,
    close: bool = False,
) -> web.StreamResponse:
    """Send ``request`` (its ``body`` already read) to ``http://endpoint`` and stream the answer back.

    ``on_answer`` is called once the replica has answered (status and headers), before its body is
    streamed: the request is forwarded even when its client leaves before the stream's end (an
    OpenAI client stops reading at ``data: [DONE]``); the streaming then stops quietly. ``close``:
    the answer closes the client's connection (the activator drains: its next request opens a new
    one, which kube-proxy sends elsewhere)."""
    url = upstream_url(endpoint, request.raw_path)
    headers = _request_headers(request)
    if body:
        headers["Content-Length"] = str(len(body))  # the whole body, held: never chunked to the replica
    try:
        upstream = await session.request(
            request.method,
            url,
            headers=headers,
            data=_pieces(body) if body else None,
            allow_redirects=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=timeout, connect=2.0),
        )
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:  # nothing sent
        raise ConnectFailed(str(error) or type(error).__name__) from error
    except TimeoutError as error:  # no status line within ``timeout`` (the connection was made)
        raise ReplicaTimeout(f"no answer within {timeout:g}s") from error
    except aiohttp.ClientConnectionError as error:  # closed or reset before the status line
        raise ReplicaDisconnected(str(error) or type(error).__name__) from error
    except aiohttp.ClientError as error:  # an answer that is not HTTP (bad status line, headers)
        raise ReplicaBadAnswer(str(error) or type(error).__name__) from error
    del body  # answered: the caller drops its copy too (on_answer), the answer may stream long
    async with upstream:
        on_answer()
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        if close:
            response.force_close()
        for name, value in upstream.headers.items():
            if name.lower() not in NOT_FORWARDED:
                response.headers.add(name, value)
        if upstream.headers.get("Content-Length") is not None and "chunked" not in upstream.headers.get(
            "Transfer-Encoding", ""
        ):
            response.content_length = int(upstream.headers["Content-Length"])
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:  # the client is gone: nobody is left to answer
            pass
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
            # the replica broke off its answer (or ran past ``timeout``): the status is sent, so the
            # client sees a cut answer
            if request.transport is not None:
                request.transport.close()
        return response
