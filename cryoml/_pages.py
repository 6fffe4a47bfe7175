"""Dropping the resident pages of memory-mapped arrays, so that reading a volume larger than
RAM does not fill the process's resident memory with its pages."""

from __future__ import annotations

import numpy as np

__all__ = ["drop_pages"]


def drop_pages(array: np.ndarray) -> None:
    """Let the kernel drop the resident pages of a memory-mapped array (they stay on disk).

    File-backed pages count towards a process's resident memory; dropping them after each
    batch keeps the footprint at one batch however large the tomogram.
    """
    import mmap

    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
    if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        try:
            if hasattr(array, "flush"):
                array.flush()
            base.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # closed or not supported: only a memory optimisation
            pass
