"""Kubernetes label selectors in their query-string form (``a=b,c!=d,e in (f,g),!h``), parsed and matched.

Pure. The grammar is apimachinery's ``labels.Parse``: requirements separated by commas; operators
``=``, ``==``, ``!=``, ``in``, ``notin``, existence (``key``) and non-existence (``!key``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_KEY = re.compile(rf"^({_DNS_LABEL}(\.{_DNS_LABEL})*/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_TOKEN = re.compile(r"\s*(==|!=|=|\(|\)|,|!|[^\s=!(),]+)")


class SelectorError(ValueError):
    """A selector that does not parse; the message says where."""


@dataclass(frozen=True)
class Requirement:
    """One ``key op values`` term."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        # != and notin also match objects without the key, as in Kubernetes
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class Selector:
    """All requirements must hold; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(_format(r) for r in self.requirements)


def _format(requirement: Requirement) -> str:
    values = sorted(requirement.values)
    if requirement.operator == "exists":
        return requirement.key
    if requirement.operator == "!":
        return "!" + requirement.key
    if requirement.operator in ("=", "!="):
        return f"{requirement.key}{requirement.operator}{values[0]}"
    return f"{requirement.key} {requirement.operator} ({','.join(values)})"


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:  # pragma: no cover (the pattern accepts any non-space character)
            raise SelectorError(f"unexpected character at {position}: {text!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _key(token: str | None) -> str:
    if token is None or not _KEY.match(token) or len(token.rsplit("/", 1)[-1]) > 63:
        raise SelectorError(f"invalid label key {token!r}")
    return token


def _value(token: str | None) -> str:
    if token is None or token in ("(", ")", ",", "=", "==", "!=", "!") or not _VALUE.match(token):
        raise SelectorError(f"invalid label value {token!r}")
    if len(token) > 63:
        raise SelectorError(f"label value longer than 63 characters: {token!r}")
    return token


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens, self.index = _tokens(text), 0

    def peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.index += 1
        return token

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(_key(self.take()), "!")
        key = _key(self.take())
        operator = self.peek()
        if operator in (None, ","):
            return Requirement(key, "exists")
        self.take()
        if operator in ("=", "==", "!="):
            value = "" if self.peek() in (None, ",") else _value(self.take())
            return Requirement(key, "!=" if operator == "!=" else "=", frozenset({value}))
        if operator == "in":
            return Requirement(key, "in", self.value_set())
        if operator == "notin":
            return Requirement(key, "notin", self.value_set())
        raise SelectorError(f"expected an operator after {key!r}, found {operator!r}")

    def value_set(self) -> frozenset[str]:
        if self.take() != "(":
            raise SelectorError("expected '(' after in/notin")
        values: set[str] = set()
        while True:
            values.add(_value(self.take()))
            after = self.take()
            if after == ")":
                return frozenset(values)
            if after != ",":
                raise SelectorError(f"expected ',' or ')' in a value set, found {after!r}")


def parse_selector(text: str) -> Selector:
    """Parse the ``labelSelector`` query parameter; raises :class:`SelectorError`."""
    parser = _Parser(text)
    requirements: list[Requirement] = []
    while parser.peek() is not None:
        requirements.append(parser.requirement())
        separator = parser.take()
        if separator not in (None, ","):
            raise SelectorError(f"expected ',' between requirements, found {separator!r}")
        if separator == "," and parser.peek() is None:
            raise SelectorError("selector ends with ','")
    return Selector(tuple(requirements))
