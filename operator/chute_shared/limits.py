"""Limits more than one program enforces, so a request is refused (or not) whichever of them it meets."""

from __future__ import annotations

MAX_BODY_BYTES = 64 * 1024 * 1024
"""The largest request body a Chute accepts: the sidecar's ``--max-body-bytes`` default and the
activator's (a Chute at zero takes what it takes awake); 413 beyond."""
MAX_BODY_BYTES_CEILING = 1024 * 1024 * 1024
"""The largest body limit a Chute may set (``spec.maxRequestBodyBytes``)."""
REQUEST_TIMEOUT_SECONDS = 600
"""How long one request may take, its answer streamed to the end (a Chute's default
``spec.requestTimeoutSeconds``): the sidecar's ``--request-timeout-seconds`` default and the
activator's, once it forwards a held request."""
