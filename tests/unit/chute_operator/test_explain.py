"""``chute-operator explain``: eligible GPU types and why not, and which nodes could take a replica."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from chute_operator.api import NodeSelector
from chute_operator.explain import explain_gpus, explain_nodes, pod_requests
from chute_operator.explain_cli import explain_command
from chute_operator.gpus import NoEligibleGpu, builtin_catalog, eligible_gpus
from chute_operator.render import render
from chute_operator.render_cli import render_command
from chute_operator.validation import parse_chute
from chute_operator.workload import RenderOptions
from tests.invalid_chutes import BASE, INVALID, chute_with

ROOT = Path(__file__).resolve().parents[3]
CATALOG = builtin_catalog()
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def selector(**fields: Any) -> NodeSelector:
    return NodeSelector.model_validate(fields)


# -- GPU types (offline) ------------------------------------------------------------------------


def test_every_gpu_type_has_a_verdict_and_the_eligible_ones_are_those_rendering_uses() -> None:
    chosen = selector(gpuCount=1, minVramGbPerGpu=48, exclude=["h20"])
    verdicts = explain_gpus(chosen, CATALOG)
    assert len(verdicts) == len(CATALOG)
    assert [v.gpu.name for v in verdicts if v.eligible] == [g.name for g in eligible_gpus(chosen, CATALOG)]
    reasons = {v.gpu.name: v.reason for v in verdicts}
    assert reasons["l4"] == "24 GB < spec.nodeSelector.minVramGbPerGpu 48 GB"
    assert reasons["h20"] == "in spec.nodeSelector.exclude"
    assert reasons["h100_sxm"] is None


def test_include_is_named_as_the_reason_for_the_rest() -> None:
    verdicts = explain_gpus(selector(include=["l4", "h100_sxm"]), CATALOG)
    assert [v.gpu.name for v in verdicts if v.eligible] == ["l4", "h100_sxm"]
    assert {v.reason for v in verdicts if not v.eligible} == {
        "not in spec.nodeSelector.include [l4, h100_sxm]"
    }


def test_a_cpu_only_chute_needs_no_gpu_type() -> None:
    assert explain_gpus(selector(gpuCount=0), CATALOG) == []


def test_unknown_gpu_names_fail_as_rendering_fails() -> None:
    with pytest.raises(NoEligibleGpu, match=r"spec.nodeSelector.exclude: unknown GPU zz"):
        explain_gpus(selector(exclude=["zz"]), CATALOG)


# -- requests -----------------------------------------------------------------------------------


def test_pod_requests_add_containers_and_sidecars_and_take_the_largest_init_step() -> None:
    spec = {
        "initContainers": [
            {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "download", "resources": {"requests": {"cpu": "4", "memory": "1Gi"}}},
        ],
        "containers": [
            {
                "name": "model",
                "resources": {"requests": {"cpu": "2"}, "limits": {"memory": "8Gi", "nvidia.com/gpu": 2}},
            },
        ],
    }
    assert pod_requests(spec) == {
        "cpu": Decimal("4.1"),  # the download step beside the sidecar beats 2.1
        "memory": Decimal(8 * 2**30),  # requests default to limits
        "nvidia.com/gpu": Decimal(2),
    }


# -- nodes --------------------------------------------------------------------------------------


def node(name: str, product: str | None = None, gpus: int = 0, **extra: Any) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name} | ({"nvidia.com/gpu.product": product} if product else {})
    allocatable = {"cpu": "47500m", "memory": "190Gi", "pods": "110"}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    manifest: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [dict(GPU_TAINT)]} if gpus else {},
        "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    for key, value in extra.items():
        manifest[key] = {**manifest[key], **value}
    return manifest


def pod_on(node_name: str, gpus: int, phase: str = "Running") -> dict[str, Any]:
    container = {
        "name": "c",
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"cpu": "1"}},
    }
    return {"spec": {"nodeName": node_name, "containers": [container]}, "status": {"phase": phase}}


def pod_spec_of(document: dict[str, Any]) -> dict[str, Any]:
    manifests = render(parse_chute(document), RenderOptions(catalog=CATALOG))
    spec: dict[str, Any] = next(m for m in manifests if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    return spec


def verdicts_by_name(
    document: dict[str, Any], nodes: list[dict[str, Any]], pods: list[dict[str, Any]]
) -> dict[str, tuple[str, ...]]:
    chute = parse_chute(document)
    verdicts = explain_nodes(pod_spec_of(document), nodes, pods, CATALOG, chute.spec.node_selector)
    return {v.name: v.reasons for v in verdicts}


def test_each_node_that_cannot_take_a_replica_says_why() -> None:
    chute = chute_with(
        nodeSelector={"gpuCount": 2, "minVramGbPerGpu": 48}, resources={"cpu": "8", "memory": "48Gi"}
    )
    nodes = [
        node("h100-free", "NVIDIA-H100-80GB-HBM3", 8),
        node("h100-full", "NVIDIA-H100-80GB-HBM3", 8),
        node("h100-one-left", "NVIDIA-H100-80GB-HBM3", 8),
        node("l4", "NVIDIA-L4", 4),
        node("odd", "NVIDIA-Mystery-GPU", 8),
        node("cpu"),
        node("cordoned", "NVIDIA-H100-80GB-HBM3", 8, spec={"unschedulable": True}),
        node(
            "tainted",
            "NVIDIA-L40S",
            4,
            spec={"taints": [GPU_TAINT, {"key": "maintenance", "effect": "NoExecute"}]},
        ),
        node(
            "down",
            "NVIDIA-A100-SXM4-80GB",
            8,
            status={"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]},
        ),
    ]
    pods = [
        pod_on("h100-full", 4),
        pod_on("h100-full", 4),
        pod_on("h100-full", 8, phase="Succeeded"),  # finished pods free their GPUs
        pod_on("h100-one-left", 7),
    ]
    reasons = verdicts_by_name(chute, nodes, pods)
    assert reasons["h100-free"] == ()
    assert reasons["h100-full"] == ("nvidia.com/gpu: needs 2, 0 free of 8 allocatable",)
    assert reasons["h100-one-left"] == ("nvidia.com/gpu: needs 2, 1 free of 8 allocatable",)
    assert reasons["l4"] == (
        "GPU l4 (nvidia.com/gpu.product=NVIDIA-L4) not eligible: 24 GB < spec.nodeSelector.minVramGbPerGpu 48 GB",  # noqa: E501
    )
    assert reasons["odd"] == (
        "nvidia.com/gpu.product=NVIDIA-Mystery-GPU is no GPU of the catalog (GPU profile gfd)",
    )
    assert reasons["cpu"] == (
        "CPU-only: no nvidia.com/gpu.product label (GPU profile gfd)",
        "CPU-only: no nvidia.com/gpu allocatable",
    )
    assert reasons["cordoned"] == ("cordoned (spec.unschedulable)",)
    assert reasons["tainted"] == ("taint maintenance:NoExecute not tolerated",)
    assert reasons["down"] == ("not Ready (NodeStatusUnknown)",)


def test_nodes_that_fit_come_first() -> None:
    chute = chute_with(nodeSelector={"gpuCount": 1})
    verdicts = explain_nodes(
        pod_spec_of(chute),
        [node("b-cpu"), node("a-h100", "NVIDIA-H100-80GB-HBM3", 8)],
        [],
        CATALOG,
        selector(),
    )
    assert [(v.name, v.fits) for v in verdicts] == [("a-h100", True), ("b-cpu", False)]


def test_a_cpu_only_chute_is_kept_off_gpu_nodes_by_their_taint_and_needs_cpu() -> None:
    chute = chute_with(nodeSelector={"gpuCount": 0}, resources={"cpu": "64", "memory": "1Gi"})
    reasons = verdicts_by_name(chute, [node("cpu"), node("h100", "NVIDIA-H100-80GB-HBM3", 8)], [])
    assert reasons["cpu"] == ("cpu: needs 64.1, 47.5 free of 47.5 allocatable",)  # with the sidecar's 100m
    assert "taint nvidia.com/gpu=present:NoSchedule not tolerated" in reasons["h100"]


def test_the_chutes_own_affinity_and_node_selector_are_explained() -> None:
    chute = chute_with(
        nodeSelector={"gpuCount": 1},
        pod={
            "nodeSelector": {"topology.kubernetes.io/zone": "a"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}
                        ]
                    }
                }
            },
        },
    )
    h100 = node("h100", "NVIDIA-H100-80GB-HBM3", 8)
    reasons = verdicts_by_name(chute, [h100], [])
    assert reasons["h100"] == (
        "nodeSelector topology.kubernetes.io/zone=a (node has no such label)",
        "node affinity: tier In ['gold'] (node has no such label)",
    )


# -- the command --------------------------------------------------------------------------------


def test_the_command_prints_every_gpu_verdict_for_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert explain_command(str(ROOT / "examples" / "vllm-chat.yaml")) == 0
    out = capsys.readouterr().out
    assert out.startswith("Chute qwen3-8b-chat: 1 GPU(s) per replica, minVramGbPerGpu 24")
    assert "  eligible  l4 " in out
    assert "  no        a4000 " in out
    assert "16 GB < spec.nodeSelector.minVramGbPerGpu 24 GB" in out


def test_a_selector_that_admits_nothing_fails_with_renders_error_and_still_shows_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "chute.yaml"
    path.write_text(yaml.safe_dump(chute_with(nodeSelector={"gpuCount": 1, "minVramGbPerGpu": 500})))
    assert render_command(str(path)) == 1
    render_errors = capsys.readouterr().err
    assert explain_command(str(path)) == 1
    captured = capsys.readouterr()
    assert captured.err == render_errors
    assert "admits no GPU" in captured.err
    assert "192 GB < spec.nodeSelector.minVramGbPerGpu 500 GB" in captured.out


@pytest.mark.parametrize(
    ("case", "document", "field"), [(c, d, f) for c, d, f in INVALID if "nodeSelector" in str(d)][:6]
)
def test_bad_input_gets_the_same_errors_as_render(
    case: str, document: dict[str, Any], field: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(document))
    assert render_command(str(path)) == 1
    render_errors = capsys.readouterr().err
    assert explain_command(str(path)) == 1
    assert capsys.readouterr().err == render_errors
    assert field in render_errors


@pytest.mark.parametrize("source", ["/nonexistent/chute.yaml", "EMPTY"])
def test_unreadable_or_empty_input_is_an_error(
    source: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if source == "EMPTY":
        source = str(tmp_path / "empty.yaml")
        Path(source).write_text("")
    assert explain_command(source) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_a_valid_base_chute_explains_with_exit_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(copy.deepcopy(BASE)))
    assert explain_command(str(path)) == 0
    assert "GPU types: " in capsys.readouterr().out
