"""Read any supported image or volume format by its suffix."""

from __future__ import annotations

import os
from pathlib import Path

from cryoml._errors import CryomlError
from cryoml.io._image import Image
from cryoml.io._mrc import read_mrc
from cryoml.io._tiff import read_tiff

__all__ = ["IMAGE_SUFFIXES", "read_image"]

IMAGE_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".tif", ".tiff")


def read_image(path: str | os.PathLike, *, mmap: bool = False, permissive: bool = False) -> Image:
    """Read an image or volume (MRC family or TIFF), choosing the reader by suffix.

    Parameters
    ----------
    path : str or path-like
        The file.
    mmap : bool, default False
        Memory-map MRC data (TIFF is always read into memory).
    permissive : bool, default False
        Read damaged MRC files with warnings instead of errors.

    Returns
    -------
    Image

    Raises
    ------
    CryomlError
        For unknown suffixes and for anything the format readers refuse.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return read_tiff(path)
    if suffix in IMAGE_SUFFIXES:
        return read_mrc(path, mmap=mmap, permissive=permissive)
    raise CryomlError(
        f"{path}: unknown image format '{path.suffix}'. cryoml reads {', '.join(IMAGE_SUFFIXES)}."
    )
