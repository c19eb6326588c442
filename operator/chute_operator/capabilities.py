"""What the API server accepts, learned once at start (discover.py): its version and the features the
rendered objects depend on. Pure: built from the server's answers, no I/O here.

The rules, one per feature (docs/compatibility.md):

- the HPA's ``behavior.*.tolerance``: kept only where the ``HPAConfigurableTolerance`` feature is on in
  the API server (alpha, off by default, in 1.33 and 1.34; beta, on by default, from 1.35). The field is
  in the OpenAPI schema from 1.33 whether the feature is on or not, and a server with it off drops the
  field silently, so the schema cannot tell; a server-side dry run of an HPA that sets it can. Without
  a dry run's answer, the version's default decides.
- native sidecars (an init container with ``restartPolicy: Always``), which every Chute's pod uses: on
  by default from 1.29, the oldest version the operator can serve at all.
- the custom metrics API versions served (``custom.metrics.k8s.io``), which the HPA reads: v1beta2,
  else v1beta1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TOLERANCE_DEFAULT_ON_MINOR = 35
"""The first minor with ``HPAConfigurableTolerance`` on by default (beta)."""
TOLERANCE_FIELD_MINOR = 33
"""The first minor whose HPA has the field at all (alpha, off by default)."""
NATIVE_SIDECARS_MINOR = 29
"""The first minor with native sidecars on by default (``SidecarContainers`` beta)."""
OLDEST_TESTED_MINOR = 34
"""The oldest minor the suites run against (the chart's kubeVersion; docs/compatibility.md)."""
CUSTOM_METRICS_VERSIONS = ("v1beta2", "v1beta1")
"""The custom metrics API versions the HPA controller reads, the one it prefers first."""
TOLERANCE_FIELD = "behavior.scaleUp.tolerance"


@dataclass(frozen=True)
class ServerCapabilities:
    """The API server's version and what it accepts of what the operator renders."""

    version: str
    """``gitVersion`` of ``/version`` (``v1.34.4``, ``v1.34.2-eks-...``); empty when not learned."""
    minor: int | None
    """The minor version (``34`` of ``1.34``, ``34+`` read as 34); None when not learned."""
    hpa_tolerance: bool
    """The HPA keeps ``behavior.scaleUp.tolerance`` (``HPAConfigurableTolerance`` on)."""
    native_sidecars: bool
    """Init containers with ``restartPolicy: Always`` run beside the pod's containers."""
    custom_metrics_versions: tuple[str, ...] = ()
    """The ``custom.metrics.k8s.io`` versions the server serves, its preferred first (empty: none)."""

    def describe(self) -> str:
        """One line for the operator's log at start."""
        metrics = ", ".join(self.custom_metrics_versions) or "none"
        return (
            f"Kubernetes {self.version or 'unknown'}: HPA tolerance {'yes' if self.hpa_tolerance else 'no'}, "
            f"native sidecars {'yes' if self.native_sidecars else 'no'}, custom metrics API {metrics}"
        )


ASSUMED = ServerCapabilities(
    version="", minor=None, hpa_tolerance=True, native_sidecars=True, custom_metrics_versions=()
)
"""What offline rendering (``render``, ``explain``, tests) assumes: a current server that accepts all."""


def minor_of(version_info: Mapping[str, Any]) -> int | None:
    """The minor version of a ``/version`` answer: its ``minor`` (``"34"``, ``"34+"``), else the one in
    ``gitVersion``; None when neither reads as a number of major version 1."""
    if str(version_info.get("major", "1")).rstrip("+") not in ("1", ""):
        return None
    match = re.match(r"([0-9]+)", str(version_info.get("minor") or ""))
    if match is None:
        match = re.match(r"v?1\.([0-9]+)", str(version_info.get("gitVersion") or ""))
    return int(match.group(1)) if match else None


def tolerance_by_version(minor: int | None) -> bool:
    """Whether the version's default keeps the tolerance (unknown: assume a current server)."""
    return minor is None or minor >= TOLERANCE_DEFAULT_ON_MINOR


def tolerance_kept(dry_run_answer: Mapping[str, Any] | None, minor: int | None) -> bool:
    """Whether the HPA keeps ``behavior.scaleUp.tolerance``: what a dry-run create of an HPA that sets
    it answered, if it answered; else the version's default. A server older than the field never has it."""
    if minor is not None and minor < TOLERANCE_FIELD_MINOR:
        return False
    if dry_run_answer is None:
        return tolerance_by_version(minor)
    scale_up = ((dry_run_answer.get("spec") or {}).get("behavior") or {}).get("scaleUp") or {}
    return scale_up.get("tolerance") is not None


def served_versions(group: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The versions of an API group's discovery answer (``/apis/GROUP``), preferred first."""
    if not group:
        return ()
    preferred = (group.get("preferredVersion") or {}).get("version")
    versions = [str(v.get("version")) for v in group.get("versions") or [] if v.get("version")]
    return tuple(sorted(versions, key=lambda v: v != preferred))


def capabilities_from(
    version_info: Mapping[str, Any],
    tolerance_dry_run: Mapping[str, Any] | None = None,
    custom_metrics_group: Mapping[str, Any] | None = None,
) -> ServerCapabilities:
    """The capabilities from the server's answers: ``/version``, a dry-run create of an HPA with
    ``tolerance`` (None: not answered), and the ``custom.metrics.k8s.io`` group's discovery (None: not
    served)."""
    minor = minor_of(version_info)
    return ServerCapabilities(
        version=str(version_info.get("gitVersion") or ""),
        minor=minor,
        hpa_tolerance=tolerance_kept(tolerance_dry_run, minor),
        native_sidecars=minor is None or minor >= NATIVE_SIDECARS_MINOR,
        custom_metrics_versions=served_versions(custom_metrics_group),
    )


def hpa_reads_metrics(server: ServerCapabilities) -> bool:
    """Whether the server serves a custom metrics API version the HPA controller reads."""
    return any(version in CUSTOM_METRICS_VERSIONS for version in server.custom_metrics_versions)


def warnings(server: ServerCapabilities) -> Sequence[str]:
    """What the operator's log says at start about a server it cannot serve well."""
    found = []
    if server.minor is not None and server.minor < OLDEST_TESTED_MINOR:
        found.append(f"Kubernetes {server.version} is older than the oldest tested, 1.{OLDEST_TESTED_MINOR}")
    if not server.native_sidecars:
        found.append(
            "no native sidecars (Kubernetes 1.29+): Chute pods start their sidecar as an init "
            "container that never ends, so they never start"
        )
    if server.custom_metrics_versions and not hpa_reads_metrics(server):
        served = ", ".join(server.custom_metrics_versions)
        found.append(
            f"custom.metrics.k8s.io serves {served}, none of which the HPA reads: autoscaling stalls"
        )
    return found


def _tolerance_unsupported(server: str) -> str:
    return (
        f"spec.scalingThreshold is honoured within the HPA's 10% tolerance: {server} does not keep the "
        f"HPA's {TOLERANCE_FIELD} (the HPAConfigurableTolerance feature, on by default from 1.35), so the "
        "HPA scales up once the average exceeds the threshold by 10%"
    )


def unsupported(server: ServerCapabilities, wants_tolerance: bool) -> Sequence[str]:
    """What a Chute asks for that this server cannot honour, one sentence each naming the field."""
    found = []
    if wants_tolerance and not server.hpa_tolerance:
        found.append(_tolerance_unsupported(f"Kubernetes {server.version or 'this server'}"))
    return found


def dropped_by_server(rendered_tolerance: str | None, live_hpa: Mapping[str, Any] | None) -> Sequence[str]:
    """What the server dropped from an applied HPA, as :func:`unsupported` says it: a tolerance rendered
    (the server was expected to keep it: a dry run was not answered) that the live HPA lacks."""
    if rendered_tolerance is None or not live_hpa:
        return []
    scale_up = ((live_hpa.get("spec") or {}).get("behavior") or {}).get("scaleUp") or {}
    if scale_up.get("tolerance") is not None:
        return []
    return [_tolerance_unsupported("the API server (it dropped the field from the applied HPA)")]


def tolerance_probe() -> dict[str, Any]:
    """The HPA a dry-run create sends to learn whether the server keeps ``tolerance`` (never stored)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"generateName": "chute-operator-tolerance-probe-"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tolerance-probe"},
            "minReplicas": 1,
            "maxReplicas": 1,
            "behavior": {"scaleUp": {"tolerance": "0"}},
        },
    }
