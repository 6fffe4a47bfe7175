"""Benchmark of cryoml.simulate: speed, measured SNR, missing wedge; figures of each data kind.

Usage: .venv/bin/python benchmarks/simulate.py [--quick]

Prints one JSON object: subtomograms_per_s (40³, 9.2 Å, SNR 0.1, ±60°, 2 worker processes),
phantom_s (512×512×128 cell phantom incl. tilt series + WBP), micrograph_s (one 2048² micrograph),
snr_measured {"0.1", "0.05", "0.03"} (projection SNR measured on the simulated projections),
band_snr {"paper", "detector"} → {"0.05-0.1", "0.1-0.2", "0.2-0.5", "all"} (SNR of the
reconstructed subtomograms per band of cycles/voxel at nominal SNR 0.1, ±60°, for each noise
stage; signal = noise-free reconstruction of the same poses, noise = noisy minus noise-free),
wedge_power_ratio (noise-free ±60° subtomograms, worst case), plus extras. PNGs go to
outputs/benchmarks/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryoml.simulate import (  # noqa: E402
    available_maps,
    builtin_complexes,
    measure_band_snr,
    measure_subtomogram_snr,
    project_slab,
    reconstruct_wbp,
    simulate_cell_tomogram,
    simulate_micrographs,
    simulate_subtomograms,
    tilt_angles,
    wedge_power_ratio,
)


def _cpu_seconds() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def xu_classes() -> tuple[list[str], str]:
    """22 real complexes when the shared maps exist (the Xu et al. set size), else built-ins."""
    maps = [m for m in available_maps() if not m.startswith(("4v4r_", "4pe5", "5gjv", "5ide",
                                                             "5kxi", "5tj6", "5tqq", "5vai",
                                                             "5wek", "6rd4"))]
    maps = [m for m in maps if m not in ("4v7r", "8tux")]
    if len(maps) >= 22:
        return maps[:22], "shared maps_10A"
    return [c for c in builtin_complexes() if c != "klh"], "built-in"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (< 2 min)")
    args = parser.parse_args()
    out_dir = ROOT / "outputs" / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    classes, source = xu_classes()
    result: dict = {"classes": source, "n_classes": len(classes), "quick": args.quick,
                    "machine": f"{os.cpu_count()} CPU cores, load average at start "
                    f"{os.getloadavg()[0]:.1f} (shared with other jobs)"}
    warnings.simplefilter("ignore")
    clock = time.perf_counter

    # Subtomograms: one condition at 40³.
    n_per_class = 12 if args.quick else 200
    cpu_before = _cpu_seconds()
    start = clock()
    subtomo = simulate_subtomograms(classes, n_per_class, snr=0.1, tilt_range=60, random_state=0,
                                    n_jobs=2)
    elapsed = clock() - start
    cpu = _cpu_seconds() - cpu_before
    result["subtomograms_per_s"] = round(len(subtomo) / elapsed, 1)
    # Load-independent: the rate two otherwise idle cores would give (CPU time of all processes).
    result["subtomograms_per_s_2_idle_cores_from_cpu_time"] = round(2 * len(subtomo) / cpu, 1)
    result["subtomograms_n"] = len(subtomo)
    result["subtomograms_23000_min"] = round(23000 / result["subtomograms_per_s"] / 60, 2)

    # Projection SNR.
    n_snr = 2 * len(classes) if args.quick else 8 * len(classes)
    result["snr_measured"] = {}
    result["snr_frank_al_ali"] = {}
    for snr in (0.1, 0.05, 0.03):
        measured = measure_subtomogram_snr(classes, snr=snr, n=n_snr, random_state=7)
        result["snr_measured"][f"{snr:g}"] = round(measured["direct"], 4)
        result["snr_frank_al_ali"][f"{snr:g}"] = round(measured["frank_al_ali"], 4)

    # Band SNR of the reconstructions, per noise stage (nominal 0.1, ±60°).
    n_band = 2 * len(classes) if args.quick else 6 * len(classes)
    result["band_snr_nominal"] = 0.1
    result["band_snr_n"] = n_band
    result["band_snr"] = {
        stage: {band: round(value, 4) for band, value in measure_band_snr(
            classes, snr=0.1, n=n_band, noise_stage=stage, random_state=7).items()}
        for stage in ("paper", "detector")
    }

    # Missing wedge, noise-free ±60°.
    clean = simulate_subtomograms(classes, 1, snr=None, tilt_range=60, random_state=1, n_jobs=1,
                                  include_empty=False)
    ratios = [wedge_power_ratio(v, tilt_range=60) for v in clean.data]
    result["wedge_power_ratio"] = float(max(ratios))
    # Extra: the slab WBP used for cells (finite slab: some leakage from truncation).
    angles = tilt_angles(60, 2)
    slab = np.pad(clean.data[0], ((0, 0), (0, 0), (20, 20)))
    wbp = reconstruct_wbp(project_slab(slab, angles), angles, thickness=40)[:, :, 20:60]
    result["wedge_power_ratio_slab_wbp"] = round(wedge_power_ratio(wbp, tilt_range=60), 4)

    # Cell phantom.
    start = clock()
    cell = simulate_cell_tomogram((128, 512, 512), voxel_size=10.0, snr=0.1, random_state=0)
    result["phantom_s"] = round(clock() - start, 2)
    result["phantom_particles"] = len(cell.particles)

    # Micrographs.
    particles = ["klh"] + (["4v4r"] if "4v4r" in available_maps() else [])
    times, mics = [], {}
    for particle in particles:
        for seed in range(1 if args.quick else 3):
            start = clock()
            mics[particle] = simulate_micrographs(1, shape=(2048, 2048), pixel_size=3.0,
                                                  particle=particle, snr=0.05 if particle ==
                                                  "klh" else 0.01, random_state=seed)[0]
            times.append(clock() - start)
    result["micrograph_s"] = round(float(np.mean(times)), 2)

    _figures(out_dir, subtomo, clean, classes, cell, mics)
    result["load_average_end"] = round(os.getloadavg()[0], 1)
    result["figures"] = sorted(str(p.relative_to(ROOT)) for p in out_dir.glob("simulate_*.png"))
    print(json.dumps(result, indent=1))


def _figures(out_dir, subtomo, clean, classes, cell, mics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from scipy import ndimage

    shown = [*range(min(6, len(classes))), len(subtomo.class_names) - 1]
    figure, axes = plt.subplots(3, len(shown), figsize=(2.2 * len(shown), 7))
    for column, label in enumerate(shown):
        index = int(np.flatnonzero(subtomo.labels == label)[0])
        volume = subtomo.data[index]
        rows = [(volume[20], "XY"), (volume[:, 20], "XZ")]
        if label < len(clean.data):
            rows.append((clean.data[label][:, 20], "XZ noise-free"))
        else:
            rows.append((np.zeros_like(volume[0]), ""))
        for row, (image, title) in enumerate(rows):
            axes[row, column].imshow(image, cmap="gray")
            axes[row, column].set_axis_off()
            axes[row, column].set_title(f"{subtomo.class_names[label]} {title}", fontsize=7)
    figure.suptitle("Subtomograms 40³ at 9.2 Å, SNR 0.1, ±60° (central slices; wedge along Z)")
    figure.tight_layout()
    figure.savefig(out_dir / "simulate_subtomograms.png", dpi=90)
    plt.close(figure)

    labels, names = cell.label_volume()
    tomogram = ndimage.gaussian_filter(cell.tomogram.data, 1.0)
    z = tomogram.shape[0] // 2
    figure, axes = plt.subplots(2, 2, figsize=(12, 9),
                                gridspec_kw={"height_ratios": [4, 1.3]})
    axes[0, 0].imshow(tomogram[z], cmap="gray")
    axes[0, 0].set_title("tomogram slice Z (Gaussian σ = 1 voxel for display)")
    axes[0, 1].imshow(labels[z], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    axes[0, 1].set_title("labels: " + ", ".join(f"{i + 1}={n}" for i, n in enumerate(names)),
                         fontsize=8)
    y = tomogram.shape[1] // 2
    axes[1, 0].imshow(tomogram[:, y], cmap="gray", aspect="auto")
    axes[1, 0].set_title("XZ slice (missing wedge: elongation along Z)")
    axes[1, 1].imshow(labels[:, y], cmap="tab10", vmin=0, vmax=9, interpolation="nearest",
                      aspect="auto")
    for axis in axes.ravel():
        axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(out_dir / "simulate_tomogram.png", dpi=80)
    plt.close(figure)

    figure, axes = plt.subplots(1, len(mics), figsize=(9 * len(mics), 9))
    axes = np.atleast_1d(axes)
    for axis, (name, micrograph) in zip(axes, mics.items(), strict=True):
        image = ndimage.gaussian_filter(micrograph.image.data, 2.0)
        low, high = np.percentile(image, [1, 99])
        axis.imshow(image, cmap="gray", vmin=low, vmax=high)
        good = micrograph.particles.centres
        bad = micrograph.all_particles.centres[~micrograph.good]
        radius = micrograph.box_size / 2
        for y, x in good:
            axis.add_patch(plt.Circle((x, y), radius, fill=False, color="lime", lw=1))
        axis.scatter(bad[:, 1], bad[:, 0], marker="x", c="red", s=40)
        axis.set_title(f"{name}, SNR {micrograph.params['snr']:g}: green = good particles, "
                       "red × = overlapped/aggregated/on carbon or ice")
        axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(out_dir / "simulate_micrograph.png", dpi=60)
    plt.close(figure)


if __name__ == "__main__":
    main()
