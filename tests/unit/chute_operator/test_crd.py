"""The CRD is generated from the models, checked in, and structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from chute_operator.crd import crd, crd_yaml

CHECKED_IN = Path(__file__).resolve().parents[3] / "crds" / "chute.yaml"


def _version() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for name, child in (node.get("properties") or {}).items():
            found += _walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            found += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_checked_in_crd_matches_the_models() -> None:
    assert CHECKED_IN.read_text() == crd_yaml(), (
        "crds/chute.yaml is stale: run `chute-operator crd > crds/chute.yaml`"
    )


def test_schema_is_structural() -> None:
    schema = _version()["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title:"):
        assert forbidden not in text
    for path, node in _walk(schema):
        has_type = "type" in node or node.get("x-kubernetes-int-or-string")
        assert has_type, f"{path} has no type"
        assert node.get("additionalProperties") is not False, path
        assert not isinstance(node.get("exclusiveMinimum"), int | float) or isinstance(
            node["exclusiveMinimum"], bool
        ), path


def test_every_spec_and_status_field_is_described() -> None:
    schema = _version()["schema"]["openAPIV3Schema"]
    undocumented = [
        path
        for path, node in _walk(schema)
        if path.startswith((".spec", ".status"))
        and not path.endswith(("[]", "{}"))
        and not node.get("description")
    ]
    assert undocumented == []


def test_cross_field_rules_name_their_field() -> None:
    rules = [
        rule
        for _, node in _walk(_version()["schema"]["openAPIV3Schema"])
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 6
    for rule in rules:
        assert rule["message"].startswith(("spec.", "metadata.name")), rule
        assert rule.get("fieldPath", ".").startswith(".")


def test_scale_status_and_printer_columns() -> None:
    version = _version()
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    names = [column["name"] for column in version["additionalPrinterColumns"]]
    for wanted in ("Ready", "Replicas", "GPU", "Template", "Age"):
        assert wanted in names
    assert crd()["spec"]["names"]["shortNames"] == ["ch"]
    assert crd()["spec"]["names"]["categories"] == ["chutes"]


def test_conditions_are_a_map_keyed_on_type() -> None:
    conditions = _version()["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) >= {"type", "status", "lastTransitionTime", "reason"}


def test_nested_defaults_reach_the_api_server() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["nodeSelector"]["default"] == {}
    assert spec["nodeSelector"]["properties"]["gpuCount"]["default"] == 1
    assert spec["scalingThreshold"]["exclusiveMinimum"] is True
    assert "default" not in spec["auth"]


def test_no_default_inside_a_spec_list_item_but_the_list_map_keys() -> None:
    """A defaulted field in a list item makes every client-side apply resend the list (GitOps: OutOfSync)."""
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaulted = []

    def visit(node: Any, path: str, in_item: bool, keys: frozenset[str] = frozenset()) -> None:
        for name, child in (node.get("properties") or {}).items():
            if in_item and "default" in child and name not in keys:
                defaulted.append(f"{path}.{name}")
            visit(child, f"{path}.{name}", in_item)
        if isinstance(node.get("items"), dict):
            item_keys = frozenset(node.get("x-kubernetes-list-map-keys") or ())
            visit(node["items"], f"{path}[]", True, item_keys)

    visit(spec, "spec", False)
    assert defaulted == []
    cords = spec["properties"]["cords"]["items"]["properties"]
    assert cords["method"]["default"] == "POST"  # a list-map key keeps its default
    assert cords["stream"]["description"].endswith("Absent means `false`.")


def test_api_reference_is_current() -> None:
    from chute_operator.apidoc import api_reference

    reference = CHECKED_IN.parents[1] / "docs" / "api.md"
    assert reference.read_text() == api_reference(), "run `python -m chute_operator.apidoc > docs/api.md`"
