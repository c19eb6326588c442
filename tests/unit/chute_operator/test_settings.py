"""Every CHUTE_OPERATOR_* variable the flat settings read still sets the same value, in its group."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from chute_operator.gpus import builtin_catalog
from chute_operator.settings import Settings, variables_of

ROOT = Path(__file__).resolve().parents[3]

OLD_VARIABLES: dict[str, tuple[str, str, Any]] = {
    # variable (as the flat Settings named it): (field in its group, text set, value read)
    "CHUTE_OPERATOR_FIELD_MANAGER": ("reconciling.field_manager", "me", "me"),
    "CHUTE_OPERATOR_SIDECAR_IMAGE": ("render.sidecar_image", "sidecar:test", "sidecar:test"),
    "CHUTE_OPERATOR_GPU_CATALOG": ("render.gpu_catalog", "/etc/gpus.yaml", "/etc/gpus.yaml"),
    "CHUTE_OPERATOR_GPU_PROFILE": ("render.gpu_profile", "gke", "gke"),
    "CHUTE_OPERATOR_CLUSTER_DOMAIN": ("render.cluster_domain", "example.org", "example.org"),
    "CHUTE_OPERATOR_NAMESPACES": ("watching.namespaces", " a, b,,c ", ("a", "b", "c")),
    "CHUTE_OPERATOR_LEADER_ELECTION": ("leadership.enabled", "no", False),
    "CHUTE_OPERATOR_LEASE_NAME": ("leadership.name", "lease", "lease"),
    "CHUTE_OPERATOR_LEASE_NAMESPACE": ("leadership.namespace", "ops", "ops"),
    "CHUTE_OPERATOR_LEASE_DURATION_SECONDS": ("leadership.duration_seconds", "30", 30.0),
    "CHUTE_OPERATOR_LEASE_RENEW_SECONDS": ("leadership.renew_seconds", "3.5", 3.5),
    "CHUTE_OPERATOR_IDENTITY": ("leadership.identity", "pod-1", "pod-1"),
    "CHUTE_OPERATOR_WORKERS": ("reconciling.workers", "4", 4),
    "CHUTE_OPERATOR_CHILD_EVENT_DELAY_SECONDS": ("reconciling.child_event_delay_seconds", "0.1", 0.1),
    "CHUTE_OPERATOR_STATUS_WAIT_SECONDS": ("reconciling.status_wait_seconds", "0", 0.0),
    "CHUTE_OPERATOR_RESYNC_SECONDS": ("watching.resync_seconds", "60", 60.0),
    "CHUTE_OPERATOR_MONITORING_RECHECK_SECONDS": ("watching.monitoring_recheck_seconds", "7", 7.0),
    "CHUTE_OPERATOR_METRICS_PORT": ("process.metrics_port", "9000", 9000),
    "CHUTE_OPERATOR_HEALTH_PORT": ("process.health_port", "9001", 9001),
    "CHUTE_OPERATOR_LOG_FORMAT": ("process.log_format", "text", "text"),
    "CHUTE_OPERATOR_LOG_LEVEL": ("process.log_level", "debug", "DEBUG"),
    "CHUTE_OPERATOR_WATCH_SERVER_TIMEOUT": ("watching.server_timeout", "100", 100),
    "CHUTE_OPERATOR_WATCH_CLIENT_TIMEOUT": ("watching.client_timeout", "120", 120),
    "CHUTE_OPERATOR_HPA_SCALE_TO_ZERO": ("render.hpa_scale_to_zero", "true", True),
    "CHUTE_OPERATOR_HPA_EXACT_SCALE_UP": ("render.hpa_exact_scale_up", "false", False),
    "CHUTE_OPERATOR_DRAIN_KEY_SECRET": ("render.drain_key_secret", "my-drain-key", "my-drain-key"),
    "CHUTE_OPERATOR_SIDECAR_UPDATE_POLICY": ("render.sidecar_update_policy", "Automatic", "Automatic"),
    "CHUTE_OPERATOR_SIDECAR_MAX_CONCURRENT_UPDATES": ("render.sidecar_max_concurrent_updates", "3", 3),
    "CHUTE_OPERATOR_HF_ENDPOINT": ("render.hf_endpoint", "http://mirror:8080", "http://mirror:8080"),
    "CHUTE_OPERATOR_WEIGHTS_DOWNLOAD_DEADLINE_SECONDS": (
        "render.weights_download_deadline_seconds",
        "3600",
        3600,
    ),
    "CHUTE_OPERATOR_ANNOTATION_PREFIX": ("reconciling.annotation_prefix", "example.org", "example.org"),
    "CHUTE_OPERATOR_METRICS_API": ("metrics_api.enabled", "1", True),
    "CHUTE_OPERATOR_METRICS_API_PORT": ("metrics_api.port", "7443", 7443),
    "CHUTE_OPERATOR_METRICS_API_BIND_ADDRESS": ("metrics_api.bind_address", "127.0.0.1", "127.0.0.1"),
    "CHUTE_OPERATOR_METRICS_API_CERT_FILE": ("metrics_api.cert_file", "/c.crt", "/c.crt"),
    "CHUTE_OPERATOR_METRICS_API_KEY_FILE": ("metrics_api.key_file", "/c.key", "/c.key"),
    "CHUTE_OPERATOR_METRICS_API_CERT_SECRET": ("metrics_api.cert_secret", "", ""),
    "CHUTE_OPERATOR_METRICS_API_SERVICE": ("metrics_api.service", "co-metrics-api", "co-metrics-api"),
    "CHUTE_OPERATOR_METRICS_API_CERT_VALIDITY_DAYS": ("metrics_api.cert_validity_days", "90", 90),
    "CHUTE_OPERATOR_METRICS_API_CERT_RENEW_BEFORE_DAYS": ("metrics_api.cert_renew_before_days", "10", 10),
    "CHUTE_OPERATOR_METRICS_API_CERT_CHECK_SECONDS": ("metrics_api.cert_check_seconds", "5", 5.0),
    "CHUTE_OPERATOR_METRICS_API_SCRAPE_INTERVAL_SECONDS": ("metrics_api.scrape_interval_seconds", "4", 4.0),
    "CHUTE_OPERATOR_METRICS_API_SCRAPE_TIMEOUT_SECONDS": ("metrics_api.scrape_timeout_seconds", "0.5", 0.5),
    "CHUTE_OPERATOR_METRICS_API_SCRAPE_CONCURRENCY": ("metrics_api.scrape_concurrency", "8", 8),
    "CHUTE_OPERATOR_METRICS_API_MAX_AGE_SECONDS": ("metrics_api.max_age_seconds", "20", 20.0),
    "CHUTE_OPERATOR_METRICS_API_FORWARD_TO_V1BETA1": ("metrics_api.forward_to_v1beta1", "false", False),
    "CHUTE_OPERATOR_METRICS_API_TEST_ONLY_SIDECAR_ADDRESSES": (
        "metrics_api.test_only_sidecar_addresses",
        "/tmp/a.json",
        "/tmp/a.json",
    ),
    "CHUTE_OPERATOR_ACTIVATOR_SERVICE": ("scale_to_zero.activator_service", "ns/act", "ns/act"),
    "CHUTE_OPERATOR_ACTIVATOR_PORTS": ("scale_to_zero.activator_ports", "30-39", (30, 39)),
    "CHUTE_OPERATOR_ACTIVATOR_MAX_WAIT_SECONDS": ("scale_to_zero.activator_max_wait_seconds", "900", 900.0),
    "CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS": ("scale_to_zero.check_seconds", "2", 2.0),
    "CHUTE_OPERATOR_DNS_NAMESPACE_SELECTOR": ("network.dns_namespace_selector", "a=b", "a=b"),
    "CHUTE_OPERATOR_DNS_POD_SELECTOR": ("network.dns_pod_selector", "c=d", "c=d"),
    "CHUTE_OPERATOR_PROMETHEUS_NAMESPACE_SELECTOR": ("network.prometheus_namespace_selector", "", ""),
    "CHUTE_OPERATOR_PROMETHEUS_POD_SELECTOR": ("network.prometheus_pod_selector", "e=f", "e=f"),
    "CHUTE_OPERATOR_OPERATOR_NAMESPACE": ("network.operator_namespace", "ops", "ops"),
    "CHUTE_OPERATOR_OPERATOR_POD_SELECTOR": ("network.operator_pod_selector", "g=h", "g=h"),
    "CHUTE_OPERATOR_ENDPOINT_PICKER_POD_SELECTOR": ("network.endpoint_picker_pod_selector", "i=j", "i=j"),
    "CHUTE_OPERATOR_ENDPOINT_PICKER_NAMESPACE_SELECTOR": (
        "network.endpoint_picker_namespace_selector",
        "k=l",
        "k=l",
    ),
}


def _get(settings: Settings, path: str) -> Any:
    group, name = path.split(".")
    return getattr(getattr(settings, group), name)


def test_the_settings_read_exactly_the_old_variables() -> None:
    assert variables_of() == {name: path for name, (path, _, _) in OLD_VARIABLES.items()}


@pytest.mark.parametrize("name", sorted(OLD_VARIABLES))
def test_every_old_variable_sets_the_same_value(name: str) -> None:
    path, text, value = OLD_VARIABLES[name]
    assert _get(Settings.from_env({name: text}), path) == value
    assert _get(Settings.from_env({}), path) != value  # (the variable, not the default, set it)


def test_the_defaults_are_those_of_the_flat_settings() -> None:
    settings = Settings.from_env({})
    assert (settings.reconciling.workers, settings.watching.resync_seconds) == (16, 600.0)
    assert (settings.process.health_port, settings.process.metrics_port) == (8080, 8081)
    assert (settings.leadership.enabled, settings.render.hpa_exact_scale_up) == (True, True)
    assert (settings.metrics_api.enabled, settings.render.gpu_catalog) == (False, None)
    assert (settings.watching.namespaces, settings.leadership.namespace) == ((), "default")
    assert Settings.from_env({"CHUTE_OPERATOR_GPU_CATALOG": ""}).render.gpu_catalog is None


def test_the_pod_variables_are_fallbacks() -> None:
    pod = {"POD_NAMESPACE": "chutes-system", "POD_NAME": "operator-0"}
    settings = Settings.from_env(pod)
    assert settings.leadership.namespace == settings.network.operator_namespace == "chutes-system"
    assert settings.leadership.identity == "operator-0"
    ours = Settings.from_env(
        {
            **pod,
            "CHUTE_OPERATOR_LEASE_NAMESPACE": "leases",
            "CHUTE_OPERATOR_OPERATOR_NAMESPACE": "ops",
            "CHUTE_OPERATOR_IDENTITY": "me",
        }
    )
    assert (ours.leadership.namespace, ours.network.operator_namespace) == ("leases", "ops")
    assert ours.leadership.identity == "me"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("CHUTE_OPERATOR_WORKERS", "many"),
        ("CHUTE_OPERATOR_RESYNC_SECONDS", "1m"),
        ("CHUTE_OPERATOR_METRICS_API_PORT", ""),
        ("CHUTE_OPERATOR_DNS_POD_SELECTOR", "k8s-app"),
    ],
)
def test_a_bad_value_fails_naming_its_variable(name: str, text: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: text})


@pytest.mark.parametrize(("validity", "renew_before"), [("30", "30"), ("365", "400"), ("365", "-1")])
def test_the_certificate_is_renewed_within_its_validity(validity: str, renew_before: str) -> None:
    environ = {
        "CHUTE_OPERATOR_METRICS_API_CERT_VALIDITY_DAYS": validity,
        "CHUTE_OPERATOR_METRICS_API_CERT_RENEW_BEFORE_DAYS": renew_before,
    }
    with pytest.raises(ValueError, match="CHUTE_OPERATOR_METRICS_API_CERT_RENEW_BEFORE_DAYS"):
        Settings.from_env(environ)


def test_the_command_line_wins_over_the_environment() -> None:
    environ = {"CHUTE_OPERATOR_NAMESPACES": "a,b", "CHUTE_OPERATOR_GPU_CATALOG": "/env.yaml"}
    assert Settings.from_env(environ).watching.namespaces == ("a", "b")
    assert Settings.from_env(environ, namespaces=["c"]).watching.namespaces == ("c",)
    assert Settings.from_env(environ, all_namespaces=True).watching.namespaces == ()
    assert Settings.from_env(environ, namespaces=[]).watching.namespaces == ("a", "b")
    assert Settings.from_env(environ).render.gpu_catalog == "/env.yaml"
    assert Settings.from_env(environ, gpu_catalog="/flag.yaml").render.gpu_catalog == "/flag.yaml"


def test_the_command_line_namespaces_are_read_as_the_variable_is() -> None:
    """``run -n a,b`` (or `` -n " a "``) watched namespaces a and b: run wrote the flag's values into
    CHUTE_OPERATOR_NAMESPACES and the controller read them back, split at commas and stripped (kopf
    reads a comma-separated pattern the same way). Listing namespace ``"a,b"`` finds nothing."""
    assert Settings.from_env({}, namespaces=["a,b", " c "]).watching.namespaces == ("a", "b", "c")
    assert Settings.from_env({}, namespaces=[" , "]).watching.namespaces == ()


def test_the_chart_and_the_docs_name_only_variables_the_settings_read() -> None:
    """The chart sets them, docs/deployment.md lists every one."""
    known = set(variables_of())
    chart = (ROOT / "charts/chute-operator/templates/deployment.yaml").read_text()
    set_by_chart = set(re.findall(r"name: (CHUTE_OPERATOR_\w+)", chart))
    assert set_by_chart
    assert set_by_chart <= known
    docs = (ROOT / "docs/deployment.md").read_text()
    assert {name for name in known if f"`{name}`" not in docs} == set()


def test_the_operator_writes_no_environment_variable() -> None:
    """Settings are read once and passed down, never handed on through ``os.environ``."""
    written = re.compile(r"os\.environ\[[^]]+\]\s*=|os\.environ\.(update|setdefault)|os\.putenv")
    sources = (ROOT / "operator/chute_operator").rglob("*.py")
    assert [str(path) for path in sources if written.search(path.read_text())] == []


def test_the_drain_key_reaches_the_render_options_and_its_secret_is_in_the_operators_namespace() -> None:
    """Read at start by the operator (drainkey.py), never inside the pure render: it comes in here."""
    settings = Settings.from_env({"POD_NAMESPACE": "chutes-system"})
    assert settings.drain_key_secret() == ("chutes-system", "chute-operator-drain-key")
    assert settings.render_options(builtin_catalog()).drain_key is None
    assert settings.render_options(builtin_catalog(), drain_key=b"k" * 32).drain_key == b"k" * 32
