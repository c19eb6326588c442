"""The real-pod tests get a Service's address one way only: once the Service answers.

kube-proxy writes a Service's rules a little after its pod is Ready; a test that sent to the
ClusterIP as soon as the pod was Ready failed with ConnectionRefused on a fresh machine (issue 24).
"""

from __future__ import annotations

from pathlib import Path

REALNODE = Path(__file__).resolve().parents[1] / "realnode"


def test_only_the_waiting_helper_reads_a_services_cluster_ip() -> None:
    readers = sorted(
        path.name
        for path in REALNODE.glob("*.py")
        if path.name != "conftest.py" and '"clusterIP"' in path.read_text()
    )
    assert readers == [], f"use service_address/service_url from tests/realnode/conftest.py in {readers}"
