"""Publish a release: the image and the chart, as an OCI artifact, to a registry the user names.

``scripts/release REGISTRY`` (e.g. ``ghcr.io/chutes-ai``, ``registry.example.com/team`` or, with
``--insecure``, a plain-HTTP ``127.0.0.1:5000``):

1. checks the one version: ``project.version`` in pyproject.toml, the chart's ``version`` and
   ``appVersion``, a section in CHANGELOG.md, and ``--version`` if given (a tag such as ``v0.2.0``);
2. builds the Dockerfile with buildah (the local cluster's builder and storage, see ``images.py``) as
   ``REGISTRY/chute-operator:VERSION`` and pushes it, and the same image as
   ``REGISTRY/chute-operator:sidecar-HASH`` (``version.SIDECAR_TAG``: the sidecar's own version,
   which the chart and the operator name the sidecar image by);
3. copies the chart, sets its default ``image.repository`` to ``REGISTRY/chute-operator`` (so the
   chart installs the image just pushed), lints it, packages it and pushes it to
   ``oci://REGISTRY/charts``;
4. prints the image's and the chart's digests and the ``helm install oci://...`` line.

``--dry-run`` prints every command instead of running it. Log in first (``buildah login REGISTRY``
and ``helm registry login REGISTRY``) where the registry wants it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chute_devcluster.binaries import ensure_helm, toolset
from chute_devcluster.images import BASE_IMAGE_ARG, REPOSITORY_ROOT, build_lock, buildah_command, ca_dir
from chute_operator.version import SIDECAR_TAG

CHART_NAME = "chute-operator"
IMAGE_NAME = "chute-operator"
RELEASE_NAME = "chute-operator"
RELEASE_NAMESPACE = "chute-system"
VERSION_PATTERN = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\Z")
"""X.Y.Z: where a Python version (PEP 440), an image tag and a chart version (SemVer) read alike."""
REGISTRY_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9.\-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._\-/][a-z0-9]+)*)?\Z")
"""A registry host (and port), optionally with a path under it: no scheme, lower case."""
_REPOSITORY_LINE = re.compile(r"^(image:\n(?:  .*\n|\s*\n)*?  repository: )(\S+)$", re.MULTILINE)
_HELM_DIGEST = re.compile(r"^Digest: (sha256:[0-9a-f]{64})$", re.MULTILINE)


class ReleaseError(RuntimeError):
    """The release cannot go on (versions disagree, a tool failed); the message says why."""


@dataclass(frozen=True)
class Release:
    """What a release publishes, and where."""

    registry: str
    version: str
    insecure: bool = False
    """Plain HTTP to the registry (one on loopback, for tests): buildah without TLS, helm --plain-http."""

    @property
    def image(self) -> str:
        return f"{self.registry}/{IMAGE_NAME}:{self.version}"

    @property
    def sidecar_image(self) -> str:
        """The same image under the sidecar's tag: what Chute pods run (version.SIDECAR_TAG)."""
        return f"{self.registry}/{IMAGE_NAME}:{SIDECAR_TAG}"

    @property
    def image_repository(self) -> str:
        return f"{self.registry}/{IMAGE_NAME}"

    @property
    def chart_repository(self) -> str:
        return f"oci://{self.registry}/charts"

    @property
    def chart(self) -> str:
        return f"{self.chart_repository}/{CHART_NAME}"

    def install_command(self) -> list[str]:
        """The ``helm install`` of the published chart (its default image is the one published with it)."""
        command = ["helm", "install", RELEASE_NAME, self.chart, "--version", self.version]
        command += ["-n", RELEASE_NAMESPACE, "--create-namespace"]
        return command + (["--plain-http"] if self.insecure else [])


# -- the one version ----------------------------------------------------------------------------------


def project_version(root: Path = REPOSITORY_ROOT) -> str:
    """``project.version`` of pyproject.toml: the version of the package, the image and the chart."""
    with (root / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def chart_versions(root: Path = REPOSITORY_ROOT) -> tuple[str, str]:
    """The chart's ``version`` and ``appVersion`` (top-level keys of Chart.yaml, read without YAML)."""
    text = (root / "charts" / CHART_NAME / "Chart.yaml").read_text()
    found = {
        match.group(1): match.group(2).strip().strip("\"'")
        for match in re.finditer(r"^(version|appVersion):\s*(.+?)\s*$", text, re.MULTILINE)
    }
    return found.get("version", ""), found.get("appVersion", "")


def changelog_has(version: str, root: Path = REPOSITORY_ROOT) -> bool:
    """Whether CHANGELOG.md has a section for ``version`` (``## [X.Y.Z]``)."""
    text = (root / "CHANGELOG.md").read_text()
    return re.search(rf"^## \[{re.escape(version)}\]", text, re.MULTILINE) is not None


def version_problems(root: Path = REPOSITORY_ROOT, requested: str | None = None) -> list[str]:
    """Why this checkout cannot be released as ``requested`` (default: its own version); empty if it can."""
    version = project_version(root)
    problems = []
    if not VERSION_PATTERN.fullmatch(version):
        problems.append(f"pyproject.toml's version {version!r} is not X.Y.Z")
    chart_version, app_version = chart_versions(root)
    for key, value in (("version", chart_version), ("appVersion", app_version)):
        if value != version:
            problems.append(
                f"charts/{CHART_NAME}/Chart.yaml's {key} is {value!r}, pyproject.toml's {version!r}"
            )
    if not changelog_has(version, root):
        problems.append(f"CHANGELOG.md has no section '## [{version}]'")
    if root == REPOSITORY_ROOT:
        problems += sidecar_tag_problems(root)
    if requested is not None and requested.removeprefix("v") != version:
        problems.append(f"asked to release {requested!r}, but this checkout is version {version!r}")
    return problems


# -- the sidecar's version ----------------------------------------------------------------------------

SIDECAR_PACKAGES = ("operator/chute_sidecar", "operator/chute_shared")
"""The sidecar's code and the names it shares with the operator (ports, paths, headers, flags)."""
SIDECAR_FILES = ("operator/chute_operator/__init__.py", "operator/chute_operator/entry.py", "Dockerfile")
"""The command that starts it (``chute-operator sidecar``: the package's ``__init__`` and the console
script's entry, which hands the sidecar over before the operator's CLI is imported, are all of the
operator it imports) and how its image is built."""


def sidecar_fingerprint(root: Path = REPOSITORY_ROOT) -> str:
    """The sidecar's own version (``version.SIDECAR_SOURCES``): a hash of every file the sidecar
    process runs from this project, the Dockerfile, and the dependency ranges and Python version the
    image is built with. Not the project's version: a release whose sidecar did not change keeps it."""
    digest = hashlib.sha256()
    paths = sorted(
        [path for package in SIDECAR_PACKAGES for path in (root / package).rglob("*.py")]
        + [root / name for name in SIDECAR_FILES]
    )
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    with (root / "pyproject.toml").open("rb") as file:
        pyproject = tomllib.load(file)
    project = pyproject["project"]
    built_with = {
        "build-system": pyproject["build-system"]["requires"],
        "requires-python": project["requires-python"],
        "dependencies": project["dependencies"],
        "fast": project["optional-dependencies"]["fast"],
        "weights": project["optional-dependencies"]["weights"],
    }
    digest.update(json.dumps(built_with, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def chart_sidecar_tag(root: Path = REPOSITORY_ROOT) -> str:
    """The chart's ``chutes.ai/sidecar-tag`` annotation (its default sidecar image's tag)."""
    text = (root / "charts" / CHART_NAME / "Chart.yaml").read_text()
    found = re.search(r"^\s+chutes\.ai/sidecar-tag:\s*\"?([^\"\s]+)\"?\s*$", text, re.MULTILINE)
    return found.group(1) if found else ""


def sidecar_tag_problems(root: Path = REPOSITORY_ROOT) -> list[str]:
    """Where the sidecar's tag in the operator (version.py) or the chart disagrees with its sources."""
    problems = []
    fingerprint = f"sidecar-{sidecar_fingerprint(root)}"
    if fingerprint != SIDECAR_TAG:
        problems.append(
            f"chute_operator/version.py's SIDECAR_SOURCES names {SIDECAR_TAG}, the sidecar's sources "
            f"{fingerprint}: set SIDECAR_SOURCES and Chart.yaml's chutes.ai/sidecar-tag to it"
        )
    if chart_sidecar_tag(root) != SIDECAR_TAG:
        problems.append(
            f"charts/{CHART_NAME}/Chart.yaml's chutes.ai/sidecar-tag is {chart_sidecar_tag(root)!r}, "
            f"the operator's {SIDECAR_TAG!r}"
        )
    return problems


# -- the chart ----------------------------------------------------------------------------------------


def set_image_repository(values: str, repository: str) -> str:
    """values.yaml with ``image.repository`` replaced, its comments and layout kept."""
    new, count = _REPOSITORY_LINE.subn(lambda match: match.group(1) + repository, values, count=1)
    if count != 1:
        raise ReleaseError("values.yaml has no 'image:' block with a 'repository:' line")
    return new


def stage_chart(destination: Path, repository: str, root: Path = REPOSITORY_ROOT) -> Path:
    """A copy of the chart under ``destination`` whose default image is ``repository``."""
    chart = destination / CHART_NAME
    shutil.copytree(root / "charts" / CHART_NAME, chart)
    values = chart / "values.yaml"
    values.write_text(set_image_repository(values.read_text(), repository))
    return chart


# -- the steps ----------------------------------------------------------------------------------------


@dataclass
class Step:
    """A command to run, or (``action``) something done in Python that ``--dry-run`` describes."""

    describe: str
    command: list[str] = field(default_factory=list)
    action: Callable[[], None] | None = None
    key: str = ""
    """Names a step whose output is read (``chart-push``: the chart's digest)."""

    def shown(self) -> str:
        return shlex.join(self.command) if self.command else f"# {self.describe}"


def git_revision(root: Path = REPOSITORY_ROOT) -> str | None:
    """The commit being released (None outside a git checkout)."""
    git = shutil.which("git")
    if git is None:
        return None
    found = subprocess.run([git, "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def build_command(release: Release, root: Path, base_image: str | None, revision: str | None) -> list[str]:
    """``buildah bud`` of the Dockerfile, tagged for the registry, labelled with the version."""
    labels = [f"org.opencontainers.image.version={release.version}"]
    if revision:
        labels.append(f"org.opencontainers.image.revision={revision}")
    certs = ca_dir()
    return buildah_command(
        "bud",
        "--isolation",
        "chroot",
        "--layers",
        *(["--build-arg", f"{BASE_IMAGE_ARG}={base_image}"] if base_image else []),
        *(arg for label in labels for arg in ("--label", label)),
        *(["--volume", f"{certs}:/etc/ssl/certs:ro"] if certs else []),
        "--file",
        str(root / "Dockerfile"),
        "--tag",
        release.image,
        str(root),
    )


def plan_steps(
    release: Release,
    work: Path,
    *,
    helm: str,
    root: Path = REPOSITORY_ROOT,
    base_image: str | None = None,
    revision: str | None = None,
) -> list[Step]:
    """Every step of a release, in order; ``work`` holds the staged chart, its package and the digests."""
    tls = ["--tls-verify=false"] if release.insecure else []
    plain_http = ["--plain-http"] if release.insecure else []
    chart_dir = work / "chart" / CHART_NAME
    package = work / f"{CHART_NAME}-{release.version}.tgz"
    return [
        Step(f"build {release.image}", build_command(release, root, base_image, revision)),
        Step(
            f"push {release.image}",
            buildah_command(
                "push",
                *tls,
                "--digestfile",
                str(work / "image.digest"),
                release.image,
                f"docker://{release.image}",
            ),
        ),
        Step(f"tag it {release.sidecar_image}", buildah_command("tag", release.image, release.sidecar_image)),
        Step(
            f"push {release.sidecar_image}",
            buildah_command("push", *tls, release.sidecar_image, f"docker://{release.sidecar_image}"),
        ),
        Step(
            f"copy charts/{CHART_NAME} to {chart_dir} with image.repository={release.image_repository}",
            action=lambda: _stage(work / "chart", release, root),
        ),
        Step("lint the chart", [helm, "lint", "--strict", str(chart_dir)]),
        Step(
            f"package the chart as {package.name}",
            [helm, "package", str(chart_dir), "--destination", str(work), *_versions(release.version)],
        ),
        Step(
            f"push the chart to {release.chart_repository}",
            [helm, "push", str(package), release.chart_repository, *plain_http],
            key="chart-push",
        ),
        Step(f"forget the local tag {release.image}", buildah_command("rmi", release.image)),
        Step(f"forget the local tag {release.sidecar_image}", buildah_command("rmi", release.sidecar_image)),
    ]


def _versions(version: str) -> list[str]:
    return ["--version", version, "--app-version", version]


def _stage(destination: Path, release: Release, root: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    stage_chart(destination, release.image_repository, root)


def _run(step: Step) -> str:
    print(f"==> {step.describe}", file=sys.stderr, flush=True)
    if step.action is not None:
        step.action()
        return ""
    try:
        process = subprocess.run(step.command, stdout=subprocess.PIPE, text=True)
    except FileNotFoundError as error:
        raise ReleaseError(f"{step.command[0]} is not installed") from error
    sys.stderr.write(process.stdout)
    if process.returncode != 0:
        raise ReleaseError(f"{step.describe}: {shlex.join(step.command[:3])} ... exited {process.returncode}")
    return process.stdout


def default_helm(dry_run: bool) -> str:
    """The project's pinned helm (built as its release is; built now if missing and Go is at hand),
    else helm on PATH."""
    pinned = toolset().helm
    if pinned.exists():
        return str(pinned)
    if not dry_run and shutil.which("go"):
        return str(ensure_helm())
    return shutil.which("helm") or str(pinned)


def publish(
    release: Release,
    *,
    helm: str,
    dry_run: bool = False,
    root: Path = REPOSITORY_ROOT,
    base_image: str | None = None,
    out: Callable[[str], None] = print,
) -> dict[str, str | None]:
    """Run (or, ``dry_run``, print) every step; return what was published (digests None on a dry run)."""
    summary: dict[str, str | None] = {
        "version": release.version,
        "image": release.image,
        "image_digest": None,
        "chart": release.chart,
        "chart_digest": None,
        "install": shlex.join(release.install_command()),
    }
    with tempfile.TemporaryDirectory(prefix="chute-operator-release-") as temporary:
        work = Path(temporary)
        steps = plan_steps(
            release, work, helm=helm, root=root, base_image=base_image, revision=git_revision(root)
        )
        if dry_run:
            for step in steps:
                out(step.shown())
        else:
            with build_lock():
                outputs = {step.key: _run(step) for step in steps}
            summary["image_digest"] = (work / "image.digest").read_text().strip()
            pushed = _HELM_DIGEST.search(outputs["chart-push"])
            summary["chart_digest"] = pushed.group(1) if pushed else None
    return summary


def report(summary: dict[str, str | None], out: Callable[[str], None] = print) -> None:
    """What was published, and how to install it."""
    image_digest = f"@{summary['image_digest']}" if summary["image_digest"] else ""
    chart_digest = f"@{summary['chart_digest']}" if summary["chart_digest"] else ""
    out(f"# image: {summary['image']}{image_digest}")
    out(f"# chart: {summary['chart']}:{summary['version']}{chart_digest}")
    out(str(summary["install"]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/release",
        description="Build the image, push it and the chart (an OCI artifact) to REGISTRY; "
        "print the helm install line.",
    )
    parser.add_argument(
        "registry", metavar="REGISTRY", help="e.g. ghcr.io/OWNER, registry.example.com/team, 127.0.0.1:5000"
    )
    parser.add_argument(
        "--version", help="the version being released (a tag: v0.2.0); must be the checkout's own"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="plain HTTP to the registry (a test registry on loopback)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print every command instead of running it")
    parser.add_argument("--base-image", help="the Dockerfile's PYTHON_IMAGE (default: the Dockerfile's own)")
    parser.add_argument(
        "--helm", help="the helm binary (default: the project's pinned helm, else helm on PATH)"
    )
    parser.add_argument("--summary", type=Path, help="also write what was published here, as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    registry = args.registry.rstrip("/")
    if not REGISTRY_PATTERN.fullmatch(registry):
        print(
            f"release: {args.registry!r} is no registry (HOST[:PORT][/PATH], lower case, no scheme)",
            file=sys.stderr,
        )
        return 2
    problems = version_problems(REPOSITORY_ROOT, args.version)
    if problems:
        print("release: cannot release this checkout:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    release = Release(registry, project_version(), insecure=args.insecure)
    try:
        summary = publish(
            release,
            helm=args.helm or default_helm(args.dry_run),
            dry_run=args.dry_run,
            base_image=args.base_image,
        )
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    report(summary)
    if args.summary:
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
