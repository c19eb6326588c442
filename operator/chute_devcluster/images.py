"""Container images for the local cluster's real node, built from the project's Dockerfile without a registry.

Three images, each cached as a ``docker-archive`` tar under ``<cache>/images/`` keyed by a hash of its
inputs, so only a change pays for a build:

- the base: a Debian rootfs from the machine's own suite and apt sources (``mmdebstrap --variant=minbase``
  with python3, python3-venv and ca-certificates), committed with buildah; the Dockerfile's
  ``PYTHON_IMAGE`` build argument points at it instead of ``python:*-slim``;
- the project image, ``localhost/chute-operator:<version>-<hash>``: ``buildah bud`` of the repository's
  Dockerfile (operator, sidecar and simulated model server in one image); the hash covers the Dockerfile,
  ``.dockerignore`` and every file of the build context, so a code change gets a new tag, and buildah's
  layer cache keeps the dependency layers, so the rebuild only redoes the project's own layers;
- the sandbox (pause) image, ``localhost/pause:<tag>``: ``pause.c`` of the Kubernetes module the control
  plane is built from, compiled with ``gcc -static``, alone in a scratch image.

buildah runs with its own storage under the cache (``vfs`` driver, ``--isolation chroot``). RUN steps see
the machine's CA bundle (``/etc/ssl/certs``, mounted read-only, never part of a layer) so ``pip`` reaches
the package registry behind a TLS-inspecting proxy; ``CHUTE_OPERATOR_BUILD_CA_DIR`` names another
directory, or is empty to mount nothing. The local cluster pushes the images into its registry
(:func:`push_image`, :mod:`chute_devcluster.registry`) and the real node's containerd pulls them from
there; pods use ``imagePullPolicy: IfNotPresent``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from chute_devcluster.binaries import KUBERNETES_VERSION, cache_dir

BASE_REPOSITORY = "localhost/chute-operator-base"
PROJECT_REPOSITORY = "localhost/chute-operator"
PAUSE_REPOSITORY = "localhost/pause"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_IMAGE_ARG = "PYTHON_IMAGE"
"""The Dockerfile's build argument naming its base image."""
CA_DIR_ENV = "CHUTE_OPERATOR_BUILD_CA_DIR"
KEEP_PROJECT_IMAGES = 3
KEEP_RECENT_SECONDS = 3600.0
"""After a build, project tars (and tags) beyond the newest :data:`KEEP_PROJECT_IMAGES` are deleted once
unused for this long (several worktrees of the repository may be using theirs)."""
STORAGE_DRIVER_ENV = "CHUTE_OPERATOR_BUILD_STORAGE_DRIVER"
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
_BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
)


class ImageBuildError(RuntimeError):
    """A build step failed (the message ends with the command's last output lines)."""


@dataclass(frozen=True)
class Image:
    """A built image: its name in buildah's storage, and its ``docker-archive`` tar."""

    ref: str
    tar: Path
    key: str
    """Hash of the inputs; part of the tar's name."""


@dataclass(frozen=True)
class Images:
    """What the real node imports: the sandbox image and the project's image (operator, sidecar, modelsim)."""

    base: Image
    pause: Image
    project: Image


def images_dir() -> Path:
    """Where the tars and buildah's storage live (created on first use)."""
    directory = cache_dir() / "images"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _run(command: Sequence[str], *, cwd: Path | None = None, quiet: bool = True) -> str:
    """Run ``command`` and return its output; unless ``quiet``, also copy it to stderr as it comes."""
    try:
        process = subprocess.Popen(
            list(command), cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except FileNotFoundError as error:
        raise ImageBuildError(f"{command[0]} is not installed (scripts/setup installs it)") from error
    lines = []
    assert process.stdout is not None  # nosec B101  # narrows the type: stdout=PIPE above
    with process.stdout:
        for line in process.stdout:
            lines.append(line)
            if not quiet:
                sys.stderr.write(line)
    if process.wait() != 0:
        tail = "".join(lines[-20:])
        raise ImageBuildError(f"{' '.join(command[:4])} ... failed (exit {process.returncode})\n{tail}")
    return "".join(lines)


def storage_driver() -> str:
    """``overlay`` where the kernel has it (layers are diffs: fast commits), else ``vfs`` (whole copies).

    ``CHUTE_OPERATOR_BUILD_STORAGE_DRIVER`` chooses explicitly. Each driver keeps its own storage.
    """
    configured = os.environ.get(STORAGE_DRIVER_ENV, "").strip()
    if configured:
        return configured
    try:
        filesystems = Path("/proc/filesystems").read_text().split()
    except OSError:
        filesystems = []
    return "overlay" if "overlay" in filesystems else "vfs"


def buildah_command(*args: str) -> list[str]:
    """``buildah`` with the project's own storage (under the cache) and driver."""
    driver = storage_driver()
    return [
        "buildah",
        "--root",
        str(images_dir() / f"storage-{driver}"),
        "--runroot",
        str(images_dir() / f"run-{driver}"),
        "--storage-driver",
        driver,
        *args,
    ]


def _buildah(*args: str, quiet: bool = True) -> str:
    return _run(buildah_command(*args), quiet=quiet).strip()


def _has_image(ref: str) -> bool:
    command = buildah_command("inspect", "--type", "image", ref)
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One image build at a time (two test sessions, ``dev build``) wait for one another."""
    with (images_dir() / "build.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log("another image build is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _push(ref: str, tar: Path) -> None:
    """Write ``ref`` as a docker-archive tar atomically (a half-written tar is never used)."""
    partial = tar.with_name(tar.name + ".partial")
    partial.unlink(missing_ok=True)
    _buildah("push", "--quiet", ref, f"docker-archive:{partial}:{ref}")
    partial.rename(tar)


# -- the Debian base --------------------------------------------------------------------------------


def host_suite(os_release: Path = Path("/etc/os-release")) -> str:
    """The machine's Debian suite (``VERSION_CODENAME``), e.g. ``bookworm``."""
    lines = os_release.read_text().splitlines()
    fields = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    suite = fields.get("VERSION_CODENAME", "").strip().strip('"')
    if not suite:
        raise ImageBuildError(f"no VERSION_CODENAME in {os_release}: not a Debian-like system")
    return suite


def host_debian_sources(suite: str, apt_dir: Path = Path("/etc/apt")) -> list[str]:
    """The machine's apt entries for ``suite`` and its updates/security suites, as one-line ``deb`` entries.

    Other repositories (third-party suites with their own keys) are left out. Empty when the machine
    has none; mmdebstrap then uses Debian's default mirror.
    """
    entries: list[str] = []
    pattern = re.compile(rf"^{re.escape(suite)}(-[a-z]+)?$")
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            one_suite = len(words) >= 4 and words[0] == "deb" and not words[1].startswith("[")
            if one_suite and pattern.match(words[2]):
                entries.append(" ".join(words))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            for uri in fields.get("uris", "").split():
                for entry_suite in fields.get("suites", "").split():
                    if pattern.match(entry_suite):
                        entries.append(f"deb {uri} {entry_suite} {fields.get('components', 'main')}")
    return list(dict.fromkeys(entries))


def _base_inputs() -> tuple[str, list[str]]:
    suite = host_suite()
    return suite, host_debian_sources(suite)


def _base_key(suite: str, sources: list[str]) -> str:
    return _digest("minbase", suite, *BASE_PACKAGES, *sources, *_DPKG_EXCLUDES, *_BASE_ENV)


def _base_image_of(suite: str, key: str) -> Image:
    return Image(f"{BASE_REPOSITORY}:{suite}-{key[:12]}", images_dir() / f"base-{suite}-{key[:16]}.tar", key)


def build_base_image() -> Image:
    """The Debian base in buildah's storage (from the cached rootfs tar, built once with mmdebstrap)."""
    suite, sources = _base_inputs()
    image = _base_image_of(suite, _base_key(suite, sources))
    rootfs = image.tar.with_name(image.tar.stem + "-rootfs.tar")
    if not image.tar.exists():
        if not rootfs.exists():
            _log(f"Debian {suite} base rootfs with mmdebstrap (about a minute, once)")
            partial = rootfs.with_name(rootfs.name + ".partial")
            partial.unlink(missing_ok=True)
            _run(
                [
                    "mmdebstrap",
                    "--variant=minbase",
                    "--format=tar",
                    f"--include={','.join(BASE_PACKAGES)}",
                    *(f"--dpkgopt={option}" for option in _DPKG_EXCLUDES),
                    suite,
                    str(partial),
                    *sources,
                ]
            )
            partial.rename(rootfs)
        _log(f"committing {image.ref}")
        container = _buildah("from", "--quiet", "scratch")
        try:
            _buildah("add", "--quiet", container, str(rootfs), "/")
            env_args = [arg for pair in _BASE_ENV for arg in ("--env", pair)]
            _buildah("config", *env_args, "--cmd", '["/bin/bash"]', container)
            _buildah("commit", "--quiet", "--rm", container, image.ref)
        except ImageBuildError:
            subprocess.run(buildah_command("rm", container), capture_output=True, check=False)
            raise
        _push(image.ref, image.tar)
        rootfs.unlink()
    elif not _has_image(image.ref):
        _buildah("pull", "--quiet", f"docker-archive:{image.tar}")
    return image


# -- the sandbox (pause) image ----------------------------------------------------------------------


def go_module_cache() -> Path:
    """``go env GOMODCACHE`` (``~/go/pkg/mod`` when Go is not at hand)."""
    for go in (shutil.which("go"), "/usr/local/go/bin/go"):
        if go and Path(go).exists():
            found = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False)
            if found.returncode == 0 and found.stdout.strip():
                return Path(found.stdout.strip())
    return Path.home() / "go" / "pkg" / "mod"


def pause_source_dir() -> Path:
    """``build/pause`` of the k8s.io/kubernetes module the control plane is built from."""
    directory = go_module_cache() / f"k8s.io/kubernetes@{KUBERNETES_VERSION}" / "build" / "pause"
    if not (directory / "linux" / "pause.c").exists():
        go = shutil.which("go") or "/usr/local/go/bin/go"
        _log(f"downloading k8s.io/kubernetes@{KUBERNETES_VERSION} into the Go module cache")
        module = f"k8s.io/kubernetes@{KUBERNETES_VERSION}"
        _run([go, "mod", "download", module], cwd=Path(tempfile.gettempdir()))
    if not (directory / "linux" / "pause.c").exists():
        raise ImageBuildError(f"{directory / 'linux' / 'pause.c'} is missing")
    return directory


def _pause_tag(source: Path) -> str:
    match = re.search(r"^TAG \?= (\S+)", (source / "Makefile").read_text(), re.MULTILINE)
    return match.group(1) if match else KUBERNETES_VERSION


def _gcc_flags(tag: str) -> list[str]:
    return ["-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag}-{KUBERNETES_VERSION}"]


def pause_image_of(source: Path) -> Image:
    tag = _pause_tag(source)
    gcc = _run(["gcc", "--version"]).splitlines()[0]
    key = _digest((source / "linux" / "pause.c").read_bytes(), *_gcc_flags(tag), gcc)
    return Image(f"{PAUSE_REPOSITORY}:{tag}", images_dir() / f"pause-{tag}-{key[:16]}.tar", key)


def build_pause_image() -> Image:
    """The sandbox image: a static ``/pause`` as entrypoint, nothing else."""
    source = pause_source_dir()
    image = pause_image_of(source)
    if image.tar.exists():
        return image
    _log(f"building {image.ref} from {source / 'linux' / 'pause.c'}")
    with tempfile.TemporaryDirectory(prefix="pause-") as work:
        binary = Path(work) / "pause"
        _run(["gcc", *_gcc_flags(_pause_tag(source)), "-o", str(binary), str(source / "linux" / "pause.c")])
        container = _buildah("from", "--quiet", "scratch")
        try:
            _buildah("copy", "--quiet", container, str(binary), "/pause")
            _buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container)
            _buildah("commit", "--quiet", "--rm", container, image.ref)
        except ImageBuildError:
            subprocess.run(buildah_command("rm", container), capture_output=True, check=False)
            raise
    _push(image.ref, image.tar)
    return image


# -- the project's image ----------------------------------------------------------------------------


def _ignore_rules(root: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """``.dockerignore`` as (excluded, pattern) rules; the last matching rule wins, like Docker's."""
    rules = []
    path = root / ".dockerignore"
    for raw in path.read_text().splitlines() if path.exists() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**", index):
                regex += ".*"
                index += 2
                if pattern.startswith("/", index):
                    regex = regex[:-2] + "(.*/)?"
                    index += 1
            elif pattern[index] == "*":
                regex += "[^/]*"
                index += 1
            elif pattern[index] == "?":
                regex += "[^/]"
                index += 1
            else:
                regex += re.escape(pattern[index])
                index += 1
        rules.append((not negated, re.compile(rf"^{regex}(/.*)?$")))
    return rules


def context_files(root: Path = REPOSITORY_ROOT) -> list[Path]:
    """The build context's files after ``.dockerignore``, relative to ``root``, sorted."""
    rules = _ignore_rules(root)

    def excluded(relative: str) -> bool:
        verdict = False
        for exclude, pattern in rules:
            if pattern.match(relative):
                verdict = exclude
        return verdict

    found = []
    for directory, subdirs, files in os.walk(root):
        relative_dir = Path(directory).relative_to(root)
        subdirs[:] = sorted(d for d in subdirs if d not in {".git", ".venv", "node_modules"})
        for name in files:
            relative = relative_dir / name
            if not excluded(relative.as_posix()):
                found.append(relative)
    return sorted(found)


def _project_version(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def project_key(root: Path = REPOSITORY_ROOT, base: Image | None = None) -> str:
    """Hash of the Dockerfile, ``.dockerignore``, every context file (name and bytes) and the base."""
    if base is None:
        suite, sources = _base_inputs()
        base = _base_image_of(suite, _base_key(suite, sources))
    parts: list[bytes | str] = [base.ref]
    for name in ("Dockerfile", ".dockerignore"):
        path = root / name
        parts += [name, path.read_bytes() if path.exists() else b""]
    for relative in context_files(root):
        parts += [relative.as_posix(), (root / relative).read_bytes()]
    return _digest(*parts)


def project_image_of(root: Path = REPOSITORY_ROOT, base: Image | None = None) -> Image:
    """The project image the current source tree builds to (nothing is built)."""
    key = project_key(root, base)
    return Image(
        f"{PROJECT_REPOSITORY}:{_project_version(root)}-{key[:12]}",
        images_dir() / f"chute-operator-{key[:16]}.tar",
        key,
    )


def project_image_ref(root: Path = REPOSITORY_ROOT) -> str:
    """The image the dev cluster's operator uses for the sidecar (``CHUTE_OPERATOR_SIDECAR_IMAGE``)."""
    return project_image_of(root).ref


def ca_dir() -> Path | None:
    """The CA directory mounted at ``/etc/ssl/certs`` in RUN steps (``CHUTE_OPERATOR_BUILD_CA_DIR``)."""
    configured = os.environ.get(CA_DIR_ENV)
    if configured is not None:
        return Path(configured) if configured.strip() else None
    default = Path("/etc/ssl/certs")
    return default if default.is_dir() else None


def build_project_image(root: Path = REPOSITORY_ROOT, base: Image | None = None) -> Image:
    """``buildah bud`` of the repository's Dockerfile on the Debian base; its tar, cached by input hash."""
    base = base or build_base_image()
    image = project_image_of(root, base)
    if image.tar.exists():
        os.utime(image.tar)  # in use: kept by the pruning of later builds
        return image
    started = time.monotonic()
    _log(f"building {image.ref} from {root / 'Dockerfile'}")
    certs = ca_dir()
    mounts = ["--volume", f"{certs}:/etc/ssl/certs:ro"] if certs else []
    output = _buildah(
        "bud",
        "--isolation",
        "chroot",
        "--layers",
        "--pull=false",
        "--build-arg",
        f"{BASE_IMAGE_ARG}={base.ref}",
        *mounts,
        "--file",
        str(root / "Dockerfile"),
        "--tag",
        image.ref,
        str(root),
        quiet=False,
    )
    _push(image.ref, image.tar)
    _log(f"built {image.ref} in {time.monotonic() - started:.0f}s")
    _prune_project_images(keep=image, used=set(_STEP_IMAGE.findall(output)))
    return image


_STEP_IMAGE = re.compile(r"^--> (?:Using cache )?([0-9a-f]{11,64})\s*$", re.MULTILINE)
"""buildah's line after each build step: the image it committed or took from its layer cache."""


def _prune_project_images(keep: Image, used: set[str]) -> None:
    """Delete project tars and tags no longer in use (see :data:`KEEP_RECENT_SECONDS`), and every
    untagged intermediate image that the last build neither made nor took from the cache (older
    builds' layers: with the vfs driver each is a whole copy of the rootfs, hundreds of MB)."""
    tars = sorted(
        images_dir().glob("chute-operator-*.tar"), key=lambda tar: tar.stat().st_mtime, reverse=True
    )
    recent = time.time() - KEEP_RECENT_SECONDS
    kept = {keep.tar, *tars[:KEEP_PROJECT_IMAGES], *(tar for tar in tars if tar.stat().st_mtime > recent)}
    for tar in tars:
        if tar not in kept:
            tar.unlink(missing_ok=True)
    listing = _buildah("images", "--json", "--filter", f"reference={PROJECT_REPOSITORY}")
    tags = [name for entry in json.loads(listing or "[]") for name in entry.get("names") or []]
    wanted = {keep.ref} | {_tar_ref(tar) for tar in kept if tar.exists()}
    stale = [tag for tag in tags if tag.startswith(PROJECT_REPOSITORY + ":") and tag not in wanted]
    if stale:
        subprocess.run(buildah_command("rmi", *stale), capture_output=True, check=False)
    listing = _buildah("images", "--all", "--json")
    unused = [
        entry["id"]
        for entry in json.loads(listing or "[]")
        if not entry.get("names") and not any(_same_id(entry["id"], step) for step in used)
    ]
    if unused:
        subprocess.run(buildah_command("rmi", *unused), capture_output=True, check=False)


def _same_id(one: str, other: str) -> bool:
    """Image ids as buildah prints them: full or truncated to 11 or 12 hex digits."""
    return one.startswith(other) or other.startswith(one)


def _tar_ref(tar: Path) -> str:
    """The name a docker-archive tar was pushed with."""
    with tarfile.open(tar) as archive:
        manifest = archive.extractfile("manifest.json")
        tags: list[str] = json.load(manifest)[0].get("RepoTags") or [""] if manifest else [""]
    return tags[0]


# -- into a registry --------------------------------------------------------------------------------


def push_command(ref: str, destination: str, digest_file: Path, tls_verify: bool = True) -> list[str]:
    """``buildah push`` of a local image to ``destination`` (a registry reference) as an OCI image (gzip
    layers: about 4 s for the project image into an empty registry on loopback, 2 cores)."""
    return buildah_command(
        "push",
        "--quiet",
        f"--tls-verify={'true' if tls_verify else 'false'}",
        "--format",
        "oci",
        "--digestfile",
        str(digest_file),
        ref,
        f"docker://{destination}",
    )


def push_image(ref: str, tar: Path, destination: str, tls_verify: bool = True) -> str:
    """Push the built image ``ref`` (taken back from its cached ``tar`` if buildah's storage lost it) to
    ``destination``; the pushed manifest's digest."""
    if not _has_image(ref):
        if not tar.exists():
            raise ImageBuildError(f"image {ref} is neither in buildah's storage nor in {tar}")
        _buildah("pull", "--quiet", f"docker-archive:{tar}")
    with tempfile.TemporaryDirectory(prefix="push-") as work:
        digest_file = Path(work) / "digest"
        _run(push_command(ref, destination, digest_file, tls_verify))
        return digest_file.read_text().strip()


# -- everything -------------------------------------------------------------------------------------


def ensure_images(root: Path = REPOSITORY_ROOT) -> Images:
    """Build whatever is missing or stale (cached tars are reused); return the refs and tars."""
    with build_lock():
        base = build_base_image()
        return Images(base=base, pause=build_pause_image(), project=build_project_image(root, base))
