"""A settings group read from the environment: one variable per field, named from the group and the field.

A group is a frozen dataclass with an ``ENV_PREFIX``; its field ``port`` is read from
``CHUTE_OPERATOR_<ENV_PREFIX>PORT`` unless the field declares its own name (``env("NAME")``). The
field's type says how the text is read; a value that cannot be read raises ValueError naming the
variable. An unset variable keeps the field's default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, fields
from typing import Any, ClassVar, Protocol, TypeVar, get_type_hints

PREFIX = "CHUTE_OPERATOR_"
TRUE = ("1", "true", "yes", "on")


class Group(Protocol):
    ENV_PREFIX: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Any]]


G = TypeVar("G", bound=Group)


def env(
    name: str | None = None, *, fallback: str | None = None, parse: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """A field's metadata: its variable's ``name`` (after CHUTE_OPERATOR_) where not derived, a
    ``fallback`` variable read when it is unset (the whole name), a ``parse`` other than its type's."""
    return {"env": name, "fallback": fallback, "parse": parse}


def flag(text: str) -> bool:
    """``1``, ``true``, ``yes`` or ``on`` (any case) is true; anything else false."""
    return text.strip().lower() in TRUE


def names(text: str) -> tuple[str, ...]:
    """``a, b,,c`` as ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


PARSERS: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    bool: flag,
    tuple[str, ...]: names,
    str | None: lambda text: text or None,
}


def variable(group: type[Group], item: Field[Any]) -> str:
    """The name of the variable of ``group``'s field ``item``."""
    return PREFIX + (item.metadata.get("env") or group.ENV_PREFIX + item.name.upper())


def variables(group: type[Group]) -> Iterator[tuple[str, Field[Any]]]:
    """Each field of ``group`` with its variable's name."""
    for item in fields(group):
        yield variable(group, item), item


def read(group: type[G], environ: Mapping[str, str]) -> G:
    """``group`` with the fields whose variable (or fallback) is set in ``environ``."""
    hints = get_type_hints(group)
    values: dict[str, Any] = {}
    for name, item in variables(group):
        fallback = item.metadata.get("fallback")
        if fallback and name not in environ and fallback in environ:
            name = fallback
        if name not in environ:
            continue
        text = environ[name]
        parse = item.metadata.get("parse") or PARSERS[hints[item.name]]
        try:
            values[item.name] = parse(text)
        except ValueError as error:
            raise ValueError(f"{name}: cannot read {text!r} ({error})") from error
    return group(**values)
