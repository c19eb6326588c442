"""Does a live object still carry everything we want it to? (Decides whether to apply.)

Desired must be contained in actual: the API server adds defaults and other controllers add
labels, annotations or fields, none of which is drift. Quantities compare by value
(``1000m`` == ``1``), numbers by their text (``2`` == ``"2"``).

Containment cannot see a field we *stopped* wanting. So every applied object carries the hash of
the whole desired manifest as an annotation (:func:`stamped`): when the Chute changes in any way,
removals included, the hash changes, the annotation no longer matches, and the object is
applied; server-side apply then removes the fields our field manager set before and no longer
sends.

A field some servers drop silently (:data:`SERVER_MAY_DROP`: the HPA's ``behavior.*.tolerance`` where
``HPAConfigurableTolerance`` is off) is no drift when the live object lacks it: the server answered
what it keeps, and applying again would be refused the same way at every reconcile (status.py reports
it as ``FieldUnsupported`` instead). A change of the Chute still applies it (the hash).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}  # fmt: skip

IGNORED_METADATA = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp")
DESIRED_HASH = "chutes.ai/desired-hash"
"""Annotation on every child: hash of the manifest last applied (see the module docstring)."""


def stamped(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` annotated with the hash of its content (without that annotation). Only
    the copy's top level, metadata and annotations are new objects: the rest is ``manifest``'s (a
    deep copy was most of the stamp's CPU, and every caller builds or decodes ``manifest`` afresh)."""
    metadata = dict(manifest.get("metadata") or {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != DESIRED_HASH}
    metadata["annotations"] = annotations
    result = {**manifest, "metadata": metadata}
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), default=str)
    annotations[DESIRED_HASH] = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    return result


def quantity(value: object) -> Decimal | None:
    """The value of a Kubernetes quantity, or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _SUFFIX:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2)]
    except InvalidOperation:
        return None


def _same_scalar(desired: object, actual: object) -> bool:
    if desired == actual and type(desired) is type(actual):
        return True
    if isinstance(desired, bool) or isinstance(actual, bool):
        return desired == actual
    if str(desired) == str(actual):
        return True
    left, right = quantity(desired), quantity(actual)
    return left is not None and left == right


def contained(desired: Any, actual: Any) -> bool:
    """True when every field of ``desired`` is present, equal, in ``actual``."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            key in actual and contained(value, actual[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(contained(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return _same_scalar(desired, actual)


SERVER_MAY_DROP = (
    ("spec", "behavior", "scaleUp", "tolerance"),
    ("spec", "behavior", "scaleDown", "tolerance"),
)
"""Paths a server may drop from what it stores (by a feature gate that is off): no drift when absent."""


def _has(obj: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return False
        obj = obj[key]
    return True


def _without_dropped(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """``desired`` without the :data:`SERVER_MAY_DROP` fields ``actual`` lacks."""
    dropped = [path for path in SERVER_MAY_DROP if _has(desired, path) and not _has(actual, path)]
    if not dropped:
        return desired
    result = copy.deepcopy(desired)
    for *parents, last in dropped:
        node = result
        for key in parents:
            node = node[key]
        del node[last]
    return result


def drifted(desired: dict[str, Any], actual: dict[str, Any] | None) -> bool:
    """Whether ``desired`` must be applied: the object is missing or lacks something we want (but for
    a field the server drops, :data:`SERVER_MAY_DROP`)."""
    if actual is None:
        return True
    return not contained(_without_dropped(desired, actual), actual)
