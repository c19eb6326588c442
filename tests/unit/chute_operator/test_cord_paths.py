"""One rule for cord paths, over the corpus the sidecar's tests read too (tests/data/cord_paths.yaml)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from chute_operator.api import Cord
from chute_operator.crd import openapi_schema

CORPUS = yaml.safe_load((Path(__file__).resolve().parents[2] / "data" / "cord_paths.yaml").read_text())


def _crd_accepts(path: str) -> bool:
    """The CRD's pattern as the API server applies it (Go regexp: ``$`` is the end of the text)."""
    cords = openapi_schema()["properties"]["spec"]["properties"]["cords"]
    pattern = str(cords["items"]["properties"]["path"]["pattern"])
    assert pattern.startswith("^")
    assert pattern.endswith("$")
    return re.fullmatch(pattern[1:-1], path) is not None


@pytest.mark.parametrize("path", CORPUS["valid"])
def test_a_valid_cord_path_is_accepted(path: str) -> None:
    assert Cord(path=path).path == path
    assert _crd_accepts(path)


@pytest.mark.parametrize("path", CORPUS["invalid"])
def test_an_invalid_cord_path_is_refused_offline_and_by_the_crd_pattern(path: str) -> None:
    with pytest.raises(ValidationError, match="path"):
        Cord(path=path)
    assert not _crd_accepts(path)
