"""Every step-through notebook runs top to bottom, headless, with QUICK = True, and its story
holds: the headline numbers it prints last meet their quality floors.

Uses :func:`cryoml.widgets.execute_notebooks` (what ``make demo`` calls), which injects
``QUICK = True`` after each notebook's ``parameters`` cell and writes the executed notebooks
to ``outputs/notebooks/``. Each notebook must finish within ``BUDGET_S`` seconds and end with
``headline: {json}`` (:func:`cryoml.widgets.headline`), checked against ``FLOORS``
(``tests/notebook_floors.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from cryoml.widgets import execute_notebooks, find_notebooks, read_headline

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "notebooks"
BUDGET_S = 150  # per notebook, QUICK mode, 2 CPU cores (target: well under 120 s)
NOTEBOOKS = find_notebooks(ROOT / "notebooks")


# Floors a story still misses, measured and tracked in an open issue: the test reports them as
# expected failures (and fails again for any other miss). Remove an entry when it is met.
KNOWN_MISSES: dict[str, dict[str, Any]] = {}


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
def test_notebook_runs_headless_in_quick_mode(notebook, tmp_path, monkeypatch, notebook_floors):
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
    texts = ["".join(output.get("text", "")) for cell in executed["cells"]
             for output in cell.get("outputs", []) if output.get("output_type") == "stream"]
    noise = [t for t in texts if any(word in t for word in _NOISE)]
    assert not noise, f"{notebook.name} prints start-up or retracing noise: {noise[0][:300]}"
    raw = [t for t in texts if t.lstrip().startswith("{'")]
    assert not raw, f"{notebook.name} prints a raw dict: {raw[0][:200]}"
    headline = read_headline(result["path"])
    failures = notebook_floors.floor_failures(notebook.stem, headline)
    known = KNOWN_MISSES.get(notebook.stem)
    if failures and known and all(f.split(" ")[0] in known["keys"] for f in failures):
        pytest.xfail(f"known miss, {known['why']}: " + "; ".join(failures))
    assert not failures, f"{notebook.name}: " + "; ".join(failures) + f" (headline {headline})"


_NOISE = ("oneDNN", "absl::", "retracing", "TF-TRT", "WARNING: All log messages")


def test_floors_fail_a_story_that_misses_them(notebook_floors):
    floor_failures = notebook_floors.floor_failures
    assert floor_failures("02_subtomogram_classification", {"test_accuracy": 0.35})
    assert not floor_failures("02_subtomogram_classification",
                              {"test_accuracy": 0.85, "dsrf3d_accuracy": 0.7})
    assert floor_failures("02_subtomogram_classification",
                          {"test_accuracy": 0.85, "dsrf3d_accuracy": 0.2})
    story = {"test_accuracy": 0.9, "discovery_class_size": 1, "discovery_average_shown": True,
             "discovery_fsc_shown": True}
    assert floor_failures("03_subdivision_and_discovery", story) == [
        "discovery_class_size = 1 is below its floor 10"]
    methods = {name: {"score": 0.9, "chance": 0.25} for name in "abcde"}
    assert not floor_failures("05_method_comparison", {"margin": 0.15, "methods": methods})
    methods["a"]["score"] = 0.3
    assert floor_failures("05_method_comparison", {"margin": 0.15, "methods": methods})
    assert floor_failures("05_method_comparison", {"margin": 0.0, "methods": {}})


def test_every_notebook_has_floors_and_starts_with_how_to_run_it(notebook_floors):
    for path in NOTEBOOKS:
        assert path.stem in notebook_floors.FLOORS, (
            f"{path.stem}: add its quality floors to tests/notebook_floors.py")
        first = json.loads(path.read_text())["cells"][0]
        text = " ".join("".join(first["source"]).split())
        assert first["cell_type"] == "markdown" and "cell by cell" in text and "Run All" in text, (
            f"{path.name}: the first cell must say to run cell by cell to box and paint by "
            "hand, and what Run All does instead")


def test_kernel_stderr_goes_to_a_log_not_the_terminal(tmp_path, capfd):
    # TensorFlow's C++ start-up lines reach the kernel's file descriptor 2, under the notebook
    # outputs; `make demo` must not print them over the headlines.
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("from pathlib import Path"),
        nbformat.v4.new_code_cell("QUICK = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os\nos.write(2, b'kernel-side noise\\n')"),
        nbformat.v4.new_code_cell("from cryoml.widgets import headline\nheadline(ok=True)"),
    ]
    path = tmp_path / "99_noise.ipynb"
    nbformat.write(notebook, path)
    result = execute_notebooks(tmp_path / "out", notebooks=[path], quick=True, timeout=60)
    run = result["99_noise"]
    assert run["ok"], run["error"]
    assert run["headline"] == {"ok": True}
    assert "kernel-side noise" in run["kernel_log"].read_text()
    assert "kernel-side noise" not in capfd.readouterr().err
