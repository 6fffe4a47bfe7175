"""From score maps to picks: local maxima, the F-beta threshold and the pixel-s.d. band.

DeepEM (Zhu et al. 2017) keeps boxes whose score is a local maximum above a threshold, the
threshold being where F2 (recall weighted twice precision) peaks on a labelled set, and then
drops boxes whose pixel standard deviation is outside a narrow band (carbon, ice, aggregates).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cryoml._errors import CryomlError
from cryoml._validation import check_array, check_positive
from cryoml.io import Particles
from cryoml.picking._scoring import ScoreMap, normalise_micrograph

__all__ = [
    "box_standard_deviations",
    "estimate_sd_band",
    "fbeta_threshold",
    "filter_by_sd",
    "find_peaks",
]

log = logging.getLogger(__name__)

#: Default smallest distance between picks, as a fraction of the particle diameter. Touching
#: particles are one diameter apart, so anything below 1 keeps them; 0.5 also keeps particles
#: that overlap by up to half a diameter while one particle still gives one pick (two peaks
#: on one particle lie well within half its diameter of each other).
DEFAULT_MIN_DISTANCE = 0.5


def find_peaks(
    score_map: ScoreMap, *, threshold: float = 0.5, min_distance: float | None = None
) -> Particles:
    """Local maxima of a score map above a threshold, at least ``min_distance`` apart.

    Non-maximum suppression by true (circular) distance: every grid point that is a maximum of
    its 3 × 3 neighbourhood and scores at least ``threshold`` is a candidate; candidates are
    kept greedily from the highest score down, dropping any closer than ``min_distance``
    pixels (Euclidean) to one kept already. Two particles that touch (centres one diameter
    apart) both survive any ``min_distance`` below the diameter, whatever their direction;
    a square window, as used before, dropped diagonal neighbours up to √2 × ``min_distance``
    apart.

    Parameters
    ----------
    score_map : ScoreMap
        From :func:`raster_score_map` or :func:`dense_score_map`.
    threshold : float, default 0.5
        Lowest score kept.
    min_distance : float, optional
        Smallest distance in pixels between picks; default half the box size.

    Returns
    -------
    Particles
        Box centres (Y, X) in micrograph pixels, with ``scores`` and ``box_size``, sorted by
        decreasing score.

    Raises
    ------
    CryomlError
        If ``min_distance`` is negative.
    """
    if not isinstance(score_map, ScoreMap):
        raise CryomlError(f"find_peaks needs a ScoreMap; got {type(score_map).__name__}.")
    min_distance = (
        score_map.box_size / 2
        if min_distance is None
        else check_positive(min_distance, name="min_distance", allow_zero=True)
    )
    scores = np.nan_to_num(score_map.scores.astype(np.float64), nan=-np.inf)
    local_max = ndimage.maximum_filter(scores, size=3, mode="constant", cval=-np.inf)
    candidates = np.flatnonzero((scores >= local_max) & (scores >= threshold))
    values = scores.ravel()[candidates]
    order = np.argsort(-values, kind="stable")
    candidates, values = candidates[order], values[order]
    centres = score_map.centres().reshape(-1, 2)[candidates]
    keep = _suppress(centres, min_distance)
    return Particles(centres[keep], box_size=score_map.box_size, scores=values[keep])


def _suppress(centres: np.ndarray, min_distance: float) -> np.ndarray:
    """Greedy non-maximum suppression of centres sorted by decreasing score."""
    if len(centres) == 0 or min_distance <= 0:
        return np.arange(len(centres))
    tree = cKDTree(centres)
    taken = np.zeros(len(centres), dtype=bool)
    keep = []
    for index in range(len(centres)):
        if taken[index]:
            continue
        keep.append(index)
        taken[tree.query_ball_point(centres[index], min_distance - 1e-9)] = True
    return np.asarray(keep, dtype=int)


def box_standard_deviations(
    micrograph: np.ndarray, centres: np.ndarray, box_size: int
) -> np.ndarray:
    """Pixel standard deviation inside each box (boxes clipped at the micrograph's edge).

    Parameters
    ----------
    micrograph : (Y, X) ndarray
        The (normalised) micrograph the band refers to.
    centres : (N, 2) ndarray
        Box centres (Y, X).
    box_size : int
        Box edge in pixels.

    Returns
    -------
    (N,) ndarray of float
    """
    data = check_array(micrograph, ndim=2, name="micrograph")
    centres = np.asarray(centres, dtype=float).reshape(-1, 2)
    corners = np.rint(centres - box_size / 2).astype(int)
    out = np.empty(len(centres))
    for i, (y, x) in enumerate(corners):
        patch = data[max(y, 0) : max(y + box_size, 0), max(x, 0) : max(x + box_size, 0)]
        out[i] = patch.std() if patch.size else np.nan
    return out


def estimate_sd_band(
    standard_deviations: np.ndarray,
    *,
    quantiles: tuple[float, float] = (0.01, 0.99),
    margin: float = 0.05,
) -> tuple[float, float]:
    """The pixel-s.d. band from training positives: quantiles widened by a relative margin.

    Parameters
    ----------
    standard_deviations : (N,) array_like
        Pixel s.d. of the positive training boxes (:func:`box_standard_deviations`).
    quantiles : (float, float), default (0.01, 0.99)
        Lower and upper quantile of the positives' s.d.
    margin : float, default 0.05
        Widen the band by this fraction of its centre on both sides.

    Returns
    -------
    (low, high) : tuple of float

    Raises
    ------
    CryomlError
        If there are no values or the quantiles are not 0 <= low < high <= 1.
    """
    values = np.asarray(standard_deviations, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise CryomlError("cannot estimate the s.d. band from zero positive boxes.")
    low_q, high_q = quantiles
    if not 0 <= low_q < high_q <= 1:
        raise CryomlError(f"'quantiles' must satisfy 0 <= low < high <= 1; got {quantiles}.")
    low, high = np.quantile(values, [low_q, high_q])
    pad = margin * 0.5 * (low + high)
    return float(low - pad), float(high + pad)


def filter_by_sd(
    particles: Particles, micrograph: np.ndarray, band: tuple[float, float] | None
) -> Particles:
    """Drop picks whose box pixel s.d. lies outside ``band`` (None keeps all)."""
    if band is None or len(particles) == 0:
        return particles
    sds = box_standard_deviations(micrograph, particles.centres, particles.box_size)
    return particles.subset((sds >= band[0]) & (sds <= band[1]))


def fbeta_threshold(
    scores: np.ndarray, is_true_positive: np.ndarray, n_true: int, *, beta: float = 2.0
) -> dict[str, float]:
    """The score threshold where F-beta peaks (DeepEM: beta = 2), with P, R and F there.

    Parameters
    ----------
    scores : (N,) array_like
        Scores of all candidate picks on the labelled set (picked at a low threshold).
    is_true_positive : (N,) array_like of bool
        Whether each candidate matched a true particle.
    n_true : int
        Number of true particles in the labelled set.
    beta : float, default 2
        Weight of recall relative to precision.

    Returns
    -------
    dict
        ``threshold``, ``precision``, ``recall``, ``fbeta``.

    Examples
    --------
    >>> result = fbeta_threshold([0.9, 0.8, 0.7, 0.2], [True, True, False, True], n_true=4)
    >>> result["threshold"], round(result["recall"], 2)
    (0.2, 0.75)
    """
    from cryoml.metrics import best_fbeta_threshold

    check_positive(beta, name="beta")
    return best_fbeta_threshold(scores, is_true_positive, int(n_true), beta=beta)


class _PickingMixin:
    """Peak finding, s.d. filtering, thresholds and calibration shared by the pickers.

    Needs ``score(micrograph, method=)``, ``_check_fitted()``, ``diameter``, ``min_distance``,
    ``beta``, ``sd_band_``, ``threshold_`` and ``_lists``.
    """

    def _lists(self, micrographs, coordinates, name):
        from cryoml.io import Image

        if isinstance(micrographs, np.ndarray | Image) and np.ndim(micrographs) == 2:
            micrographs = [micrographs]
            coordinates = [coordinates]
        if not isinstance(micrographs, Sequence) or not isinstance(coordinates, Sequence):
            raise CryomlError(f"micrographs and {name} must be lists (one entry per micrograph).")
        if len(micrographs) != len(coordinates):
            raise CryomlError(
                f"got {len(micrographs)} micrographs but {len(coordinates)} {name} entries; "
                "give one coordinate set per micrograph."
            )
        return list(micrographs), list(coordinates)

    def candidates(
        self,
        micrograph,
        *,
        method: str | None = None,
        score_map=None,
        override_pixel_size: bool = False,
    ) -> Particles:
        """All local maxima (any score) that pass the s.d. band: the picks before thresholding.

        ``override_pixel_size`` scores an Image whose pixel size differs from the training
        micrographs' (pickers that check it).
        """
        self._check_fitted()
        data, _ = _image_of(micrograph)
        if score_map is None:
            extra = {"override_pixel_size": True} if override_pixel_size else {}
            score_map = self.score(micrograph, method=method, **extra)
        peaks = find_peaks(score_map, threshold=-np.inf, min_distance=self._min_distance())
        return filter_by_sd(peaks, normalise_micrograph(data), self.sd_band_)

    def _min_distance(self) -> float:
        if self.min_distance is not None:
            return check_positive(self.min_distance, name="min_distance", allow_zero=True)
        return DEFAULT_MIN_DISTANCE * self.diameter

    def pick(
        self,
        micrograph,
        *,
        threshold: float | None = None,
        method: str | None = None,
        override_pixel_size: bool = False,
    ) -> Particles:
        """Pick particles: local maxima above the threshold, inside the s.d. band.

        Parameters
        ----------
        micrograph : (Y, X) ndarray or Image
        threshold : float, optional
            Default ``threshold_`` (the F2-chosen one after :meth:`calibrate_threshold`).
        method : {"dense", "raster"}, optional
        override_pixel_size : bool, default False
            Pick an Image whose pixel size differs from the training micrographs'.

        Returns
        -------
        Particles
            Centres (Y, X) with ``scores`` and ``box_size``, highest score first.
        """
        candidates = self.candidates(
            micrograph, method=method, override_pixel_size=override_pixel_size
        )
        threshold = self.threshold_ if threshold is None else float(threshold)
        return candidates.subset(candidates.scores >= threshold)

    def calibrate_threshold(
        self, micrographs, particles, *, radius: float | None = None, method: str | None = None
    ) -> _PickingMixin:
        """Set ``threshold_`` where F-beta (``beta``, F2 by default) peaks on labelled data.

        Parameters
        ----------
        micrographs : list of (Y, X) ndarray or Image
        particles : list of Particles or (N, 2) ndarray
            True centres per micrograph.
        radius : float, optional
            Matching radius in pixels; default 0.5 × particle diameter.
        method : {"dense", "raster"}, optional

        Returns
        -------
        self
        """
        from cryoml.picking._evaluate import match_candidates
        from cryoml.picking._peaks import fbeta_threshold

        self._check_fitted()
        micrographs, particles = self._lists(micrographs, particles, "particles")
        radius = 0.5 * self.diameter if radius is None else check_positive(radius, name="radius")
        picks = [self.candidates(m, method=method) for m in micrographs]
        scores, hits, n_true = match_candidates(picks, particles, radius)
        result = fbeta_threshold(scores, hits, n_true, beta=self.beta)
        self.threshold_ = result["threshold"]
        self.calibration_ = {**result, "beta": float(self.beta), "radius": radius}
        log.info(
            "F%g threshold %.3f: precision %.3f, recall %.3f",
            self.beta,
            result["threshold"],
            result["precision"],
            result["recall"],
        )
        return self


def _image_of(micrograph, name: str = "micrograph") -> tuple[np.ndarray, float | None]:
    from cryoml.io import Image

    if isinstance(micrograph, Image):
        return check_array(micrograph.data, ndim=2, name=name), micrograph.voxel_size
    return check_array(micrograph, ndim=2, name=name), None
