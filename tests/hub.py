"""A small model hub on this machine for the tests: the routes the real ``huggingface_hub`` client
downloads a pinned revision with (``HF_ENDPOINT=http://HOST:PORT``).

- ``GET /api/models/{org}/{name}/tree/{rev}``: the revision's files (``path``, ``size``, ``oid``, ``lfs``);
- ``GET /api/models/{org}/{name}/revision/{rev}``: ``{"id", "sha", "siblings"}``;
- ``HEAD``/``GET /{org}/{name}/resolve/{rev}/{file}``: the file, with ``ETag``, ``X-Repo-Commit`` and
  ``Content-Length`` (and ``Range: bytes=N-`` for a resumed download).

``GET /_stats``: the downloads so far (``{"repo@revision/file": count}``), for the tests.

Errors as the hub sends them: 404 ``X-Error-Code: RepoNotFound`` or ``RevisionNotFound``; a gated
repository answers 401 ``X-Error-Code: GatedRepo`` without a token, and 401 "Invalid credentials in
Authorization header" with a wrong one. Nothing here reaches the real hub.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHUNK = 1 << 20
API = re.compile(r"^/api/models/([^/]+/[^/]+)/(tree|revision)/([^/?]+)")
RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


@dataclass
class Repo:
    """One model repository: its files on disk at each commit, and the token it needs (gated)."""

    revisions: dict[str, dict[str, Path]]
    token: str | None = None


class Hub:
    """The hub's repositories and what was downloaded from it (by file, for "downloaded once")."""

    def __init__(self, rate: float | None = None) -> None:
        """``rate``: bytes per second each download is sent at, at most (None: as fast as it goes)."""
        self.rate = rate
        self.repos: dict[str, Repo] = {}
        self.downloads: Counter[str] = Counter()
        """GETs of each ``repo@revision/file`` answered with its content."""
        self.lock = threading.Lock()
        self._sha256: dict[Path, str] = {}

    def sha256(self, path: Path) -> str:
        """The file's SHA-256 (its LFS oid and ETag), computed once."""
        if path not in self._sha256:
            digest = hashlib.sha256()
            with path.open("rb") as file:
                for chunk in iter(lambda: file.read(CHUNK), b""):
                    digest.update(chunk)
            self._sha256[path] = digest.hexdigest()
        return self._sha256[path]

    def add(self, name: str, repo: Repo) -> None:
        self.repos[name] = repo


class _Handler(BaseHTTPRequestHandler):
    hub: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _error(self, status: int, code: str | None = None, message: str | None = None) -> None:
        body = json.dumps({"error": message or code or "error"}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        if message:
            self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: Any) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _repo(self, name: str, revision: str) -> dict[str, Path] | None:
        """The revision's files if this client may read them; else the error is sent."""
        repo = self.hub.repos.get(name)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if repo.token is not None:
            sent = self.headers.get("Authorization", "")
            if not sent:
                self._error(401, "GatedRepo", "Access to model is restricted: you must have access to it")
                return None
            if sent != f"Bearer {repo.token}":
                self._error(401, None, "Invalid credentials in Authorization header")
                return None
        if revision not in repo.revisions:
            self._error(404, "RevisionNotFound", "Invalid rev id: " + revision)
            return None
        return repo.revisions[revision]

    def _entries(self, files: dict[str, Path]) -> list[dict[str, Any]]:
        return [
            {
                "type": "file",
                "path": name,
                "size": path.stat().st_size,
                "oid": hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest(),
                "lfs": {"oid": self._sha(path), "size": path.stat().st_size, "pointerSize": 134},
            }
            for name, path in sorted(files.items())
        ]

    def _sha(self, path: Path) -> str:
        with self.hub.lock:
            return self.hub.sha256(path)

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def _answer(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/_stats":
            with self.hub.lock:
                self._json(dict(self.hub.downloads))
            return
        if api := API.match(path):
            name, route, revision = api.groups()
            files = self._repo(name, revision)
            if files is None:
                return
            if route == "tree":
                self._json(self._entries(files))
            else:
                siblings = [{"rfilename": e["path"], "size": e["size"]} for e in self._entries(files)]
                self._json({"id": name, "modelId": name, "sha": revision, "siblings": siblings})
            return
        if resolve := RESOLVE.match(path):
            name, revision, file = resolve.groups()
            files = self._repo(name, revision)
            if files is not None:
                self._file(name, revision, files, file)
            return
        self._error(404, None, "no such route")

    def _file(self, name: str, revision: str, files: dict[str, Path], file: str) -> None:
        if file not in files:
            self._error(404, "EntryNotFound", f"{file} does not exist")
            return
        source = files[file]
        size = source.stat().st_size
        start = 0
        ranged = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if ranged:
            start = min(int(ranged.group(1)), size)
        self.send_response(206 if ranged else 200)
        self.send_header("ETag", f'"{self._sha(source)}"')
        self.send_header("X-Repo-Commit", revision)
        self.send_header("Content-Length", str(size - start))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.command == "HEAD":
            return
        with self.hub.lock:
            self.hub.downloads[f"{name}@{revision}/{file}"] += 1
        with source.open("rb") as data:
            data.seek(start)
            began, sent = time.monotonic(), 0
            for chunk in iter(lambda: data.read(CHUNK), b""):
                self.wfile.write(chunk)
                sent += len(chunk)
                if self.hub.rate:
                    time.sleep(max(0.0, began + sent / self.hub.rate - time.monotonic()))


@contextmanager
def serving(hub: Hub, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``hub`` on ``host`` (loopback, or an address of this machine's bridges) in a thread;
    yields its endpoint, ``http://HOST:PORT``."""
    handler = type("HubHandler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="hub", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main() -> None:
    """``python -m tests.hub --root DIR --host ADDR --port N [--mib M] [--rate BYTES]``: the tests' models
    (tests.hub_models.model_hub), served until killed (in a network namespace of a real-node test)."""
    import argparse
    import signal

    from tests.hub_models import model_hub

    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--mib", type=int, default=4)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args()
    hub = model_hub(args.root, args.mib)
    hub.rate = args.rate
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serving(hub, args.host, args.port) as endpoint:
        print(endpoint, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
