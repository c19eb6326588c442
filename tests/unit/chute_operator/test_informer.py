"""The operator's informer: a listing, then a watch from its version, over a loopback API of this test's.

The real API server's side (a watch cut while an object is deleted, 410 Gone) is
tests/integration/test_watch_gap.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from chute_operator import informer as informer_module
from chute_operator.informer import Informer
from chute_operator.kube import KubeApi
from chute_operator.transport import ApiTransport

Watch = Callable[[web.Request], list[dict[str, Any]] | web.Response]


def _pod(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version, "uid": f"u-{name}"}}


class FakeApi:
    """Answers the pods' LIST from ``listings`` (one per call, the last one repeated) and each watch
    with the next of ``watches``: a list of events, streamed a line each, or a whole response."""

    def __init__(self, listings: list[tuple[list[dict[str, Any]], str]], watches: list[Watch]) -> None:
        self.listings, self.watches = listings, watches
        self.requests: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.query))
        if "watch" not in request.query:
            items, version = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
            return web.json_response({"metadata": {"resourceVersion": version}, "items": items})
        if not self.watches:
            await asyncio.sleep(3600)  # nothing more: a watch that stays open
        answer = self.watches.pop(0)(request)
        if isinstance(answer, web.Response):
            return answer
        response = web.StreamResponse()
        await response.prepare(request)
        for event in answer:
            line = json.dumps(event).encode() + b"\n"
            await response.write(line[:7])  # a line may arrive in pieces
            await response.write(line[7:])
        return response

    async def url(self) -> str:
        app = web.Application()
        app.router.add_route("GET", "/api/v1/namespaces/ns/pods", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)  # a watch left open ends at once
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}"


@pytest.fixture
async def running() -> AsyncIterator[Callable[[FakeApi], Any]]:
    """Start an informer of the pods in ns against a FakeApi; record what it hands over."""
    started: list[tuple[asyncio.Task[None], ApiTransport, FakeApi]] = []

    async def start(api: FakeApi) -> tuple[Informer, list[Any]]:
        transport = ApiTransport(await api.url(), None, None, 0)
        seen: list[Any] = []

        def listed(kind: str, namespace: str, objects: list[dict[str, Any]], version: str) -> None:
            seen.append(("listed", [obj["metadata"]["name"] for obj in objects], version))

        def observed(kind: str, event: str, obj: dict[str, Any]) -> None:
            seen.append((event, obj["metadata"]["name"], obj["kind"]))

        informer = Informer(
            KubeApi(None, "test", "test", "test", transport),  # type: ignore[arg-type]
            transport,
            "Pod",
            "ns",
            {"app": "x"},
            listed,
            observed,
            server_seconds=60,
            read_seconds=30,
        )
        started.append((asyncio.create_task(informer.run()), transport, api))
        return informer, seen

    yield start
    for task, transport, api in started:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await transport.close()
        if api.runner is not None:
            await api.runner.cleanup()


async def _until(check: Callable[[], bool], limit: float = 5.0) -> None:
    for _ in range(int(limit / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the limit")


async def test_a_listing_then_its_events_from_its_version_and_a_resumed_watch_from_the_last(
    running: Callable[[FakeApi], Any],
) -> None:
    api = FakeApi(
        [([_pod("a", "5")], "7")],
        [
            lambda _: [
                {"type": "ADDED", "object": _pod("b", "8")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
            ],
            lambda _: [{"type": "DELETED", "object": _pod("a", "10")}],
        ],
    )
    informer, seen = await running(api)
    await _until(lambda: len(seen) == 3)
    assert informer.synced.is_set()
    assert seen == [("listed", ["a"], "7"), ("ADDED", "b", "Pod"), ("DELETED", "a", "Pod")]
    watches = [query for query in api.requests if "watch" in query]
    assert [query["resourceVersion"] for query in watches[:2]] == ["7", "9"]  # the bookmark's
    assert watches[0]["labelSelector"] == "app=x"
    assert watches[0]["allowWatchBookmarks"] == "true"
    assert api.requests[0] == {"limit": "250", "labelSelector": "app=x"}


@pytest.mark.parametrize(
    "gone",
    [
        lambda _: [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}],
        lambda _: web.json_response({"kind": "Status", "code": 410, "reason": "Gone"}, status=410),
    ],
    ids=["an ERROR event", "an answer"],
)
async def test_a_watch_that_cannot_resume_is_replaced_by_a_new_listing(
    running: Callable[[FakeApi], Any], gone: Watch
) -> None:
    """The new listing is handed over whole: what it lacks was deleted in the gap."""
    api = FakeApi([([_pod("a", "5")], "7"), ([], "20")], [gone])
    informer, seen = await running(api)
    await _until(lambda: len(seen) == 2)
    assert seen == [("listed", ["a"], "7"), ("listed", [], "20")]
    assert informer.listings == 2
    await _until(lambda: api.requests[-1].get("resourceVersion") == "20")


async def test_a_failing_watch_is_retried_after_a_backoff_from_the_version_it_had(
    running: Callable[[FakeApi], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(informer_module, "BACKOFF_SECONDS", (0.01,))
    api = FakeApi(
        [([], "7")],
        [
            lambda _: web.json_response({"kind": "Status", "code": 500}, status=500),
            lambda _: [{"type": "MODIFIED", "object": _pod("a", "8")}],
        ],
    )
    informer, seen = await running(api)
    await _until(lambda: len(seen) == 2)
    assert seen == [("listed", [], "7"), ("MODIFIED", "a", "Pod")]
    assert [query["resourceVersion"] for query in api.requests if "watch" in query][:2] == ["7", "7"]
    assert informer.listings == 1


async def test_a_kind_not_served_lists_as_empty_and_is_listed_again_later(
    running: Callable[[FakeApi], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRD not installed yet: the sync does not wait for it, and its objects appear once it is."""
    monkeypatch.setattr(informer_module, "UNSERVED_SECONDS", 0.05)
    api = FakeApi([], [])

    async def not_served(request: web.Request) -> web.StreamResponse:
        return web.json_response({"kind": "Status", "code": 404}, status=404)

    api.handle = not_served  # type: ignore[method-assign]
    informer, seen = await running(api)
    await _until(lambda: len(seen) >= 2)
    assert seen[:2] == [("listed", [], ""), ("listed", [], "")]
    assert informer.synced.is_set()


async def test_a_watch_that_ends_at_once_without_an_event_is_backed_off_not_a_busy_loop(
    running: Callable[[FakeApi], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy or server that closes every watch at once: the informer waits between tries."""
    monkeypatch.setattr(informer_module, "BACKOFF_SECONDS", (0.1,))
    api = FakeApi([([], "7")], [lambda _: [] for _ in range(1000)])
    await running(api)
    await _until(lambda: len(api.requests) > 1)
    await asyncio.sleep(0.5)
    watches = [query for query in api.requests if "watch" in query]
    assert 2 <= len(watches) <= 8  # one try per 0.1 s, not hundreds


async def test_a_watch_that_cannot_resume_again_and_again_backs_off_its_listings(
    running: Callable[[FakeApi], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every watch answers 410 at once: the first new listing is at once, the next ones wait."""
    monkeypatch.setattr(informer_module, "BACKOFF_SECONDS", (0.1,))
    gone: Watch = lambda _: web.json_response({"kind": "Status", "code": 410}, status=410)  # noqa: E731
    api = FakeApi([([], "7")], [gone] * 1000)
    informer, _ = await running(api)
    await asyncio.sleep(0.5)
    assert 2 <= informer.listings <= 8  # not one per round trip


@pytest.mark.parametrize(
    "failing",
    [
        lambda _: [{"type": "ERROR", "object": {"kind": "Status", "code": 504, "reason": "Timeout"}}],
        lambda _: web.Response(body=b"{not json\n", content_type="application/json"),
    ],
    ids=["an error the version cannot get past", "an event that cannot be read"],
)
async def test_a_watch_failing_at_the_same_version_is_replaced_by_a_new_listing(
    running: Callable[[FakeApi], Any], monkeypatch: pytest.MonkeyPatch, failing: Watch
) -> None:
    """Too large a resource version (an etcd restore), or a line that cannot be read: the informer
    does not retry the same version forever, it lists again after a few failures and goes on."""
    monkeypatch.setattr(informer_module, "BACKOFF_SECONDS", (0.01,))
    after = [{"type": "MODIFIED", "object": _pod("a", "30")}]
    api = FakeApi([([], "7"), ([_pod("a", "20")], "25")], [failing, failing, failing, lambda _: after])
    informer, seen = await running(api)
    await _until(lambda: len(seen) == 3)
    assert seen == [("listed", [], "7"), ("listed", ["a"], "25"), ("MODIFIED", "a", "Pod")]
    assert informer.listings == 2


async def test_a_kind_that_was_served_is_forgotten_only_when_read_as_not_served_twice(
    running: Callable[[FakeApi], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404 from an API server that has just started (a CRD's kind not served yet) must not empty
    the store of every Chute; a second one in a row does."""
    monkeypatch.setattr(informer_module, "UNSERVED_SECONDS", 0.05)
    monkeypatch.setattr(informer_module, "BACKOFF_SECONDS", (0.01,))
    answers = [
        web.json_response({"metadata": {"resourceVersion": "7"}, "items": [_pod("a", "5")]}),
        web.json_response({"kind": "Status", "code": 410}, status=410),  # the watch: list again
        web.json_response({"kind": "Status", "code": 404}, status=404),
        web.json_response({"metadata": {"resourceVersion": "9"}, "items": [_pod("a", "5")]}),
        web.json_response({"kind": "Status", "code": 410}, status=410),
        web.json_response({"kind": "Status", "code": 404}, status=404),
        web.json_response({"kind": "Status", "code": 404}, status=404),
    ]

    async def answer(request: web.Request) -> web.StreamResponse:
        if answers:
            return answers.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError

    api = FakeApi([], [])
    api.handle = answer  # type: ignore[method-assign]
    _, seen = await running(api)
    await _until(lambda: not answers)
    await asyncio.sleep(0.1)
    assert seen == [("listed", ["a"], "7"), ("listed", ["a"], "9"), ("listed", [], "")]


async def test_an_event_the_controller_cannot_take_is_logged_and_the_watch_goes_on(
    running: Callable[[FakeApi], Any],
) -> None:
    api = FakeApi(
        [([], "7")],
        [lambda _: [{"type": "ADDED", "object": _pod(name, str(8 + i))} for i, name in enumerate("xbc")]],
    )
    informer, seen = await running(api)
    taken = informer._observed

    def observed(kind: str, event: str, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] == "x":
            raise ValueError("a bug of the controller's")
        taken(kind, event, obj)

    informer._observed = observed
    await _until(lambda: len(seen) == 3)
    assert seen[1:] == [("ADDED", "b", "Pod"), ("ADDED", "c", "Pod")]


class Scripted:
    """A KubeApi of scripted listings and watches, without sockets: each watch is a list of events
    ending in an exception or not; sleeps are recorded, not slept."""

    def __init__(self, watches: list[tuple[list[dict[str, Any]], Exception | None]]) -> None:
        self.watches, self.lists = watches, 0

    async def listing(
        self, kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[Any], str]:
        self.lists += 1
        return [], "100"

    async def watch(self, *args: Any) -> AsyncIterator[dict[str, Any]]:
        if not self.watches:
            raise asyncio.CancelledError
        events, ending = self.watches.pop(0)
        for event in events:
            yield event
        if ending is not None:
            raise ending


async def _scripted(
    monkeypatch: pytest.MonkeyPatch, watches: list[tuple[list[dict[str, Any]], Exception | None]]
) -> tuple[Scripted, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(informer_module.asyncio, "sleep", sleep)
    api = Scripted(watches)
    informer = Informer(api, None, "Pod", "ns", None, lambda *_: None, lambda *_: None)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await informer.run()
    return api, slept


def _events(first: int, count: int) -> list[dict[str, Any]]:
    return [{"type": "MODIFIED", "object": _pod("a", str(first + i))} for i in range(count)]


async def test_watches_that_deliver_then_break_are_resumed_without_a_growing_backoff_or_listings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy that cuts every stream after a while: each watch made progress, so each cut is the
    first failure, not one more in a run of them."""
    watches = [(_events(101 + 10 * i, 5), ConnectionError("reset")) for i in range(8)]
    api, slept = await _scripted(monkeypatch, watches)
    assert api.lists == 1
    assert len(slept) == 8
    assert max(slept) < 1.0  # the first backoff each time (with its jitter)


async def test_a_watch_refused_again_and_again_is_backed_off_not_listed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Role that grants list but not watch, or APF throttling: the refusal is not the version's
    fault, so the informer does not list again (a LIST is the costlier call); a 429's Retry-After
    is honoured."""
    from chute_operator.kube import ApiFailure

    refused = [([], ApiFailure("forbidden", 403)) for _ in range(6)]
    throttled = [([], ApiFailure("throttled", 429, retry_after=20.0))]
    api, slept = await _scripted(monkeypatch, refused + throttled)
    assert api.lists == 1
    assert slept[-1] >= 20.0


async def test_a_watch_that_ends_at_once_after_a_bookmark_at_its_version_is_backed_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "100"}}}
    _, slept = await _scripted(monkeypatch, [([bookmark], None)] * 20)
    assert len(slept) >= 19  # each one waits


async def test_blank_lines_ending_in_crlf_are_not_events(running: Callable[[FakeApi], Any]) -> None:
    def crlf(request: web.Request) -> web.Response:
        lines = [json.dumps({"type": "ADDED", "object": _pod(name, "8")}) for name in "ab"]
        return web.Response(body="\r\n\r\n".join(lines).encode() + b"\r\n")

    api = FakeApi([([], "7")], [crlf])
    _, seen = await running(api)
    await _until(lambda: len(seen) == 3)
    assert seen[1:] == [("ADDED", "a", "Pod"), ("ADDED", "b", "Pod")]
