"""Names in the cluster: the Chute API's coordinates, its labels and annotations, the containers of a
Chute's pod and the environment the operator gives the sidecar."""

from __future__ import annotations

CHUTE_GROUP = "chutes.ai"
CHUTE_VERSION = "v1alpha1"
CHUTE_KIND = "Chute"
CHUTE_PLURAL = "chutes"

CHUTE_LABEL = "chutes.ai/chute"
"""On every child of a Chute and its pods: the Chute's name."""
MANAGED_BY = "chute-operator"
"""The ``app.kubernetes.io/managed-by`` value of every child of a Chute."""
ACTIVATOR_FIELD_MANAGER = "chute-activator"
"""The activator's field manager: its wake patches are recorded under it, and the chart's wake-only
admission policy lets it change no other manager's field ownership."""
WAKE_ANNOTATION = "chutes.ai/wake-requested-at"
"""Set on the Chute by the activator (RFC 3339) when a request waits for a Chute at zero; the
operator scales it up."""

ACTIVATOR_PORT_STATUS = "activatorPort"
"""The Chute's status field with its port on the activator (see ``ports.ACTIVATOR_CHUTE_PORTS``):
written by the operator only (the status subresource), read by the activator to know which Chute a
connection is for."""

SIDECAR_CONTAINER = "chute-sidecar"
"""The sidecar's container (a native sidecar: an init container that keeps running)."""
MODEL_CONTAINER = "model"
"""The model server's container (the pod's default container)."""

DRAIN_TOKEN_ENV = "CHUTE_SIDECAR_DRAIN_TOKEN"  # nosec B105  # the name of a variable, not a secret
"""The sidecar's environment variable of the drain token (its ``--drain-token``), set by the operator."""
