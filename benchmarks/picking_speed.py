"""Seconds to score one 2048² micrograph with DeepEM's KLH network: raster scan vs dense.

Prints one JSON object with ``dense_s_per_micrograph``, ``raster_s_per_micrograph``,
``topaz_s_per_micrograph`` and ``hardware`` (+ extras). The network is the paper's KLH preset
(box 272, kernels 51/21/10, pools 3/2/2) with random weights — the time does not depend on
the weights. Both scorers average 4 rotations. The raster scan (box stepped by 20 px: 89² =
7921 boxes × 4 rotations) is timed on its first ``--raster-boxes`` boxes and extrapolated
(it would take tens of minutes on a CPU); the dense scorer is timed on the whole micrograph
(median of repeats, after one warm-up call). The paper reports 7300 s for this job (Matlab,
3.3 GHz Core i5).

Runs on any Keras backend: on a GPU machine, ``KERAS_BACKEND=jax python
benchmarks/picking_speed.py``. Topaz (pretrained resnet16, via its own virtualenv, see
benchmarks/topaz_env.sh) is timed on the same micrograph downsampled ×4 to 512² — its usual
preprocessing — when .topaz-venv exists; otherwise its entry is null with the reason.

Usage: python benchmarks/picking_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def note(message: str) -> None:
    print(f"[picking_speed {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def hardware() -> dict:
    """What ran the benchmark: backend, accelerator, CPU."""
    import keras

    backend = keras.backend.backend()
    info = {
        "keras_backend": backend,
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "accelerator": None,
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        info["accelerator"] = f"{device.platform}: {getattr(device, 'device_kind', device)}"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            info["accelerator"] = f"cuda: {torch.cuda.get_device_name(0)}"
    elif shutil.which("nvidia-smi"):
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
        if query.returncode == 0 and query.stdout.strip():
            info["accelerator"] = f"gpu present (not used by {backend}?): {query.stdout.strip()}"
    device = info["accelerator"] or "CPU only"
    info["summary"] = f"{device}; {info['cpu_count']}-core {info['cpu']}; Keras {backend}"
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and raster boxes")
    parser.add_argument("--size", type=int, default=2048, help="micrograph edge (px)")
    parser.add_argument("--raster-boxes", type=int, help="boxes to time the raster scan on")
    parser.add_argument("--repeats", type=int, help="dense timing repeats")
    parser.add_argument("--no-topaz", action="store_true")
    parser.add_argument("--dense-step", type=int,
                        help="also time the dense scorer on this finer grid step (a divisor "
                        "of the KLH network's stride, 12)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    raster_boxes = args.raster_boxes or (64 if args.quick else 400)

    import keras

    from cryoml.picking import PRESETS, build_deepem_cnn, dense_score_map, raster_score_map

    keras.utils.set_random_seed(0)
    preset = PRESETS["klh"]
    model = build_deepem_cnn(preset.box_size, kernels=preset.kernels, pools=preset.pools)
    micrograph = np.random.default_rng(0).normal(size=(args.size, args.size)).astype(np.float32)

    dense_score_map(model, micrograph)  # warm-up (compilation, allocation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        score_map = dense_score_map(model, micrograph)
        np.asarray(score_map.scores).sum()
        times.append(time.perf_counter() - start)
    dense = float(np.median(times))
    note(
        f"dense: {dense:.3f} s ({times}) for a {score_map.scores.shape} map, step {score_map.step}"
    )
    fine = None
    if args.dense_step:
        dense_score_map(model, micrograph, step=args.dense_step)  # warm-up
        fine_times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fine_map = dense_score_map(model, micrograph, step=args.dense_step)
            np.asarray(fine_map.scores).sum()
            fine_times.append(time.perf_counter() - start)
        fine = {"step": args.dense_step, "s_per_micrograph": float(np.median(fine_times)),
                "map_shape": list(fine_map.scores.shape)}
        note(f"dense at step {args.dense_step}: {fine['s_per_micrograph']:.3f} s")

    raster_score_map(model, micrograph, max_boxes=8)  # warm-up
    start = time.perf_counter()
    partial = raster_score_map(model, micrograph, max_boxes=raster_boxes)
    elapsed = time.perf_counter() - start
    n_boxes = partial.scores.size
    raster = elapsed / raster_boxes * n_boxes
    note(f"raster: {elapsed:.2f} s for {raster_boxes} of {n_boxes} boxes -> {raster:.0f} s")

    # Consistency: the dense map equals the raster scan where the grids meet (step 60 px).
    common = np.array(
        [
            [y, x]
            for y in range(0, 240, 60)
            for x in range(0, 240, 60)
            if (y // 20) * partial.scores.shape[1] + x // 20 < raster_boxes
        ]
    )
    max_difference = (
        float(np.max(np.abs(score_map.at_corners(common) - partial.at_corners(common))))
        if len(common)
        else None
    )

    topaz_seconds, topaz_note = None, None
    if args.no_topaz:
        topaz_note = "skipped (--no-topaz)"
    else:
        try:
            import _topaz

            topaz_seconds, topaz_note = _topaz.time_pretrained(
                micrograph, downsample=4, work=args.out / "topaz_speed", note=note
            )
        except Exception as error:  # report, do not fail
            topaz_note = f"Topaz failed: {type(error).__name__}: {error}"
    result = {
        "dense_s_per_micrograph": dense,
        "dense_finer_step": fine,
        "raster_s_per_micrograph": raster,
        "topaz_s_per_micrograph": topaz_seconds,
        "hardware": hardware(),
        # extras
        "targets": {"dense_cpu_s": 10, "dense_h100_s": 0.2, "paper_matlab_s": 7300},
        "micrograph": [args.size, args.size],
        "network": "DeepEM KLH preset: box 272, kernels 51/21/10, pools 3/2/2, maps 6/12/12",
        "rotations": 4,
        "dense_grid_step_px": int(score_map.step),
        "dense_map_shape": list(score_map.scores.shape),
        "dense_repeats_s": times,
        "raster_step_px": 20,
        "raster_boxes_total": int(n_boxes),
        "raster_boxes_timed": int(raster_boxes),
        "raster_extrapolated": raster_boxes < n_boxes,
        "dense_vs_raster_max_abs_difference": max_difference,
        "speedup_dense_over_raster": raster / dense,
        "topaz_note": topaz_note,
        "quick": args.quick,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
