"""Run every cryoml workflow end to end on data made on the spot; results go to outputs/demo/.

Each workflow writes its files under OUT/<workflow>/ and its headline figures into
OUT/summary.json.

examples:
  cryoml demo
  cryoml demo --out /tmp/demo --only io tomoseg
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import time
from pathlib import Path

# (name, module that defines run_demo(out_dir, *, quick) -> dict)
WORKFLOWS = [
    ("io", "cryoml.cli.demo"),
    ("simulate", "cryoml.simulate._demo"),
    ("tomoseg", "cryoml.tomoseg._demo"),
    ("subtomo", "cryoml.subtomo._demo"),
    ("picking", "cryoml.picking._demo"),
]

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``cryoml demo``."""
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument(
        "--only", nargs="+", choices=[name for name, _ in WORKFLOWS], help="run only these"
    )
    parser.add_argument("--full", action="store_true", help="larger sizes (slower)")


def run_demo(out_dir: Path, *, quick: bool = True) -> dict:
    """The I/O and preprocessing workflow: make a volume, write MRC, preprocess, pick, round-trip.

    Returns
    -------
    dict
        Shapes and voxel sizes before and after preprocessing, and the coordinate count.
    """
    import numpy as np

    from cryoml import io
    from cryoml.preprocess import preprocess

    rng = np.random.default_rng(0)
    shape = (32, 128, 128) if quick else (64, 512, 512)
    zz, yy, xx = np.indices(shape)
    centres = rng.uniform([8, 16, 16], np.array(shape) - [8, 16, 16], size=(12, 3))
    volume = rng.normal(0, 1, shape).astype(np.float32)
    for centre in centres:
        volume += 3 * np.exp(
            -((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) / (2 * 3**2)
        ).astype(np.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = io.write_mrc(out_dir / "blobs.mrc", volume, voxel_size=10.0, overwrite=True)
    data, record = preprocess(
        io.read_mrc(raw).data, voxel_size=10.0, lowpass=40.0, highpass=1000.0, bin_factor=2
    )
    io.write_mrc(out_dir / "blobs_bin2.mrc", data, voxel_size=record.voxel_size, overwrite=True)
    record.save(out_dir / "blobs_bin2.mrc.json")
    particles = io.Particles(centres, box_size=16)
    for suffix in (".star", ".json", ".csv"):
        io.write_coordinates(out_dir / f"blobs{suffix}", particles, overwrite=True)
    back = io.read_coordinates(out_dir / "blobs.star")
    return {
        "raw_shape": list(shape),
        "preprocessed_shape": list(data.shape),
        "preprocessed_voxel_size": record.voxel_size,
        "coordinates_round_trip_max_error_px": float(np.abs(back.centres - centres).max()),
    }


def main(args: argparse.Namespace) -> int:
    """Run the demos in turn and write OUT/summary.json."""
    selected = [(n, m) for n, m in WORKFLOWS if not args.only or n in args.only]
    summary: dict[str, dict] = {}
    failures = []
    for name, module_name in selected:
        start = time.perf_counter()
        print(f"[demo] {name} ...", flush=True)
        module = importlib.import_module(module_name)
        try:
            figures = module.run_demo(args.out / name, quick=not args.full)
        except Exception as error:  # one broken workflow must not hide the others' results
            log.exception("demo %s failed", name)
            failures.append(name)
            figures = {"error": f"{type(error).__name__}: {error}"}
        figures["seconds"] = round(time.perf_counter() - start, 2)
        summary[name] = figures
        print(f"[demo] {name}: {json.dumps(figures)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    from cryoml.io import atomic_path

    with atomic_path(args.out / "summary.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    print(f"[demo] wrote {args.out / 'summary.json'}")
    if failures:
        print(f"[demo] FAILED: {', '.join(failures)}")
        return 1
    return 0
