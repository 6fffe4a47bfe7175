"""The one exception type of cryoml, and its warning category."""

from __future__ import annotations

__all__ = ["CryomlError", "CryomlWarning"]


class CryomlError(ValueError):
    """Bad input or an impossible request, with a message that names the fix.

    Subclasses :class:`ValueError` so that code written against scikit-learn or
    scikit-image conventions (``except ValueError``) keeps working.
    """


class CryomlWarning(UserWarning):
    """Something questionable that cryoml went on with (for example a missing voxel size)."""
