"""HTTP headers more than one program reads or writes."""

from __future__ import annotations

DRAIN_TOKEN_HEADER = "X-Chute-Drain-Token"  # nosec B105  # the name of a header, not a secret
"""Carries the drain token from the model's preStop hook (rendered by the operator) to the sidecar's
``/drainz``."""
EXPECT = "Expect"
"""Answered by each proxy itself (never forwarded): the sidecar and the activator send ``100 Continue``
at once to a client that asks for it (curl does for bodies over 1 KiB) instead of leaving it to wait
for its own timeout."""
EXPECT_CONTINUE = "100-continue"
"""The :data:`EXPECT` value that asks for ``100 Continue``."""
FORWARDED_FOR = "X-Forwarded-For"
"""Extended by every proxy on the way: the activator, then the sidecar."""
HOP_BY_HOP = (
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
)
"""Headers a proxy never forwards: RFC 9110 7.6.1 plus the usual non-standard ones (Keep-Alive,
Proxy-Connection); the sidecar and the activator drop them both ways."""
