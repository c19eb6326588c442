"""Which headers the activator forwards to a replica, and back."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from chute_activator.forward import NOT_FORWARDED, _request_headers
from chute_shared.headers import HOP_BY_HOP


def test_proxy_connection_is_not_forwarded() -> None:
    """The one header the activator forwarded before it shared the sidecar's list (RFC 9110 7.6.1)."""
    headers = CIMultiDict(
        {"Host": "llm.ns", "Proxy-Connection": "keep-alive", "Keep-Alive": "timeout=5", "X-Api-Key": "k"}
    )
    forwarded = _request_headers(make_mocked_request("POST", "/v1/completions", headers=headers))
    assert "Proxy-Connection" not in forwarded
    assert "Keep-Alive" not in forwarded
    assert (forwarded["Host"], forwarded["X-Api-Key"]) == ("llm.ns", "k")
    assert "proxy-connection" in NOT_FORWARDED  # nor in the answer


def test_every_hop_by_hop_header_is_dropped_both_ways() -> None:
    assert {name.lower() for name in HOP_BY_HOP} <= NOT_FORWARDED
    assert {"host", "content-length"} <= NOT_FORWARDED
