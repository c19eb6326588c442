"""A minimal JSON client for the local kube-apiserver (client-certificate auth, standard library only)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from chute_devcluster.pki import KeyPair


class ApiError(RuntimeError):
    """The API server answered with an error status, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiClient:
    """Sends JSON requests to ``server`` as the holder of ``client``'s certificate."""

    def __init__(self, server: str, ca_cert: str, client: KeyPair) -> None:
        self.server = server.rstrip("/")
        self._context = ssl.create_default_context(cafile=ca_cert)
        self._context.load_cert_chain(str(client.cert), str(client.key))

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            # https to the local API server of our kubeconfig (bandit B310)
            with urllib.request.urlopen(request, context=self._context, timeout=timeout) as response:  # nosec B310
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise ApiError(f"{method} {path}: HTTP {error.code}: {detail[:500]}", error.code) from error
        except (OSError, ValueError) as error:
            raise ApiError(f"{method} {path}: {error}") from error
        if not text.strip():
            return {}
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return {"text": text}
        return parsed if isinstance(parsed, dict) else {"items": parsed}

    def get(self, path: str, timeout: float = 10.0) -> dict[str, Any]:
        return self.request("GET", path, timeout=timeout)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST ``body``; None when it already exists."""
        try:
            return self.request("POST", path, body)
        except ApiError as error:
            if error.status == 409:
                return None
            raise

    def watch(self, path: str, timeout: float = 60.0) -> Iterator[dict[str, Any]]:
        """The events of a watch (``path`` with ``watch=1``), one dict per line, until the server ends it
        (give ``timeoutSeconds``) or ``timeout`` passes without a line."""
        request = urllib.request.Request(self.server + path, headers={"Accept": "application/json"})
        try:
            # https to the local API server of our kubeconfig (bandit B310)
            with urllib.request.urlopen(request, context=self._context, timeout=timeout) as response:  # nosec B310
                for line in response:
                    if line.strip():
                        yield json.loads(line)
        except (OSError, ValueError) as error:
            raise ApiError(f"watch {path}: {error}") from error
