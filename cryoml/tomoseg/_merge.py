"""Merging several networks' outputs into one integer label volume (EMAN2 mergetomoseg)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoml._errors import CryomlError
from cryoml._validation import check_positive

__all__ = ["merge_segmentations"]


def merge_segmentations(
    outputs: Sequence[np.ndarray],
    *,
    names: Sequence[str] | None = None,
    threshold: float = 0.8,
    chunk_slices: int = 16,
) -> tuple[np.ndarray, dict[int, str]]:
    """Voxel-wise argmax over [threshold, net 1, net 2, ...].

    Parameters
    ----------
    outputs : sequence of (Z, Y, X) array_like
        Scaled outputs of several networks (1 = typical training positive); may be memory
        maps — the merge runs in slabs of ``chunk_slices`` slices.
    names : sequence of str, optional
        Feature names, one per output (default ``feature1``, ...).
    threshold : float, default 0.8
        Voxels where every output is below it get label 0 (EMAN2 default 0.8).
    chunk_slices : int, default 16
        Slices per slab.

    Returns
    -------
    labels : (Z, Y, X) uint8 ndarray
        0 = background, i = the i-th output won.
    table : dict of int to str
        ``{0: "background", 1: names[0], ...}``.

    Raises
    ------
    CryomlError
        For no outputs, outputs of different shapes or a wrong number of names.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[[0.1, 0.9, 2.0]]]); b = np.array([[[0.2, 1.5, 0.5]]])
    >>> labels, table = merge_segmentations([a, b], names=["membrane", "ribosome"])
    >>> labels.tolist(), table[2]
    ([[[0, 2, 1]]], 'ribosome')
    """
    if len(outputs) == 0:
        raise CryomlError("merge_segmentations needs at least one network output.")
    arrays = [o if isinstance(o, np.ndarray) else np.asarray(o) for o in outputs]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays) or len(shape) != 3:
        raise CryomlError(
            f"all outputs must be (Z, Y, X) volumes of one shape; got {[a.shape for a in arrays]}."
        )
    if names is None:
        names = [f"feature{i + 1}" for i in range(len(arrays))]
    if len(names) != len(arrays):
        raise CryomlError(f"got {len(names)} names for {len(arrays)} outputs; give one per output.")
    if len(arrays) > 254:
        raise CryomlError("at most 254 outputs can be merged into a uint8 label volume.")
    threshold = check_positive(threshold, name="threshold", allow_zero=True)
    labels = np.empty(shape, np.uint8)
    for z0 in range(0, shape[0], int(chunk_slices)):
        part = slice(z0, z0 + int(chunk_slices))
        stack = np.stack([np.asarray(a[part], np.float32) for a in arrays])
        floor = np.full((1, *stack.shape[1:]), threshold, np.float32)
        labels[part] = np.argmax(np.concatenate([floor, stack]), axis=0)
    table = {0: "background", **{i + 1: str(n) for i, n in enumerate(names)}}
    return labels, table
