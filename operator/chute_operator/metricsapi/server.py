"""The HTTP side of the custom metrics API (aiohttp): routes, authentication, authorization, TLS.

Thin: answers come from :mod:`query` and :mod:`responses`, identities from :mod:`auth`.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from chute_operator.metricsapi import forwarding, responses
from chute_operator.metricsapi.auth import (
    Access,
    Authorizer,
    FrontProxyConfig,
    Unauthenticated,
    User,
    authenticate,
)
from chute_operator.metricsapi.query import Answer, PodQuery, answer_pods, serves
from chute_operator.metricsapi.samples import PodKey, Samples

log = logging.getLogger(__name__)

PREFIX = f"/apis/{responses.GROUP}/{responses.VERSION}"
PodsIn = Callable[[str, str], Iterable[Mapping[str, Any]]]
"""(namespace, label selector) -> candidate pods (a superset is fine: the selector is applied again)."""
Forward = Callable[[str, Mapping[str, str]], Awaitable[Answer | None]]
"""(path after the version, query) -> another adapter's answer, or None when none serves it
(:class:`forwarder.Forwarder`)."""
Refresh = Callable[[list[Mapping[str, Any]]], Awaitable[None]]
"""Called with the candidate pods before a pod metric is answered from the samples: a replica that
does not read them every round reads them now (:mod:`demand`)."""


@dataclass
class Security:
    """Who may call: front-proxy identities (config read from the cluster) checked by ``authorizer``."""

    front_proxy: Callable[[], FrontProxyConfig | None]
    authorizer: Authorizer


def _json(status: int, document: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(document, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def _has_values(answer: Answer) -> bool:
    """A 200 MetricValueList with items (an empty one, or a refusal, leaves the operator's 404 and
    its reasons in place for a metric it serves)."""
    return answer.status == 200 and bool(answer.body.get("items"))


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


NOT_SYNCED = responses.status(
    503, "ServiceUnavailable", "the operator's caches are not synced yet (it has just started): ask again"
)


def metrics_api_app(
    pods_in: PodsIn,
    samples: Samples,
    reasons: Callable[[], Mapping[PodKey, str]],
    window_seconds: int,
    security: Security | None,
    forward: Forward | None = None,
    refresh: Refresh | None = None,
    *,
    ready: Callable[[], bool] | None = None,
) -> web.Application:
    """The application. ``security=None`` serves without authentication (tests on loopback only).
    With ``forward``, what the operator does not serve (:func:`query.serves`) is asked of the other
    adapter first; for the metrics it serves, only an answer with values is taken from there.
    Until ``ready()`` (the operator's caches synced) a Chute metric is answered 503: an empty store
    would say "no pod matches" of pods that exist."""

    async def identify(request: web.Request) -> User | web.Response:
        if security is None:
            return User("anonymous-test-client")
        config = security.front_proxy()
        if config is None:
            return _json(401, responses.unauthorized("front-proxy authentication is not configured yet"))
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        try:
            return authenticate(peercert, request.headers, config)
        except Unauthenticated as error:
            return _json(401, responses.unauthorized(str(error)))

    async def authorize(request: web.Request, access: Access | None) -> web.Response | None:
        user = await identify(request)
        if isinstance(user, web.Response):
            return user
        if security is None or access is None:
            return None  # discovery: any authenticated user (as system:discovery allows)
        try:
            decision = await security.authorizer.decide(user, access)
        except Exception as error:
            log.warning("SubjectAccessReview failed: %s", error)
            return _json(500, responses.status(500, "InternalError", "authorization check failed"))
        if not decision.allowed:
            return _json(403, responses.forbidden(user.name, access.verb, request.path, decision.reason))
        return None

    async def discovery(request: web.Request) -> web.Response:
        refused = await authorize(request, None)
        if refused is not None:
            return refused
        path = request.path.rstrip("/")
        if path == "/apis":
            return _json(200, responses.group_list())
        if path == f"/apis/{responses.GROUP}":
            return _json(200, responses.group())
        return _json(200, responses.resource_list())

    def access_to(path: forwarding.MetricPath) -> Access:
        """What the kube-apiserver authorized (its RequestInfo): a GET that names an object, ``*``
        too, is verb get; one that names none (``namespaces/NS/METRIC``) is list."""
        return Access(
            verb="get" if path.name else "list",
            namespace=path.namespace,
            resource=path.resource,
            subresource=path.subresource,
            name=path.name,
            group=responses.GROUP,
            version=responses.VERSION,
        )

    async def pod_metric(request: web.Request) -> web.Response:
        info = request.match_info
        query = PodQuery(
            namespace=info["namespace"],
            name=info["name"],
            metric=info["metric"],
            label_selector=request.query.get("labelSelector", ""),
            metric_label_selector=request.query.get("metricLabelSelector", ""),
        )
        access = access_to(forwarding.MetricPath(query.namespace, "pods", query.name, query.metric))
        refused = await authorize(request, access)
        if refused is not None:
            return refused
        if ready is not None and query.metric in responses.METRICS and not ready():
            return _json(503, NOT_SYNCED, {"Retry-After": "1"})
        pods = list(pods_in(query.namespace, query.label_selector))
        if forward is not None and not serves(query, pods):
            tail = f"namespaces/{query.namespace}/pods/{query.name}/{query.metric}"
            forwarded = await forward(tail, request.query)
            if forwarded is not None and (query.metric not in responses.METRICS or _has_values(forwarded)):
                return _json(forwarded.status, forwarded.body, forwarded.headers)
        if refresh is not None:
            await refresh(pods)
        answer = answer_pods(query, pods, samples, reasons(), time.monotonic(), window_seconds)
        return _json(answer.status, answer.body)

    async def other_metric(request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        path = forwarding.parse_path(tail)
        if forward is not None and path is not None:
            refused = await authorize(request, access_to(path))
            if refused is not None:
                return refused
            forwarded = await forward(tail, request.query)
            if forwarded is not None:
                return _json(forwarded.status, forwarded.body, forwarded.headers)
        else:
            user = await identify(request)
            if isinstance(user, web.Response):
                return user
        parts = tail.strip("/").split("/")
        if parts[:1] == ["namespaces"]:
            parts = parts[2:]
        resource = parts[0] if parts else ""
        metric = parts[-1] if len(parts) > 1 else ""
        return _json(404, responses.metric_not_found(resource or "?", metric or "?"))

    async def unknown(request: web.Request) -> web.Response:
        return _json(404, responses.not_found(request.path))

    async def openapi_v2(request: web.Request) -> web.Response:
        return _json(200, responses.OPENAPI_V2)

    async def openapi_v3(request: web.Request) -> web.Response:
        return _json(200, responses.OPENAPI_V3_DISCOVERY)

    app = web.Application()
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, _ok)
    app.router.add_get("/openapi/v2", openapi_v2)
    app.router.add_get("/openapi/v3", openapi_v3)
    for path in ("/apis", f"/apis/{responses.GROUP}", PREFIX):
        app.router.add_get(path, discovery)
        app.router.add_get(path + "/", discovery)
    app.router.add_get(PREFIX + "/namespaces/{namespace}/pods/{name}/{metric}", pod_metric)
    app.router.add_get(PREFIX + "/{tail:.+}", other_metric)
    app.router.add_route("*", "/{tail:.*}", unknown)
    return app


@dataclass
class ServingCertificate:
    """The serving certificate files, loaded into the context again whenever they change (a renewal
    by cert-manager, a replaced Secret): new connections get the new certificate, open ones keep theirs."""

    context: ssl.SSLContext
    cert_file: str
    key_file: str
    _stamp: tuple[int, int] | None = None

    def refresh(self) -> bool:
        """Load the files if they changed since the last load; True when loaded."""
        stamp = (os.stat(self.cert_file).st_mtime_ns, os.stat(self.key_file).st_mtime_ns)
        if stamp == self._stamp:
            return False
        self.context.load_cert_chain(self.cert_file, self.key_file)
        self._stamp = stamp
        return True


def trust_front_proxy(context: ssl.SSLContext, client_ca: str) -> None:
    """Ask for client certificates and verify them against the front proxy's CA (optional: health
    checks come without one; :func:`auth.authenticate` refuses API requests that lack it)."""
    context.load_verify_locations(cadata=client_ca)
    context.verify_mode = ssl.CERT_OPTIONAL


def server_context(client_ca: str = "") -> ssl.SSLContext:
    """A server's TLS context without a certificate yet (handshakes fail until one is loaded), trusting
    the front proxy's CA when known (see :func:`trust_front_proxy`)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_NONE
    if client_ca.strip():
        trust_front_proxy(context, client_ca)
    return context


def server_tls(cert_file: str, key_file: str, client_ca: str) -> ssl.SSLContext:
    """:func:`server_context` serving the certificate files (OSError or SSLError if they do not load)."""
    context = server_context(client_ca)
    ServingCertificate(context, cert_file, key_file).refresh()
    return context
