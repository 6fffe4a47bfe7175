"""Describe an image, volume or coordinate file: shape, type, voxel size, statistics, counts.

examples:
  cryoml info micrograph.mrc
  cryoml info tomogram.tif
  cryoml info picks.star
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COORDINATE_SUFFIXES = (".box", ".json", ".star", ".csv")


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``cryoml info``."""
    parser.add_argument("files", nargs="+", type=Path, help="files to describe")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")


def describe(path: Path) -> dict:
    """Facts about one file, as a dict."""
    from cryoml import io

    if path.suffix.lower() in COORDINATE_SUFFIXES:
        particles = io.read_coordinates(path)
        return {
            "file": str(path),
            "kind": f"{particles.ndim}-D coordinates",
            "count": len(particles),
            "box_size": particles.box_size,
            "classes": None
            if particles.classes is None
            else sorted(set(particles.classes.tolist())),
        }
    image = io.read_image(path, mmap=True)
    stats = _statistics(image.data)
    kind = "image stack" if image.is_stack else {2: "image", 3: "volume"}[image.ndim]
    return {
        "file": str(path),
        "kind": kind,
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "voxel_size": image.voxel_size,
        **stats,
    }


def _statistics(data) -> dict:
    import numpy as np

    # Stream over slabs so a memory-mapped 4k tomogram never has to fit in RAM.
    flat = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data[None]
    total = count = 0
    sumsq = 0.0
    low, high = np.inf, -np.inf
    step = max(1, (1 << 24) // flat.shape[1])
    for start in range(0, flat.shape[0], step):
        part = np.asarray(flat[start : start + step], dtype=np.float64)
        total += part.sum()
        sumsq += np.square(part).sum()
        count += part.size
        low, high = min(low, part.min()), max(high, part.max())
    mean = total / count
    sd = float(np.sqrt(max(sumsq / count - mean * mean, 0.0)))
    return {"min": float(low), "max": float(high), "mean": float(mean), "sd": sd}


def main(args: argparse.Namespace) -> int:
    """Print the description of each file."""
    for path in args.files:
        facts = describe(path)
        if args.json:
            print(json.dumps(facts))
            continue
        print(f"{facts['file']}: {facts['kind']}")
        if "shape" in facts:
            shape = " × ".join(str(n) for n in facts["shape"])
            size = (
                "unknown" if facts["voxel_size"] is None else f"{round(facts['voxel_size'], 3):g} Å"
            )
            axes = "(z, y, x)" if len(facts["shape"]) == 3 else "(y, x)"
            print(f"  shape       {shape} {axes}")
            print(f"  dtype       {facts['dtype']}")
            print(f"  voxel size  {size}/{'voxel' if len(facts['shape']) == 3 else 'px'}")
            print(
                f"  min/max     {facts['min']:.4g} / {facts['max']:.4g}\n"
                f"  mean ± s.d. {facts['mean']:.4g} ± {facts['sd']:.4g}"
            )
        else:
            print(f"  count       {facts['count']}")
            print(f"  box size    {facts['box_size']}")
            if facts["classes"] is not None:
                print(f"  classes     {facts['classes']}")
    return 0
