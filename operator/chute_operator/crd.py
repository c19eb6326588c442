"""Generate the Chute CustomResourceDefinition from the API models.

The pydantic JSON schema is turned into a Kubernetes structural schema: references inlined,
nullable unions collapsed (an absent field is the null), JSON-Schema 2020 idioms mapped to
OpenAPI v3 ones, and object defaults added so the API server fills nested defaults.

No default inside a spec list item (other than a list-map key, which must have one): a defaulted
field in an item makes every client-side apply send the whole list again (JSON merge patch replaces
lists) and GitOps tools see a difference from the manifest forever. Such fields are optional
instead; the description says what absent means, and the models apply that value.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from chute_operator.api import GROUP, KIND, PLURAL, VERSION, ChuteSpec, ChuteStatus
from chute_operator.api.chute import NAME_MAX_LENGTH
from chute_operator.api.reasons import READY

Schema = dict[str, Any]

_DROPPED_KEYS = {"title", "additionalProperties_false"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": READY, "type": "string", "jsonPath": f'.status.conditions[?(@.type=="{READY}")].status'},
    {"name": "Reason", "type": "string", "jsonPath": f'.status.conditions[?(@.type=="{READY}")].reason'},
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "GPU", "type": "integer", "jsonPath": ".spec.nodeSelector.gpuCount"},
    {"name": "Template", "type": "string", "jsonPath": ".spec.template"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.autoscaler.desiredReplicas", "priority": 1},
    {"name": "Eligible", "type": "string", "jsonPath": ".status.eligibleGpuSummary", "priority": 1},
    {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    """Inline every ``$ref`` (the API has no recursive types)."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings}
    return {key: _resolve(value, defs) for key, value in node.items()}


def _structural(node: Schema) -> Schema:
    """Map one (already inlined) pydantic schema node to a structural OpenAPI v3 node."""
    node = dict(node)
    optional = False
    for union in ("anyOf", "oneOf"):
        if union in node:
            branches = [b for b in node.pop(union) if b.get("type") != "null"]
            if len(branches) != 1:
                raise ValueError(f"cannot express a union of {len(branches)} types structurally: {branches}")
            optional = True
            node = {**branches[0], **node}
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node.pop("allOf")[0], **node}
    node.pop("title", None)
    if node.get("default", ...) is None:
        node.pop("default")
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, key in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[key] = node[bound]
            node[bound] = True
    if "properties" in node:
        required = set(node.get("required", []))
        node["properties"] = {
            name: _property(prop, name in required) for name, prop in node["properties"].items()
        }
        if not node.get("required"):
            node.pop("required", None)
    if isinstance(node.get("items"), dict):
        node["items"] = _structural(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"])
    node["_optional"] = optional
    return node


def _property(prop: Schema, required: bool) -> Schema:
    node = _structural(prop)
    optional = node.pop("_optional")
    if not required and not optional and "default" not in node and "properties" in node:
        node["default"] = {}
    return node


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if k != "_optional"}
    if isinstance(node, list):
        return [_clean(item) for item in node]
    return node


def _absent_means(node: Schema) -> Schema:
    """``node`` and everything under it without defaults, each described as what absent means."""
    node = dict(node)
    if "default" in node:
        value = node.pop("default")
        shown = "false" if value is False else "true" if value is True else value
        if value != {}:
            node["description"] = f"{node.get('description', '').rstrip()} Absent means `{shown}`.".lstrip()
    if isinstance(node.get("properties"), dict):
        node["properties"] = {name: _absent_means(child) for name, child in node["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _absent_means(node[key])
    return node


def without_list_item_defaults(node: Any) -> Any:
    """The schema with no default inside an array's items, except on the list-map keys."""
    if isinstance(node, list):
        return [without_list_item_defaults(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: without_list_item_defaults(value) for key, value in node.items()}
    items = node.get("items")
    if isinstance(items, dict) and isinstance(items.get("properties"), dict):
        keys = set(node.get("x-kubernetes-list-map-keys") or ())
        node["items"] = {
            **items,
            "properties": {
                name: child if name in keys else _absent_means(child)
                for name, child in items["properties"].items()
            },
        }
    return node


def model_schema(model: type[ChuteSpec] | type[ChuteStatus]) -> Schema:
    """The structural schema of one API model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return dict(_clean(_structural(_resolve(raw, defs))))


def openapi_schema() -> Schema:
    """The Chute's openAPIV3Schema."""
    return {
        "type": "object",
        "description": "A Chute serves a model: a GPU Deployment with a sidecar, a Service, an "
        "autoscaler and monitoring, reconciled by chute-operator.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "API version of this object: chutes.ai/v1alpha1.",
            },
            "kind": {"type": "string", "description": "Kind of this object: Chute."},
            "metadata": {"type": "object"},
            "spec": without_list_item_defaults(model_schema(ChuteSpec)),
            "status": model_schema(ChuteStatus),
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {NAME_MAX_LENGTH} && "
                "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
                "message": "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', "
                f"starting with a letter, at most {NAME_MAX_LENGTH} characters): "
                "it names the Chute's Service",
            }
        ],
    }


def crd() -> Schema:
    """The CustomResourceDefinition for Chutes."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "chute-operator", "app.kubernetes.io/part-of": "chutes"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["ch"],
                "categories": ["chutes"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


HEADER = "# Generated from the API models by `chute-operator crd`. Do not edit by hand.\n"


def crd_yaml() -> str:
    """The CRD as the YAML document checked in under crds/."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=120, allow_unicode=True)
