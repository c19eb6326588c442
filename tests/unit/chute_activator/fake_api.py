"""A loopback stand-in for the few Kubernetes API calls the activator makes (list, watch, patch a Chute).

Only for what a real API server cannot be made to do on demand (answer errors at start) or would
cost a control plane for nothing (feeding one Chute at zero to an activator process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

LOOPBACK = "127.0.0.1"


def chute(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": "1"},
        "spec": {},
    }


@dataclass
class FakeApi:
    chutes: list[dict[str, Any]]
    pods: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    slices: list[dict[str, Any]] = field(default_factory=list)
    failures_before_lists: int = 0
    """The first this many list calls answer 503 'storage is (re)initializing'."""
    list_calls: int = 0
    patches: list[str] = field(default_factory=list)
    version: int = 10
    """The resourceVersion every listing answers with."""
    watch_versions: list[str | None] = field(default_factory=list)
    """The resourceVersion each watch asked to start from (None: from now, after every object as ADDED)."""
    port: int = 0
    runner: web.AppRunner | None = None
    _cut: asyncio.Event = field(default_factory=asyncio.Event)

    def cut_watches(self) -> None:
        """End every open watch with an error (410 Gone, as after an API server restart): what changed
        meanwhile (the lists above) is never sent as events."""
        cut, self._cut = self._cut, asyncio.Event()
        cut.set()

    def _items(self, path: str) -> list[dict[str, Any]]:
        if "/chutes.ai/" in path:
            return self.chutes
        if path.endswith("/endpointslices"):
            return self.slices
        return {"pods": self.pods, "services": self.services}.get(path.rsplit("/", 1)[-1], [])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def kubeconfig(self) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._get)
        app.router.add_route("PATCH", "/{tail:.*}", self._patch)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, LOOPBACK, 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request)
        self.list_calls += 1
        if self.list_calls <= self.failures_before_lists:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": "storage is (re)initializing",
                "reason": "ServiceUnavailable",
                "code": 503,
            }
            return web.json_response(status, status=503)
        meta = {"resourceVersion": str(self.version)}
        items = self._items(request.path)
        return web.json_response({"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items})

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        """Every object as ADDED when no resourceVersion is asked (as the API server does), then
        nothing until :meth:`cut_watches` (or an hour)."""
        since = request.query.get("resourceVersion")
        self.watch_versions.append(since)
        cut = self._cut
        response = web.StreamResponse()
        await response.prepare(request)
        if not since:
            for item in self._items(request.path):
                await response.write(json.dumps({"type": "ADDED", "object": item}).encode() + b"\n")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cut.wait(), 3600)
        gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
                "message": "too old resource version", "code": 410}  # fmt: skip
        await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
        return response

    async def _patch(self, request: web.Request) -> web.Response:
        self.patches.append(request.path)
        name = request.path.rsplit("/", 1)[-1]
        found = next((c for c in self.chutes if c["metadata"]["name"] == name), None)
        return web.json_response(found or {}, status=200 if found else 404)
