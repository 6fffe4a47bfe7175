"""Consensus and uncertainty of several networks (e.g. trained from different annotators)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoml._errors import CryomlError

__all__ = ["consensus_maps"]


def consensus_maps(
    outputs: Sequence[np.ndarray], *, chunk_slices: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Voxel-wise mean and standard deviation of several networks' scaled outputs.

    Parameters
    ----------
    outputs : sequence of (Z, Y, X) array_like
        Outputs of networks for the same feature (two or more).
    chunk_slices : int
        Slices per slab (outputs may be memory maps).

    Returns
    -------
    mean, sd : (Z, Y, X) float32 ndarrays
        Consensus (threshold it like one network's output) and disagreement.

    Raises
    ------
    CryomlError
        For fewer than two outputs or differing shapes.

    Examples
    --------
    >>> import numpy as np
    >>> mean, sd = consensus_maps([np.zeros((1, 2, 2)), np.ones((1, 2, 2))])
    >>> float(mean[0, 0, 0]), float(sd[0, 0, 0])
    (0.5, 0.5)
    """
    if len(outputs) < 2:
        raise CryomlError("consensus_maps needs at least two network outputs.")
    shape = np.shape(outputs[0])
    if any(np.shape(o) != shape for o in outputs) or len(shape) != 3:
        raise CryomlError(
            "all outputs must be (Z, Y, X) volumes of one shape; got "
            f"{[np.shape(o) for o in outputs]}."
        )
    mean = np.empty(shape, np.float32)
    sd = np.empty(shape, np.float32)
    for z0 in range(0, shape[0], int(chunk_slices)):
        part = slice(z0, z0 + int(chunk_slices))
        stack = np.stack([np.asarray(o[part], np.float32) for o in outputs])
        mean[part] = stack.mean(axis=0)
        sd[part] = stack.std(axis=0)
    return mean, sd
