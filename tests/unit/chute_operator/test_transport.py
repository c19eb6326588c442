"""The operator's HTTP transport: lightkube's credentials, renewed when the API server refuses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from lightkube.config.client_adapter import BearerAuth, BearerTokenFileAuth

from chute_operator.transport import ApiTransport, TooLarge, Unanswered, proxy_for


async def _server(accepted: list[str]) -> tuple[web.AppRunner, str, list[str]]:
    """A loopback server that answers 200 to a bearer token in ``accepted``, 401 otherwise."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")
        seen.append(f"{request.method} {request.path_qs} {token} {await request.text()}")
        if token.removeprefix("Bearer ") not in accepted:
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", seen


async def test_a_rotated_token_file_is_read_again_when_the_old_token_is_refused(tmp_path: Path) -> None:
    """As the kubelet rotates a service account token: the old one is refused, the file has the new."""
    token = tmp_path / "token"
    token.write_text("first\n")
    accepted = ["first"]
    runner, url, seen = await _server(accepted)
    transport = ApiTransport(url, None, BearerTokenFileAuth(str(token)))
    try:
        answer = await transport.request("PATCH", "/x", {"a": "1"}, b"{}", "application/merge-patch+json")
        assert (answer.status, answer.body) == (200, b'{"ok": true}')
        token.write_text("second\n")
        accepted[:] = ["second"]
        assert (await transport.request("GET", "/y")).status == 200
        assert (await transport.request("GET", "/z")).status == 200
    finally:
        await transport.close()
        await runner.cleanup()
    assert seen == [
        "PATCH /x?a=1 Bearer first {}",
        "GET /y Bearer first ",  # refused: the file is read again, the request sent again
        "GET /y Bearer second ",
        "GET /z Bearer second ",  # and the new token kept
    ]


async def test_a_refusal_with_a_fixed_token_is_the_answer() -> None:
    runner, url, seen = await _server([])
    transport = ApiTransport(url, None, BearerAuth("wrong"))
    try:
        assert (await transport.request("GET", "/x")).status == 401
    finally:
        await transport.close()
        await runner.cleanup()
    assert len(seen) == 2  # asked once more with what the auth gives after a refusal (the same)


async def test_no_answer_is_a_connection_error() -> None:
    runner, url, _ = await _server([])
    await runner.cleanup()  # nothing listens there any more
    transport = ApiTransport(url, None, None)
    try:
        with pytest.raises(Unanswered) as caught:
            await transport.request("GET", "/x")
    finally:
        await transport.close()
    assert isinstance(caught.value, OSError)  # what the reconciler retries


async def test_an_api_server_behind_a_path_prefix_is_reached_there() -> None:
    """Rancher and other proxies serve a cluster's API under a path (a kubeconfig's server URL)."""
    runner, url, seen = await _server(["t"])
    transport = ApiTransport(f"{url}/k8s/clusters/c-1/", None, BearerAuth("t"))
    try:
        assert (await transport.request("GET", "/api/v1/pods", {"limit": "1"})).status == 200
    finally:
        await transport.close()
        await runner.cleanup()
    assert seen == ["GET /k8s/clusters/c-1/api/v1/pods?limit=1 Bearer t "]


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_longer_than_max_bytes_is_not_read_to_its_end(chunked: bool) -> None:
    """With a Content-Length it is refused at once; streamed without one, once it passes the limit."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=b"x" * 5000)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(5):
            await response.write(b"x" * 1000)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/big", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    transport = ApiTransport(f"http://127.0.0.1:{runner.addresses[0][1]}", None, None)
    try:
        assert len((await transport.request("GET", "/big", max_bytes=5000)).body) == 5000
        with pytest.raises(TooLarge):
            await transport.request("GET", "/big", max_bytes=4999)
    finally:
        await transport.close()
        await runner.cleanup()


async def test_a_redirect_is_the_answer_never_followed() -> None:
    """As lightkube (httpx) does: a 3xx is handed back, the token never sent to where it points (found
    by the breaking pass of issue 26: an adapter behind the aggregator could point it anywhere)."""
    seen: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        seen.append(f"{request.path} {request.headers.get('Authorization')}")
        raise web.HTTPFound("/api/v1/namespaces/kube-system/secrets")

    app = web.Application()
    app.router.add_get("/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    transport = ApiTransport(f"http://127.0.0.1:{runner.addresses[0][1]}", None, BearerAuth("t"))
    try:
        answer = await transport.request("GET", "/apis/x")
    finally:
        await transport.close()
        await runner.cleanup()
    assert answer.status == 302
    assert answer.headers["Location"] == "/api/v1/namespaces/kube-system/secrets"
    assert seen == ["/apis/x Bearer t"]


def test_the_proxy_is_the_environments_unless_no_proxy_exempts_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://10.0.0.1:6443") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    assert proxy_for("https://api.example.com:6443") == "http://proxy.corp:3128"
    assert proxy_for("http://api.example.com") is None  # HTTPS_PROXY is for https only
    monkeypatch.setenv("NO_PROXY", "10.0.0.1,.cluster.local")
    assert proxy_for("https://10.0.0.1:6443") is None
    assert proxy_for("https://kubernetes.default.svc.cluster.local") is None
    assert proxy_for("https://api.example.com:6443") == "http://proxy.corp:3128"


async def test_a_streamed_line_longer_than_allowed_is_refused_whether_it_arrives_whole_or_in_pieces() -> None:
    from aiohttp import web as aioweb

    async def stream(request: aioweb.Request) -> aioweb.StreamResponse:
        response = aioweb.StreamResponse()
        await response.prepare(request)
        if request.query.get("whole"):
            await response.write(b'{"a":1}\n' + b"x" * 2000 + b"\n")
        else:
            for _ in range(20):
                await response.write(b"y" * 100)
        return response

    app = aioweb.Application()
    app.router.add_get("/s", stream)
    runner = aioweb.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await aioweb.TCPSite(runner, "127.0.0.1", 0).start()
    transport = ApiTransport(f"http://127.0.0.1:{runner.addresses[0][1]}", None, None, 0)
    try:
        for query in ({"whole": "1"}, {}):
            lines: list[bytes] = []

            async def read(query: dict[str, str] = query, lines: list[bytes] = lines) -> None:
                async for line in transport.lines("/s", query, 10, 1000):
                    lines.append(line)

            with pytest.raises(TooLarge):
                await read()
            assert lines == ([b'{"a":1}'] if query else [])
    finally:
        await transport.close()
        await runner.cleanup()
