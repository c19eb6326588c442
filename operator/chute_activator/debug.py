"""The activator's debug listener: ``/_chutes``, what it knows of every Chute (its endpoints, why it
cannot wake, its latest wake). Bound to loopback by default (``--debug-host``): never on a port the
activator's Service publishes, since the listing names every Chute and its pods' addresses."""

from __future__ import annotations

import json

from aiohttp import web

from chute_activator.holding import Holder

CHUTES_PATH = "/_chutes"
"""What the activator knows of each Chute (``kubectl exec`` or a port-forward to the pod reads it)."""


def debug_app(holder: Holder) -> web.Application:
    async def chutes(_: web.Request) -> web.Response:
        view = {
            "/".join(k): {
                "port": s.port,
                "endpoints": list(s.endpoints),
                "source": s.source,
                "cannot_wake": s.cannot_wake,
                "last_wake": holder.timeline(k),
            }
            for k, s in holder.known().items()
        }
        return web.Response(text=json.dumps(view), content_type="application/json")

    app = web.Application()
    app.router.add_get(CHUTES_PATH, chutes)
    return app
