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

# IMOD's convention for mode 0: its stamp at bytes 152–155 and, in the flags at 156–159,
# bit 0 set for signed bytes; stamped files without that bit hold unsigned bytes.
_IMOD_STAMP = 1146047817


def _imod_words(header) -> np.ndarray:
    """The header's bytes 152–159 (IMOD stamp and flags) as a little-endian int32 view."""
    raw = np.asarray(header).reshape(1).view(np.uint8)
    words = raw[152:160].view(header.dtype.byteorder.replace("|", "=") + "i4")
    return words


def mark_unsigned_bytes(header) -> None:
    """Stamp an MRC header (mode 0) as holding unsigned bytes, as IMOD does."""
    words = _imod_words(header)
    words[0] = _IMOD_STAMP
    words[1] = int(words[1]) & ~1


def _holds_unsigned_bytes(header) -> bool:
    if int(header.mode) != 0:
        return False
    words = _imod_words(header)
    return int(words[0]) == _IMOD_STAMP and not int(words[1]) & 1


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
    if path.is_dir():
        raise CryomlError(f"{path} is a folder, not an MRC file. Give the file inside it.")
    if not path.is_file():
        raise CryomlError(f"{path}: no such file. Check the path.")
    if path.stat().st_size == 0:
        raise CryomlError(f"{path} is empty (0 bytes); the file was not written completely.")
    if path.suffix.lower() == ".gz":
        mmap = False  # a compressed map cannot be memory-mapped; mrcfile.open decompresses it
    opener = mrcfile.mmap if mmap else mrcfile.open
    hint = "" if permissive else " (In Python, read_mrc(..., permissive=True) reads it anyway.)"
    handle = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            handle = opener(path, mode="r", permissive=permissive)
            if handle.data is None:
                raise CryomlError(
                    f"{path}: the MRC header could not be matched to data (damaged or truncated "
                    "file); copy or export it again."
                )
            larger = [str(w.message) for w in caught if "larger than expected" in str(w.message)]
            if larger and not permissive:
                raise CryomlError(
                    f"{path}: {larger[0]}: the header's data mode ({int(handle.header.mode)}) "
                    f"and dimensions do not match the file's size, so the values would be read "
                    f"as garbage. Re-export the file from the program that wrote it.{hint}"
                )
            data = handle.data if mmap else np.array(handle.data)
            if data is not None and _holds_unsigned_bytes(handle.header):
                data = data.view(np.uint8)  # IMOD's unsigned bytes (mrcfile reads mode 0 signed)
            voxel = float(handle.voxel_size.x)
            is_stack = bool(handle.is_image_stack())
    except CryomlError:
        if handle is not None:
            handle.close()
        raise
    except (ValueError, OverflowError, MemoryError, OSError, TypeError, IndexError) as error:
        if handle is not None:
            handle.close()
        text = _truncation(path) or _diagnose(str(error))
        raise CryomlError(f"{path}: cannot read as MRC: {text}.{hint}") from None
    except Exception as error:  # mrcfile and numpy raise many types on damaged headers
        if handle is not None:
            handle.close()
        raise CryomlError(
            f"{path}: cannot read as MRC ({type(error).__name__}: {error}); the header is "
            f"damaged or this is not an MRC file.{hint}"
        ) from None
    if not mmap:
        handle.close()
    if permissive:  # pass mrcfile's complaints on, once the recording above has ended
        for message in dict.fromkeys(str(w.message) for w in caught):
            warnings.warn(f"{path}: {message}", RuntimeWarning, stacklevel=2)
    if data.ndim == 3 and data.shape[0] == 1 and not is_stack:
        data = data[0]
    if data.ndim == 1 or data.ndim > 3:
        raise CryomlError(
            f"{path}: holds a {data.ndim}-D array of shape {data.shape}; cryoml reads 2-D images, "
            "image stacks and 3-D volumes."
        )
    check_array(data, ndim=(2, 3), name="MRC data", finite=check_finite, source=str(path))
    if not np.isfinite(voxel) or voxel < 0:
        if not permissive:
            raise CryomlError(
                f"{path}: the MRC header gives the voxel size {voxel} Å, which is not a size. "
                "Fix the header (e.g. IMOD's alterheader, or cryoml.io.write_mrc(..., "
                f"voxel_size=...)) and read it again.{hint}"
            )
        voxel = 0.0
    if voxel == 0:
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


_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}


def _truncation(path: Path) -> str | None:
    """Describe a file shorter than its (plausible) header says, or None."""
    size = path.stat().st_size
    if size < 1024:
        return (
            f"the file has {size} bytes, fewer than an MRC header's 1024: it is truncated or "
            "not an MRC file"
        )
    with open(path, "rb") as handle:
        header = handle.read(1024)
    for order in "<>":
        nx, ny, nz, mode = np.frombuffer(header[:16], dtype=f"{order}i4").tolist()
        nsymbt = int(np.frombuffer(header[92:96], dtype=f"{order}i4")[0])
        if mode in _MODE_BYTES and min(nx, ny, nz) > 0 and nsymbt >= 0:
            expected = 1024 + nsymbt + int(nx * ny * nz * _MODE_BYTES[mode])
            if size < expected:
                return (
                    f"the file has {size} bytes but its header ({nx} x {ny} x {nz}, mode "
                    f"{mode}) needs {expected}: it is truncated. Copy or export it again"
                )
            return None
    return None


def _diagnose(text: str) -> str:
    """Say what an mrcfile error means for the user."""
    if "negative" in text.lower() or "overflow" in text.lower():
        return (
            f"the header gives a negative or impossibly large dimension ({text}); the file is "
            "damaged or not an MRC file"
        )
    if "Expected" in text or "too small" in text or "truncated" in text.lower():
        return (
            f"{text}: the file is shorter than its header's mode and dimensions say. It is "
            "truncated (copy or export it again), or the header's mode or dimensions are wrong"
        )
    if "mode" in text.lower():
        return f"{text}: the header's data mode is not one MRC defines; the header is damaged"
    if "map ID" in text or "machine stamp" in text:
        return f"{text}: this is not an MRC file (wrong header)"
    return f"{text}: the header is damaged or this is not an MRC file"


MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali")


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

    Raises
    ------
    CryomlError
        If the suffix is not an MRC one, the voxel size is not a positive finite number,
        the file exists (without ``overwrite``) or the disk lacks the space.
    """
    target = Path(path)
    if target.suffix.lower() not in MRC_SUFFIXES:
        raise CryomlError(
            f"{target}: MRC files end in {', '.join(MRC_SUFFIXES)}; '{target.suffix}' would "
            "hold MRC bytes under a name that promises another format. Change the suffix."
        )
    if isinstance(data, Image):
        voxel_size = data.voxel_size if voxel_size is None else voxel_size
        is_stack = data.is_stack if is_stack is None else is_stack
        data = data.data
    array = check_array(data, ndim=(2, 3), name="data to write", finite=False)
    if voxel_size is not None:
        try:
            size = float(voxel_size)
        except (TypeError, ValueError):
            size = float("nan")
        if not np.isfinite(size) or size <= 0:
            raise CryomlError(
                f"{target}: voxel_size must be a positive number of Å; got {voxel_size!r}. "
                "Pass the true size, or None to leave the header's size unset."
            )
    if array.dtype not in _MRC_DTYPES:
        if array.dtype.kind == "c":
            raise CryomlError(
                f"{target}: MRC holds complex data only as complex64; got {array.dtype}. "
                "Convert it (array.astype(numpy.complex64)) or write the real part explicitly."
            )
        array = array.astype(np.float32)
    nbytes = array.size * array.dtype.itemsize + 1024
    with atomic_path(path, overwrite=overwrite, size_hint=nbytes) as tmp:
        with mrcfile.new(tmp, overwrite=True) as handle:
            handle.set_data(np.ascontiguousarray(array))
            if is_stack and array.ndim == 3:
                handle.set_image_stack()
            if voxel_size is not None:
                handle.voxel_size = float(voxel_size)
            handle.update_header_stats()
    return Path(path)
