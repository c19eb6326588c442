"""``chute-operator render -f FILE|DIR|-``: print what Chutes become, as multi-document YAML."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from chute_operator.gpu_profiles import AUTO, GFD, GpuProfile, load_profiles, profile_named
from chute_operator.gpus import NoEligibleGpu, load_catalog
from chute_operator.render import render
from chute_operator.validation import InvalidChute, parse_chute
from chute_operator.wiring import DEFAULT_SIDECAR_IMAGE
from chute_operator.workload import RenderOptions


def read_documents(source: str) -> Iterator[tuple[str, Any]]:
    """(label, document) for every YAML document of a file, a directory's *.yaml files, or stdin."""
    if source == "-":
        texts = [("<stdin>", sys.stdin.read())]
    else:
        path = Path(source)
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        texts = [(str(f), f.read_text()) for f in files]
    for name, text in texts:
        for index, document in enumerate(yaml.safe_load_all(text)):
            if document is not None:
                yield f"{name}#{index}", document


def offline_profile(name: str | None, catalog: str | None) -> GpuProfile:
    """The profile ``--gpu-profile`` names (GFD's by default); ValueError for an unknown name or auto."""
    if name == AUTO:
        raise ValueError(f"--gpu-profile {AUTO} needs a cluster's nodes (explain --cluster); name a profile")
    return profile_named(name or GFD.name, load_profiles(catalog))


def render_command(
    source: str, sidecar_image: str | None = None, catalog: str | None = None, gpu_profile: str | None = None
) -> int:
    """Render every Chute found; exit 1 naming the field and reason when any is invalid."""
    try:
        options = RenderOptions(
            catalog=load_catalog(catalog),
            sidecar_image=sidecar_image or DEFAULT_SIDECAR_IMAGE,
            gpu_profile=offline_profile(gpu_profile, catalog),
        )
        documents = list(read_documents(source))
    except (OSError, yaml.YAMLError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    manifests: list[dict[str, Any]] = []
    failed = False
    for label, document in documents:
        try:
            manifests += render(parse_chute(document), options)
        except (InvalidChute, NoEligibleGpu) as error:
            failed = True
            name = (document.get("metadata") or {}).get("name", "?") if isinstance(document, dict) else "?"
            for line in str(error).splitlines():
                print(f"error: {label} (Chute {name}): {line}", file=sys.stderr)
    if not documents:
        print(f"error: no Chute found in {source}", file=sys.stderr)
        return 1
    if failed:
        return 1
    yaml.safe_dump_all(manifests, sys.stdout, sort_keys=False, width=120)
    return 0
