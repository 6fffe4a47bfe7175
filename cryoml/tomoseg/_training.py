"""Training the TomoSeg network: recipes, early stopping, continue-training, save/load.

Two named recipes reproduce the published set-ups:

* ``paper`` (Chen et al. 2017): SGD, batch 20, 20 iterations (epochs), learning rate 0.01
  multiplied by 0.9 after every iteration, L1 weight penalty 1e-5.
* ``eman2`` (current EMAN2 ``e2tomoseg_convnet.py``): Adam, learning rate 1e-4, batch 20,
  20 iterations, no L1.

A third, ``unet``, trains ``architecture="unet"`` (a small U-Net; see
:mod:`cryoml.tomoseg.models`): Adam 1e-3, batch 16, 60 epochs, the Dice + cross-entropy loss and
a random flip / 90° rotation of every tile at every epoch. It is the default for that
architecture.

The default for the paper architecture is ``eman2``: on simulated cellular tomograms at SNR 0.1
the ``paper`` recipe's SGD at 0.01 on a log loss (whose gradient grows as 1/MSE) often drives
every ReLU to zero within an epoch or two, after which the output is constant; Adam at 1e-4 to
3e-4 does not.

The loss is :func:`cryoml.tomoseg.models.min1_log_mse`. A random ``validation_fraction`` of the
tiles is held out; the weights with the lowest validation loss are kept, also when training
stops early (``patience``) or is interrupted (Ctrl-C / KeyboardInterrupt).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cryoml._errors import CryomlError, CryomlWarning
from cryoml._keras_fit import fit_keeping_best, keras_seed
from cryoml._validation import check_random_state, check_training_settings
from cryoml.io._atomic import atomic_path
from cryoml.tomoseg._trainset import TrainingSet

__all__ = ["RECIPES", "TomoSegmenter"]

logger = logging.getLogger(__name__)

RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "optimizer": "sgd",
        "learning_rate": 0.01,
        "lr_decay": 0.9,
        "batch_size": 20,
        "epochs": 20,
        "l1": 1e-5,
    },
    "eman2": {
        "optimizer": "adam",
        "learning_rate": 1e-4,
        "lr_decay": 1.0,
        "batch_size": 20,
        "epochs": 20,
        "l1": 0.0,
    },
    "unet": {
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "lr_decay": 1.0,
        "batch_size": 16,
        "epochs": 60,
        "l1": 0.0,
    },
}
_DEFAULT_RECIPE = {"paper": "eman2", "unet": "unet"}
# Gaussian σ along Z (Å) applied to the output by default (see ``_smooth.py``). The paper
# network stays as EMAN2 applies it; for the U-Net 40 Å (4 slices of 10 Å) was best or
# within 0.01 of best in the QUICK probe (σ 10–60 Å, two seeds), and at most a quarter of
# the painted features' size, so that small particles are not smoothed away (the demo's
# 6-voxel blobs: ribosome Dice 0.60 → 0.03 at 40 Å).
DEFAULT_SMOOTH_Z = {"paper": 0.0, "unet": 40.0}
_SMOOTH_Z_PER_SIZE = 0.25


def _compile_key(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings the compiled network and optimizer depend on (not epochs or batch)."""
    return {k: v for k, v in settings.items() if k not in ("epochs", "batch_size")}
_UNET_THRESHOLD = 0.5  # probability that maps to 1, the natural cut of every scaled output

_METADATA_NAME = "cryoml_tomoseg.json"
_AMPLITUDE_LABEL = 0.7  # EMAN2: mean output on label > 0.7 pixels is the amplitude


class TomoSegmenter:
    """TomoSeg segmenter for one feature (estimator: fit / predict / save / load).

    Parameters
    ----------
    feature : str, default "feature"
        What the network finds (``"membrane"``); kept with the model.
    architecture : {"paper", "unet"}, default "paper"
        ``paper``: the published CNN, exactly (output at half sampling, upsampled ×2).
        ``unet``: a small U-Net with full-resolution output, trained with Dice +
        cross-entropy and flips / 90° rotations (see :mod:`cryoml.tomoseg.models`).
    recipe : {"paper", "eman2", "unet"}, optional
        Training recipe (see :data:`RECIPES`); the options below override its values.
        Default: ``eman2`` for the paper architecture, ``unet`` for the U-Net.
    epochs, batch_size, learning_rate, l1 : optional
        Overrides of the recipe.
    n_filters : int, optional
        Paper architecture: filters of the first two layers (default 40, the paper's).
        U-Net: filters of the first level (default 32), doubled at each level down.
    kernel_size : int, default 15
        Kernel edge of the paper architecture (paper: 15).
    depth : int, default 3
        Levels of the U-Net.
    validation_fraction : float, default 0.1
        Fraction of tiles held out to choose the best weights (0: keep the last weights).
    patience : int, optional
        Stop after this many epochs without a better validation loss.
    restarts : int, default 2
        Paper architecture: when a fit from new weights ends with a network that gives the
        same output on the painted feature as beside it (collapsed to a constant map, as the
        paper's recipe does from some initialisations), train again from new random weights,
        up to this many times; a warning remains if every try collapsed.
    smooth_z : float, optional
        Gaussian σ in Å along Z applied to the output by :func:`apply_network`, which joins
        the pieces a slice-by-slice network finds in some slices and loses in the next (see
        :func:`smooth_along_z`). Default: 40 Å for the U-Net, 0 (none, as EMAN2) for the
        paper architecture. Saved with the network.
    random_state : None, int or Generator
        Seeds the split and Keras.
    progress : bool, default True
        Show a tqdm bar over epochs.

    Attributes
    ----------
    model_ : keras.Model
        The trained network.
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``val_loss`` and ``learning_rate`` (over all fits).
    amplitude_ : float
        Outputs are divided by it, so that 1 is the natural threshold: for the paper network
        the mean output on training positives (label > 0.7, as EMAN2); for the U-Net 0.5
        (scaled output 1 = probability 0.5).
    training_set_ : TrainingSet
        Every tile trained on so far (grows with :meth:`add_corrections`).
    voxel_size_ : float or None
        Å/voxel of the training tiles.
    preprocess_ : dict
        Preprocessing record of the training tomogram.
    n_neighbours_ : int
        k of the 2.5D input (0 = 2D).
    feature_size_ : float or None
        Median equivalent diameter (Å) of the painted components in the positive tiles: caps
        the default ``smooth_z`` at a quarter of it.
    interrupted_ : bool
        True when the last fit was stopped by KeyboardInterrupt.
    restarts_used_ : int
        Restarts from new weights the last fit needed (see ``restarts``).

    Examples
    --------
    >>> seg = TomoSegmenter(feature="membrane", recipe="eman2", epochs=1, n_filters=4)
    >>> seg.recipe
    'eman2'
    """

    def __init__(
        self,
        *,
        feature: str = "feature",
        architecture: str = "paper",
        recipe: str | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        l1: float | None = None,
        n_filters: int | None = None,
        kernel_size: int = 15,
        depth: int = 3,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        restarts: int = 2,
        smooth_z: float | None = None,
        random_state: int | np.random.Generator | None = None,
        progress: bool = True,
    ) -> None:
        from cryoml.tomoseg._smooth import _check_sigma
        from cryoml.tomoseg.models import ARCHITECTURES

        if architecture not in ARCHITECTURES:
            raise CryomlError(
                f"unknown architecture {architecture!r}; choose one of {list(ARCHITECTURES)}."
            )
        self.feature = feature
        self.architecture = architecture
        self.recipe = _DEFAULT_RECIPE[architecture] if recipe is None else recipe
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l1 = l1
        if n_filters is None:
            n_filters = 40 if architecture == "paper" else 32
        self.n_filters = n_filters
        self.kernel_size = kernel_size
        self.depth = depth
        self.validation_fraction = validation_fraction
        self.patience = patience
        try:
            whole = int(restarts) == restarts and restarts >= 0
        except (TypeError, ValueError):
            whole = False
        if not whole:
            raise CryomlError(f"'restarts' must be a whole number >= 0; got {restarts!r}.")
        self.restarts = int(restarts)
        self.smooth_z = None if smooth_z is None else _check_sigma(smooth_z)
        self.random_state = random_state
        self.progress = progress

    @property
    def smooth_z_angstrom(self) -> float:
        """σ (Å) of the smoothing along Z that :func:`apply_network` applies by default:
        ``smooth_z`` when set, else the architecture's default (U-Net 40 Å, paper 0), at most
        a quarter of ``feature_size_`` (the painted features' size, when measured)."""
        if self.smooth_z is not None:
            return float(self.smooth_z)
        default = DEFAULT_SMOOTH_Z.get(self.architecture, 0.0)
        size = getattr(self, "feature_size_", None)
        if size is not None and default > 0:
            return float(min(default, round(_SMOOTH_Z_PER_SIZE * size, 1)))
        return default

    @property
    def output_stride(self) -> int:
        """Input pixels per output pixel: 2 for the paper network, 1 for the U-Net."""
        return 2 if self.architecture == "paper" else 1

    @property
    def size_multiple(self) -> int:
        """Slices are padded to a multiple of this before the network sees them."""
        return 2 if self.architecture == "paper" else 2 ** max(int(self.depth) - 1, 1)

    # --- settings -------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        if self.recipe not in RECIPES:
            raise CryomlError(
                f"unknown training recipe {self.recipe!r}; choose one of {sorted(RECIPES)}."
            )
        settings = dict(RECIPES[self.recipe])
        for key in ("epochs", "batch_size", "learning_rate", "l1"):
            value = getattr(self, key)
            if value is not None:
                settings[key] = value
        check_training_settings(
            settings, validation_fraction=self.validation_fraction, patience=self.patience
        )
        return settings

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise CryomlError(
                "this TomoSegmenter is not trained yet: call fit() first or load a saved "
                "network with TomoSegmenter.load()."
            )

    # --- training -------------------------------------------------------------------------

    def fit(
        self,
        training_set: TrainingSet,
        *,
        continue_training: bool = False,
        validation: TrainingSet | None = None,
        callbacks: list | None = None,
    ) -> TomoSegmenter:
        """Train on a :class:`TrainingSet`.

        Parameters
        ----------
        training_set : TrainingSet
            Tiles and labels (see :func:`build_training_set`).
        continue_training : bool, default False
            Start from the current weights (a loaded or trained network) instead of new ones;
            pass a smaller ``learning_rate`` for fine-tuning.
        validation : TrainingSet, optional
            Validation tiles; default: a random ``validation_fraction`` of ``training_set``.
        callbacks : list of keras.callbacks.Callback, optional
            More Keras callbacks for ``model.fit`` (for example
            :meth:`cryoml.widgets.TrainingMonitor.callback`). Stopping training from a callback
            (``model.stop_training = True``) keeps the best weights.

        Returns
        -------
        self

        Raises
        ------
        CryomlError
            For an empty set, a set without positives, a channel count that differs from the
            network's, or a voxel size that differs when continuing.
        """
        if not isinstance(training_set, TrainingSet):
            raise CryomlError(
                f"'training_set' must be a cryoml.tomoseg.TrainingSet; got "
                f"{type(training_set).__name__}. Build one with build_training_set()."
            )
        settings = self._settings()
        if len(training_set) == 0 or not np.any(training_set.is_positive):
            raise CryomlError(
                "the training set has no positive tiles; add boxes on the feature with masks."
            )
        if continue_training:
            self._check_fitted()
            if training_set.n_channels != self.model_.input_shape[-1]:
                raise CryomlError(
                    f"the training set has {training_set.n_channels} channels but the network "
                    f"takes {self.model_.input_shape[-1]}; build the set with n_neighbours="
                    f"{self.n_neighbours_}."
                )
            from cryoml.io import check_voxel_size_match

            check_voxel_size_match(
                self.voxel_size_, training_set.voxel_size, what=f"network {self.feature!r}"
            )

        rng = check_random_state(self.random_state)
        with keras_seed(int(rng.integers(2**31 - 1))):
            tiles, labels = training_set.tiles, self._labels_of(training_set)[..., None]
            if validation is not None:
                val_data = (validation.tiles, self._labels_of(validation)[..., None])
                train_x, train_y = tiles, labels
            elif self.validation_fraction > 0 and len(training_set) >= 4:
                order = rng.permutation(len(training_set))
                n_val = max(1, round(self.validation_fraction * len(order)))
                val_idx, train_idx = order[:n_val], order[n_val:]
                val_data = (tiles[val_idx], labels[val_idx])
                train_x, train_y = tiles[train_idx], labels[train_idx]
            else:
                val_data = None
                train_x, train_y = tiles, labels

            for attempt in range(1 + (0 if continue_training else int(self.restarts))):
                if not continue_training:
                    self.model_ = self._build(training_set.n_channels, settings)
                    self.history_ = {"loss": [], "val_loss": [], "learning_rate": []}
                    self.voxel_size_ = training_set.voxel_size
                    self.preprocess_ = dict(training_set.preprocess)
                    self.n_neighbours_ = int(training_set.n_neighbours)
                # Continuing keeps the optimizer (and its Adam moments) unless what it is built
                # from changed: a fresh Adam on trained weights takes full learning-rate steps.
                if not (continue_training
                        and getattr(self, "_compiled_for", None) == _compile_key(settings)):
                    self._compile(settings)
                self._run_fit(train_x, train_y, val_data, settings, callbacks, seed=rng)
                # The U-Net's Dice + cross-entropy does not fall into a constant map; a check
                # there would only flag short trainings (and restart them) as collapsed.
                collapse = (self._collapse_note(training_set)
                            if self.architecture == "paper" else None)
                self.restarts_used_ = attempt
                if collapse is None or continue_training or self.interrupted_:
                    break
                if attempt < int(self.restarts):
                    # The paper's SGD recipe sometimes falls into a constant map from one
                    # initialisation and learns from another (benchmark: 1 seed in 3).
                    logger.warning(
                        "network %r %s: training again from new random weights (restart %d "
                        "of %d).", self.feature, collapse, attempt + 1, int(self.restarts))
            if collapse is not None:
                warnings.warn(
                    f"network {self.feature!r} {collapse}"
                    + (f", also after {self.restarts_used_} restart(s) from new weights"
                       if self.restarts_used_ else "")
                    + ". Train again with another random_state, a lower learning rate or "
                    "architecture='unet'.",
                    CryomlWarning,
                    stacklevel=2,
                )
            self.feature_size_ = _painted_size(training_set)
            self.amplitude_ = self._amplitude(training_set)
            self.settings_ = settings
            self.training_set_ = (
                training_set
                if not continue_training or not hasattr(self, "training_set_")
                else self.training_set_
            )
            return self

    def add_corrections(
        self,
        tomogram,
        negatives,
        *,
        positives=None,
        masks=None,
        epochs: int | None = None,
        callbacks: list | None = None,
        random_state: int | np.random.Generator | None = None,
    ) -> TomoSegmenter:
        """Box the network's mistakes and train again: the paper's iterative refinement.

        After a first training, look at the output map, box a few places where the network
        fires but should not (``negatives``, e.g. with a BoxPicker on the output) and, if it
        misses the feature somewhere, box and paint those too (``positives`` and ``masks``).
        The new tiles join every tile trained on so far and the network continues from its
        current weights.

        Parameters
        ----------
        tomogram : (Z, Y, X) array_like or Image
            The preprocessed tomogram the boxes are on (as for :func:`build_training_set`).
        negatives : (M, 3) array_like or Particles
            Centres (Z, Y, X) of the new negative tiles (false positives of the network).
        positives : (P, 3) array_like or Particles, optional
            Centres of new positive tiles, with ``masks``.
        masks : (P, T, T) or (Z, Y, X) array_like, optional
            Their painted masks.
        epochs : int, optional
            Epochs of the new training (default: those of the recipe).
        callbacks : list, optional
            As for :meth:`fit`.
        random_state : None, int or Generator
            Seeds the new tiles' rotations.

        Returns
        -------
        self

        Raises
        ------
        CryomlError
            Before a first :meth:`fit`, with no boxes, or for boxes off the tomogram.
        """
        self._check_fitted()
        if not hasattr(self, "training_set_"):
            raise CryomlError(
                "add_corrections needs the tiles of the first training, which a loaded network "
                "does not carry: build the training set again, join the corrections with "
                "`first + build_training_set(...)` and call fit(..., continue_training=True)."
            )
        from cryoml.tomoseg._trainset import _centres, build_training_set

        new_negatives = _centres(negatives, "negatives")
        new_positives = _centres(positives, "positives")
        if len(new_negatives) + len(new_positives) == 0:
            raise CryomlError("add_corrections needs at least one new box.")
        first = self.training_set_
        tile = first.tiles.shape[1]
        kept = first
        if len(new_positives):
            if masks is None:
                raise CryomlError("new positive boxes need their painted 'masks'.")
            extra = build_training_set(
                tomogram, new_positives, masks, new_negatives, feature=first.feature,
                tile_size=tile, n_neighbours=first.n_neighbours, voxel_size=first.voxel_size,
                preprocess=first.preprocess, random_state=random_state,
            )
        else:
            extra = _negative_set(tomogram, new_negatives, first)
        # The corrections matter more than their count suggests (a handful among hundreds of
        # tiles): repeat them so they weigh like the positives of the first set.
        repeats = max(1, int(first.is_positive.sum()) // max(len(extra), 1) // 2)
        for _ in range(repeats):
            kept = kept + extra
        saved_epochs = self.epochs
        if epochs is not None:
            self.epochs = epochs
        before = self._response_on_positives(first)
        self.weights_before_corrections_ = self.model_.get_weights()
        try:
            self.fit(kept, continue_training=True, callbacks=callbacks)
        finally:
            self.epochs = saved_epochs
        self.training_set_ = kept
        self.corrections_ = getattr(self, "corrections_", 0) + 1
        after = self._response_on_positives(first)
        if before > 0 and after < 0.5 * before:
            # Measured: a U-Net ribosome network trained on through 10 boxes x 20 epochs went
            # silent (Dice 0.76 -> 0) in one of three benchmark seeds.
            warnings.warn(
                f"after the corrections network {self.feature!r} answers its own positive "
                f"tiles with {after:.2f} instead of {before:.2f} (1 = the cut): it has "
                "unlearned the feature. Check that no correction box shows the feature, or "
                "train fewer epochs; the weights from before are in "
                "weights_before_corrections_ (model_.set_weights(...) restores them).",
                CryomlWarning,
                stacklevel=2,
            )
        return self

    def _response_on_positives(self, training_set: TrainingSet) -> float:
        """Mean scaled output on the painted pixels of the set's positive tiles."""
        positives = training_set.is_positive
        if not np.any(positives):
            return 0.0
        output = self.predict_tiles(training_set.tiles[positives])
        labels = self._labels_of(training_set)[positives]
        painted = labels > 0.5
        return float(output[painted].mean()) if painted.any() else 0.0

    def _labels_of(self, training_set: TrainingSet) -> np.ndarray:
        if self.output_stride == 2:
            return training_set.labels
        if training_set.full_labels is None:
            raise CryomlError(
                "this training set has no full-resolution labels (saved by an older cryoml); "
                "build it again with build_training_set for architecture='unet'."
            )
        return training_set.full_labels

    def _build(self, n_channels: int, settings: dict[str, Any]):
        from cryoml.tomoseg.models import build_tomoseg_cnn, build_tomoseg_unet

        if self.architecture == "unet":
            return build_tomoseg_unet(
                n_channels=n_channels,
                base_filters=int(self.n_filters),
                depth=int(self.depth),
                name=f"tomoseg_unet_{self.feature}",
            )
        return build_tomoseg_cnn(
            n_channels=n_channels,
            n_filters=int(self.n_filters),
            kernel_size=int(self.kernel_size),
            l1=float(settings["l1"]),
            name=f"tomoseg_{self.feature}",
        )

    def _compile(self, settings: dict[str, Any]) -> None:
        import keras

        from cryoml.tomoseg.models import (
            dice_bce_from_logits,
            logits_model,
            min1_log_mse,
            unet_with_logits,
        )

        rate = float(settings["learning_rate"])
        if settings["optimizer"] == "sgd":
            optimizer = keras.optimizers.SGD(learning_rate=rate)
        else:
            optimizer = keras.optimizers.Adam(learning_rate=rate)
        if self.architecture == "unet":
            # XLA on the CPU spends minutes compiling the U-Net's training step (measured:
            # 122 s against 38 s for the first fit of a 3-level net on a loaded 2-core box).
            jit = "auto" if keras.backend.backend() != "tensorflow" else False
            self.model_ = unet_with_logits(self.model_)  # networks saved before the layer
            self._fit_model = logits_model(self.model_)  # shares the layers and weights
            self._fit_model.compile(optimizer=optimizer, loss=dice_bce_from_logits,
                                    jit_compile=jit)
        else:
            self._fit_model = self.model_
            self.model_.compile(optimizer=optimizer, loss=min1_log_mse)
        self._compiled_for = _compile_key(settings)

    def _run_fit(
        self, train_x, train_y, val_data, settings: dict[str, Any], callbacks, *, seed=None
    ) -> None:

        base_rate = float(settings["learning_rate"])
        decay = float(settings["lr_decay"])
        epochs = int(settings["epochs"])
        monitor = "val_loss" if val_data is not None else "loss"
        history = self.history_

        def set_rate(epoch):
            self._fit_model.optimizer.learning_rate.assign(base_rate * decay**epoch)

        def record(epoch, logs):
            history["loss"].append(float(logs.get("loss", np.nan)))
            history["val_loss"].append(float(logs.get("val_loss", np.nan)))
            history["learning_rate"].append(base_rate * decay**epoch)

        if self.architecture == "unet":
            # Flips and 90° rotations are exact (no interpolation) and keep the missing wedge
            # where it is (about Z): the 8 views of a tile are equally real.
            data = (_dihedral_batches(train_x, train_y, int(settings["batch_size"]),
                                     check_random_state(seed)),)
            batch = {}
        else:
            data = (train_x, train_y)
            batch = {"batch_size": int(settings["batch_size"]), "shuffle": True}
        self.best_loss_, self.interrupted_ = fit_keeping_best(
            getattr(self, "_fit_model", self.model_), *data, **batch,
            validation_data=val_data, epochs=epochs, monitor=monitor,
            patience=None if self.patience is None else int(self.patience),
            progress=self.progress, description=f"training {self.feature}",
            on_epoch_begin=set_rate, on_epoch_end=record,
            postfix=lambda logs, value: {"loss": f"{value:.3f}"}, callbacks=callbacks,
        )

    def _collapse_note(self, training_set: TrainingSet) -> str | None:
        """Why the network looks collapsed to a constant map on its own positive tiles (its
        mean output on the painted feature within 10 % of that beside it), or None."""
        positives = training_set.is_positive
        output = self.predict_tiles(training_set.tiles[positives], scaled=False)
        labels = self._labels_of(training_set)[positives]
        if not labels.size or labels.max() <= 0:
            return None
        cut = _AMPLITUDE_LABEL if np.any(labels > _AMPLITUDE_LABEL) else 0.5 * labels.max()
        feature, background = output[labels > cut], output[labels < 0.05]
        if not (feature.size and background.size):
            return None
        on, off = float(feature.mean()), float(background.mean())
        if on > 0 and on - off >= 0.1 * on:
            return None
        return (f"gives nearly the same output on the feature as beside it on its own training "
                f"tiles (feature {on:.3g}, background {off:.3g}): it has collapsed to a "
                "constant map")

    def _amplitude(self, training_set: TrainingSet) -> float:
        if self.architecture == "unet":
            return _UNET_THRESHOLD
        positives = training_set.is_positive
        output = self.predict_tiles(training_set.tiles[positives], scaled=False)
        labels = training_set.labels[positives]
        cut = _AMPLITUDE_LABEL if np.any(labels > _AMPLITUDE_LABEL) else 0.5 * labels.max()
        values = output[labels > cut]
        amplitude = float(values.mean()) if values.size else 0.0
        if not amplitude > 0:
            warnings.warn(
                f"network {self.feature!r} outputs nothing positive on its own training "
                "positives (amplitude <= 0): training failed; check the masks and train longer. "
                "Output is left unscaled.",
                CryomlWarning,
                stacklevel=3,
            )
            amplitude = 1.0
        return amplitude

    # --- prediction -----------------------------------------------------------------------

    def predict_tiles(
        self, tiles: np.ndarray, *, scaled: bool = True, batch_size: int = 64
    ) -> np.ndarray:
        """Network output for (N, H, W[, C]) tiles, negatives set to 0.

        (N, H/2, W/2) for the paper network, (N, H, W) for the U-Net. With ``scaled`` the
        output is divided by :attr:`amplitude_` (1 = the natural threshold).
        """
        self._check_fitted()
        tiles = np.asarray(tiles, dtype=np.float32)
        if tiles.ndim == 3:
            tiles = tiles[..., None]
        if tiles.ndim != 4 or tiles.shape[-1] != self.model_.input_shape[-1]:
            raise CryomlError(
                f"tiles must be (N, H, W, {self.model_.input_shape[-1]}); got {tiles.shape}."
            )
        parts = [
            np.asarray(self.model_.predict_on_batch(tiles[i : i + batch_size]))
            for i in range(0, len(tiles), batch_size)
        ]
        output = np.maximum(np.concatenate(parts)[..., 0], 0).astype(np.float32)
        if scaled:
            output /= np.float32(getattr(self, "amplitude_", 1.0))
        return output

    def predict(self, tomogram, **options) -> np.ndarray:
        """Segment a tomogram; see :func:`cryoml.tomoseg.apply_network` for ``options``."""
        from cryoml.tomoseg._apply import apply_network

        return apply_network(tomogram, self, **options)

    # --- persistence ----------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Everything saved beside the weights (JSON-ready)."""
        self._check_fitted()
        return {
            "format": "cryoml.tomoseg/1",
            "feature": self.feature,
            "architecture": self.architecture,
            "voxel_size": self.voxel_size_,
            "preprocess": self.preprocess_,
            "amplitude": float(self.amplitude_),
            "n_neighbours": int(self.n_neighbours_),
            "feature_size": getattr(self, "feature_size_", None),
            "recipe": self.recipe,
            "settings": getattr(self, "settings_", {}),
            "params": {
                "n_filters": int(self.n_filters),
                "kernel_size": int(self.kernel_size),
                "depth": int(self.depth),
                "validation_fraction": float(self.validation_fraction),
                "patience": self.patience,
                "restarts": int(self.restarts),
                "smooth_z": self.smooth_z,
            },
            "history": self.history_,
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Save as ``.keras`` with the metadata (``cryoml_tomoseg.json`` inside the archive)."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".keras":
            raise CryomlError(f"{path}: networks are saved as .keras; use that suffix.")
        meta = json.dumps(self.metadata(), indent=1)
        with atomic_path(path, overwrite=overwrite) as tmp:
            keras_tmp = tmp.with_name(tmp.stem + "_model.keras")
            self.model_.save(keras_tmp)
            with zipfile.ZipFile(keras_tmp, "a") as archive:
                archive.writestr(_METADATA_NAME, meta)
            os.replace(keras_tmp, tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, progress: bool = True) -> TomoSegmenter:
        """Load a network saved by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise CryomlError(f"{path}: no such network file. Check the path.")
        try:
            with zipfile.ZipFile(path) as archive:
                meta = json.loads(archive.read(_METADATA_NAME))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
            raise CryomlError(
                f"{path}: not a cryoml TomoSeg network ({error}); save one with "
                "TomoSegmenter.save() or `cryoml tomoseg train`."
            ) from None
        from cryoml._keras_load import check_model_io, load_keras_model

        how = "TomoSegmenter.save() or `cryoml tomoseg train`"
        model = load_keras_model(path, what="cryoml TomoSeg network", how=how)
        check_model_io(model, path, what="TomoSeg network", input_rank=4, output_rank=4,
                       output_units=1, how=how)
        if not isinstance(meta, dict) or "feature" not in meta or "amplitude" not in meta:
            raise CryomlError(
                f"{path}: its cryoml metadata lacks 'feature' or 'amplitude'; save the network "
                f"with {how}."
            )
        params = meta.get("params", {})
        architecture = meta.get("architecture", "paper")
        segmenter = cls(
            feature=meta["feature"],
            architecture=architecture,
            recipe=meta.get("recipe", "paper"),
            n_filters=params.get("n_filters", 40 if architecture == "paper" else 32),
            kernel_size=params.get("kernel_size", 15),
            depth=params.get("depth", 3),
            validation_fraction=params.get("validation_fraction", 0.1),
            patience=params.get("patience"),
            restarts=params.get("restarts", 2),
            smooth_z=params.get("smooth_z"),
            progress=progress,
        )
        segmenter.model_ = model
        segmenter.history_ = meta.get("history", {"loss": [], "val_loss": [], "learning_rate": []})
        segmenter.amplitude_ = float(meta["amplitude"])
        segmenter.voxel_size_ = meta.get("voxel_size")
        segmenter.preprocess_ = meta.get("preprocess", {})
        segmenter.n_neighbours_ = int(meta.get("n_neighbours", 0))
        segmenter.feature_size_ = meta.get("feature_size")
        segmenter.settings_ = meta.get("settings", {})
        return segmenter


def _painted_size(training_set: TrainingSet) -> float | None:
    """Median equivalent diameter (Å) of the painted components in the positive tiles.

    A component cut by the tile's edge counts with its visible part; sheets and filaments
    come out large (their length), compact particles about their diameter. None without a
    voxel size or paint.
    """
    import scipy.ndimage as ndi

    voxel = training_set.voxel_size
    masks = training_set.full_labels if training_set.full_labels is not None else (
        training_set.labels)
    scale = training_set.tiles.shape[1] / masks.shape[1]  # the paper's labels are half size
    if voxel is None or not float(voxel) > 0:
        return None
    areas = []
    for mask in masks[training_set.is_positive]:
        labelled, n = ndi.label(mask > 0.5)
        if n:
            areas.extend(np.bincount(labelled.ravel())[1:].tolist())
    if not areas:
        return None
    diameter = 2.0 * np.sqrt(np.median(areas) / np.pi) * scale
    return round(float(diameter * float(voxel)), 1)


def _negative_set(tomogram, centres: np.ndarray, like: TrainingSet) -> TrainingSet:
    """Negative tiles (all-zero labels) cut like those of ``like``."""
    from cryoml.tomoseg._trainset import _check_inside, _cut, slice_channels

    if hasattr(tomogram, "voxel_size") and hasattr(tomogram, "data"):
        tomogram = tomogram.data
    volume = np.asarray(tomogram, dtype=np.float32)
    if volume.ndim != 3:
        raise CryomlError(f"tomogram must be a (Z, Y, X) volume; got shape {volume.shape}.")
    tile, k = like.tiles.shape[1], like.n_neighbours
    _check_inside(centres, volume.shape, tile, "negative boxes")
    tiles = np.stack([_cut(slice_channels(volume, z, k), y, x, tile) for z, y, x in centres])
    n = len(centres)
    return TrainingSet(
        tiles=tiles.astype(np.float32),
        labels=np.zeros((n, tile // 2, tile // 2), np.float32),
        is_positive=np.zeros(n, bool),
        feature=like.feature,
        voxel_size=like.voxel_size,
        preprocess=dict(like.preprocess),
        n_neighbours=k,
        full_labels=np.zeros((n, tile, tile), np.float32),
    )


def _dihedral_batches_class():
    import keras

    class DihedralBatches(keras.utils.PyDataset):
        """Shuffled batches, each tile in one of its 8 flips / 90° rotations, new every epoch."""

        def __init__(self, x, y, batch_size, rng):
            super().__init__()
            self.x, self.y, self.batch_size, self.rng = x, y, batch_size, rng
            self.order = rng.permutation(len(x))

        def __len__(self):
            return -(-len(self.x) // self.batch_size)

        def __getitem__(self, index):
            pick = self.order[index * self.batch_size : (index + 1) * self.batch_size]
            x, y = self.x[pick], self.y[pick]
            turns, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
            x, y = np.rot90(x, turns, axes=(1, 2)), np.rot90(y, turns, axes=(1, 2))
            if flip:
                x, y = x[:, :, ::-1], y[:, :, ::-1]
            return np.ascontiguousarray(x), np.ascontiguousarray(y)

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(self.x))

    return DihedralBatches


def _dihedral_batches(x, y, batch_size, rng):
    return _dihedral_batches_class()(x, y, batch_size, rng)
