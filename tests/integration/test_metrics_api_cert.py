"""The metrics API's serving certificate made by the operator itself, on the real kube-apiserver: its
Secret made at the first start and reused by the next, the APIService's caBundle written so that the
aggregator verifies what the operator serves (Available), a due certificate renewed by the leader
and served by every replica without a restart, all within the chart's RBAC."""

from __future__ import annotations

import base64
import json
import socket
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from tests.chart.helm import Helm, find, one, operator_service_account
from tests.kube_helpers import apply, condition, eventually, get, service_account_kubeconfig
from tests.metrics_api_harness import APISERVICE, CERT_SECRET, SERVICE, metrics_api_on_loopback, raw
from tests.operator_fixtures import OperatorProcess, _free_port

from chute_devcluster.binaries import ensure_binaries, toolset
from chute_operator.kube import KubeApi
from chute_operator.metricsapi import certs
from chute_operator.metricsapi.certkeeper import FIELD_MANAGER, CertificateKeeper
from chute_operator.metricsapi.server import server_context

pytestmark = pytest.mark.integration


def names(namespace: str) -> tuple[str, ...]:
    return certs.service_names(SERVICE, namespace, "cluster.local")


def held(cp: Any, namespace: str, name: str = CERT_SECRET) -> certs.Issued | None:
    secret = get(cp, "secret", name, namespace)
    return certs.from_secret_data(secret["data"]) if secret else None


def ca_bundle(cp: Any) -> bytes:
    api = get(cp, "apiservice", APISERVICE, "") or {}
    return base64.b64decode((api.get("spec") or {}).get("caBundle") or "")


def available(cp: Any) -> bool:
    return condition(get(cp, "apiservice", APISERVICE, ""), "Available").get("status") == "True"


def served(port: int, namespace: str, bundle: bytes) -> bytes | None:
    """The certificate served on ``port`` (DER), verified as the aggregator verifies it: against
    ``bundle``, for the Service's name; None if it does not verify (or nothing answers)."""
    context = ssl.create_default_context(cadata=bundle.decode())
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as connection,
            context.wrap_socket(connection, server_hostname=f"{SERVICE}.{namespace}.svc") as tls,
        ):
            return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None


def der(issued: certs.Issued) -> bytes:
    return certs.leaf(issued).public_bytes(serialization.Encoding.DER)


def port_of(operator: OperatorProcess) -> int:
    return int(operator.extra_env["CHUTE_OPERATOR_METRICS_API_PORT"])


def test_the_first_start_makes_the_certificate_the_apiservice_trusts_and_the_next_start_reuses_it(
    control_plane: Any, chute_crd: Path, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    assert get(cp, "secret", CERT_SECRET, namespace) is None
    with metrics_api_on_loopback(cp, namespace, tmp_path, operator_cert=True) as (first, _):
        secret = eventually(lambda: get(cp, "secret", CERT_SECRET, namespace), what="the Secret")
        assert secret["type"] == "kubernetes.io/tls"
        version = secret["metadata"]["resourceVersion"]
        issued = certs.from_secret_data(secret["data"])
        assert issued is not None
        assert certs.problem(issued, names(namespace), datetime.now(UTC)) is None
        until = certs.leaf(issued).not_valid_after_utc
        assert timedelta(days=364) < until - datetime.now(UTC) <= timedelta(days=365)

        eventually(lambda: ca_bundle(cp) == issued.ca_bundle, what="the APIService's caBundle")
        assert served(port_of(first), namespace, ca_bundle(cp)) == der(issued)
        eventually(lambda: available(cp), what="the APIService Available", timeout=60)
        status, resources = raw(cp, "/apis/custom.metrics.k8s.io/v1beta2")
        assert status == 0, resources
        assert resources["kind"] == "APIResourceList"
        # The caBundle is the operator's alone: applied under its own field manager, nothing else.
        shown = cp.kubectl("get", "apiservice", APISERVICE, "-o", "json", "--show-managed-fields")
        api = json.loads(shown.stdout)
        owners = {
            entry["manager"]: entry["fieldsV1"]
            for entry in api["metadata"]["managedFields"]
            if "f:caBundle" in (entry.get("fieldsV1") or {}).get("f:spec", {})
        }
        assert owners == {FIELD_MANAGER: {"f:spec": {"f:caBundle": {}}}}

        first.stop()
        second = OperatorProcess(
            cp.kubeconfig, tmp_path, f"metrics-{namespace}-again", (namespace,), **first.extra_env
        ).start()
        try:
            reused = eventually(lambda: served(port_of(second), namespace, ca_bundle(cp)), what="serving")
            assert reused == der(issued)
            secret = get(cp, "secret", CERT_SECRET, namespace) or {}
            assert secret["metadata"]["resourceVersion"] == version  # read, not made again nor written
            assert ca_bundle(cp) == issued.ca_bundle
            eventually(lambda: available(cp), what="the APIService Available again", timeout=60)
        finally:
            second.stop()


def test_a_due_certificate_is_renewed_by_the_leader_and_served_by_every_replica_without_a_restart(
    control_plane: Any, chute_crd: Path, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    now = datetime.now(UTC)
    old = certs.issue(names(namespace), now, timedelta(days=10))  # inside the 30 days before its end
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CERT_SECRET},
        "type": "kubernetes.io/tls",
    }
    apply(cp, {**secret, "data": certs.secret_data(old)}, namespace)
    with metrics_api_on_loopback(
        cp, namespace, tmp_path, operator_cert=True, CHUTE_OPERATOR_METRICS_API_CERT_CHECK_SECONDS="1"
    ) as (leader, _):
        renewed = eventually(
            lambda: (lambda found: found if found and found.cert != old.cert else None)(held(cp, namespace)),
            what="the renewed certificate",
            timeout=60,
        )
        assert certs.leaf(renewed).not_valid_after_utc - now > timedelta(days=364)
        new_ca, old_ca = x509.load_pem_x509_certificates(renewed.ca_bundle)
        certs.leaf(renewed).verify_directly_issued_by(new_ca)
        certs.leaf(old).verify_directly_issued_by(old_ca)  # still trusted: a replica may still serve it
        eventually(lambda: ca_bundle(cp) == renewed.ca_bundle, what="the new caBundle")
        eventually(
            lambda: served(port_of(leader), namespace, renewed.ca_bundle) == der(renewed),
            what="the leader serving the renewed certificate",
        )
        assert leader.process is not None
        assert leader.process.poll() is None  # the same process: reloaded, not restarted
        eventually(lambda: available(cp), what="the APIService Available", timeout=60)

        # A second replica (not the leader) serves the Secret's certificate and follows it.
        other = OperatorProcess(
            cp.kubeconfig,
            tmp_path,
            f"metrics-{namespace}-b",
            (namespace,),
            **{**leader.extra_env, "CHUTE_OPERATOR_METRICS_API_PORT": str(_free_port())},
        ).start()
        try:
            eventually(
                lambda: served(port_of(other), namespace, renewed.ca_bundle) == der(renewed),
                what="the second replica serving it",
            )
            newer = certs.issue(names(namespace), datetime.now(UTC), timedelta(days=365), renewed.ca_bundle)
            apply(cp, {**secret, "data": certs.secret_data(newer)}, namespace)  # as a renewal writes it
            for port in (port_of(leader), port_of(other)):

                def serves_newer(port: int = port) -> bool:
                    return served(port, namespace, newer.ca_bundle) == der(newer)

                eventually(serves_newer, what="each replica serving the changed Secret", timeout=30)
            eventually(lambda: ca_bundle(cp) == newer.ca_bundle, what="the leader's caBundle following it")
            eventually(lambda: available(cp), what="the APIService Available", timeout=60)
        finally:
            other.stop()


@pytest.fixture
async def chart_rbac(
    control_plane: Any, namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[KubeApi, str]]:
    """The chart's ServiceAccount with only the metrics API certificate's RBAC (as rendered), and an
    APIService naming the chart's Service; a KubeApi as that ServiceAccount, and its user name."""
    cp = control_plane
    binary = toolset().helm
    helm = Helm(binary if binary.exists() else ensure_binaries().helm, tmp_path / "helm")
    objects = helm.template(namespace=namespace)
    chosen = [
        operator_service_account(objects),
        one(objects, "Role", "co-chute-operator-metrics-api-cert"),
        one(objects, "RoleBinding", "co-chute-operator-metrics-api-cert"),
        one(objects, "ClusterRole", "co-chute-operator-metrics-api"),
        one(objects, "ClusterRoleBinding", "co-chute-operator-metrics-api"),
        one(objects, "APIService"),
    ]
    assert not find(objects, "Secret")
    for manifest in chosen:
        apply(cp, manifest, namespace)
    account = operator_service_account(objects)["metadata"]["name"]
    kubeconfig = service_account_kubeconfig(cp, account, namespace, tmp_path / "sa.kubeconfig")
    try:
        async with AsyncClient(config=KubeConfig.from_file(kubeconfig)) as client:
            api = KubeApi(client, FIELD_MANAGER, FIELD_MANAGER, "test")
            yield api, f"system:serviceaccount:{namespace}:{account}"
            await api.close()
    finally:
        cp.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        for kind in ("clusterrolebinding", "clusterrole"):
            cp.kubectl("delete", kind, "co-chute-operator-metrics-api", "--ignore-not-found", check=False)


async def test_the_charts_rbac_lets_every_replica_make_read_and_renew_it_and_no_more(
    chart_rbac: tuple[KubeApi, str], control_plane: Any, namespace: str, tmp_path: Path
) -> None:
    cp, service = control_plane, "co-chute-operator-metrics-api"
    api, account = chart_rbac
    clock = [datetime.now(UTC)]

    def keeper(replica: str, leader: bool) -> CertificateKeeper:
        directory = tmp_path / replica
        directory.mkdir()
        return CertificateKeeper(
            api=api,
            namespace=namespace,
            secret=f"{service}-tls",
            service=service,
            names=certs.service_names(service, namespace, "cluster.local"),
            validity=timedelta(days=365),
            renew_before=timedelta(days=30),
            context=server_context(),
            directory=directory,
            is_leader=lambda: leader,
            now=lambda: clock[0],
        )

    first, second = keeper("a", leader=False), keeper("b", leader=True)
    await first.sync()  # create, fill the empty caBundle
    await second.sync()  # get, apply nothing
    made = held(cp, namespace, f"{service}-tls")
    assert made is not None
    assert first.served == second.served == made
    assert ca_bundle(cp) == made.ca_bundle
    clock[0] += timedelta(days=340)  # due
    await second.sync()  # the leader: patch the APIService, update the Secret
    renewed = held(cp, namespace, f"{service}-tls")
    assert renewed is not None
    assert renewed != made
    assert ca_bundle(cp) == renewed.ca_bundle
    await first.sync()
    assert first.served == renewed

    for verb, resource, allowed in (
        ("get", f"secrets/{service}-tls", True),
        ("update", f"secrets/{service}-tls", True),
        ("get", "secrets/another", False),
        ("list", "secrets", False),
        ("delete", f"secrets/{service}-tls", False),
        ("patch", f"apiservices.apiregistration.k8s.io/{APISERVICE}", True),
        ("patch", "apiservices.apiregistration.k8s.io/v1beta1.metrics.k8s.io", False),
        ("delete", f"apiservices.apiregistration.k8s.io/{APISERVICE}", False),
    ):
        answer = cp.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, f"--as={account}", check=False
        ).stdout.strip()
        assert (answer == "yes") == allowed, (verb, resource, answer)
