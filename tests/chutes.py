"""Chutes that tests build often, as the manifests a user would apply."""

from __future__ import annotations

from typing import Any


def cpu_chute(name: str, metadata: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A small TEI embedding Chute that needs no GPU, autoscaled 1..2 (so it gets an HPA too);
    ``metadata`` adds to its name, ``spec`` adds to or replaces its spec fields."""
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name, **(metadata or {})},
        "spec": {
            "image": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8",
            "template": "tei",
            "model": {"name": "sentence-transformers/all-MiniLM-L6-v2"},
            "nodeSelector": {"gpuCount": 0},
            "minInstances": 1,
            "maxInstances": 2,
            **spec,
        },
    }
