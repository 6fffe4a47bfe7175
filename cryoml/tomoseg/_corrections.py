"""Where a network's output should be checked: its largest blobs, as boxes for corrections."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from cryoml._errors import CryomlError
from cryoml._validation import check_array

__all__ = ["largest_blobs"]


def largest_blobs(
    output: np.ndarray,
    *,
    threshold: float = 1.0,
    count: int = 10,
    tile_size: int = 64,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Centres of the largest connected regions of ``output >= threshold``, as tile boxes.

    The first places to look for a network's false positives, and the boxes a user gives to
    :meth:`TomoSegmenter.add_corrections` once checked. Each centre is the region's strongest
    voxel, moved inward so that a ``tile_size`` tile around it fits in the slice.

    Parameters
    ----------
    output : (Z, Y, X) array_like
        A scaled network output (1 = the natural cut).
    threshold : float, default 1.0
        Cut applied to ``output``.
    count : int, default 10
        Most boxes returned, largest regions first.
    tile_size : int, default 64
        Edge of the tiles the boxes stand for.
    exclude : (Z, Y, X) array_like of bool, optional
        Voxels known to hold the feature (e.g. painted, or a simulation's truth): regions
        whose tile would include any of them are skipped, since a tile labelled negative
        that shows the feature teaches the network to miss it.

    Returns
    -------
    (N, 3) int ndarray
        Box centres (Z, Y, X), N <= ``count``.

    Raises
    ------
    CryomlError
        For a volume smaller than one tile, or an ``exclude`` of another shape.

    Examples
    --------
    >>> out = np.zeros((4, 96, 96), np.float32)
    >>> out[2, 40:50, 40:50] = 2.0
    >>> largest_blobs(out, tile_size=32).tolist()
    [[2, 40, 40]]
    """
    volume = check_array(output, ndim=3, name="output")
    half = int(tile_size) // 2
    if min(volume.shape[1:]) < int(tile_size):
        raise CryomlError(
            f"the output's slices ({volume.shape[1]}×{volume.shape[2]}) are smaller than one "
            f"{tile_size}×{tile_size} tile."
        )
    allowed = np.zeros(volume.shape, bool)
    allowed[:, half : volume.shape[1] - half + 1, half : volume.shape[2] - half + 1] = True
    if exclude is not None:
        exclude = np.asarray(exclude, bool)
        if exclude.shape != volume.shape:
            raise CryomlError(
                f"'exclude' has shape {exclude.shape}; the output has {volume.shape}."
            )
        near = ndi.uniform_filter(exclude.astype(np.float32), size=(1, tile_size, tile_size),
                                  mode="constant")
        allowed &= near < 0.5 / float(tile_size) ** 2
    above = volume >= threshold
    labels, n = ndi.label(above)
    if n == 0:
        return np.zeros((0, 3), int)
    index = np.arange(1, n + 1)
    sizes = ndi.sum_labels(above, labels, index=index)
    usable = ndi.maximum(allowed, labels, index=index) > 0
    masked = np.where(allowed, volume, -np.inf)
    boxes = []
    for i in np.argsort(sizes)[::-1]:
        if not usable[i]:
            continue
        boxes.append(ndi.maximum_position(masked, labels, i + 1))
        if len(boxes) == int(count):
            break
    return np.asarray(boxes, int).reshape(-1, 3)
