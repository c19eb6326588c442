"""Shared building blocks: the camelCase base model, quantities, free-form objects, CEL rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema
from pydantic.alias_generators import to_camel

QUANTITY_PATTERN = r"^[+]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?[0-9]+))?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)


def _quantity(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a Kubernetes quantity such as 8, 500m, 64Gi")
    text = str(value)
    if not _QUANTITY.match(text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 8, 500m, 64Gi)")
    return text


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]
"""A resource quantity (``8``, ``500m``, ``64Gi``), kept as its string form."""

FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A Kubernetes object passed through as is (validated by the API server where it lands)."""


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=False,
    )


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, written once for the API server (CEL) and once for Python.

    Both forms sit side by side so they can be read (and tested) together.
    """

    cel: str
    message: str
    field_path: str
    check: Callable[[Any], bool]

    def schema(self) -> dict[str, str]:
        return {"rule": self.cel, "message": self.message, "fieldPath": self.field_path}


def rules_schema(*rules: Rule) -> dict[str, Any]:
    """``json_schema_extra`` for a model carrying these rules."""
    return {"x-kubernetes-validations": [rule.schema() for rule in rules]}


def broken_rules(model: object, rules: tuple[Rule, ...]) -> list[Rule]:
    """The rules this model instance breaks."""
    return [rule for rule in rules if not rule.check(model)]


def enforce(model: object, rules: tuple[Rule, ...]) -> None:
    """Raise ValueError with the message of every rule the model breaks (pydantic names the field)."""
    broken = broken_rules(model, rules)
    if broken:
        raise ValueError("; ".join(rule.message for rule in broken))
