"""TIFF images and volumes through tifffile, with ImageJ spacing and units."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import tifffile

from cryoml._errors import CryomlError, CryomlWarning
from cryoml._validation import check_array
from cryoml.io._image import Image

__all__ = ["read_tiff"]

# Length units as ImageJ writes them, in Å.
_UNIT_TO_ANGSTROM = {
    "angstrom": 1.0,
    "å": 1.0,
    "a": 1.0,
    "\\u00c5": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "nanometre": 10.0,
    "micron": 1e4,
    "µm": 1e4,
    "um": 1e4,
    "\\u00b5m": 1e4,
    "micrometer": 1e4,
    "mm": 1e7,
    "cm": 1e8,
    "m": 1e10,
}


def read_tiff(path: str | os.PathLike) -> Image:
    """Read a TIFF image or volume, with its voxel size from ImageJ metadata or resolution tags.

    Parameters
    ----------
    path : str or path-like
        A ``.tif``/``.tiff`` file (a page per slice for volumes).

    Returns
    -------
    Image
        Data in (Z, Y, X) or (Y, X) order; voxel size in Å from the XResolution tag and the
        ImageJ ``unit`` (or ``spacing`` along Z if X is missing), or None.

    Raises
    ------
    CryomlError
        If the file is missing or not a readable TIFF.
    """
    path = Path(path)
    if path.is_dir():
        raise CryomlError(f"{path} is a folder, not a TIFF file. Give the file inside it.")
    if not path.is_file():
        raise CryomlError(f"{path}: no such file. Check the path.")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            samples = int(getattr(page, "samplesperpixel", 1) or 1)
            if np.dtype(page.dtype).kind == "c":
                raise CryomlError(
                    f"{path}: holds complex values ({page.dtype}); cryoml's image steps take "
                    "real ones and would drop the imaginary part. Save the amplitude or the "
                    "real part explicitly."
                )
            if samples > 1:
                raise CryomlError(
                    f"{path}: a colour (RGB/RGBA) or multi-sample TIFF with {samples} values per "
                    "pixel; cryoml reads grey-scale images and volumes, and would take the "
                    "colours for slices. Save it as grey scale (one value per pixel; with "
                    "tifffile: photometric='minisblack')."
                )
            data = tif.asarray()
            voxel_size = _voxel_size_angstrom(tif)
    except CryomlError:
        raise
    except Exception as error:  # tifffile raises many types on damaged files
        raise CryomlError(f"{path}: cannot read as TIFF ({error}).") from None
    if data.dtype.kind == "c":
        raise CryomlError(
            f"{path}: holds complex values ({data.dtype}); cryoml's image steps take real ones "
            "and would drop the imaginary part. Save the amplitude or the real part explicitly."
        )
    data = np.squeeze(data) if data.ndim > 3 else data
    check_array(data, ndim=(2, 3), name="TIFF data", source=str(path))
    if voxel_size is None:
        warnings.warn(
            f"{path}: the TIFF gives no physical pixel size; voxel_size is None.",
            CryomlWarning,
            stacklevel=2,
        )
    return Image(data=data, voxel_size=voxel_size, path=path)


def _voxel_size_angstrom(tif: tifffile.TiffFile) -> float | None:
    page = tif.pages[0]
    metadata = tif.imagej_metadata or {}
    unit = str(metadata.get("unit", "")).strip().lower()
    scale = _UNIT_TO_ANGSTROM.get(unit)
    tag = page.tags.get("XResolution")
    if tag is not None and scale is not None:
        numerator, denominator = tag.value
        if numerator > 0:
            # XResolution is pixels per unit.
            return float(denominator) / float(numerator) * scale
    if "spacing" in metadata and scale is not None:
        return float(metadata["spacing"]) * scale
    return None
