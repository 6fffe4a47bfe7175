"""TomoSeg speed: training, application per slice, peak memory on a memory-mapped tomogram.

Runs unchanged on any Keras backend (KERAS_BACKEND=tensorflow | jax | torch), CPU or GPU.

* ``train_s``: the default training (paper network, 40 filters, ≈2,000 64×64 tiles, 20 epochs,
  batch 20). ``--quick`` times 200 tiles × 1 epoch and extrapolates (said in the output).
* ``apply_s_per_slice``: wall seconds per 1024² and 4096² slice (engine "auto": Keras on a GPU,
  FFT on a CPU), also CPU seconds (process time, all threads). ``--quick`` extrapolates 4096²
  from 1024² × 16 (the work is proportional to the area) and says so.
* ``peak_mem_mb``: peak resident memory of a fresh process that applies a network to a
  memory-mapped 2048×2048×Z float32 MRC (Z = 256 in full mode, 8 in quick mode) and writes the
  output MRC; also the growth above the process's baseline after loading the network, and
  the tracemalloc peak of Python/NumPy allocations.

    .venv/bin/python benchmarks/tomoseg_speed.py --quick
    KERAS_BACKEND=jax python benchmarks/tomoseg_speed.py --full
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def hardware() -> str:
    import keras

    backend = keras.backend.backend()
    device = "cpu"
    try:
        if backend == "jax":
            import jax

            device = ", ".join(str(d) for d in jax.devices())
        elif backend == "torch":
            import torch

            device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            device = ", ".join(g.name for g in gpus) if gpus else "cpu"
    except Exception as error:
        device = f"unknown ({error})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"keras {keras.__version__} backend={backend}, device={device}; "
        f"CPU {cpu} × {os.cpu_count()}"
    )


def make_segmenter(n_filters: int = 40):
    from cryoml.tomoseg import TomoSegmenter
    from cryoml.tomoseg.models import build_tomoseg_cnn

    segmenter = TomoSegmenter(feature="bench", n_filters=n_filters, progress=False)
    segmenter.model_ = build_tomoseg_cnn(n_filters=n_filters)
    segmenter.amplitude_ = 1.0
    segmenter.voxel_size_ = 10.0
    segmenter.preprocess_ = {}
    segmenter.n_neighbours_ = 0
    segmenter.history_ = {"loss": [], "val_loss": [], "learning_rate": []}
    return segmenter


def time_training(n_tiles: int, epochs: int) -> tuple[float, float]:
    from cryoml.tomoseg import TomoSegmenter, TrainingSet

    rng = np.random.default_rng(0)
    tiles = rng.normal(size=(n_tiles, 64, 64, 1)).astype(np.float32)
    labels = (rng.random((n_tiles, 32, 32)) > 0.9).astype(np.float32)
    positive = np.arange(n_tiles) % 2 == 0
    labels[~positive] = 0
    trainset = TrainingSet(tiles, labels, positive, feature="bench", voxel_size=10.0)
    segmenter = TomoSegmenter(
        feature="bench", epochs=epochs, validation_fraction=0.0, random_state=0, progress=False
    )
    # warm-up (compilation) on a few tiles, not timed
    warm = TrainingSet(tiles[:40], labels[:40], positive[:40], voxel_size=10.0)
    TomoSegmenter(epochs=1, validation_fraction=0.0, progress=False).fit(warm)
    wall, cpu = time.perf_counter(), time.process_time()
    segmenter.fit(trainset)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_apply(
    segmenter,
    size: int,
    n_slices: int,
    engine: str = "auto",
    precision: str = "float32",
    keep: list | None = None,
) -> tuple[float, float]:
    from cryoml.tomoseg import apply_network

    volume = np.random.default_rng(0).normal(size=(n_slices, size, size)).astype(np.float32)
    options = {"voxel_size": 10.0, "engine": engine, "precision": precision, "progress": False}
    apply_network(volume, segmenter, **options)  # warm-up: compilation (same shapes) excluded
    wall, cpu = time.perf_counter(), time.process_time()
    output = apply_network(volume, segmenter, **options)
    seconds = (time.perf_counter() - wall) / n_slices, (time.process_time() - cpu) / n_slices
    if keep is not None:
        keep.append(output)
    return seconds


def gpu_engine_comparison(segmenter, size: int, n_slices: int) -> dict:
    """Naive Keras engine vs the fused engine in float32 and bfloat16, same run, same data."""
    from cryoml.metrics import dice

    outputs: list = []
    naive = time_apply(segmenter, size, n_slices, engine="keras", keep=outputs)[0]
    fused = time_apply(segmenter, size, n_slices, engine="fused", keep=outputs)[0]
    bf16 = time_apply(
        segmenter, size, n_slices, engine="fused", precision="bfloat16", keep=outputs
    )[0]
    reference, _, half = outputs
    threshold = float(np.percentile(reference, 90))
    return {
        "size": size,
        "slices": n_slices,
        "keras_s_per_slice": round(naive, 4),
        "fused_float32_s_per_slice": round(fused, 4),
        "fused_bfloat16_s_per_slice": round(bf16, 4),
        "speedup_fused_bfloat16_over_keras": round(naive / bf16, 2),
        "bfloat16_vs_float32": {
            "max_abs_difference": float(np.abs(half - reference).max()),
            "mean_abs_difference_over_mean": float(
                np.abs(half - reference).mean() / max(np.abs(reference).mean(), 1e-12)
            ),
            "dice_of_top_10_percent_masks": dice(reference > threshold, half > threshold),
        },
        "tomogram_4096x4096x1024_s_extrapolated": round(bf16 * 1024, 1),
    }


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_child(path: str, out: str) -> None:
    """Run in a fresh process: apply to a memory-mapped MRC and report memory."""
    import tracemalloc

    from cryoml.tomoseg import apply_network

    segmenter = make_segmenter()
    apply_network(np.zeros((1, 64, 64), np.float32), segmenter, voxel_size=10.0, progress=False)
    baseline = _vm_hwm_mb()
    tracemalloc.start()
    start = time.perf_counter()
    apply_network(path, segmenter, output=out, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                # VmHWM: this process's own high-water mark. ru_maxrss survives exec on Linux,
                # so it can report the parent's resident size at fork time instead.
                "peak_mb": _vm_hwm_mb(),
                "ru_maxrss_mb": peak,
                "baseline_mb": baseline,
                "tracemalloc_peak_mb": traced_peak / 2**20,
                "seconds": seconds,
            }
        )
    )


def measure_peak(n_slices: int, size: int = 2048) -> dict:
    import mrcfile

    from cryoml._pages import drop_pages

    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        path = Path(folder) / "big.mrc"
        with mrcfile.new_mmap(path, shape=(n_slices, size, size), mrc_mode=2) as handle:
            rng = np.random.default_rng(0)
            for z in range(n_slices):
                handle.data[z] = rng.normal(size=(size, size)).astype(np.float32)
                if z % 16 == 15:
                    drop_pages(handle.data)  # keep this parent small: the child forks from it
            handle.voxel_size = 10.0
        result = subprocess.run(
            [sys.executable, __file__, "--_peak-child", str(path), str(Path(folder) / "o.mrc")],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        values = json.loads(result.stdout.strip().splitlines()[-1])
    values["tomogram_mb"] = n_slices * size * size * 4 / 2**20
    values["shape"] = [n_slices, size, size]
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU-sized runs, extrapolated")
    mode.add_argument("--full", action="store_true", help="the full measurements (GPU)")
    parser.add_argument("--train-tiles", type=int, help="tiles to time training on")
    parser.add_argument("--train-epochs", type=int, help="epochs to time training on")
    parser.add_argument("--slices", type=int, help="slices per application timing")
    parser.add_argument("--peak-slices", type=int, help="Z of the 2048² memory-mapped tomogram")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1024, 4096],
        help="slice edges to time (default 1024 4096)",
    )
    parser.add_argument("--_peak-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._peak_child:
        peak_child(*args._peak_child)
        return 0
    quick = not args.full
    train_tiles = args.train_tiles or (200 if quick else 2000)
    train_epochs = args.train_epochs or (1 if quick else 20)
    slices = args.slices or (2 if quick else 8)
    peak_slices = args.peak_slices or (8 if quick else 256)

    result: dict = {"mode": "quick" if quick else "full", "hardware": hardware()}
    wall, cpu = time_training(train_tiles, train_epochs)
    scale = (2000 * 20) / (train_tiles * train_epochs)
    result["train_s"] = round(wall * scale, 2)
    result["train_cpu_s"] = round(cpu * scale, 2)
    result["train_measured"] = {
        "tiles": train_tiles,
        "epochs": train_epochs,
        "wall_s": round(wall, 2),
        "extrapolated_to_2000x20": scale != 1,
    }
    segmenter = make_segmenter()
    per_slice, cpu_per_slice, notes = {}, {}, {}
    for size in args.sizes:
        if quick and size > 1024:
            base = 1024 if 1024 in per_slice else None
            if base is None:
                per_slice["1024"], cpu_per_slice["1024"] = time_apply(segmenter, 1024, slices)
            factor = (size / 1024) ** 2
            per_slice[str(size)] = per_slice["1024"] * factor
            cpu_per_slice[str(size)] = cpu_per_slice["1024"] * factor
            notes[str(size)] = f"extrapolated from 1024² × {factor:g} (area)"
        else:
            n = slices if size <= 2048 else max(1, slices // 4)
            per_slice[str(size)], cpu_per_slice[str(size)] = time_apply(segmenter, size, n)
    result["apply_s_per_slice"] = {k: round(v, 3) for k, v in per_slice.items()}
    result["apply_cpu_s_per_slice"] = {k: round(v, 3) for k, v in cpu_per_slice.items()}
    if notes:
        result["apply_notes"] = notes
    from cryoml.tomoseg._apply import _gpu_available

    result["apply_engine"] = "fused (float32)" if _gpu_available() else "fft"
    if _gpu_available():
        result["gpu_engines"] = gpu_engine_comparison(segmenter, max(args.sizes), slices)
    if result["apply_engine"] == "fft":
        wall_k, cpu_k = time_apply(segmenter, 1024, 1, engine="keras")
        result["apply_keras_engine_1024"] = {"wall_s": round(wall_k, 3), "cpu_s": round(cpu_k, 3)}
    peak = measure_peak(peak_slices)
    result["peak_mem_mb"] = round(peak["peak_mb"], 1)
    result["peak_mem_detail"] = {
        k: (round(v, 1) if isinstance(v, float) else v) for k, v in peak.items()
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
