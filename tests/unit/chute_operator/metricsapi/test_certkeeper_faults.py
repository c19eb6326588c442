"""The metrics API certificate the operator keeps, against a skewed clock, a
foreign CA in its Secret and an APIService it cannot write (found by the breaking pass of issue 26)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from chute_operator.kube import Invalid
from chute_operator.metricsapi import certs
from tests.unit.chute_operator.metricsapi.test_certkeeper import MONTH, NOW, YEAR, Api, Clock, keeper


async def test_a_certificate_from_a_clock_ahead_is_not_served_as_it_is(tmp_path: Path) -> None:
    api = Api()
    ahead = Clock()
    ahead.now = NOW + timedelta(hours=6)  # this node's clock is 6 h fast
    await keeper(api, tmp_path, leader=False, clock=ahead).sync()
    made = api.held()
    assert certs.leaf(made).not_valid_before_utc > NOW  # not valid for the API server yet
    right = keeper(api, tmp_path, leader=True)  # a replica with the right clock
    await right.sync()
    served = right.served
    assert served is not None
    assert certs.leaf(served).not_valid_before_utc <= NOW


def _foreign_ca() -> bytes:
    # any CA an attacker keeps the key of, valid for a century
    return certs.issue(("attacker",), NOW, timedelta(days=36500)).ca_bundle


def _ca_subjects(bundle: bytes) -> list[str]:
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(bundle)]


async def test_rotation_drops_a_ca_that_signed_nothing_it_served(tmp_path: Path) -> None:
    api, clock = Api(), Clock()
    leader = keeper(api, tmp_path, True, clock)
    await leader.sync()
    ours = api.held()
    foreign = _foreign_ca()
    api.store(certs.secret_data(certs.Issued(ours.cert, ours.key, ours.ca_bundle + foreign)))
    await leader.sync()
    clock.now = NOW + YEAR - MONTH + timedelta(minutes=1)
    await leader.sync()  # renewed
    assert certs.leaf(api.held()).not_valid_after_utc == clock.now + YEAR
    assert _ca_subjects(foreign)[0] not in _ca_subjects(api.ca_bundle())


async def test_deleting_a_tampered_secret_drops_the_foreign_ca(tmp_path: Path) -> None:
    api = Api()
    replica = keeper(api, tmp_path, True)
    await replica.sync()
    ours = api.held()
    foreign = _foreign_ca()
    api.store(certs.secret_data(certs.Issued(ours.cert, ours.key, ours.ca_bundle + foreign)))
    await replica.sync()  # served: its bundle now holds the foreign CA
    api.stored = None  # the platform team deletes the Secret to start clean
    await replica.sync()
    assert _ca_subjects(foreign)[0] not in _ca_subjects(api.held().ca_bundle)
    assert _ca_subjects(foreign)[0] not in _ca_subjects(api.ca_bundle())


class RefusingApi(Api):
    """An APIService whose caBundle write the API server refuses (422: insecureSkipTLSVerify is set,
    or 403: RBAC brought by the user has no patch on apiservices)."""

    async def apply_api_service(self, manifest: dict[str, object], field_manager: str) -> dict[str, object]:
        raise Invalid("spec.insecureSkipTLSVerify: may not be true if caBundle is present", 422, "Invalid")


async def test_a_refused_cabundle_write_does_not_stop_the_replica_from_serving(tmp_path: Path) -> None:
    api = RefusingApi()
    replica = keeper(api, tmp_path, leader=True)
    with pytest.raises(Invalid):
        await replica.sync()
    assert api.stored is not None  # the Secret was made
    assert replica.served == api.held()
