"""Normalised cross-correlation template matching: the classical baseline.

FindEM (Roseman 2003/2004) and RELION's reference-based autopicking slide references over the
micrograph and score each position by the correlation coefficient between the reference and
the micrograph under a circular mask — the fast local correlation function (FLCF):

    NCC(p) = Σ_x m(x) t̂(x) f(p + x) / (N · σ_f(p)),

with t̂ the reference normalised to zero mean and unit s.d. under the mask m (N pixels) and
σ_f(p) the micrograph's local s.d. under the mask. All sums are FFT correlations, so one
micrograph costs a few FFTs per reference angle. Here the reference is the mean of the training
positives (rotationally averaged by default, since particles lie at random in-plane angles),
and the score of a position is the largest NCC over the reference angles.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from cryoml._errors import CryomlError
from cryoml._validation import check_array, check_positive
from cryoml.picking._peaks import _image_of, _PickingMixin, estimate_sd_band
from cryoml.picking._scoring import ScoreMap, normalise_micrograph

__all__ = ["TemplateMatcher", "make_template", "template_score_map"]

log = logging.getLogger(__name__)


def make_template(boxes: np.ndarray, *, rotational_average: bool = True) -> np.ndarray:
    """The reference: mean of particle boxes, optionally averaged over rotations.

    Parameters
    ----------
    boxes : (N, B, B) ndarray
        Particle boxes, centred.
    rotational_average : bool, default True
        Replace the mean by its radial profile (for particles at random in-plane angles).

    Returns
    -------
    (B, B) ndarray of float32
    """
    boxes = check_array(boxes, ndim=3, name="boxes")
    mean = boxes.astype(np.float64).mean(axis=0)
    if not rotational_average:
        return mean.astype(np.float32)
    size = mean.shape[0]
    yy, xx = np.mgrid[0:size, 0 : mean.shape[1]]
    radius = np.hypot(yy - (size - 1) / 2, xx - (mean.shape[1] - 1) / 2)
    shell = np.rint(radius).astype(int)
    profile = np.bincount(shell.ravel(), mean.ravel()) / np.maximum(np.bincount(shell.ravel()), 1)
    return profile[shell].astype(np.float32)


def _correlate(image_ft: np.ndarray, kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    padded = np.zeros(shape, dtype=np.float64)
    padded[: kernel.shape[0], : kernel.shape[1]] = kernel
    return np.fft.irfft2(image_ft * np.conj(np.fft.rfft2(padded)), s=shape)


def template_score_map(
    micrograph: np.ndarray,
    template: np.ndarray,
    *,
    mask_radius: float | None = None,
    n_angles: int = 1,
) -> ScoreMap:
    """Normalised cross-correlation of a template at every box position (FFT, FLCF).

    Parameters
    ----------
    micrograph : (Y, X) ndarray
    template : (B, B) ndarray
        The reference box.
    mask_radius : float, optional
        Radius of the circular mask in pixels; default B/2 − 1.
    n_angles : int, default 1
        In-plane reference angles, evenly spaced over 360°; the map keeps the best one.

    Returns
    -------
    ScoreMap
        Step 1: the NCC (−1 … 1) of the box with top-left corner (i, j).

    Raises
    ------
    CryomlError
        If the template is not square or bigger than the micrograph.
    """
    data = check_array(micrograph, ndim=2, name="micrograph").astype(np.float64)
    template = check_array(template, ndim=2, name="template").astype(np.float64)
    box = template.shape[0]
    if template.shape[1] != box:
        raise CryomlError(f"the template must be square; got {template.shape}.")
    if min(data.shape) < box:
        raise CryomlError(f"micrograph {data.shape} is smaller than the {box}-px template.")
    if int(n_angles) != n_angles or n_angles < 1:
        raise CryomlError(f"'n_angles' must be a positive integer; got {n_angles!r}.")
    radius = box / 2 - 1 if mask_radius is None else check_positive(mask_radius, name="radius")
    yy, xx = np.mgrid[0:box, 0:box]
    mask = (np.hypot(yy - (box - 1) / 2, xx - (box - 1) / 2) <= radius).astype(np.float64)
    n_mask = mask.sum()
    data = (data - data.mean()) / (data.std() or 1.0)
    shape = data.shape
    image_ft = np.fft.rfft2(data)
    out_shape = (shape[0] - box + 1, shape[1] - box + 1)
    local_sum = _correlate(image_ft, mask, shape)[: out_shape[0], : out_shape[1]]
    local_sq = _correlate(np.fft.rfft2(data * data), mask, shape)[: out_shape[0], : out_shape[1]]
    variance = np.maximum(local_sq / n_mask - (local_sum / n_mask) ** 2, 1e-12)
    best = np.full(out_shape, -np.inf)
    for angle in np.arange(int(n_angles)) * 360.0 / int(n_angles):
        rotated = (
            ndimage.rotate(template, angle, reshape=False, order=1, mode="nearest")
            if angle
            else template
        )
        inside = rotated[mask > 0]
        normalised = (rotated - inside.mean()) / (inside.std() or 1.0) * mask
        correlation = _correlate(image_ft, normalised, shape)[: out_shape[0], : out_shape[1]]
        best = np.maximum(best, correlation / (n_mask * np.sqrt(variance)))
    return ScoreMap(best.astype(np.float32), 1, box, (0, 0), tuple(data.shape))


class TemplateMatcher(_PickingMixin):
    """Template-matching picker (FindEM / RELION autopick style) with DeepEM's peak picking.

    Parameters
    ----------
    box_size : int
        Box edge in pixels.
    n_angles : int, default 1
        Reference angles (1 suffices for a rotationally averaged reference).
    rotational_average : bool, default True
        Average the reference over rotations.
    mask_radius : float, optional
        Circular mask radius; default half the particle diameter + 2 px.
    particle_diameter : float, optional
        Default 2/3 of the box (as :class:`ParticlePicker`).
    min_distance : float, optional
        Default 0.5 × particle diameter (touching particles both kept).
    beta : float, default 2
    sd_quantiles : (float, float) or None, default (0.01, 0.99)

    Attributes
    ----------
    template_ : (B, B) ndarray
    sd_band_, threshold_, calibration_
        As for :class:`ParticlePicker`.
    """

    def __init__(
        self,
        box_size: int,
        *,
        n_angles: int = 1,
        rotational_average: bool = True,
        mask_radius: float | None = None,
        particle_diameter: float | None = None,
        min_distance: float | None = None,
        beta: float = 2.0,
        sd_quantiles: tuple[float, float] | None = (0.01, 0.99),
    ):
        self.box_size = box_size
        self.n_angles = n_angles
        self.rotational_average = rotational_average
        self.mask_radius = mask_radius
        self.particle_diameter = particle_diameter
        self.min_distance = min_distance
        self.beta = beta
        self.sd_quantiles = sd_quantiles

    @property
    def diameter(self) -> float:
        """Particle diameter in pixels."""
        if self.particle_diameter is not None:
            return check_positive(self.particle_diameter, name="particle_diameter")
        return 2.0 * self.box_size / 3.0

    def _check_fitted(self):
        if not hasattr(self, "template_"):
            raise CryomlError("this TemplateMatcher is not fitted yet; call fit() first.")

    def fit(self, micrographs, particles) -> TemplateMatcher:
        """Build the reference from the particle boxes of training micrographs.

        Parameters
        ----------
        micrographs : list of (Y, X) ndarray or Image
        particles : list of Particles or (N, 2) ndarray

        Returns
        -------
        self
        """
        from cryoml.picking._training import _as_centres, extract_boxes

        if int(self.box_size) != self.box_size or self.box_size < 4:
            raise CryomlError(f"'box_size' must be an integer >= 4; got {self.box_size!r}.")
        micrographs, particles = self._lists(micrographs, particles, "particles")
        boxes = []
        for index, (micrograph, centres) in enumerate(zip(micrographs, particles, strict=True)):
            data, _ = _image_of(micrograph, f"micrographs[{index}]")
            cut, _ = extract_boxes(
                normalise_micrograph(data), _as_centres(centres, "particles"), self.box_size
            )
            boxes.append(cut)
        boxes = np.concatenate(boxes)
        if len(boxes) == 0:
            raise CryomlError(
                "no particle box lies inside the micrographs; cannot make a template."
            )
        self.template_ = make_template(boxes, rotational_average=self.rotational_average)
        self.sd_band_ = (
            estimate_sd_band(boxes.reshape(len(boxes), -1).std(axis=1), quantiles=self.sd_quantiles)
            if self.sd_quantiles is not None
            else None
        )
        self.threshold_ = 0.2
        self.calibration_ = None
        return self

    def score(self, micrograph, *, method: str | None = None) -> ScoreMap:
        """NCC score map of one micrograph (``method`` is accepted and ignored)."""
        self._check_fitted()
        data, _ = _image_of(micrograph)
        radius = self.mask_radius if self.mask_radius is not None else self.diameter / 2 + 2
        radius = min(radius, self.box_size / 2 - 0.5)
        return template_score_map(data, self.template_, mask_radius=radius, n_angles=self.n_angles)
