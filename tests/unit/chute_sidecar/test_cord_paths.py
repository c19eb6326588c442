"""Cord paths: the sidecar applies the CRD's rule, over the shared corpus tests/data/cord_paths.yaml.
A path the CRD accepted must never make the sidecar exit (the pod would crash-loop); one it refuses
is refused here too, with a usage error, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chute_sidecar.config import env_name, parse_config
from chute_sidecar.routes import RouteTable, parse_cord

CORPUS = yaml.safe_load((Path(__file__).resolve().parents[2] / "data" / "cord_paths.yaml").read_text())
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "*")


@pytest.mark.parametrize("path", CORPUS["valid"])
def test_a_valid_cord_path_is_accepted(path: str) -> None:
    for method in METHODS:
        assert parse_cord(f"{method} {path}").label == path
    # as the operator renders it, and from the environment (entries separated by ';' or newlines)
    assert parse_config(["--upstream", "http://x", f"--cord=POST {path}"], env={}).cords == (f"POST {path}",)
    env = {env_name("--cord"): f"POST {path};GET {path}\nPUT {path}; DELETE {path}"}
    config = parse_config(["--upstream", "http://x"], env=env)
    assert config.cords == (f"POST {path}", f"GET {path}", f"PUT {path}", f"DELETE {path}")
    table = RouteTable.from_strings(config.cords)
    request_path = path.rstrip("*") + ("x" if path.endswith("*") else "")
    assert table.match("POST", request_path) == path


@pytest.mark.parametrize("path", CORPUS["invalid"])
def test_an_invalid_cord_path_is_refused_with_a_usage_error(path: str) -> None:
    with pytest.raises(ValueError, match="cord"):
        parse_cord(f"POST {path}")
    with pytest.raises(SystemExit) as exc:
        parse_config(["--upstream", "http://x", f"--cord=POST {path}"], env={})
    assert exc.value.code == 2
