"""A loopback stand-in for the few Kubernetes API calls the activator makes (list, watch, patch a Chute).

Only for what a real API server cannot be made to do on demand (answer errors at start) or would
cost a control plane for nothing (feeding one Chute at zero to an activator process).
"""

from __future__ import annotations

import asyncio
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
    port: int = 0
    runner: web.AppRunner | None = None

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
            response = web.StreamResponse()
            await response.prepare(request)
            await asyncio.sleep(3600)  # a watch with nothing to say
            return response
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
        items = self.chutes if "/chutes.ai/" in request.path else []
        items = self.pods if request.path.endswith("/pods") else items
        items = self.services if request.path.endswith("/services") else items
        items = self.slices if request.path.endswith("/endpointslices") else items
        return web.json_response({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items})

    async def _patch(self, request: web.Request) -> web.Response:
        self.patches.append(request.path)
        name = request.path.rsplit("/", 1)[-1]
        found = next((c for c in self.chutes if c["metadata"]["name"] == name), None)
        return web.json_response(found or {}, status=200 if found else 404)
