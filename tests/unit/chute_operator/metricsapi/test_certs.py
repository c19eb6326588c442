"""The metrics API's certificate as the operator makes it (pure): names, chain, renewal window."""

from __future__ import annotations

import contextlib
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from chute_operator.metricsapi import certs

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)
NAMES = certs.service_names("co-metrics-api", "ops", "cluster.local")


def bundle_of(issued: certs.Issued) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(issued.ca_bundle)


def test_the_names_are_the_services_dns_names() -> None:
    assert NAMES == (
        "co-metrics-api",
        "co-metrics-api.ops",
        "co-metrics-api.ops.svc",  # the name the kube-apiserver verifies
        "co-metrics-api.ops.svc.cluster.local",
    )


def test_a_new_certificate_is_for_the_names_signed_by_a_new_ca_and_servable() -> None:
    issued = certs.issue(NAMES, NOW, YEAR)
    leaf = certs.leaf(issued)
    (ca,) = bundle_of(issued)
    assert certs.dns_names(leaf) == set(NAMES)
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.not_valid_before_utc < NOW <= leaf.not_valid_before_utc + timedelta(minutes=10)
    assert leaf.not_valid_after_utc == ca.not_valid_after_utc == NOW + YEAR
    assert certs.problem(issued, NAMES, NOW) is None
    assert certs.renew_at(issued, timedelta(days=30)) == NOW + YEAR - timedelta(days=30)
    assert b"PRIVATE KEY" in issued.key
    assert b"PRIVATE KEY" not in issued.ca_bundle


def test_each_certificate_has_its_own_ca_and_key() -> None:
    first, second = certs.issue(NAMES, NOW, YEAR), certs.issue(NAMES, NOW, YEAR)
    assert first.key != second.key
    assert bundle_of(first)[0].subject != bundle_of(second)[0].subject
    assert certs.problem(certs.Issued(first.cert, first.key, second.ca_bundle), NAMES, NOW) == (
        "tls.crt is not signed by a CA of ca.crt"
    )


def test_python_ssl_serves_it_and_a_client_verifies_it_by_the_service_name(tmp_path: Path) -> None:
    issued = certs.issue(NAMES, datetime.now(UTC), YEAR)
    (tmp_path / "tls.crt").write_bytes(issued.cert)
    (tmp_path / "tls.key").write_bytes(issued.key)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client = ssl.create_default_context(cadata=issued.ca_bundle.decode())
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(client_in, client_out, server_hostname="co-metrics-api.ops.svc")
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        for side in (client_side, server_side):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    client_side.do_handshake()  # raises SSLCertVerificationError if the chain or the name were wrong
    assert client_side.getpeercert()["subjectAltName"][2] == ("DNS", "co-metrics-api.ops.svc")


def test_a_renewal_keeps_the_earlier_ca_trusted_until_it_expires() -> None:
    first = certs.issue(NAMES, NOW, YEAR)
    later = NOW + YEAR - timedelta(days=20)
    second = certs.issue(NAMES, later, YEAR, first.ca_bundle)
    new_ca, old_ca = bundle_of(second)
    certs.leaf(second).verify_directly_issued_by(new_ca)
    certs.leaf(first).verify_directly_issued_by(old_ca)  # a replica still serving it is verified
    third = certs.issue(NAMES, NOW + YEAR + timedelta(days=1), YEAR, second.ca_bundle)
    assert len(bundle_of(third)) == 2  # the first CA expired: dropped
    assert bundle_of(third)[1] == new_ca
    twice = certs.issue(NAMES, later, YEAR, second.ca_bundle + first.ca_bundle)
    assert bundle_of(twice)[1:] == [new_ca, old_ca]  # each earlier CA once


def test_only_what_is_due_is_renewed() -> None:
    issued = certs.issue(NAMES, NOW, YEAR)
    window = timedelta(days=30)
    assert NOW + YEAR - timedelta(days=31) < certs.renew_at(issued, window)
    assert NOW + YEAR - timedelta(days=29) >= certs.renew_at(issued, window)
    assert certs.problem(issued, NAMES, NOW + YEAR - timedelta(seconds=1)) is None  # due, still servable
    assert str(certs.problem(issued, NAMES, NOW + YEAR)).startswith("expired at")


def test_what_cannot_be_served_is_said() -> None:
    issued = certs.issue(NAMES, NOW, YEAR)
    other = certs.issue(NAMES, NOW, YEAR)
    assert certs.problem(None, NAMES, NOW) == "missing"
    assert str(certs.problem(issued, (*NAMES[:3], "x.cluster.example"), NOW)).startswith("names ")
    assert certs.problem(certs.Issued(issued.cert, other.key, issued.ca_bundle), NAMES, NOW) == (
        "tls.key is not the key of tls.crt"
    )
    for broken in (
        certs.Issued(b"junk", issued.key, issued.ca_bundle),
        certs.Issued(issued.cert, b"junk", issued.ca_bundle),
        certs.Issued(issued.cert, issued.key, b"junk"),
    ):
        assert str(certs.problem(broken, NAMES, NOW)).startswith("unreadable")


def test_the_secret_data_goes_there_and_back() -> None:
    issued = certs.issue(NAMES, NOW, YEAR)
    data = certs.secret_data(issued)
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    assert certs.from_secret_data(data) == issued
    assert certs.from_secret_data(None) is None
    assert certs.from_secret_data({**data, "ca.crt": ""}) is None
    assert certs.from_secret_data({**data, "tls.key": "not base64!"}) is None


def test_a_certificate_needs_a_name() -> None:
    with pytest.raises(ValueError, match="DNS name"):
        certs.issue((), NOW, YEAR)
