"""Honest metrics shared by the three methods.

* Point matching and detection scores: one-to-one matching of picks to true centres within a
  radius (Hungarian assignment, so no true particle is counted twice), precision, recall,
  F-beta, precision–recall curves and average precision.
* Segmentation overlap: Dice and IoU of binary masks.
* Fourier shell correlation between two volumes and the resolution where it crosses a threshold.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from cryoml._errors import CryomlError
from cryoml._validation import check_array, check_positive

__all__ = [
    "average_precision",
    "best_fbeta_threshold",
    "curve_resolution",
    "detection_scores",
    "dice",
    "fsc",
    "fsc_resolution",
    "iou",
    "match_points",
    "precision_recall_curve",
    "precision_recall_fbeta",
]


def match_points(
    predicted: np.ndarray, true: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Match predicted points to true points one to one, within ``radius``.

    The assignment minimises the total distance (Hungarian algorithm) among pairs closer than
    ``radius``, so each true point is matched at most once and each pick at most once.

    Parameters
    ----------
    predicted : (N, D) array_like
        Predicted centres.
    true : (M, D) array_like
        True centres, same axes and units as ``predicted``.
    radius : float
        Largest distance at which a pick counts as right.

    Returns
    -------
    predicted_index, true_index : (K,) ndarray of int
        Indices of the matched pairs.

    Examples
    --------
    >>> predicted_index, true_index = match_points([[0, 0], [10, 10]], [[1, 0], [50, 50]], radius=3)
    >>> predicted_index.tolist(), true_index.tolist()
    ([0], [0])
    """
    radius = check_positive(radius, name="radius")
    predicted = np.atleast_2d(np.asarray(predicted, dtype=float))
    true = np.atleast_2d(np.asarray(true, dtype=float))
    if predicted.size and true.size and predicted.shape[1] != true.shape[1]:
        raise CryomlError(
            f"predicted and true points must have the same number of axes; got "
            f"{predicted.shape[1]} and {true.shape[1]}."
        )
    empty = np.zeros(0, dtype=int)
    if predicted.size == 0 or true.size == 0:
        return empty, empty
    pairs = cKDTree(predicted).sparse_distance_matrix(
        cKDTree(true), radius, output_type="coo_matrix"
    )
    if pairs.nnz == 0:
        return empty, empty
    # Only points that have a candidate enter the assignment; unmatched pairs get a cost above
    # any real distance so the solver never prefers them.
    rows = np.unique(pairs.row)
    cols = np.unique(pairs.col)
    cost = np.full((len(rows), len(cols)), radius * 1e3 + 1.0)
    cost[np.searchsorted(rows, pairs.row), np.searchsorted(cols, pairs.col)] = pairs.data
    assigned_rows, assigned_cols = linear_sum_assignment(cost)
    keep = cost[assigned_rows, assigned_cols] <= radius
    return rows[assigned_rows[keep]].astype(int), cols[assigned_cols[keep]].astype(int)


def precision_recall_fbeta(
    n_true_positive: int, n_false_positive: int, n_false_negative: int, *, beta: float = 1.0
) -> tuple[float, float, float]:
    """Precision, recall and F-beta from counts (0 where undefined).

    F-beta weights recall ``beta`` times as much as precision; DeepEM uses beta = 2.

    Examples
    --------
    >>> [round(v, 3) for v in precision_recall_fbeta(8, 2, 2, beta=1.0)]
    [0.8, 0.8, 0.8]
    """
    tp, fp, fn = (float(v) for v in (n_true_positive, n_false_positive, n_false_negative))
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    b2 = beta * beta
    denominator = b2 * precision + recall
    fbeta = (1 + b2) * precision * recall / denominator if denominator > 0 else 0.0
    return precision, recall, fbeta


def detection_scores(
    predicted: np.ndarray, true: np.ndarray, radius: float, *, beta: float = 1.0
) -> dict[str, float]:
    """Match picks to true centres and return counts, precision, recall and F-beta."""
    n_predicted = int(np.size(predicted) and np.atleast_2d(predicted).shape[0])
    n_true = int(np.size(true) and np.atleast_2d(true).shape[0])
    matched, _ = match_points(predicted, true, radius)
    tp = len(matched)
    fp = n_predicted - tp
    fn = n_true - tp
    precision, recall, fbeta = precision_recall_fbeta(tp, fp, fn, beta=beta)
    return {
        "n_true_positive": tp,
        "n_false_positive": fp,
        "n_false_negative": fn,
        "precision": precision,
        "recall": recall,
        "fbeta": fbeta,
    }


def precision_recall_curve(
    scores: np.ndarray, is_true_positive: np.ndarray, n_true: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall as the score threshold is lowered through every pick.

    Parameters
    ----------
    scores : (N,) array_like
        Score of each pick.
    is_true_positive : (N,) array_like of bool
        Whether each pick matched a true particle (see :func:`match_points`; match at the
        lowest threshold so that every pick is judged).
    n_true : int
        Number of true particles, matched or not (the recall denominator).

    Returns
    -------
    precision, recall, thresholds : (N,) ndarray
        Point i keeps the picks with score >= thresholds[i]; thresholds decrease.
    """
    scores = np.asarray(scores, dtype=float).ravel()
    hits = np.asarray(is_true_positive, dtype=bool).ravel()
    if scores.shape != hits.shape:
        raise CryomlError(
            f"scores and is_true_positive must have the same length; got {scores.shape} and "
            f"{hits.shape}."
        )
    if n_true < 0:
        raise CryomlError(f"n_true must be >= 0; got {n_true}.")
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], hits[order]
    tp = np.cumsum(hits)
    kept = np.arange(1, len(scores) + 1)
    # Ties share one threshold: report the curve only at the last pick of each tied run.
    last_of_run = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
    precision = (tp / kept)[last_of_run]
    recall = (tp / n_true if n_true > 0 else np.zeros_like(tp, dtype=float))[last_of_run]
    return precision.astype(float), recall.astype(float), scores[last_of_run]


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision–recall curve, by the step rule scikit-learn uses.

    AP = Σ (R_i − R_{i−1}) P_i over points sorted by increasing recall, starting at R = 0.

    Examples
    --------
    >>> average_precision([1.0, 0.5], [0.5, 0.5])
    0.5
    """
    precision = np.asarray(precision, dtype=float)
    recall = np.asarray(recall, dtype=float)
    if precision.shape != recall.shape:
        raise CryomlError("precision and recall must have the same length.")
    if precision.size == 0:
        return 0.0
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * precision))


def best_fbeta_threshold(
    scores: np.ndarray, is_true_positive: np.ndarray, n_true: int, *, beta: float = 2.0
) -> dict[str, float]:
    """The score threshold at which F-beta peaks on a labelled set (DeepEM's choice, beta = 2).

    Returns
    -------
    dict
        ``threshold``, ``precision``, ``recall`` and ``fbeta`` at the peak.
    """
    precision, recall, thresholds = precision_recall_curve(scores, is_true_positive, n_true)
    if len(thresholds) == 0:
        return {"threshold": float("inf"), "precision": 0.0, "recall": 0.0, "fbeta": 0.0}
    b2 = beta * beta
    with np.errstate(invalid="ignore", divide="ignore"):
        fbeta = np.where(
            b2 * precision + recall > 0,
            (1 + b2) * precision * recall / (b2 * precision + recall),
            0.0,
        )
    best = int(np.argmax(fbeta))
    return {
        "threshold": float(thresholds[best]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "fbeta": float(fbeta[best]),
    }


def _binary_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a).astype(bool)
    b = np.asarray(b).astype(bool)
    if a.shape != b.shape:
        raise CryomlError(f"masks must have the same shape; got {a.shape} and {b.shape}.")
    return a, b


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|) of two binary masks (1.0 when both are empty).

    Examples
    --------
    >>> import numpy as np
    >>> dice(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    0.6666666666666666
    """
    a, b = _binary_pair(a, b)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union |A∩B| / |A∪B| of two binary masks (1.0 when both are empty)."""
    a, b = _binary_pair(a, b)
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def fsc(volume_a: np.ndarray, volume_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation of two cubic volumes.

    Parameters
    ----------
    volume_a, volume_b : (N, N, N) array_like
        Volumes on the same grid.

    Returns
    -------
    frequencies : (N // 2,) ndarray
        Shell centres in cycles per voxel (0 … 0.5).
    curve : (N // 2,) ndarray
        Correlation per shell: Re Σ F_a F_b* / sqrt(Σ|F_a|² Σ|F_b|²).
    """
    a = check_array(volume_a, ndim=3, name="volume_a").astype(np.float64)
    b = check_array(volume_b, ndim=3, name="volume_b").astype(np.float64)
    if a.shape != b.shape or len(set(a.shape)) != 1:
        raise CryomlError(
            f"FSC needs two cubic volumes of the same shape; got {a.shape} and {b.shape}."
        )
    n = a.shape[0]
    fa = np.fft.rfftn(a)
    fb = np.fft.rfftn(b)
    kz = np.fft.fftfreq(n)[:, None, None]
    ky = np.fft.fftfreq(n)[None, :, None]
    kx = np.fft.rfftfreq(n)[None, None, :]
    radius = np.sqrt(kz**2 + ky**2 + kx**2)
    shell = np.rint(radius * n).astype(int).ravel()
    n_shells = n // 2
    inside = shell < n_shells
    shell = shell[inside]
    cross = np.bincount(shell, (fa * np.conj(fb)).real.ravel()[inside], n_shells)
    power_a = np.bincount(shell, (np.abs(fa) ** 2).ravel()[inside], n_shells)
    power_b = np.bincount(shell, (np.abs(fb) ** 2).ravel()[inside], n_shells)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(power_a * power_b > 0, cross / np.sqrt(power_a * power_b), 0.0)
    return np.arange(n_shells) / n, curve


def fsc_resolution(
    volume_a: np.ndarray,
    volume_b: np.ndarray,
    *,
    voxel_size: float,
    threshold: float = 0.5,
    first_shell: int = 1,
) -> float:
    """Resolution (Å) where the FSC first falls below ``threshold``.

    The crossing is interpolated linearly between shells. If the curve never falls below the
    threshold the Nyquist resolution (2 × voxel size) is returned.

    Parameters
    ----------
    volume_a, volume_b : (N, N, N) array_like
        Volumes on the same grid.
    voxel_size : float
        Voxel size in Å.
    threshold : float, default 0.5
        FSC criterion (0.5 as in Xu et al. 2017; 0.143 for half maps).
    first_shell : int, default 1
        First shell where a crossing counts. Shell 0 is the mean. Shell 1 (one period across
        the box) holds only a few dozen Fourier coefficients, so one dip there can report a
        box-sized "resolution" for volumes that agree to fine detail; 2 ignores it.

    Returns
    -------
    float
        Resolution in Å (divide by 10 for nm).

    Raises
    ------
    CryomlError
        For a ``first_shell`` outside 1 … N // 2 − 1.
    """
    frequencies, curve = fsc(volume_a, volume_b)
    return curve_resolution(frequencies, curve, voxel_size=voxel_size, threshold=threshold,
                            first_shell=first_shell)


def curve_resolution(
    frequencies: np.ndarray,
    curve: np.ndarray,
    *,
    voxel_size: float,
    threshold: float = 0.5,
    first_shell: int = 1,
) -> float:
    """Resolution (Å) of an FSC curve from :func:`fsc`, as :func:`fsc_resolution` reads it
    (for reading one curve at several thresholds or first shells without recomputing it)."""
    voxel_size = check_positive(voxel_size, name="voxel_size")
    if int(first_shell) != first_shell or not 1 <= first_shell < len(curve):
        raise CryomlError(
            f"'first_shell' must be a whole number in [1, {len(curve) - 1}]; got {first_shell!r}."
        )
    for i in range(int(first_shell), len(curve)):
        if curve[i] < threshold:
            f0, f1 = frequencies[i - 1], frequencies[i]
            c0, c1 = curve[i - 1], curve[i]
            if c0 <= threshold or c0 == c1:  # nothing to interpolate from (e.g. shell 1 dipped)
                crossing = f1
            else:
                crossing = f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1)
            return float(voxel_size / max(crossing, 1e-6))
    return float(2.0 * voxel_size)
