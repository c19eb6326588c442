"""The certificate keeper against a fake API: made once, read after, renewed by the leader only, the
APIService's caBundle written before the Secret, never to another Service's APIService."""

from __future__ import annotations

import base64
import copy
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from chute_operator.kube import AlreadyExists, Conflict
from chute_operator.metricsapi import certs
from chute_operator.metricsapi.certkeeper import API_SERVICE, FIELD_MANAGER, CertificateKeeper
from chute_operator.metricsapi.server import server_context

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAMES = certs.service_names("co-metrics-api", "ops", "cluster.local")
YEAR, MONTH = timedelta(days=365), timedelta(days=30)


class Api:
    """One Secret and one APIService, with resourceVersions; every write recorded in ``writes``."""

    def __init__(self, service: tuple[str, str] = ("ops", "co-metrics-api"), ca_bundle: str = "") -> None:
        self.stored: dict[str, Any] | None = None
        self.version = 0
        self.writes: list[str] = []
        spec: dict[str, Any] = {"service": {"namespace": service[0], "name": service[1], "port": 443}}
        if ca_bundle:
            spec["caBundle"] = ca_bundle
        self.apiservice: dict[str, Any] | None = {"metadata": {"name": API_SERVICE}, "spec": spec}
        self.before_write: Any = None
        """Called before a Secret write lands: another replica's write in between."""

    def store(self, data: dict[str, str], secret_type: str = certs.SECRET_TYPE) -> dict[str, Any]:
        self.version += 1
        meta = {"name": "tls", "namespace": "ops", "resourceVersion": str(self.version)}
        self.stored = {"metadata": meta, "type": secret_type, "data": data}
        return copy.deepcopy(self.stored)

    async def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        assert (namespace, name) == ("ops", "tls")
        return copy.deepcopy(self.stored)

    async def create_secret(
        self, namespace: str, name: str, data: dict[str, str], secret_type: str = "Opaque"
    ) -> dict[str, Any]:
        if self.before_write:
            self.before_write, before = None, self.before_write
            before()
        if self.stored is not None:
            raise AlreadyExists("taken", 409, "AlreadyExists")
        self.writes.append("create secret")
        return self.store(data, secret_type)

    async def replace_secret(self, secret: dict[str, Any]) -> dict[str, Any]:
        if self.before_write:
            self.before_write, before = None, self.before_write
            before()
        assert self.stored is not None
        if secret["metadata"]["resourceVersion"] != self.stored["metadata"]["resourceVersion"]:
            raise Conflict("changed", 409, "Conflict")
        self.writes.append("replace secret")
        return self.store(secret["data"], secret["type"])

    async def api_service(self, name: str) -> dict[str, Any] | None:
        assert name == API_SERVICE
        return copy.deepcopy(self.apiservice)

    async def apply_api_service(self, manifest: dict[str, Any], field_manager: str) -> dict[str, Any]:
        assert field_manager == FIELD_MANAGER
        assert manifest == {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": API_SERVICE},
            "spec": {"caBundle": manifest["spec"]["caBundle"]},
        }  # that field alone
        assert self.apiservice is not None
        self.apiservice["spec"]["caBundle"] = manifest["spec"]["caBundle"]
        self.writes.append("apiservice caBundle")
        return self.apiservice

    def ca_bundle(self) -> bytes:
        assert self.apiservice is not None
        return base64.b64decode(self.apiservice["spec"].get("caBundle", ""))

    def held(self) -> certs.Issued:
        assert self.stored is not None
        issued = certs.from_secret_data(self.stored["data"])
        assert issued is not None
        return issued


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def keeper(api: Api, tmp_path: Path, leader: bool = True, clock: Clock | None = None) -> CertificateKeeper:
    directory = tmp_path / f"replica-{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    return CertificateKeeper(
        api=api,  # type: ignore[arg-type]
        namespace="ops",
        secret="tls",
        service="co-metrics-api",
        names=NAMES,
        validity=YEAR,
        renew_before=MONTH,
        context=server_context(),
        directory=directory,
        is_leader=lambda: leader,
        now=clock or Clock(),
    )


async def test_the_first_replica_makes_it_the_next_reads_it_and_both_serve_it(tmp_path: Path) -> None:
    api = Api()
    first = keeper(api, tmp_path, leader=False)
    await first.sync()
    assert api.writes == ["create secret", "apiservice caBundle"]  # an empty caBundle: any replica fills it
    assert api.stored is not None
    assert api.stored["type"] == "kubernetes.io/tls"
    held = api.held()
    assert certs.problem(held, NAMES, NOW) is None
    assert first.served == held
    assert api.ca_bundle() == held.ca_bundle
    assert (first.directory / "tls.key").read_bytes() == held.key
    assert (first.directory / "tls.key").stat().st_mode & 0o077 == 0

    second = keeper(api, tmp_path)
    await second.sync()
    await first.sync()
    assert api.writes == ["create secret", "apiservice caBundle"]  # read, nothing written again
    assert second.served == held


async def test_a_create_that_loses_the_race_serves_the_other_replicas(tmp_path: Path) -> None:
    api = Api()
    theirs = certs.issue(NAMES, NOW, YEAR)
    api.before_write = lambda: api.store(certs.secret_data(theirs))
    mine = keeper(api, tmp_path)
    await mine.sync()
    assert mine.served == theirs
    assert api.writes == ["apiservice caBundle"]


async def test_one_that_cannot_be_served_is_replaced_over_the_version_read(tmp_path: Path) -> None:
    api = Api(ca_bundle="b2xk")
    wrong = certs.issue(("someone-else",), NOW, YEAR)
    api.store({**certs.secret_data(wrong), "extra": "a2VwdA=="}, secret_type="Opaque")
    replica = keeper(api, tmp_path, leader=False)
    await replica.sync()
    assert api.writes == ["replace secret", "apiservice caBundle"]  # it wrote the Secret: the bundle follows
    assert api.stored is not None
    assert api.stored["type"] == "Opaque"
    assert api.stored["data"]["extra"] == "a2VwdA=="
    assert certs.problem(api.held(), NAMES, NOW) is None
    assert api.ca_bundle() == api.held().ca_bundle

    # Two replicas replacing it at once: the second one's write conflicts and it serves the first's.
    api.store(certs.secret_data(wrong))
    first = certs.issue(NAMES, NOW, YEAR)
    api.before_write = lambda: api.store(certs.secret_data(first))
    late = keeper(api, tmp_path, leader=False)
    await late.sync()
    assert late.served == first


async def test_the_leader_alone_renews_a_due_one_bundle_first(tmp_path: Path) -> None:
    api, clock = Api(), Clock()
    leader, other = keeper(api, tmp_path, True, clock), keeper(api, tmp_path, False, clock)
    await leader.sync()
    await other.sync()
    old = api.held()
    clock.now = NOW + YEAR - MONTH + timedelta(minutes=1)
    await other.sync()
    assert api.held() == old
    assert other.served == old
    api.writes.clear()
    await leader.sync()
    assert api.writes == ["apiservice caBundle", "replace secret"]
    new = api.held()
    assert new != old
    assert leader.served == new
    assert certs.leaf(new).not_valid_after_utc == clock.now + YEAR
    bundle = api.ca_bundle()
    assert bundle == new.ca_bundle
    assert certs.problem(certs.Issued(old.cert, old.key, bundle), NAMES, clock.now) is None  # still trusted
    await other.sync()
    assert other.served == new  # the next read serves it


async def test_the_leader_keeps_the_bundle_others_only_fill_it(tmp_path: Path) -> None:
    stale = base64.b64encode(b"stale").decode()
    api = Api(ca_bundle=stale)
    api.store(certs.secret_data(certs.issue(NAMES, NOW, YEAR)))
    await keeper(api, tmp_path, leader=False).sync()
    assert api.apiservice is not None
    assert api.apiservice["spec"]["caBundle"] == stale
    await keeper(api, tmp_path, leader=True).sync()
    assert api.ca_bundle() == api.held().ca_bundle


@pytest.mark.parametrize("found", ["other-service", "missing"])
async def test_an_apiservice_of_another_service_or_none_is_left_alone(tmp_path: Path, found: str) -> None:
    api = Api(service=("monitoring", "prometheus-adapter"), ca_bundle="dGhlaXJz")
    if found == "missing":
        api.apiservice = None
    replica = keeper(api, tmp_path)
    await replica.sync()
    await replica.sync()
    assert api.writes == ["create secret"]
    assert replica.served == api.held()


async def test_a_changed_secret_is_served_without_a_restart(tmp_path: Path) -> None:
    api = Api()
    replica = keeper(api, tmp_path, leader=False)
    await replica.sync()
    renewed = certs.issue(NAMES, NOW, YEAR)
    api.store(certs.secret_data(renewed))
    await replica.sync()
    assert replica.served == renewed
    assert (replica.directory / "tls.crt").read_bytes() == renewed.cert
    assert not list(replica.directory.glob("*.new"))


async def test_nothing_loads_until_a_certificate_is_read(tmp_path: Path) -> None:
    class Down(Api):
        async def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
            raise ConnectionError("no API server")

    replica = keeper(Down(), tmp_path)
    with pytest.raises(ConnectionError):
        await replica.sync()
    assert replica.served is None
    assert isinstance(replica.context, ssl.SSLContext)


async def test_a_secret_made_again_keeps_trusting_what_the_replicas_serve(tmp_path: Path) -> None:
    """Deleted (an upgrade from a chart that rendered it, by hand): the replica that makes it again
    writes a bundle that still verifies what the others serve until they read the new one."""
    api = Api()
    maker, other = keeper(api, tmp_path, leader=False), keeper(api, tmp_path, leader=False)
    await maker.sync()
    await other.sync()
    before = api.held()
    api.stored = None
    await maker.sync()
    after = api.held()
    assert after != before
    assert api.ca_bundle() == after.ca_bundle
    assert certs.problem(certs.Issued(before.cert, before.key, after.ca_bundle), NAMES, NOW) is None
    assert len(x509.load_pem_x509_certificates(after.ca_bundle)) == 2  # each CA once
    await other.sync()
    assert other.served == after
