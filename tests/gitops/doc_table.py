"""The state table of docs/gitops.md, read as data: the tests check the code against what it says."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "gitops.md"
HEADING = "## States"


@dataclass(frozen=True)
class Row:
    fixture: str
    shows: str
    argocd: str
    kstatus: str


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("`").strip() for cell in line.strip().strip("|").split("|")]


@cache
def state_table() -> dict[str, Row]:
    """fixture name -> row, from the first table after the ``## States`` heading."""
    lines = DOC.read_text().splitlines()
    start = lines.index(HEADING)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(_cells(line))
        elif table:
            break
    header = [cell.lower() for cell in table[0]]
    columns = {name: header.index(name) for name in ("fixture", "the chute shows", "argo cd", "kstatus")}
    rows = {}
    for cells in table[2:]:
        row = Row(
            fixture=cells[columns["fixture"]],
            shows=cells[columns["the chute shows"]],
            argocd=cells[columns["argo cd"]],
            kstatus=cells[columns["kstatus"]],
        )
        rows[row.fixture] = row
    return rows
