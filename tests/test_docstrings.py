"""The examples in the foundation modules' docstrings run."""

import doctest
import importlib

import pytest

MODULES = [
    "cryoml.io._atomic",
    "cryoml.io._coordinates",
    "cryoml.io._image",
    "cryoml.metrics",
    "cryoml.preprocess",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
