"""The operator's login: in a pod, the `kubernetes` Service's address from the environment (no DNS)."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest

from chute_operator import login


def test_the_server_is_the_service_address_from_the_pod_environment() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert login.in_cluster_server(env) == "https://10.96.0.1:443"
    assert login.in_cluster_server({"KUBERNETES_SERVICE_HOST": "fd00::1"}) == "https://[fd00::1]:443"
    assert login.in_cluster_server({}) is None


def test_in_a_pod_the_service_account_logs_in_at_the_service_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    account = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t", default_namespace="ns")
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: account)
    info = login.log_in(settings=kopf.OperatorSettings())
    assert info is not None
    assert (info.server, info.token, info.default_namespace) == ("https://10.96.0.1:443", "t", "ns")


def test_with_a_kubeconfig_the_kubeconfig_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    from_kubeconfig = kopf.ConnectionInfo(server="https://127.0.0.1:6443")
    monkeypatch.setattr(kopf, "login_with_kubeconfig", lambda **_: from_kubeconfig)
    assert login.log_in(settings=kopf.OperatorSettings()) is from_kubeconfig
