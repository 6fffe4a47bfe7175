"""Choose the particle-extraction threshold and least component mass on an annotated output.

EMAN2's defaults (threshold 1, components of more than 20 voxels) keep every small blob a
network leaves in the background: against ~3,400 voxels per ribosome at 10 Å, the U-Net's
ribosome picks on a held-out simulated tomogram were 50–80 % right with them, and 91–96 % right
with the threshold and mass chosen on the training tomogram (benchmarks/RESULTS.md, session 8).
``calibrate_extraction`` does that choice: every (threshold, min_mass) of a grid, scored against
the particle centres a user marked on one output, with exactly the picks of
:func:`extract_particles` (one labelling per threshold, shared by every mass).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from cryoml._errors import CryomlError
from cryoml._validation import check_array, check_positive
from cryoml.io import Particles
from cryoml.metrics import match_points, precision_recall_fbeta
from cryoml.tomoseg._extract import _component_peaks, _inside, _select_peaks, smoothed

__all__ = ["DEFAULT_THRESHOLDS", "ExtractionCalibration", "calibrate_extraction"]

log = logging.getLogger(__name__)

#: Thresholds scanned by default, on the scaled output (1 = the network's typical positive).
DEFAULT_THRESHOLDS = (0.3, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0)
# Least masses scanned by default: 0, EMAN2's 20, and these fractions of the box volume.
_MASS_FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8)


def default_min_masses(box_size: int) -> tuple[int, ...]:
    """0, EMAN2's 20 and box³/64, /32, /16, /8 voxels (box 25: 244, 488, 977, 1953)."""
    volume = float(box_size) ** 3
    return tuple(sorted({0, 20, *(round(f * volume) for f in _MASS_FRACTIONS)}))


@dataclasses.dataclass(frozen=True, eq=False)
class ExtractionCalibration:
    """What :func:`calibrate_extraction` chose, and the grid it scanned.

    Attributes
    ----------
    threshold, min_mass : float, int
        The choice: the grid point with the highest F-beta (then the highest precision; on a
        tie, the lowest threshold, then the lowest mass).
    precision, recall, fbeta : float
        Scores of that choice on the annotated output.
    n_picks, n_true : int
        Picks at that choice, and true centres scored (those at least ``edge`` from every face).
    beta, radius : float
        F-beta's beta, and the distance within which a pick matches a true centre.
    box_size : int
    min_distance, edge, smooth : float
        The extraction settings the grid was scored with (those of :func:`extract_particles`).
    thresholds : (T,) ndarray
    min_masses : (M,) ndarray of int
    precisions, recalls, fbetas : (T, M) ndarray
        Scores at every grid point; row = threshold, column = least mass.
    picks : (T, M) ndarray of int
        Number of picks at every grid point.
    """

    threshold: float
    min_mass: int
    precision: float
    recall: float
    fbeta: float
    n_picks: int
    n_true: int
    beta: float
    radius: float
    box_size: int
    min_distance: float
    edge: float
    thresholds: np.ndarray
    min_masses: np.ndarray
    precisions: np.ndarray
    recalls: np.ndarray
    fbetas: np.ndarray
    picks: np.ndarray
    smooth: float = 0.0

    @property
    def extract_kwargs(self) -> dict:
        """Keyword arguments of :func:`extract_particles` that give the calibrated picks."""
        return {
            "box_size": self.box_size,
            "threshold": self.threshold,
            "min_mass": self.min_mass,
            "min_distance": self.min_distance,
            "edge": self.edge,
            "smooth": self.smooth,
        }

    def to_dict(self) -> dict:
        """Plain Python values (JSON-ready); the grid as nested lists."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    def __repr__(self) -> str:
        return (
            f"ExtractionCalibration(threshold={self.threshold:g}, min_mass={self.min_mass}, "
            f"precision={self.precision:.3f}, recall={self.recall:.3f}, "
            f"F{self.beta:g}={self.fbeta:.3f}, picks={self.n_picks}, true={self.n_true})"
        )


def _grid(values, name: str, default) -> np.ndarray:
    if values is None:
        values = default
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 0:
        raise CryomlError(f"'{name}' is empty; give at least one value.")
    if not np.all(np.isfinite(array)):
        raise CryomlError(f"'{name}' must be finite; got {values!r}.")
    return np.unique(array)


def calibrate_extraction(
    output: np.ndarray,
    centres,
    *,
    box_size: int,
    radius: float | None = None,
    thresholds=None,
    min_masses=None,
    beta: float = 1.0,
    min_distance: float | None = None,
    edge: float | None = None,
    smooth: float = 0.0,
) -> ExtractionCalibration:
    """Choose :func:`extract_particles`' ``threshold`` and ``min_mass`` on an annotated output.

    The way TomoSeg users choose thresholds: on a tomogram (or region) whose particles they
    marked, every (threshold, least mass) of a grid is scored, and the pair with the best
    F-beta is kept, to be used on the other tomograms. Each grid point's picks are exactly
    those of ``extract_particles(output, box_size=box_size, threshold=t, min_mass=m,
    min_distance=min_distance, edge=edge)``; a pick is right when it is matched one to one
    (:func:`cryoml.metrics.match_points`) to a true centre within ``radius``.

    Parameters
    ----------
    output : (Z, Y, X) array_like
        Scaled network output of the annotated tomogram (1 = typical positive).
    centres : (N, 3) array_like or Particles
        True particle centres (Z, Y, X) in voxels of ``output``. Those closer than ``edge`` to
        a face cannot be picked and are left out of the recall.
    box_size : int
        Particle box edge (voxels), as given to :func:`extract_particles`.
    radius : float, optional
        Largest pick-to-centre distance that counts as right. Default ``box_size / 2``: half
        the particle diameter when the box is the particle's size, the rule of
        ``benchmarks/tomoseg_accuracy.py`` (box = ribosome diameter, right within half a
        diameter). With a box larger than the particle, pass half the particle's diameter.
    thresholds : sequence of float, optional
        Thresholds scanned; default (0.3, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0).
    min_masses : sequence of int, optional
        Least masses scanned (components of this many voxels or fewer are dropped); default
        0, EMAN2's 20, and box³/64, box³/32, box³/16 and box³/8 voxels.
    beta : float, default 1.0
        F-beta's beta (F1; beta > 1 weighs recall more).
    min_distance, edge : float, optional
        As in :func:`extract_particles` (defaults box/4 and box/2); use the same values when
        extracting with the choice (``result.extract_kwargs`` holds them).
    smooth : float, default 0
        As in :func:`extract_particles`: Gaussian sigma (voxels) applied to ``output`` first.

    Returns
    -------
    ExtractionCalibration
        The chosen ``threshold`` and ``min_mass`` with their precision, recall and F-beta, and
        the scores of the whole grid. On a tie of F-beta the higher precision wins, then the
        lower threshold and the lower mass; when no pick is right anywhere, the grid's first
        point (lowest threshold and mass) is returned with F-beta 0.

    Raises
    ------
    CryomlError
        For a non-3D output, no centres (or none at least ``edge`` from the faces), centres
        not of shape (N, 3), an empty or non-finite grid, a negative mass, or a non-positive
        ``box_size``, ``radius`` or ``beta``.

    See Also
    --------
    extract_particles : the picks, with ``**result.extract_kwargs``.

    Examples
    --------
    Two particles, and a speck of 27 voxels that EMAN2's least mass (20) would keep:

    >>> import numpy as np
    >>> from cryoml.tomoseg import calibrate_extraction, extract_particles
    >>> output = np.zeros((32, 48, 48), np.float32)
    >>> output[10:16, 10:16, 10:16] = 2.0
    >>> output[10:16, 30:36, 30:36] = 2.0
    >>> output[20:23, 20:23, 20:23] = 3.0
    >>> truth = [[13, 13, 13], [13, 33, 33]]
    >>> result = calibrate_extraction(output, truth, box_size=12)
    >>> result.min_mass, result.precision, result.recall
    (27, 1.0, 1.0)
    >>> len(extract_particles(output, **result.extract_kwargs))
    2
    """
    volume = smoothed(check_array(output, ndim=3, name="output"), smooth)
    box = int(check_positive(box_size, name="box_size"))
    radius = box / 2 if radius is None else check_positive(radius, name="radius")
    beta = check_positive(beta, name="beta")
    distance = box / 4 if min_distance is None else float(min_distance)
    margin = box / 2 if edge is None else float(edge)
    if isinstance(centres, Particles):
        centres = centres.centres
    truth = np.asarray(centres, dtype=float)
    if truth.size == 0:
        raise CryomlError(
            "no true centres given: calibration needs the particles marked on the output."
        )
    if truth.ndim != 2 or truth.shape[1] != 3:
        raise CryomlError(f"'centres' must be (N, 3) (Z, Y, X); got shape {truth.shape}.")
    if not np.all(np.isfinite(truth)):
        raise CryomlError("'centres' must be finite.")
    n_given = len(truth)
    truth = truth[_inside(truth, volume.shape, margin)]
    if len(truth) == 0:
        raise CryomlError(
            f"none of the {n_given} centres lies at least edge={margin:g} voxels from "
            f"every face of the {volume.shape} output; no pick could match them."
        )
    cuts = _grid(thresholds, "thresholds", DEFAULT_THRESHOLDS)
    masses = _grid(min_masses, "min_masses", default_min_masses(box))
    if np.any(masses < 0) or np.any(masses != np.round(masses)):
        raise CryomlError(f"'min_masses' must be whole numbers >= 0; got {min_masses!r}.")
    masses = masses.astype(np.int64)
    shape = (len(cuts), len(masses))
    precisions, recalls, fbetas = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    picks = np.zeros(shape, np.int64)
    best, choice = (-1.0, -1.0), (0, 0)
    for i, cut in enumerate(cuts):
        mass, peaks_at, peaks = _component_peaks(volume, float(cut))
        for j, least in enumerate(masses):
            picked, _ = _select_peaks(
                mass, peaks_at, peaks, min_mass=int(least), shape=volume.shape, margin=margin,
                distance=distance,
            )
            picks[i, j] = len(picked)
            hits = len(match_points(picked, truth, radius)[0]) if len(picked) else 0
            precisions[i, j], recalls[i, j], fbetas[i, j] = precision_recall_fbeta(
                hits, len(picked) - hits, len(truth) - hits, beta=beta
            )
            if (fbetas[i, j], precisions[i, j]) > best:
                best, choice = (fbetas[i, j], precisions[i, j]), (i, j)
    i, j = choice
    result = ExtractionCalibration(
        threshold=float(cuts[i]),
        min_mass=int(masses[j]),
        precision=float(precisions[i, j]),
        recall=float(recalls[i, j]),
        fbeta=float(fbetas[i, j]),
        n_picks=int(picks[i, j]),
        n_true=len(truth),
        beta=float(beta),
        radius=float(radius),
        box_size=box,
        min_distance=distance,
        edge=margin,
        thresholds=cuts,
        min_masses=masses,
        precisions=precisions,
        recalls=recalls,
        fbetas=fbetas,
        picks=picks,
        smooth=float(smooth),
    )
    log.info(
        "extraction calibrated: threshold %g, min_mass %d (precision %.3f, recall %.3f, F%g %.3f)",
        result.threshold, result.min_mass, result.precision, result.recall, beta, result.fbeta,
    )
    return result
