"""Training the TomoSeg network: recipes, early stopping, continue-training, save/load.

Two named recipes reproduce the published set-ups:

* ``paper`` (Chen et al. 2017): SGD, batch 20, 20 iterations (epochs), learning rate 0.01
  multiplied by 0.9 after every iteration, L1 weight penalty 1e-5.
* ``eman2`` (current EMAN2 ``e2tomoseg_convnet.py``): Adam, learning rate 1e-4, batch 20,
  20 iterations, no L1.

The default is ``eman2``: on simulated cellular tomograms at SNR 0.1 the ``paper`` recipe's
SGD at 0.01 on a log loss (whose gradient grows as 1/MSE) often drives every ReLU to zero within
an epoch or two, after which the output is constant; Adam at 1e-4 to 3e-4 does not.

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
from cryoml._keras_fit import fit_keeping_best
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
}

_METADATA_NAME = "cryoml_tomoseg.json"
_AMPLITUDE_LABEL = 0.7  # EMAN2: mean output on label > 0.7 pixels is the amplitude


class TomoSegmenter:
    """TomoSeg segmenter for one feature (estimator: fit / predict / save / load).

    Parameters
    ----------
    feature : str, default "feature"
        What the network finds (``"membrane"``); kept with the model.
    recipe : {"paper", "eman2"}, default "eman2"
        Training recipe (see :data:`RECIPES`); the options below override its values.
    epochs, batch_size, learning_rate, l1 : optional
        Overrides of the recipe.
    n_filters : int, default 40
        Filters of the first two layers (paper: 40; fewer for quick tests).
    kernel_size : int, default 15
        Kernel edge (paper: 15).
    validation_fraction : float, default 0.1
        Fraction of tiles held out to choose the best weights (0: keep the last weights).
    patience : int, optional
        Stop after this many epochs without a better validation loss.
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
        Mean output on training positives (label > 0.7); outputs are divided by it.
    voxel_size_ : float or None
        Å/voxel of the training tiles.
    preprocess_ : dict
        Preprocessing record of the training tomogram.
    n_neighbours_ : int
        k of the 2.5D input (0 = 2D).
    interrupted_ : bool
        True when the last fit was stopped by KeyboardInterrupt.

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
        recipe: str = "eman2",
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        l1: float | None = None,
        n_filters: int = 40,
        kernel_size: int = 15,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        random_state: int | np.random.Generator | None = None,
        progress: bool = True,
    ) -> None:
        self.feature = feature
        self.recipe = recipe
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l1 = l1
        self.n_filters = n_filters
        self.kernel_size = kernel_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.progress = progress

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
        import keras

        rng = check_random_state(self.random_state)
        keras.utils.set_random_seed(int(rng.integers(2**31 - 1)))
        tiles, labels = training_set.tiles, training_set.labels[..., None]
        if validation is not None:
            val_data = (validation.tiles, validation.labels[..., None])
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

        if not continue_training:
            from cryoml.tomoseg.models import build_tomoseg_cnn

            self.model_ = build_tomoseg_cnn(
                n_channels=training_set.n_channels,
                n_filters=int(self.n_filters),
                kernel_size=int(self.kernel_size),
                l1=float(settings["l1"]),
                name=f"tomoseg_{self.feature}",
            )
            self.history_ = {"loss": [], "val_loss": [], "learning_rate": []}
            self.voxel_size_ = training_set.voxel_size
            self.preprocess_ = dict(training_set.preprocess)
            self.n_neighbours_ = int(training_set.n_neighbours)
        self._compile(settings)
        self._run_fit(train_x, train_y, val_data, settings, callbacks)
        self.amplitude_ = self._amplitude(training_set)
        self.settings_ = settings
        return self

    def _compile(self, settings: dict[str, Any]) -> None:
        import keras

        from cryoml.tomoseg.models import min1_log_mse

        rate = float(settings["learning_rate"])
        if settings["optimizer"] == "sgd":
            optimizer = keras.optimizers.SGD(learning_rate=rate)
        else:
            optimizer = keras.optimizers.Adam(learning_rate=rate)
        self.model_.compile(optimizer=optimizer, loss=min1_log_mse)

    def _run_fit(self, train_x, train_y, val_data, settings: dict[str, Any], callbacks) -> None:

        base_rate = float(settings["learning_rate"])
        decay = float(settings["lr_decay"])
        epochs = int(settings["epochs"])
        monitor = "val_loss" if val_data is not None else "loss"
        history = self.history_

        def set_rate(epoch):
            self.model_.optimizer.learning_rate.assign(base_rate * decay**epoch)

        def record(epoch, logs):
            history["loss"].append(float(logs.get("loss", np.nan)))
            history["val_loss"].append(float(logs.get("val_loss", np.nan)))
            history["learning_rate"].append(base_rate * decay**epoch)

        self.best_loss_, self.interrupted_ = fit_keeping_best(
            self.model_, train_x, train_y, batch_size=int(settings["batch_size"]),
            validation_data=val_data, shuffle=True, epochs=epochs, monitor=monitor,
            patience=None if self.patience is None else int(self.patience),
            progress=self.progress, description=f"training {self.feature}",
            on_epoch_begin=set_rate, on_epoch_end=record,
            postfix=lambda logs, value: {"loss": f"{value:.3f}"}, callbacks=callbacks,
        )

    def _amplitude(self, training_set: TrainingSet) -> float:
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
        """Network output for (N, H, W[, C]) tiles: (N, H/2, W/2), negatives set to 0.

        With ``scaled`` the output is divided by :attr:`amplitude_` (training positives → 1).
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
            "voxel_size": self.voxel_size_,
            "preprocess": self.preprocess_,
            "amplitude": float(self.amplitude_),
            "n_neighbours": int(self.n_neighbours_),
            "recipe": self.recipe,
            "settings": getattr(self, "settings_", {}),
            "params": {
                "n_filters": int(self.n_filters),
                "kernel_size": int(self.kernel_size),
                "validation_fraction": float(self.validation_fraction),
                "patience": self.patience,
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
        segmenter = cls(
            feature=meta["feature"],
            recipe=meta.get("recipe", "paper"),
            n_filters=params.get("n_filters", 40),
            kernel_size=params.get("kernel_size", 15),
            validation_fraction=params.get("validation_fraction", 0.1),
            patience=params.get("patience"),
            progress=progress,
        )
        segmenter.model_ = model
        segmenter.history_ = meta.get("history", {"loss": [], "val_loss": [], "learning_rate": []})
        segmenter.amplitude_ = float(meta["amplitude"])
        segmenter.voxel_size_ = meta.get("voxel_size")
        segmenter.preprocess_ = meta.get("preprocess", {})
        segmenter.n_neighbours_ = int(meta.get("n_neighbours", 0))
        segmenter.settings_ = meta.get("settings", {})
        return segmenter
