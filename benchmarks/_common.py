"""Helpers shared by the benchmark scripts: hardware description, JSON output, timing."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

OUTPUTS = Path(__file__).resolve().parents[1] / "outputs" / "benchmarks"


def hardware() -> str:
    """Backend, accelerator and CPU count, e.g. ``"jax on NVIDIA H100 80GB HBM3; 16 CPU cores"``."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    device = "CPU"
    try:
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform != "cpu"]
            if gpus:
                device = getattr(gpus[0], "device_kind", str(gpus[0]))
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                device = torch.cuda.get_device_name(0)
    except Exception:  # a description must never break a benchmark
        pass
    return f"{backend} on {device}; {os.cpu_count()} CPU cores; {platform.machine()}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Reads VmHWM from /proc on Linux: unlike ``ru_maxrss``, it is not inherited from the parent
    across fork and exec, so a child started by a memory-hungry parent reports its own peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@contextmanager
def timer(store: dict, key: str):
    """Store the block's wall-clock seconds in ``store[key]``."""
    start = time.perf_counter()
    yield
    store[key] = time.perf_counter() - start


def emit(figures: dict) -> None:
    """Print the figures as one JSON object on stdout (and nothing else there)."""
    json.dump(figures, sys.stdout, indent=1, default=float)
    sys.stdout.write("\n")
    sys.stdout.flush()
