"""Scale figures: Dask files per minute (1 and 2 workers), out-of-core peak memory, GPU ratios.

Prints one JSON object. ``--quick`` keeps everything small enough for the 2-core CPU.

* ``dask``: files per minute and per worker for a per-file task (TomoSeg application where a
  trained network is given with ``--net``, else preprocessing: band-pass + normalise) over N
  tomograms, on a LocalCluster of 1 and of 2 workers.
* ``outofcore``: a volume twice the memory budget is filtered slab by slab (Gaussian, halo 3σ)
  in a child process; its peak resident memory is reported beside the budget and volume size.
* ``gpu`` (with ``--gpu``, KERAS_BACKEND=jax on a GPU host): the measurements of
  ``gpu_breakdown.py`` (subtomogram inference fp32/bf16, TomoSeg fused engine, DeepEM dense
  scorer compiled vs op by op, all in this run) and, where there are two GPUs or more,
  ``multi_gpu.py --devices 1 2`` (data-parallel training).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, hardware, peak_rss_mb


def _make_tomograms(folder: Path, n: int, shape: tuple[int, int, int]) -> list[Path]:
    from cryoml import io

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"tomo{i:03d}.mrc"
        io.write_mrc(
            path, rng.normal(size=shape).astype(np.float32), voxel_size=10.0, overwrite=True
        )
        paths.append(path)
    return paths


def dask_figures(n_files: int, shape: tuple[int, int, int]) -> dict:
    from cryoml.batch import run_batch
    from cryoml.preprocess import preprocess_file

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        inputs = _make_tomograms(tmp / "in", n_files, shape)
        for workers in (1, 2):
            report = run_batch(
                preprocess_file,
                [str(p) for p in inputs],
                out_dir=tmp / f"out{workers}",
                suffix="_pre.mrc",
                options={"lowpass": 40.0, "highpass": 2000.0},
                n_workers=workers,
                progress=False,
            )
            results[str(workers)] = {
                "files_per_minute": round(report.files_per_minute, 2),
                "files_per_minute_per_worker": round(report.files_per_minute / workers, 2),
                "seconds": round(report.seconds, 2),
                "failed": len(report.failed),
            }
    return {
        "task": "preprocess (band-pass 40–2000 Å, normalise, clamp)",
        "files": n_files,
        "shape": list(shape),
        "workers": results,
    }


def _child_outofcore(source: str, output: str, budget_mb: float) -> None:
    from scipy import ndimage

    from cryoml.outofcore import process_in_slabs

    sigma = 2.0
    halo = int(3 * sigma)
    start = time.perf_counter()
    report = process_in_slabs(
        source,
        output,
        lambda block: ndimage.gaussian_filter(block, sigma, mode="nearest"),
        halo=halo,
        max_memory_mb=budget_mb / 3,
        overwrite=True,
        progress=False,
    )
    report["seconds"] = time.perf_counter() - start
    report["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(report))


def outofcore_figures(budget_mb: float, plane: int) -> dict:
    # A volume of twice the budget, written slab by slab so this process never holds it.
    depth = int(2 * budget_mb * 2**20 / (plane * plane * 4))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "big.mrc"
        import mrcfile

        with mrcfile.new_mmap(source, shape=(depth, plane, plane), mrc_mode=2) as handle:
            rng = np.random.default_rng(0)
            for z in range(0, depth, 16):
                handle.data[z : z + 16] = rng.normal(size=handle.data[z : z + 16].shape)
            handle.voxel_size = 10.0
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child-outofcore",
                str(source),
                str(Path(tmp) / "o.mrc"),
                str(budget_mb),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(child.stdout.strip().splitlines()[-1])
    volume_mb = depth * plane * plane * 4 / 2**20
    return {
        "volume_mb": round(volume_mb, 1),
        "budget_mb": budget_mb,
        "peak_rss_mb": round(report["peak_rss_mb"], 1),
        "seconds": round(report["seconds"], 2),
        "slab_depth": report["slab_depth"],
        "filter": "Gaussian σ=2 voxels, halo 6 slices",
    }


def gpu_figures() -> dict:
    """GPU ratios, measured in this run by the two GPU scripts beside this one."""
    import gpu_breakdown
    import jax

    figures: dict = {"device": str(jax.devices()[0].device_kind)}
    for part in (gpu_breakdown.subtomo, gpu_breakdown.tomoseg, gpu_breakdown.deepem):
        part(figures)
    if len(jax.devices()) >= 2:  # a fresh process: the distribution must own the devices
        script = Path(__file__).resolve().parent / "multi_gpu.py"
        done = subprocess.run([sys.executable, str(script), "--devices", "1", "2"],
                              capture_output=True, text=True, env=dict(os.environ), check=True)
        figures["multi_gpu"] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for the CPU")
    parser.add_argument("--gpu", action="store_true",
                        help="also the GPU figures (KERAS_BACKEND=jax on a GPU host)")
    parser.add_argument("--child-outofcore", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_outofcore:
        source, output, budget = args.child_outofcore
        _child_outofcore(source, output, float(budget))
        return
    figures = {"hardware": hardware()}
    if args.quick:
        figures["dask"] = dask_figures(8, (32, 256, 256))
        figures["outofcore"] = outofcore_figures(256.0, plane=512)
    else:
        figures["dask"] = dask_figures(32, (64, 512, 512))
        figures["outofcore"] = outofcore_figures(2048.0, plane=1024)
    if args.gpu:
        figures["gpu"] = gpu_figures()
    emit(figures)


if __name__ == "__main__":
    main()
