"""The Chute's status, per the Kubernetes API conventions (conditions, observedGeneration, no phase)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chute_operator.api.base import ApiModel


class Condition(ApiModel):
    """One aspect of the Chute's state (metav1.Condition)."""

    type: str = Field(
        max_length=316,
        description="Condition type: Ready, Available, Progressing, Degraded, Reconciling, Stalled, "
        "Monitored, Exposed or Autoscaling.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this condition was set for."
    )
    last_transition_time: str = Field(
        description="When the status last changed.", json_schema_extra={"format": "date-time"}
    )
    reason: str = Field(
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")


class AutoscalerStatus(ApiModel):
    """The HPA's view of the Chute's replicas (only when minInstances < maxInstances)."""

    current_replicas: int = Field(default=0, ge=0, description="Replicas the HPA last saw.")
    desired_replicas: int = Field(
        default=0, ge=0, description="Replicas the HPA wants now (the Autoscaling condition says why)."
    )
    last_scale_time: str | None = Field(
        default=None,
        description="When the HPA last changed the replica count.",
        json_schema_extra={"format": "date-time"},
    )


class ChuteStatus(ApiModel):
    """What the operator observed."""

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready summarises Available, Progressing and Degraded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int | None = Field(
        default=None, description="Replicas that exist (the scale subresource's status)."
    )
    ready_replicas: int | None = Field(default=None, description="Replicas ready to serve.")
    selector: str | None = Field(
        default=None, description="Label selector of the replicas' pods, serialized."
    )
    eligible_gpus: list[str] = Field(
        default_factory=list, description="GPU types (catalog short names) the replicas may run on."
    )
    eligible_gpu_summary: str | None = Field(
        default=None,
        description="How many GPU types the replicas may run on and the first few (kubectl get -o wide); "
        "`0` for a CPU-only Chute, `none` while the spec is invalid (a GPU Chute with no eligible GPU "
        "among them); the full list is eligibleGpus, and `chute-operator explain` says why each other "
        "is not.",
    )
    url: str | None = Field(
        default=None,
        description="The Chute's address: the external one when spec.expose gives one (its HTTPRoute's "
        "first host name and path, else its Ingress's host and path, once the object exists), else the "
        "in-cluster URL of its Service.",
    )
    load_seconds: int | None = Field(
        default=None,
        ge=0,
        description="How long the model took to load, in seconds: on the replica that became ready "
        "last, from its model container's start to the pod's Ready condition. Kept while at zero; the "
        "activator answers Retry-After from it.",
    )
    activator_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="The Chute's own port on the activator, while it may be at zero (minInstances 0): "
        "its Service's connections reach the activator there, and the activator knows the Chute by it.",
    )
    autoscaler: AutoscalerStatus | None = Field(
        default=None, description="The HPA's current and desired replicas (autoscaled Chutes only)."
    )
