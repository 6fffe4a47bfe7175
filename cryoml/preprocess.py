"""Preprocessing of images and volumes: binning, Fourier band-pass in Å, normalisation, clamping.

Every step is a plain function over arrays; :func:`preprocess` chains them in TomoSeg's order
(bin → band-pass → normalise → clamp) and returns a :class:`PreprocessRecord` that is saved
beside every output and with every model, so a network can refuse data prepared differently.

Filters have Gaussian edges, as EMAN2's ``filter.lowpass.gauss`` / ``filter.highpass.gauss``:
the low-pass transfer is ``exp(-f² / (2 σ²))`` with σ = 1/lowpass (Å⁻¹), so the amplitude at
1/lowpass is e^(-1/2) ≈ 0.61; the high-pass transfer is ``1 - exp(-f² / (2 σ²))`` with
σ = 1/highpass. Frequencies f are in Å⁻¹, computed from the voxel size.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft

from cryoml._errors import CryomlError
from cryoml._validation import check_array, check_positive
from cryoml.io._atomic import atomic_path

__all__ = [
    "PreprocessRecord",
    "bandpass",
    "bin_image",
    "clamp",
    "normalize",
    "preprocess",
    "preprocess_file",
]

_BIN_METHODS = ("fourier", "mean")


@dataclasses.dataclass(frozen=True)
class PreprocessRecord:
    """What was done to the data, in the order it was done.

    Attributes
    ----------
    input_voxel_size : float or None
        Voxel size (Å) of the raw input.
    bin_factor : int
        Binning factor (1 = none).
    bin_method : str
        ``"fourier"`` (crop of the Fourier transform: no aliasing) or ``"mean"`` (block mean).
    voxel_size : float or None
        Voxel size (Å) after binning: what a network trained on such data expects.
    lowpass : float or None
        Gaussian low-pass, Å.
    highpass : float or None
        Gaussian high-pass, Å.
    normalized : bool
        Scaled to mean 0, s.d. 1.
    clamp_sd : float or None
        Values clamped to ± this many s.d.
    """

    input_voxel_size: float | None = None
    bin_factor: int = 1
    bin_method: str = "fourier"
    voxel_size: float | None = None
    lowpass: float | None = None
    highpass: float | None = None
    normalized: bool = False
    clamp_sd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessRecord:
        """Rebuild a record from :meth:`to_dict` output; unknown keys are an error."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise CryomlError(f"unknown preprocessing record fields: {sorted(unknown)}.")
        return cls(**values)

    def save(self, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write the record as JSON (atomically)."""
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PreprocessRecord:
        """Read a record written by :meth:`save`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise CryomlError(f"{path}: cannot read preprocessing record ({error}).") from None


def _float_array(data: np.ndarray, name: str) -> np.ndarray:
    array = check_array(data, ndim=(2, 3), name=name)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)


def bin_image(data: np.ndarray, factor: int, *, method: str = "fourier") -> np.ndarray:
    """Shrink an image or volume by an integer factor along every axis.

    Parameters
    ----------
    data : (Y, X) or (Z, Y, X) array_like
        Input.
    factor : int
        Binning factor (≥ 1). Axes are first cropped to a multiple of ``factor``.
    method : {"fourier", "mean"}
        ``"fourier"`` crops the Fourier transform to the new Nyquist (no aliasing, keeps the
        band below it exactly; what IMOD and RELION do); ``"mean"`` averages factor^ndim blocks
        (faster, slightly aliased, never rings).

    Returns
    -------
    ndarray
        Binned data, float32 unless the input was float64.

    Examples
    --------
    >>> import numpy as np
    >>> bin_image(np.ones((8, 8), np.float32), 2, method="mean").shape
    (4, 4)
    """
    array = _float_array(data, "data")
    if not float(factor).is_integer() or factor < 1:
        raise CryomlError(f"'factor' must be a whole number >= 1; got {factor!r}.")
    factor = int(factor)
    if method not in _BIN_METHODS:
        raise CryomlError(f"'method' must be one of {_BIN_METHODS}; got {method!r}.")
    if factor == 1:
        return array.copy()
    new_shape = tuple(n // factor for n in array.shape)
    if min(new_shape) < 1:
        raise CryomlError(f"cannot bin shape {array.shape} by {factor}: an axis would vanish.")
    cropped = array[tuple(slice(0, n * factor) for n in new_shape)]
    if method == "mean":
        blocks = cropped.reshape([v for n in new_shape for v in (n, factor)])
        return blocks.mean(axis=tuple(range(1, 2 * len(new_shape), 2))).astype(array.dtype)
    return _fourier_crop(cropped, new_shape).astype(array.dtype)


def _fourier_crop(array: np.ndarray, new_shape: tuple[int, ...]) -> np.ndarray:
    spectrum = scipy.fft.fftshift(scipy.fft.fftn(array, workers=-1))
    # After fftshift the zero frequency sits at index n // 2; keep it at m // 2.
    starts = [n // 2 - m // 2 for n, m in zip(array.shape, new_shape, strict=True)]
    window = tuple(slice(s, s + m) for s, m in zip(starts, new_shape, strict=True))
    cropped = scipy.fft.ifftshift(spectrum[window])
    scale = np.prod(new_shape) / np.prod(array.shape)
    return scipy.fft.ifftn(cropped, workers=-1).real * scale


def _frequency_squared(shape: tuple[int, ...], voxel_size: float) -> np.ndarray:
    # Squared spatial frequency (Å⁻²) on the rfft grid, built by broadcasting.
    axes = [np.fft.fftfreq(n, d=voxel_size) for n in shape[:-1]]
    axes.append(np.fft.rfftfreq(shape[-1], d=voxel_size))
    total = np.zeros([1] * len(shape), dtype=np.float64)
    for i, f in enumerate(axes):
        view = [1] * len(shape)
        view[i] = len(f)
        total = total + (f**2).reshape(view)
    return total


def bandpass(
    data: np.ndarray,
    *,
    voxel_size: float,
    lowpass: float | None = None,
    highpass: float | None = None,
) -> np.ndarray:
    """Gaussian Fourier low-pass and/or high-pass filter, cut-offs in Å.

    Parameters
    ----------
    data : (Y, X) or (Z, Y, X) array_like
        Input.
    voxel_size : float
        Voxel size in Å.
    lowpass : float, optional
        Keep detail coarser than this (Å); e.g. 20 as in Chen et al. 2017.
    highpass : float, optional
        Remove gradients coarser than this (Å); e.g. 4000 as in Chen et al. 2017.

    Returns
    -------
    ndarray
        Filtered data (float32 unless float64 came in).

    Raises
    ------
    CryomlError
        For a low-pass finer than Nyquist (2 × voxel size) or a high-pass below the low-pass.
    """
    array = _float_array(data, "data")
    voxel_size = check_positive(voxel_size, name="voxel_size")
    if lowpass is None and highpass is None:
        return array.copy()
    if lowpass is not None:
        lowpass = check_positive(lowpass, name="lowpass")
        if lowpass < 2 * voxel_size:
            raise CryomlError(
                f"lowpass {lowpass:g} Å is finer than Nyquist ({2 * voxel_size:g} Å at "
                f"{voxel_size:g} Å/voxel); choose lowpass >= {2 * voxel_size:g} Å or omit it."
            )
    if highpass is not None:
        highpass = check_positive(highpass, name="highpass")
        if lowpass is not None and highpass <= lowpass:
            raise CryomlError(
                f"highpass ({highpass:g} Å) must be coarser than lowpass ({lowpass:g} Å)."
            )
    f2 = _frequency_squared(array.shape, voxel_size)
    transfer = np.ones_like(f2)
    if lowpass is not None:
        transfer = transfer * np.exp(-f2 * lowpass**2 / 2.0)
    if highpass is not None:
        transfer = transfer * (1.0 - np.exp(-f2 * highpass**2 / 2.0))
    spectrum = scipy.fft.rfftn(array, workers=-1)
    filtered = scipy.fft.irfftn(spectrum * transfer, s=array.shape, workers=-1)
    return filtered.astype(array.dtype)


def normalize(data: np.ndarray) -> np.ndarray:
    """Scale to mean 0 and standard deviation 1 (a constant input becomes all zeros)."""
    array = _float_array(data, "data")
    mean = array.mean(dtype=np.float64)
    sd = array.std(dtype=np.float64)
    if sd == 0:
        return np.zeros_like(array)
    return ((array - mean) / sd).astype(array.dtype)


def clamp(data: np.ndarray, n_sd: float) -> np.ndarray:
    """Clip values to mean ± ``n_sd`` standard deviations."""
    array = _float_array(data, "data")
    n_sd = check_positive(n_sd, name="n_sd")
    mean = array.mean(dtype=np.float64)
    sd = array.std(dtype=np.float64)
    return np.clip(array, mean - n_sd * sd, mean + n_sd * sd).astype(array.dtype)


def preprocess(
    data: np.ndarray,
    *,
    voxel_size: float | None,
    lowpass: float | None = None,
    highpass: float | None = None,
    bin_factor: int = 1,
    bin_method: str = "fourier",
    normalise: bool = True,
    clamp_sd: float | None = 3.0,
) -> tuple[np.ndarray, PreprocessRecord]:
    """Bin, band-pass, normalise and clamp, as TomoSeg prepares a tomogram.

    Parameters
    ----------
    data : (Y, X) or (Z, Y, X) array_like
        Raw image or volume.
    voxel_size : float or None
        Input voxel size in Å (needed for filtering).
    lowpass, highpass : float, optional
        Gaussian filter cut-offs in Å (paper: 20 and 4000).
    bin_factor : int, default 1
        Shrink factor applied first.
    bin_method : {"fourier", "mean"}
        See :func:`bin_image`.
    normalise : bool, default True
        Scale to mean 0, s.d. 1.
    clamp_sd : float or None, default 3.0
        Clip at ± this many s.d. after normalising.

    Returns
    -------
    array : ndarray
        float32 result.
    record : PreprocessRecord
        What was done.

    Examples
    --------
    >>> import numpy as np
    >>> volume = np.random.default_rng(0).normal(size=(8, 32, 32)).astype(np.float32)
    >>> out, record = preprocess(volume, voxel_size=10.0, lowpass=40.0, bin_factor=2)
    >>> out.shape, record.voxel_size
    ((4, 16, 16), 20.0)
    """
    array = _float_array(data, "data")
    if (lowpass is not None or highpass is not None) and voxel_size is None:
        raise CryomlError(
            "band-pass filtering needs the voxel size in Å; pass voxel_size (or --voxel-size)."
        )
    array = bin_image(array, bin_factor, method=bin_method) if bin_factor != 1 else array
    binned_size = None if voxel_size is None else float(voxel_size) * int(bin_factor)
    if lowpass is not None or highpass is not None:
        array = bandpass(array, voxel_size=binned_size, lowpass=lowpass, highpass=highpass)
    if normalise:
        array = normalize(array)
    if clamp_sd is not None:
        array = clamp(array, clamp_sd)
    record = PreprocessRecord(
        input_voxel_size=None if voxel_size is None else float(voxel_size),
        bin_factor=int(bin_factor),
        bin_method=bin_method,
        voxel_size=binned_size,
        lowpass=lowpass,
        highpass=highpass,
        normalized=bool(normalise),
        clamp_sd=clamp_sd,
    )
    return array.astype(np.float32, copy=False), record


def preprocess_file(
    input_path: str | os.PathLike, output_path: str | os.PathLike, **options: Any
) -> dict[str, Any]:
    """Preprocess one MRC/TIFF file into ``output_path`` (MRC); a task for :mod:`cryoml.batch`.

    ``options`` are those of :func:`preprocess`. The record is returned, not written beside
    the output, so the batch runner's atomic rename covers the only file written.
    """
    from cryoml import io

    image = io.read_image(input_path)
    options.setdefault("voxel_size", image.voxel_size)
    data, record = preprocess(image.data, **options)
    io.write_mrc(output_path, data, voxel_size=record.voxel_size, overwrite=True)
    return record.to_dict()
