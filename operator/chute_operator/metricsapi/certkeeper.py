"""The metrics API's serving certificate, kept by the operator: made once, renewed before it ends,
trusted by the APIService (the Secret, the APIService and the files served; the certificates
themselves are :mod:`certs`).

Every replica serves the metrics API behind one Service, so every replica

- reads the Secret at start and serves what it holds; makes it when it is missing (a create: one
  that finds the name taken means another replica made it first, whose Secret is read), replaces
  it when it cannot be served (unreadable, other names, expired) with a write that names the
  resourceVersion it read (of replicas racing, one wins and the others read its);
- reads it again every ``cert_check_seconds`` and serves a changed certificate at once (new
  connections get it; open ones keep theirs);
- fills the APIService's ``caBundle`` when it is empty (a fresh install, or an upgrade from a chart
  that wrote it), and writes it after replacing the Secret.

The leader alone renews a certificate that can still be served, once it is within
``cert_renew_before_days`` of its end, and keeps the caBundle equal to the Secret's ``ca.crt``: the
new bundle (the new CA, then the earlier one) goes to the APIService before the new certificate goes
to the Secret, so no replica serves a certificate the kube-apiserver does not trust yet.

The caBundle is written by server-side apply under a field manager of its own, that field alone,
and only to an APIService that names the operator's Service: the chart renders the APIService
without it, so neither Helm nor Argo CD ever owns it.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chute_operator.kube import AlreadyExists, Conflict, KubeApi
from chute_operator.metricsapi import certs, responses

log = logging.getLogger(__name__)

API_SERVICE = f"{responses.VERSION}.{responses.GROUP}"
"""The APIService whose caBundle the keeper writes (its name is its version and group)."""
FIELD_MANAGER = "chute-operator-metrics-api"
"""The field manager of the caBundle, and the component of the keeper's calls."""
ATTEMPTS = 3
"""Reads and writes of the Secret in one round before giving up until the next (others keep writing it)."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CertificateKeeper:
    """One replica's hold on the certificate: :meth:`sync` once at start, then every check."""

    api: KubeApi
    namespace: str
    secret: str
    service: str
    """The Service the APIService must name (in ``namespace``) for its caBundle to be written."""
    names: tuple[str, ...]
    validity: timedelta
    renew_before: timedelta
    context: ssl.SSLContext
    """The metrics API server's TLS context: the served certificate is loaded into it."""
    directory: Path
    """Where the served certificate and key are written for the context to load (ssl reads files only)."""
    is_leader: Callable[[], bool] = lambda: True
    now: Callable[[], datetime] = _now
    api_service: str = API_SERVICE
    served: certs.Issued | None = None
    """What the context serves (None: nothing yet)."""
    _noted: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.secret}"

    async def sync(self) -> None:
        """Read the Secret (making or replacing it if it cannot be served), renew it if due and
        leading, bring the APIService's caBundle up to date, serve the certificate."""
        issued, secret, wrote = await self._servable()
        leader = self.is_leader()
        if leader and self.now() >= certs.renew_at(issued, self.renew_before):
            issued, wrote = await self._renew(secret, issued)
        try:
            await self._trust(issued.ca_bundle, owner=leader or wrote)
        finally:  # a refused caBundle write (RBAC, a policy) must not leave this replica serving nothing
            self._serve(issued)

    def _issue(self, earlier_bundle: bytes = b"") -> certs.Issued:
        return certs.issue(self.names, self.now(), self.validity, earlier_bundle)

    async def _servable(self) -> tuple[certs.Issued, dict[str, Any], bool]:
        """The certificate the Secret holds, made or replaced first if it cannot be served; the Secret
        as stored; whether this replica wrote it."""
        secret = await self.api.secret(self.namespace, self.secret)
        # A new bundle keeps trusting what this replica serves (and so do the others, which read the
        # same Secret) until they serve the new certificate too.
        serving = certs.signers(self.served)
        for _ in range(ATTEMPTS):
            if secret is None:
                fresh = self._issue(serving)
                try:
                    secret = await self.api.create_secret(
                        self.namespace, self.secret, certs.secret_data(fresh), certs.SECRET_TYPE
                    )
                except AlreadyExists:  # another replica made it first: serve theirs
                    secret = await self.api.secret(self.namespace, self.secret)
                    continue
                log.info("metrics API certificate made", extra={"secret": self.where})
                return fresh, secret, True
            issued = certs.from_secret_data(secret.get("data"))
            reason = certs.problem(issued, self.names, self.now())
            if issued is not None and reason is None:
                return issued, secret, False
            fresh = self._issue(certs.signers(issued) + serving)
            try:
                secret = await self._write(secret, fresh)
            except Conflict:  # another replica replaced it first: read theirs
                secret = await self.api.secret(self.namespace, self.secret)
                continue
            log.warning(
                "metrics API certificate replaced: the one in the Secret cannot be served (%s)",
                reason,
                extra={"secret": self.where},
            )
            return fresh, secret, True
        raise certs.CertificateError(f"Secret {self.where} kept changing while it was written")

    async def _write(self, secret: dict[str, Any], issued: certs.Issued) -> dict[str, Any]:
        """``secret`` with ``issued`` in its data, written over the version read (Conflict if changed)."""
        data = {**(secret.get("data") or {}), **certs.secret_data(issued)}
        return await self.api.replace_secret({**secret, "data": data})

    async def _renew(self, secret: dict[str, Any], issued: certs.Issued) -> tuple[certs.Issued, bool]:
        """A new certificate for a servable one that is due: its bundle to the APIService first, then
        the Secret. If the Secret changed meanwhile, what it holds now (the bundle follows it)."""
        fresh = self._issue(certs.signers(issued))
        await self._trust(fresh.ca_bundle, owner=True)
        try:
            await self._write(secret, fresh)
        except Conflict:
            found, _, wrote = await self._servable()
            return found, wrote
        log.info(
            "metrics API certificate renewed",
            extra={"secret": self.where, "until": certs.leaf(fresh).not_valid_after_utc.isoformat()},
        )
        return fresh, True

    def _note(self, topic: str, message: str, *args: object) -> None:
        """Log ``message`` once for as long as it stays what ``topic`` is about."""
        text = message % args
        if self._noted.get(topic) != text:
            self._noted[topic] = text
            log.warning(text)

    async def _trust(self, bundle: bytes, owner: bool) -> None:
        """The APIService's caBundle: ``bundle``, if the APIService names our Service and its caBundle
        is empty or (``owner``: the leader, or the replica that wrote the Secret) different."""
        found = await self.api.api_service(self.api_service)
        if found is None:
            self._note("apiservice", "APIService %s not found: its caBundle is not written", self.api_service)
            return
        spec = found.get("spec") or {}
        target = spec.get("service") or {}
        if (target.get("namespace"), target.get("name")) != (self.namespace, self.service):
            self._note(
                "apiservice",
                "APIService %s names Service %s/%s, not the metrics API's %s/%s: its caBundle is left alone",
                self.api_service,
                target.get("namespace"),
                target.get("name"),
                self.namespace,
                self.service,
            )
            return
        self._noted.pop("apiservice", None)
        wanted = base64.b64encode(bundle).decode()
        current = spec.get("caBundle") or ""
        if current == wanted or (current and not owner):
            return
        manifest = {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": self.api_service},
            "spec": {"caBundle": wanted},
        }
        await self.api.apply_api_service(manifest, FIELD_MANAGER)
        log.info("APIService %s: caBundle written", self.api_service, extra={"secret": self.where})

    def _serve(self, issued: certs.Issued) -> None:
        """Load ``issued`` into the context if it is not what it serves already."""
        if issued == self.served:
            return
        cert_file, key_file = self.directory / certs.CERT_FIELD, self.directory / certs.KEY_FIELD
        _write_private(cert_file, issued.cert)
        _write_private(key_file, issued.key)
        self.context.load_cert_chain(str(cert_file), str(key_file))
        self.served = issued
        log.info(
            "metrics API serving its certificate",
            extra={"secret": self.where, "until": certs.leaf(issued).not_valid_after_utc.isoformat()},
        )


def _write_private(path: Path, data: bytes) -> None:
    """``path`` holds ``data``, readable by this user only, replaced whole (never half written)."""
    partial = path.with_name(path.name + ".new")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.replace(partial, path)
