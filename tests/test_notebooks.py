"""Every step-through notebook runs top to bottom, headless, with QUICK = True.

Uses :func:`cryoml.widgets.execute_notebooks` (what ``make demo`` calls), which injects
``QUICK = True`` after each notebook's ``parameters`` cell and writes the executed notebooks
to ``outputs/notebooks/``. Each notebook must finish within ``BUDGET_S`` seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from cryoml.widgets import execute_notebooks, find_notebooks

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "notebooks"
BUDGET_S = 150  # per notebook, QUICK mode, 2 CPU cores (target: well under 120 s)
NOTEBOOKS = find_notebooks(ROOT / "notebooks")
# Quality floors of each QUICK story, read from the `headline: {json}` line the notebook
# prints last (issue 15: a story whose numbers miss its floor fails the suite).
FLOORS = {
    "04_deepem_picking": {"heldout_accuracy": 0.8, "ap": 0.7},
}


def headline(executed: dict) -> dict | None:
    """The JSON dict of the last ``headline: {...}`` line in a notebook's stream outputs."""
    found = None
    for cell in executed["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream" or output.get("name") != "stdout":
                continue
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            for line in text.splitlines():
                if line.startswith("headline:"):
                    found = json.loads(line.partition(":")[2])
    return found


def test_notebooks_are_built_from_their_sources():
    result = subprocess.run([sys.executable, str(ROOT / "notebooks" / "build.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_notebook_has_a_quick_parameters_cell_and_short_code_cells():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1 and "QUICK = True" in "".join(tagged[0]["source"]), path.name
        for cell in cells:
            if cell["cell_type"] == "code":
                assert len("".join(cell["source"]).splitlines()) <= 25, path.name


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_headless_in_quick_mode(notebook, tmp_path, monkeypatch):
    # As a user's fresh clone: no reference data beside it and no network, only data/.
    (tmp_path / "no-reference-data").mkdir()
    monkeypatch.setenv("CRYOML_REFERENCE_DATA", str(tmp_path / "no-reference-data"))
    monkeypatch.setenv("CRYOML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CRYOML_OFFLINE", "1")
    results = execute_notebooks(OUT, notebooks=[notebook], quick=True, timeout=BUDGET_S,
                                raise_on_error=False)
    result = results[notebook.stem]
    assert result["ok"], f"{notebook.name} failed: {result['error']} (see {result['path']})"
    assert result["seconds"] < BUDGET_S, f"{notebook.name} took {result['seconds']} s"
    executed = json.loads(Path(result["path"]).read_text())
    images = sum("image/png" in output.get("data", {}) for cell in executed["cells"]
                 for output in cell.get("outputs", []))
    assert images >= 1, f"{notebook.name} produced no figure"
    floors = FLOORS.get(notebook.stem)
    if floors:
        numbers = headline(executed)
        assert numbers is not None, f"{notebook.name} printed no `headline: {{json}}` line"
        for key, floor in floors.items():
            assert numbers.get(key) is not None, f"{notebook.name}: headline lacks {key!r}"
            assert numbers[key] >= floor, f"{notebook.name}: {key} {numbers[key]} < {floor}"


def test_headline_is_read_from_the_last_headline_line():
    cells = [{"outputs": [{"output_type": "stream", "name": "stdout",
                           "text": ["x\n", 'headline: {"ap": 0.1}\n']}]},
             {"outputs": [{"output_type": "stream", "name": "stdout",
                           "text": 'headline: {"ap": 0.75, "heldout_accuracy": 0.9}\n'}]}]
    assert headline({"cells": cells}) == {"ap": 0.75, "heldout_accuracy": 0.9}
    assert headline({"cells": []}) is None
