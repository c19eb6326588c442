"""Issue 28: a Chute's request timeout and body limit (items 4) and the engine metrics an endpoint
picker reads on the metrics port (item 2), as the operator renders them."""

from __future__ import annotations

from typing import Any

import pytest

from chute_operator.gpus import builtin_catalog
from chute_operator.settings import Settings
from chute_operator.validation import InvalidChute
from chute_operator.wiring import PeerSelector
from chute_operator.workload import RenderOptions, Workload, resolve, route_timeouts
from chute_shared.limits import MAX_BODY_BYTES, REQUEST_TIMEOUT_SECONDS
from chute_shared.ports import METRICS_PORT
from tests.unit.chute_operator.test_network_policy import PROMETHEUS, _policy
from tests.unit.chute_operator.test_render import _chute

OPTIONS = RenderOptions(catalog=builtin_catalog(), sidecar_image="repo:sidecar-now")
VLLM: dict[str, Any] = {"template": "vllm", "model": {"name": "org/model"}}


def _workload(sidecar_image: str | None = None, **spec: Any) -> Workload:
    return resolve(_chute(**spec), OPTIONS, sidecar_image=sidecar_image)


def _flags(workload: Workload, name: str) -> list[str]:
    return [arg.partition("=")[2] for arg in workload.sidecar_args if arg.startswith(f"--{name}=")]


def test_the_defaults_are_todays_limits_and_pass_no_flag() -> None:
    """A Chute that leaves them alone keeps its pod template: the sidecar's defaults are the same."""
    workload = _workload()
    assert (workload.request_timeout_seconds, workload.max_request_body_bytes) == (600, 64 * 1024 * 1024)
    assert (REQUEST_TIMEOUT_SECONDS, MAX_BODY_BYTES) == (600, 64 * 1024 * 1024)
    assert _flags(workload, "request-timeout-seconds") == _flags(workload, "max-body-bytes") == []


def test_a_chutes_limits_become_the_sidecars_flags() -> None:
    workload = _workload(requestTimeoutSeconds=3600, maxRequestBodyBytes=256 * 1024 * 1024)
    assert _flags(workload, "request-timeout-seconds") == ["3600"]
    assert _flags(workload, "max-body-bytes") == [str(256 * 1024 * 1024)]
    older = _workload("repo:sidecar-before", requestTimeoutSeconds=3600)
    assert _flags(older, "request-timeout-seconds") == ["3600"], "every sidecar knows these flags"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("requestTimeoutSeconds", 0),
        ("requestTimeoutSeconds", 86401),
        ("maxRequestBodyBytes", 1023),
        ("maxRequestBodyBytes", 1024**3 + 1),
    ],
)
def test_limits_out_of_bounds_are_refused(field: str, value: int) -> None:
    with pytest.raises(InvalidChute, match=rf"spec\.{field}"):
        _chute(**{field: value})


def test_route_timeouts_follow_the_chutes_request_timeout() -> None:
    """What item 1's HTTPRoute renders: the backend's try and the whole request, a margin beyond the
    sidecar's (which answers first), plus what the activator may hold the request at zero."""
    assert route_timeouts(_workload()) == {"request": "605s", "backendRequest": "605s"}
    long = _workload(requestTimeoutSeconds=3600)
    assert route_timeouts(long, held_seconds=300) == {"request": "3905s", "backendRequest": "3605s"}


def test_the_vllm_templates_relay_the_engines_metrics_others_opt_in() -> None:
    assert _flags(_workload(**VLLM), "engine-metrics-path") == ["/metrics"]
    embedding = {**VLLM, "template": "embedding"}
    assert _flags(_workload(**embedding), "engine-metrics-path") == ["/metrics"]
    for template in ("sglang", "tei", "custom", "diffusion"):
        assert _flags(_workload(template=template, model={"name": "m"}), "engine-metrics-path") == []
    custom = _workload(template="custom", monitoring={"engineMetricsPath": "/metrics"})
    assert _flags(custom, "engine-metrics-path") == ["/metrics"]
    off = _workload(**VLLM, monitoring={"engineMetricsPath": ""})
    assert (off.engine_metrics_path, _flags(off, "engine-metrics-path")) == (None, [])
    with pytest.raises(InvalidChute, match=r"spec\.monitoring\.engineMetricsPath"):
        _chute(monitoring={"engineMetricsPath": "metrics"})


def test_a_chute_that_keeps_an_older_sidecar_is_not_given_the_new_flag() -> None:
    """The pods keep the sidecar they have (sidecars.py): it does not know --engine-metrics-path."""
    assert _flags(_workload("repo:sidecar-before", **VLLM), "engine-metrics-path") == []
    assert _flags(_workload("repo:sidecar-now", **VLLM), "engine-metrics-path") == ["/metrics"]


def test_no_endpoint_picker_reaches_the_metrics_port_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env({}).endpoint_pickers() == ()
    _, metrics = _policy(Settings.from_env({}).render_options(builtin_catalog()))["ingress"]
    assert metrics["from"] == [PROMETHEUS]
    environ = {"CHUTE_OPERATOR_ENDPOINT_PICKER_POD_SELECTOR": "app=epp"}
    same_namespace = Settings.from_env(environ)
    assert same_namespace.endpoint_pickers() == (PeerSelector(None, {"app": "epp"}),)
    _, metrics = _policy(same_namespace.render_options(builtin_catalog()))["ingress"]
    assert metrics == {
        "from": [PROMETHEUS, {"podSelector": {"matchLabels": {"app": "epp"}}}],
        "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
    }
    environ["CHUTE_OPERATOR_ENDPOINT_PICKER_NAMESPACE_SELECTOR"] = "team=gateway"
    elsewhere = Settings.from_env(environ)
    assert elsewhere.endpoint_pickers() == (PeerSelector({"team": "gateway"}, {"app": "epp"}),)
    environ["CHUTE_OPERATOR_ENDPOINT_PICKER_POD_SELECTOR"] = "app"
    with pytest.raises(ValueError, match="CHUTE_OPERATOR_ENDPOINT_PICKER_POD_SELECTOR"):
        Settings.from_env(environ)
