"""The Chute object: metadata, spec and status."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chute_operator.api.base import ApiModel
from chute_operator.api.spec import ChuteSpec
from chute_operator.api.status import ChuteStatus
from chute_shared.cluster import CHUTE_GROUP, CHUTE_KIND, CHUTE_PLURAL, CHUTE_VERSION

GROUP = CHUTE_GROUP
VERSION = CHUTE_VERSION
API_VERSION = f"{GROUP}/{VERSION}"
KIND = CHUTE_KIND
PLURAL = CHUTE_PLURAL
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX_LENGTH = 63


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; everything else is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Chute(ApiModel):
    """A model-serving workload: spec in, Deployment, Service, HPA and ServiceMonitor out."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["chutes.ai/v1alpha1"] = Field(default="chutes.ai/v1alpha1", alias="apiVersion")
    kind: Literal["Chute"] = "Chute"
    metadata: ObjectMeta
    spec: ChuteSpec
    status: ChuteStatus | None = None
