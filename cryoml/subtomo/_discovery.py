"""Leave-one-class-out discovery of structures absent from the training data (Xu et al. 2017).

For a class C: train a CNN without C, project the test set onto its linear layer, over-partition
with k-means (k = 100), take the cluster most enriched in C, classify and average inside it
without references (3 classes, 5 iterations), pick the class most enriched in C, align its
average to the true map of C and measure the FSC at 0.5; success when ≤ 7 nm.

The 22 complexes (:data:`XU2017_COMPLEXES`) are chosen from the 26 maps in
``shared/data/structures/maps_10A``:

* left out ``4v4r_30S`` and ``4v4r_50S``: they are the two halves of ``4v4r`` (70S ribosome),
  so not independent structures — a left-out half would be "discovered" through the whole;
* left out ``4v94`` and ``5mrc``: the two largest particles (99th-percentile radius 173 and
  162 Å about the centre of mass), which a 40³ box at 9.2 Å (radius 184 Å, shifts of up to
  ±2 voxels) cuts in many orientations;
* kept the other 22, from 3qm1 (~6 nm) to the 80S ribosomes 6qzp / 4v7r (~30 nm), like the
  paper's mix of small chaperones, proteasomes and ribosomes.

The empty class (noise only) is added as the 23rd class.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from cryoml._errors import CryomlError
from cryoml._validation import check_positive, check_random_state
from cryoml.subtomo._data import open_subtomograms

__all__ = ["XU2017_COMPLEXES", "leave_one_out"]

logger = logging.getLogger(__name__)

XU2017_COMPLEXES = [
    "1bxn", "1f4a", "1qvr", "1s3x", "1u6g", "2cg9", "2uv8", "3cf3", "3d2f", "3gl1", "3h84",
    "3ipm", "3j9i", "3qm1", "4cr2", "4v4r", "4v7r", "6pxm", "6qzp", "6utj", "7n4y", "8tux",
]


def leave_one_out(
    train,
    test,
    left_out: int,
    true_map: np.ndarray,
    *,
    voxel_size: float,
    tilt_range: float | None = 60.0,
    model: str = "dsrf3d",
    classifier_options: dict | None = None,
    k: int = 100,
    n_classes: int = 3,
    n_iterations: int = 5,
    angular_step: float = 25.0,
    lowpass_voxels: float | str = "auto",
    dark_density: bool = True,
    success_nm: float = 7.0,
    min_class_size: int = 10,
    random_state: int | np.random.Generator | None = None,
    progress: bool = False,
    n_jobs: int | None = -1,
) -> dict:
    """One leave-one-class-out discovery run.

    Parameters
    ----------
    train, test : SubtomogramSet or (data, labels) tuple
        Labelled subtomograms (class indices shared by both).
    left_out : int
        Class C removed from training.
    true_map : (n, n, n) ndarray
        The true density of C on the subtomogram grid (dense = positive).
    voxel_size : float
        Å per voxel (for the resolution).
    tilt_range : float or None, default 60
        Tilt range of the subtomograms (for wedge-aware alignment).
    model : {"inception3d", "dsrf3d"}, default "dsrf3d"
    classifier_options : dict, optional
        Passed to :class:`SubtomoClassifier` (``epochs``, ``recipe``, ...).
    k : int, default 100
        k-means clusters (capped at the test-set size).
    n_classes, n_iterations : int, default 3, 5
        Reference-free classification inside the chosen cluster.
    angular_step : float, default 25
        Rotation grid of the alignment, degrees.
    lowpass_voxels : float or "auto", default "auto"
        Alignment band of the classification (see :func:`classify_and_average`); a fixed 3
        reproduces the behaviour before the adaptive band.
    dark_density : bool, default True
        Matter is dark in the subtomograms (averages are negated before the FSC).
    success_nm : float, default 7
        Success threshold on the FSC-0.5 resolution.
    min_class_size : int, default 10
        Fewest subtomograms in the chosen class for a success: the average of one or two
        noisy subtomograms can match the true map by chance, and proves nothing.
    random_state : None, int or Generator
    progress : bool, default False
    n_jobs : int or None, default -1
        Threads for the alignment (-1: every core; None: 1).

    Returns
    -------
    dict
        ``resolution_nm``, ``success``, ``resolution_nm_from_shell_2`` and
        ``success_from_shell_2`` (ignoring a dip in shell 1), ``fsc`` (the curve per shell),
        ``cluster_size``, ``cluster_fraction_C`` (share of the cluster that is C),
        ``cluster_recall_C`` (share of C in the cluster), ``class_size``,
        ``class_fraction_C``, ``cluster_size_stats``, ``seconds`` (split into
        ``seconds_network``: training, features and k-means, and ``seconds_averaging``:
        classification, alignment and FSC), ``fsc_frequencies``
        (cycles per voxel) and ``average`` (the chosen class's average, aligned to the true
        map, matter positive).

    Raises
    ------
    CryomlError
        If ``left_out`` is not a class of the test set.
    """
    from cryoml.metrics import curve_resolution, fsc
    from cryoml.subtomo._averaging import (
        align_to_reference,
        average_aligned,
        classify_and_average,
    )
    from cryoml.subtomo._features import subdivide
    from cryoml.subtomo._training import SubtomoClassifier

    start = time.perf_counter()
    if lowpass_voxels != "auto":  # checked before the network trains, not after
        check_positive(lowpass_voxels, name="lowpass_voxels")
    rng = check_random_state(random_state)
    train_data, train_labels, _ = open_subtomograms(*_pair(train))
    test_data, test_labels, _ = open_subtomograms(*_pair(test))
    if train_labels is None or test_labels is None:
        raise CryomlError("leave_one_out needs labelled train and test sets.")
    if not np.any(test_labels == left_out):
        raise CryomlError(f"class {left_out} has no member in the test set.")
    keep = np.flatnonzero(train_labels != left_out)
    remap = {old: new for new, old in enumerate(np.unique(train_labels[keep]))}
    clf = SubtomoClassifier(model=model, random_state=int(rng.integers(2**31 - 1)),
                            progress=progress, **(classifier_options or {}))
    clf.fit(np.asarray(train_data[keep.tolist()] if not isinstance(train_data, np.ndarray)
                       else train_data[keep]),
            np.array([remap[v] for v in train_labels[keep]]))
    features = clf.transform(test_data)
    division = subdivide(features, min(int(k), len(features)), random_state=rng)
    enrichment = division.enrichment(test_labels, left_out)
    cluster = int(np.argmax(enrichment))
    members = np.flatnonzero(division.labels == cluster)
    fitted = time.perf_counter()
    volumes = np.asarray(test_data[members.tolist()] if not isinstance(test_data, np.ndarray)
                         else test_data[members], dtype=np.float32)
    result = classify_and_average(
        volumes, min(int(n_classes), len(members)), n_iterations=n_iterations,
        tilt_range=tilt_range, angular_step=angular_step, lowpass_voxels=lowpass_voxels,
        random_state=rng, progress=progress, n_jobs=n_jobs,
    )
    is_c = test_labels[members] == left_out
    fractions, best = _most_enriched_class(result.labels, is_c, len(result.averages))
    average = result.averages[best] * (-1.0 if dark_density else 1.0)
    true_map = np.asarray(true_map, dtype=np.float32)
    pose = align_to_reference(average, true_map, tilt_range=None, angular_step=angular_step,
                              n_jobs=n_jobs)
    aligned = average_aligned(average[None], pose.rotations, pose.shifts, tilt_range=None,
                              n_jobs=n_jobs)
    frequencies, curve = fsc(aligned, true_map)
    resolution, from_shell_2 = (
        curve_resolution(frequencies, curve, voxel_size=voxel_size, first_shell=shell) / 10.0
        for shell in (1, 2)
    )
    class_size = int(np.sum(result.labels == best))
    end = time.perf_counter()
    return {
        "left_out": int(left_out),
        "resolution_nm": float(resolution),
        "success": bool(resolution <= success_nm and class_size >= min_class_size),
        # shell 1 holds few coefficients: a dip there alone reports a box-sized resolution
        "resolution_nm_from_shell_2": float(from_shell_2),
        "success_from_shell_2": bool(from_shell_2 <= success_nm
                                     and class_size >= min_class_size),
        "fsc": [round(float(v), 4) for v in curve],
        "cluster_size": len(members),
        "cluster_fraction_C": float(enrichment[cluster]),
        "cluster_recall_C": float(is_c.sum() / np.sum(test_labels == left_out)),
        "class_size": class_size,
        "class_fraction_C": fractions[best],
        "cluster_size_stats": {key: v for key, v in division.stats.items() if key != "sizes"},
        "seconds": float(end - start),
        # where the time went: planning runs on shared hardware needs the split
        "seconds_network": float(fitted - start),
        "seconds_averaging": float(end - fitted),
        "fsc_frequencies": [round(float(v), 4) for v in frequencies],
        "average": np.asarray(aligned, dtype=np.float32).reshape(true_map.shape),
    }


def _most_enriched_class(labels: np.ndarray, is_c: np.ndarray, n_classes: int):
    """Share of C in each class and the class most enriched in C; among equally enriched
    classes (often several are 100 % C) the one with the most members of C, whose average is
    the least noisy — not simply the first."""
    fractions = [float(np.mean(is_c[labels == j])) if np.any(labels == j) else 0.0
                 for j in range(n_classes)]
    counts = [int(np.sum(is_c[labels == j])) for j in range(n_classes)]
    best = max(range(n_classes), key=lambda j: (fractions[j], counts[j]))
    return fractions, best


def _pair(source):
    if isinstance(source, tuple):
        return source
    return (source,)
