"""The metrics API's serving certificate, as the operator makes it: pure (no cluster, no files).

A Secret holds it, laid out as cert-manager lays out its own: ``tls.crt`` and ``tls.key`` (the
serving certificate and its key), ``ca.crt`` (what the APIService's ``caBundle`` trusts: the CA that
signed ``tls.crt`` first, then any earlier CA not expired yet). Every renewal makes a new CA, signs
one certificate with it and forgets the CA's key, which is never stored: nothing can sign another
certificate under a CA the kube-apiserver trusts. The earlier CA stays in the bundle until it
expires, so a replica that still serves the earlier certificate is verified until it reloads.

ECDSA P-256 keys, SHA-256 signatures; the certificate names the metrics API Service's DNS names
(the kube-apiserver verifies ``<service>.<namespace>.svc``) and is for server authentication only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FIELD = "tls.crt"
KEY_FIELD = "tls.key"
CA_FIELD = "ca.crt"
SECRET_TYPE = "kubernetes.io/tls"  # nosec B105  # a Secret type, no password
"""The type of a Secret the operator makes (one made beforehand keeps its own: a type never changes)."""
BACKDATE = timedelta(minutes=5)
"""A new certificate is valid from this long ago: a clock a little behind ours still accepts it."""


class CertificateError(ValueError):
    """A certificate, key or bundle that cannot be read."""


@dataclass(frozen=True)
class Issued:
    """A serving certificate, its key and the CA bundle that verifies it, each PEM."""

    cert: bytes
    key: bytes
    ca_bundle: bytes


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """Digital signatures, and certificate and CRL signing for the CA only."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def service_names(service: str, namespace: str, cluster_domain: str) -> tuple[str, ...]:
    """The DNS names of Service ``service`` in ``namespace``, shortest first."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def issue(names: Iterable[str], now: datetime, validity: timedelta, earlier_bundle: bytes = b"") -> Issued:
    """A new CA and a certificate for ``names`` signed by it, both valid ``validity`` from ``now``;
    the bundle is the new CA, then the CAs of ``earlier_bundle`` still valid at ``now`` (each once)."""
    names = tuple(names)
    if not names:
        raise ValueError("a serving certificate needs at least one DNS name")
    start, end = now - BACKDATE, now + validity
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_serial = x509.random_serial_number()
    ca_name = _name(f"{names[0][:48]}-ca-{ca_serial:x}"[:64])  # its own name: a bundle tells CAs apart
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(ca_serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    earlier: list[x509.Certificate] = []
    for found in _bundle(earlier_bundle, strict=False):
        if found.not_valid_after_utc > now and found not in earlier:
            earlier.append(found)
    return Issued(
        cert=_pem(cert),
        key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        ca_bundle=b"".join(_pem(c) for c in [ca, *earlier]),
    )


def _bundle(pem: bytes, strict: bool = True) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem) if pem.strip() else []
    except ValueError as error:
        if strict:
            raise CertificateError(f"unreadable CA bundle: {error}") from error
        return []


def secret_data(issued: Issued) -> dict[str, str]:
    """The Secret's ``data`` (base64) for ``issued``."""
    return {
        CERT_FIELD: base64.b64encode(issued.cert).decode(),
        KEY_FIELD: base64.b64encode(issued.key).decode(),
        CA_FIELD: base64.b64encode(issued.ca_bundle).decode(),
    }


def from_secret_data(data: Mapping[str, object] | None) -> Issued | None:
    """What a Secret's ``data`` holds; None when a field is missing or not base64."""
    fields = []
    for name in (CERT_FIELD, KEY_FIELD, CA_FIELD):
        text = (data or {}).get(name)
        if not isinstance(text, str) or not text:
            return None
        try:
            fields.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            return None
    return Issued(*fields)


def leaf(issued: Issued) -> x509.Certificate:
    """The serving certificate; CertificateError if it cannot be read."""
    try:
        return x509.load_pem_x509_certificate(issued.cert)
    except ValueError as error:
        raise CertificateError(f"unreadable {CERT_FIELD}: {error}") from error


def dns_names(cert: x509.Certificate) -> set[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(extension.value.get_values_for_type(x509.DNSName))


def problem(issued: Issued | None, names: Iterable[str], now: datetime) -> str | None:
    """Why ``issued`` cannot be served now for ``names`` (None: it can): missing, unreadable, for other
    names, a key that is not the certificate's, not signed by a CA of its bundle, expired, or not yet
    valid (made by a replica whose clock runs ahead: a replica with the right clock replaces it)."""
    if issued is None:
        return "missing"
    try:
        cert = leaf(issued)
        bundle = _bundle(issued.ca_bundle)
        key = serialization.load_pem_private_key(issued.key, password=None)
    except (CertificateError, ValueError, TypeError) as error:
        return f"unreadable: {error}"
    wanted = set(names)
    if dns_names(cert) != wanted:
        return f"names {sorted(dns_names(cert))} are not {sorted(wanted)}"
    if _public(key.public_key()) != _public(cert.public_key()):
        return f"{KEY_FIELD} is not the key of {CERT_FIELD}"
    if not any(_signed_by(cert, ca) for ca in bundle):
        return f"{CERT_FIELD} is not signed by a CA of {CA_FIELD}"
    if now >= cert.not_valid_after_utc:
        return f"expired at {cert.not_valid_after_utc.isoformat()}"
    if now < cert.not_valid_before_utc:
        return f"not valid before {cert.not_valid_before_utc.isoformat()} (made by a clock ahead?)"
    return None


def signers(issued: Issued | None) -> bytes:
    """The CAs of ``issued``'s bundle that signed its certificate (PEM; empty if none or unreadable):
    what a new bundle carries forward, so a CA that signed nothing served is dropped at rotation."""
    if issued is None:
        return b""
    try:
        cert = leaf(issued)
    except CertificateError:
        return b""
    return b"".join(_pem(ca) for ca in _bundle(issued.ca_bundle, strict=False) if _signed_by(cert, ca))


def _public(key: Any) -> bytes:
    der = serialization.Encoding.DER
    return bytes(key.public_bytes(der, serialization.PublicFormat.SubjectPublicKeyInfo))


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def renew_at(issued: Issued, renew_before: timedelta) -> datetime:
    """When a servable ``issued`` is due for renewal: ``renew_before`` ahead of its expiry."""
    return leaf(issued).not_valid_after_utc - renew_before
