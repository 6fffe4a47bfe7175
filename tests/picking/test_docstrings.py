"""The examples in the picking modules' docstrings run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["cryoml.picking.models", "cryoml.picking._peaks"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
