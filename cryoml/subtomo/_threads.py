"""Thread pools for the per-subtomogram work that scipy and numpy run without the GIL."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from cryoml._errors import CryomlError

__all__ = ["resolve_threads", "thread_map"]


def thread_map(function, items, threads: int) -> list:
    """``[function(item) for item in items]``, over ``threads`` threads (scipy.ndimage and
    scipy.fft release the GIL, so rotations and FFTs of different items run in parallel)."""
    if threads == 1 or len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(function, items))


def resolve_threads(n_jobs) -> int:
    """Threads for ``n_jobs`` (scikit-learn's convention: None → 1, -1 → every core)."""
    if n_jobs is None:
        return 1
    if int(n_jobs) != n_jobs or n_jobs == 0 or n_jobs < -1:
        raise CryomlError(
            f"'n_jobs' must be a whole number >= 1, or -1 (all cores); got {n_jobs!r}."
        )
    return (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
