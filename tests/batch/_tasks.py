"""Tasks for the batch tests; importable by Dask workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def double_volume(input_path: Path, output_path: Path, *, crash_marker: str | None = None) -> dict:
    """Read an .npy array, write twice it; optionally kill the worker once, mid-write."""
    data = np.load(input_path)
    if crash_marker is not None and not Path(crash_marker).exists():
        Path(crash_marker).write_text(str(os.getpid()))
        with open(output_path, "wb") as handle:
            handle.write(b"half a file")
            handle.flush()
        os._exit(1)  # the worker process dies as if killed
    np.save(output_path, data * 2)
    return {"sum": float(data.sum())}
