"""Training and evaluating Inception3D / DSRF3D: the :class:`SubtomoClassifier` estimator.

Recipes (:data:`RECIPES`):

* ``paper`` (Xu et al. 2017): SGD with Nesterov momentum 0.9, learning rate 0.01 with the old
  Keras ``decay=1e-6`` (``lr / (1 + 1e-6 · step)``, here
  :class:`keras.optimizers.schedules.InverseTimeDecay`), batch 64, 20 epochs, categorical
  cross-entropy, no augmentation.
* ``modern``: Adam (learning rate 1e-3), batch 64, 20 epochs, random 3D rotations on the fly
  (``augment="wedge"``: identity or 180° about Z, Y or X, the proper rotations that keep the
  missing wedge in place; ``"cube"``: the 24 rotations of the cube).

Which recipe learns depends on the network and the input (measured on 23 classes × 500,
40³, SNR 0.1, ±60°; ``benchmarks/RESULTS.md``): Inception3D needs raw input
(``normalize=False``) — standardised, it collapsed to chance with ``paper`` (0.046) and in
one of two sets with ``modern`` (0.043; 0.955 in the other); DSRF3D learns
with ``paper`` on standardised input (0.968) but stayed at chance (0.043) with ``modern``.
With the paper's noise order (``noise_stage="paper"``, much harder at the same nominal SNR)
DSRF3D stays at chance with ``paper`` (SGD, lr 0.01: 0.043 standardised, 0.051 raw, also
without dropout) and learns with Adam at a tenth of ``modern``'s rate —
``recipe="modern", learning_rate=1e-4, augment=None, model_options={"dropout": 0.0}`` —
0.851 at SNR 0.1 ±60° (H200, bfloat16; ``benchmarks/RESULTS.md``, session 9).
:meth:`SubtomoClassifier.fit` warns when the best epoch is no better than chance.

Each subtomogram is standardised (zero mean, unit s.d.) before it enters the network: on the
host for training, inside the compiled network call (on the device) for inference. Data are
fed by a :class:`keras.utils.PyDataset` reading one batch at a time from an array, a memory map
or an HDF5 dataset, so on-disk sets larger than RAM train too. A random ``validation_fraction``
is held out; the weights with the lowest validation loss are kept (also on Ctrl-C), and with
``checkpoint`` they are written to a ``.keras`` file whenever they improve.
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
from cryoml.distribute import batch_multiple
from cryoml.io._atomic import atomic_path
from cryoml.subtomo._data import (
    AUGMENTATIONS,
    make_batches,
    open_subtomograms,
    standardize_layer,
)
from cryoml.subtomo.models import MODELS, build_model

__all__ = ["RECIPES", "SubtomoClassifier", "classification_report"]

logger = logging.getLogger(__name__)

RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "optimizer": "sgd_nesterov",
        "learning_rate": 0.01,
        "decay": 1e-6,
        "batch_size": 64,
        "epochs": 20,
        "augment": None,
    },
    "modern": {
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "decay": 0.0,
        "batch_size": 64,
        "epochs": 20,
        "augment": "wedge",
    },
}

_METADATA_NAME = "cryoml_subtomo.json"


def classification_report(
    true_labels: np.ndarray, predicted: np.ndarray, *, n_classes: int | None = None,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows: true, columns: predicted) and per-class recall.

    Examples
    --------
    >>> report = classification_report(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    >>> report["accuracy"], report["per_class_recall"]
    (0.75, [0.5, 1.0])
    """
    true_labels = np.asarray(true_labels, dtype=int)
    predicted = np.asarray(predicted, dtype=int)
    if true_labels.shape != predicted.shape or true_labels.ndim != 1:
        raise CryomlError(
            f"labels and predictions must be two 1-D arrays of one length; got "
            f"{true_labels.shape} and {predicted.shape}."
        )
    n = int(n_classes or (max(true_labels.max(initial=0), predicted.max(initial=0)) + 1))
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (true_labels, predicted), 1)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)
    return {
        "accuracy": float(np.mean(true_labels == predicted)) if len(true_labels) else float("nan"),
        "confusion_matrix": confusion.tolist(),
        "per_class_recall": [float(r) for r in recall],
        "class_names": class_names,
        "n": len(true_labels),
    }


class SubtomoClassifier:
    """Subtomogram classifier: Inception3D or DSRF3D (estimator: fit / predict / evaluate).

    Parameters
    ----------
    model : {"inception3d", "dsrf3d"}, default "inception3d"
        Network (see :mod:`cryoml.subtomo.models`).
    recipe : {"paper", "modern"}, default "paper"
        Training recipe (:data:`RECIPES`); the options below override its values.
    epochs, batch_size, learning_rate, augment : optional
        Overrides of the recipe (``augment``: None, ``"wedge"`` or ``"cube"``).
    validation_fraction : float, default 0.1
        Fraction of the training set held out to choose the best weights (0: keep the last).
    patience : int, optional
        Stop after this many epochs without a better validation loss.
    checkpoint : path, optional
        ``.keras`` file written (overwritten) whenever the validation loss improves.
    normalize : bool, default True
        Standardise each subtomogram (zero mean, unit s.d.). The authors' code fed the raw
        simulated volumes instead (s.d. about 0.07 for cryoml's simulator at SNR 0.5). With
        the ``paper`` recipe (SGD, lr 0.01), Inception3D on unit-s.d. input takes steps too
        large for its linear layer, which reads 786,080 features at 40³: the loss jumps and
        most ReLUs die (its paper-recipe Table 1 runs collapsed to chance). Pass
        ``normalize=False`` for data on that small scale, as the authors did, or use the
        ``modern`` recipe (Adam).
    random_state : None, int or Generator
        Seeds the split, the shuffling, the augmentation and Keras.
    progress : bool, default True
        tqdm bar over epochs.
    model_options : dict, optional
        Passed to the network's builder (:func:`cryoml.subtomo.models.build_model`), e.g.
        ``{"dropout": 0.0}`` for DSRF3D without the dropout after its hidden layers (the
        paper names none; the builder's default 0.5 is ours).

    Attributes
    ----------
    model_ : keras.Model
        The trained network (layers ``"logits"`` and ``"softmax"``).
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``.
    n_classes_ : int
    class_names_ : list of str
    input_shape_ : tuple of int
        (Z, Y, X) of the subtomograms.
    interrupted_ : bool
        True when the last fit was stopped by KeyboardInterrupt.

    Examples
    --------
    >>> clf = SubtomoClassifier(model="dsrf3d", recipe="modern", epochs=1)
    >>> clf.model, clf.recipe
    ('dsrf3d', 'modern')
    """

    def __init__(
        self,
        *,
        model: str = "inception3d",
        recipe: str = "paper",
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        augment: str | bool | None = False,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        normalize: bool = True,
        random_state: int | np.random.Generator | None = None,
        progress: bool = True,
        model_options: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.recipe = recipe
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.augment = augment
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.checkpoint = checkpoint
        self.normalize = normalize
        self.random_state = random_state
        self.progress = progress
        self.model_options = model_options

    # --- settings -------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        if self.model not in MODELS:
            raise CryomlError(f"unknown model {self.model!r}; choose one of {list(MODELS)}.")
        if self.recipe not in RECIPES:
            raise CryomlError(
                f"unknown training recipe {self.recipe!r}; choose one of {sorted(RECIPES)}."
            )
        self._check_model_options()
        settings = dict(RECIPES[self.recipe])
        for key in ("epochs", "batch_size", "learning_rate"):
            value = getattr(self, key)
            if value is not None:
                settings[key] = value
        if self.augment is not False:  # False = recipe default; None = no augmentation
            settings["augment"] = self.augment
        if settings["augment"] not in AUGMENTATIONS:
            raise CryomlError(
                f"'augment' must be one of {list(AUGMENTATIONS)}; got {settings['augment']!r}."
            )
        check_training_settings(
            settings, validation_fraction=self.validation_fraction, patience=self.patience
        )
        if self.checkpoint is not None and Path(self.checkpoint).suffix != ".keras":
            raise CryomlError(f"checkpoint {self.checkpoint}: use a .keras file name.")
        return settings

    def _check_model_options(self) -> None:
        import inspect

        from cryoml.subtomo.models import build_dsrf3d, build_inception3d

        options = self.model_options or {}
        if not isinstance(options, dict):
            raise CryomlError(
                f"'model_options' must be a dict of builder options; got {options!r}."
            )
        builder = {"inception3d": build_inception3d, "dsrf3d": build_dsrf3d}[self.model]
        known = [name for name, p in inspect.signature(builder).parameters.items()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "name"]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise CryomlError(
                f"{self.model} has no option {', '.join(map(repr, unknown))}; its options are "
                f"{known}."
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise CryomlError(
                "this SubtomoClassifier is not trained yet: call fit() first or load a saved "
                "network with SubtomoClassifier.load()."
            )

    # --- training -------------------------------------------------------------------------

    def fit(
        self, data, labels=None, *, class_names=None, validation=None, callbacks=None
    ) -> SubtomoClassifier:
        """Train on labelled subtomograms.

        Parameters
        ----------
        data : SubtomogramSet, (N, Z, Y, X) array-like, or path
            Subtomograms: an array, memory map, h5py dataset, a ``SubtomogramSet`` or a
            ``.h5``/``.npz``/``.npy`` file (``.h5`` and ``.npy`` are read batch by batch).
        labels : (N,) array of int, optional
            Class indices (from the set when ``data`` is one).
        class_names : list of str, optional
            Names for the classes (default: ``"0"``, ``"1"``, ...).
        validation : tuple (data, labels) or SubtomogramSet, optional
            Validation data; default: a random ``validation_fraction`` of ``data``.
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
            For missing labels, fewer than two classes or bad settings.
        """
        settings = self._settings()
        data_name = str(data) if isinstance(data, (str, os.PathLike)) else None
        data, labels, class_names = open_subtomograms(data, labels, class_names=class_names)
        if labels is None:
            raise CryomlError("'labels' are needed to train (one class index per subtomogram).")
        n_classes = int(max(labels.max() + 1, len(class_names or ())))
        present = np.unique(labels)
        if n_classes < 2 or len(present) < 2:
            where = f"{data_name}: " if data_name else ""
            raise CryomlError(
                f"{where}training needs subtomograms of at least two classes; every label is "
                f"{int(present[0]) if len(present) else 'missing'}. Add the other classes."
            )

        rng = check_random_state(self.random_state)
        with keras_seed(int(rng.integers(2**31 - 1))):
            all_idx = np.arange(data.shape[0])
            val_source = None
            if validation is not None:
                if isinstance(validation, tuple):
                    val_source = open_subtomograms(*validation)[:2]
                else:
                    val_source = open_subtomograms(validation)[:2]
                train_idx = all_idx
            elif self.validation_fraction > 0 and len(all_idx) >= 10:
                order = rng.permutation(all_idx)
                n_val = max(1, round(self.validation_fraction * len(order)))
                train_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
                val_source = (data, labels, val_idx)
            else:
                train_idx = all_idx
            batch_size = int(settings["batch_size"])
            multiple = batch_multiple()
            if batch_size % multiple:
                raise CryomlError(
                    f"batch_size {batch_size} does not split over the {multiple} devices of the "
                    f"active distribution; use a multiple of {multiple} (e.g. {64 * multiple})."
                )
            train_batches = make_batches(
                data, train_idx, labels=labels, n_classes=n_classes, batch_size=batch_size,
                shuffle=True, augment=settings["augment"], normalize=self.normalize,
                seed=int(rng.integers(2**31 - 1)), workers=min(4, os.cpu_count() or 1),
                multiple=multiple,
            )
            val_batches = None
            if val_source is not None:
                v_data, v_labels = val_source[0], val_source[1]
                v_idx = val_source[2] if len(val_source) == 3 else np.arange(v_data.shape[0])
                val_batches = make_batches(
                    v_data, v_idx, labels=v_labels, n_classes=n_classes, batch_size=batch_size,
                    normalize=self.normalize, multiple=multiple,
                )
            self.input_shape_ = tuple(int(s) for s in data.shape[1:])
            self.n_classes_ = n_classes
            self.class_names_ = class_names or [str(i) for i in range(n_classes)]
            self.model_ = build_model(self.model, self.input_shape_, n_classes,
                                      **dict(self.model_options or {}))
            self.model_.compile(
                optimizer=self._optimizer(settings),
                loss="categorical_crossentropy",
                metrics=["accuracy"],
            )
            self.history_ = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
            self.settings_ = settings
            self._run_fit(train_batches, val_batches, settings, callbacks)
            val_labels = None
            if val_source is not None:
                val_labels = val_source[1] if len(val_source) == 2 else val_source[1][val_source[2]]
            self._warn_if_at_chance(labels[train_idx], val_labels)
            return self

    def _warn_if_at_chance(self, train_labels: np.ndarray, val_labels=None) -> None:
        """Warn when training ended at chance: the best epoch no better than always answering
        the most common class on the training data and, where it is large enough to tell, on
        the validation data — the network collapsed and its features mean nothing. Sets under
        ``max(30, 3 × classes)`` subtomograms are too small to tell and are not judged."""
        smallest = max(30, 3 * int(getattr(self, "n_classes_", 2)))

        def at_chance(key, labels, margin):
            values = np.asarray(self.history_.get(key, []), dtype=float)
            if labels is None or len(labels) < smallest or not np.any(np.isfinite(values)):
                return None  # not judged
            chance = np.bincount(np.asarray(labels, dtype=int)).max() / len(labels)
            best = float(np.nanmax(values))
            return (key, best, chance) if best <= chance + margin else False

        verdict = at_chance("accuracy", train_labels, 0.02)
        if not verdict:
            return
        on_validation = at_chance("val_accuracy", val_labels, 0.01)
        if on_validation is False:
            return
        key, best, chance = on_validation or verdict
        hint = ""
        if self.model == "inception3d" and self.normalize:
            hint = (" Inception3D on standardised input can collapse like this: train on the "
                    "raw volumes (normalize=False), as the authors' code did.")
        elif (self.model == "dsrf3d"
              and getattr(self, "settings_", {}).get("optimizer") == "sgd_nesterov"):
            hint = (" DSRF3D with the paper's SGD recipe stayed at chance on noisy sets where "
                    "Adam at a low rate learned: try recipe='modern', learning_rate=1e-4, "
                    "augment=None.")
        warnings.warn(
            f"{self.model}: best {key} {best:.3f} is no better than chance ({chance:.3f}, "
            f"always the most common class): the network did not learn.{hint} Otherwise check "
            "the labels, train longer or lower the learning_rate.",
            CryomlWarning,
            stacklevel=3,
        )

    @staticmethod
    def _optimizer(settings: dict[str, Any]):
        import keras

        rate = float(settings["learning_rate"])
        if settings.get("decay"):
            rate = keras.optimizers.schedules.InverseTimeDecay(
                rate, decay_steps=1, decay_rate=float(settings["decay"])
            )
        if settings["optimizer"] == "sgd_nesterov":
            return keras.optimizers.SGD(learning_rate=rate, momentum=0.9, nesterov=True)
        return keras.optimizers.Adam(learning_rate=rate)

    def _run_fit(self, train_batches, val_batches, settings: dict[str, Any], callbacks) -> None:

        epochs = int(settings["epochs"])
        monitor = "val_loss" if val_batches is not None else "loss"
        history = self.history_
        checkpoint = None if self.checkpoint is None else Path(self.checkpoint)

        def record(epoch, logs):
            for key in history:
                history[key].append(float(logs.get(key, np.nan)))

        self.best_loss_, self.interrupted_ = fit_keeping_best(
            self.model_, train_batches, validation_data=val_batches, epochs=epochs,
            monitor=monitor, patience=None if self.patience is None else int(self.patience),
            progress=self.progress, description=f"training {self.model}",
            on_epoch_end=record, checkpoint=checkpoint, callbacks=callbacks,
            postfix=lambda logs, value: {
                "loss": f"{logs.get('loss', np.nan):.3f}",
                "val_acc": f"{logs.get('val_accuracy', np.nan):.3f}",
            },
        )

    # --- prediction -----------------------------------------------------------------------

    def _check_input(self, data):
        data, labels, _ = open_subtomograms(data)
        if tuple(data.shape[1:]) != self.input_shape_:
            raise CryomlError(
                f"subtomograms are {tuple(data.shape[1:])} but the network takes "
                f"{self.input_shape_}; cut or resample them to that box."
            )
        return data, labels

    def transform(self, data, *, layer: str = "logits", batch_size: int = 256) -> np.ndarray:
        """Outputs of a named layer (default: the linear ``"logits"`` layer), (N, features).

        Raises
        ------
        CryomlError
            If not fitted, for a wrong box or an unknown layer name.
        """
        self._check_fitted()
        data, _ = self._check_input(data)
        names = [lay.name for lay in self.model_.layers]
        if layer not in names:
            raise CryomlError(f"the network has no layer {layer!r}; its layers are {names}.")
        import keras

        if layer == self.model_.layers[-1].name:
            model = self.model_
        else:
            model = keras.Model(self.model_.inputs, self.model_.get_layer(layer).output)
        return predict_batches(model, data, batch_size=batch_size, normalize=self.normalize,
                               progress=self.progress)

    def predict_proba(self, data, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities, (N, n_classes)."""
        return self.transform(data, layer="softmax", batch_size=batch_size)

    def predict(self, data, *, batch_size: int = 256) -> np.ndarray:
        """Predicted class indices, (N,)."""
        return np.argmax(self.predict_proba(data, batch_size=batch_size), axis=1)

    def evaluate(self, data, labels=None, *, batch_size: int = 256) -> dict[str, Any]:
        """Accuracy, confusion matrix and per-class recall on labelled subtomograms.

        Raises
        ------
        CryomlError
            Without labels.
        """
        self._check_fitted()
        where = f"{data}: " if isinstance(data, (str, os.PathLike)) else ""
        data, labels, names = open_subtomograms(data, labels)
        if labels is None:
            raise CryomlError(f"{where}'labels' are needed to evaluate.")
        n_set = max(int(labels.max(initial=-1)) + 1, len(names or ()))
        if n_set > self.n_classes_:
            raise CryomlError(
                f"{where}the set has {n_set} classes ({', '.join(names or [])}) but the network "
                f"was trained on {self.n_classes_} ({', '.join(self.class_names_)}); evaluate "
                "it on a set with the network's classes."
            )
        predicted = self.predict(data, batch_size=batch_size)
        return classification_report(
            labels, predicted, n_classes=self.n_classes_, class_names=self.class_names_
        )

    # --- persistence ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Save as ``.keras`` with metadata (``cryoml_subtomo.json`` inside the archive)."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".keras":
            raise CryomlError(f"{path}: networks are saved as .keras; use that suffix.")
        meta = json.dumps({
            "format": "cryoml.subtomo/1",
            "model": self.model,
            "recipe": self.recipe,
            "settings": self.settings_,
            "normalize": bool(self.normalize),
            "model_options": dict(self.model_options or {}),
            "input_shape": list(self.input_shape_),
            "n_classes": self.n_classes_,
            "class_names": self.class_names_,
            "history": self.history_,
        }, indent=1)
        with atomic_path(path, overwrite=overwrite) as tmp:
            keras_tmp = tmp.with_name(tmp.stem + "_model.keras")
            self.model_.save(keras_tmp)
            with zipfile.ZipFile(keras_tmp, "a") as archive:
                archive.writestr(_METADATA_NAME, meta)
            os.replace(keras_tmp, tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, progress: bool = True) -> SubtomoClassifier:
        """Load a network saved by :meth:`save`.

        Raises
        ------
        CryomlError
            For a missing file or one not saved by :meth:`save`.
        """
        path = Path(path)
        if not path.is_file():
            raise CryomlError(f"{path}: no such network file. Check the path.")
        try:
            with zipfile.ZipFile(path) as archive:
                meta = json.loads(archive.read(_METADATA_NAME))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
            raise CryomlError(
                f"{path}: not a cryoml subtomogram network ({error}); save one with "
                "SubtomoClassifier.save() or `cryoml subtomo train`."
            ) from None
        from cryoml._keras_load import check_model_io, load_keras_model

        how = "SubtomoClassifier.save() or `cryoml subtomo train`"
        needed = ("model", "recipe", "normalize", "settings", "input_shape", "n_classes",
                  "class_names", "history")
        if not isinstance(meta, dict) or any(key not in meta for key in needed):
            raise CryomlError(
                f"{path}: its cryoml metadata lacks some of {list(needed)}; save the network "
                f"with {how}."
            )
        model = load_keras_model(path, what="cryoml subtomogram network", how=how)
        check_model_io(model, path, what="subtomogram network", input_rank=5, output_rank=2,
                       output_units=int(meta["n_classes"]), how=how)
        clf = cls(model=meta["model"], recipe=meta["recipe"], normalize=meta["normalize"],
                  progress=progress, model_options=meta.get("model_options") or None)
        clf.model_ = model
        clf.settings_ = meta["settings"]
        clf.input_shape_ = tuple(meta["input_shape"])
        clf.n_classes_ = int(meta["n_classes"])
        clf.class_names_ = list(meta["class_names"])
        clf.history_ = meta["history"]
        return clf


def predict_batches(
    model, data, *, batch_size: int = 256, normalize: bool = True, progress: bool = False
) -> np.ndarray:
    """Run ``model`` over (N, Z, Y, X) subtomograms batch by batch (constant batch shape, so
    compiled backends compile once); returns (N, ...) float32.

    With ``normalize`` each subtomogram is standardised (zero mean, unit s.d.) inside the
    compiled call, on the device (:func:`_standardising`): the host only reads the raw
    volumes (a view, for consecutive subtomograms of an in-memory float32 array) and ships
    them. Standardising 2048 40³ volumes on the host took ~0.6 s, five times the network's
    time on an H200, and bounded host-fed inference. A float32 network gets float32; a
    bfloat16 one gets each subtomogram less its first voxel in float16 (:func:`_centred_half`),
    half the bytes, with rounding errors several times below those of the network's own cast
    of the standardised values to bfloat16.
    """
    n = int(data.shape[0])
    multiple = batch_multiple()
    batch_size = -(-int(batch_size) // multiple) * multiple  # split evenly over the devices
    batches = make_batches(data, np.arange(n), batch_size=batch_size, normalize=False,
                           pad_last=n > batch_size, multiple=multiple)
    half = normalize and _input_dtype(model) != np.dtype(np.float32)
    if normalize:
        model = _standardising(model)
    parts = []
    iterator = range(len(batches))
    if progress and len(batches) > 4:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="inference", unit="batch")
    if multiple == 1 and _jax_backend():
        dtype = np.dtype(np.float32) if normalize else _input_dtype(model)
        pipelined = _predict_pipelined(model, batches, iterator, dtype=dtype, centred_half=half)
        return np.concatenate(list(pipelined))[:n]
    for item in iterator:
        parts.append(np.asarray(model.predict_on_batch(batches[item][0]), dtype=np.float32))
    return np.concatenate(parts)[:n]


def _centred_half(batch: np.ndarray, pool=None, parts: int = 8) -> np.ndarray | None:
    """``batch`` less each sample's first value, in float16; None where a value would not
    be finite in float16 (a range beyond ±65,504, or NaN / inf in the data).

    The standardisation on the device subtracts the first value anyway (for float32
    accuracy), so the result is the same up to float16 rounding: ≤ 2⁻¹¹ of a value's distance
    from the first voxel, against 2⁻⁸ of the standardised value for the bfloat16 cast that
    follows. The subtraction and the check (on the float16 bits: an exponent of all ones)
    run in ``parts`` slices of the batch on ``pool`` (numpy releases the GIL).
    """
    batch = np.asarray(batch)
    first = batch[(slice(None),) + (slice(0, 1),) * (batch.ndim - 1)]
    out = np.empty(batch.shape, np.float16)
    bounds = np.linspace(0, len(batch), min(parts, len(batch)) + 1).astype(int)

    def work(i) -> bool:
        a, b = bounds[i], bounds[i + 1]
        with np.errstate(over="ignore", invalid="ignore"):  # inf is checked for below
            np.subtract(batch[a:b], first[a:b], out=out[a:b], casting="unsafe")
        return bool(np.max(out[a:b].view(np.uint16) & np.uint16(0x7FFF)) < 0x7C00)

    pieces = range(len(bounds) - 1)
    finite = list(map(work, pieces)) if pool is None else list(pool.map(work, pieces))
    return out if all(finite) else None


def _jax_backend() -> bool:
    import keras

    return keras.backend.backend() == "jax"


def _input_dtype(model):
    """bfloat16 when the network computes in bfloat16 (sending it loses nothing), else float32."""
    for layer in model.layers:
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and getattr(layer, "weights", None):
            if policy.compute_dtype == "bfloat16":
                import ml_dtypes

                return np.dtype(ml_dtypes.bfloat16)
            break
    return np.dtype(np.float32)


def _standardising(model):
    """``model`` behind a float32 standardisation layer (:func:`standardize_layer`): one
    Keras model, so every backend compiles the standardisation into the network call. Built
    once and kept on ``model`` (behind a function, which Keras neither tracks nor saves); it
    shares ``model``'s variables."""
    holder = getattr(model, "_cryoml_standardising", None)
    if holder is not None:
        return holder()
    import keras

    inputs = keras.Input(tuple(model.inputs[0].shape[1:]), dtype="float32", name="raw")
    wrapped = keras.Model(inputs, model(standardize_layer()(inputs)),
                          name=f"{model.name}_standardised")
    model._cryoml_standardising = lambda: wrapped
    return wrapped


def _jitted_predict(model):
    """``model`` as one jitted function of (trainable, non-trainable, batch); kept on it."""
    call = getattr(model, "_cryoml_jitted_predict", None)
    if call is None:
        import jax

        call = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        model._cryoml_jitted_predict = call
    return call


def _predict_pipelined(model, batches, items, *, depth: int = 2, dtype=None,
                       centred_half: bool = False):
    """Yield the outputs of ``model`` on ``batches[item][0]`` (JAX, one device), pipelined.

    Host-fed inference was bound by the host: each ``predict_on_batch`` prepares the batch,
    copies it to the device and waits for the result in series. Here two threads prepare and
    copy the next ``depth`` batches while the device works, and each result is fetched only
    after the next batch has been dispatched, so the device is never idle waiting for the
    host. Batches go over in ``dtype``; by default bfloat16 when the network computes in it
    (half the bytes over PCIe), which suits inputs already standardised. ``centred_half``
    (raw input to a standardising bfloat16 network) sends :func:`_centred_half` instead
    (float32 for a batch it refuses).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import jax

    call = _jitted_predict(model)
    trainable = [v.value for v in model.trainable_variables]
    other = [v.value for v in model.non_trainable_variables]
    dtype = _input_dtype(model) if dtype is None else np.dtype(dtype)
    helpers = ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2) - 2)),
                                 thread_name_prefix="cryoml-centre") if centred_half else None

    def exact(item):
        return jax.device_put(np.asarray(batches[item][0]).astype(dtype, copy=False))

    def load(item):
        if centred_half:
            half = _centred_half(batches[item][0], helpers)
            if half is not None:
                return jax.device_put(half)
        return exact(item)

    items = list(items) if not hasattr(items, "__len__") else items
    order = iter(items)
    try:
        with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="cryoml-feed") as pool:
            queue = [pool.submit(load, item) for _, item in zip(range(depth), order,
                                                                 strict=False)]
            pending = None
            while queue:
                batch = queue.pop(0).result()
                following = next(order, None)
                if following is not None:
                    queue.append(pool.submit(load, following))
                result = call(trainable, other, batch)
                del batch
                if pending is not None:
                    yield np.asarray(pending, dtype=np.float32)
                pending = result
            if pending is not None:
                yield np.asarray(pending, dtype=np.float32)
    finally:
        if helpers is not None:
            helpers.shutdown(wait=False)
