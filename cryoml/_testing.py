"""Helpers for tests and benchmarks: where the shared reference data lives."""

from __future__ import annotations

from pathlib import Path

__all__ = ["project_root", "reference_data"]


def project_root() -> Path:
    """The repository root (the folder that holds ``cryoml/``)."""
    return Path(__file__).resolve().parents[1]


def reference_data() -> Path | None:
    """The optional reference data folder, or None where it is absent.

    The one lookup is :func:`cryoml.datasets.reference_data` (``$CRYOML_REFERENCE_DATA`` when set,
    else ``../shared/data`` beside the project root).
    """
    from cryoml.datasets import reference_data as lookup

    return lookup()
