"""The notebook quickstart in docs/ runs cell by cell, and its tables match the report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tokenmeter.report import summarize

NOTEBOOK = Path(__file__).parent.parent / "docs" / "notebook-quickstart.ipynb"


def code_cells(path: Path) -> list[str]:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["nbformat"] == 4
    return ["".join(cell["source"]) for cell in document["cells"] if cell["cell_type"] == "code"]


@pytest.fixture(scope="module")
def notebook_namespace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run every code cell in one namespace, in a fresh directory, as a kernel would."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("notebook"))
        patch.setenv("MPLBACKEND", "Agg")
        for index, source in enumerate(code_cells(NOTEBOOK)):
            exec(compile(source, f"{NOTEBOOK.name}, code cell {index + 1}", "exec"), namespace)
        namespace["directory"] = Path.cwd()
    yield namespace

    import matplotlib.pyplot as plt

    plt.close("all")


def test_notebook_has_no_stored_outputs() -> None:
    document = json.loads(NOTEBOOK.read_text(encoding="utf-8"))

    for cell in document["cells"]:
        assert cell.get("outputs", []) == []


@pytest.mark.timeout(120)
def test_notebook_runs_and_matches_report(notebook_namespace: dict[str, Any]) -> None:
    summary = summarize(notebook_namespace["records"], ["agent"])
    by_agent = notebook_namespace["by_agent"]

    assert set(by_agent.index) == {row.key[0] for row in summary.rows}
    assert sum(by_agent["cost_usd"], Decimal(0)) == summary.total.cost_usd
    assert int(by_agent["turns"].sum()) == summary.total.turns
    chart = notebook_namespace["directory"] / "cost.html"
    assert chart.read_text(encoding="utf-8").count("<svg") == 1


@pytest.mark.timeout(120)
def test_notebook_model_table_matches_report(notebook_namespace: dict[str, Any]) -> None:
    summary = summarize(notebook_namespace["records"], ["agent", "model"])
    by_model = notebook_namespace["by_model"]

    expected = {row.key: row.cost_usd for row in summary.rows}
    assert dict(by_model["cost_usd"].items()) == expected
