"""TomoSeg accuracy on simulated cellular tomograms and on a real microtubule tomogram.

Two independent simulated tomograms (cryoml.simulate.simulate_cell_tomogram, SNR 0.1 per
projection, ±60° tilts, CTF + MTF: the simulator's realistic default). On tomogram A boxes are
chosen as a user would (10 positive tiles centred on each feature, 100 negatives free of it),
masks from the ground truth; one network per feature (membrane, microtubule, ribosome) is
trained, applied to tomogram B, and the outputs are merged (argmax over [threshold, nets]).
The merge threshold is chosen on tomogram A (the training tomogram), never on B.

Also: the same with masks perturbed like a hurried human (dilated, eroded, a stroke missed),
the 2.5D variant (k = 2 neighbours each side as channels), a consensus of annotators (mean and
s.d. maps), and a real-data check: a microtubule network trained on 13pf_MT.tif, applied to
14pf_MT.tif, Dice against a mask derived from the volume itself (see ``derive_mt_mask``).

Prints one JSON object; PNGs go to outputs/benchmarks/.

    .venv/bin/python benchmarks/tomoseg_accuracy.py --quick    # ~8 min on 2 idle CPU cores
    .venv/bin/python benchmarks/tomoseg_accuracy.py            # paper settings (40 filters)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import scipy.ndimage as ndi

FEATURES = ("membrane", "microtubule", "ribosome")
RIBOSOME_DIAMETER_A = 250.0


def feature_masks(cell) -> dict[str, np.ndarray]:
    labels = cell.labels
    membrane = labels["membrane"]  # includes the double membranes
    return {
        "membrane": membrane,
        "microtubule": labels["microtubule"],
        "ribosome": labels["ribosome"],
    }


def prepare(volume: np.ndarray, voxel_size: float):
    from cryoml.preprocess import preprocess

    return preprocess(
        volume, voxel_size=voxel_size, lowpass=3 * voxel_size, highpass=4000.0, clamp_sd=3.0
    )


def hurried(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Perturb (P, T, T) tile masks like a hurried annotator: dilate, erode or miss a stroke."""
    out = np.empty_like(masks)
    for i, mask in enumerate(masks.astype(bool)):
        kind = i % 3
        if kind == 0:
            new = ndi.binary_dilation(mask, iterations=2)
        elif kind == 1:
            new = ndi.binary_erosion(mask, iterations=1)
            new = new if new.any() else mask
        else:
            new = mask.copy()
            y0 = int(rng.integers(0, mask.shape[0] - 16))
            new[y0 : y0 + 16] = False  # a missed stroke across the tile
            new = new if new.any() else mask
        out[i] = new
    return out


def tile_masks(mask_volume: np.ndarray, centres: np.ndarray, tile: int) -> np.ndarray:
    half = tile // 2
    return np.stack(
        [
            mask_volume[z, y - half : y - half + tile, x - half : x - half + tile]
            for z, y, x in centres
        ]
    ).astype(np.float32)


def train(
    volume,
    positives,
    masks,
    negatives,
    feature,
    settings,
    *,
    voxel,
    record,
    n_neighbours=0,
    seed=0,
    tile_size=64,
):
    from cryoml.tomoseg import TomoSegmenter, build_training_set

    trainset = build_training_set(
        volume,
        positives,
        masks,
        negatives,
        feature=feature,
        voxel_size=voxel,
        preprocess=record,
        n_copies=settings["copies"],
        n_neighbours=n_neighbours,
        tile_size=tile_size,
        random_state=seed,
    )
    segmenter = TomoSegmenter(
        feature=feature,
        recipe=settings["recipe"],
        learning_rate=settings["learning_rate"],
        epochs=settings["epochs"],
        n_filters=settings["filters"],
        random_state=seed,
        progress=False,
    )
    return segmenter.fit(trainset), trainset


def best_threshold(outputs, truths) -> float:
    from cryoml.metrics import dice
    from cryoml.tomoseg import merge_segmentations

    best, best_t = -1.0, 1.0
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
        labels, _ = merge_segmentations(outputs, threshold=threshold)
        score = np.mean([dice(labels == i + 1, t) for i, t in enumerate(truths)])
        if score > best:
            best, best_t = score, threshold
    return best_t


def ribosome_picking(output, truth_centres, voxel, threshold):
    from cryoml.metrics import match_points
    from cryoml.tomoseg import extract_particles

    diameter = RIBOSOME_DIAMETER_A / voxel
    edge = 0.25 * diameter
    picks = extract_particles(
        output,
        box_size=round(diameter),
        threshold=threshold,
        min_mass=20,
        min_distance=0.5 * diameter,
        edge=edge,
    )
    shape = np.asarray(output.shape)
    inside = np.all((truth_centres >= edge) & (truth_centres <= shape - 1 - edge), axis=1)
    truth = truth_centres[inside]
    if len(picks) == 0:
        return 0.0, 0.0, 0, len(truth)
    pred_idx, _ = match_points(picks.centres, truth, 0.5 * diameter)
    return len(pred_idx) / len(picks), len(pred_idx) / max(len(truth), 1), len(picks), len(truth)


def run_simulated(settings, out_dir: Path) -> dict:
    from cryoml.metrics import dice
    from cryoml.simulate import simulate_cell_tomogram
    from cryoml.tomoseg import (
        apply_network,
        consensus_maps,
        merge_segmentations,
        sample_boxes,
    )

    shape = settings["shape"]
    cells = [
        simulate_cell_tomogram(shape, voxel_size=10.0, snr=settings["snr"], random_state=seed)
        for seed in (101, 202)
    ]
    voxel = float(cells[0].tomogram.voxel_size)
    (vol_a, record), (vol_b, _) = (prepare(np.asarray(c.tomogram.data), voxel) for c in cells)
    truth_a, truth_b = feature_masks(cells[0]), feature_masks(cells[1])
    rng = np.random.default_rng(0)
    result: dict = {"dice": {}, "dice_perturbed": {}, "dice_2p5d": {}}
    outputs = {"2d": {}, "perturbed": {}, "2p5d": {}}
    outputs_a = {"2d": {}, "perturbed": {}, "2p5d": {}}
    tile = 64
    for index, feature in enumerate(FEATURES):
        positives, negatives = sample_boxes(
            truth_a[feature], 10, 100, tile_size=tile, random_state=index
        )
        exact = tile_masks(truth_a[feature], positives, tile)
        variants = {
            "2d": (exact, 0),
            "perturbed": (hurried(exact, rng), 0),
            "2p5d": (exact, settings["k"]),
        }
        for name, (masks, k) in variants.items():
            if name != "2d" and not settings[name]:
                continue
            start = time.perf_counter()
            segmenter, trainset = train(
                vol_a,
                positives,
                masks,
                negatives,
                feature,
                settings,
                voxel=voxel,
                record=record,
                n_neighbours=k,
                seed=index,
            )
            train_s = time.perf_counter() - start
            outputs[name][feature] = apply_network(
                vol_b, segmenter, voxel_size=voxel, progress=False
            )
            outputs_a[name][feature] = apply_network(
                vol_a, segmenter, voxel_size=voxel, progress=False
            )
            print(
                f"  {feature} {name}: trained {len(trainset)} tiles in {train_s:.0f} s",
                file=sys.stderr,
            )
            if name == "2d":
                from cryoml.tomoseg import plot_history, preview_grid, save_figure

                save_figure(
                    preview_grid(trainset, segmenter, max_tiles=16),
                    out_dir / f"tomoseg_preview_{feature}.png",
                    overwrite=True,
                )
                save_figure(
                    plot_history(segmenter.history_, title=feature),
                    out_dir / f"tomoseg_history_{feature}.png",
                    overwrite=True,
                )
    truths_a = [truth_a[f] for f in FEATURES]
    truths_b = [truth_b[f] for f in FEATURES]
    thresholds = {}
    for name, key in (("2d", "dice"), ("perturbed", "dice_perturbed"), ("2p5d", "dice_2p5d")):
        if len(outputs[name]) != len(FEATURES):
            continue
        threshold = best_threshold([outputs_a[name][f] for f in FEATURES], truths_a)
        thresholds[name] = threshold
        labels, _table = merge_segmentations(
            [outputs[name][f] for f in FEATURES], names=FEATURES, threshold=threshold
        )
        result[key] = {
            f: round(dice(labels == i + 1, truths_b[i]), 3) for i, f in enumerate(FEATURES)
        }
        if name == "2d":
            merged_b = labels
        ribo = outputs[name]["ribosome"]
        ribo_truth = cells[1].particles.centres[
            cells[1].particles.classes == _ribosome_class(cells[1].particles)
        ]
        precision, recall, n_picks, n_true = ribosome_picking(ribo, ribo_truth, voxel, threshold)
        prefix = {"2d": "", "perturbed": "perturbed_", "2p5d": "2p5d_"}[name]
        result[f"{prefix}ribosome_precision"] = round(precision, 3)
        result[f"{prefix}ribosome_recall"] = round(recall, 3)
        if name == "2d":
            result["ribosome_counts"] = {"picks": n_picks, "true": n_true}
    result["ribosome_precision"] = result.pop("ribosome_precision", None)
    result["ribosome_recall"] = result.pop("ribosome_recall", None)
    result["merge_threshold"] = thresholds
    # Consensus of two "annotators" (exact and hurried masks) for each feature.
    if settings["perturbed"]:
        consensus = {}
        for f in FEATURES:
            mean, sd = consensus_maps([outputs["2d"][f], outputs["perturbed"][f]])
            t = thresholds.get("2d", 0.5)
            consensus[f] = {
                "dice_mean_map": round(dice(mean >= t, truth_b[f]), 3),
                "sd_on_errors": round(float(sd[(mean >= t) != truth_b[f]].mean()), 3),
                "sd_on_correct": round(float(sd[(mean >= t) == truth_b[f]].mean()), 3),
            }
        result["consensus"] = consensus
    _overlay(vol_b, merged_b, out_dir / "tomoseg_simulated_overlay.png")
    result["simulation"] = {
        "shape": list(shape),
        "voxel_size": voxel,
        "snr": settings["snr"],
        "tilt_range": 60,
        "ctf_mtf": True,
    }
    return result


def _ribosome_class(particles) -> int:
    names = particles.class_names or {}
    for key, name in names.items():
        if name in ("4v4r", "ribosome", "ribosome_like", "6qzp"):
            return int(key)
    return 0


def _overlay(volume, labels, path, *, extra=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = volume.shape[0] // 2
    figure, axes = plt.subplots(1, 2 if extra is None else 3, figsize=(12, 5))
    axes[0].imshow(volume[z], cmap="gray")
    axes[0].set_title("slice")
    axes[1].imshow(volume[z], cmap="gray")
    axes[1].imshow(np.ma.masked_equal(labels[z], 0), cmap="tab10", alpha=0.5, vmin=0, vmax=9)
    axes[1].set_title("segmentation")
    if extra is not None:
        axes[2].imshow(volume[z], cmap="gray")
        axes[2].imshow(np.ma.masked_equal(extra[z], 0), cmap="autumn", alpha=0.5)
        axes[2].set_title("reference mask")
    for ax in axes:
        ax.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def derive_mt_mask(volume: np.ndarray) -> tuple[np.ndarray, dict]:
    """Microtubule wall mask of a real tomogram holding one straight microtubule.

    The volume (dense = bright) is smoothed (Gaussian σ = 2 voxels); the brightest 5 % of
    voxels are fitted by a 3-D line (PCA) — the tube axis. The mean smoothed intensity as a
    function of the distance r from the axis peaks at the wall radius r_w; the mask is the
    shell |r − r_w| ≤ 3 voxels (≈ the 5 nm wall widened by the reconstruction's blur).
    """
    smooth = ndi.gaussian_filter(volume.astype(np.float32), 2.0)
    points = np.argwhere(smooth >= np.quantile(smooth, 0.95)).astype(float)
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    axis = vt[0]
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij"), -1)
    offset = grid - centre
    radial = offset - (offset @ axis)[..., None] * axis
    distance = np.linalg.norm(radial, axis=-1)
    bins = np.arange(0, 20)
    profile = ndi.mean(smooth, np.digitize(distance, bins), index=np.arange(1, len(bins)))
    wall = float(bins[int(np.argmax(profile[4:])) + 4])  # skip the lumen (r < 4)
    mask = np.abs(distance - wall) <= 3.0
    return mask, {"axis": axis.round(3).tolist(), "wall_radius_voxels": wall}


def run_real(settings, data_dir: Path, out_dir: Path) -> dict:
    from cryoml.io import read_tiff
    from cryoml.metrics import dice
    from cryoml.tomoseg import apply_network, sample_boxes

    train_image = read_tiff(data_dir / "13pf_MT.tif")
    test_image = read_tiff(data_dir / "14pf_MT.tif")
    voxel = float(train_image.voxel_size)
    vol_a, record = prepare(np.asarray(train_image.data, np.float32), voxel)
    vol_b, _ = prepare(np.asarray(test_image.data, np.float32), voxel)
    mask_a, info_a = derive_mt_mask(np.asarray(train_image.data))
    mask_b, info_b = derive_mt_mask(np.asarray(test_image.data))
    tile = 48  # the volumes are 84–94 voxels wide: 64-voxel negatives free of the tube do not fit
    z_mid = slice(vol_a.shape[0] // 2 - 6, vol_a.shape[0] // 2 + 6)
    painted = np.zeros_like(mask_a)
    painted[z_mid] = mask_a[z_mid]  # paint only on central slices, where the tube is obvious
    positives, _ = sample_boxes(painted, 10, 0, tile_size=tile, random_state=0)
    # Negatives: tiles holding none of the tube (off-axis corners and the slabs above and
    # below it), anywhere in the volume.
    _, negatives = sample_boxes(mask_a, 1, 100, tile_size=tile, random_state=0)
    local = dict(settings, copies=max(1, round(len(negatives) / 10)))
    segmenter, _ = train(
        vol_a,
        positives,
        tile_masks(mask_a, positives, tile),
        negatives,
        "microtubule",
        local,
        voxel=voxel,
        record=record,
        tile_size=tile,
    )
    output = apply_network(vol_b, segmenter, voxel_size=voxel, progress=False)
    scores = {t: dice(output >= t, mask_b) for t in (0.3, 0.5, 0.8, 1.0)}
    output_a = apply_network(vol_a, segmenter, voxel_size=voxel, progress=False)
    threshold = max(scores, key=lambda t: dice(output_a >= t, mask_a))
    _overlay(
        vol_b,
        (output >= threshold).astype(np.uint8),
        out_dir / "tomoseg_real_mt_overlay.png",
        extra=mask_b.astype(np.uint8),
    )
    return {
        "real_mt_dice": round(scores[threshold], 3),
        "real_mt": {
            "threshold": threshold,
            "mask": info_b,
            "train_mask": info_a,
            "n_negatives": len(negatives),
            "dice_by_threshold": {str(k): round(v, 3) for k, v in scores.items()},
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small nets, few epochs (CPU)")
    parser.add_argument("--real-only", action="store_true", help="only the real-data check")
    parser.add_argument(
        "--perturbed",
        action="store_true",
        help="in quick mode too: hurried-annotator masks and the consensus of two annotators",
    )
    args = parser.parse_args(argv)
    from cryoml._testing import project_root, reference_data

    out_dir = project_root() / "outputs" / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        settings = {
            "shape": (64, 256, 256),
            "snr": 0.1,
            "filters": 12,
            "epochs": 16,
            "copies": 5,
            "k": 2,
            "recipe": "eman2",
            "learning_rate": 3e-4,
            "perturbed": args.perturbed,
            "2p5d": True,
        }
    else:
        settings = {
            "shape": (96, 384, 384),
            "snr": 0.1,
            "filters": 40,
            "epochs": 20,
            "copies": 10,
            "k": 2,
            "recipe": "eman2",
            "learning_rate": 3e-4,
            "perturbed": True,
            "2p5d": True,
        }
    start = time.perf_counter()
    result = {} if args.real_only else run_simulated(settings, out_dir)
    (out_dir / "tomoseg_accuracy_partial.json").write_text(json.dumps(result, indent=1))
    data = reference_data()
    if data is not None and (data / "tomograms" / "13pf_MT.tif").is_file():
        result.update(run_real(settings, data / "tomograms", out_dir))
    else:
        result["real_mt_dice"] = None
    result["settings"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
    result["mode"] = "quick" if args.quick else "full"
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["hardware"] = f"{os.cpu_count()} CPU cores"
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
