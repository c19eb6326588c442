"""A chart GitOps can sync: `helm template` gives the same text every time (Argo CD renders without a
cluster, so anything read from the cluster, random or dated would be drift at every refresh)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.chart.helm import CHART, CI_VALUES, Helm

TEMPLATES = sorted((CHART / "templates").glob("*")) + sorted((CHART / "templates").glob("**/*.tpl"))
NOT_REPRODUCIBLE = re.compile(
    r"\b(lookup|genCA|genCAWithKey|genSignedCert|genSignedCertWithKey|genSelfSignedCert|"
    r"genSelfSignedCertWithKey|genPrivateKey|buildCustomCert|derivePassword|"
    r"randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|randInt|uuidv4|"
    r"now|date|dateInZone|unixEpoch|htmlDate|htmlDateInZone|dateModify|mustDateModify)\b"
)
"""Template functions whose result depends on the cluster, on chance or on the clock."""
CASES = {
    "defaults": ((), ()),
    "metrics-api-off": ((), ("metricsApi.enabled=false",)),
    "cert-manager": ((), ("metricsApi.certManager.enabled=true",)),
    "ha-namespaced-argocd": (
        (),
        ("replicaCount=3", "watchNamespaces={team-a,team-b}", "argocd.healthCheck.enabled=true"),
    ),
    **{f"ci-{path.stem}": ((path,), ()) for path in CI_VALUES},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_renders_are_byte_identical(helm: Helm, case: str) -> None:
    values, sets = CASES[case]
    first = helm.template_text(*values, sets=sets)
    second = helm.template_text(*values, sets=sets)
    assert first == second
    assert "BEGIN CERTIFICATE" not in first
    assert "PRIVATE KEY" not in first


def actions(path: Path) -> str:
    """The template's actions ({{ ... }}) without their comments, where functions are called."""
    text = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", path.read_text(), flags=re.DOTALL)
    return "\n".join(re.findall(r"\{\{.*?\}\}", text, flags=re.DOTALL))


GUARDS = {"metrics-api.yaml": ["lookup"]}
"""Reads of the cluster that can only stop an install (``fail``), never change what is rendered:
``lookup`` finds nothing under `helm template`, so the text stays the same."""


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda path: path.name)
def test_no_template_reads_the_cluster_draws_chance_or_reads_the_clock(path: Path) -> None:
    assert NOT_REPRODUCIBLE.findall(actions(path)) == GUARDS.get(path.name, [])


def test_a_guards_lookup_only_decides_whether_to_fail() -> None:
    """Every action that uses what the lookup found is an assignment, a condition or the ``fail``."""
    found = actions(CHART / "templates" / "metrics-api.yaml").splitlines()
    variables = ("rival", "target", "owner", "ours")  # the lookup's object and what is taken from it
    using = [line for line in found if any(f"${name}" in line for name in variables)]
    assert using, "the lookup's variables are gone: update GUARDS"
    assigned = "|".join(rf"\${name} :=" for name in variables)
    for line in using:
        assert re.match(rf"\{{\{{-?\s*({assigned}|if |fail )", line), line


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text('{{/* lookup in a comment is fine */}}\nkey: {{ genCA "x" 365 }}\nnot: lookup\n')
    assert NOT_REPRODUCIBLE.findall(actions(template)) == ["genCA"]
