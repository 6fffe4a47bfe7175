"""Judging picks against true centres: precision, recall, F-beta, PR curve and AP.

A pick is right when it lies within ``radius`` pixels of a true centre, matched one to one
(Hungarian assignment, :func:`cryoml.metrics.match_points`). The default radius is half the
particle diameter, the usual criterion (a pick is right if its centre falls inside the
particle's central disc of radius d/2).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cryoml._errors import CryomlError
from cryoml._validation import check_positive
from cryoml.io import Particles

__all__ = [
    "PickingEvaluation",
    "evaluate_picks",
    "match_candidates",
    "match_radius",
    "plot_precision_recall",
    "split_picks",
]


def match_radius(particle_diameter: float) -> float:
    """The matching radius used throughout: 0.5 × the particle diameter (pixels)."""
    return 0.5 * check_positive(particle_diameter, name="particle_diameter")


@dataclasses.dataclass
class PickingEvaluation:
    """Picks judged against truth.

    Attributes
    ----------
    precision, recall, fbeta : float
        At ``threshold`` (the picks with score >= threshold).
    threshold : float
        The score threshold these counts refer to.
    average_precision : float
        Area under the PR curve of all candidate picks.
    curve_precision, curve_recall, curve_thresholds : ndarray
        The precision–recall curve (thresholds decreasing).
    n_true_positive, n_false_positive, n_false_negative, n_true : int
    radius : float
        Matching radius in pixels.
    beta : float
    """

    precision: float
    recall: float
    fbeta: float
    threshold: float
    average_precision: float
    curve_precision: np.ndarray
    curve_recall: np.ndarray
    curve_thresholds: np.ndarray
    n_true_positive: int
    n_false_positive: int
    n_false_negative: int
    n_true: int
    radius: float
    beta: float

    def to_dict(self) -> dict:
        """Scalar fields as plain JSON values."""
        return {
            key: (float(value) if isinstance(value, float | np.floating) else value)
            for key, value in dataclasses.asdict(self).items()
            if not key.startswith("curve_")
        }


def _as_list(items, name: str) -> list:
    if isinstance(items, Particles) or (isinstance(items, np.ndarray) and items.ndim == 2):
        return [items]
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise CryomlError(f"'{name}' must be Particles or a list of them (one per micrograph).")
    return list(items)


def _centres(item) -> np.ndarray:
    if isinstance(item, Particles):
        return item.centres
    return np.asarray(item, dtype=float).reshape(-1, 2)


def match_candidates(
    picks: Sequence[Particles], truth: Sequence, radius: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Scores and hit flags of all picks over several micrographs, and the number of truths."""
    from cryoml.metrics import match_points

    picks = _as_list(picks, "picks")
    truth = _as_list(truth, "truth")
    if len(picks) != len(truth):
        raise CryomlError(
            f"picks and truth must list the same micrographs; got {len(picks)} and {len(truth)}."
        )
    all_scores, all_hits, n_true = [], [], 0
    for picked, true in zip(picks, truth, strict=True):
        true_centres = _centres(true)
        n_true += len(true_centres)
        if len(picked) == 0:
            continue
        scores = picked.scores if picked.scores is not None else np.ones(len(picked))
        hits = np.zeros(len(picked), dtype=bool)
        matched, _ = match_points(picked.centres, true_centres, radius)
        hits[matched] = True
        all_scores.append(np.asarray(scores, dtype=float))
        all_hits.append(hits)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    hits = np.concatenate(all_hits) if all_hits else np.zeros(0, dtype=bool)
    return scores, hits, n_true


def evaluate_picks(
    picks: Particles | Sequence[Particles],
    truth: Particles | Sequence,
    *,
    radius: float,
    threshold: float | None = None,
    beta: float = 2.0,
) -> PickingEvaluation:
    """Precision, recall and F-beta at a threshold, and the PR curve with its AP.

    Pass *all* candidate picks (found at a low threshold, e.g. 0) so that the curve spans every
    threshold; the counts are then taken at ``threshold``.

    Parameters
    ----------
    picks : Particles or list of Particles
        Picks with ``scores``, one Particles per micrograph.
    truth : Particles, (M, 2) ndarray, or a list of them
        True centres, same micrographs in the same order.
    radius : float
        Matching radius in pixels (see :func:`match_radius`: 0.5 × particle diameter).
    threshold : float, optional
        Score threshold for precision/recall/F-beta; default: where F-beta peaks.
    beta : float, default 2
        F-beta weight (DeepEM: 2).

    Returns
    -------
    PickingEvaluation

    Raises
    ------
    CryomlError
        If the lists differ in length or ``radius`` is not positive.
    """
    from cryoml.metrics import (
        average_precision,
        best_fbeta_threshold,
        precision_recall_curve,
        precision_recall_fbeta,
    )

    radius = check_positive(radius, name="radius")
    scores, hits, n_true = match_candidates(picks, truth, radius)
    precision, recall, thresholds = precision_recall_curve(scores, hits, n_true)
    ap = average_precision(precision, recall)
    if threshold is None:
        threshold = best_fbeta_threshold(scores, hits, n_true, beta=beta)["threshold"]
    kept = scores >= threshold
    tp = int(np.sum(hits & kept))
    fp = int(np.sum(~hits & kept))
    fn = n_true - tp
    p, r, f = precision_recall_fbeta(tp, fp, fn, beta=beta)
    return PickingEvaluation(
        precision=p,
        recall=r,
        fbeta=f,
        threshold=float(threshold),
        average_precision=float(ap),
        curve_precision=precision,
        curve_recall=recall,
        curve_thresholds=thresholds,
        n_true_positive=tp,
        n_false_positive=fp,
        n_false_negative=fn,
        n_true=n_true,
        radius=radius,
        beta=beta,
    )


def plot_precision_recall(
    evaluations: dict[str, PickingEvaluation],
    path: str | os.PathLike,
    *,
    title: str = "Particle picking",
    overwrite: bool = False,
) -> Path:
    """Draw one or more precision–recall curves to a PNG, marking each chosen threshold.

    Parameters
    ----------
    evaluations : dict of str to PickingEvaluation
        Curves by label (the label gets the AP appended).
    path : str or path-like
        Output PNG.
    title : str
        Figure title.
    overwrite : bool, default False
        Replace an existing file.

    Returns
    -------
    Path
    """
    from matplotlib.figure import Figure

    from cryoml.io import atomic_path

    if not evaluations:
        raise CryomlError("plot_precision_recall needs at least one evaluation.")
    figure = Figure(figsize=(4.5, 4.2), dpi=120)
    axes = figure.add_subplot()
    for label, evaluation in evaluations.items():
        lines = axes.step(
            np.r_[0.0, evaluation.curve_recall],
            np.r_[1.0, evaluation.curve_precision],
            where="post",
            label=f"{label} (AP {evaluation.average_precision:.3f})",
        )
        axes.plot(
            [evaluation.recall], [evaluation.precision], "o", color=lines[0].get_color(), ms=5
        )
    axes.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=7)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png")
    return path


def split_picks(
    picks: Particles, truth: Particles | np.ndarray, *, radius: float
) -> tuple[Particles, Particles]:
    """Split picks into verified true and false positives (for recursive training).

    Parameters
    ----------
    picks : Particles
        Picks on one micrograph.
    truth : Particles or (M, 2) ndarray
        True centres on that micrograph (in practice: a person's verification).
    radius : float
        Matching radius in pixels.

    Returns
    -------
    true_picks, false_picks : Particles
    """
    from cryoml.metrics import match_points

    radius = check_positive(radius, name="radius")
    hits = np.zeros(len(picks), dtype=bool)
    if len(picks):
        matched, _ = match_points(picks.centres, _centres(truth), radius)
        hits[matched] = True
    return picks.subset(hits), picks.subset(~hits)
