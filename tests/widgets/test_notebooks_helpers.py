"""Notebook helpers: QUICK switch, parameter injection, figures, missing ipywidgets."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib
import nbformat
import numpy as np
import pytest

matplotlib.use("agg")

from cryoml import CryomlError, _quiet
from cryoml.widgets import _notebooks, _views, is_quick, plot_comparison, plot_confusion


def test_quick_switch_reads_the_environment(monkeypatch):
    monkeypatch.delenv("CRYOML_QUICK", raising=False)
    assert is_quick(default=True) is True
    monkeypatch.setenv("CRYOML_QUICK", "0")
    assert is_quick(default=True) is False
    monkeypatch.setenv("CRYOML_QUICK", "yes")
    assert is_quick(default=False) is True


def test_parameters_are_injected_after_the_parameters_cell():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os"),
        nbformat.v4.new_code_cell("QUICK = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(QUICK)"),
    ])
    _notebooks._inject(notebook, {"QUICK": "True"})
    assert notebook.cells[2].source.endswith("QUICK = True")
    assert notebook.cells[2].metadata["tags"] == ["injected-parameters"]
    nbformat.validate(notebook)


def test_missing_ipywidgets_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match="pip install ipywidgets ipympl"):
        _views._widgets()


def test_find_notebooks_refuses_a_missing_folder(tmp_path):
    with pytest.raises(CryomlError, match="no notebooks folder"):
        _notebooks.find_notebooks(tmp_path / "nowhere")


def test_comparison_and_confusion_figures_have_one_panel_per_method():
    report = {"confusion_matrix": [[3, 1], [0, 4]], "accuracy": 0.875}
    figure = plot_confusion({"A": report, "B": report}, class_names=["x", "y"])
    assert len(figure.axes) == 3  # two panels and their shared colour bar
    assert figure.axes[0].get_title() == "A: accuracy 0.88"
    assert "recall" in figure.axes[2].get_ylabel()
    assert [t.get_text() for t in figure.axes[0].texts] == ["0.75", "0.25", "1.00"]
    bars = plot_comparison({"A": 0.5, "B": 0.7}, {"A": 0.9})
    heights = [p.get_height() for p in bars.axes[0].patches]
    assert heights[:2] == [0.5, 0.7] and heights[2] == 0.9 and np.isnan(heights[3])


def test_setup_notebook_quiets_tensorflow_warnings_even_after_a_level_reset(monkeypatch):
    import logging

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    logger = logging.getLogger("tensorflow")
    saved = list(logger.filters)
    try:
        _notebooks.setup_notebook(interactive=False)
        _notebooks.setup_notebook(interactive=False)  # idempotent
        import os

        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
        logger.setLevel(logging.INFO)  # what TensorFlow does in an interactive shell
        assert not logger.filter(logger.makeRecord("tensorflow", logging.WARNING, "f", 1,
                                                   "retracing", None, None))
        assert logger.filter(logger.makeRecord("tensorflow", logging.ERROR, "f", 1, "bad",
                                               None, None))
        assert sum(isinstance(f, _quiet._ErrorsOnly) for f in logger.filters) == 1
    finally:
        logger.filters[:] = saved


def test_tensorflow_start_up_lines_are_kept_out_of_the_quiet_import():
    pytest.importorskip("tensorflow")
    run = "import tensorflow as tf; tf.constant(1.0) + 1"
    quiet = "from cryoml._quiet import import_backend_quietly as q; q(); " + run
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    loud = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, env=env)
    if "absl" not in loud.stderr and "oneDNN" not in loud.stderr:
        pytest.skip("this TensorFlow prints no start-up lines: nothing to keep out")
    result = subprocess.run([sys.executable, "-c", quiet], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert "absl" not in result.stderr and "oneDNN" not in result.stderr, result.stderr
