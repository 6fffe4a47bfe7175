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
