"""What the caller gets for the answer to a forwarded request. Pure.

The kube-apiserver hands back what the adapter behind v1beta1 answered, or its own refusal of the
operator. Only a 200 MetricValueList (as v1beta2) and an error Status go on as they came; anything
else becomes a 502 Status naming what came: a redirect (never followed), a body that is no JSON
object, a malformed list, a 200 that is no list. A 401 or 403 is about the operator's own
credentials or RBAC, never the caller's (the kube-apiserver and then the operator authorized the
caller already, and the adapter sees the operator as its user): a 502 saying so.
"""

from __future__ import annotations

import json
from typing import Any

from chute_operator.metricsapi import forwarding, responses
from chute_operator.metricsapi.query import Answer

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    503: "ServiceUnavailable",
    504: "Timeout",
}
EXCERPT = 200
"""Characters of an unusable answer quoted in the Status."""
ADAPTER = f"the adapter behind {forwarding.LEGACY_API_SERVICE}"
OWN_REFUSALS = {
    401: "the kube-apiserver did not accept the operator's credentials for the forwarded request",
    403: "the operator's ServiceAccount may not read custom.metrics.k8s.io/v1beta1 (the chart grants "
    "it with metricsApi.forwardToV1beta1)",
}


def failure(code: int, message: str) -> Answer:
    """A Status answer of ``code`` (reason from :data:`REASONS`, else InternalError)."""
    return Answer(code, responses.status(code, REASONS.get(code, "InternalError"), message))


def _excerpt(body: bytes) -> str:
    return body[:EXCERPT].decode(errors="replace")


def _parsed(body: bytes) -> Any:
    """The JSON document, or None when the body is none (nested too deep counts as none)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def adapter_answer(status: int, body: bytes, location: str = "") -> Answer:
    """The answer for the kube-apiserver's ``status`` and ``body`` (``location``: a redirect's)."""
    if 300 <= status < 400:
        where = f" to {location[:EXCERPT]}" if location else ""
        return failure(502, f"{ADAPTER} answered a redirect ({status}{where}), not followed")
    document = _parsed(body)
    if status in OWN_REFUSALS:
        said = document.get("message") if isinstance(document, dict) else None
        return failure(502, f"{OWN_REFUSALS[status]} ({status}: {str(said or _excerpt(body))[:EXCERPT]})")
    if status >= 400:
        if isinstance(document, dict) and document.get("kind") == "Status":
            return Answer(status, document)
        return failure(status, f"{ADAPTER} answered {status}: {_excerpt(body)}")
    if not isinstance(document, dict):
        return failure(502, f"{ADAPTER} answered {status} with no JSON object: {_excerpt(body)}")
    if status != 200 or document.get("kind") != "MetricValueList":
        what = document.get("kind")
        return failure(502, f"{ADAPTER} answered {status} with a {what or 'document'}, not a MetricValueList")
    try:
        return Answer(200, forwarding.to_v1beta2(document))
    except forwarding.Malformed as error:
        return failure(502, f"{ADAPTER} answered a malformed MetricValueList: {error}")
