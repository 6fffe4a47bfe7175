"""Electron optics: the contrast transfer function (CTF) and the detector MTF.

Formulas (spatial frequency ``k`` in 1/Å, wavelength ``λ`` in Å):

* Relativistic electron wavelength ``λ = h / sqrt(2 m0 e V (1 + e V / (2 m0 c²)))``,
  i.e. ``λ = 12.2643 / sqrt(V (1 + 0.978466e-6 V))`` Å for an acceleration voltage ``V`` in volts
  (0.01969 Å at 300 kV).
* Phase shift ``χ(k) = π λ Δf k² − (π/2) Cs λ³ k⁴`` with ``Δf`` the defocus (positive =
  underfocus, Å) and ``Cs`` the spherical aberration (Å).
* ``CTF(k) = −[sqrt(1 − A²) sin χ(k) + A cos χ(k)] · exp(−B k² / 4)`` with ``A`` the amplitude
  contrast and ``B`` the B-factor (Å²). The sign makes dense matter dark at low frequency in
  underfocus, as in raw cryo-EM images. ``phase_flip=True`` returns ``|CTF|`` (the image after
  phase-flipping correction: dense matter bright).
* Detector MTF ``sinc(π ω / 2) = sin(π ω / 2) / (π ω / 2)`` with ``ω`` the frequency as a fraction
  of Nyquist (McMullan et al. 2009, as used by Xu et al. 2017).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cryoml._errors import CryomlError
from cryoml._validation import check_positive

__all__ = [
    "CTFParams",
    "ctf",
    "ctf_2d",
    "electron_wavelength",
    "frequency_grid",
    "mtf",
]


@dataclasses.dataclass(frozen=True)
class CTFParams:
    """Microscope settings of a CTF.

    Parameters
    ----------
    voltage : float
        Acceleration voltage in kV (default 300, as Xu et al. 2017).
    cs : float
        Spherical aberration in mm (default 2).
    defocus : float
        Defocus in µm, positive = underfocus (default 5, i.e. the papers' −5 µm).
    amplitude_contrast : float
        Fraction of amplitude contrast, 0–1 (default 0.07).
    b_factor : float
        Envelope B-factor in Å² (default 0: no envelope).
    phase_flip : bool
        Return ``|CTF|`` (phase-flipped data) instead of the signed CTF.
    """

    voltage: float = 300.0
    cs: float = 2.0
    defocus: float = 5.0
    amplitude_contrast: float = 0.07
    b_factor: float = 0.0
    phase_flip: bool = False

    def __post_init__(self) -> None:
        check_positive(self.voltage, name="voltage")
        check_positive(self.cs, name="cs", allow_zero=True)
        if not np.isfinite(self.defocus):
            raise CryomlError(f"'defocus' must be finite (µm, underfocus > 0); got {self.defocus}.")
        if not 0 <= self.amplitude_contrast < 1:
            raise CryomlError(
                f"'amplitude_contrast' must be in [0, 1); got {self.amplitude_contrast}."
            )
        check_positive(self.b_factor, name="b_factor", allow_zero=True)

    def to_dict(self) -> dict:
        """The settings as a plain dict (for saving with data)."""
        return dataclasses.asdict(self)


def electron_wavelength(voltage: float) -> float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV.

    Examples
    --------
    >>> round(electron_wavelength(300.0), 5)
    0.01969
    """
    volts = check_positive(voltage, name="voltage") * 1e3
    return float(12.2643247 / np.sqrt(volts * (1.0 + 0.978466e-6 * volts)))


def ctf(frequency: np.ndarray, params: CTFParams | None = None) -> np.ndarray:
    """The CTF at spatial frequencies ``frequency`` (1/Å, any shape; only ``|k|`` matters).

    Parameters
    ----------
    frequency : ndarray
        Spatial frequency magnitudes in 1/Å.
    params : CTFParams, optional
        Microscope settings (defaults: 300 kV, Cs 2 mm, 5 µm underfocus, A = 0.07).

    Returns
    -------
    ndarray
        Same shape as ``frequency``, float32; see the module docstring for the formula.
    """
    params = params or CTFParams()
    k2 = np.square(np.asarray(frequency, dtype=np.float64))
    wavelength = electron_wavelength(params.voltage)
    defocus = params.defocus * 1e4
    cs = params.cs * 1e7
    chi = np.pi * wavelength * defocus * k2 - 0.5 * np.pi * cs * wavelength**3 * k2 * k2
    amp = params.amplitude_contrast
    value = -(np.sqrt(1.0 - amp * amp) * np.sin(chi) + amp * np.cos(chi))
    if params.b_factor:
        value = value * np.exp(-params.b_factor * k2 / 4.0)
    if params.phase_flip:
        value = np.abs(value)
    return value.astype(np.float32)


def mtf(fraction_of_nyquist: np.ndarray) -> np.ndarray:
    """Detector MTF ``sinc(π ω / 2)``; ``ω`` is the frequency as a fraction of Nyquist."""
    omega = np.asarray(fraction_of_nyquist, dtype=np.float64)
    # numpy's sinc(x) is sin(πx)/(πx); sinc(πω/2) in the papers' notation is np.sinc(ω/2).
    return np.sinc(omega / 2.0).astype(np.float32)


def frequency_grid(shape: tuple[int, ...], *, rfft: bool = True) -> np.ndarray:
    """Frequency magnitude in cycles/pixel on an FFT grid of ``shape`` (rfft layout by default)."""
    axes = [np.fft.fftfreq(n) for n in shape[:-1]]
    axes.append(np.fft.rfftfreq(shape[-1]) if rfft else np.fft.fftfreq(shape[-1]))
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    return np.sqrt(sum(g * g for g in grids))


def ctf_2d(
    shape: tuple[int, int],
    *,
    pixel_size: float,
    params: CTFParams | None = None,
    include_mtf: bool = True,
) -> np.ndarray:
    """CTF (times MTF) on the ``rfft2`` grid of an image of ``shape`` (Y, X).

    Parameters
    ----------
    shape : (int, int)
        Image shape (Y, X).
    pixel_size : float
        Å per pixel.
    params : CTFParams, optional
        Microscope settings.
    include_mtf : bool, default True
        Multiply by the detector MTF.

    Returns
    -------
    (Y, X // 2 + 1) ndarray of float32
    """
    pixel_size = check_positive(pixel_size, name="pixel_size")
    radius = frequency_grid(tuple(shape))
    value = ctf(radius / pixel_size, params)
    if include_mtf:
        value = value * mtf(np.minimum(radius / 0.5, 1.0))
    return value.astype(np.float32)
