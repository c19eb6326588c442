"""Who may reach the metrics API's port directly: only the request-header CA vouches for a front
proxy (found by the breaking pass of issue 26, held up).

The front proxy's client certificate must be verified against the request-header CA *only*, never
the system trust store (/etc/ssl/certs in the python:slim image): with ``requestheader-allowed-names``
empty, a certificate of any system-trusted CA would otherwise name any user in X-Remote-User.
``ssl.create_default_context(Purpose.CLIENT_AUTH)`` leaves verify_mode CERT_NONE and so loads no
default CAs; this pins that (SSL_CERT_FILE stands in for the system store).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from chute_devcluster.pki import FRONT_PROXY_CLIENT_NAME, _issue, _make_ca
from chute_operator.metricsapi.server import server_context, server_tls, trust_front_proxy


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> dict[str, object] | None:
    """One in-memory TLS handshake; the server's view of the client certificate (None: refused)."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_hostname="svc.example")
    for _ in range(20):
        done = 0
        for side, out, peer_in in ((cli, c_out, s_in), (srv, s_out, c_in)):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return None
            data = out.read()
            if data:
                peer_in.write(data)
        if done == 2:
            break
    try:
        srv.do_handshake()
    except ssl.SSLError:
        return None
    return srv.getpeercert()  # type: ignore[return-value]


@pytest.mark.parametrize("client_ca_at_start", [True, False], ids=["server_tls", "server_context+trust"])
def test_only_the_request_header_ca_vouches_for_a_front_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client_ca_at_start: bool
) -> None:
    front_ca = _make_ca(tmp_path, "front", "front-proxy-ca")
    system_ca = _make_ca(tmp_path, "system", "some-public-ca")  # stands in for the image's /etc/ssl/certs
    serving_ca = _make_ca(tmp_path, "serving-ca", "serving-ca")
    serving = _issue(tmp_path, serving_ca, "serving", "svc.example", server_names=("DNS:svc.example",))
    stranger = _issue(tmp_path, system_ca, "stranger", FRONT_PROXY_CLIENT_NAME)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(system_ca.cert))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))

    if client_ca_at_start:
        server = server_tls(str(serving.cert), str(serving.key), front_ca.cert.read_text())
    else:  # the operator's default: a Secret it keeps, the front proxy's CA read later
        server = server_context()
        server.load_cert_chain(str(serving.cert), str(serving.key))
        trust_front_proxy(server, front_ca.cert.read_text())
    client = ssl.create_default_context(cafile=str(serving_ca.cert))
    client.load_cert_chain(str(stranger.cert), str(stranger.key))

    assert _handshake(server, client) is None, (
        "a certificate of a CA other than the front proxy's was accepted"
    )
