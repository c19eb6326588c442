"""The sidecar arguments the renderer writes are exactly what the sidecar accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chute_operator.api.spec import CORD_PATH_PATTERN
from chute_operator.crd import openapi_schema
from chute_operator.gpus import builtin_catalog
from chute_operator.render import render
from chute_operator.validation import parse_chute
from chute_operator.workload import RenderOptions
from chute_shared.headers import DRAIN_TOKEN_HEADER
from chute_shared.ports import ADMIN_PORT, METRICS_PORT, SIDECAR_PORT
from chute_sidecar.config import Config, parse_config
from chute_sidecar.routes import CORD_PATH_PATTERN as SIDECAR_CORD_PATH_PATTERN
from chute_sidecar.routes import MAX_CORD_PATH
from tests.invalid_chutes import chute_with

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CORD_PATHS = yaml.safe_load((ROOT / "tests" / "data" / "cord_paths.yaml").read_text())
OPTIONS = RenderOptions(catalog=builtin_catalog(), drain_key=b"k" * 32)


def _sidecar_config_for(cords: list[dict[str, str]]) -> Config:
    """Render a Chute with these cords and start the sidecar's flag parser on its container."""
    document = chute_with(cords=cords)
    document["metadata"]["uid"] = "5d6e2a4c-0000-4000-8000-00000000abcd"
    deployment = next(m for m in render(parse_chute(document), OPTIONS) if m["kind"] == "Deployment")
    sidecar = deployment["spec"]["template"]["spec"]["initContainers"][0]
    env = {var["name"]: var["value"] for var in sidecar.get("env", [])}
    return parse_config(sidecar["args"], env=env)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_rendered_sidecar_args_parse(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    document["metadata"]["uid"] = "5d6e2a4c-0000-4000-8000-00000000abcd"  # as the API server sets it
    chute = parse_chute(document)
    deployment = next(m for m in render(chute, OPTIONS) if m["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    sidecar = pod["initContainers"][0]
    assert sidecar["command"] == ["chute-operator", "sidecar"]
    env = {var["name"]: var["value"] for var in sidecar.get("env", [])}
    config = parse_config(sidecar["args"], env=env)
    model_port = pod["containers"][0]["ports"][0]["containerPort"]
    assert config.upstream == f"http://127.0.0.1:{model_port}"
    assert (config.port, config.metrics_port, config.admin_port) == (SIDECAR_PORT, METRICS_PORT, ADMIN_PORT)
    hook = pod["containers"][0]["lifecycle"]["preStop"]["httpGet"]
    assert hook["port"] == config.admin_port
    assert config.drain_token is not None
    assert hook["httpHeaders"] == [{"name": DRAIN_TOKEN_HEADER, "value": config.drain_token}]
    assert config.concurrency == (chute.spec.concurrency or config.concurrency)
    assert len(config.cords) == sum(1 for a in sidecar["args"] if a.startswith("--cord="))
    assert config.restrict_to_cords == chute.spec.restrict_to_cords
    assert config.shutdown_timeout_seconds + config.drain_seconds < pod["terminationGracePeriodSeconds"]


def test_the_sidecar_applies_the_crds_cord_path_rule() -> None:
    assert SIDECAR_CORD_PATH_PATTERN == CORD_PATH_PATTERN
    cord = openapi_schema()["properties"]["spec"]["properties"]["cords"]["items"]["properties"]["path"]
    assert (cord["pattern"], cord["maxLength"]) == (CORD_PATH_PATTERN, MAX_CORD_PATH)


@pytest.mark.parametrize("path", CORD_PATHS["valid"])
def test_every_valid_cord_path_in_the_corpus_starts_the_sidecar(path: str) -> None:
    methods = ("GET", "POST", "PUT", "PATCH", "DELETE")
    config = _sidecar_config_for([{"path": path, "method": method} for method in methods])
    assert config.cords == tuple(f"{method} {path}" for method in methods)


@settings(max_examples=150, deadline=None)
@given(st.from_regex(CORD_PATH_PATTERN, fullmatch=True).filter(lambda path: len(path) <= MAX_CORD_PATH))
def test_any_cord_path_the_crd_accepts_starts_the_sidecar(path: str) -> None:
    """A cord the CRD let through must never make the sidecar exit: the pod would crash-loop."""
    config = _sidecar_config_for([{"path": path, "method": "POST"}])
    assert config.cords == (f"POST {path}",)
