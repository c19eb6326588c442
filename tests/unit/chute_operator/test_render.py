"""Rendering: every example and template becomes valid Kubernetes objects; invalid Chutes are refused."""

from __future__ import annotations

import copy
import hashlib
import hmac
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chute_operator.api import TEMPLATES, Chute
from chute_operator.api.spec import RESERVED_PORTS
from chute_operator.drift import stamped
from chute_operator.engines import ENGINES
from chute_operator.gpus import NoEligibleGpu, builtin_catalog
from chute_operator.render import DesiredManifests, render, render_workload
from chute_operator.validation import InvalidChute, parse_chute
from chute_operator.workload import RenderOptions, drain_token, resolve
from chute_shared.ports import ADMIN_PORT, METRICS_PORT, SIDECAR_PORT
from tests.invalid_chutes import BASE, INVALID, chute_with

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
KUBERNETES_VERSION = "1.36.0"
DRAIN_KEY = bytes(range(32))
OPTIONS = RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:test", drain_key=DRAIN_KEY)


def _validate_upstream(manifests: list[dict[str, Any]]) -> None:
    """Every built-in kind against the upstream Kubernetes OpenAPI schema (strict: no unknown fields);
    the Gateway API's and the inference extension's kinds meet their CRDs in tests/e2e/test_expose.py."""
    for manifest in manifests:
        if manifest["apiVersion"].startswith("monitoring.coreos.com"):
            assert manifest["spec"]["endpoints"][0]["port"] == "metrics"
            continue
        if manifest["kind"] in ("HTTPRoute", "InferencePool"):
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def _chute(**spec: Any) -> Chute:
    document = chute_with(**spec)
    document["metadata"]["uid"] = "0c4a1f3e-0000-4000-8000-000000000001"
    document["metadata"]["namespace"] = "models"
    return parse_chute(document)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_renders_valid_objects(path: Path) -> None:
    manifests = render(parse_chute(yaml.safe_load(path.read_text())), OPTIONS)
    _validate_upstream(manifests)
    assert {"Deployment", "Service"} <= set(_by_kind(manifests))


def test_examples_cover_the_required_shapes() -> None:
    chutes = [parse_chute(yaml.safe_load(p.read_text())) for p in EXAMPLES]
    templates = {c.spec.template for c in chutes}
    assert {"vllm", "sglang", "tei", "diffusion", "custom"} <= templates
    assert any(c.spec.template == "sglang" and c.spec.node_selector.gpu_count == 2 for c in chutes)


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders(template: str) -> None:
    manifests = render(_chute(template=template), OPTIONS)
    _validate_upstream(manifests)
    engine = ENGINES[template]
    model = _by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert model["ports"][0]["containerPort"] == engine.port
    assert model.get("command", []) == list(engine.command)


def test_deployment_asks_for_eligible_gpus_only() -> None:
    manifests = render(
        _chute(nodeSelector={"gpuCount": 4, "minVramGbPerGpu": 80, "exclude": ["h800"]}), OPTIONS
    )
    pod = _by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    model = pod["containers"][0]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 4
    expression = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]
    assert expression["key"] == "nvidia.com/gpu.product"
    assert "NVIDIA-H100-80GB-HBM3" in expression["values"]
    assert "NVIDIA-H800" not in expression["values"]
    assert "NVIDIA-L40S" not in expression["values"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "--tensor-parallel-size" in model["args"]


def test_cpu_only_chute_has_no_gpu_anything() -> None:
    pod = _by_kind(render(_chute(nodeSelector={"gpuCount": 0}), OPTIONS))["Deployment"]["spec"]["template"][
        "spec"
    ]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})
    assert "affinity" not in pod
    assert "tolerations" not in pod


def test_user_affinity_is_kept_and_gpu_term_added_to_each() -> None:
    user = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                ]
            }
        },
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
    }
    pod = _by_kind(render(_chute(pod={"affinity": user}), OPTIONS))["Deployment"]["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert [len(t["matchExpressions"]) for t in terms] == [2, 2]
    assert "podAntiAffinity" in pod["affinity"]


def test_sidecar_is_a_native_sidecar_with_the_chutes_settings() -> None:
    deployment = _by_kind(render(_chute(concurrency=7, restrictToCords=True), OPTIONS))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    sidecar = pod["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == "chute-operator:test"
    assert "--concurrency=7" in sidecar["args"]
    assert "--restrict-to-cords" in sidecar["args"]
    assert "--cord=POST /v1/chat/completions" in sidecar["args"]
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_sidecar_is_probed_every_second_and_taken_out_after_five_failures() -> None:
    """A woken pod is Ready within a second of its model; a model that stops answering, or a drain,
    takes it out of the Service after about five seconds, not at the first slow answer; the model
    starts beside the sidecar, not after it."""
    sidecar = _by_kind(render(_chute(), OPTIONS))["Deployment"]["spec"]["template"]["spec"]["initContainers"][
        0
    ]
    readiness = sidecar["readinessProbe"]
    assert (readiness["periodSeconds"], readiness["failureThreshold"]) == (1, 5)
    assert readiness["timeoutSeconds"] >= 2
    # no startup probe: the model container starts once the sidecar runs, not after it answered
    assert "startupProbe" not in sidecar


def test_probes_never_kill_a_loading_model() -> None:
    model = _by_kind(render(_chute(health={"startupTimeoutSeconds": 3600}), OPTIONS))["Deployment"]["spec"][
        "template"
    ]["spec"]["containers"][0]
    startup = model["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 3600
    assert startup["timeoutSeconds"] > 1
    assert startup["periodSeconds"] == 1  # Ready within a second of the model (a woken pod's wait)
    assert model["livenessProbe"]["httpGet"]["port"] == 9091
    assert "readinessProbe" not in model


def _pod(
    chute: Chute, options: RenderOptions = OPTIONS
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The Service, the sidecar container and the model container."""
    manifests = _by_kind(render(chute, options))
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    return manifests["Service"], pod["initContainers"][0], pod["containers"][0]


def test_probes_and_drain_are_on_a_port_the_service_does_not_publish() -> None:
    service, sidecar, model = _pod(_chute())
    assert {p["name"]: p["containerPort"] for p in sidecar["ports"]} == {
        "http": 8080,
        "metrics": 9090,
        "admin": 9091,
    }
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 80, "http"),
        ("metrics", 9090, "metrics"),
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        assert sidecar[probe]["httpGet"]["port"] == "admin"
    # a model container's probes and hooks cannot name the sidecar's ports: the number
    for probe in ("startupProbe", "livenessProbe"):
        assert model[probe]["httpGet"]["port"] == 9091
    assert model["lifecycle"]["preStop"]["httpGet"]["port"] == 9091
    assert "--metrics-port=9090" in sidecar["args"]
    assert "--admin-port=9091" in sidecar["args"]


def test_the_crd_reserves_the_sidecars_ports() -> None:
    assert RESERVED_PORTS == (SIDECAR_PORT, METRICS_PORT, ADMIN_PORT)


def test_model_stops_only_after_the_sidecar_drained_and_only_the_hook_can_drain() -> None:
    _, sidecar, model = _pod(_chute())
    hook = model["lifecycle"]["preStop"]["httpGet"]
    assert hook["path"] == "/drainz"
    [header] = hook["httpHeaders"]
    assert header["name"] == "X-Chute-Drain-Token"
    token = header["value"]
    assert len(token) >= 32
    env = {var["name"]: var["value"] for var in sidecar["env"]}
    assert env["CHUTE_SIDECAR_DRAIN_TOKEN"] == token
    assert not any(token in arg for arg in sidecar["args"])  # not in the node's process list
    other = chute_with()
    other["metadata"]["uid"] = "0c4a1f3e-0000-4000-8000-000000000002"
    other_model = _pod(parse_chute(other))[2]
    assert other_model["lifecycle"]["preStop"]["httpGet"]["httpHeaders"][0]["value"] != token
    assert _pod(_chute())[2]["lifecycle"] == model["lifecycle"]  # stable: no writes on re-render


UID = "0c4a1f3e-0000-4000-8000-000000000001"


def test_the_drain_token_is_keyed_and_cannot_be_computed_from_the_uid_alone() -> None:
    """HMAC-SHA256 of the uid under the operator's drain key: the uid (in every child's
    ownerReferences, readable by whoever reads the Chute) is not enough to compute it."""
    chute = _chute()
    token = drain_token(chute, DRAIN_KEY)
    assert token is not None
    assert len(token) == 40
    assert token == hmac.new(DRAIN_KEY, f"drain/{UID}".encode(), hashlib.sha256).hexdigest()[:40]
    assert drain_token(chute, DRAIN_KEY) == token  # stable for the same key and uid
    assert drain_token(chute, bytes(32)) != token  # another key, another token
    unkeyed = hashlib.sha256(f"chute-operator/drain/{UID}".encode()).hexdigest()[:40]
    assert token != unkeyed  # what it was: anyone with the uid could compute it
    assert drain_token(chute, None) is None  # no key (offline render): no token
    assert drain_token(parse_chute(chute_with()), DRAIN_KEY) is None  # no uid (offline): none


def test_the_drain_key_comes_in_through_the_render_options_and_stays_out_of_their_repr() -> None:
    without = _pod(_chute(), replace(OPTIONS, drain_key=None))
    assert "httpHeaders" not in without[2]["lifecycle"]["preStop"]["httpGet"]
    assert "CHUTE_SIDECAR_DRAIN_TOKEN" not in {var["name"] for var in without[1].get("env", [])}
    first, again = render(_chute(), OPTIONS), render(_chute(), OPTIONS)
    assert first == again  # the same inputs, the same token: a re-render writes nothing
    assert repr(DRAIN_KEY) not in repr(OPTIONS)


def test_autoscaling_renders_an_hpa_and_leaves_replicas_to_it() -> None:
    manifests = _by_kind(render(_chute(minInstances=1, maxInstances=5, scalingThreshold=0.5), OPTIONS))
    assert "replicas" not in manifests["Deployment"]["spec"]
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
    assert hpa["metrics"][0]["pods"]["target"]["averageValue"] == "500m"
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_hpa_scales_up_as_soon_as_the_threshold_is_exceeded() -> None:
    """Chutes scales up when the average exceeds scalingThreshold: tolerance 0, not the HPA's 10 %."""
    chute = _chute(minInstances=1, maxInstances=5, scalingThreshold=0.5, shutdownAfterSeconds=900)
    behavior = _by_kind(render(chute, OPTIONS))["HorizontalPodAutoscaler"]["spec"]["behavior"]
    assert behavior["scaleUp"] == {"stabilizationWindowSeconds": 0, "tolerance": "0"}
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900
    older = replace(OPTIONS, hpa_exact_scale_up=False)
    behavior = _by_kind(render(chute, older))["HorizontalPodAutoscaler"]["spec"]["behavior"]
    assert behavior["scaleUp"] == {"stabilizationWindowSeconds": 0}


def test_fixed_scaling_sets_replicas_and_no_hpa() -> None:
    manifests = _by_kind(render(_chute(minInstances=2, maxInstances=2), OPTIONS))
    assert "HorizontalPodAutoscaler" not in manifests
    assert manifests["Deployment"]["spec"]["replicas"] == 2
    scaled = _by_kind(render(_chute(minInstances=2, maxInstances=2, replicas=0), OPTIONS))
    assert scaled["Deployment"]["spec"]["replicas"] == 0


def test_optional_children_follow_the_spec() -> None:
    kinds = set(_by_kind(render(_chute(), OPTIONS)))
    assert {"ServiceMonitor", "NetworkPolicy"} <= kinds
    kinds = set(
        _by_kind(render(_chute(monitoring={"serviceMonitor": False}, allowExternalEgress=True), OPTIONS))
    )
    assert kinds == {"Deployment", "Service", "NetworkPolicy"}  # it governs ingress either way


def test_children_are_owned_and_labelled() -> None:
    for manifest in render(_chute(), OPTIONS):
        owner = manifest["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["controller"]) == ("Chute", True)
        assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "chute-operator"
        assert manifest["metadata"]["namespace"] == "models"


def test_auth_mounts_the_secret_into_the_sidecar_only() -> None:
    pod = _by_kind(render(_chute(auth={"apiKeySecretRef": {"name": "keys", "key": "k"}}), OPTIONS))[
        "Deployment"
    ]["spec"]["template"]["spec"]
    assert "--api-key-file=/var/run/chutes/auth/k" in pod["initContainers"][0]["args"]
    assert any(v.get("secret", {}).get("secretName") == "keys" for v in pod["volumes"])
    assert all(m["name"] != "chute-api-key" for m in pod["containers"][0]["volumeMounts"])


def test_user_env_overrides_template_env_without_duplicates() -> None:
    model = _by_kind(
        render(_chute(env=[{"name": "HF_HOME", "value": "/x"}, {"name": "A", "value": "1"}]), OPTIONS)
    )["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert model["env"] == [{"name": "HF_HOME", "value": "/x"}, {"name": "A", "value": "1"}]


@pytest.mark.parametrize(("case", "document", "field"), INVALID, ids=[case for case, _, _ in INVALID])
def test_invalid_chutes_are_refused_naming_the_field(case: str, document: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidChute) as error:
        parse_chute(copy.deepcopy(document))
    assert field in str(error.value)


def test_impossible_gpu_selector_is_refused_by_render() -> None:
    with pytest.raises(NoEligibleGpu, match="minVramGbPerGpu=500"):
        render(_chute(nodeSelector={"minVramGbPerGpu": 500}), OPTIONS)


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chute_operator", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def test_render_cli_prints_multi_document_yaml_from_a_directory() -> None:
    result = _cli("render", "-f", str(ROOT / "examples"))
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert kinds.count("Deployment") == len(EXAMPLES)


def test_render_cli_reads_stdin_and_reports_bad_input_without_traceback() -> None:
    bad = yaml.safe_dump(chute_with(minInstances=4, maxInstances=2, concurrency=0))
    result = _cli("render", "-f", "-", stdin=bad)
    assert result.returncode == 1
    assert "spec.concurrency" in result.stderr
    assert "Traceback" not in result.stderr
    good = _cli("render", "-f", "-", stdin=yaml.safe_dump(BASE))
    assert good.returncode == 0, good.stderr


# --- property test: any valid spec renders to valid objects -----------------------------------

_catalog = builtin_catalog()
_quantities = st.sampled_from(["1", "500m", "4Gi", "64Gi", "100M", "2"])
_cords = st.lists(
    st.fixed_dictionaries(
        {
            "path": st.from_regex(r"/[a-z0-9/_-]{0,20}", fullmatch=True),
            "method": st.sampled_from(["GET", "POST"]),
        },
        optional={"stream": st.booleans()},
    ),
    max_size=4,
    unique_by=lambda c: (c["path"], c["method"]),
)


@st.composite
def _specs(draw: st.DrawFn) -> dict[str, Any]:
    template = draw(st.sampled_from(TEMPLATES))
    gpu_count = draw(st.integers(0, 8))
    min_vram = draw(st.sampled_from([0, 16, 24, 48, 80, 140]))
    selector: dict[str, Any] = {"gpuCount": gpu_count, "minVramGbPerGpu": min_vram}
    if gpu_count:
        # one vendor's GPUs (other vendors' are eligible only by name: test_gpu_profiles.py)
        fitting = sorted(
            n for n, gpu in _catalog.items() if gpu.vram_gb >= min_vram and gpu.vendor == "nvidia"
        )
        included = draw(st.lists(st.sampled_from(fitting), unique=True, max_size=4))
        if included:
            selector["include"] = included
        others = sorted(set(fitting) - set(included))
        excluded = draw(st.lists(st.sampled_from(others), unique=True, max_size=2)) if others else []
        if excluded and set(included or fitting) - set(excluded):
            selector["exclude"] = excluded
    max_instances = draw(st.integers(1, 100))
    spec: dict[str, Any] = {
        "image": draw(
            st.sampled_from(["vllm/vllm-openai:v0.10.1", "registry.local:5000/m@sha256:" + "a" * 64])
        ),
        "template": template,
        "nodeSelector": selector,
        "minInstances": draw(st.integers(0, max_instances)),
        "maxInstances": max_instances,
        "scalingThreshold": draw(st.floats(0.01, 1.0)),
        "shutdownAfterSeconds": draw(st.integers(60, 604800)),
        "allowExternalEgress": draw(st.booleans()),
        "restrictToCords": draw(st.booleans()),
        "monitoring": {"serviceMonitor": draw(st.booleans())},
        "engineArgs": draw(st.lists(st.text("abcdef-=0123 ", max_size=12), max_size=3)),
    }
    if template != "custom" or draw(st.booleans()):
        spec["model"] = {"name": "org/model"}
        if draw(st.booleans()):
            spec["model"]["revision"] = draw(st.from_regex(r"[0-9a-f]{40}", fullmatch=True))
    optional: dict[str, Any] = {
        "concurrency": st.integers(1, 256),
        "port": st.integers(1, 65535).filter(lambda p: p not in (8080, 9090, 9091)),
        "replicas": st.integers(0, 100),
        "cords": _cords,
        "resources": st.fixed_dictionaries(
            {}, optional={"cpu": _quantities, "memory": _quantities, "sharedMemory": _quantities}
        ),
        "cache": st.one_of(
            st.fixed_dictionaries({"size": _quantities}), st.just({"persistentVolumeClaim": "weights"})
        ),
        "service": st.fixed_dictionaries(
            {
                "type": st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]),
                "port": st.integers(1, 65535),
            }
        ),
        "auth": st.just({"apiKeySecretRef": {"name": "keys"}}),
        "allowedEgress": st.just([{"namespace": "mirrors", "podSelector": {"app": "m"}, "ports": [8080]}]),
        "health": st.fixed_dictionaries(
            {}, optional={"path": st.just("/ping"), "startupTimeoutSeconds": st.integers(30, 86400)}
        ),
        "env": st.just(
            [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ]
        ),
    }
    for field, strategy in optional.items():
        if draw(st.booleans()):
            spec[field] = draw(strategy)
    if spec["minInstances"] < max_instances:
        spec.pop("replicas", None)  # refused while autoscaled (kubectl scale is for fixed scaling)
    return spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_specs())
def test_any_valid_spec_renders_valid_objects(spec: dict[str, Any]) -> None:
    chute = parse_chute({"metadata": {"name": "prop", "namespace": "ns", "uid": "u-1"}, "spec": spec})
    manifests = render(chute, OPTIONS)
    _validate_upstream(manifests)
    kinds = _by_kind(manifests)
    assert ("HorizontalPodAutoscaler" in kinds) == (spec["minInstances"] < spec["maxInstances"])
    assert ("egress" in kinds["NetworkPolicy"]["spec"]) == (not spec["allowExternalEgress"])


def test_desired_manifests_render_again_only_when_the_workload_changes() -> None:
    """Rendering was most of the CPU of a reconcile that changes nothing (docs/benchmarks/operator.md)."""
    desired = DesiredManifests()
    workload = resolve(_chute(), OPTIONS)
    first = desired.of(("models", "a"), workload)
    assert first == [stamped(m) for m in render_workload(workload)]
    first[0]["metadata"]["name"] = "changed by a caller"
    assert desired.of(("models", "a"), resolve(_chute(), OPTIONS)) == [
        stamped(m) for m in render_workload(workload)
    ]
    assert desired.renders == 1
    changed = resolve(_chute(image="vllm/vllm-openai:v0.11.0"), OPTIONS)
    assert (
        _by_kind(desired.of(("models", "a"), changed))["Deployment"]
        == _by_kind([stamped(m) for m in render_workload(changed)])["Deployment"]
    )
    assert desired.renders == 2
    desired.forget(("models", "a"))
    desired.of(("models", "a"), changed)
    assert desired.renders == 3


def test_the_children_share_no_object_with_the_workload() -> None:
    """The children are built from the Workload's own lists and dicts: a caller that changes what it
    got changes neither the Workload nor the next Chute's children."""
    workload = resolve(_chute(env=[{"name": "A", "value": "1"}]), OPTIONS)
    before = copy.deepcopy(workload)
    first = _by_kind(render_workload(workload))
    first["Deployment"]["metadata"]["labels"]["x"] = "y"
    first["Deployment"]["spec"]["selector"]["matchLabels"]["x"] = "y"
    first["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B"})
    first["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"].clear()
    first["NetworkPolicy"]["spec"]["ingress"][-1]["from"].clear()
    assert workload == before
    assert render_workload(workload) == render_workload(before)
