"""``Chute -> manifests``: a pure function over jinja2 templates shipped in the package."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable
from functools import cache
from typing import Any

import jinja2
import yaml

from chute_operator.api import Chute
from chute_operator.drift import stamped
from chute_operator.weights import BACKOFF_LIMIT, WEIGHTS_VOLUME, WeightsCache
from chute_operator.wiring import (
    API_KEY_DIR,
    PROBE_PERIOD_SECONDS,
    SERVICE_ROLE_LABEL,
    STARTUP_PROBE_PERIOD_SECONDS,
)
from chute_operator.workload import RenderOptions, Workload, resolve
from chute_shared import paths, ports, weights
from chute_shared.cluster import DRAIN_TOKEN_ENV, MODEL_CONTAINER, SIDECAR_CONTAINER
from chute_shared.headers import DRAIN_TOKEN_HEADER
from chute_shared.metrics import UTILIZATION_METRIC

Manifest = dict[str, Any]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser where PyYAML has it: the pure-Python one took about 20 ms of the 25 ms a
reconcile of an unchanged Chute cost (cProfile, docs/benchmarks/operator.md)."""


@cache
def _environment() -> jinja2.Environment:
    # YAML manifests, not HTML: HTML escaping would corrupt values, which the templates write through
    # the json filter (bandit B701)
    env = jinja2.Environment(  # nosec B701
        loader=jinja2.PackageLoader("chute_operator", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["json"] = lambda value: json.dumps(value, separators=(", ", ": "))
    env.filters["pull_secret"] = lambda name: {"name": name}
    env.globals.update(
        sidecar_container=SIDECAR_CONTAINER,
        model_container=MODEL_CONTAINER,
        sidecar_port=ports.SIDECAR_PORT,
        metrics_port=ports.METRICS_PORT,
        admin_port=ports.ADMIN_PORT,
        serving_port_name=ports.SERVING_PORT_NAME,
        metrics_port_name=ports.METRICS_PORT_NAME,
        admin_port_name=ports.ADMIN_PORT_NAME,
        live_path=paths.LIVE_PATH,
        ready_path=paths.READY_PATH,
        startup_path=paths.STARTUP_PATH,
        model_live_path=paths.MODEL_LIVE_PATH,
        drain_path=paths.DRAIN_PATH,
        metrics_path=paths.METRICS_PATH,
        drain_token_header=DRAIN_TOKEN_HEADER,
        drain_token_env=DRAIN_TOKEN_ENV,
        api_key_dir=API_KEY_DIR,
        probe_period=PROBE_PERIOD_SECONDS,
        startup_probe_period=STARTUP_PROBE_PERIOD_SECONDS,
        hpa_metric=UTILIZATION_METRIC,
        service_role_label=SERVICE_ROLE_LABEL,
        weights_label=weights.WEIGHTS_LABEL,
        weights_volume=WEIGHTS_VOLUME,
        weights_mount_path=weights.WEIGHTS_MOUNT_PATH,
        download_container=weights.DOWNLOAD_CONTAINER,
        exit_permanent=weights.EXIT_PERMANENT,
        backoff_limit=BACKOFF_LIMIT,
    )
    return env


def _render(template: str, workload: Workload | None = None, cache: WeightsCache | None = None) -> Manifest:
    text = _environment().get_template(template).render(w=workload, c=cache)
    # _LOADER is PyYAML's SafeLoader (libyaml's where present) (bandit B506)
    manifest = yaml.load(text, Loader=_LOADER)  # nosec B506
    if not isinstance(manifest, dict):
        raise TypeError(f"template {template} rendered no object")
    return manifest


def render_workload(workload: Workload) -> list[Manifest]:
    """The children of a resolved Chute, in apply order: the NetworkPolicy before the Deployment, so
    that no pod runs before its traffic is restricted; the InferencePool before the HTTPRoute that
    sends to it."""
    names = ["networkpolicy.yaml.j2", "service.yaml.j2"]
    if workload.metrics_service:
        names.append("metrics-service.yaml.j2")
    names.append("deployment.yaml.j2")
    if workload.autoscaled:
        names.append("hpa.yaml.j2")
    if workload.service_monitor:
        names.append("servicemonitor.yaml.j2")
    if workload.inference_pool is not None:
        names.append("inferencepool.yaml.j2")
    if workload.http_route is not None:
        names.append("httproute.yaml.j2")
    if workload.ingress is not None:
        names.append("ingress.yaml.j2")
    return [_render(name, workload) for name in names]


WEIGHTS_TEMPLATES = ("weights-networkpolicy.yaml.j2", "weights-pvc.yaml.j2", "weights-job.yaml.j2")
"""A weights cache's objects, in apply order (weights.WEIGHTS_KINDS)."""


def render_weights(cache: WeightsCache) -> list[Manifest]:
    """A weights cache's NetworkPolicy, PersistentVolumeClaim and download Job, without owners (each
    Chute using it adds its own reference: weights.join_manifest)."""
    return [_render(name, cache=cache) for name in WEIGHTS_TEMPLATES]


def render(chute: Chute, options: RenderOptions) -> list[Manifest]:
    """Every Kubernetes object the Chute becomes. Raises NoEligibleGpu for an impossible selector."""
    return render_workload(resolve(chute, options))


class DesiredManifests:
    """Each Chute's stamped children, rendered again only when its Workload changes.

    A Chute is reconciled on every event of its Deployment and pods, and rendering (jinja2, YAML,
    the hash stamp) is most of a reconcile's CPU; the Workload holds everything the templates read,
    so an unchanged Workload renders unchanged manifests. Kept per Chute as compact JSON (the last
    Workload only); every call returns fresh objects, so callers may change them.
    """

    def __init__(self) -> None:
        self._by_chute: dict[Hashable, tuple[bytes, str]] = {}
        self.renders = 0
        """How many times the templates were actually rendered (for the tests)."""

    def of(self, chute: Hashable, workload: Workload) -> list[Manifest]:
        """The children of ``workload`` in apply order, each stamped with its hash (drift.stamped)."""
        fingerprint = hashlib.blake2b(repr(workload).encode(), digest_size=16).digest()
        cached = self._by_chute.get(chute)
        if cached is None or cached[0] != fingerprint:
            self.renders += 1
            text = json.dumps([stamped(m) for m in render_workload(workload)], separators=(",", ":"))
            cached = self._by_chute[chute] = (fingerprint, text)
        manifests: list[Manifest] = json.loads(cached[1])
        return manifests

    def forget(self, chute: Hashable) -> None:
        self._by_chute.pop(chute, None)
