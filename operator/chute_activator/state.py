"""What the activator knows of each Chute: whether it exists, its ready endpoints, why it cannot wake,
and the activator port its requests arrive on."""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str]
"""(namespace, name) of a Chute."""


@dataclass(frozen=True, slots=True)
class ChuteState:
    """One Chute as last seen by the activator's source (the Kubernetes API, or a test)."""

    exists: bool = True
    endpoints: tuple[str, ...] = ()
    """``host:port`` of each ready replica's serving port."""
    cannot_wake: str | None = None
    """Why the Chute cannot get a ready replica (a reason and message from the operator), if it cannot."""
    load_seconds: float | None = None
    """How long the Chute's model took to load, as the operator measured it (the Chute's
    ``status.loadSeconds``; None: unknown)."""
    port: int | None = None
    """The activator port the operator gave the Chute (its ``status.activatorPort``): a connection to
    it is for this Chute. None: none yet (no request can arrive for it)."""
    created: str = ""
    """The Chute's creationTimestamp (what ``/_chutes`` shows of it)."""
    max_body_bytes: int | None = None
    """The Chute's ``spec.maxRequestBodyBytes``: larger bodies get 413 (None: the activator's default)."""
    request_timeout_seconds: float | None = None
    """The Chute's ``spec.requestTimeoutSeconds``: how long a forwarded request may take, its answer
    streamed to the end (None: the activator's default)."""
    source: str = ""
    """Where the endpoints come from: ``EndpointSlice`` (the kubelet's readiness, via the EndpointSlice
    controller) or ``sidecar`` (the pod's sidecar answered ``ready`` on its serving port first)."""


def port_owner(claims: dict[Key, str]) -> Key | None:
    """The Chute whose requests arrive on a port, from the Chutes whose status names it (key:
    creationTimestamp): the one, or none when two do (a status edited by hand: neither is served
    until the operator has rewritten the one that did not have the port)."""
    if len(claims) != 1:
        return None
    return next(iter(claims))
