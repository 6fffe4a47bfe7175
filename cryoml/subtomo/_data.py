"""Subtomogram sources (arrays, memory maps, HDF5 files) and Keras batch feeding.

Training and inference read subtomograms through :class:`keras.utils.PyDataset` batches that
index the source lazily, so a set stored on disk (``.h5`` written by
:meth:`cryoml.simulate.SubtomogramSet.save`, or a ``.npy`` memory map) larger than RAM can be
used: only one batch is in memory at a time.
"""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path

import numpy as np

from cryoml._errors import CryomlError

__all__ = ["AUGMENTATIONS", "augment_batch", "open_subtomograms", "standardize"]

AUGMENTATIONS = (None, "wedge", "cube")


def open_subtomograms(source, labels=None, *, class_names=None):
    """Normalise a subtomogram source to ``(data, labels, class_names)``.

    Parameters
    ----------
    source : SubtomogramSet, (N, Z, Y, X) array-like, or path
        A :class:`cryoml.simulate.SubtomogramSet`; an array, ``np.memmap`` or ``h5py`` dataset;
        or a path to a ``.h5`` set (opened lazily, not read into memory), a ``.npz`` set (read)
        or a ``.npy`` array (memory-mapped).
    labels : (N,) array of int, optional
        Class indices (taken from the set when ``source`` is one).
    class_names : list of str, optional
        Names of the classes.

    Returns
    -------
    data : (N, Z, Y, X) array-like
    labels : (N,) ndarray of int or None
    class_names : list of str or None

    Raises
    ------
    CryomlError
        For a missing file, an unknown suffix or a source that is not 4-D.
    """
    where = "subtomograms"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise CryomlError(f"{path}: no such subtomogram file. Check the path.")
        suffix = path.suffix.lower()
        if suffix in (".h5", ".hdf5"):
            import json

            import h5py

            try:
                handle = h5py.File(path, "r")
            except OSError as error:
                raise CryomlError(
                    f"{path}: not a readable HDF5 subtomogram set ({error}); write sets with "
                    "SubtomogramSet.save."
                ) from None
            if "data" not in handle:
                raise CryomlError(
                    f"{path}: no 'data' dataset; write sets with SubtomogramSet.save."
                )
            data = handle["data"]
            if labels is None and "labels" in handle:
                labels = handle["labels"][...]
            if class_names is None and "meta" in handle.attrs:
                class_names = json.loads(handle.attrs["meta"]).get("class_names")
        elif suffix == ".npz":
            from cryoml.simulate import SubtomogramSet

            loaded = SubtomogramSet.load(path)
            data, labels = loaded.data, loaded.labels if labels is None else labels
            class_names = class_names or loaded.class_names
        elif suffix == ".npy":
            try:
                data = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as error:
                raise CryomlError(
                    f"{path}: not a plain numeric .npy array ({_npy_reason(error)})."
                ) from None
        else:
            raise CryomlError(f"{path}: read subtomograms from .h5, .npz or .npy files.")
    elif hasattr(source, "data") and hasattr(source, "labels") and hasattr(source, "class_names"):
        data = source.data
        labels = source.labels if labels is None else labels
        class_names = class_names or list(source.class_names)
    else:
        data = source
    if not hasattr(data, "shape") or not hasattr(data, "__getitem__"):
        data = np.asarray(data, dtype=np.float32)
    if len(data.shape) != 4:
        raise CryomlError(
            f"{where} must be an (N, Z, Y, X) array; got shape {tuple(data.shape)}."
        )
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise CryomlError(
                f"{where}: 'labels' must be {data.shape[0]} whole numbers (one per "
                f"subtomogram); got {labels.dtype} of shape {labels.shape}."
            )
        if labels.size and labels.min() < 0:
            raise CryomlError(f"{where}: 'labels' must be >= 0 (class indices).")
        if class_names is not None and labels.size and labels.max() >= len(class_names):
            raise CryomlError(
                f"{where}: label {int(labels.max())} has no class name; the set names "
                f"{len(class_names)} classes ({', '.join(map(str, class_names))}). Fix the "
                "labels or the class names."
            )
    bad = _count_nonfinite(data)
    if bad:
        raise CryomlError(
            f"{where} holds {bad} NaN or infinite voxels; replace them (e.g. numpy.nan_to_num) "
            "or simulate/extract the set again."
        )
    return data, labels, None if class_names is None else [str(n) for n in class_names]


def _npy_reason(error: Exception) -> str:
    text = str(error)
    if "allow_pickle" in text or "Object arrays" in text:
        return "it holds Python objects, which cryoml never unpickles; save a numeric array"
    return text or type(error).__name__


def _count_nonfinite(data, block_bytes: int = 1 << 26) -> int:
    """NaN/Inf voxels of an in-memory, memory-mapped or HDF5 array, read in blocks."""
    dtype = np.dtype(getattr(data, "dtype", np.float32))
    if dtype.kind not in "fc" or data.shape[0] == 0:
        return 0
    per_item = max(1, int(np.prod(data.shape[1:])) * dtype.itemsize)
    step = max(1, block_bytes // per_item)
    total = 0
    for start in range(0, data.shape[0], step):
        block = np.asarray(data[start : start + step])
        total += int(block.size - np.count_nonzero(np.isfinite(block)))
    return total


def read_batch(data, indices: np.ndarray) -> np.ndarray:
    """Read ``data[indices]`` as float32 (sorted reads, as h5py needs; original order back).

    A run of consecutive indices is read as one slice: from an in-memory (or memory-mapped)
    float32 array that is a view, not a copy, so the batch must not be written into.
    """
    indices = np.asarray(indices)
    if indices.ndim == 1 and len(indices) and _is_run(indices):
        start = int(indices[0])
        return np.asarray(data[start : start + len(indices)], dtype=np.float32)
    if isinstance(data, np.ndarray) and not isinstance(data, np.memmap):
        return np.asarray(data[indices], dtype=np.float32)  # in memory: gather in place
    order = np.argsort(indices, kind="stable")
    block = np.asarray(data[indices[order].tolist()] if not isinstance(data, np.ndarray)
                       else data[indices[order]], dtype=np.float32)
    out = np.empty_like(block)
    out[order] = block
    return out


def standardize(batch: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation per subtomogram (float32, (N, ...))."""
    batch = np.asarray(batch, dtype=np.float32)
    if batch.size == 0:
        return batch.copy()
    flat = batch.reshape(len(batch), -1)
    # Four passes over the data instead of seven (np.std re-computes the mean and makes
    # temporaries); this feeds the GPU. Relative error against float64: ~1e-5.
    out = flat - flat.mean(axis=1, keepdims=True)
    std = np.sqrt(np.einsum("ij,ij->i", out, out) / max(flat.shape[1], 1))
    out *= (1.0 / np.maximum(std, 1e-6)).astype(np.float32)[:, None]
    return out.reshape(batch.shape)


def _is_run(indices: np.ndarray) -> bool:
    """Whether ``indices`` are consecutive and increasing (i, i + 1, ..., i + n - 1)."""
    return bool(
        indices[0] >= 0
        and indices[-1] - indices[0] == len(indices) - 1
        and (len(indices) == 1 or np.all(np.diff(indices) == 1))
    )


def standardize_layer(name: str = "standardize"):
    """A Keras layer doing :func:`standardize` (zero mean, unit s.d. per sample) in float32.

    Put in front of a network it moves the standardisation into the compiled call, on the
    device: the host only reads raw volumes and ships them in float32, or for a bfloat16
    network less each sample's first value in float16 (raw values in bfloat16 would lose the
    signal of data with an offset; the network's first layer casts the standardised values to
    its compute dtype, as host-standardised ones were cast). The mean is taken after
    subtracting each sample's first value, so a large offset costs no float32 accuracy.
    """
    return _standardize_layer_class()(name=name, dtype="float32")


@functools.lru_cache(maxsize=1)
def _standardize_layer_class():
    import keras
    from keras import ops

    class Standardize(keras.layers.Layer):
        """Zero mean, unit standard deviation per sample (float32), as ``standardize``."""

        def call(self, inputs):
            x = ops.cast(inputs, "float32")
            axes = tuple(range(1, len(x.shape)))
            first = x[(slice(None),) + (slice(0, 1),) * len(axes)]
            shifted = x - first
            centred = shifted - ops.mean(shifted, axis=axes, keepdims=True)
            std = ops.sqrt(ops.mean(ops.square(centred), axis=axes, keepdims=True))
            return centred * (1.0 / ops.maximum(std, 1e-6))

        def compute_output_shape(self, input_shape):
            return input_shape

    return Standardize


@functools.lru_cache(maxsize=1)
def _cube_rotations() -> list[tuple[tuple[int, int, int], tuple[int, ...]]]:
    """The 24 proper rotations of the cube as (axis permutation, flipped axes)."""
    found = []
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3))
            for row, (col, sign) in enumerate(zip(perm, flips, strict=True)):
                matrix[row, col] = sign
            if np.linalg.det(matrix) > 0:
                found.append((perm, tuple(a for a in range(3) if flips[a] < 0)))
    return found


# 180° rotations about Z, Y and X (and identity): they keep a tilt-about-Y missing wedge in place.
_WEDGE_ROTATIONS = [((0, 1, 2), ()), ((0, 1, 2), (1, 2)), ((0, 1, 2), (0, 2)), ((0, 1, 2), (0, 1))]


def augment_batch(batch: np.ndarray, mode: str | None, rng: np.random.Generator) -> np.ndarray:
    """Random proper rotations of each (Z, Y, X) volume of an (N, Z, Y, X) batch.

    ``"wedge"``: identity or 180° about Z, Y or X — the rotations that keep a missing wedge
    (tilt axis Y, beam Z) where it was, so augmented data look like real data. ``"cube"``: any
    of the 24 rotations of the cube (the wedge moves; needs cubic boxes). None: unchanged.
    """
    if mode is None:
        return batch
    choices = _WEDGE_ROTATIONS if mode == "wedge" else _cube_rotations()
    out = np.empty_like(batch)
    for i, pick in enumerate(rng.integers(len(choices), size=len(batch))):
        perm, flips = choices[pick]
        volume = np.transpose(batch[i], perm)
        if flips:
            volume = np.flip(volume, axis=flips)
        out[i] = volume
    return out


def make_batches(
    data,
    indices: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    n_classes: int | None = None,
    batch_size: int = 64,
    shuffle: bool = False,
    augment: str | None = None,
    normalize: bool = True,
    seed: int = 0,
    pad_last: bool = False,
    workers: int = 1,
    multiple: int = 1,
):
    """A :class:`keras.utils.PyDataset` over ``data[indices]`` (one-hot targets if labelled).

    ``pad_last`` fills the last batch to ``batch_size`` by repeating its last subtomogram;
    ``multiple`` (the number of devices a distributed batch is split over) pads it, the same
    way, only to the next multiple of that number.

    With ``workers`` > 1 batches are prepared in that many threads (reading and standardising
    release the GIL); each batch's augmentation uses its own generator seeded by
    (``seed``, epoch, batch), so results do not depend on the thread schedule.
    """
    import keras

    class SubtomogramBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=int(workers), use_multiprocessing=False)
            self.indices = np.asarray(indices)
            self.epoch = 0
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(self.indices) if shuffle else self.indices

        def __len__(self):
            return max(1, int(np.ceil(len(self.indices) / batch_size)))

        def __getitem__(self, item):
            picked = self.order[item * batch_size : (item + 1) * batch_size]
            n_real = len(picked)
            if pad_last and n_real < batch_size:
                picked = np.concatenate([picked, np.repeat(picked[-1:], batch_size - n_real)])
            elif multiple > 1 and n_real % multiple:
                picked = np.concatenate([picked, np.repeat(picked[-1:], -n_real % multiple)])
            batch = read_batch(data, picked)
            if normalize:
                batch = standardize(batch)
            if augment is not None:
                batch_rng = np.random.default_rng([seed, self.epoch, item])
                batch = augment_batch(batch, augment, batch_rng)
            batch = batch[..., None]
            if labels is None:
                return (batch,)
            targets = np.zeros((len(picked), n_classes), dtype=np.float32)
            targets[np.arange(len(picked)), labels[picked]] = 1.0
            return batch, targets

        def on_epoch_end(self):
            self.epoch += 1
            if shuffle:
                self.order = self.rng.permutation(self.indices)

    return SubtomogramBatches()
