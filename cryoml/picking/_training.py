"""The DeepEM particle picker as an estimator: train, recognise, choose the threshold, pick.

Training (Zhu et al. 2017): positive boxes (label 1) around particle centres and negative boxes
(label 0) elsewhere, each rotated by 0/90/180/270° (×4, the paper; ``augment="rotations"``) and
by default also mirrored (×8, ``augment="dihedral"``: on the notebook's QUICK set, 4 → 8 copies
raised test AP from 0.55 to 0.67 at the same settings), fitted by one of two recipes:

``"paper"``
    The paper's objective and optimiser: squared error E = 1/(2N) Σ (t − y)² minimised by plain
    mini-batch gradient descent with learning rate η = 1 (batch 50, 20 epochs for KLH).
``"modern"``
    Binary cross-entropy with Adam (learning rate 1e-3): the same network, trained the way one
    would today; usually converges in fewer epochs.

A held-out part of the boxes (``validation_fraction``, taken before augmentation so that no
rotation of a held-out box is trained on) gives the accuracy at threshold 0.5 that the paper
checks (≈ 95 % was its acceptable level); a held-out accuracy within 0.1 of chance raises a
:class:`~cryoml.CryomlWarning`. :meth:`ParticlePicker.refit_recursive` is the paper's
recursive training: verified true and false positives from new micrographs join the training
set and the network is trained again; :meth:`ParticlePicker.mine_hard_negatives` (or
``hard_negative_rounds``) automates it on fully labelled micrographs.

Recognition scores each micrograph (dense scorer by default, or the paper's raster scan), keeps
local maxima above the threshold, and drops boxes outside the pixel-s.d. band estimated from the
training positives. :meth:`ParticlePicker.calibrate_threshold` sets the threshold where F2
peaks on labelled micrographs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from cryoml._errors import CryomlError
from cryoml._keras_fit import keras_seed
from cryoml._validation import check_array, check_positive, check_random_state
from cryoml.io import Particles
from cryoml.picking._peaks import _PickingMixin, estimate_sd_band
from cryoml.picking._scoring import (
    ScoreMap,
    dense_score_map,
    grid_steps,
    normalise_micrograph,
    raster_score_map,
)

__all__ = ["RECIPES", "ParticlePicker", "extract_boxes", "sample_negatives"]

log = logging.getLogger(__name__)

RECIPES = {
    "paper": {
        "loss": "half squared error, 1/(2N) Σ (t − y)²",
        "optimizer": "SGD",
        "learning_rate": 1.0,
    },
    "modern": {
        "loss": "binary cross-entropy, classes weighted to count equally",
        "optimizer": "Adam",
        "learning_rate": 1e-3,
    },
}


# --- boxes ----------------------------------------------------------------------------------


def _as_image(micrograph, name: str = "micrograph") -> tuple[np.ndarray, float | None]:
    from cryoml.io import Image

    if isinstance(micrograph, Image):
        return check_array(micrograph.data, ndim=2, name=name), micrograph.voxel_size
    return check_array(micrograph, ndim=2, name=name), None


def _as_centres(item, name: str) -> np.ndarray:
    if isinstance(item, Particles):
        if item.ndim != 2:
            raise CryomlError(f"{name} must hold 2-D (Y, X) centres; got {item.ndim}-D.")
        return item.centres
    centres = np.asarray(item, dtype=float)
    if centres.size == 0:
        return np.zeros((0, 2))
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise CryomlError(f"{name} must be Particles or an (N, 2) array; got {centres.shape}.")
    return centres


def extract_boxes(
    micrograph: np.ndarray, centres: np.ndarray, box_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut square boxes around centres; boxes reaching outside the micrograph are skipped.

    The box of centre c spans [round(c − box/2), round(c − box/2) + box) on each axis (the
    EMAN2 .box convention: corner = centre − box/2).

    Parameters
    ----------
    micrograph : (Y, X) ndarray
    centres : (N, 2) ndarray
        Centres (Y, X) in pixels.
    box_size : int

    Returns
    -------
    boxes : (K, box, box) ndarray of float32
    kept : (K,) ndarray of int
        Indices of the centres whose box fitted.
    """
    data = check_array(micrograph, ndim=2, name="micrograph")
    centres = np.asarray(centres, dtype=float).reshape(-1, 2)
    corners = np.rint(centres - box_size / 2).astype(int)
    inside = np.all((corners >= 0) & (corners + box_size <= np.asarray(data.shape)), axis=1)
    kept = np.flatnonzero(inside)
    boxes = np.empty((len(kept), box_size, box_size), dtype=np.float32)
    for i, (y, x) in enumerate(corners[kept]):
        boxes[i] = data[y : y + box_size, x : x + box_size]
    return boxes, kept


def sample_negatives(
    shape: tuple[int, int],
    avoid: np.ndarray,
    n: int,
    *,
    box_size: int,
    min_distance: float,
    random_state=None,
) -> np.ndarray:
    """Random box centres at least ``min_distance`` from every centre in ``avoid``.

    Returns
    -------
    (K, 2) ndarray
        K <= n centres (fewer when the micrograph is crowded).
    """
    from scipy.spatial import cKDTree

    rng = check_random_state(random_state)
    avoid = np.asarray(avoid, dtype=float).reshape(-1, 2)
    tree = cKDTree(avoid) if len(avoid) else None
    low = box_size / 2
    high = np.asarray(shape, dtype=float) - box_size / 2 - 1
    if np.any(high <= low):
        return np.zeros((0, 2))
    out = np.zeros((0, 2))
    for _ in range(20):
        candidates = rng.uniform(low, high, size=(max(4 * n, 16), 2))
        if tree is not None:
            distance, _ = tree.query(candidates)
            candidates = candidates[distance >= min_distance]
        out = np.concatenate([out, candidates])[:n]
        if len(out) >= n:
            break
    return np.round(out)


def _rotations(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([np.rot90(boxes, k, axes=(1, 2)) for k in range(4)])


#: Training-box copies per augmentation choice.
AUGMENTATIONS = {"rotations": 4, "dihedral": 8}


def _augmented(boxes: np.ndarray, augment: str) -> np.ndarray:
    """The four rotations of each box, and with ``"dihedral"`` also of its mirror image."""
    turned = _rotations(boxes)
    if augment == "dihedral":
        return np.concatenate([turned, _rotations(boxes[:, :, ::-1])])
    return turned


# --- estimator ------------------------------------------------------------------------------


class ParticlePicker(_PickingMixin):
    """DeepEM particle picker (Zhu et al. 2017), scikit-learn style.

    Parameters
    ----------
    box_size : int, optional
        Box edge in pixels; required unless ``preset`` is given.
    preset : {"klh", "19s", "26s", "inflammasome"}, optional
        Network of the paper's Table 1 (sets the box size, kernels and pools).
    kernels, pools : tuple of 3 int, optional
        Override the network design; default :func:`cryoml.picking.preset_for_box`.
    maps : tuple of 3 int, optional
        Feature maps of C1, C3, C5; default (6, 12, 12), the paper's, or (16, 32, 32) for
        the wide network.
    architecture : {"paper", "wide"}, default "paper"
        ``"paper"``: DeepEM's network exactly (:func:`cryoml.picking.build_deepem_cnn`).
        ``"wide"``: the same kernels and pools with wider maps, batch normalisation, ReLU and a
        hidden layer (:func:`cryoml.picking.build_wide_cnn`); not the paper's.
    training : {"boxes", "micrographs"}, default "boxes"
        ``"boxes"``: the paper's training on positive and negative boxes. ``"micrographs"``:
        on random crops of the whole training micrographs, every box in them an example
        (see :mod:`cryoml.picking._micrograph_training`); every particle in the training
        micrographs must then be labelled, and ``negatives`` are not used. On the simulated
        KLH set at SNR 0.01, the wide network trained on micrographs picked with AP 0.70
        where the paper's network on boxes reached 0.34 (0.57 with hard-negative mining).
    micrograph_batch : int, default 16
        Crops per batch with ``training="micrographs"`` (each crop holds up to 12 × 12
        boxes); one epoch is enough batches to cover the training micrographs once, at
        least 50.
    recipe : {"modern", "paper"}, default "modern"
        Loss and optimiser (see :data:`RECIPES`).
    epochs : int, default 20
    batch_size : int, default 50
        The paper's batch of 50.
    learning_rate : float, optional
        Default from the recipe (paper: 1.0; modern: 1e-3).
    validation_fraction : float, default 0.1
        Share of boxes held out (before rotation) for the accuracy check at 0.5.
    negative_ratio : float, default 1.0
        Random negatives per positive when no negatives are given (the paper used 800 + 800).
    particle_diameter : float, optional
        In pixels; default 2/3 of the box. Sets the negative exclusion distance (one diameter),
        the picks' minimum distance (0.5 diameter) and the matching radius (0.5 diameter).
    min_distance : float, optional
        Smallest distance between picks (circular non-maximum suppression); default 0.5 ×
        particle diameter, which keeps touching particles.
    beta : float, default 2
        F-beta used to choose the threshold (the paper's F2).
    sd_quantiles : (float, float) or None, default (0.01, 0.99)
        Quantiles of the training positives' pixel s.d. that bound the s.d. band; None turns
        the filter off.
    scorer : {"dense", "raster"}, default "dense"
        How micrographs are scored.
    raster_step : int, default 20
        Box step of the raster scan (the paper's 20).
    dense_step : int, optional
        Grid step (pixels) of the dense scorer; must divide the network's stride (the product
        of its pools). Default: the stride (8 for the paper's network). A finer grid scores
        every micrograph (stride / step)² times, and puts a grid point nearer every particle:
        on notebook 04's QUICK micrographs, step 4 raised the AP from 0.724–0.768 to
        0.783–0.790 over three training seeds (``benchmarks/RESULTS.md``). Hard negatives are
        mined on the stride grid whatever this step.
    augment : {"dihedral", "rotations"}, default "dihedral"
        Copies of each training box: ``"rotations"`` is the paper's ×4 (0/90/180/270°);
        ``"dihedral"`` adds their mirror images (×8), which particles seen from either side
        of the ice also show, and doubles the updates per epoch on small sets.
    jitter : float, optional
        Largest shift (pixels, on each axis) of the extra, off-centre copies of every positive
        box. A network shown only exactly centred particles answers a particle 0.1 diameter
        off centre at about half strength, and the dense scorer sees most particles that far
        from its grid points (its step is the product of the pools): measured on the QUICK
        KLH set, AP 0.46 without copies and 0.75-0.77 with them. Default with the "modern"
        recipe: 0.1 × the particle diameter, at most half the grid step; with "paper": 0
        (centred boxes only, as published).
    jitter_copies : int, default 2
        Off-centre copies per positive when ``jitter`` > 0; the random negatives grow with
        them so that the classes stay balanced. Copies of one particle are held out together.
    hard_negative_rounds : int, default 0
        Rounds of hard-negative mining after the first training (the paper's recursive
        training, automated): the training micrographs are picked at score 0.5, picks farther
        than one diameter from every given particle become negatives, and training continues
        (``epochs`` // 2 more). Only for micrographs whose particles are *all* labelled;
        unlabelled particles would be taught as background. Used by :meth:`fit` only.
    random_state : None, int or Generator
    progress : bool, default True
        Progress bars.

    Attributes
    ----------
    model_ : keras.Model
        The trained classifier.
    architecture_ : DeepEMArchitecture
    history_ : dict
        Keras training history (loss, accuracy, val_loss, val_accuracy per epoch).
    validation_accuracy_ : float
        Held-out balanced accuracy at threshold 0.5: the mean of the accuracies on held-out
        particle boxes and on held-out background boxes (chance 0.5 whatever their ratio),
        four rotations of each box as given (shifted copies are not scored). Always on boxes
        of the first round, so rounds of recursive training compare.
    hard_negative_accuracy_ : float
        Share of held-out negatives added by later rounds (mined or flagged false picks)
        scored below 0.5; NaN before such a round. These are the hardest boxes by design
        (the network called them particles), so this is lower than the balanced accuracy.
    sd_band_ : (float, float) or None
    threshold_ : float
        Score threshold (0.5 until :meth:`calibrate_threshold`).
    calibration_ : dict or None
        Threshold, precision, recall and F-beta on the calibration set.
    training_boxes_ : (N, box, box) ndarray, training_labels_ : (N,) ndarray
        Un-rotated boxes trained on (including held-out ones), kept for recursive training;
        None with ``training="micrographs"``.
    pixel_size_ : float or None
        Pixel size (Å) of the training micrographs when known.
    """

    def __init__(
        self,
        box_size: int | None = None,
        *,
        preset: str | None = None,
        kernels: tuple[int, int, int] | None = None,
        pools: tuple[int, int, int] | None = None,
        maps: tuple[int, int, int] | None = None,
        architecture: str = "paper",
        training: str = "boxes",
        micrograph_batch: int = 16,
        recipe: str = "modern",
        epochs: int = 20,
        batch_size: int = 50,
        learning_rate: float | None = None,
        validation_fraction: float = 0.1,
        negative_ratio: float = 1.0,
        particle_diameter: float | None = None,
        min_distance: float | None = None,
        beta: float = 2.0,
        sd_quantiles: tuple[float, float] | None = (0.01, 0.99),
        scorer: str = "dense",
        raster_step: int = 20,
        dense_step: int | None = None,
        augment: str = "dihedral",
        jitter: float | None = None,
        jitter_copies: int = 2,
        hard_negative_rounds: int = 0,
        random_state: int | np.random.Generator | None = None,
        progress: bool = True,
    ):
        self.box_size = box_size
        self.preset = preset
        self.kernels = kernels
        self.pools = pools
        self.maps = maps
        self.architecture = architecture
        self.training = training
        self.micrograph_batch = micrograph_batch
        self.recipe = recipe
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.negative_ratio = negative_ratio
        self.particle_diameter = particle_diameter
        self.min_distance = min_distance
        self.beta = beta
        self.sd_quantiles = sd_quantiles
        self.scorer = scorer
        self.raster_step = raster_step
        self.dense_step = dense_step
        self.augment = augment
        self.jitter = jitter
        self.jitter_copies = jitter_copies
        self.hard_negative_rounds = hard_negative_rounds
        self.random_state = random_state
        self.progress = progress

    # --- parameters -------------------------------------------------------------------------

    def _validate_parameters(self):
        from cryoml.picking.models import PRESETS, _resolve, preset_for_box

        if self.preset is not None:
            if self.preset not in PRESETS:
                raise CryomlError(
                    f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}."
                )
            base = PRESETS[self.preset]
            if self.box_size is not None and self.box_size != base.box_size:
                raise CryomlError(
                    f"preset {self.preset!r} is for {base.box_size}-px boxes; got box_size="
                    f"{self.box_size}. Drop one of the two, or pass kernels and pools."
                )
        elif self.box_size is None:
            raise CryomlError("ParticlePicker needs 'box_size' or a 'preset'.")
        else:
            base = preset_for_box(self.box_size)
        architecture = _resolve(
            base.box_size,
            self.kernels or base.kernels,
            self.pools or base.pools,
            self.maps,
            self.architecture,
        )
        if self.training not in ("boxes", "micrographs"):
            raise CryomlError(
                f"'training' must be 'boxes' or 'micrographs'; got {self.training!r}."
            )
        if self.training == "micrographs" and self.hard_negative_rounds:
            raise CryomlError(
                "hard_negative_rounds applies to training='boxes'; training='micrographs' "
                "already teaches every unlabelled place of the micrographs as background."
            )
        if self.recipe not in RECIPES:
            raise CryomlError(f"unknown recipe {self.recipe!r}; choose 'modern' or 'paper'.")
        if self.augment not in AUGMENTATIONS:
            raise CryomlError(
                f"unknown augment {self.augment!r}; choose one of {sorted(AUGMENTATIONS)}."
            )
        if int(self.hard_negative_rounds) != self.hard_negative_rounds or (
            self.hard_negative_rounds < 0
        ):
            raise CryomlError(
                "'hard_negative_rounds' must be a whole number >= 0; got "
                f"{self.hard_negative_rounds!r}."
            )
        if self.scorer not in ("dense", "raster"):
            raise CryomlError(f"'scorer' must be 'dense' or 'raster'; got {self.scorer!r}.")
        for name in ("epochs", "batch_size", "raster_step", "dense_step", "micrograph_batch"):
            value = getattr(self, name)
            if value is None and name == "dense_step":
                continue
            if int(value) != value or value < 1:
                raise CryomlError(f"'{name}' must be a positive integer; got {value!r}.")
        if not 0 <= self.validation_fraction < 1:
            raise CryomlError(
                f"'validation_fraction' must be in [0, 1); got {self.validation_fraction!r}."
            )
        check_positive(self.negative_ratio, name="negative_ratio", allow_zero=True)
        if self.jitter is not None:
            check_positive(self.jitter, name="jitter", allow_zero=True)
        if int(self.jitter_copies) != self.jitter_copies or self.jitter_copies < 0:
            raise CryomlError(
                f"'jitter_copies' must be a whole number >= 0; got {self.jitter_copies!r}."
            )
        check_positive(self.beta, name="beta")
        if self.learning_rate is not None:
            check_positive(self.learning_rate, name="learning_rate")
        stride = architecture.stride
        if self.dense_step is not None and stride % int(self.dense_step):
            raise CryomlError(
                f"'dense_step' {self.dense_step} must divide the network's stride ({stride}, the "
                f"product of its pools): choose one of {grid_steps(stride)}."
            )
        return architecture

    @property
    def diameter(self) -> float:
        """Particle diameter in pixels (``particle_diameter`` or 2/3 of the box)."""
        if self.particle_diameter is not None:
            return check_positive(self.particle_diameter, name="particle_diameter")
        box = self.architecture_.box_size if hasattr(self, "architecture_") else self.box_size
        if box is None:
            from cryoml.picking.models import PRESETS

            box = PRESETS[self.preset].box_size
        return 2.0 * box / 3.0

    @property
    def jitter_(self) -> float:
        """The positive boxes' largest shift in pixels (``jitter`` or its default)."""
        if self.jitter is not None:
            return float(self.jitter)
        if self.recipe == "paper":
            return 0.0
        return min(self.architecture_.stride / 2.0, 0.1 * self.diameter)

    def get_params(self) -> dict:
        """The constructor's parameters as set now (a new, unfitted picker takes them back)."""
        return {
            k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")
        }

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise CryomlError(
                "this ParticlePicker is not fitted yet; call fit() first or load() a saved one."
            )

    # --- training ---------------------------------------------------------------------------

    def fit(
        self,
        micrographs,
        particles,
        negatives=None,
        *,
        callbacks: list | None = None,
    ) -> ParticlePicker:
        """Train on boxes cut from micrographs around particle (and non-particle) centres.

        Parameters
        ----------
        micrographs : list of (Y, X) ndarray or cryoml.io.Image
            Training micrographs (a single one is accepted too).
        particles : list of Particles or (N, 2) ndarray
            Particle centres (Y, X) per micrograph: the positives.
        negatives : list of Particles or (N, 2) ndarray, optional
            Non-particle centres per micrograph. Default: ``negative_ratio`` × the positives,
            at random at least one particle diameter from every positive.
        callbacks : list of keras.callbacks.Callback, optional
            More Keras callbacks for ``model.fit`` (for example
            :meth:`cryoml.widgets.TrainingMonitor.callback`).

        Returns
        -------
        self

        Raises
        ------
        CryomlError
            For invalid parameters, mismatched lists, or no boxes inside the micrographs.
        """
        self.architecture_ = self._validate_parameters()
        rng = check_random_state(self.random_state)
        self._rng = rng
        micrographs, particles = self._lists(micrographs, particles, "particles")
        if self.training == "micrographs":
            if negatives is not None:
                raise CryomlError(
                    "training='micrographs' takes no negatives: every place of the training "
                    "micrographs farther than half a diameter from a labelled particle is "
                    "background. Drop 'negatives', or use training='boxes'."
                )
            self._fit_micrographs(micrographs, particles, rng, callbacks=callbacks)
            self.hard_negative_counts_ = []
            return self
        if negatives is not None:
            _, negatives = self._lists(micrographs, negatives, "negatives")
        boxes, labels, groups, copies, pixel_size = self._collect(
            micrographs, particles, negatives, rng
        )
        self.pixel_size_ = pixel_size
        self._validation_mask = None
        self._copy_mask = copies
        self._n_given = len(labels)
        self._fit_boxes(boxes, labels, rng, callbacks=callbacks, groups=groups)
        self.hard_negative_counts_ = []
        if self.hard_negative_rounds:
            self.mine_hard_negatives(
                micrographs, particles, negatives, rounds=int(self.hard_negative_rounds),
                callbacks=callbacks,
            )
        return self

    def mine_hard_negatives(
        self,
        micrographs,
        particles,
        negatives=None,
        *,
        rounds: int = 1,
        epochs: int | None = None,
        callbacks: list | None = None,
    ) -> ParticlePicker:
        """Hard-negative mining: the paper's recursive training, automated on labelled data.

        The micrographs are picked at score 0.5; picks farther than one particle diameter from
        every given particle (and negative) are false picks, and the highest-scoring of them
        (up to ``negative_ratio`` × the positives) join the negatives; training then continues
        from the current weights. Every particle of these micrographs must be labelled, or
        unlabelled particles are taught as background.

        Parameters
        ----------
        micrographs : list of (Y, X) ndarray or Image
            Usually the training micrographs.
        particles : list of Particles or (N, 2) ndarray
            All particle centres per micrograph.
        negatives : list of Particles or (N, 2) ndarray, optional
            Known non-particle centres (not mined again).
        rounds : int, default 1
        epochs : int, optional
            Epochs per round; default ``epochs`` // 2.
        callbacks : list of keras.callbacks.Callback, optional

        Returns
        -------
        self
            With ``hard_negative_counts_`` (boxes added per round).
        """
        self._check_fitted()
        self._check_box_trained("mine_hard_negatives")
        micrographs, particles = self._lists(micrographs, particles, "particles")
        if negatives is not None:
            _, negatives = self._lists(micrographs, negatives, "negatives")
        rng = getattr(self, "_rng", None) or check_random_state(self.random_state)
        counts = getattr(self, "hard_negative_counts_", [])
        for _ in range(int(rounds)):
            hard = self._hard_negatives(micrographs, particles, negatives)
            counts.append(len(hard))
            log.info("hard-negative mining: %d false picks become negatives", len(hard))
            if len(hard) == 0:
                break
            self._fit_boxes(
                np.concatenate([self.training_boxes_, hard]),
                np.concatenate([self.training_labels_, np.zeros(len(hard), np.float32)]),
                rng,
                warm_start=True,
                callbacks=callbacks,
                epochs=epochs or max(1, int(self.epochs) // 2),
            )
        self.hard_negative_counts_ = counts
        return self

    def _check_box_trained(self, method: str) -> None:
        if self.training == "boxes" and getattr(self, "training_boxes_", None) is None:
            raise CryomlError(
                f"{method} continues training on the boxes this picker was trained on, and "
                "a loaded picker does not keep them: train it again with fit()."
            )
        if self.training == "micrographs":
            raise CryomlError(
                f"{method} continues training on boxes, and this picker was trained on whole "
                "micrographs (training='micrographs'). Correct the particle lists and call "
                "fit() again on the micrographs, or train with training='boxes'."
            )

    def _fit_micrographs(self, micrographs, particles, rng, *, callbacks=None) -> None:
        """Train the network's fully convolutional form on crops of whole micrographs."""
        from cryoml.picking import _micrograph_training as crops
        from cryoml.picking.models import build_deepem_dense, build_wide_dense

        arch = self.architecture_
        box, stride, diameter = arch.box_size, arch.stride, self.diameter
        images, centres, pixel_sizes = [], [], set()
        for index, (micrograph, positive) in enumerate(zip(micrographs, particles, strict=True)):
            data, pixel_size = _as_image(micrograph, f"micrographs[{index}]")
            if pixel_size is not None:
                pixel_sizes.add(round(float(pixel_size), 4))
            images.append(normalise_micrograph(data))
            centres.append(_as_centres(positive, f"particles[{index}]"))
        if len(pixel_sizes) > 1:
            raise CryomlError(
                f"training micrographs have different pixel sizes {sorted(pixel_sizes)} Å; "
                "resample them to one pixel size first."
            )
        self.pixel_size_ = pixel_sizes.pop() if pixel_sizes else None
        # Held out: a share of the particles and as many background places, each with no
        # loss within half a diameter, so that the accuracy check sees boxes not trained on.
        train, held_pos, held_neg, ignored = [], [], [], []
        for image, points in zip(images, centres, strict=True):
            hold = rng.random(len(points)) < self.validation_fraction
            background = sample_negatives(
                image.shape, points, int(hold.sum()), box_size=box, min_distance=diameter,
                random_state=rng,
            ) if hold.any() else np.empty((0, 2))
            train.append(points[~hold])
            held_pos.append(extract_boxes(image, points[hold], box)[0])
            held_neg.append(extract_boxes(image, background, box)[0])
            ignored.append(np.concatenate([points[hold], background]))
        positives = np.concatenate(
            [extract_boxes(image, points, box)[0] for image, points in zip(images, train,
                                                                          strict=True)])
        if len(positives) == 0:
            raise CryomlError(
                f"no labelled particle lies a half box ({box // 2} px) inside its micrograph; "
                "check that the coordinates belong to these micrographs (pixel size, binning, "
                "x/y order) and the box size."
            )
        self.sd_band_ = (
            estimate_sd_band(positives.reshape(len(positives), -1).std(axis=1),
                             quantiles=self.sd_quantiles)
            if self.sd_quantiles is not None else None
        )
        batch = int(self.micrograph_batch)
        grid = crops.crop_grid([image.shape for image in images], box, stride)
        steps = crops.steps_per_epoch([image.shape for image in images], grid, stride, batch)
        dataset = crops.make_crop_dataset(
            images, train, ignored, box=box, stride=stride, diameter=diameter, batch=batch,
            steps=steps, rng=rng,
        )
        import keras

        with keras_seed(int(rng.integers(2**31 - 1))):
            self.model_ = self._build_classifier()
            if arch.network == "wide":
                dense = build_wide_dense(self.model_)
            else:
                dense = build_deepem_dense(self.model_)
            rate = self.learning_rate or RECIPES[self.recipe]["learning_rate"]
            optimizer = (keras.optimizers.SGD(learning_rate=rate) if self.recipe == "paper"
                         else keras.optimizers.Adam(learning_rate=rate))
            dense.compile(optimizer=optimizer, loss=crops.balanced_loss(self.recipe))
            epochs = int(self.epochs)
            progress = _ProgressCallback(epochs, self.progress)
            try:
                history = dense.fit(dataset, epochs=epochs, verbose=0,
                                    callbacks=[progress, *(callbacks or [])])
                self.history_ = {k: [float(v) for v in vals]
                                 for k, vals in history.history.items()}
            except KeyboardInterrupt:
                log.warning("training interrupted after %d epochs; the model keeps the "
                            "weights so far", progress.done)
                self.history_ = progress.history
            if arch.network == "paper":
                # build_deepem_dense copies the output layer into a convolution: copy back.
                kernel, bias = dense.get_layer("output_conv").get_weights()
                self.model_.get_layer("output").set_weights(
                    [kernel.reshape(-1, 1), bias])
        self.training_boxes_ = None
        self.training_labels_ = None
        held_pos, held_neg = np.concatenate(held_pos), np.concatenate(held_neg)
        self.hard_negative_accuracy_ = float("nan")
        if len(held_pos) and len(held_neg):
            labels = np.concatenate([np.ones(len(held_pos)), np.zeros(len(held_neg))])
            boxes = np.concatenate([held_pos, held_neg])
            scores = self._predict(_rotations(boxes)[..., None])
            right = (scores >= 0.5) == (np.tile(labels, 4) == 1)
            self.validation_accuracy_ = float(
                np.mean([right[np.tile(labels, 4) == c].mean() for c in (0, 1)]))
            log.info("held-out accuracy at 0.5: %.3f", self.validation_accuracy_)
            self._warn_if_at_chance(np.tile(labels, 4))
        else:
            self.validation_accuracy_ = float("nan")
        if not hasattr(self, "threshold_"):
            self.threshold_ = 0.5
            self.calibration_ = None

    def _build_classifier(self):
        from cryoml.picking.models import build_deepem_cnn, build_wide_cnn

        arch = self.architecture_
        build = build_wide_cnn if arch.network == "wide" else build_deepem_cnn
        return build(arch.box_size, kernels=arch.kernels, pools=arch.pools, maps=arch.maps)

    def _hard_negatives(self, micrographs, particles, negatives) -> np.ndarray:
        """Boxes of the picks above 0.5 on the training micrographs that match no particle."""
        from scipy.spatial import cKDTree

        box = self.architecture_.box_size
        n_positive = int(self.training_labels_.sum())
        found, scores = [], []
        for index, micrograph in enumerate(micrographs):
            raw = _as_image(micrograph)[0]
            data = normalise_micrograph(raw)
            score_map = None
            if self.scorer == "dense" and self.dense_step is not None:
                # Mined on the network's own grid: on notebook 04's micrographs, mining on a
                # step-4 grid gave AP 0.739-0.754 (three seeds) against 0.783-0.790 when the
                # same pickers mined on the stride grid and scored at step 4 afterwards. Why
                # is not established.
                score_map = dense_score_map(self.model_, raw, progress=False)
            picks = self.candidates(micrograph, score_map=score_map)
            picks = picks.subset(picks.scores >= 0.5)
            known = [_as_centres(particles[index], "particles")]
            if negatives is not None:
                known.append(_as_centres(negatives[index], "negatives"))
            known = np.concatenate(known)
            centres = picks.centres
            if len(known) and len(centres):
                distance, _ = cKDTree(known).query(centres)
                centres = centres[distance > self.diameter]
                kept_scores = picks.scores[distance > self.diameter]
            else:
                kept_scores = picks.scores
            boxes, kept = extract_boxes(data, np.round(centres), box)
            found.append(boxes)
            scores.append(np.asarray(kept_scores)[kept])
        boxes, scores = np.concatenate(found), np.concatenate(scores)
        limit = max(1, round(self.negative_ratio * n_positive))
        return boxes[np.argsort(-scores, kind="stable")[:limit]]

    def fit_boxes(
        self, boxes: np.ndarray, labels: np.ndarray, *, callbacks: list | None = None
    ) -> ParticlePicker:
        """Train from ready-cut boxes (normalised as the micrographs they come from).

        Parameters
        ----------
        boxes : (N, box, box) ndarray
        labels : (N,) array_like of 0/1
        callbacks : list of keras.callbacks.Callback, optional
            More Keras callbacks for ``model.fit``.

        Returns
        -------
        self
        """
        self.architecture_ = self._validate_parameters()
        boxes, labels = self._check_boxes(boxes, labels)
        rng = check_random_state(self.random_state)
        self._rng = rng
        self.pixel_size_ = None
        self._validation_mask = None
        self._copy_mask = None
        self._n_given = len(labels)
        return self._fit_boxes(boxes, labels, rng, callbacks=callbacks)

    def _check_boxes(self, boxes, labels):
        box = self.architecture_.box_size
        boxes = check_array(boxes, ndim=3, name="boxes").astype(np.float32)
        if boxes.shape[1:] != (box, box):
            raise CryomlError(f"boxes must be (N, {box}, {box}); got {boxes.shape}.")
        labels = np.asarray(labels).ravel().astype(np.float32)
        if labels.shape != (len(boxes),) or not np.all(np.isin(labels, (0, 1))):
            raise CryomlError("labels must be one 0 or 1 per box.")
        if len(np.unique(labels)) < 2:
            raise CryomlError("training needs both positive (1) and negative (0) boxes.")
        return boxes, labels

    def _collect(self, micrographs, particles, negatives, rng):
        box = self.architecture_.box_size
        all_boxes, all_labels, all_groups, all_copies, pixel_sizes = [], [], [], [], set()
        n_groups = 0
        jitter = int(np.floor(self.jitter_))
        copies = int(self.jitter_copies) if jitter > 0 else 0
        n_skipped = 0
        off_edge: list[str] = []
        for index, (micrograph, positive) in enumerate(zip(micrographs, particles, strict=True)):
            data, pixel_size = _as_image(micrograph, f"micrographs[{index}]")
            if pixel_size is not None:
                pixel_sizes.add(round(float(pixel_size), 4))
            data = normalise_micrograph(data)
            centres = _as_centres(positive, f"particles[{index}]")
            pos_boxes, kept = extract_boxes(data, centres, box)
            n_skipped += len(centres) - len(kept)
            pos_groups = n_groups + kept
            shifted_boxes, shifted_groups = [pos_boxes], [pos_groups]
            for _ in range(copies):
                shift = rng.integers(-jitter, jitter + 1, size=centres[kept].shape)
                moved, moved_kept = extract_boxes(data, centres[kept] + shift, box)
                shifted_boxes.append(moved)
                shifted_groups.append(pos_groups[moved_kept])
            all_copies += [np.arange(sum(map(len, shifted_boxes))) >= len(pos_boxes)]
            pos_boxes = np.concatenate(shifted_boxes)
            pos_groups = np.concatenate(shifted_groups)
            n_groups += len(centres)
            name = getattr(micrograph, "path", None) or f"micrographs[{index}]"
            off_edge.append(f"{name} ({data.shape[1]}x{data.shape[0]} px): "
                            f"{len(centres) - len(kept)} of {len(centres)} positive boxes off")
            if negatives is None:
                n_neg = round(self.negative_ratio * len(centres) * (1 + copies))
                neg_centres = sample_negatives(
                    data.shape,
                    centres,
                    n_neg,
                    box_size=box,
                    min_distance=self.diameter,
                    random_state=rng,
                )
            else:
                neg_centres = _as_centres(negatives[index], f"negatives[{index}]")
            neg_boxes, neg_kept = extract_boxes(data, neg_centres, box)
            n_skipped += len(neg_centres) - len(neg_kept)
            all_boxes += [pos_boxes, neg_boxes]
            all_labels += [np.ones(len(pos_boxes)), np.zeros(len(neg_boxes))]
            all_groups += [pos_groups, n_groups + np.arange(len(neg_boxes))]
            all_copies += [np.zeros(len(neg_boxes), dtype=bool)]
            n_groups += len(neg_boxes)
        if n_skipped:
            log.info("%d boxes reach outside their micrograph and were skipped", n_skipped)
        boxes = np.concatenate(all_boxes)
        labels = np.concatenate(all_labels).astype(np.float32)
        if len(np.unique(labels)) < 2:
            raise CryomlError(
                "training needs both positive and negative boxes inside the micrographs; got "
                f"{int(labels.sum())} positive and {int((1 - labels).sum())} negative. Boxes "
                f"of {box} px whose centres lie within {box // 2} px of an edge fall off: "
                f"{'; '.join(off_edge[:5])}. Check that the coordinates belong to these "
                "micrographs (pixel size, binning, x/y order) and the box size."
            )
        if len(pixel_sizes) > 1:
            raise CryomlError(
                f"training micrographs have different pixel sizes {sorted(pixel_sizes)} Å; "
                "resample them to one pixel size first."
            )
        groups = np.concatenate(all_groups).astype(np.int64)
        copies = np.concatenate(all_copies)
        return boxes, labels, groups, copies, (pixel_sizes.pop() if pixel_sizes else None)

    def _fit_boxes(
        self,
        boxes,
        labels,
        rng,
        *,
        warm_start: bool = False,
        callbacks=None,
        epochs=None,
        groups=None,
    ) -> ParticlePicker:
        positives = boxes[labels == 1]
        if self.sd_quantiles is not None:
            self.sd_band_ = estimate_sd_band(
                positives.reshape(len(positives), -1).std(axis=1), quantiles=self.sd_quantiles
            )
        else:
            self.sd_band_ = None
        self.training_boxes_ = boxes
        self.training_labels_ = labels
        self._train(
            boxes,
            labels,
            rng,
            warm_start=warm_start,
            callbacks=callbacks,
            epochs=epochs,
            groups=groups,
        )
        if not hasattr(self, "threshold_"):
            self.threshold_ = 0.5
            self.calibration_ = None
        return self

    def _split(self, labels, rng, groups=None):
        """Held-out mask; boxes held out in an earlier round of this fit stay held out."""
        previous = getattr(self, "_validation_mask", None)
        if previous is not None and len(previous) <= len(labels):
            new = self._split_fresh(labels[len(previous) :], rng)
            validation = np.concatenate([previous, new])
        else:
            validation = self._split_fresh(labels, rng, groups)
        self._validation_mask = validation
        return validation

    def _split_fresh(self, labels, rng, groups=None):
        """Hold out ``validation_fraction`` of each label's groups (a box and its shifted
        copies form one group, so no copy of a held-out particle is trained on)."""
        n = len(labels)
        if groups is None:
            groups = np.arange(n)
        validation = np.zeros(n, dtype=bool)
        if self.validation_fraction > 0:
            for value in (0, 1):
                members = np.unique(groups[labels == value])
                n_val = round(self.validation_fraction * len(members))
                if 0 < n_val < len(members):
                    chosen = rng.choice(members, n_val, replace=False)
                    validation[np.isin(groups, chosen) & (labels == value)] = True
        return validation

    def _compile(self, model):
        import keras
        from keras import ops

        rate = self.learning_rate or RECIPES[self.recipe]["learning_rate"]
        if self.recipe == "paper":

            def half_squared_error(y_true, y_pred):
                return 0.5 * ops.mean(ops.square(y_true - y_pred), axis=-1)

            model.compile(
                optimizer=keras.optimizers.SGD(learning_rate=rate),
                loss=half_squared_error,
                metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.5)],
            )
        else:
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=rate),
                loss=keras.losses.BinaryCrossentropy(),
                metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.5)],
            )

    def _train(
        self, boxes, labels, rng, *, warm_start: bool, callbacks=None, epochs=None, groups=None
    ):

        with keras_seed(int(rng.integers(2**31 - 1))):
            if not (warm_start and hasattr(self, "model_")):
                self.model_ = self._build_classifier()
            self._compile(self.model_)
            validation = self._split(labels, rng, groups)
            augment = getattr(self, "augment", "rotations")
            train_x = _augmented(boxes[~validation], augment)[..., None]
            train_y = np.tile(labels[~validation], AUGMENTATIONS[augment])
            order = rng.permutation(len(train_y))
            train_x, train_y = train_x[order], train_y[order]
            # Held-out accuracy is measured on boxes as they were given: shifted copies of held-out
            # particles are neither trained on nor scored.
            copies = np.zeros(len(labels), dtype=bool)
            known = getattr(self, "_copy_mask", None)
            if known is not None and len(known) <= len(labels):
                copies[: len(known)] = known
            scored = validation & ~copies
            # The held-out check stays on the first round's boxes (particles and background as
            # given), so rounds compare; negatives added later (mined or flagged false picks,
            # chosen *because* the network called them particles) are scored on their own.
            given = (np.arange(len(labels)) < getattr(self, "_n_given", len(labels))) | (
                labels == 1)
            added = scored & ~given
            scored = scored & given
            validation_data = None
            if scored.any():
                validation_data = (
                    _rotations(boxes[scored])[..., None],
                    np.tile(labels[scored], 4),
                )
            epochs = int(self.epochs if epochs is None else epochs)
            callbacks = [_ProgressCallback(epochs, self.progress), *(callbacks or [])]
            class_weight = None
            if self.recipe == "modern":
                # Hard-negative rounds add negatives without positives; unweighted, the network
                # then leans to "background" and held-out positives fell to 0.5 accuracy.
                counts = np.bincount(train_y.astype(int), minlength=2)
                if counts.min() > 0:
                    class_weight = {c: len(train_y) / (2.0 * counts[c]) for c in (0, 1)}
            try:
                history = self.model_.fit(
                    train_x,
                    train_y,
                    batch_size=int(self.batch_size),
                    epochs=epochs,
                    validation_data=validation_data,
                    shuffle=True,
                    verbose=0,
                    callbacks=callbacks,
                    class_weight=class_weight,
                )
                self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
            except KeyboardInterrupt:
                log.warning(
                    "training interrupted after %d epochs; the model keeps the weights so far",
                    callbacks[0].done,
                )
                self.history_ = callbacks[0].history
            if validation_data is not None:
                scores = self._predict(validation_data[0])
                right = (scores >= 0.5) == (validation_data[1] == 1)
                # Balanced: hard-negative rounds add negatives only, and a plain accuracy would
                # then reward answering "background" everywhere.
                self.validation_accuracy_ = float(
                    np.mean([right[validation_data[1] == c].mean() for c in (0, 1)
                             if np.any(validation_data[1] == c)])
                )
            else:
                self.validation_accuracy_ = float("nan")
            self.hard_negative_accuracy_ = float("nan")
            if added.any():
                scores = self._predict(_rotations(boxes[added])[..., None])
                self.hard_negative_accuracy_ = float(np.mean(scores < 0.5))
            log.info("held-out accuracy at 0.5: %.3f", self.validation_accuracy_)
            if validation_data is not None:
                self._warn_if_at_chance(validation_data[1])

    def _warn_if_at_chance(self, held_out_labels: np.ndarray) -> None:
        """Warn when the held-out balanced accuracy is within 0.1 of chance (0.5): the
        network did not learn to tell particles from background."""
        import warnings

        from cryoml._errors import CryomlWarning

        chance = 0.5
        if self.validation_accuracy_ < chance + 0.1:
            n = len(held_out_labels) // 4
            warnings.warn(
                f"ParticlePicker: held-out accuracy {self.validation_accuracy_:.3f} is near "
                f"chance ({chance:.3f}) on {n} held-out boxes: the network did not learn to "
                "tell particles from background, and its picks mean little. Give more "
                "boxed particles (a few hundred), train more epochs, or check that the "
                "coordinates sit on the particles (box size, Y/X order, binning).",
                CryomlWarning,
                stacklevel=5,
            )

    def refit_recursive(
        self,
        micrographs,
        true_picks,
        false_picks,
        *,
        warm_start: bool = False,
        callbacks: list | None = None,
    ) -> ParticlePicker:
        """Recursive training: add verified picks from new micrographs and train again.

        The paper's step 7: true positives join the positives and false positives the
        negatives; the network is then trained again on the enlarged set (from new random
        weights unless ``warm_start``). The threshold is kept; calibrate it again afterwards.

        Parameters
        ----------
        micrographs : list of (Y, X) ndarray or Image
            The new micrographs.
        true_picks, false_picks : list of Particles or (N, 2) ndarray
            Verified picks per micrograph (see :func:`cryoml.picking.split_picks`).
        warm_start : bool, default False
            Continue from the current weights instead of starting afresh.
        callbacks : list of keras.callbacks.Callback, optional
            More Keras callbacks for ``model.fit`` (for example
            :meth:`cryoml.widgets.TrainingMonitor.callback`).

        Returns
        -------
        self
        """
        self._check_fitted()
        self._check_box_trained("refit_recursive")
        micrographs, true_picks = self._lists(micrographs, true_picks, "true_picks")
        _, false_picks = self._lists(micrographs, false_picks, "false_picks")
        box = self.architecture_.box_size
        new_boxes, new_labels = [self.training_boxes_], [self.training_labels_]
        for index, micrograph in enumerate(micrographs):
            data, _ = _as_image(micrograph, f"micrographs[{index}]")
            data = normalise_micrograph(data)
            for picks, label in ((true_picks[index], 1.0), (false_picks[index], 0.0)):
                boxes, _ = extract_boxes(data, _as_centres(picks, "picks"), box)
                new_boxes.append(boxes)
                new_labels.append(np.full(len(boxes), label, dtype=np.float32))
        added = sum(len(b) for b in new_boxes[1:])
        log.info("recursive training: %d verified boxes added", added)
        rng = getattr(self, "_rng", None) or check_random_state(self.random_state)
        return self._fit_boxes(
            np.concatenate(new_boxes),
            np.concatenate(new_labels),
            rng,
            warm_start=warm_start,
            callbacks=callbacks,
        )

    # --- recognition ------------------------------------------------------------------------

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.model_.predict(batch, batch_size=256, verbose=0)
        return np.asarray(out, dtype=np.float32).ravel()

    def predict_boxes(self, boxes: np.ndarray, *, rotations: bool = True) -> np.ndarray:
        """Particle scores of boxes: the mean over their four rotations (the paper).

        Parameters
        ----------
        boxes : (N, box, box) ndarray
            Boxes from a micrograph normalised by :func:`normalise_micrograph`.
        rotations : bool, default True

        Returns
        -------
        (N,) ndarray of float32
        """
        self._check_fitted()
        box = self.architecture_.box_size
        boxes = check_array(boxes, ndim=3, name="boxes").astype(np.float32)
        if boxes.shape[1:] != (box, box):
            raise CryomlError(f"boxes must be (N, {box}, {box}); got {boxes.shape}.")
        if not rotations:
            return self._predict(boxes[..., None])
        return self._predict(_rotations(boxes)[..., None]).reshape(4, len(boxes)).mean(axis=0)

    def _check_pixel_size(self, pixel_size, override):
        from cryoml.io import check_voxel_size_match

        if pixel_size is not None and getattr(self, "pixel_size_", None) is not None:
            check_voxel_size_match(
                self.pixel_size_, pixel_size, what="this particle picker", override=override
            )

    def score(
        self,
        micrograph,
        *,
        method: str | None = None,
        override_pixel_size: bool = False,
    ) -> ScoreMap:
        """Score map of one micrograph.

        Parameters
        ----------
        micrograph : (Y, X) ndarray or Image
        method : {"dense", "raster"}, optional
            Default: the ``scorer`` parameter.
        override_pixel_size : bool, default False
            Score an Image whose pixel size differs from the training micrographs'.

        Returns
        -------
        ScoreMap
        """
        self._check_fitted()
        data, pixel_size = _as_image(micrograph)
        self._check_pixel_size(pixel_size, override_pixel_size)
        method = method or self.scorer
        if method == "dense":
            return dense_score_map(self.model_, data, step=self.dense_step,
                                   progress=self.progress)
        if method == "raster":
            return raster_score_map(
                self.model_, data, step=self.raster_step, progress=self.progress
            )
        raise CryomlError(f"'method' must be 'dense' or 'raster'; got {method!r}.")

    # --- persistence ------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Save the network to ``path`` (.keras) and its settings to ``path`` + ``.json``.

        Raises
        ------
        CryomlError
            If unfitted, the suffix is not .keras, or a file exists and not ``overwrite``.
        """
        from cryoml.io import atomic_path, check_writable

        self._check_fitted()
        path = Path(path)
        if path.suffix != ".keras":
            raise CryomlError(f"{path}: a picker is saved as a .keras file; change the suffix.")
        sidecar = path.with_name(path.name + ".json")
        check_writable(sidecar, overwrite=overwrite)
        with atomic_path(path, overwrite=overwrite) as tmp:
            self.model_.save(tmp)
        params = self.get_params()
        params["random_state"] = None
        state = {
            "params": params,
            "architecture": self.architecture_.to_dict(),
            "threshold": self.threshold_,
            "sd_band": self.sd_band_,
            "calibration": self.calibration_,
            "validation_accuracy": self.validation_accuracy_,
            "pixel_size": self.pixel_size_,
            "history": self.history_,
        }
        with atomic_path(sidecar, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(state, indent=1, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ParticlePicker:
        """Load a picker written by :meth:`save`.

        Raises
        ------
        CryomlError
            If the .keras file or its .json sidecar is missing.
        """
        from cryoml.picking.models import DeepEMArchitecture

        path = Path(path)
        sidecar = path.with_name(path.name + ".json")
        for needed in (path, sidecar):
            if not needed.is_file():
                raise CryomlError(f"{needed}: no such file; a saved picker needs both files.")
        try:
            state = json.loads(sidecar.read_text())
            params = state["params"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise CryomlError(
                f"{sidecar}: not a cryoml picker description ({error}); save pickers with "
                "ParticlePicker.save() or `cryoml pick train`."
            ) from None
        for key in ("kernels", "pools", "maps", "sd_quantiles"):
            if params.get(key) is not None:
                params[key] = tuple(params[key])
        picker = cls(**params)
        from cryoml._keras_load import load_keras_model

        picker.model_ = load_keras_model(
            path, what="cryoml picker", how="ParticlePicker.save() or `cryoml pick train`"
        )
        arch = state["architecture"]
        picker.architecture_ = DeepEMArchitecture(
            arch["box_size"], tuple(arch["kernels"]), tuple(arch["pools"]), tuple(arch["maps"]),
            arch.get("network", "paper"),
        )
        picker.threshold_ = float(state["threshold"])
        picker.sd_band_ = tuple(state["sd_band"]) if state["sd_band"] is not None else None
        picker.calibration_ = state["calibration"]
        picker.validation_accuracy_ = state["validation_accuracy"]
        picker.pixel_size_ = state["pixel_size"]
        picker.history_ = state["history"]
        return picker


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class _ProgressCallback:
    """Keras callback (created lazily) driving a tqdm bar over epochs."""

    def __new__(cls, epochs: int, enabled: bool):
        import keras
        from tqdm.auto import tqdm

        class _Callback(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.done = 0
                self.history: dict[str, list[float]] = {}
                self.bar = None

            def on_train_begin(self, logs=None):
                self.bar = tqdm(total=epochs, disable=not enabled, desc="training", leave=False)

            def on_epoch_end(self, epoch, logs=None):
                self.done = epoch + 1
                for key, value in (logs or {}).items():
                    self.history.setdefault(key, []).append(float(value))
                if self.bar is not None:
                    self.bar.update(1)
                    self.bar.set_postfix(
                        {k: f"{v:.3f}" for k, v in (logs or {}).items() if "acc" in k}
                    )

            def on_train_end(self, logs=None):
                if self.bar is not None:
                    self.bar.close()

        return _Callback()
