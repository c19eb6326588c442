"""The Chute's spec: what model server to run, on which GPUs, and how it scales and is reached."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from chute_operator.api.base import ApiModel, FreeForm, Quantity, Rule, enforce, rules_schema
from chute_operator.api.expose import Expose, path_ok
from chute_shared.limits import MAX_BODY_BYTES, MAX_BODY_BYTES_CEILING, REQUEST_TIMEOUT_SECONDS
from chute_shared.ports import ADMIN_PORT, METRICS_PORT, SIDECAR_PORT

TEMPLATES = ("vllm", "sglang", "tei", "embedding", "diffusion", "custom")
Template = Literal["vllm", "sglang", "tei", "embedding", "diffusion", "custom"]
GPU_NAME_PATTERN = r"^[a-z0-9][a-z0-9_]*$"
GpuName = Annotated[str, StringConstraints(pattern=GPU_NAME_PATTERN, max_length=32)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=253)]
Arg = Annotated[str, StringConstraints(max_length=4096)]
ENV_NAME_PATTERN = r"^[ -<>-~]+$"
"""Printable ASCII without '=': the container runtime's rule for an environment variable name."""
IMAGE_PATTERN = r"^\S+$"
"""An image reference has no whitespace (a pod refuses leading or trailing blanks)."""
RESERVED_PORTS = (SIDECAR_PORT, METRICS_PORT, ADMIN_PORT)
"""Ports of the injected sidecar (serving, metrics, admin: probes and drain); the model server must use
another."""


_check = enforce


class TokenSecretRef(ApiModel):
    """A key of a Secret in the Chute's namespace holding a hub token."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(default="token", min_length=1, max_length=253, description="Key within the Secret.")


ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce")


class ModelCache(ApiModel):
    """A cache of the model's revision, downloaded once by a Job and shared read-only by every replica
    and every Chute of the namespace that serves the same revision (docs/weights.md)."""

    size: Quantity = Field(
        description="Size of the cache's PersistentVolumeClaim, e.g. 40Gi: the model must fit."
    )
    storage_class_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="StorageClass of the cache's PersistentVolumeClaim (the platform's choice); unset: the "
        "cluster's default class.",
    )
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        default="ReadWriteMany",
        description="ReadWriteMany lets replicas on every node mount the cache; ReadWriteOnce is enough "
        "where every replica runs on one node (it pins them to the node that mounted it first).",
    )
    token_secret_ref: TokenSecretRef | None = Field(
        default=None,
        description="Hub token for a gated or private model: read by the download Job only, never by the "
        "serving pods.",
    )


class Model(ApiModel):
    """The model weights a standard template serves."""

    name: str = Field(
        min_length=1,
        max_length=256,
        description="Model identifier passed to the model server, e.g. a Hugging Face repository "
        "'meta-llama/Llama-3.1-8B-Instruct'.",
    )
    revision: str | None = Field(
        default=None,
        max_length=40,
        description="Exact commit of the model repository (40 lowercase hex characters).",
    )
    cache: ModelCache | None = Field(
        default=None,
        description="Download this revision once into a shared cache (a PersistentVolumeClaim filled by a "
        "Job) that the serving pods mount read-only, running offline: they never reach the hub. Needs "
        "revision.",
    )

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.revision) || self.revision.matches('^[0-9a-f]{40}$')",
            message="spec.model.revision must be a 40-character lowercase hex commit id",
            field_path=".revision",
            check=lambda m: m.revision is None or (len(m.revision) == 40 and _is_hex(m.revision)),
        ),
        Rule(
            cel="!has(self.cache) || has(self.revision)",
            message="spec.model.cache needs spec.model.revision: a cache holds one pinned revision",
            field_path=".cache",
            check=lambda m: m.cache is None or m.revision is not None,
        ),
    )
    model_config = ConfigDict(json_schema_extra=rules_schema(*RULES))

    @model_validator(mode="after")
    def _rules(self) -> Model:
        _check(self, self.RULES)
        return self


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


class EnvVar(ApiModel):
    """An environment variable of the model server (core/v1 EnvVar)."""

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=ENV_NAME_PATTERN,
        description="Variable name: printable ASCII characters other than '=' (what a pod accepts).",
    )
    value: str | None = Field(default=None, description="Literal value.")
    value_from: FreeForm | None = Field(
        default=None,
        description="Source of the value (core/v1 EnvVarSource: secretKeyRef, configMapKeyRef...).",
    )


class NodeSelector(ApiModel):
    """Which GPUs the model needs, as in the Chutes SDK's NodeSelector."""

    gpu_count: int = Field(
        default=1,
        ge=0,
        le=8,
        description="GPUs per replica (1-8). 0 runs the model without GPUs (CPU-only, e.g. a small "
        "embedding server): no GPU request, no GPU affinity or toleration.",
    )
    min_vram_gb_per_gpu: int = Field(
        default=16,
        ge=0,
        le=1024,
        description="Smallest GPU memory (GB) an eligible GPU type must have.",
    )
    include: list[GpuName] | None = Field(
        default=None,
        max_length=64,
        description="Only these GPU types (catalog short names such as h100, a100, l40s) are eligible.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    exclude: list[GpuName] | None = Field(
        default=None,
        max_length=64,
        description="These GPU types (catalog short names) are never eligible.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.include) || !has(self.exclude) || self.include.all(g, !(g in self.exclude))",
            message="spec.nodeSelector.include and spec.nodeSelector.exclude must not name the same GPU",
            field_path=".include",
            check=lambda s: not (set(s.include or ()) & set(s.exclude or ())),
        ),
        Rule(
            cel="self.gpuCount > 0 || (!has(self.include) && !has(self.exclude))",
            message="spec.nodeSelector.include/exclude need gpuCount >= 1 (gpuCount 0 means CPU-only)",
            field_path=".gpuCount",
            check=lambda s: s.gpu_count > 0 or (s.include is None and s.exclude is None),
        ),
    )
    model_config = ConfigDict(json_schema_extra=rules_schema(*RULES))

    @model_validator(mode="after")
    def _rules(self) -> NodeSelector:
        _check(self, self.RULES)
        return self


class Health(ApiModel):
    """How the sidecar decides the model server is up."""

    path: str | None = Field(
        default=None,
        pattern=r"^/",
        max_length=256,
        description="HTTP path of the model server's health check (default from the template, e.g. /health).",
    )
    startup_timeout_seconds: int | None = Field(
        default=None,
        ge=30,
        le=86400,
        description="How long a replica may take to load its model before it is restarted "
        "(default from the template: 1800 for vllm and sglang).",
    )


CORD_PATH_PATTERN = r"^/[A-Za-z0-9._~!$&'()+,;=:@%/-]*[*]?$"
"""A cord path: "/", then the characters RFC 3986 allows in a path, optionally one final "*" (a prefix
cord). The sidecar's --cord parser applies the same rule (tests/data/cord_paths.yaml is the corpus)."""


class Cord(ApiModel):
    """One HTTP route the model serves (a Chutes cord)."""

    path: str = Field(
        pattern=CORD_PATH_PATTERN,
        max_length=256,
        description="Route path, e.g. /v1/chat/completions, or a prefix ending in '*', e.g. /v1/models/*. "
        "Starts with '/'; only the characters a URL path allows (letters, digits, - . _ ~ ! $ & ' ( ) + , "
        "; = : @ % /); no whitespace, query or fragment; '*' only at the end.",
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="POST", description="HTTP method of the route."
    )
    stream: bool = Field(default=False, description="The route streams its response (SSE or chunked).")


class ServiceSpec(ApiModel):
    """The Service in front of the replicas."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP",
        description=(
            "Kubernetes Service type. A NodePort or LoadBalancer Service publishes the serving port "
            "only; the ServiceMonitor then reads a headless ClusterIP Service `<name>-metrics`."
        ),
    )
    port: int = Field(
        default=80,
        ge=1,
        le=65535,
        description="Port the Service exposes for requests (not 9090 or 9091: the metrics port keeps its "
        "number on the Service, and the admin port's would only confuse).",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations for the Service (e.g. for a load balancer)."
    )

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"!has(self.port) || !(self.port in {[METRICS_PORT, ADMIN_PORT]})",
            message=f"spec.service.port: {METRICS_PORT} and {ADMIN_PORT} are the sidecar's metrics and admin "
            "ports (a ClusterIP Service publishes the metrics port as 9090)",
            field_path=".port",
            check=lambda m: m.port not in (METRICS_PORT, ADMIN_PORT),
        ),
    )
    model_config = ConfigDict(json_schema_extra=rules_schema(*RULES))

    @model_validator(mode="after")
    def _rules(self) -> ServiceSpec:
        _check(self, self.RULES)
        return self


class Monitoring(ApiModel):
    """Prometheus scraping of the sidecar's metrics."""

    service_monitor: bool = Field(
        default=True,
        description="Create a prometheus-operator ServiceMonitor (only where its CRD is installed).",
    )
    interval: str = Field(
        default="30s",
        pattern=r"^[0-9]+(ms|s|m|h)$",
        max_length=16,
        description="Scrape interval, e.g. 15s.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the ServiceMonitor (to match a Prometheus serviceMonitorSelector).",
    )
    engine_metrics_path: str | None = Field(
        default=None,
        pattern=r"^(/[!-~]*)?$",
        max_length=256,
        description="The model server's own Prometheus path (e.g. /metrics): the sidecar serves its "
        "series on the metrics port after its own (what an inference gateway's endpoint picker and "
        "Prometheus read there) and answers 404 for it on the serving port. Default from the "
        "template: /metrics for vllm and embedding (vLLM's vllm:* series), none for the others; "
        "set it to opt in (sglang with --enable-metrics, a custom image), or to '' to turn it off.",
    )


NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Port = Annotated[int, Field(ge=1, le=65535)]


class EgressRule(ApiModel):
    """In-cluster pods the model may connect to: one egress rule of the Chute's NetworkPolicy."""

    namespace: str = Field(
        min_length=1,
        max_length=63,
        pattern=NAMESPACE_PATTERN,
        description="Namespace of the destination pods.",
    )
    pod_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Labels the destination pods carry; empty means every pod of the namespace.",
    )
    ports: list[Port] = Field(
        default_factory=list,
        max_length=16,
        description="Destination ports on the pods (for a Service: its targetPort); empty means every port.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    protocol: Literal["TCP", "UDP"] = Field(default="TCP", description="Protocol of the ports: TCP or UDP.")


class SecretKeyRef(ApiModel):
    """A key of a Secret in the Chute's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(default="api-key", min_length=1, max_length=253, description="Key within the Secret.")


class Auth(ApiModel):
    """Require an API key on every request to the model."""

    api_key_secret_ref: SecretKeyRef = Field(
        description="Secret key holding the accepted API keys, one per line (several allow rotation). "
        "Clients send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
    )


class Resources(ApiModel):
    """Compute resources of the model server container (GPUs come from nodeSelector)."""

    cpu: Quantity | None = Field(default=None, description="CPU request, e.g. 8 or 500m.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit, e.g. 64Gi.")
    ephemeral_storage: Quantity | None = Field(default=None, description="Ephemeral storage request.")
    shared_memory: Quantity | None = Field(
        default=None,
        description="Size of /dev/shm (tensor-parallel engines need a large one). "
        "Default 16Gi with GPUs, 1Gi without.",
    )


class Cache(ApiModel):
    """Where model weights are cached."""

    size: Quantity | None = Field(default=None, description="Size limit of an emptyDir cache volume.")
    persistent_volume_claim: str | None = Field(
        default=None,
        max_length=253,
        description="Name of an existing PersistentVolumeClaim to use as the cache instead of an emptyDir.",
    )
    mount_path: str = Field(
        default="/cache", pattern=r"^/", max_length=256, description="Where the cache is mounted."
    )

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!(has(self.size) && has(self.persistentVolumeClaim))",
            message="spec.cache: set either size (emptyDir) or persistentVolumeClaim, not both",
            field_path=".persistentVolumeClaim",
            check=lambda c: not (c.size is not None and c.persistent_volume_claim is not None),
        ),
    )
    model_config = ConfigDict(json_schema_extra=rules_schema(*RULES))

    @model_validator(mode="after")
    def _rules(self) -> Cache:
        _check(self, self.RULES)
        return self


ROLLOUT_STRATEGIES = ("Auto", "Surge", "Replace")
RolloutStrategy = Literal["Auto", "Surge", "Replace"]


class Rollout(ApiModel):
    """How a change of the pods (a new image, arguments, resources...) replaces the running replicas."""

    strategy: RolloutStrategy = Field(
        default="Auto",
        description="Surge: start each new replica before an old one stops (one extra replica, so one "
        "spare GPU set of an eligible type; without one the rollout waits and the Chute reports "
        "Progressing=False, reason NoSpareGpu). Replace: stop an old replica before its successor "
        "starts (needs no spare GPU; one replica fewer serves meanwhile, none with a single replica). "
        "Auto: surge, and when the extra replica cannot be scheduled for lack of GPUs, replace one "
        "at a time instead if the Chute has more than one replica, or report NoSpareGpu if it has "
        "one (so a single replica is never taken down).",
    )


class PodOverrides(ApiModel):
    """Escape hatch: settings passed through to the pods as they are."""

    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node selector labels.")
    tolerations: list[FreeForm] = Field(
        default_factory=list, max_length=32, description="Extra tolerations (core/v1 Toleration)."
    )
    affinity: FreeForm | None = Field(
        default=None,
        description="Pod affinity (core/v1 Affinity); the GPU node affinity is added to each "
        "node selector term.",
    )
    priority_class_name: str | None = Field(default=None, max_length=253, description="Pod priority class.")
    runtime_class_name: str | None = Field(
        default=None, max_length=253, description="Runtime class, e.g. nvidia."
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        description="Service account of the pods (token not mounted unless set).",
    )
    security_context: FreeForm | None = Field(
        default=None,
        description="Pod security context (core/v1 PodSecurityContext); replaces the default "
        "(seccomp RuntimeDefault). Set runAsNonRoot/runAsUser where the model image allows it.",
    )
    termination_grace_period_seconds: int = Field(
        default=120,
        ge=10,
        le=3600,
        description="Time for in-flight requests to finish when a replica stops.",
    )
    volumes: list[FreeForm] = Field(
        default_factory=list, max_length=32, description="Extra volumes (core/v1 Volume)."
    )
    volume_mounts: list[FreeForm] = Field(
        default_factory=list,
        max_length=32,
        description="Extra volume mounts of the model container (core/v1 VolumeMount).",
    )


class ChuteSpec(ApiModel):
    """What a Chute serves and how: mirrors the Chutes SDK's Chute with Kubernetes naming."""

    image: str = Field(
        min_length=1,
        max_length=1024,
        pattern=IMAGE_PATTERN,
        description="Container image of the model server (no whitespace).",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Image pull policy of the model server container."
    )
    image_pull_secrets: list[Name] = Field(
        default_factory=list,
        max_length=16,
        description="Names of Secrets used to pull the image.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    template: Template = Field(
        default="custom",
        description="Standard template that supplies the command, port, health path, routes and "
        "defaults: vllm, sglang, tei, embedding, diffusion, or custom (the image's own command).",
    )
    model: Model | None = Field(
        default=None, description="Model to serve (required for vllm, sglang, tei, embedding)."
    )
    engine_args: list[Arg] = Field(
        default_factory=list,
        max_length=128,
        description="Extra arguments appended to the template's model server arguments.",
    )
    command: list[Arg] | None = Field(
        default=None,
        max_length=64,
        description="Replaces the template's command.",
    )
    args: list[Arg] | None = Field(
        default=None,
        max_length=256,
        description="Replaces the template's arguments (engineArgs are still appended).",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        description="Environment of the model server; overrides the template's variables of the same name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[FreeForm] = Field(
        default_factory=list, max_length=16, description="Environment sources (core/v1 EnvFromSource)."
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port the model server listens on, on localhost (default from the template; "
        "8080, 9090 and 9091 are the sidecar's).",
    )
    node_selector: NodeSelector = Field(default_factory=NodeSelector, description="GPU requirements.")
    concurrency: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Most requests in flight per replica, enforced by the sidecar (one more gets 429). "
        "Default from the template: 32 for vllm, sglang, tei and embedding, 3 for diffusion, 1 for custom.",
    )
    min_instances: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Fewest replicas. 0 lets the autoscaler go to zero where the cluster allows it.",
    )
    max_instances: int = Field(default=1, ge=1, le=100, description="Most replicas.")
    scaling_threshold: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="Scale up when the average utilization (in flight / concurrency) exceeds this.",
    )
    shutdown_after_seconds: int = Field(
        default=300,
        ge=60,
        le=604800,
        description="How long load must stay low before a replica is removed (HPA scale-down window, "
        "capped at 3600).",
    )
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Desired replicas when scaling is fixed (minInstances == maxInstances); set by "
        "'kubectl scale'. Unset means maxInstances. Refused when minInstances < maxInstances (the HPA "
        "scales then).",
    )
    request_timeout_seconds: int = Field(
        default=REQUEST_TIMEOUT_SECONDS,
        ge=1,
        le=86400,
        description="Longest one request may take, from its arrival at the sidecar to the last byte of "
        "its answer (a stream included): a request not answered by then gets 504, a stream still "
        "running is cut. The activator applies it to a request it held for this Chute, from when it "
        "forwards it; routes rendered for the Chute match it.",
    )
    max_request_body_bytes: int = Field(
        default=MAX_BODY_BYTES,
        ge=1024,
        le=MAX_BODY_BYTES_CEILING,
        description="Largest request body, in bytes (default 64 MiB, at most 1 GiB); a larger one gets "
        "413, from the sidecar or, while the Chute is at zero, from the activator.",
    )
    health: Health = Field(default_factory=Health, description="Health checking of the model server.")
    rollout: Rollout = Field(
        default_factory=Rollout, description="How changes replace running replicas (GPU-aware)."
    )
    cords: list[Cord] | None = Field(
        default=None,
        max_length=64,
        description="HTTP routes the model serves (default from the template).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["path", "method"]},
    )
    restrict_to_cords: bool = Field(
        default=False, description="Answer 404 for every route that is not one of the cords."
    )
    service: ServiceSpec = Field(
        default_factory=ServiceSpec, description="The Service in front of the replicas."
    )
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus scraping.")
    expose: Expose | None = Field(
        default=None,
        description="Reach the Chute from outside its namespace: an HTTPRoute, an Ingress, an "
        "InferencePool (docs/exposing.md).",
    )
    auth: Auth | None = Field(default=None, description="Require an API key on requests.")
    allow_external_egress: bool = Field(
        default=False,
        description="Let the pods open connections to any address, inside or outside the cluster. When "
        "false the Chute's NetworkPolicy allows only DNS queries to the cluster's DNS pods and the "
        "destinations in allowedEgress (provide weights with model.cache, whose download Job alone "
        "reaches the hub, or via the cache PersistentVolumeClaim or an in-cluster mirror listed "
        "there). Ingress is governed either way: only the serving port, and the metrics port from "
        "Prometheus.",
    )
    allowed_egress: list[EgressRule] = Field(
        default_factory=list,
        max_length=32,
        description="In-cluster pods the model may connect to while allowExternalEgress is false, "
        "e.g. a model mirror: [{namespace: mirrors, podSelector: {app: hf-mirror}, ports: [8080]}].",
    )
    resources: Resources = Field(default_factory=Resources, description="Compute resources.")
    cache: Cache = Field(default_factory=Cache, description="Model cache volume.")
    pod: PodOverrides = Field(default_factory=PodOverrides, description="Pod settings passed through.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.minInstances <= self.maxInstances",
            message="spec.minInstances must not exceed spec.maxInstances",
            field_path=".minInstances",
            check=lambda s: s.min_instances <= s.max_instances,
        ),
        Rule(
            cel="!has(self.replicas) || self.minInstances == self.maxInstances",
            message="spec.replicas (what `kubectl scale` sets) applies only when minInstances == "
            "maxInstances; an autoscaled Chute is scaled by its HPA: change minInstances or maxInstances",
            field_path=".replicas",
            check=lambda s: s.replicas is None or s.min_instances == s.max_instances,
        ),
        Rule(
            cel="self.template in ['custom', 'diffusion'] || has(self.model)",
            message="spec.model is required for the vllm, sglang, tei and embedding templates",
            field_path=".model",
            check=lambda s: s.template in ("custom", "diffusion") or s.model is not None,
        ),
        Rule(
            cel=f"!has(self.port) || !(self.port in {list(RESERVED_PORTS)})",
            message="spec.port: 8080, 9090 and 9091 are reserved for the sidecar",
            field_path=".port",
            check=lambda s: s.port not in RESERVED_PORTS,
        ),
    )
    model_config = ConfigDict(json_schema_extra=rules_schema(*RULES))

    @model_validator(mode="after")
    def _rules(self) -> ChuteSpec:
        _check(self, self.RULES)
        _cords_routable(self)
        return self


def _cords_routable(spec: ChuteSpec) -> None:
    """With ``expose.httpRoute.matchCords``, each of the Chute's own cords becomes an HTTPRoute path
    match: it must be a path the Gateway API takes (checked here so that the field is named)."""
    route = spec.expose.http_route if spec.expose else None
    if route is None or not route.match_cords:
        return
    for index, cord in enumerate(spec.cords or ()):
        path = cord.path[:-1] if cord.path.endswith("*") else cord.path
        if not path_ok(path or "/"):
            raise ValueError(
                f"spec.cords[{index}].path {cord.path!r}: with spec.expose.httpRoute.matchCords every cord "
                "is a route's path match: only URL path characters, no '%' escape, no '//' and no '.' or "
                "'..' segment"
            )
