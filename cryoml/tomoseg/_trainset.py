"""TomoSeg training sets: 64×64 tiles from a preprocessed tomogram, labels shrunk ×2.

Follows EMAN2 ``e2tomoseg_buildtrainset.py``: every positive tile (boxed on any slice, with a
hand-painted binary mask) is copied ``n_copies`` times with a random in-plane rotation, so that
positives and negatives come out about equally many; negative tiles get an all-zero label. The
label of a tile is its mask shrunk ×2 by 2×2 averaging, because the paper network's output has
half the input's sampling; the full-resolution mask is kept too (``full_labels``) for networks
whose output has the input's sampling (``architecture="unet"``).

Rotated copies are interpolated with cubic splines, not linearly: a linear interpolation at a
random angle halves the power of a tile's finest details (measured: 0.48 of the power at
0.25–0.45 cycles/voxel, 0.47 of the variance of white noise), so 9 of every 10 positive tiles
looked smoother than the negatives and the tomogram the network is applied to — a difference
the network can learn instead of the feature. Cubic splines keep 0.94 of that power.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from cryoml._errors import CryomlError, CryomlWarning
from cryoml._validation import check_array, check_random_state
from cryoml.io._atomic import atomic_path

__all__ = ["TrainingSet", "build_training_set", "sample_boxes", "shrink_label", "slice_channels"]


@dataclasses.dataclass(eq=False)
class TrainingSet:
    """Tiles and labels for one feature, with how the tomogram was prepared.

    Attributes
    ----------
    tiles : (N, T, T, C) float32 ndarray
        Input tiles, channels last (C = 1 for the 2D net, 2k+1 for the 2.5D variant).
    labels : (N, T/2, T/2) float32 ndarray
        Masks shrunk ×2 (values in [0, 1]).
    is_positive : (N,) bool ndarray
        True for (rotated copies of) positive tiles.
    feature : str
        What the positives show (``"membrane"``).
    voxel_size : float or None
        Å/voxel of the tiles.
    preprocess : dict
        :class:`cryoml.preprocess.PreprocessRecord` as a dict (empty when unknown).
    n_neighbours : int
        k of the 2.5D input (0 = plain 2D).
    full_labels : (N, T, T) float32 ndarray or None
        The masks at the tiles' own sampling (for full-resolution networks); None in sets
        saved before they were kept.
    """

    tiles: np.ndarray
    labels: np.ndarray
    is_positive: np.ndarray
    feature: str = "feature"
    voxel_size: float | None = None
    preprocess: dict[str, Any] = dataclasses.field(default_factory=dict)
    n_neighbours: int = 0
    full_labels: np.ndarray | None = None

    def __add__(self, other: TrainingSet) -> TrainingSet:
        """Both sets' tiles in one set (e.g. a first set and the corrections boxed later)."""
        if not isinstance(other, TrainingSet):
            return NotImplemented
        if other.tiles.shape[1:] != self.tiles.shape[1:]:
            raise CryomlError(
                f"cannot join training sets with tiles of shape {self.tiles.shape[1:]} and "
                f"{other.tiles.shape[1:]}; build both with the same tile size and n_neighbours."
            )
        if self.feature != other.feature:
            raise CryomlError(
                f"cannot join a {self.feature!r} training set with a {other.feature!r} one."
            )
        full = None
        if self.full_labels is not None and other.full_labels is not None:
            full = np.concatenate([self.full_labels, other.full_labels])
        return TrainingSet(
            tiles=np.concatenate([self.tiles, other.tiles]),
            labels=np.concatenate([self.labels, other.labels]),
            is_positive=np.concatenate([self.is_positive, other.is_positive]),
            feature=self.feature,
            voxel_size=self.voxel_size,
            preprocess=dict(self.preprocess),
            n_neighbours=self.n_neighbours,
            full_labels=full,
        )

    def __len__(self) -> int:
        return int(self.tiles.shape[0])

    @property
    def n_channels(self) -> int:
        """Input channels per tile."""
        return int(self.tiles.shape[-1])

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the set as one ``.npz`` file (tiles, labels and the metadata as JSON)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise CryomlError(f"{path}: training sets are saved as .npz; use that suffix.")
        meta = {
            "feature": self.feature,
            "voxel_size": self.voxel_size,
            "preprocess": self.preprocess,
            "n_neighbours": self.n_neighbours,
        }
        extra = {} if self.full_labels is None else {"full_labels": self.full_labels}
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(
                    handle,
                    tiles=self.tiles,
                    labels=self.labels,
                    is_positive=self.is_positive,
                    meta=np.array(json.dumps(meta)),
                    **extra,
                )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainingSet:
        """Read a set written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise CryomlError(f"{path}: no such training set file. Check the path.")
        try:
            with np.load(path, allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
                return cls(
                    tiles=archive["tiles"].astype(np.float32, copy=False),
                    labels=archive["labels"].astype(np.float32, copy=False),
                    is_positive=archive["is_positive"].astype(bool),
                    full_labels=(
                        archive["full_labels"].astype(np.float32, copy=False)
                        if "full_labels" in archive.files
                        else None
                    ),
                    **meta,
                )
        except (KeyError, ValueError, OSError, EOFError, TypeError, zipfile.BadZipFile) as error:
            reason = str(error) or type(error).__name__
            if "allow_pickle" in reason:
                reason = "it holds Python objects, which cryoml never unpickles"
            raise CryomlError(
                f"{path}: not a cryoml TomoSeg training set, or truncated ({reason}). Build "
                "one with cryoml.tomoseg.build_training_set or `cryoml tomoseg buildset`."
            ) from None


def slice_channels(volume: np.ndarray, z: int, n_neighbours: int) -> np.ndarray:
    """Slice ``z`` and its ``n_neighbours`` neighbours on each side as (Y, X, 2k+1) channels.

    Slices beyond the volume's ends repeat the end slice.
    """
    index = np.clip(np.arange(z - n_neighbours, z + n_neighbours + 1), 0, volume.shape[0] - 1)
    return np.moveaxis(np.asarray(volume[index], dtype=np.float32), 0, -1)


def _centres(value: object, name: str) -> np.ndarray:
    if value is None:
        return np.zeros((0, 3))
    if hasattr(value, "centres"):
        value = value.centres
    array = np.asarray(value, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 3))
    if array.ndim != 2 or array.shape[1] != 3:
        raise CryomlError(
            f"'{name}' must be (N, 3) box centres in (Z, Y, X) voxels; got shape {array.shape}."
        )
    return np.rint(array).astype(int)


def _check_inside(centres: np.ndarray, shape: tuple[int, ...], tile: int, name: str) -> None:
    half = tile // 2
    low = centres[:, 1:] - half
    high = centres[:, 1:] + (tile - half)
    bad = (
        (centres[:, 0] < 0)
        | (centres[:, 0] >= shape[0])
        | np.any(low < 0, axis=1)
        | np.any(high > np.asarray(shape[1:]), axis=1)
    )
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0])
        raise CryomlError(
            f"{int(bad.sum())} of {len(centres)} {name} reach outside the tomogram of shape "
            f"{shape} with {tile}×{tile} tiles (first: centre (z, y, x) = "
            f"{centres[first].tolist()}). Move those boxes inward or remove them."
        )


def _cut(plane: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    half = size // 2
    return plane[y - half : y - half + size, x - half : x - half + size]


def _rotated(plane: np.ndarray, y: int, x: int, tile: int, angle: float, order: int) -> np.ndarray:
    """A tile×tile cut of ``plane`` (Y, X[, C]) rotated by ``angle`` degrees about (y, x)."""
    big = int(np.ceil(tile * np.sqrt(2))) + 2
    big += big % 2
    pad = big // 2
    widths = [
        (max(0, pad - y), max(0, y + pad - plane.shape[0])),
        (max(0, pad - x), max(0, x + pad - plane.shape[1])),
        *[(0, 0)] * (plane.ndim - 2),
    ]
    region = np.pad(
        plane[max(0, y - pad) : y + pad, max(0, x - pad) : x + pad], widths, mode="reflect"
    )
    rotated = ndi.rotate(region, angle, axes=(1, 0), reshape=False, order=order, mode="reflect")
    return _cut(rotated, pad, pad, tile)


def shrink_label(mask: np.ndarray) -> np.ndarray:
    """Shrink a (..., T, T) mask ×2 by 2×2 averaging (float32)."""
    mask = np.asarray(mask, dtype=np.float32)
    h, w = mask.shape[-2] // 2 * 2, mask.shape[-1] // 2 * 2
    mask = mask[..., :h, :w]
    return mask.reshape(*mask.shape[:-2], h // 2, 2, w // 2, 2).mean(axis=(-3, -1))


def build_training_set(
    tomogram: np.ndarray,
    positives: np.ndarray,
    masks: np.ndarray,
    negatives: np.ndarray | None = None,
    *,
    feature: str = "feature",
    tile_size: int = 64,
    n_copies: int | None = None,
    n_neighbours: int = 0,
    voxel_size: float | None = None,
    preprocess: dict[str, Any] | object | None = None,
    random_state: int | np.random.Generator | None = None,
) -> TrainingSet:
    """Cut TomoSeg training tiles from a preprocessed tomogram.

    Parameters
    ----------
    tomogram : (Z, Y, X) array_like or Image
        The preprocessed tomogram (normalised, clamped), as the network will see it.
    positives : (P, 3) array_like or Particles
        Centres (Z, Y, X) of positive tiles, on any slice.
    masks : (P, T, T) or (Z, Y, X) array_like
        Binary masks: one painted tile per positive, or one volume of the tomogram's shape
        from which the tiles' masks are cut.
    negatives : (M, 3) array_like or Particles, optional
        Centres of negative tiles (all-zero label).
    feature : str
        Name of the feature (kept with the set and the network).
    tile_size : int, default 64
        Tile edge (even).
    n_copies : int, optional
        Rotated copies per positive (EMAN2 ``ncopy``). Default: round(M / P) (at least 1),
        so positives ≈ negatives; the first copy of each positive is unrotated.
    n_neighbours : int, default 0
        k for the 2.5D variant: the slice and k neighbours above and below as channels.
    voxel_size : float, optional
        Å/voxel; taken from the Image when ``tomogram`` is one.
    preprocess : PreprocessRecord or dict, optional
        How the tomogram was prepared.
    random_state : None, int or Generator
        Seeds the rotation angles.

    Returns
    -------
    TrainingSet

    Raises
    ------
    CryomlError
        With no positives, masks of the wrong size or with nothing painted, or boxes off the
        edge.
    """
    if hasattr(tomogram, "voxel_size") and hasattr(tomogram, "data"):
        voxel_size = tomogram.voxel_size if voxel_size is None else voxel_size
        tomogram = tomogram.data
    volume = check_array(tomogram, ndim=3, name="tomogram")
    if int(tile_size) < 8 or int(tile_size) % 2:
        raise CryomlError(f"'tile_size' must be an even number >= 8; got {tile_size}.")
    tile = int(tile_size)
    if int(n_neighbours) < 0:
        raise CryomlError(f"'n_neighbours' must be >= 0; got {n_neighbours}.")
    k = int(n_neighbours)
    pos = _centres(positives, "positives")
    neg = _centres(negatives, "negatives")
    if len(pos) == 0:
        raise CryomlError(
            "no positive boxes: box at least one tile centred on the feature and paint its mask."
        )
    masks = np.asarray(masks)
    if masks.shape == volume.shape:
        from_volume = True
    elif masks.shape == (len(pos), tile, tile):
        from_volume = False
    else:
        raise CryomlError(
            f"'masks' has shape {masks.shape}; expected one {tile}×{tile} mask per positive "
            f"({len(pos)}, {tile}, {tile}) or a volume of the tomogram's shape {volume.shape}."
        )
    _check_inside(pos, volume.shape, tile, "positive boxes")
    if len(neg):
        _check_inside(neg, volume.shape, tile, "negative boxes")
    rng = check_random_state(random_state)
    if n_copies is None:
        n_copies = max(1, round(len(neg) / len(pos)))
    if int(n_copies) < 1:
        raise CryomlError(f"'n_copies' must be >= 1; got {n_copies}.")

    tiles, labels, full_labels, flags = [], [], [], []
    for index, (z, y, x) in enumerate(pos):
        mask_plane = masks[z] if from_volume else None
        mask_tile = _cut(mask_plane, y, x, tile) if from_volume else masks[index]
        if not np.any(mask_tile > 0):
            raise CryomlError(
                f"the mask of positive box {index} (centre z, y, x = {[int(z), int(y), int(x)]}) "
                "is empty: paint the feature in it, or box it as a negative."
            )
        plane = slice_channels(volume, z, k)
        if from_volume:
            full_mask = (np.asarray(mask_plane) > 0).astype(np.float32)
        else:
            full_mask = np.zeros(plane.shape[:2], np.float32)
            half = tile // 2
            full_mask[y - half : y - half + tile, x - half : x - half + tile] = mask_tile > 0
        for copy in range(int(n_copies)):
            angle = 0.0 if copy == 0 else float(rng.uniform(0, 360))
            if angle == 0.0:
                image, label = _cut(plane, y, x, tile), _cut(full_mask, y, x, tile)
            else:
                image = _rotated(plane, y, x, tile, angle, order=3)
                label = _rotated(full_mask, y, x, tile, angle, order=1)
            label = np.clip(label, 0, 1)
            tiles.append(np.asarray(image, np.float32))
            labels.append(shrink_label(label))
            full_labels.append(label.astype(np.float32))
            flags.append(True)
    for z, y, x in neg:
        plane = slice_channels(volume[max(0, z - k) : z + k + 1], min(z, k), k)
        tiles.append(_cut(plane, y, x, tile).astype(np.float32))
        labels.append(np.zeros((tile // 2, tile // 2), np.float32))
        full_labels.append(np.zeros((tile, tile), np.float32))
        flags.append(False)
    if hasattr(preprocess, "to_dict"):
        preprocess = preprocess.to_dict()
    return TrainingSet(
        tiles=np.stack(tiles).astype(np.float32),
        labels=np.stack(labels).astype(np.float32),
        is_positive=np.asarray(flags),
        feature=str(feature),
        voxel_size=None if voxel_size is None else float(voxel_size),
        preprocess=dict(preprocess or {}),
        n_neighbours=k,
        full_labels=np.stack(full_labels).astype(np.float32),
    )


def sample_boxes(
    mask: np.ndarray,
    n_positive: int,
    n_negative: int,
    *,
    tile_size: int = 64,
    min_fraction: float = 0.005,
    others: np.ndarray | Mapping[str, np.ndarray] | Sequence[np.ndarray] | None = None,
    others_share: float = 1 / 3,
    random_state: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose boxes as a user would, from a ground-truth mask (simulations, benchmarks).

    Positive boxes are centred on a random voxel of the feature, on random slices, with at
    least ``min_fraction`` of the tile painted; negative boxes hold none of the feature. With
    ``others``, a share of the negatives is centred on other features, as the paper's users
    box negatives on what the network must *not* find: without them a ribosome network
    learns "dense and dark" and fires on microtubules and membranes.

    Parameters
    ----------
    mask : (Z, Y, X) array_like of bool
        The feature's ground truth.
    n_positive, n_negative : int
        Boxes wanted.
    tile_size : int, default 64
    min_fraction : float, default 0.005
        Least painted fraction of a positive tile.
    others : (Z, Y, X) array_like of bool, or a dict or list of them, optional
        Other features (membranes, microtubules, gold, carbon...): ``others_share`` of the
        negatives are centred on them, with at most a trace (0.2 %) of the feature in the
        tile; the rest hold none of it. Given several masks (e.g.
        :meth:`cryoml.simulate.CellTomogram.others`), the share is split evenly among them,
        as a user boxes a few of each kind: one mask would give most boxes to the largest
        feature. A mask where no such tile fits passes its boxes on to the rest; if none
        fits, a :class:`~cryoml.CryomlWarning` says so and they hold none of the feature.
    others_share : float, default 1/3
        Share of the negatives on ``others`` (rounded down).
    random_state : None, int or Generator

    Returns
    -------
    positives, negatives : (P, 3), (M, 3) int ndarrays
        Centres (Z, Y, X), fully inside the volume.

    Raises
    ------
    CryomlError
        If the mask holds no voxel where a tile fits, or ``others`` has another shape.
    """
    volume = check_array(mask, ndim=3, name="mask", finite=False).astype(bool)
    rng = check_random_state(random_state)
    n_others, other_masks = 0, []
    if others is not None:
        if isinstance(others, Mapping):
            named = list(others.items())
        elif isinstance(others, np.ndarray) and np.ndim(others) == 3:
            named = [("others", others)]
        else:
            named = [(f"others[{i}]", m) for i, m in enumerate(others)]
        for name, other in named:
            other = check_array(other, ndim=3, name=name, finite=False).astype(bool)
            if other.shape != volume.shape:
                raise CryomlError(f"{name} has shape {other.shape}, the mask {volume.shape}; "
                                  "pass masks of the same tomogram.")
            other_masks.append(other)
        if not 0 <= others_share <= 1:
            raise CryomlError(f"others_share must lie in [0, 1]; got {others_share}.")
        n_others = int(int(n_negative) * others_share)
    half = int(tile_size) // 2
    shape = volume.shape
    # Painted fraction of the tile around every voxel (box filter on each slice).
    fraction = ndi.uniform_filter(
        volume.astype(np.float32), size=(1, tile_size, tile_size), mode="constant"
    )
    inside = np.zeros(shape, bool)
    inside[:, half : shape[1] - half + 1, half : shape[2] - half + 1] = True
    candidates = np.argwhere(volume & inside & (fraction >= min_fraction))
    if len(candidates) == 0:
        raise CryomlError(
            "the mask has no voxel where a positive tile fits inside the volume; check the mask "
            "or use smaller tiles."
        )
    positives = candidates[
        rng.choice(len(candidates), size=int(n_positive), replace=len(candidates) < int(n_positive))
    ]
    places = [np.argwhere(m & inside & (fraction < 0.002)) for m in other_masks] if n_others else []
    places = [p for p in places if len(p)]
    if n_others and not places:
        # A crowded field can leave no tile on another feature that is free of this one; a
        # notebook should go on with plain negatives rather than stop.
        warnings.warn(
            f"no tile centred on another feature is (nearly) free of this one; the {n_others} "
            "negatives meant for other features are placed away from the feature instead. "
            "Pass other features' masks, a larger volume or smaller tiles to box them.",
            CryomlWarning,
            stacklevel=2,
        )
        n_others = 0
    n_free = int(n_negative) - n_others
    empty = np.argwhere(inside & (fraction < 1e-6))
    if len(empty) == 0 and n_free:
        raise CryomlError("no tile position is free of the feature; cannot place negatives.")
    negatives = (
        empty[rng.choice(len(empty), size=n_free, replace=len(empty) < n_free)]
        if n_free
        else (np.zeros((0, 3), int))
    )
    if n_others:
        counts = [n_others // len(places) + (i < n_others % len(places))
                  for i in range(len(places))]
        for where, count in zip(places, counts, strict=True):
            if count:
                chosen = rng.choice(len(where), size=count, replace=len(where) < count)
                negatives = np.concatenate([negatives, where[chosen]])
    return positives, negatives
