"""Helpers for tests and benchmarks: where the shared reference data lives."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "reference_data"]


def project_root() -> Path:
    """The repository root (the folder that holds ``cryoml/``)."""
    return Path(__file__).resolve().parents[1]


def reference_data() -> Path | None:
    """The shared reference data folder, or None where it is absent.

    Looks at ``$CRYOML_REFERENCE_DATA`` first, then ``../shared/data`` beside the project root.
    """
    candidates = []
    if os.environ.get("CRYOML_REFERENCE_DATA"):
        candidates.append(Path(os.environ["CRYOML_REFERENCE_DATA"]))
    candidates.append(project_root().parent / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None
