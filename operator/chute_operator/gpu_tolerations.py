"""The custom GPU profile's tolerations, checked as the API server checks a pod's (and one more rule: a
toleration names its taint's key, since one without tolerates every taint of every node)."""

from __future__ import annotations

from typing import Any

from chute_operator.api.k8s_labels import key_problem, value_problem
from chute_operator.gpus import CatalogError

Toleration = dict[str, Any]
OPERATORS = ("Equal", "Exists")
EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")


def parse_toleration(raw: object, where: str) -> Toleration:
    """A toleration of the custom profile; CatalogError naming ``where`` and the field otherwise."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: a toleration is a mapping ({', '.join(FIELDS)})")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise CatalogError(f"{where}: unknown field {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    strings = {k: raw[k] for k in FIELDS[:4] if k in raw}
    if not all(isinstance(v, str) for v in strings.values()):
        raise CatalogError(f"{where}: key, operator, value and effect are strings")
    key, value = strings.get("key", ""), strings.get("value", "")
    operator, effect = strings.get("operator", "Equal"), strings.get("effect", "")
    if not key:
        raise CatalogError(
            f"{where}: a toleration without a key tolerates every taint (not-ready, unreachable, other "
            "tenants' dedicated nodes): name the GPU nodes' taint key"
        )
    problem = key_problem(key) or value_problem(value)
    if problem:
        raise CatalogError(f"{where}: {problem}")
    if operator not in OPERATORS:
        raise CatalogError(f"{where}: operator {operator!r} is not one of {', '.join(OPERATORS)}")
    if operator == "Exists" and value:
        raise CatalogError(f"{where}: operator Exists takes no value")
    if effect not in EFFECTS:
        raise CatalogError(f"{where}: effect {effect!r} is not one of {', '.join(e for e in EFFECTS if e)}")
    toleration: Toleration = dict(strings)
    if "tolerationSeconds" in raw:
        seconds = raw["tolerationSeconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise CatalogError(f"{where}: tolerationSeconds is an integer (seconds)")
        if effect != "NoExecute":
            raise CatalogError(f"{where}: tolerationSeconds applies only to effect NoExecute")
        toleration["tolerationSeconds"] = seconds
    return toleration
