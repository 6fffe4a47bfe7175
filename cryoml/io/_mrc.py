"""MRC images, stacks and volumes through mrcfile, with voxel sizes in Å."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from cryoml._errors import CryomlError, CryomlWarning
from cryoml._validation import check_array
from cryoml.io._atomic import atomic_path
from cryoml.io._image import Image

__all__ = ["read_mrc", "write_mrc"]

# mrcfile accepts these modes natively; anything else is converted to float32.
_MRC_DTYPES = {np.dtype(t) for t in (np.int8, np.int16, np.uint16, np.float32, np.complex64)}
_MRC_DTYPES |= {np.dtype(np.uint8), np.dtype(np.float16)}


def read_mrc(
    path: str | os.PathLike,
    *,
    mmap: bool = False,
    permissive: bool = False,
    check_finite: bool = True,
) -> Image:
    """Read an MRC image, stack or volume.

    Parameters
    ----------
    path : str or path-like
        The ``.mrc`` / ``.mrcs`` / ``.map`` / ``.rec`` file.
    mmap : bool, default False
        Memory-map the data instead of reading it into RAM (for large tomograms).
    permissive : bool, default False
        Read damaged files with warnings instead of errors (mrcfile's permissive mode).
    check_finite : bool, default True
        Refuse NaN or infinite values (counted in slabs, so memory maps stay cheap).

    Returns
    -------
    Image
        Data in (Z, Y, X) or (Y, X) order, voxel size in Å (None if the header has none).

    Raises
    ------
    CryomlError
        If the file is missing, empty, not MRC, truncated, 1-D or holds NaN/Inf.

    Warns
    -----
    CryomlWarning
        If the header gives no voxel size (0 Å); cryoml does not guess one.
    """
    path = Path(path)
    if not path.is_file():
        raise CryomlError(f"{path}: no such file. Check the path.")
    if path.stat().st_size == 0:
        raise CryomlError(f"{path} is empty (0 bytes); the file was not written completely.")
    if path.suffix.lower() == ".gz":
        mmap = False  # a compressed map cannot be memory-mapped; mrcfile.open decompresses it
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if not permissive else "default", RuntimeWarning)
            handle = opener(path, mode="r", permissive=permissive)
    except ValueError as error:
        text = str(error)
        if "too small" in text or "truncated" in text.lower() or "Expected" in text:
            fix = "the file is truncated; copy or export it again"
        elif "map ID" in text or "machine stamp" in text:
            fix = "this is not an MRC file (wrong header)"
        else:
            fix = "the header is invalid"
        raise CryomlError(
            f"{path}: cannot read as MRC ({text}): {fix}. "
            "If you trust the data, try permissive=True."
        ) from None
    try:
        if handle.data is None:
            raise CryomlError(
                f"{path}: the MRC header could not be matched to data (damaged or truncated file)."
            )
        data = handle.data if mmap else np.array(handle.data)
        voxel = float(handle.voxel_size.x)
        is_stack = bool(handle.is_image_stack())
    finally:
        if not mmap:
            handle.close()
    if data.ndim == 3 and data.shape[0] == 1 and not is_stack:
        data = data[0]
    if data.ndim == 1 or data.ndim > 3:
        raise CryomlError(
            f"{path}: holds a {data.ndim}-D array of shape {data.shape}; cryoml reads 2-D images, "
            "image stacks and 3-D volumes."
        )
    check_array(data, ndim=(2, 3), name="MRC data", finite=check_finite, source=str(path))
    if voxel <= 0:
        warnings.warn(
            f"{path}: the MRC header gives no voxel size; it is left as None. Set it with "
            "cryoml.io.write_mrc(..., voxel_size=...) or pass the size where it is needed.",
            CryomlWarning,
            stacklevel=2,
        )
        voxel_size = None
    else:
        voxel_size = voxel
    return Image(data=data, voxel_size=voxel_size, path=path, is_stack=is_stack)


def write_mrc(
    path: str | os.PathLike,
    data: np.ndarray | Image,
    *,
    voxel_size: float | None = None,
    is_stack: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an image, stack or volume as MRC, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file.
    data : ndarray or Image
        (Y, X), (N, Y, X) or (Z, Y, X) data. Types that MRC cannot hold become float32.
    voxel_size : float, optional
        Voxel size in Å; taken from ``data`` when it is an :class:`Image`.
    is_stack : bool, optional
        Write a 3-D array as an image stack (space group 0); default from ``data``.
    overwrite : bool, default False
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if isinstance(data, Image):
        voxel_size = data.voxel_size if voxel_size is None else voxel_size
        is_stack = data.is_stack if is_stack is None else is_stack
        data = data.data
    array = check_array(data, ndim=(2, 3), name="data to write", finite=False)
    if array.dtype not in _MRC_DTYPES:
        array = array.astype(np.float32)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with mrcfile.new(tmp, overwrite=True) as handle:
            handle.set_data(np.ascontiguousarray(array))
            if is_stack and array.ndim == 3:
                handle.set_image_stack()
            if voxel_size is not None:
                handle.voxel_size = float(voxel_size)
            handle.update_header_stats()
    return Path(path)
