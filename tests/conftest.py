"""Shared fixtures: the reference data folder, and quiet, small-thread Keras."""

from __future__ import annotations

import os

import pytest

# Two CI cores: keep numerical libraries from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def reference_data():
    """The shared reference data folder; skips the test where it is absent."""
    from cryoml._testing import reference_data as find

    folder = find()
    if folder is None:
        pytest.skip(
            "shared reference data not found (../shared/data beside the project, or set "
            "CRYOML_REFERENCE_DATA)"
        )
    return folder


@pytest.fixture(scope="session")
def notebook_floors():
    """``tests/notebook_floors.py`` (the notebooks' quality floors), loaded by path: the suite
    imports test modules with ``--import-mode=importlib``, where they cannot import each
    other."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "notebook_floors", Path(__file__).with_name("notebook_floors.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
