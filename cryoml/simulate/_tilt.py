"""Tilt series and tomographic reconstruction.

Geometry (all modules): the beam runs along Z (array axis 0) at tilt 0, the tilt axis is Y
(axis 1), so the missing wedge lies around the Z axis of Fourier space in the (kz, kx) plane.
A tilt ``θ`` projects along ``(cos θ, sin θ)`` in (z, x).

Two implementations, both *physical* projections followed by a reconstruction, so the missing
wedge comes from the geometry, not from a painted mask:

* **Subtomograms (Fourier slice + direct Fourier inversion, DFI)** —
  :class:`FourierSlicer` holds the 3-D Fourier transform of an isolated particle, oversampled
  twice (zero-padded box), and returns the 2-D Fourier transform of its projection at any
  orientation and tilt by trilinear sampling of the central slice (projection-slice theorem).
  :func:`reconstruct_dfi` inserts the (CTF-filtered, noisy) projection transforms into the
  3-D grid by nearest-neighbour gridding with Hermitian mirroring, divides by the number of
  contributions per voxel and inverts (like EMAN2's direct Fourier inversion used by Xu et al.
  2017, with a nearest-neighbour instead of a Gaussian gridding kernel). Projections are limited
  to the detector's Nyquist circle. Approximations: trilinear interpolation in the 2×
  oversampled transform (≈1 % error), nearest-neighbour gridding.
* **Cellular slabs (shear projection + weighted back-projection, WBP)** —
  :func:`project_slab` computes line integrals through a slab that is periodic in X (laterally
  extended specimen), exactly (sinc interpolation) as one batched matrix product per tilt in
  Fourier space along X; projections are sampled on the sheared coordinate ``s = x − z tan θ``
  (detector pixels foreshortened by ``cos θ``; CTF and MTF are evaluated at the true detector
  frequency ``f_s / cos θ``, frequencies beyond the detector's Nyquist are dropped).
  :func:`reconstruct_wbp` ramp-filters and back-projects with the adjoint operator.

Noise: :func:`simulate_tilt_series` (cellular slabs) adds white Gaussian noise to each
projection *after* CTF and MTF (detector shot noise); the subtomogram simulator adds it before
them by default, as Xu et al. (2017) did (``noise_stage`` in
:func:`cryoml.simulate.simulate_subtomograms`). Either way the SNR is
``var(noise-free projection) / var(noise)`` per projection image at the stage where the noise
is added (signal variance over noise variance, the definition of the papers).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import fft as sfft

from cryoml._errors import CryomlError
from cryoml._validation import check_array, check_positive, check_random_state
from cryoml.simulate._optics import CTFParams, ctf, mtf

__all__ = [
    "FourierSlicer",
    "TiltSeries",
    "project_slab",
    "reconstruct_dfi",
    "reconstruct_wbp",
    "simulate_tilt_series",
    "tilt_angles",
    "wedge_power_ratio",
]


def tilt_angles(tilt_range: float = 60.0, step: float = 2.0) -> np.ndarray:
    """Symmetric tilt angles in degrees, ``-tilt_range`` to ``+tilt_range`` every ``step``.

    Examples
    --------
    >>> tilt_angles(60, 30).tolist()
    [-60.0, -30.0, 0.0, 30.0, 60.0]
    """
    tilt_range = check_positive(tilt_range, name="tilt_range")
    step = check_positive(step, name="tilt_step")
    if tilt_range >= 90:
        raise CryomlError(f"'tilt_range' must be below 90°; got {tilt_range}.")
    count = int(np.floor(tilt_range / step + 1e-9))
    return (np.arange(-count, count + 1) * step).astype(np.float64)


# ---------------------------------------------------------------- Fourier slice + DFI (cubes)


class FourierSlicer:
    """Central-slice sampler of an isolated particle's 3-D Fourier transform.

    Parameters
    ----------
    volume : (n, n, n) ndarray
        The particle, centred on voxel ``n // 2``.
    oversample : int, default 2
        Zero-padding factor of the transform (interpolation accuracy).
    """

    def __init__(self, volume: np.ndarray, *, oversample: int = 2) -> None:
        volume = np.asarray(volume, dtype=np.float32)
        self.box = volume.shape[0]
        padded_n = self.box * oversample
        padded = np.zeros((padded_n,) * 3, np.float32)
        lo = padded_n // 2 - self.box // 2
        padded[lo : lo + self.box, lo : lo + self.box, lo : lo + self.box] = volume
        spectrum = sfft.fftn(sfft.ifftshift(padded))
        self.spectrum = sfft.fftshift(spectrum).astype(np.complex64)
        self.oversample = oversample
        self.origin = padded_n // 2

    def sample(self, k_zyx: np.ndarray) -> np.ndarray:
        """Fourier values at frequencies ``k_zyx`` (3, M) in cycles per box (unpadded units),
        by trilinear interpolation (zero outside the transform)."""
        n = self.spectrum.shape[0]
        flat = self.spectrum.reshape(-1)
        coords = np.asarray(k_zyx, dtype=np.float32) * np.float32(self.oversample) + self.origin
        base = np.floor(coords).astype(np.intp)
        frac = coords - base
        valid = np.all((base >= 0) & (base < n - 1), axis=0)
        base = np.where(valid, base, 0)
        start = (base[0] * n + base[1]) * n + base[2]
        fz, fy, fx = frac
        gz, gy, gx = 1 - fz, 1 - fy, 1 - fx
        out = flat[start] * (gz * gy * gx)
        out += flat[start + 1] * (gz * gy * fx)
        out += flat[start + n] * (gz * fy * gx)
        out += flat[start + n + 1] * (gz * fy * fx)
        plane = start + n * n
        out += flat[plane] * (fz * gy * gx)
        out += flat[plane + 1] * (fz * gy * fx)
        out += flat[plane + n] * (fz * fy * gx)
        out += flat[plane + n + 1] * (fz * fy * fx)
        out[~valid] = 0
        return out

    def radial_power(self) -> tuple[np.ndarray, np.ndarray]:
        """Spherical mean of ``|F|²`` against radius in cycles per (unpadded) box."""
        n = self.spectrum.shape[0]
        axis = np.arange(n) - self.origin
        zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij", sparse=True)
        radius = np.sqrt(zz * zz + yy * yy + xx * xx)
        shell = np.rint(radius).astype(np.int64).ravel()
        power = np.abs(self.spectrum.ravel()) ** 2
        total = np.bincount(shell, weights=power)
        count = np.maximum(np.bincount(shell), 1)
        return np.arange(len(total)) / self.oversample, total / count


@dataclasses.dataclass
class _SliceGeometry:
    """Where the 2-D transforms of a tilt series sit in 3-D Fourier space (a cube of ``box``)."""

    box: int
    angles: np.ndarray
    k_lab: np.ndarray  # (3, M) lab-frame frequencies, cycles per box
    slots: np.ndarray  # (M,) flat indices into the (T, n, n//2+1) array of 2-D rfft2 values
    target: np.ndarray  # flat indices into the (n, n, n//2+1) rfftn grid (points, then mirrors)
    counts: np.ndarray  # (n * n * (n//2+1),) number of contributions per rfftn voxel
    radius: np.ndarray  # (n, n//2+1) 2-D frequency magnitude, cycles per box
    on_plane: np.ndarray  # (M,) points on a self-conjugate plane (inserted twice)

    @classmethod
    def build(cls, box: int, angles_deg: np.ndarray) -> _SliceGeometry:
        n = box
        ky = np.fft.fftfreq(n) * n
        kx = np.fft.rfftfreq(n) * n
        ky2, kx2 = np.meshgrid(ky, kx, indexing="ij")
        radius = np.sqrt(ky2**2 + kx2**2)
        inside = (radius <= n / 2).ravel()
        theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
        n_t = len(theta)
        kyf = np.tile(ky2.ravel()[inside], n_t)
        kxf = np.tile(kx2.ravel()[inside], n_t)
        th = np.repeat(theta, inside.sum())
        k_lab = np.stack([-kxf * np.sin(th), kyf, kxf * np.cos(th)])
        per_tilt = np.flatnonzero(inside)
        slots = (np.arange(n_t)[:, None] * radius.size + per_tilt[None, :]).ravel()
        # Target voxels in the rfftn half-space (kx >= 0 here since |θ| < 90°); points on the
        # self-conjugate planes kx = 0 and kx = n/2 also get their Hermitian mirror.
        half = n // 2 + 1
        grid = np.floor(k_lab + 0.5).astype(np.int64)
        gz, gy, gx = grid[0] % n, grid[1] % n, grid[2]
        flat = (gz * n + gy) * half + gx
        on_plane = (gx == 0) | ((n % 2 == 0) & (gx == n // 2))
        mirror = ((-gz[on_plane] % n) * n + (-gy[on_plane] % n)) * half + gx[on_plane]
        target = np.concatenate([flat, mirror])
        counts = np.bincount(target, minlength=n * n * half).astype(np.float64)
        k_lab = k_lab.astype(np.float32)
        return cls(n, np.asarray(angles_deg, float), k_lab, slots, target, counts, radius,
                   on_plane)


def reconstruct_dfi(
    slices: np.ndarray, geometry: _SliceGeometry
) -> np.ndarray:
    """Direct Fourier inversion of 2-D projection transforms (T, n, n//2+1) into an (n,)*3 cube."""
    n = geometry.box
    size = n * n * (n // 2 + 1)
    values = slices.reshape(-1)[geometry.slots]
    both = np.concatenate([values, np.conj(values[geometry.on_plane])])
    real = np.bincount(geometry.target, weights=both.real, minlength=size)
    imag = np.bincount(geometry.target, weights=both.imag, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(geometry.counts > 0, 1.0 / geometry.counts, 0.0)
    spectrum = ((real + 1j * imag) * scale).reshape(n, n, n // 2 + 1)
    volume = sfft.irfftn(spectrum, s=(n, n, n))
    return sfft.fftshift(volume).astype(np.float32)


def _project_item(
    slicer: FourierSlicer,
    geometry: _SliceGeometry,
    rotation: np.ndarray,
    shift: np.ndarray,
    transfer: np.ndarray,
) -> np.ndarray:
    """Noise-free CTF-filtered projection transforms (T, n, n//2+1) of a rotated, shifted
    particle. ``rotation`` (3, 3) acts on (Z, Y, X) vectors; ``shift`` in voxels (Z, Y, X)."""
    n = geometry.box
    k = geometry.k_lab
    values = slicer.sample(np.asarray(rotation, np.float32).T @ k)
    if np.any(shift):
        phase = (np.asarray(shift, np.float32) @ k) * np.float32(-2 * np.pi / n)
        values *= np.cos(phase) + 1j * np.sin(phase)
    out = np.zeros((len(geometry.angles), n, n // 2 + 1), np.complex64)
    flat = out.reshape(-1)
    flat[geometry.slots] = values
    out *= transfer
    return out


def _slices_to_images(slices: np.ndarray, n: int) -> np.ndarray:
    images = sfft.irfft2(slices, s=(n, n), axes=(-2, -1))
    return sfft.fftshift(images, axes=(-2, -1)).astype(np.float32)


def _transfer_2d(box: int, voxel_size: float, params: CTFParams | None, use_mtf: bool):
    """CTF × MTF on the (n, n//2+1) grid, zero outside the Nyquist circle (None: no CTF)."""
    ky = np.fft.fftfreq(box)
    kx = np.fft.rfftfreq(box)
    radius = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    value = np.ones_like(radius, dtype=np.float32)
    if params is not None:
        value = ctf(radius / voxel_size, params)
    if use_mtf:
        value = value * mtf(radius / 0.5)
    value = np.where(radius <= 0.5, value, 0.0)
    return value.astype(np.float32)


def expected_projection_variance(
    slicer: FourierSlicer, transfer: np.ndarray
) -> float:
    """Mean over uniform random orientations of the variance of one projection image.

    Uses ``var = Σ_{k≠0} |P(k)|² / n⁴`` (Parseval) with ``E|P(k)|²`` the spherical mean of the
    particle's power spectrum at ``|k|`` times ``transfer(k)²``.
    """
    n = slicer.box
    radii, power = slicer.radial_power()
    ky = np.fft.fftfreq(n) * n
    kx = np.fft.rfftfreq(n) * n
    radius = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    weight = np.full(radius.shape, 2.0)
    weight[:, 0] = 1.0
    if n % 2 == 0:
        weight[:, -1] = 1.0
    weight[0, 0] = 0.0
    expected = np.interp(radius, radii, power) * transfer.astype(np.float64) ** 2
    return float((weight * expected).sum() / n**4)


# ---------------------------------------------------------------- slabs: shear projection + WBP


def _shear_phases(angles_deg, nz: int, nx: int, *, with_cos: bool) -> np.ndarray:
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    z = np.arange(nz) - (nz - 1) / 2.0
    freq = np.fft.rfftfreq(nx)
    phase = 2j * np.pi * np.tan(theta)[:, None, None] * z[None, :, None] * freq[None, None, :]
    out = np.exp(phase)
    if with_cos:
        out = out / np.cos(theta)[:, None, None]
    return out.astype(np.complex64)  # (T, Z, F)


def project_slab(volume: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Line-integral projections of a slab (periodic in X) at tilts ``angles`` (degrees).

    Parameters
    ----------
    volume : (Z, Y, X) ndarray
        The slab; the beam runs along Z at tilt 0, the tilt axis is Y.
    angles : (T,) ndarray
        Tilt angles in degrees (|θ| < 90).

    Returns
    -------
    (T, Y, X) ndarray of float32
        Projections sampled on the sheared coordinate ``s = x − z tan θ`` (see module docstring).
    """
    volume = check_array(volume, ndim=3, name="volume")
    nz, _, nx = volume.shape
    spectrum = sfft.rfft(np.asarray(volume, np.float32), axis=2, workers=-1)  # (Z, Y, F)
    phases = _shear_phases(angles, nz, nx, with_cos=True)  # (T, Z, F)
    result = np.matmul(spectrum.transpose(2, 1, 0), phases.transpose(2, 1, 0))  # (F, Y, T)
    del spectrum
    out = sfft.irfft(np.ascontiguousarray(result.transpose(2, 1, 0)), n=nx, axis=2, workers=-1)
    return out.astype(np.float32)


def reconstruct_wbp(
    projections: np.ndarray, angles: np.ndarray, *, thickness: int
) -> np.ndarray:
    """Weighted back-projection of slab projections made by :func:`project_slab`.

    Ramp filter ``|f_s| / cos θ`` along the tilt direction (Ram-Lak, DC kept at a quarter of the
    first bin) times the tilt step, then the adjoint of the shear projection.

    Parameters
    ----------
    projections : (T, Y, X) ndarray
        Tilt series (sheared sampling).
    angles : (T,) ndarray
        Tilt angles in degrees.
    thickness : int
        Number of Z slices to reconstruct.

    Returns
    -------
    (thickness, Y, X) ndarray of float32
    """
    projections = check_array(projections, ndim=3, name="projections")
    angles = np.asarray(angles, dtype=np.float64)
    if len(angles) != projections.shape[0]:
        raise CryomlError(
            f"{len(angles)} tilt angles for {projections.shape[0]} projections; give one each."
        )
    n_t, _, nx = projections.shape
    theta = np.deg2rad(angles)
    step = np.deg2rad(np.median(np.diff(np.sort(angles)))) if n_t > 1 else 1.0
    freq = np.abs(np.fft.rfftfreq(nx))
    freq[0] = 0.25 / nx
    weights = (freq[None, :] / np.cos(theta)[:, None]) * step  # (T, F)
    spectrum = sfft.rfft(np.asarray(projections, np.float32), axis=2, workers=-1)
    spectrum *= weights[:, None, :].astype(np.float32)
    phases = np.conj(_shear_phases(angles, thickness, nx, with_cos=False))  # (T, Z, F)
    result = np.matmul(spectrum.transpose(2, 1, 0), phases.transpose(2, 0, 1))  # (F, Y, Z)
    del spectrum
    out = sfft.irfft(np.ascontiguousarray(result.transpose(2, 1, 0)), n=nx, axis=2, workers=-1)
    return out.astype(np.float32)


@dataclasses.dataclass(eq=False)
class TiltSeries:
    """A simulated tilt series.

    Attributes
    ----------
    projections : (T, Y, X) ndarray of float32
        Noisy, CTF/MTF-filtered projections.
    clean : (T, Y, X) ndarray of float32
        The same without noise.
    angles : (T,) ndarray
        Tilt angles in degrees.
    noise_sd : (T,) ndarray
        Standard deviation of the added noise per projection.
    voxel_size : float
        Å per pixel.
    """

    projections: np.ndarray
    clean: np.ndarray
    angles: np.ndarray
    noise_sd: np.ndarray
    voxel_size: float

    def measured_snr(self) -> float:
        """Mean signal variance over mean noise variance, measured on the projections."""
        signal = float(np.mean(np.var(self.clean, axis=(1, 2))))
        noise = float(np.mean(np.var(self.projections - self.clean, axis=(1, 2))))
        return signal / noise if noise > 0 else float("inf")


def simulate_tilt_series(
    volume: np.ndarray,
    *,
    angles: np.ndarray,
    voxel_size: float,
    ctf_params: CTFParams | None = None,
    use_mtf: bool = True,
    snr: float | None = 0.1,
    random_state: int | np.random.Generator | None = None,
    snr_reference: np.ndarray | None = None,
) -> TiltSeries:
    """Project a slab over tilts, apply CTF × MTF per tilt and add noise at ``snr``.

    Parameters
    ----------
    volume : (Z, Y, X) ndarray
        Density (protein ≈ 1).
    angles : (T,) ndarray
        Tilt angles in degrees.
    voxel_size : float
        Å per voxel.
    ctf_params : CTFParams, optional
        Microscope settings; None applies no CTF.
    use_mtf : bool, default True
        Apply the detector MTF ``sinc(πω/2)``.
    snr : float or None, default 0.1
        Per-projection ``var(signal) / var(noise)``; None for no noise.
    random_state : None, int or Generator
        Seed of the noise.
    snr_reference : (Z, Y, X) ndarray, optional
        The density whose projections (filtered the same way) define ``var(signal)``; default
        ``volume``. A cell passes itself without gold beads and carbon, so that the noise is
        set by the cell's own matter, as a dose would set it, not by how many dense
        fiducials happen to lie in the field.

    Returns
    -------
    TiltSeries
    """
    volume = check_array(volume, ndim=3, name="volume")
    voxel_size = check_positive(voxel_size, name="voxel_size")
    if snr is not None:
        snr = check_positive(snr, name="snr")
    rng = check_random_state(random_state)
    angles = np.asarray(angles, dtype=np.float64)
    clean = project_slab(volume, angles)
    n_t, ny, nx = clean.shape
    fy = np.fft.fftfreq(ny)[None, :, None]
    fs = np.fft.rfftfreq(nx)[None, None, :]
    cos = np.cos(np.deg2rad(angles))[:, None, None]
    det = np.sqrt(fy**2 + (fs / cos) ** 2)  # cycles per detector pixel
    transfer = np.ones(det.shape, np.float32)
    if ctf_params is not None:
        transfer = ctf(det / voxel_size, ctf_params)
    if use_mtf:
        transfer = transfer * mtf(np.minimum(det / 0.5, 1.0))
    transfer = np.where(det <= 0.5, transfer, 0.0).astype(np.float32)

    def filtered(projections):
        spectrum = sfft.rfft2(projections, axes=(1, 2), workers=-1)
        spectrum *= transfer
        return sfft.irfft2(spectrum, s=(ny, nx), axes=(1, 2), workers=-1).astype(np.float32)

    clean = filtered(clean)
    if snr is None:
        noise_sd = np.zeros(n_t)
        noisy = clean.copy()
    else:
        signal = clean
        if snr_reference is not None:
            reference = check_array(snr_reference, ndim=3, name="snr_reference")
            if reference.shape != volume.shape:
                raise CryomlError(f"snr_reference has shape {reference.shape}; the volume "
                                  f"{volume.shape}.")
            signal = filtered(project_slab(reference, angles))
        noise_sd = np.sqrt(np.var(signal, axis=(1, 2), dtype=np.float64) / snr)
        del signal
        noisy = np.empty_like(clean)
        for t in range(n_t):
            noisy[t] = clean[t] + rng.standard_normal((ny, nx), dtype=np.float32) * noise_sd[t]
    return TiltSeries(noisy, clean, angles, noise_sd, float(voxel_size))


def wedge_power_ratio(volume: np.ndarray, *, tilt_range: float, margin: float = 1.0) -> float:
    """Mean Fourier power inside the missing wedge over mean power outside it.

    A voxel of the 3-D transform is *inside* when its angle from the (ky, kx) plane, in the
    (kz, kx) plane, exceeds ``tilt_range`` by more than ``margin`` voxels of distance from the
    wedge's edge plane; *outside* when it is within ``tilt_range``. DC and the band between are
    left out.

    Parameters
    ----------
    volume : (Z, Y, X) ndarray
    tilt_range : float
        Maximum tilt in degrees.
    margin : float, default 1
        Width of the excluded edge band, in Fourier voxels.

    Returns
    -------
    float
    """
    volume = check_array(volume, ndim=3, name="volume")
    power = np.abs(np.fft.fftn(volume)) ** 2
    kz = np.abs(np.fft.fftfreq(volume.shape[0]) * volume.shape[0])[:, None, None]
    kx = np.abs(np.fft.fftfreq(volume.shape[2]) * volume.shape[2])[None, None, :]
    theta = np.deg2rad(tilt_range)
    edge_distance = kz * np.cos(theta) - kx * np.sin(theta)
    shape = power.shape
    inside = np.broadcast_to(edge_distance > margin, shape)
    outside = np.broadcast_to(edge_distance <= 0, shape).copy()
    outside[0, 0, 0] = False
    return float(power[inside].mean() / power[outside].mean())
