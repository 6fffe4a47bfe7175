"""A light container: an image or volume with its voxel size and where it came from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cryoml._errors import CryomlError

__all__ = ["Image", "check_voxel_size_match"]


@dataclasses.dataclass(eq=False)
class Image:
    """An image (Y, X), image stack (N, Y, X) or volume (Z, Y, X) with its voxel size.

    Parameters
    ----------
    data : ndarray or numpy.memmap
        The pixel values, axes in (Z, Y, X) / (Y, X) order.
    voxel_size : float or None
        Edge of one pixel/voxel in Å; None when the source did not say.
    path : pathlib.Path or None
        The file the data were read from.
    is_stack : bool
        True for a stack of 2-D images (MRC space group 0 with Z > 1), False for a volume.

    Examples
    --------
    >>> import numpy as np
    >>> image = Image(np.zeros((4, 8, 8), np.float32), voxel_size=10.0)
    >>> image.shape, image.voxel_size
    ((4, 8, 8), 10.0)
    """

    data: np.ndarray
    voxel_size: float | None = None
    path: Path | None = None
    is_stack: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the data, (Z, Y, X) or (Y, X)."""
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        """Number of dimensions of the data."""
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        """Data type of the pixel values."""
        return self.data.dtype

    def __array__(self, dtype=None, copy=None):
        array = np.asarray(self.data)
        return array.astype(dtype) if dtype is not None else array

    def __repr__(self) -> str:
        size = "unknown" if self.voxel_size is None else f"{self.voxel_size:g} Å"
        kind = "stack" if self.is_stack else {2: "image", 3: "volume"}.get(self.ndim, "array")
        source = f", path={str(self.path)!r}" if self.path else ""
        return f"Image({kind} {self.shape} {self.dtype}, voxel_size={size}{source})"


def check_voxel_size_match(
    expected: float | None,
    actual: float | None,
    *,
    what: str,
    source: str | None = None,
    rtol: float = 0.01,
    override: bool = False,
) -> None:
    """Refuse data whose voxel size differs from the one a model or step expects.

    Parameters
    ----------
    expected : float or None
        Voxel size (Å) the model or step was made for.
    actual : float or None
        Voxel size (Å) of the data.
    what : str
        What expects it (``"network 'membrane'"``), for the message.
    source : str, optional
        The data's file, for the message.
    rtol : float
        Allowed relative difference.
    override : bool
        Skip the check (the caller knows better).

    Raises
    ------
    CryomlError
        On a mismatch beyond ``rtol`` unless ``override`` is True.
    """
    if override or expected is None or actual is None:
        return
    if abs(actual - expected) > rtol * expected:
        where = f" {source}" if source else " the input"
        raise CryomlError(
            f"voxel size mismatch: {what} expects {expected:g} Å/voxel but{where} has "
            f"{actual:g} Å/voxel. Bin or resample the input to {expected:g} Å "
            "(cryoml preprocess --bin), or override the check if you know the sizes agree."
        )
