"""HTTP to the API server for the operator's own calls: aiohttp, with lightkube's connection settings.

lightkube (over httpx) cost 0.84-1.50 ms of the operator's CPU per call, this transport 0.22-0.81 ms
(benchmarks/results/api-client.json); the reconcile workers' API calls were 36% of the operator's CPU at 1000
Chutes (a py-spy profile, docs/benchmarks/operator.md). The TLS settings (the cluster's CA, a
client certificate) and the credentials (a token, a token file re-read when refused, an exec
plugin) are lightkube's, taken from its client: one kubeconfig or in-cluster configuration for both.
Redirects are not followed (neither does lightkube's httpx): the API server never asks for it, and
whatever answers through it (an aggregated API) must not steer the operator's token elsewhere.
"""

from __future__ import annotations

import contextlib
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx2 as httpx
from lightkube.config.client_adapter import verify_cluster

TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=10)
"""As lightkube's default (10 s to connect, and between two reads of an answer)."""
CONNECTIONS = 32
"""Connections kept open to the API server (the reconcile workers share them)."""


def proxy_for(server: str) -> str | None:
    """The proxy for ``server`` from HTTPS_PROXY / HTTP_PROXY unless NO_PROXY exempts it, as lightkube
    (httpx) and kubectl choose it. Read once: aiohttp's own ``trust_env`` reads the environment (and
    ~/.netrc) on every request, which took the transport's CPU per call up to lightkube's (the
    benchmark in this module's docstring)."""
    url = urllib.parse.urlsplit(server)
    if urllib.request.proxy_bypass(url.hostname or ""):
        return None
    return urllib.request.getproxies().get(url.scheme)


class Unanswered(ConnectionError):
    """No answer from the API server (refused, reset, timed out)."""


class TooLarge(Unanswered):
    """An answer longer than the request allowed (``max_bytes``), not read to its end."""


class Refused(Exception):
    """A streamed request answered with an error status (its whole answer, read)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(f"HTTP {answer.status}")
        self.answer = answer


@dataclass(frozen=True)
class Answer:
    """An API server's answer: its status, headers and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class ApiTransport:
    """Requests to one API server; the session is opened on first use, in the running event loop."""

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext | None,
        auth: httpx.Auth | None,
        connections: int = CONNECTIONS,
    ) -> None:
        """``connections``: at most this many open at once (0: no limit; the watches', each held open)."""
        self.server = server.rstrip("/")
        self._ssl = ssl_context
        self._auth = auth
        self._authorization: dict[str, str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._proxy = proxy_for(self.server)
        self._connections = connections

    @classmethod
    def of(cls, client: Any, connections: int = CONNECTIONS) -> ApiTransport:
        """The transport to the API server of a lightkube ``AsyncClient``, with its TLS and credentials."""
        config = client._client.config
        context = (
            verify_cluster(config.cluster, config.user, config.abs_file)
            if config.cluster.server.startswith("https")
            else None
        )
        return cls(config.cluster.server, context, client._client._client.auth, connections)

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        max_bytes: int | None = None,
    ) -> Answer:
        """Send one request; a refusal of the credentials (401) renews them once and sends it again.
        An answer longer than ``max_bytes`` raises :class:`TooLarge`."""
        headers = {
            "Accept": "application/json",
            **({"Content-Type": content_type} if body is not None else {}),
        }
        credentials = await self._credentials()
        answer = await self._send(method, path, params, body, {**headers, **credentials}, max_bytes)
        if answer.status == 401 and self._auth is not None:
            renewed = await self._credentials(refused=True)
            answer = await self._send(method, path, params, body, {**headers, **renewed}, max_bytes)
        return answer

    async def lines(
        self, path: str, params: Mapping[str, str], read_seconds: float, max_line: int
    ) -> AsyncIterator[bytes]:
        """GET ``path`` and yield its answer line by line as it arrives (a watch), without the line
        ends; nothing is awaited for longer than ``read_seconds``. An error answer raises
        :class:`Refused` (after a 401, with the credentials renewed for the next call), a line longer
        than ``max_line`` bytes :class:`TooLarge`, a broken or silent connection :class:`Unanswered`."""
        headers = {"Accept": "application/json", **(await self._credentials())}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT.sock_connect, sock_read=read_seconds)
        try:
            async with self._opened().get(
                self.server + path,
                params=params,
                headers=headers,
                proxy=self._proxy,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                if response.status >= 300:
                    answer = Answer(response.status, response.headers, await _read(response, 1 << 20))
                    if answer.status == 401 and self._auth is not None:
                        await self._credentials(refused=True)
                    raise Refused(answer)
                pending = bytearray()
                async for chunk in response.content.iter_any():
                    searched = len(pending)  # no line end before here: search only the new bytes
                    pending += chunk
                    start, end = 0, pending.find(b"\n", searched)
                    while end >= 0:
                        if end - start > max_line:
                            raise TooLarge(f"a line of the answer to {path} longer than {max_line} bytes")
                        if end > start:
                            yield bytes(pending[start:end])
                        start, end = end + 1, pending.find(b"\n", end + 1)
                    del pending[:start]
                    if len(pending) > max_line:
                        raise TooLarge(f"a line of the answer to {path} longer than {max_line} bytes")
                if pending:
                    yield bytes(pending)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise Unanswered(f"GET {path}: {error or type(error).__name__}") from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl if self._ssl is not None else False, limit=self._connections
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)
        return self._session

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: dict[str, str],
        max_bytes: int | None = None,
    ) -> Answer:
        url = self.server + path  # the server's URL may have a path (an API behind a proxy)
        try:
            async with self._opened().request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                proxy=self._proxy,
                allow_redirects=False,  # a 3xx is the answer (as lightkube's): never the token elsewhere
            ) as response:
                return Answer(response.status, response.headers, await _read(response, max_bytes))
        except (aiohttp.ClientError, TimeoutError) as error:
            raise Unanswered(f"{method} {path}: {error or type(error).__name__}") from error

    async def _credentials(self, refused: bool = False) -> dict[str, str]:
        """The Authorization header lightkube's auth gives (none for a client certificate); after a
        401 (``refused``), the one it gives when told of the refusal (a token file read again, an
        exec plugin run again)."""
        if self._auth is None:
            return {}
        if self._authorization is not None and not refused:
            return self._authorization
        flow = self._auth.async_auth_flow(httpx.Request("GET", self.server))
        request = await flow.__anext__()
        if refused:
            with contextlib.suppress(StopAsyncIteration):
                request = await flow.asend(httpx.Response(401, request=request))
        await flow.aclose()
        self._authorization = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        return self._authorization


async def _read(response: aiohttp.ClientResponse, max_bytes: int | None) -> bytes:
    """The whole body, or :class:`TooLarge` once it passes ``max_bytes``."""
    if max_bytes is None:
        return await response.read()
    if (response.content_length or 0) > max_bytes:
        raise TooLarge(f"answer of {response.content_length} bytes, more than {max_bytes}")
    body = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(f"answer longer than {max_bytes} bytes")
    return bytes(body)
