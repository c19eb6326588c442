"""The sidecar arguments the renderer writes are exactly what the sidecar accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chute_operator.gpus import builtin_catalog
from chute_operator.render import render
from chute_operator.validation import parse_chute
from chute_operator.workload import ADMIN_PORT, METRICS_PORT, SIDECAR_PORT, RenderOptions
from chute_sidecar.admin import DRAIN_TOKEN_HEADER
from chute_sidecar.config import parse_config

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_rendered_sidecar_args_parse(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    document["metadata"]["uid"] = "5d6e2a4c-0000-4000-8000-00000000abcd"  # as the API server sets it
    chute = parse_chute(document)
    deployment = next(
        m for m in render(chute, RenderOptions(catalog=builtin_catalog())) if m["kind"] == "Deployment"
    )
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
