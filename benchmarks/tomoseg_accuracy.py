"""TomoSeg accuracy on simulated cellular tomograms and on a real microtubule tomogram.

Protocol (issue 20). Two independent simulated tomograms (``simulate_cell_tomogram``, SNR 0.1
per projection, ±60° tilts, CTF + MTF). On tomogram A a simulated user boxes, per feature
(membrane, microtubule, ribosome), 10 positive tiles on what they can see (masks painted from
the *visible* truth: see ``CellTomogram.visible``) and 100 negatives, a third of them on the
other features (membranes, microtubules, ribosomes, gold, carbon) and the rest free of any
feature. One network per feature is trained (round 0); then, in up to two correction rounds,
the user boxes the 10 largest false-positive blobs of each network's output on tomogram A
(never B) as new negatives and the network trains on (``TomoSegmenter.add_corrections``).
After each round the three outputs are merged (argmax over [threshold, nets]) with the merge
threshold chosen on tomogram A, and scored on tomogram B: Dice against the full truth and
against the visible truth, ribosome picking precision / recall (a pick is right within half a
ribosome diameter), and the microtubule network's mean response on membranes relative to its
response on microtubules. Each architecture is run over several training seeds; the JSON gives
every seed, the mean and the worst.

Also: a real-data check — a microtubule network trained on 13pf_MT.tif, applied to 14pf_MT.tif,
Dice against a mask derived from the volume itself (see ``derive_mt_mask``), per architecture.

Besides the protocol's figures, every round records (chosen on tomogram A only, scored on B):
the threshold that maximises each feature's own Dice (``feature_thresholds``) and the merged Dice
with those per-feature cuts (``dice_visible_feature_thresholds``); the ribosome picking cut and
least component mass that maximise F1 (``ribosome_picking_tuned``, chosen by
``cryoml.tomoseg.calibrate_extraction``); where the merged labels miss
(``dice_visible_by_depth``: Dice per third of Z, and the share of missed and false voxels
outside the middle third); the share of each membrane's and microtubule's truth found per band
of surface tilt (``recall_by_wall_angle``: normal 30–45°, 45–60°, 60–90° from Z, and inside /
outside the true single-axis missing wedge); the merged Dice (visible) of the other choice of
smoothing along Z (``other_smoothing``: the raw slice-by-slice output where the architecture's
default smooths it — the U-Net's 40 Å —, 40 Å where it does not — the paper network); and
``timings`` (seconds of training, corrections, application and scoring).

Scores use each network's output as :func:`cryoml.tomoseg.apply_network` gives it by default
(``smooth_z`` in ``settings``): the U-Net's smoothed along Z by 40 Å, the paper network's raw.

Prints one JSON object; PNGs go to outputs/benchmarks/.

    python benchmarks/tomoseg_accuracy.py --quick                # CPU, the notebook's sizes
    KERAS_BACKEND=jax python benchmarks/tomoseg_accuracy.py      # full: 96×384×384, 3 seeds
    ... --architectures unet --seeds 0 1 2 --rounds 2 --cells cells.npz  # pieces, in parallel
    ... --architectures unet --set n_neighbours=2 --set epochs=120 --tag n2e120  # a variant

``--set KEY=VALUE`` (repeatable) overrides a setting for this run only and is recorded under
``settings`` (with ``overrides``): network and training keys (``epochs``, ``filters``,
``learning_rate``, ``batch_size``, ``depth``, ``n_neighbours`` — 2.5D, the slice and k slices
above and below as channels —, ``patience``, ``validation_fraction``, ``kernel_size``, ``copies``)
apply to every architecture of the run, or to one feature as ``microtubule.n_neighbours=3``;
``correction_epochs``, ``correction_learning_rate`` (default: the training rate) and the
simulated user's ``positives`` / ``negatives`` (the protocol's 10 and 100; changing them is
exploration, flagged ``protocol_changed``) apply to the run. ``--tag`` goes into the PNG names
(and the default JSON name) so that parallel runs keep their own files. ``--smoke`` keeps every
override's structure but cuts epochs, filters and copies down.
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
DISTRACTORS = ("membrane", "microtubule", "ribosome", "complex", "gold", "carbon")
RIBOSOME_DIAMETER_A = 250.0
# Cuts tried on tomogram A. The U-Net's scaled output is 2 × its probability, so 0.05–1.9
# spans probabilities 0.025–0.95 (sessions ≤ 13 tried 0.3–1.5 only).
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 1.8, 1.9)
OTHER_SMOOTH_Z = 40.0  # Å: the U-Net's default, tried on the paper network too
PICK_THRESHOLDS = (0.5, 0.8, 1.0, 1.2, 1.5)
PICK_MIN_MASS = (20, 200, 500, 1000, 2000)  # voxels; a ribosome's label: ~3,400 at 10 Å
PROTOCOL = {"positives": 10, "negatives": 100}
# --set keys: of the networks (per architecture, or per feature as FEATURE.KEY) and of the run.
ARCH_KEYS = {"epochs": int, "filters": int, "learning_rate": float, "batch_size": int,
             "depth": int, "n_neighbours": int, "patience": int, "validation_fraction": float,
             "kernel_size": int, "copies": int}
RUN_KEYS = {"correction_epochs": int, "correction_learning_rate": float, "positives": int,
            "negatives": int}


def prepare(volume: np.ndarray, voxel_size: float):
    from cryoml.preprocess import preprocess

    return preprocess(
        volume, voxel_size=voxel_size, lowpass=3 * voxel_size, highpass=4000.0, clamp_sd=3.0
    )


def tile_masks(mask_volume: np.ndarray, centres: np.ndarray, tile: int) -> np.ndarray:
    half = tile // 2
    return np.stack(
        [
            mask_volume[z, y - half : y - half + tile, x - half : x - half + tile]
            for z, y, x in centres
        ]
    ).astype(np.float32)


def user_boxes(cell, feature: str, *, tile: int, rng: np.random.Generator,
               n_positive: int = 10, n_negative: int = 100):
    """Positives on the visible feature and negatives, a third of them on other features
    (the protocol: 10 and 100)."""
    from cryoml.tomoseg import sample_boxes

    visible = cell.visible[feature]
    n_other = n_negative // 3
    positives, free = sample_boxes(visible, n_positive, n_negative - n_other, tile_size=tile,
                                   random_state=rng)
    others = np.zeros_like(visible)
    for name in DISTRACTORS:
        if name != feature and name in cell.labels:
            others |= cell.labels[name]
    # Centred on another feature, with at most a trace of this one in the tile.
    own = ndi.uniform_filter(cell.labels[feature].astype(np.float32), size=(1, tile, tile))
    half = tile // 2
    inside = np.zeros(visible.shape, bool)
    inside[:, half : visible.shape[1] - half + 1, half : visible.shape[2] - half + 1] = True
    candidates = np.argwhere(others & inside & (own < 0.002))
    pick = rng.choice(len(candidates), size=n_other, replace=len(candidates) < n_other)
    return positives, np.concatenate([free, candidates[pick]])


def best_threshold(outputs, truths) -> tuple[float, float]:
    """The merge threshold with the best mean Dice, and that Dice."""
    from cryoml.metrics import dice
    from cryoml.tomoseg import merge_segmentations

    best, best_t = -1.0, 1.0
    for threshold in THRESHOLDS:
        labels, _ = merge_segmentations(outputs, threshold=threshold)
        score = np.mean([dice(labels == i + 1, t) for i, t in enumerate(truths)])
        if score > best:
            best, best_t = score, threshold
    return best_t, float(best)


def feature_threshold(output, truth) -> float:
    """The cut with the best Dice of ``output >= cut`` against ``truth`` (one feature alone)."""
    from cryoml.metrics import dice

    scores = {t: dice(output >= t, truth) for t in THRESHOLDS}
    return max(scores, key=scores.get)


def ribosome_picking(output, truth_centres, voxel, threshold, min_mass=20):
    from cryoml.metrics import match_points
    from cryoml.tomoseg import extract_particles

    diameter = RIBOSOME_DIAMETER_A / voxel
    edge = 0.25 * diameter
    picks = extract_particles(
        output,
        box_size=round(diameter),
        threshold=threshold,
        min_mass=min_mass,
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


def tuned_picking(output_a, centres_a, output_b, centres_b, voxel) -> dict:
    """Ribosome picking with the cut and least mass that maximise F1 on A, scored on B.

    The choice is :func:`cryoml.tomoseg.calibrate_extraction` with :func:`ribosome_picking`'s
    settings (box = one diameter, peaks half a diameter apart, a quarter diameter from the
    faces, right within half a diameter) over ``PICK_THRESHOLDS`` × ``PICK_MIN_MASS``.
    """
    from cryoml.tomoseg import calibrate_extraction

    diameter = RIBOSOME_DIAMETER_A / voxel
    choice = calibrate_extraction(
        output_a, centres_a, box_size=round(diameter), radius=0.5 * diameter,
        thresholds=PICK_THRESHOLDS, min_masses=PICK_MIN_MASS, min_distance=0.5 * diameter,
        edge=0.25 * diameter,
    )
    p, r, n_picks, n_true = ribosome_picking(output_b, centres_b, voxel, choice.threshold,
                                             choice.min_mass)
    return {"threshold": choice.threshold, "min_mass": choice.min_mass,
            "f1_a": round(choice.fbeta, 3), "precision": round(p, 3), "recall": round(r, 3),
            "picks": n_picks, "true": n_true}


def simulate_cells(settings, path: Path | None):
    """The two tomograms (A: training, B: test), simulated once and kept in ``path``."""
    from types import SimpleNamespace

    from cryoml.simulate import simulate_cell_tomogram

    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            cells = []
            for key in ("a", "b"):
                cells.append(SimpleNamespace(
                    volume=f[f"{key}_volume"], voxel=float(f["voxel"]),
                    labels={n: f[f"{key}_label_{n}"] for n in DISTRACTORS},
                    visible={n: f[f"{key}_visible_{n}"] for n in FEATURES},
                    ribosomes=f[f"{key}_ribosomes"]))
        if cells[0].volume.shape != tuple(settings["shape"]):
            raise SystemExit(f"{path} holds tomograms of shape {cells[0].volume.shape}, not the "
                             f"{tuple(settings['shape'])} of this mode: simulate them again "
                             "(another --cells path)")
        return cells
    cells = []
    arrays = {}
    for key, seed in (("a", 101), ("b", 202)):
        cell = simulate_cell_tomogram(settings["shape"], voxel_size=10.0, snr=settings["snr"],
                                      random_state=seed)
        particles = cell.particles
        ribosomes = particles.centres[particles.classes == _ribosome_class(particles)]
        item = SimpleNamespace(volume=np.asarray(cell.tomogram.data, np.float32),
                               voxel=float(cell.tomogram.voxel_size),
                               labels={n: cell.labels[n] for n in DISTRACTORS},
                               visible={n: cell.visible[n] for n in FEATURES},
                               ribosomes=np.asarray(ribosomes, float))
        cells.append(item)
        arrays.update({f"{key}_volume": item.volume, f"{key}_ribosomes": item.ribosomes,
                       **{f"{key}_label_{n}": v for n, v in item.labels.items()},
                       **{f"{key}_visible_{n}": v for n, v in item.visible.items()}})
    if path is not None:
        arrays["voxel"] = np.float64(cells[0].voxel)
        np.savez_compressed(path, **arrays)
    return cells


def preview_tiles(trainset, copies: int, negatives: int = 6):
    """The unrotated copy of every positive and a few negatives (free ones first, then those
    on other features): the tiles a preview should show, not 16 copies of two positives."""
    from cryoml.tomoseg import TrainingSet

    positive = np.flatnonzero(trainset.is_positive)
    negative = np.flatnonzero(~trainset.is_positive)
    keep = [*positive[:: max(1, int(copies))][:16 - negatives], *negative[: negatives // 2],
            *negative[len(negative) - negatives // 2 :]]
    full = None if trainset.full_labels is None else trainset.full_labels[keep]
    return TrainingSet(tiles=trainset.tiles[keep], labels=trainset.labels[keep],
                       is_positive=trainset.is_positive[keep], feature=trainset.feature,
                       voxel_size=trainset.voxel_size, preprocess=trainset.preprocess,
                       n_neighbours=trainset.n_neighbours, full_labels=full)


def network_options(settings, architecture: str, feature: str | None = None) -> dict:
    """The network and training settings of one architecture (and feature), overrides applied."""
    arch = settings["arch"][architecture]
    options = {"copies": settings["copies"], "n_neighbours": 0, "batch_size": None,
               "depth": 3, "patience": None, "validation_fraction": 0.1, "kernel_size": 15}
    options.update({k: v for k, v in arch.items() if k != "features"})
    if feature is not None:
        options.update(arch.get("features", {}).get(feature, {}))
    return options


def make_segmenter(options: dict, feature: str, architecture: str, seed: int):
    from cryoml.tomoseg import TomoSegmenter

    return TomoSegmenter(feature=feature, architecture=architecture, epochs=options["epochs"],
                         n_filters=options["filters"], learning_rate=options["learning_rate"],
                         batch_size=options["batch_size"], depth=options["depth"],
                         kernel_size=options["kernel_size"], patience=options["patience"],
                         validation_fraction=options["validation_fraction"],
                         random_state=seed, progress=False)


def parse_overrides(pairs: list[str]) -> list[tuple[str | None, str, object]]:
    """``KEY=VALUE`` / ``FEATURE.KEY=VALUE`` strings as (feature or None, key, typed value)."""
    parsed = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        feature, _, name = key.strip().rpartition(".")
        feature = feature or None
        kinds = {**ARCH_KEYS, **RUN_KEYS}
        if not sep or name not in kinds:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE with KEY one of "
                             f"{sorted(kinds)} (or FEATURE.KEY for the network keys)")
        if feature is not None and (feature not in FEATURES or name not in ARCH_KEYS):
            raise SystemExit(f"--set {pair!r}: FEATURE.KEY takes a feature of {FEATURES} and "
                             f"a network key of {sorted(ARCH_KEYS)}")
        text = text.strip()
        if name == "patience" and text.lower() == "none":
            value = None
        else:
            try:
                value = kinds[name](float(text)) if kinds[name] is int else kinds[name](text)
            except ValueError:
                raise SystemExit(f"--set {pair!r}: {text!r} is not a number") from None
            if kinds[name] is int and float(text) != value:
                raise SystemExit(f"--set {pair!r}: {name} takes a whole number")
        parsed.append((feature, name, value))
    return parsed


def apply_overrides(settings: dict, overrides, architectures) -> None:
    for feature, name, value in overrides:
        if name in RUN_KEYS:
            settings[name] = value
        elif name == "copies" and feature is None:
            settings["copies"] = value
        else:
            for architecture in architectures:
                arch = settings["arch"][architecture]
                target = arch if feature is None else (
                    arch.setdefault("features", {}).setdefault(feature, {}))
                target[name] = value


def train_feature(vol, record, cell, feature, settings, architecture, seed, voxel):
    from cryoml.tomoseg import build_training_set

    tile = 64
    options = network_options(settings, architecture, feature)
    rng = np.random.default_rng(1000 * seed + FEATURES.index(feature))
    positives, negatives = user_boxes(cell, feature, tile=tile, rng=rng,
                                      n_positive=settings["positives"],
                                      n_negative=settings["negatives"])
    masks = tile_masks(cell.visible[feature], positives, tile)
    trainset = build_training_set(vol, positives, masks, negatives, feature=feature,
                                  voxel_size=voxel, preprocess=record,
                                  n_copies=options["copies"],
                                  n_neighbours=options["n_neighbours"], random_state=seed)
    start = settings.get("start_from") or {}
    if architecture == "unet" and feature in start and options["n_neighbours"] == 0:
        # Notebook 01's QUICK path: adapt a shipped network trained on another simulated
        # tomogram (data/make_example_networks.py) to these tiles, in small steps.
        from cryoml.tomoseg import TomoSegmenter

        segmenter = TomoSegmenter.load(start[feature], progress=False)
        segmenter.epochs, segmenter.learning_rate = settings["start_epochs"], 3e-4
        segmenter.random_state = seed
        return segmenter.fit(trainset, continue_training=True), trainset
    segmenter = make_segmenter(options, feature, architecture, seed)
    return segmenter.fit(trainset), trainset


def dice_by_depth(labels, cell, dice) -> dict:
    """Where the merged labels miss: Dice (visible) in the top, middle and bottom third of Z.

    Also, per membrane and microtubule, the share of the missed visible voxels (false
    negatives) and of the false positives that lie in the outer two thirds of Z, where the
    vesicles' poles and the tubes' upper and lower walls are.
    """
    n_z = labels.shape[0]
    thirds = {"top": slice(0, n_z // 3), "middle": slice(n_z // 3, 2 * n_z // 3),
              "bottom": slice(2 * n_z // 3, n_z)}
    result: dict = {}
    for i, feature in enumerate(FEATURES):
        found, truth = labels == i + 1, cell.visible[feature]
        entry = {name: round(dice(found[z], truth[z]), 3) for name, z in thirds.items()}
        if feature != "ribosome":
            middle = thirds["middle"]
            missed, extra = truth & ~found, found & ~truth
            entry["missed_outside_middle"] = round(
                1 - float(missed[middle].sum()) / max(1, int(missed.sum())), 3)
            entry["false_outside_middle"] = round(
                1 - float(extra[middle].sum()) / max(1, int(extra.sum())), 3)
            entry["missed_fraction"] = round(float(missed.sum()) / max(1, int(truth.sum())), 3)
            entry["false_fraction"] = round(float(extra.sum()) / max(1, int(truth.sum())), 3)
        result[feature] = entry
    return result


WALL_ANGLE_BANDS = ((30, 45), (45, 60), (60, 91))  # degrees between surface normal and Z
TILT_RANGE = 60.0  # the simulated tilt series: ±60°, tilt axis Y


def wall_normals(mask: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Unit surface normals (|n_z|, |n_y|, |n_x|) of each labelled voxel: (where, (N, 3)).

    The normal is the dominant eigenvector of the structure tensor of the smoothed label
    (σ = 1 voxel, integrated over 2), which a sheet or a tube wall a few voxels thick
    defines well. Checked against the simulator's own rule on the QUICK tomogram B: an angle
    of more than 30° from Z agrees with its visible truth on 98 % (microtubule) and 99 %
    (membrane) of the labelled voxels.
    """
    smooth = ndi.gaussian_filter(mask.astype(np.float32), 1.0)
    gradient = np.gradient(smooth)
    where = np.nonzero(mask)
    tensor = np.empty((len(where[0]), 3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            tensor[:, i, j] = tensor[:, j, i] = ndi.gaussian_filter(
                gradient[i] * gradient[j], 2.0)[where]
    _, vectors = np.linalg.eigh(tensor)
    return where, np.abs(vectors[:, :, -1])


def recall_by_wall_angle(labels: np.ndarray, cell, dice) -> dict:
    """Share of each sheet-like feature's truth found, per band of surface tilt and wedge.

    Bands of the angle between the surface normal and the beam (Z): tells whether a miss lies
    on faces seen edge-on (60–90°) or on the steeper faces near the wedge's reach (30–60°),
    which the visible truth still counts. ``in_wedge`` / ``outside_wedge``: the visible
    truth's voxels whose normal lies inside / outside the true single-axis missing wedge
    (tilt axis Y: |n_x| < tan 30° |n_z| for ±60°). The visible truth's cone rule counts the
    first as visible although the tilt series holds none of their Fourier energy — faces
    tilted about the tilt axis, and walls of tubes that run across it. ``dice_outside_wedge``:
    Dice against the visible truth less those voxels.
    """
    result = {}
    tan = np.tan(np.radians(90.0 - TILT_RANGE))
    for i, feature in enumerate(FEATURES[:2]):
        cache = getattr(cell, "_wall_normals", {})
        if feature not in cache:
            cache[feature] = wall_normals(cell.labels[feature])
            cell._wall_normals = cache
        where, normal = cache[feature]
        found = (labels == i + 1)[where]
        angles = np.degrees(np.arccos(np.clip(normal[:, 0], 0, 1)))
        entry = {}
        for lo, hi in WALL_ANGLE_BANDS:
            band = (angles >= lo) & (angles < hi)
            entry[f"{lo}-{min(hi, 90)}"] = {
                "recall": round(float(found[band].sum()) / max(1, int(band.sum())), 3),
                "share_of_truth": round(float(band.mean()), 3)}
        visible = cell.visible[feature][where]
        in_wedge = visible & (normal[:, 2] < tan * normal[:, 0])
        for name, part in (("in_wedge", in_wedge), ("outside_wedge", visible & ~in_wedge)):
            entry[name] = {
                "recall": round(float(found[part].sum()) / max(1, int(part.sum())), 3),
                "share_of_visible": round(float(part.sum()) / max(1, int(visible.sum())), 3)}
        # Dice against the visible truth less its voxels inside the single-axis wedge.
        hidden = np.zeros(labels.shape, bool)
        hidden[tuple(w[in_wedge] for w in where)] = True
        entry["dice_outside_wedge"] = round(
            dice(labels == i + 1, cell.visible[feature] & ~hidden), 3)
        result[feature] = entry
    return result


def smoothed_output(raw: np.ndarray, smooth_z: float, voxel: float) -> np.ndarray:
    """``raw`` smoothed along Z by ``smooth_z`` Å as ``apply_network`` would (itself at 0)."""
    from cryoml.tomoseg import smooth_along_z

    return smooth_along_z(raw, smooth_z, voxel_size=voxel) if smooth_z > 0 else raw


def merged_dice(outputs_a, outputs_b, cell_a, cell_b) -> dict:
    """Merged Dice (visible) on B, with the common and with per-feature cuts chosen on A."""
    from cryoml.metrics import dice
    from cryoml.tomoseg import merge_segmentations

    threshold, _ = best_threshold([outputs_a[f] for f in FEATURES],
                                  [cell_a.visible[f] for f in FEATURES])
    labels, _ = merge_segmentations([outputs_b[f] for f in FEATURES], threshold=threshold)
    cuts = {f: feature_threshold(outputs_a[f], cell_a.visible[f]) for f in FEATURES}
    per_cut, _ = merge_segmentations([outputs_b[f] / np.float32(cuts[f]) for f in FEATURES],
                                     threshold=1.0)
    return {
        "merge_threshold": threshold,
        "dice_visible": {f: round(dice(labels == i + 1, cell_b.visible[f]), 3)
                         for i, f in enumerate(FEATURES)},
        "feature_thresholds": cuts,
        "dice_visible_feature_thresholds": {
            f: round(dice(per_cut == i + 1, cell_b.visible[f]), 3)
            for i, f in enumerate(FEATURES)},
    }


def score_round(outputs_a, outputs_b, cell_a, cell_b, voxel):
    from cryoml.metrics import dice
    from cryoml.tomoseg import merge_segmentations

    threshold, dice_a = best_threshold([outputs_a[f] for f in FEATURES],
                                       [cell_a.visible[f] for f in FEATURES])
    labels, _ = merge_segmentations([outputs_b[f] for f in FEATURES], names=FEATURES,
                                    threshold=threshold)
    result = {
        "merge_threshold": threshold,
        "merge_dice_visible_a": round(dice_a, 3),
        "dice": {f: round(dice(labels == i + 1, cell_b.labels[f]), 3)
                 for i, f in enumerate(FEATURES)},
        "dice_visible": {f: round(dice(labels == i + 1, cell_b.visible[f]), 3)
                         for i, f in enumerate(FEATURES)},
    }
    result["dice_visible_by_depth"] = dice_by_depth(labels, cell_b, dice)
    result["recall_by_wall_angle"] = recall_by_wall_angle(labels, cell_b, dice)
    precision, recall, n_picks, n_true = ribosome_picking(outputs_b["ribosome"], cell_b.ribosomes,
                                                          voxel, threshold)
    result.update(ribosome_precision=round(precision, 3), ribosome_recall=round(recall, 3),
                  ribosome_counts={"picks": n_picks, "true": n_true})
    # Per-feature cuts, each chosen on A for that feature's own Dice; merged with them
    # (every output divided by its cut, then the argmax over [1, outputs]).
    cuts = {f: feature_threshold(outputs_a[f], cell_a.visible[f]) for f in FEATURES}
    per_cut, _ = merge_segmentations([outputs_b[f] / np.float32(cuts[f]) for f in FEATURES],
                                     names=FEATURES, threshold=1.0)
    result["feature_thresholds"] = cuts
    result["dice_visible_feature_thresholds"] = {
        f: round(dice(per_cut == i + 1, cell_b.visible[f]), 3) for i, f in enumerate(FEATURES)}
    result["ribosome_picking_tuned"] = tuned_picking(outputs_a["ribosome"], cell_a.ribosomes,
                                                     outputs_b["ribosome"], cell_b.ribosomes,
                                                     voxel)
    mt = outputs_b["microtubule"]
    on_membrane = cell_b.visible["membrane"] & ~ndi.binary_dilation(cell_b.labels["microtubule"],
                                                                    iterations=2)
    on_mt = cell_b.visible["microtubule"]
    if on_mt.any() and on_membrane.any():
        result["mt_response_on_membrane"] = round(float(mt[on_membrane].mean())
                                                  / max(float(mt[on_mt].mean()), 1e-6), 3)
    return result, labels


def run_seed(cells, settings, architecture, seed, out_dir: Path, rounds: int,
             save=None, *, tag: str = "", figures: bool | None = None) -> list[dict]:
    """Train, correct and score one architecture with one seed; PNGs when ``figures``
    (default: seed 0), named ``tomoseg_{architecture}[_{tag}]_...``."""
    from cryoml.tomoseg import (
        apply_network,
        largest_blobs,
        plot_history,
        preview_grid,
        save_figure,
    )

    cell_a, cell_b = cells
    voxel = cell_a.voxel
    figures = seed == 0 if figures is None else figures
    name = f"tomoseg_{architecture}_{tag}" if tag else f"tomoseg_{architecture}"
    clock = time.perf_counter()
    (vol_a, record), (vol_b, _) = (prepare(c.volume, voxel) for c in cells)
    prepare_s = round(time.perf_counter() - clock, 1)
    segmenters = {}
    outputs_a, outputs_b = {}, {}
    per_round = []
    train_s = {}
    for feature in FEATURES:
        start = time.perf_counter()
        segmenters[feature], trainset = train_feature(vol_a, record, cell_a, feature, settings,
                                                      architecture, seed, voxel)
        train_s[feature] = round(time.perf_counter() - start, 1)
        print(f"  {architecture} {tag} seed {seed} {feature}: {len(trainset)} tiles, "
              f"{train_s[feature]:.0f} s", file=sys.stderr)
        if figures:
            copies = network_options(settings, architecture, feature)["copies"]
            save_figure(preview_grid(preview_tiles(trainset, copies), segmenters[feature],
                                     max_tiles=16),
                        out_dir / f"{name}_preview_{feature}.png", overwrite=True)
            save_figure(plot_history(segmenters[feature].history_, title=feature),
                        out_dir / f"{name}_history_{feature}.png", overwrite=True)
    for round_ in range(rounds + 1):
        timings: dict = {"prepare_s": prepare_s, "train_s": train_s} if round_ == 0 else {}
        if round_ > 0:
            timings["corrections_s"] = {}
            for feature in FEATURES:
                start = time.perf_counter()
                boxes = largest_blobs(outputs_a[feature], tile_size=64,
                                      exclude=cell_a.labels[feature])
                if settings.get("correction_learning_rate") is not None:
                    segmenters[feature].learning_rate = settings["correction_learning_rate"]
                if len(boxes):
                    segmenters[feature].add_corrections(vol_a, boxes,
                                                        epochs=settings["correction_epochs"])
                timings["corrections_s"][feature] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        raw_a, raw_b = {}, {}
        for feature in FEATURES:
            # The raw output once; the default (smoothed or not) and the other choice from it.
            raw_a[feature] = apply_network(vol_a, segmenters[feature], voxel_size=voxel,
                                           smooth_z=0, progress=False)
            raw_b[feature] = apply_network(vol_b, segmenters[feature], voxel_size=voxel,
                                           smooth_z=0, progress=False)
        timings["apply_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        sigma = {f: segmenters[f].smooth_z_angstrom for f in FEATURES}
        outputs_a = {f: smoothed_output(raw_a[f], sigma[f], voxel) for f in FEATURES}
        outputs_b = {f: smoothed_output(raw_b[f], sigma[f], voxel) for f in FEATURES}
        other = {f: 0.0 if sigma[f] > 0 else OTHER_SMOOTH_Z for f in FEATURES}
        other_a = {f: smoothed_output(raw_a[f], other[f], voxel) for f in FEATURES}
        other_b = {f: smoothed_output(raw_b[f], other[f], voxel) for f in FEATURES}
        timings["smooth_s"] = round(time.perf_counter() - start, 1)
        del raw_a, raw_b
        start = time.perf_counter()
        result, labels = score_round(outputs_a, outputs_b, cell_a, cell_b, voxel)
        result["smooth_z"] = sigma
        if round_ == 0:  # fits from new weights that collapsed and were trained again
            result["restarts_used"] = {f: int(getattr(segmenters[f], "restarts_used_", 0))
                                       for f in FEATURES}
        result["other_smoothing"] = {"smooth_z": other,
                                     **merged_dice(other_a, other_b, cell_a, cell_b)}
        del other_a, other_b
        timings["score_s"] = round(time.perf_counter() - start, 1)
        result.update(architecture=architecture, round=round_, seed=seed, timings=timings)
        if tag:
            result["tag"] = tag
        per_round.append(result)
        if save is not None:
            save(result)
        print(f"  {architecture} {tag} seed {seed} round {round_}: {json.dumps(result)}",
              file=sys.stderr)
        if figures:
            _overlay_maps(vol_b, labels, outputs_b, cell_b,
                          out_dir / f"{name}_round{round_}_overlay.png")
    return per_round


def summarise(runs: list[dict]) -> dict:
    """Mean and worst over seeds of every figure, per architecture and round."""
    table: dict = {}
    for run in runs:
        table.setdefault(run["architecture"], {}).setdefault(str(run["round"]), []).append(run)
    summary: dict = {}
    for arch, rounds in table.items():
        for round_, items in rounds.items():
            entry = {"architecture": arch, "round": int(round_),
                     "seeds": [r["seed"] for r in items]}
            for key in ("dice", "dice_visible", "dice_visible_feature_thresholds"):
                if not all(key in r for r in items):
                    continue
                entry[key] = {
                    f: {"mean": round(float(np.mean([r[key][f] for r in items])), 3),
                        "worst": round(float(np.min([r[key][f] for r in items])), 3)}
                    for f in FEATURES}
            if all("other_smoothing" in r for r in items):
                other = [r["other_smoothing"] for r in items]
                entry["other_smoothing"] = {"smooth_z": other[0]["smooth_z"], **{
                    key: {f: {"mean": round(float(np.mean([o[key][f] for o in other])), 3),
                              "worst": round(float(np.min([o[key][f] for o in other])), 3)}
                          for f in FEATURES}
                    for key in ("dice_visible", "dice_visible_feature_thresholds")}}
            for key in ("ribosome_precision", "ribosome_recall"):
                values = [r[key] for r in items]
                entry[key] = {"mean": round(float(np.mean(values)), 3),
                              "worst": round(float(np.min(values)), 3)}
            if all("ribosome_picking_tuned" in r for r in items):
                for key in ("precision", "recall"):
                    values = [r["ribosome_picking_tuned"][key] for r in items]
                    entry[f"ribosome_{key}_tuned"] = {"mean": round(float(np.mean(values)), 3),
                                                      "worst": round(float(np.min(values)), 3)}
            values = [r["mt_response_on_membrane"] for r in items if "mt_response_on_membrane" in r]
            if values:
                entry["mt_response_on_membrane"] = {"mean": round(float(np.mean(values)), 3),
                                                    "worst": round(float(np.max(values)), 3)}
            summary.setdefault(arch, {})[round_] = entry
    return summary


def _overlay_maps(volume, labels, outputs, cell, path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    z = volume.shape[0] // 2
    colours = ["#1f77b4", "#2ca02c", "#d62728"]
    figure, axes = plt.subplots(1, 5, figsize=(25, 5.4))
    axes[0].imshow(volume[z], cmap="gray")
    axes[0].set_title("tomogram B, central slice")
    axes[1].imshow(volume[z], cmap="gray")
    axes[1].imshow(np.ma.masked_equal(labels[z], 0), cmap=ListedColormap(colours), alpha=0.6,
                   vmin=1, vmax=3, interpolation="nearest")
    axes[1].set_title("merged labels")
    handles = [Patch(color=c, label=f) for c, f in zip(colours, FEATURES, strict=True)]
    axes[1].legend(handles=handles, loc="lower right", fontsize=9)
    for ax, feature in zip(axes[2:], FEATURES, strict=False):
        shown = ax.imshow(outputs[feature][z], cmap="magma", vmin=0, vmax=2)
        ax.contour(cell.visible[feature][z], levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set_title(f"{feature} output (cyan: visible truth)")
        figure.colorbar(shown, ax=ax, fraction=0.046, label="scaled output (1 = cut)")
    for ax in axes:
        ax.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=70)
    plt.close(figure)


def _ribosome_class(particles) -> int:
    names = particles.class_names or {}
    for key, name in names.items():
        if name in ("4v4r", "ribosome", "ribosome_like", "6qzp"):
            return int(key)
    return 0


def _overlay(volume, labels, path, *, extra=None):
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


def run_real(settings, data_dir: Path, out_dir: Path, architecture: str, tag: str = "") -> dict:
    from cryoml.io import read_tiff
    from cryoml.metrics import dice
    from cryoml.tomoseg import apply_network, build_training_set, sample_boxes

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
    options = network_options(settings, architecture, "microtubule")
    trainset = build_training_set(vol_a, positives, tile_masks(mask_a, positives, tile), negatives,
                                  feature="microtubule", voxel_size=voxel, preprocess=record,
                                  n_copies=max(1, round(len(negatives) / 10)), tile_size=tile,
                                  n_neighbours=options["n_neighbours"], random_state=0)
    segmenter = make_segmenter(options, "microtubule", architecture, 0).fit(trainset)
    output = apply_network(vol_b, segmenter, voxel_size=voxel, progress=False)
    scores = {t: dice(output >= t, mask_b) for t in THRESHOLDS}
    output_a = apply_network(vol_a, segmenter, voxel_size=voxel, progress=False)
    threshold = max(scores, key=lambda t: dice(output_a >= t, mask_a))
    _overlay(
        vol_b,
        (output >= threshold).astype(np.uint8),
        out_dir / f"tomoseg_{architecture}{'_' + tag if tag else ''}_real_mt_overlay.png",
        extra=mask_b.astype(np.uint8),
    )
    return {
        "dice": round(scores[threshold], 3),
        "threshold": threshold,
        "mask": info_b,
        "train_mask": info_a,
        "n_negatives": len(negatives),
        "dice_by_threshold": {str(k): round(v, 3) for k, v in scores.items()},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the notebook's sizes, on a CPU")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code runs")
    parser.add_argument("--architectures", nargs="+", default=["unet", "paper"])
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="training seeds (default: 0 1 2; quick: 0)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="correction rounds after the first training (default 2; quick 1)")
    parser.add_argument("--cells", type=Path, default=None,
                        help="keep the two simulated tomograms in this .npz (made if absent)")
    parser.add_argument("--real-only", action="store_true", help="only the real-data check")
    parser.add_argument("--no-real", action="store_true", help="skip the real-data check")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the JSON here (after every round, so a cut-off run "
                        "keeps its finished rounds)")
    parser.add_argument("--simulate-only", action="store_true",
                        help="only simulate the two tomograms into --cells")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a setting for this run (repeatable; recorded in the JSON): "
                        + ", ".join(sorted({**ARCH_KEYS, **RUN_KEYS}))
                        + "; FEATURE.KEY for one feature's network")
    parser.add_argument("--start-from-examples", action="store_true",
                        help="U-Net only: start the membrane and ribosome networks from the "
                        "shipped ones in data/networks (trained on another simulated "
                        "tomogram) and train on for 5 epochs at 3e-4, as notebook 01 does in "
                        "QUICK mode; the microtubule network, which is not shipped, starts "
                        "from scratch")
    parser.add_argument("--tag", default="",
                        help="name of this run in the PNG names and the default JSON name "
                        "(outputs/benchmarks/tomoseg_accuracy_TAG.json), so parallel runs keep "
                        "their own files; with a tag, figures are drawn for the first seed")
    args = parser.parse_args(argv)
    import re

    if args.tag and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.tag):
        parser.error(f"--tag {args.tag!r}: use letters, digits, '_', '.' and '-' only")
    overrides = parse_overrides(args.overrides)
    from cryoml._testing import project_root, reference_data

    out_dir = project_root() / "outputs" / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.out is None and args.tag:
        args.out = out_dir / f"tomoseg_accuracy_{args.tag}.json"
    args.quick = args.quick or args.smoke  # smoke = the quick sizes, cut down further
    if args.quick:
        settings = {
            "shape": (80, 192, 192), "snr": 0.1, "copies": 5, "correction_epochs": 8,
            "arch": {"unet": {"filters": 16, "epochs": 30, "learning_rate": 1e-3},
                     "paper": {"filters": 12, "epochs": 16, "learning_rate": 3e-4}},
        }
        seeds, rounds = args.seeds or [0], 1 if args.rounds is None else args.rounds
    else:
        settings = {
            "shape": (96, 384, 384), "snr": 0.1, "copies": 10, "correction_epochs": 20,
            "arch": {"unet": {"filters": 32, "epochs": 60, "learning_rate": 1e-3},
                     "paper": {"filters": 40, "epochs": 20, "learning_rate": 3e-4}},
        }
        seeds, rounds = args.seeds or [0, 1, 2], 2 if args.rounds is None else args.rounds
    settings.update(PROTOCOL)
    apply_overrides(settings, overrides, args.architectures)
    if args.start_from_examples:
        from cryoml.datasets import example_data_dir

        shipped = {f: example_data_dir() / "networks" / f"{f}_unet.keras" for f in FEATURES}
        settings["start_from"] = {f: str(p) for f, p in shipped.items() if p.is_file()}
        settings["start_epochs"] = 5
    if args.smoke:  # checks that the code runs: the structure of every override stays
        settings.update(copies=min(settings["copies"], 2), correction_epochs=1)
        for arch in settings["arch"].values():
            for target in (arch, *arch.get("features", {}).values()):
                for key, cap in (("epochs", 2), ("filters", 4), ("copies", 2)):
                    if key in target:
                        target[key] = min(target[key], cap)
    start = time.perf_counter()
    result: dict = {"runs": []}
    import keras

    result["hardware"] = f"{os.cpu_count()} CPU cores, Keras backend {keras.backend.backend()}"
    result["settings"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
    result["settings"]["overrides"] = list(args.overrides)
    result["settings"]["effective"] = {
        a: {f: network_options(settings, a, f) for f in FEATURES} for a in args.architectures}
    result["protocol_changed"] = any(settings[k] != v for k, v in PROTOCOL.items())
    result["mode"] = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.tag:
        result["tag"] = args.tag

    def save(run=None):
        if run is not None:
            result["runs"].append(run)
            result["summary"] = summarise(result["runs"])
        if args.out is not None:
            result["seconds"] = round(time.perf_counter() - start, 1)
            args.out.write_text(json.dumps(result, indent=1))

    if args.simulate_only:
        simulate_cells(settings, args.cells)
        return 0
    if not args.real_only:
        cells = simulate_cells(settings, args.cells)
        for architecture in args.architectures:
            for seed in seeds:
                try:
                    run_seed(cells, settings, architecture, seed, out_dir, rounds, save=save,
                             tag=args.tag, figures=seed == seeds[0] if args.tag else None)
                except Exception:  # keep the other seeds' results; the log shows the failure
                    import traceback

                    traceback.print_exc()
                    result.setdefault("failed", []).append(f"{architecture} seed {seed}")
                    save()
    data = reference_data()
    if not args.no_real and data is not None and (data / "tomograms" / "13pf_MT.tif").is_file():
        result["real_mt"] = {}
        for architecture in args.architectures:
            result["real_mt"][architecture] = run_real(settings, data / "tomograms", out_dir,
                                                       architecture, args.tag)
            save()
    result["seconds"] = round(time.perf_counter() - start, 1)
    save()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
