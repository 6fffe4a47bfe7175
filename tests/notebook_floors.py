"""Quality floors of the step-through notebooks' stories, read from their headline lines.

Shared by the headless notebook tests (``tests/test_notebooks.py``) and the real-browser test
(``tests/browser/test_jupyterlab.py``), which load this file by path (the suite imports test
modules with ``--import-mode=importlib``, so they cannot import each other).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _beats_chance(headline: dict[str, Any]) -> list[str]:
    """05: every method above its chance level by at least the margin the notebook states."""
    margin = headline.get("margin")
    methods = headline.get("methods") or {}
    failures = [] if isinstance(margin, (int, float)) and margin >= 0.1 else [
        f"the notebook states a margin over chance of {margin!r}; at least 0.1 expected"]
    failures += [f"{name}: {m['score']} is not above chance {m['chance']} + {margin}"
                 for name, m in methods.items() if not m["score"] >= m["chance"] + (margin or 0)]
    return failures + ([] if len(methods) >= 5 else [f"only {len(methods)} methods compared"])


# Quality floors per notebook, read from its headline line: key -> minimum value (True counts
# as 1), or "check" -> a function of the headline returning failure messages. A notebook that
# misses a floor fails the suite.
FLOORS: dict[str, dict[str, float | Callable[[dict[str, Any]], list[str]]]] = {
    "00_quickstart": {},
    "01_tomoseg": {"membrane_dice_visible": 0.6, "ribosome_picks": 1, "average_shown": True,
                   "average_of": 3, "ribosome_recall": 0.5},
    "02_subtomogram_classification": {"test_accuracy": 0.8, "dsrf3d_accuracy": 0.6},
    "03_subdivision_and_discovery": {
        "test_accuracy": 0.8,
        "discovery_class_size": 10,  # no "success" from a class of one subtomogram
        "discovery_average_shown": True,
        "discovery_fsc_shown": True,
    },
    "04_deepem_picking": {"heldout_accuracy": 0.8, "ap": 0.7},
    "05_method_comparison": {"check": _beats_chance},
}


def floor_failures(name: str, headline: dict[str, Any]) -> list[str]:
    """What in ``headline`` misses the floors of notebook ``name``."""
    failures = []
    for key, floor in FLOORS.get(name, {}).items():
        if callable(floor):
            failures += floor(headline)
        elif not isinstance(headline.get(key), (int, float)):
            failures.append(f"{key} is missing from the headline")
        elif not headline[key] >= floor:
            failures.append(f"{key} = {headline[key]} is below its floor {floor}")
    return failures
