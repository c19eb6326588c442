"""Front-proxy authentication and delegated authorization, as every aggregated API server does them.

The kube-apiserver proxies a request to us over TLS with its front-proxy client certificate, signed by
the request-header CA, and names the user in ``X-Remote-User`` / ``X-Remote-Group`` /
``X-Remote-Extra-*`` headers. The CA, the allowed certificate names and the header names come from
the ``extension-apiserver-authentication`` ConfigMap in kube-system. A request is authorized by a
SubjectAccessReview (cached for a few seconds), so the cluster's RBAC decides, as for the built-in
APIs. Parsing and deciding are pure; only :class:`Authorizer` calls the API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

AUTH_CONFIGMAP_NAMESPACE = "kube-system"
AUTH_CONFIGMAP_NAME = "extension-apiserver-authentication"


@dataclass(frozen=True)
class FrontProxyConfig:
    """What the ConfigMap says about request-header authentication."""

    client_ca: str
    """PEM bundle that signs the front proxy's client certificate ('' when the cluster has none)."""
    allowed_names: tuple[str, ...] = ()
    """Common names the client certificate may carry; empty means any certificate of the CA."""
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)


def _json_list(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not text:
        return default
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a JSON list of strings: {text!r}")
    return tuple(value)


def parse_auth_configmap(data: Mapping[str, str]) -> FrontProxyConfig:
    """The ConfigMap's ``data`` (keys ``requestheader-*``) as a config; ValueError if malformed."""
    return FrontProxyConfig(
        client_ca=data.get("requestheader-client-ca-file", ""),
        allowed_names=_json_list(data.get("requestheader-allowed-names"), ()),
        username_headers=_json_list(data.get("requestheader-username-headers"), ("X-Remote-User",)),
        group_headers=_json_list(data.get("requestheader-group-headers"), ("X-Remote-Group",)),
        extra_headers_prefixes=_json_list(
            data.get("requestheader-extra-headers-prefix"), ("X-Remote-Extra-",)
        ),
    )


@dataclass(frozen=True)
class User:
    """The user the front proxy vouches for."""

    name: str
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Unauthenticated(Exception):
    """No identity we may trust; the message says why (it goes into the 401)."""


def common_name(peercert: Mapping[str, Any] | None) -> str | None:
    """The subject CN of a certificate as ``ssl.SSLSocket.getpeercert()`` returns it."""
    for rdn in (peercert or {}).get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def authenticate(
    peercert: Mapping[str, Any] | None, headers: Mapping[str, str] | Any, config: FrontProxyConfig
) -> User:
    """The user of a request, from a verified client certificate and the request headers.

    ``peercert`` is only non-empty when TLS verified the certificate against ``config.client_ca``.
    ``headers`` is a case-insensitive multi-dict (``getall``) or a plain mapping.
    """
    if not peercert:
        raise Unauthenticated("no client certificate: requests must come through the kube-apiserver")
    name = common_name(peercert)
    if config.allowed_names and name not in config.allowed_names:
        raise Unauthenticated(f"client certificate {name!r} is not an allowed front proxy")

    def values(header: str) -> list[str]:
        if hasattr(headers, "getall"):
            return list(headers.getall(header, []))
        found = headers.get(header)
        return [found] if found is not None else []

    user = next((v for h in config.username_headers for v in values(h) if v), None)
    if not user:
        raise Unauthenticated("the front proxy named no user")
    groups = tuple(v for h in config.group_headers for v in values(h))
    extra: dict[str, list[str]] = {}
    for key in headers:
        for prefix in config.extra_headers_prefixes:
            if key.lower().startswith(prefix.lower()) and len(key) > len(prefix):
                extra.setdefault(key[len(prefix) :].lower(), []).extend(values(key))
    return User(user, groups, tuple(sorted((k, tuple(v)) for k, v in extra.items())))


@dataclass(frozen=True)
class Access:
    """What a request does, in SubjectAccessReview resource attributes."""

    verb: str
    namespace: str
    resource: str
    subresource: str
    name: str
    group: str
    version: str

    def review_spec(self, user: User) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "user": user.name,
            "groups": list(user.groups),
            "resourceAttributes": {
                "verb": self.verb,
                "namespace": self.namespace,
                "group": self.group,
                "version": self.version,
                "resource": self.resource,
                "subresource": self.subresource,
                "name": self.name,
            },
        }
        if user.extra:
            spec["extra"] = {key: list(values) for key, values in user.extra}
        return spec


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


ReviewCall = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Creates a SubjectAccessReview with this spec and returns its status."""


@dataclass
class Authorizer:
    """SubjectAccessReviews, with decisions cached for ``ttl`` seconds (as delegated authorizers do)."""

    review: ReviewCall
    ttl: float = 10.0
    clock: Callable[[], float] = time.monotonic
    max_entries: int = 4096
    _cache: dict[str, tuple[float, Decision]] = field(default_factory=dict)

    async def decide(self, user: User, access: Access) -> Decision:
        spec = access.review_spec(user)
        key = json.dumps(spec, sort_keys=True)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        status = await self.review(spec)
        decision = Decision(bool(status.get("allowed")), str(status.get("reason") or ""))
        if len(self._cache) >= self.max_entries:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self.ttl}
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
        self._cache[key] = (now, decision)
        return decision
