"""The Chute API (chutes.ai/v1alpha1): pydantic models, the single source of truth for the CRD.

This package imports nothing else from the project.
"""

from chute_operator.api.chute import API_VERSION, GROUP, KIND, PLURAL, VERSION, Chute, ObjectMeta
from chute_operator.api.spec import (
    TEMPLATES,
    Auth,
    Cache,
    ChuteSpec,
    Cord,
    EgressRule,
    EnvVar,
    Health,
    Model,
    ModelCache,
    Monitoring,
    NodeSelector,
    PodOverrides,
    Resources,
    Rollout,
    ServiceSpec,
)
from chute_operator.api.status import ChuteStatus, Condition

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "TEMPLATES",
    "VERSION",
    "Auth",
    "Cache",
    "Chute",
    "ChuteSpec",
    "ChuteStatus",
    "Condition",
    "Cord",
    "EgressRule",
    "EnvVar",
    "Health",
    "Model",
    "ModelCache",
    "Monitoring",
    "NodeSelector",
    "ObjectMeta",
    "PodOverrides",
    "Resources",
    "Rollout",
    "ServiceSpec",
]
