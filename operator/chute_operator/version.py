"""The operator's version and the image a release publishes it as: the one place both are read from.

The version is the package's own (``project.version`` in pyproject.toml, read from the installed
package's metadata). A release (``scripts/release``) tags the image with it and packages the chart
with it as both ``version`` and ``appVersion``; ``tests/unit/test_release.py`` fails when the chart's
Chart.yaml, its default image or this module disagree with pyproject.toml.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

DISTRIBUTION = __name__.partition(".")[0]
"""The distribution's name as the package's (``chute_operator``: importlib.metadata normalizes ``-``)."""
IMAGE_REPOSITORY = "ghcr.io/chutes-ai/chute-operator"
"""The image a release of this project publishes (the chart's default ``image.repository``)."""


def _installed_version() -> str:
    try:
        return _distribution_version(DISTRIBUTION)
    except PackageNotFoundError as error:  # the package is always installed (pip install -e . in a checkout)
        raise RuntimeError(f"the {DISTRIBUTION} package is not installed: pip install -e .") from error


VERSION = _installed_version()
"""This package's version, e.g. ``0.1.0``: also the image tag and the chart's version and appVersion."""
IMAGE = f"{IMAGE_REPOSITORY}:{VERSION}"
"""The released image of this version: operator, sidecar and simulated model server."""

SIDECAR_SOURCES = "93ce76f18bb1"
"""The sidecar's own version: a hash of what the sidecar runs (its package, ``chute_shared``, the
command that starts it, the Dockerfile and the dependency ranges; ``chute_devcluster.release.
sidecar_fingerprint`` computes it, ``tests/unit/test_release.py`` fails when it is stale). It changes
only when the sidecar could behave differently, never with the operator's version alone."""
SIDECAR_TAG = f"sidecar-{SIDECAR_SOURCES}"
"""The tag a release also gives its image (``scripts/release`` pushes it beside the version's), and
the chart's annotation ``chutes.ai/sidecar-tag``: the sidecar image is named by the sidecar's
version, so an upgrade whose sidecar did not change renders every Chute's pod template as it was."""
SIDECAR_IMAGE = f"{IMAGE_REPOSITORY}:{SIDECAR_TAG}"
"""The sidecar image of this release (the same image as the operator's, under the sidecar's tag)."""
