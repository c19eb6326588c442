"""The tests and benchmarks get a Service's address one way only: once the Service answers.

kube-proxy writes a Service's rules a little after its pod is Ready; a test that sent to the
ClusterIP as soon as the pod was Ready failed with ConnectionRefused on a fresh machine (issue 24).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELPERS = ROOT / "tests" / "kube_helpers.py"
MEASURES_THE_WAIT = {ROOT / "benchmarks" / "realnode.py"}
"""Times the first answer itself: it sends until one is answered, and that wait is its measurement."""
CLUSTER_IP = re.compile(r"""\[\s*["']clusterIP["']\s*\]""")


def test_only_the_waiting_helper_reads_a_services_cluster_ip() -> None:
    readers = sorted(
        str(path.relative_to(ROOT))
        for folder in ("tests", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if path not in {HELPERS, *MEASURES_THE_WAIT, Path(__file__).resolve()}
        and CLUSTER_IP.search(path.read_text())
    )
    assert readers == [], f"use tests.kube_helpers.service_address or service_url in {readers}"
