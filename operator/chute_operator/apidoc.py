"""The API reference (docs/api.md), generated from the CRD schema so it cannot drift."""

from __future__ import annotations

from typing import Any

from chute_operator.api.reasons import CATALOG, CONDITION_TYPES
from chute_operator.crd import openapi_schema


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "quantity"
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return "object (passed through)"
    kind = str(node.get("type", ""))
    if kind == "array":
        return f"[]{_type(node.get('items') or {})}"
    if "enum" in node:
        return " \\| ".join(str(v) for v in node["enum"])
    return kind


def _limits(node: dict[str, Any]) -> str:
    parts = []
    if "default" in node and node["default"] != {}:
        parts.append(f"default `{node['default']}`")
    for key, label in (("minimum", ">="), ("maximum", "<="), ("maxItems", "max items")):
        if key in node:
            strict = node.get(f"exclusive{key.capitalize()}") is True
            parts.append(f"{'>' if strict and key == 'minimum' else label} {node[key]}")
    return ", ".join(parts)


def _rows(node: dict[str, Any], path: str) -> list[str]:
    rows = []
    for name, child in (node.get("properties") or {}).items():
        field = f"{path}.{name}"
        description = " ".join(str(child.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{field}` | {_type(child)} | {_limits(child)} | {description} |")
        target = child.get("items") if child.get("type") == "array" else child
        if isinstance(target, dict) and target.get("properties"):
            rows += _rows(target, field + ("[]" if child.get("type") == "array" else ""))
    return rows


def _rules(node: dict[str, Any]) -> list[str]:
    found = [f"- `{r['rule']}`: {r['message']}" for r in node.get("x-kubernetes-validations", [])]
    for child in (node.get("properties") or {}).values():
        found += _rules(child.get("items") if child.get("type") == "array" else child)
    return found


def _conditions() -> list[str]:
    types = [f"| `{t.name}` | {t.description} |" for t in CONDITION_TYPES.values()]
    reasons = [f"| `{r.name}` | {r.appears_in} | {r.description} |" for r in CATALOG.values()]
    return [
        "## Conditions and reasons",
        "",
        "Named constants in `chute_operator.api.reasons`. Ready summarises the others; a condition's",
        "lastTransitionTime moves only when its status flips. When Ready or Monitored changes, an Event",
        "says so: reason `Ready`/`Monitored` when it turns True, else the condition's reason as a Warning.",
        "The steps of a Chute on its way up (Creating, RollingOut, ModelLoading, ScalingUp,",
        "NoReplicasReady) are in its status, not in Events, and so is the creation of a new Chute's",
        "children: the `Ready` Event says they are over (or a Warning why not). A change to an existing",
        "Chute's children is an `Applied` Event. An autoscaler that starts working is not announced either.",
        "",
        "| type | meaning |",
        "| --- | --- |",
        *types,
        "",
        "| reason | appears in | meaning |",
        "| --- | --- | --- |",
        *reasons,
    ]


def api_reference() -> str:
    """Markdown reference of every spec and status field."""
    schema = openapi_schema()
    lines = [
        "# Chute API reference (chutes.ai/v1alpha1)",
        "",
        "Generated from the API models by `python -m chute_operator.apidoc`; a test fails when it is stale.",
        "",
        "| field | type | limits | description |",
        "| --- | --- | --- | --- |",
        *_rows(schema["properties"]["spec"], "spec"),
        *_rows(schema["properties"]["status"], "status"),
        "",
        "## Cross-field rules (CEL, checked by the API server at apply time)",
        "",
        *_rules(schema),
        "",
        *_conditions(),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(api_reference(), end="")
