"""A throwaway certificate authority and every key and certificate the control plane needs.

Made with the ``openssl`` command (no Python crypto dependency); ECDSA P-256 keys, so a full set
takes a fraction of a second.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SERVICE_CLUSTER_IP = "10.96.0.1"
"""First address of the default Service range: the ``kubernetes`` Service's ClusterIP."""

APISERVER_SANS = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)

VALID_DAYS = 365
FRONT_PROXY_CLIENT_NAME = "front-proxy-client"
"""The API server's identity towards aggregated API servers (request-header authentication)."""


class PkiError(RuntimeError):
    """openssl is missing or refused to make a key or certificate."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """All the files of one control plane's PKI."""

    ca: KeyPair
    apiserver: KeyPair
    apiserver_kubelet_client: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    kwok: KeyPair
    kwok_serving: KeyPair
    front_proxy_ca: KeyPair
    front_proxy_client: KeyPair
    service_account_key: Path
    service_account_pub: Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise PkiError("the openssl command is needed to make the control plane's certificates")
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PkiError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


def _new_key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path), cwd=path.parent)
    path.chmod(0o600)


def _subject(common_name: str, organization: str | None) -> str:
    return f"/CN={common_name}" + (f"/O={organization}" if organization else "")


def _make_ca(directory: Path, name: str = "ca", common_name: str = "chute-operator-dev-ca") -> KeyPair:
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    _new_key(pair.key)
    _openssl(
        "req", "-x509", "-new", "-key", str(pair.key), "-out", str(pair.cert), "-days", str(VALID_DAYS),
        "-subj", f"/CN={common_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=directory,
    )  # fmt: skip
    return pair


def _issue(
    directory: Path,
    ca: KeyPair,
    name: str,
    common_name: str,
    organization: str | None = None,
    *,
    server_names: tuple[str, ...] = (),
) -> KeyPair:
    """A leaf certificate signed by ``ca``: a client one, or a serving one when names are given."""
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    _new_key(pair.key)
    csr = directory / f"{name}.csr"
    subject = _subject(common_name, organization)
    _openssl("req", "-new", "-key", str(pair.key), "-out", str(csr), "-subj", subject, cwd=directory)
    usage = "serverAuth,clientAuth" if server_names else "clientAuth"
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        f"extendedKeyUsage={usage}",
    ]
    if server_names:
        extensions.append("subjectAltName=" + ",".join(server_names))
    extension_file = directory / f"{name}.ext"
    extension_file.write_text("\n".join(extensions) + "\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-set_serial", f"0x{secrets.token_hex(16)}",
        "-out", str(pair.cert), "-days", str(VALID_DAYS), "-sha256", "-extfile", str(extension_file),
        cwd=directory,
    )  # fmt: skip
    csr.unlink()
    extension_file.unlink()
    return pair


def create_pki(directory: Path, service_ip: str = SERVICE_CLUSTER_IP, extra_ips: tuple[str, ...] = ()) -> Pki:
    """Write a fresh CA, serving and client certificates and the service-account key pair.

    ``service_ip``: the ``kubernetes`` Service's ClusterIP, a name of the API server's certificate;
    ``extra_ips``: more addresses it names (the one pods reach it on).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(directory)
    front_proxy_ca = _make_ca(directory, "front-proxy-ca", "chute-operator-dev-front-proxy-ca")
    service_account_key = directory / "service-account.key"
    service_account_pub = directory / "service-account.pub"
    leaves: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
        "apiserver": (
            "kube-apiserver",
            None,
            (*APISERVER_SANS, f"IP:{service_ip}", *(f"IP:{ip}" for ip in extra_ips)),
        ),
        "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters", ()),
        "admin": ("chute-operator-dev-admin", "system:masters", ()),
        "controller-manager": ("system:kube-controller-manager", None, ()),
        "scheduler": ("system:kube-scheduler", None, ()),
        "kwok": ("kwok-controller", "system:masters", ()),
        "kwok-serving": ("kwok-controller", None, ("IP:127.0.0.1", "DNS:localhost")),
    }
    # Each leaf is a few openssl runs; running them side by side roughly halves the time.
    with ThreadPoolExecutor(max_workers=4) as pool:
        service_account = pool.submit(_new_service_account_key, service_account_key, service_account_pub)
        issued = {
            name: pool.submit(_issue, directory, ca, name, cn, org, server_names=sans)
            for name, (cn, org, sans) in leaves.items()
        }
        front_proxy_client = pool.submit(
            _issue, directory, front_proxy_ca, "front-proxy-client", FRONT_PROXY_CLIENT_NAME
        )
        service_account.result()
        pairs = {name: future.result() for name, future in issued.items()}
    return Pki(
        ca=ca,
        apiserver=pairs["apiserver"],
        apiserver_kubelet_client=pairs["apiserver-kubelet-client"],
        admin=pairs["admin"],
        controller_manager=pairs["controller-manager"],
        scheduler=pairs["scheduler"],
        kwok=pairs["kwok"],
        kwok_serving=pairs["kwok-serving"],
        front_proxy_ca=front_proxy_ca,
        front_proxy_client=front_proxy_client.result(),
        service_account_key=service_account_key,
        service_account_pub=service_account_pub,
    )


def _new_service_account_key(key: Path, public: Path) -> None:
    _new_key(key)
    _openssl("ec", "-in", str(key), "-pubout", "-out", str(public), cwd=key.parent)


@dataclass(frozen=True)
class NodePki:
    """A real node's certificates, signed by the cluster's CA."""

    kubelet_client: KeyPair
    kubelet_serving: KeyPair
    kube_proxy: KeyPair
    network_policies: KeyPair
    """The NetworkPolicy enforcer's identity (:data:`NETWORK_POLICIES_USER`)."""


NETWORK_POLICIES_USER = "chute-dev:kube-network-policies"
"""The user the real node's kube-network-policies authenticates as (bound to its ClusterRole)."""


def create_node_pki(directory: Path, ca: KeyPair, node_name: str, node_ip: str) -> NodePki:
    """The kubelet's identity (``system:node:NAME`` in ``system:nodes``), its serving certificate for
    ``node_ip``, kube-proxy's identity (``system:kube-proxy``, bound to ``system:node-proxier``) and
    kube-network-policies' (:data:`NETWORK_POLICIES_USER`)."""
    directory.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        client = pool.submit(
            _issue, directory, ca, "kubelet-client", f"system:node:{node_name}", "system:nodes"
        )
        serving = pool.submit(
            _issue, directory, ca, "kubelet-serving", f"system:node:{node_name}", "system:nodes",
            server_names=(f"IP:{node_ip}", "IP:127.0.0.1", f"DNS:{node_name}"),
        )  # fmt: skip
        proxy = pool.submit(_issue, directory, ca, "kube-proxy", "system:kube-proxy")
        enforcer = pool.submit(_issue, directory, ca, "kube-network-policies", NETWORK_POLICIES_USER)
        return NodePki(client.result(), serving.result(), proxy.result(), enforcer.result())
