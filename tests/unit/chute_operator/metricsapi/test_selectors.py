"""Label selectors as the HPA sends them: parsed whole, prefix by prefix, and with trailing bytes."""

from __future__ import annotations

import contextlib

import pytest

from chute_operator.metricsapi.selectors import Requirement, SelectorError, parse_selector

HPA_SELECTOR = "chutes.ai/chute=qwen"
COMPLEX = "chutes.ai/chute=qwen, tier in (a,b),env notin (dev),canary,!legacy,x!=y,z==w"


def test_the_hpa_selector() -> None:
    selector = parse_selector(HPA_SELECTOR)
    assert selector.requirements == (Requirement("chutes.ai/chute", "=", frozenset({"qwen"})),)
    assert selector.matches({"chutes.ai/chute": "qwen", "other": "x"})
    assert not selector.matches({"chutes.ai/chute": "other"})
    assert not selector.matches({})


def test_every_operator() -> None:
    selector = parse_selector(COMPLEX)
    good = {"chutes.ai/chute": "qwen", "tier": "b", "env": "prod", "canary": "", "x": "q", "z": "w"}
    assert selector.matches(good)
    for key, value in (("tier", "c"), ("env", "dev"), ("x", "y"), ("z", "v")):
        assert not selector.matches({**good, key: value}), key
    assert not selector.matches({k: v for k, v in good.items() if k != "canary"})
    assert not selector.matches({**good, "legacy": "1"})
    assert selector.matches({k: v for k, v in good.items() if k not in ("env", "x")})  # != / notin


def test_empty_selector_matches_everything_and_empty_values_are_allowed() -> None:
    assert parse_selector("").matches({})
    assert parse_selector("   ").matches({"a": "b"})
    assert parse_selector("a=").matches({"a": ""})
    assert not parse_selector("a=").matches({"a": "b"})


def test_round_trip() -> None:
    selector = parse_selector(COMPLEX)
    assert parse_selector(str(selector)) == selector


@pytest.mark.parametrize(
    "text",
    [
        "a b",
        "a=b c",
        "a in b",
        "a in (b",
        "a in ()",
        "a in (b,)",
        "a=b,",
        ",a=b",
        "!",
        "a=(b)",
        "a=b=c",
        "-a=b",
        "a=-b",
        "a/b/c=d",
        "a=" + "x" * 64,
        "Upper.Case/a=b",
        "a=b)",
    ],
)
def test_invalid_selectors_are_refused(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


@pytest.mark.parametrize("text", [HPA_SELECTOR, COMPLEX])
def test_every_prefix_parses_or_is_refused_cleanly(text: str) -> None:
    """Byte by byte: a cut selector never raises anything but SelectorError."""
    for end in range(len(text) + 1):
        with contextlib.suppress(SelectorError):
            parse_selector(text[:end])


@pytest.mark.parametrize("trailing", [")", " )", "(", " b", "=", ",,"])
def test_trailing_bytes_are_refused(trailing: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(HPA_SELECTOR + trailing)
