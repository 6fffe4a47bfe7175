"""Labelled subtomogram sets as in Xu et al. (2017): random poses, tilt series, noise, DFI.

Per subtomogram (see :mod:`cryoml.simulate._tilt` for the geometry):

1. the class density (``box``³ at ``voxel_size``) is rotated by a uniform random rotation
   (:meth:`scipy.spatial.transform.Rotation.random`) and shifted by a small random shift —
   applied exactly in Fourier space to the 2× oversampled transform;
2. its projections over the tilt range (projection-slice theorem, ``tilt_step`` apart) are
   computed, limited to the detector's Nyquist disc;
3. white Gaussian noise is added to every projection and the projections are multiplied by
   CTF × MTF (300 kV, Cs 2 mm, 5 µm underfocus, ``sinc(πω/2)`` by default), in the order set by
   ``noise_stage``:

   * ``"paper"`` (default): noise first, then CTF × MTF, so both act on signal and noise alike —
     Xu et al. (2017), Section 3.1.1: noise is added to the projection images "to achieve the
     desired SNR levels", then they are convolved with the CTF and MTF. The SNR is measured on
     the bare projections: ``SNR = var(noise-free projection) / var(noise)`` before CTF × MTF.
   * ``"detector"``: CTF × MTF first, then the noise (shot noise recorded by the detector);
     ``SNR = var(CTF × MTF-filtered projection) / var(noise)``. White noise then puts most of its
     power at high frequencies, where a 40³ particle has little signal, so at the same nominal
     SNR the particle's band is far cleaner than with ``"paper"`` — measured on the
     reconstructions at nominal 0.1, ±60° (:func:`measure_band_snr`; the 22 complexes of
     :data:`cryoml.subtomo.XU2017_COMPLEXES`, 66 subtomograms): band SNR 8.0 / 2.6 / 0.024 in
     0.05–0.1 / 0.1–0.2 / 0.2–0.5 cycles/voxel (0.100 overall), against 4.1 / 0.19 / 0.0038
     (0.016 overall) with ``"paper"``; pooled over 0.05–0.2, 3.0 against 0.23.

   The noise level is one per *set*: the signal variance is the mean, over the set's classes,
   of the projection variance (at the noise stage) for random orientations, so every class —
   and the empty class — gets the same noise and noise level says nothing about the class.
   ``snr=None`` (or ≥ 1e6) means noise-free;
4. the subtomogram is reconstructed by direct Fourier inversion, so the missing wedge is real.

What ``"paper"`` does *not* copy from the authors' public code (AITom,
``reconstruction__simple_convolution``), and why. That code is a 3-D shortcut (noise added to
the rotated map, multiplied by a 3-D CTF, missing wedge applied as a mask; no projections) and
differs from the paper's text in two steps, both left out here:

* **the "MTF" noise term**: half the noise variance is added before the CTF and the other half
  *after* it, as white noise low-passed by a Gaussian-edged sphere (radius 1 Fourier voxel,
  edge σ = 0.2 × box). The paper describes one noise stage, and this term is not an MTF (cryoml
  applies the MTF ``sinc(πω/2)`` as a multiplicative transfer to signal and noise alike);
  leaving it out keeps one stage where the requested SNR holds. It matters at the lowest
  frequencies, which the CTF attenuates but this term does not: a scratch probe that split the
  noise the same way (4 of those complexes, nominal 0.1, ±60°, where ``"paper"`` gives
  4.2 / 0.15 / 0.0035) gave band SNR 0.82 / 0.18 / 0.0067
  — the 0.05–0.1 band 5× noisier, the rest about the same.
* **the band-pass**: the map before the noise and the noisy result are low-passed at
  ``floor(box × voxel_nm / 4)`` Fourier voxels (0.225 cycles/voxel for 40³ at 0.92 nm) with a
  Gaussian edge of 2 voxels. Not in the paper; it multiplies signal and noise alike, so it
  changes no band SNR below 0.225 cycles/voxel and only removes the noise-dominated band above
  (band SNR ~0.004 at nominal 0.1). Low-pass the set yourself to get it.

What the classifier sees is not the nominal SNR, with either stage: the reconstruction averages
the many tilts that pass near the origin of Fourier space (about ``1 / (r Δθ)`` of them at
radius ``r`` voxels), and a particle's power falls with frequency while noise added at one
stage is white, so the band SNR of the subtomograms is far above nominal at the lowest
frequencies and below it at the highest. :func:`measure_band_snr` measures it.

Physical: projection geometry, CTF/MTF, the wedge, the noise averaging of DFI (low frequencies,
sampled by many tilts, are less noisy than high ones). Approximated: nearest-neighbour DFI
gridding, trilinear Fourier interpolation, projections of an isolated particle in a ``box``²
detector window (no neighbouring densities, no solvent/ice texture), no defocus gradient across
tilted images, no dose accumulation.

Deterministic per seed: poses come from the main generator; each subtomogram's noise from its
own child of a :class:`numpy.random.SeedSequence`, so results do not depend on ``n_jobs``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from cryoml._errors import CryomlError
from cryoml._validation import check_positive, check_random_state
from cryoml.simulate._optics import CTFParams
from cryoml.simulate._tilt import (
    FourierSlicer,
    _project_item,
    _SliceGeometry,
    _slices_to_images,
    _transfer_2d,
    reconstruct_dfi,
    tilt_angles,
)

__all__ = [
    "SubtomogramSet",
    "measure_band_snr",
    "measure_subtomogram_snr",
    "simulate_condition_grid",
    "simulate_subtomograms",
    "xu2017_conditions",
]

log = logging.getLogger(__name__)

EMPTY_CLASS = "empty"
_NOISE_FREE_SNR = 1e6
# Random poses per class (x all tilts) to measure the mean projection variance of a set.
_CALIBRATION_POSES = 8


@dataclasses.dataclass(eq=False)
class SubtomogramSet:
    """Simulated subtomograms with their ground truth.

    Attributes
    ----------
    data : (N, box, box, box) ndarray of float32
        The subtomograms (Z, Y, X); dense matter is dark at low frequency (CTF, no phase flip).
    labels : (N,) ndarray of int
        Class index into ``class_names``.
    class_names : list of str
        Class names (the last is ``"empty"`` when the set has an empty class).
    rotations : (N, 3, 3) ndarray
        Rotation applied to each particle, acting on (Z, Y, X) vectors:
        ``rotated(r) = density(rotations[i].T @ r)``.
    shifts : (N, 3) ndarray
        Shift of the particle centre in voxels (Z, Y, X).
    params : dict
        Every parameter of the simulation (JSON-serialisable).
    """

    data: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    rotations: np.ndarray
    shifts: np.ndarray
    params: dict

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (
            f"SubtomogramSet({len(self)} × {self.data.shape[1:]}, {len(self.class_names)} "
            f"classes, snr={self.params.get('snr')}, tilt=±{self.params.get('tilt_range')}°)"
        )

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the set to one ``.npz`` (uncompressed, fast) or ``.h5`` file, atomically.

        Raises
        ------
        CryomlError
            For another suffix or an existing file without ``overwrite``.
        """
        from cryoml.io import atomic_path

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".h5", ".hdf5"):
            raise CryomlError(f"{path}: save a SubtomogramSet as .npz or .h5.")
        meta = json.dumps({"class_names": self.class_names, "params": self.params})
        with atomic_path(path, overwrite=overwrite) as tmp:
            if suffix == ".npz":
                with open(tmp, "wb") as handle:
                    np.savez(
                        handle, data=self.data, labels=self.labels, rotations=self.rotations,
                        shifts=self.shifts, meta=np.array(meta),
                    )
            else:
                import h5py

                with h5py.File(tmp, "w") as handle:
                    handle.create_dataset("data", data=self.data, chunks=(1, *self.data.shape[1:]))
                    for key in ("labels", "rotations", "shifts"):
                        handle.create_dataset(key, data=getattr(self, key))
                    handle.attrs["meta"] = meta
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubtomogramSet:
        """Read a set written by :meth:`save`.

        Raises
        ------
        CryomlError
            If the file is missing or not a saved SubtomogramSet.
        """
        path = Path(path)
        if not path.is_file():
            raise CryomlError(f"{path}: no such file. Check the path.")
        try:
            if path.suffix.lower() == ".npz":
                with np.load(path, allow_pickle=False) as handle:
                    arrays = {k: handle[k] for k in ("data", "labels", "rotations", "shifts")}
                    meta = json.loads(str(handle["meta"]))
            else:
                import h5py

                with h5py.File(path, "r") as handle:
                    arrays = {k: handle[k][...] for k in ("data", "labels", "rotations", "shifts")}
                    meta = json.loads(handle.attrs["meta"])
        except (KeyError, OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            reason = str(error) or type(error).__name__
            if "allow_pickle" in reason:
                reason = "it holds Python objects, which cryoml never unpickles"
            raise CryomlError(
                f"{path}: not a saved SubtomogramSet, or truncated ({reason}). Write it with "
                "SubtomogramSet.save."
            ) from None
        return cls(class_names=list(meta["class_names"]), params=meta["params"], **arrays)

    def to_mrc(self, folder: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
        """Write one MRC stack per class, ``<folder>/<class>.mrcs``: the class's subtomograms
        stacked along Z (``box`` slices each, in set order); returns the paths."""
        from cryoml.io import write_mrc

        folder = Path(folder)
        written = []
        for index, name in enumerate(self.class_names):
            members = self.data[self.labels == index]
            if len(members) == 0:
                continue
            stacked = members.reshape(-1, *members.shape[2:])
            written.append(
                write_mrc(folder / f"{name}.mrcs", stacked, voxel_size=self.params["voxel_size"],
                          is_stack=True, overwrite=overwrite)
            )
        return written


def xu2017_conditions() -> list[dict]:
    """The 15 conditions of Xu et al. (2017): SNR ∈ {1000, 0.5, 0.1, 0.05, 0.03} × tilt
    ∈ {±60°, ±50°, ±40°}, as dicts ``{"snr": ..., "tilt_range": ...}``."""
    return [
        {"snr": snr, "tilt_range": tilt}
        for snr, tilt in itertools.product((1000.0, 0.5, 0.1, 0.05, 0.03), (60.0, 50.0, 40.0))
    ]


# ------------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _init_worker(densities, box, angles, voxel_size, ctf_dict, use_mtf, noise_stage, threads):
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    geometry = _SliceGeometry.build(box, angles)
    params = CTFParams(**ctf_dict) if ctf_dict is not None else None
    optics = _transfer_2d(box, voxel_size, params, use_mtf)  # CTF × MTF, 0 beyond Nyquist
    if noise_stage == "paper":  # noise on the bare projection; CTF × MTF act on both after
        signal_transfer = _transfer_2d(box, voxel_size, None, False)  # the Nyquist disc only
        after_noise = optics
    else:  # "detector": CTF × MTF on the signal, then the noise
        signal_transfer, after_noise = optics, None
    _WORKER.clear()
    _WORKER.update(
        slicers=[FourierSlicer(d) for d in densities],
        geometry=geometry,
        transfer=signal_transfer,
        after_noise=after_noise,
        box=box,
    )


def _fourier_white_noise(rng, shape, box, noise_sd) -> np.ndarray:
    """``rfft2`` of real white noise images (variance ``noise_sd²``), drawn in Fourier space.

    Coefficients are complex Gaussian with ``E|N|² = box² σ²``; the self-conjugate columns
    (kx = 0 and kx = box/2) are made Hermitian along ky (real at ky = 0, box/2), exactly the
    distribution of ``numpy.fft.rfft2`` of real Gaussian noise.
    """
    scale = np.float32(noise_sd * box / np.sqrt(2.0))
    noise = rng.standard_normal((*shape, 2), dtype=np.float32).view(np.complex64)[..., 0]
    noise *= scale
    flip = (-np.arange(box)) % box
    columns = [0, box // 2] if box % 2 == 0 else [0]
    for column in columns:
        values = noise[:, :, column]
        noise[:, :, column] = (values + np.conj(values[:, flip])) / np.float32(np.sqrt(2.0))
    return noise


def _run_chunk(labels, rotations, shifts, seeds, noise_sd, want_projections=False,
               want_clean=False):
    """Simulate subtomograms; optionally also return the projections at the noise stage
    (noise-free, noisy) and the noise-free reconstructions of the same poses."""
    geometry = _WORKER["geometry"]
    transfer = _WORKER["transfer"]
    after_noise = _WORKER["after_noise"]
    box = _WORKER["box"]
    n_t = len(geometry.angles)
    out = np.empty((len(labels), box, box, box), np.float32)
    clean_out = np.empty_like(out) if want_clean else None
    projections = []
    for i, (label, rotation, shift, seed) in enumerate(
        zip(labels, rotations, shifts, seeds, strict=True)
    ):
        if label < 0:
            slices = np.zeros((n_t, box, box // 2 + 1), np.complex64)
        else:
            slices = _project_item(_WORKER["slicers"][label], geometry, rotation, shift, transfer)
        clean = slices.copy() if want_projections or want_clean else None
        if noise_sd > 0:
            rng = np.random.default_rng(seed)
            if want_projections:  # explicit real-space noise images
                noise = rng.standard_normal((n_t, box, box), dtype=np.float32)
                slices += np.fft.rfft2(noise * np.float32(noise_sd)).astype(np.complex64)
            else:  # the same distribution, drawn directly in Fourier space (faster)
                slices += _fourier_white_noise(rng, slices.shape, box, noise_sd)
        if want_projections:  # at the stage where the noise was added
            projections.append((_slices_to_images(clean, box), _slices_to_images(slices, box)))
        if after_noise is not None:
            slices *= after_noise
        out[i] = reconstruct_dfi(slices, geometry)
        if want_clean:
            if after_noise is not None:
                clean *= after_noise
            clean_out[i] = reconstruct_dfi(clean, geometry)
    if want_clean:
        return out, projections, clean_out
    return out, projections


def _calibrate_chunk(label: int, rotations: np.ndarray) -> float:
    """Mean variance of the noise-free projection images of one class at ``rotations``.

    Computed from the projections' transforms by Parseval (``var = Σ_{k≠0} |P(k)|² / n⁴``, the
    rfft2 half-plane counted twice except its self-conjugate columns) — the same number as
    ``np.var`` of the images, without inverse transforms.
    """
    slicer = _WORKER["slicers"][label]
    geometry = _WORKER["geometry"]
    box = _WORKER["box"]
    weight = np.full(box // 2 + 1, 2.0, np.float32)
    weight[0] = 1.0
    if box % 2 == 0:
        weight[-1] = 1.0
    values = []
    for rotation in rotations:
        slices = _project_item(slicer, geometry, rotation, np.zeros(3), _WORKER["transfer"])
        power = (slices.real**2 + slices.imag**2) * weight
        power[:, 0, 0] = 0.0
        values.append(float(power.sum(dtype=np.float64)) / (len(slices) * box**4))
    return float(np.mean(values))


def _calibration_poses(n_classes: int, rng: np.random.Generator, n_poses: int) -> np.ndarray:
    seed_rng = np.random.default_rng(int(rng.integers(2**63)))
    return _random_rotations(n_classes * n_poses, seed_rng).reshape(n_classes, n_poses, 3, 3)


# ------------------------------------------------------------------------------- public API


def _validate_common(class_names, n_per_class, snr, tilt_range, box, voxel_size, n_jobs):
    if isinstance(class_names, str) or not len(class_names):
        raise CryomlError(
            "'class_names' must be a non-empty list of density names (built-in complexes or "
            f"shared maps); got {class_names!r}."
        )
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise CryomlError(f"'n_per_class' must be a whole number >= 1; got {n_per_class!r}.")
    if snr is not None:
        check_positive(snr, name="snr")
    check_positive(tilt_range, name="tilt_range")
    if tilt_range >= 90:
        raise CryomlError(f"'tilt_range' must be below 90°; got {tilt_range}.")
    if int(box) != box or box < 8:
        raise CryomlError(f"'box' must be a whole number of voxels >= 8; got {box!r}.")
    check_positive(voxel_size, name="voxel_size")
    if int(n_jobs) != n_jobs or n_jobs < 1:
        raise CryomlError(f"'n_jobs' must be a whole number >= 1; got {n_jobs!r}.")


NOISE_STAGES = ("paper", "detector")


def _check_noise_stage(noise_stage) -> None:
    if noise_stage not in NOISE_STAGES:
        raise CryomlError(
            f"'noise_stage' must be 'paper' (noise before CTF × MTF, as Xu et al. 2017) or "
            f"'detector' (after them); got {noise_stage!r}."
        )


def _random_rotations(count: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    xyz = Rotation.random(count, random_state=rng).as_matrix()
    flip = np.eye(3)[::-1]  # (x, y, z) <-> (z, y, x)
    return np.einsum("ij,njk,kl->nil", flip, xyz, flip)


def simulate_subtomograms(
    class_names: list[str],
    n_per_class: int,
    *,
    snr: float | None,
    tilt_range: float = 60.0,
    box: int = 40,
    voxel_size: float = 9.2,
    include_empty: bool = True,
    random_state: int | np.random.Generator | None = None,
    n_jobs: int = 2,
    tilt_step: float = 2.0,
    max_shift: float = 2.0,
    ctf_params: CTFParams | None = None,
    use_ctf: bool = True,
    use_mtf: bool = True,
    noise_stage: str = "paper",
    progress: bool = False,
) -> SubtomogramSet:
    """Simulate a labelled set of subtomograms (Xu et al. 2017; see the module docstring).

    Parameters
    ----------
    class_names : list of str
        Densities, each a built-in complex (:func:`builtin_complexes`), a shared map name
        (``"4v4r"``) or a path (see :func:`load_density`).
    n_per_class : int
        Subtomograms per class (the paper: 1000).
    snr : float or None
        Projection SNR, ``var(signal) / var(noise)``; None or ≥ 1e6: noise-free.
    tilt_range : float, default 60
        Maximum tilt in degrees (±).
    box : int, default 40
        Cube edge in voxels.
    voxel_size : float, default 9.2
        Å per voxel.
    include_empty : bool, default True
        Add an ``"empty"`` class (noise only) of ``n_per_class`` members.
    random_state : None, int or Generator
        Seed; the same seed gives the same set for any ``n_jobs``.
    n_jobs : int, default 2
        Worker processes. Once Keras, TensorFlow, JAX or PyTorch is imported they are started
        with ``spawn``, which re-imports a calling script: in a script, call this under
        ``if __name__ == "__main__":`` (notebooks need nothing).
    tilt_step : float, default 2
        Degrees between tilts.
    max_shift : float, default 2
        Shifts are uniform in ±``max_shift`` voxels per axis.
    ctf_params : CTFParams, optional
        Microscope (default 300 kV, Cs 2 mm, 5 µm underfocus, A = 0.07).
    use_ctf, use_mtf : bool, default True
        Apply the CTF / the detector MTF.
    noise_stage : {"paper", "detector"}, default "paper"
        Where the noise is added (see the module docstring): ``"paper"`` to the bare
        projections, before CTF × MTF, as Xu et al. (2017) state; ``"detector"`` after
        CTF × MTF (cryoml's order before this option; physically closer for shot noise, and
        much easier at the same nominal SNR). ``snr`` is measured at that stage either way.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    SubtomogramSet

    Raises
    ------
    CryomlError
        For bad arguments or unknown densities.
    """
    _validate_common(class_names, n_per_class, snr, tilt_range, box, voxel_size, n_jobs)
    _check_noise_stage(noise_stage)
    check_positive(max_shift, name="max_shift", allow_zero=True)
    rng = check_random_state(random_state)
    from cryoml.simulate._density import load_density

    names = [str(n) for n in class_names]
    densities = [load_density(n, voxel_size=voxel_size, box=int(box)) for n in names]
    angles = tilt_angles(tilt_range, tilt_step)
    params_ctf = (ctf_params or CTFParams()) if use_ctf else None
    noise_free = snr is None or snr >= _NOISE_FREE_SNR
    poses = _calibration_poses(len(densities), rng, _CALIBRATION_POSES)
    if noise_free:
        poses = poses[:, :1]  # no noise to scale: a token calibration

    n_classes = len(names) + (1 if include_empty else 0)
    labels = np.repeat(np.arange(n_classes), int(n_per_class))
    total = len(labels)
    rotations = _random_rotations(total, rng)
    shifts = rng.uniform(-max_shift, max_shift, size=(total, 3))
    worker_labels = labels.copy()
    if include_empty:
        worker_labels[labels == len(names)] = -1
        rotations[labels == len(names)] = np.eye(3)
        shifts[labels == len(names)] = 0.0
    seeds = np.random.SeedSequence(int(rng.integers(2**63))).spawn(total)

    init = (densities, int(box), angles, float(voxel_size),
            None if params_ctf is None else params_ctf.to_dict(), use_mtf, noise_stage)
    data, signal_var = _run_parallel(
        init, poses, snr, worker_labels, rotations, shifts, seeds, n_jobs, progress
    )
    noise_sd = 0.0 if noise_free else float(np.sqrt(signal_var / snr))
    class_list = [*names, EMPTY_CLASS] if include_empty else names
    params = {
        "snr": None if noise_free else float(snr),
        "tilt_range": float(tilt_range),
        "tilt_step": float(tilt_step),
        "box": int(box),
        "voxel_size": float(voxel_size),
        "n_per_class": int(n_per_class),
        "include_empty": bool(include_empty),
        "max_shift": float(max_shift),
        # an int seed makes the set reproducible; record it so a saved set can be matched
        "random_state": int(random_state) if isinstance(random_state, int | np.integer) else None,
        "ctf": None if params_ctf is None else params_ctf.to_dict(),
        "mtf": bool(use_mtf),
        "noise_stage": noise_stage,
        "signal_variance": signal_var,
        "noise_sd": noise_sd,
        "reconstruction": "direct Fourier inversion (nearest-neighbour gridding)",
        "snr_definition": "var(noise-free projection) / var(noise), per projection image, "
        + ("before CTF × MTF" if noise_stage == "paper" else "after CTF × MTF"),
    }
    return SubtomogramSet(data, labels, class_list, rotations, shifts, params)


def _chunks(total: int, n_jobs: int) -> list[slice]:
    size = max(8, min(128, total // (4 * n_jobs) + 1))
    return [slice(i, min(total, i + size)) for i in range(0, total, size)]


def _process_context():
    """``fork`` (fast start) unless a threaded ML framework is loaded, then ``spawn`` (forking
    a process that runs TensorFlow/JAX/PyTorch threads can deadlock)."""
    import multiprocessing
    import sys

    threaded = any(name in sys.modules for name in ("tensorflow", "jax", "torch"))
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("spawn" if threaded or "fork" not in methods else "fork")


def _broken_pool_error(start_method: str) -> CryomlError:
    """Explain the usual cause of worker processes dying at start-up."""
    import sys

    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if start_method == "spawn" and main:
        return CryomlError(
            f"the simulator's worker processes could not start. Keras/TensorFlow/JAX/PyTorch "
            f"is loaded, so workers are started with 'spawn', which imports your script "
            f"{main!r} again in each worker; code at the top level of the script then runs "
            f"again there. Put the script's work under 'if __name__ == \"__main__\":', "
            f"simulate before importing the ML framework, or pass n_jobs=1."
        )
    return CryomlError(
        "the simulator's worker processes died (out of memory, or killed); try a smaller "
        "n_jobs, or n_jobs=1."
    )


def _noise_sd(snr, signal_var):
    if snr is None or snr >= _NOISE_FREE_SNR:
        return 0.0
    return float(np.sqrt(signal_var / snr))


def _run_parallel(init, poses, snr, labels, rotations, shifts, seeds, n_jobs, progress):
    """Calibrate the noise level (the set's mean projection variance), then simulate.

    Returns the data and the measured mean signal variance.
    """
    from tqdm.auto import tqdm

    total = len(labels)
    box = init[1]
    data = np.empty((total, box, box, box), np.float32)
    chunks = _chunks(total, n_jobs)
    bar = tqdm(total=total, disable=not progress, desc="subtomograms", unit="vol")
    try:
        if n_jobs == 1 or total < 16:
            _init_worker(*init, threads=False)
            signal_var = float(np.mean([_calibrate_chunk(c, p) for c, p in enumerate(poses)]))
            noise_sd = _noise_sd(snr, signal_var)
            for part in chunks:
                data[part] = _run_chunk(
                    labels[part], rotations[part], shifts[part], seeds[part], noise_sd
                )[0]
                bar.update(part.stop - part.start)
        else:
            context = _process_context()
            with concurrent.futures.ProcessPoolExecutor(
                max_workers=int(n_jobs), initializer=_init_worker, initargs=(*init, True),
                mp_context=context,
            ) as pool:
                try:
                    variances = list(pool.map(_calibrate_chunk, range(len(poses)), poses))
                except concurrent.futures.process.BrokenProcessPool as error:
                    raise _broken_pool_error(context.get_start_method()) from error
                signal_var = float(np.mean(variances))
                noise_sd = _noise_sd(snr, signal_var)
                futures = {
                    pool.submit(_run_chunk, labels[part], rotations[part], shifts[part],
                                seeds[part], noise_sd): part
                    for part in chunks
                }
                try:
                    for future in concurrent.futures.as_completed(futures):
                        part = futures[future]
                        data[part] = future.result()[0]
                        bar.update(part.stop - part.start)
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        bar.close()
    return data, signal_var


def simulate_condition_grid(
    class_names: list[str],
    n_per_class: int,
    *,
    conditions: list[dict] | None = None,
    out_dir: str | os.PathLike | None = None,
    random_state: int | np.random.Generator | None = None,
    overwrite: bool = False,
    **kwargs,
) -> dict[tuple[float, float], SubtomogramSet | Path]:
    """Simulate one set per (SNR, tilt range) condition (default: :func:`xu2017_conditions`).

    Parameters
    ----------
    class_names, n_per_class
        As :func:`simulate_subtomograms`.
    conditions : list of dict, optional
        ``{"snr": ..., "tilt_range": ...}`` each.
    out_dir : path-like, optional
        Save each set as ``snr<snr>_tilt<range>.npz`` there and return paths instead of sets
        (keeps memory flat for the full 15 × 23,000 grid).
    random_state : None, int or Generator
        One seed for the grid; each condition gets its own child seed.
    overwrite : bool
        Replace existing files.
    **kwargs
        Passed to :func:`simulate_subtomograms` (``box``, ``voxel_size``, ``n_jobs``, ...).

    Returns
    -------
    dict mapping (snr, tilt_range) to SubtomogramSet or Path
    """
    rng = check_random_state(random_state)
    conditions = conditions or xu2017_conditions()
    out: dict = {}
    for condition in conditions:
        seed = int(rng.integers(2**63))
        key = (float(condition["snr"]), float(condition["tilt_range"]))
        subset = simulate_subtomograms(
            class_names, n_per_class, snr=key[0], tilt_range=key[1], random_state=seed, **kwargs
        )
        if out_dir is not None:
            path = Path(out_dir) / f"snr{key[0]:g}_tilt{key[1]:g}.npz"
            out[key] = subset.save(path, overwrite=overwrite)
        else:
            out[key] = subset
    return out


def _measurement_setup(class_names, snr, n, tilt_range, box, voxel_size, tilt_step,
                       noise_stage, random_state):
    """Start an in-process worker and draw ``n`` balanced poses; returns what a chunk needs."""
    _validate_common(class_names, n, snr, tilt_range, box, voxel_size, 1)
    _check_noise_stage(noise_stage)
    rng = check_random_state(random_state)
    from cryoml.simulate._density import load_density

    densities = [load_density(c, voxel_size=voxel_size, box=int(box)) for c in class_names]
    angles = tilt_angles(tilt_range, tilt_step)
    _init_worker(densities, int(box), angles, float(voxel_size), CTFParams().to_dict(), True,
                 noise_stage, False)
    poses = _calibration_poses(len(densities), rng, _CALIBRATION_POSES)
    signal_var = float(np.mean([_calibrate_chunk(c, p) for c, p in enumerate(poses)]))
    noise_sd = float(np.sqrt(signal_var / snr))
    labels = np.arange(n) % len(densities)  # balanced, as the set-level definition
    rotations = _random_rotations(n, rng)
    shifts = rng.uniform(-2, 2, size=(n, 3))
    return rng, noise_sd, labels, rotations, shifts


def measure_subtomogram_snr(
    class_names: list[str],
    *,
    snr: float,
    n: int = 64,
    tilt_range: float = 60.0,
    box: int = 40,
    voxel_size: float = 9.2,
    tilt_step: float = 2.0,
    noise_stage: str = "paper",
    random_state: int | np.random.Generator | None = None,
) -> dict:
    """Measure the SNR of the projections behind a simulated set, two ways.

    Measured on the projection images at the stage where the noise is added (``noise_stage``,
    as :func:`simulate_subtomograms`). ``direct``: mean variance of the noise-free projections
    over the mean variance of the added noise (the definition). ``frank_al_ali``: from two
    independently noisy copies of every projection, ``ρ / (1 − ρ)`` with ``ρ`` the pooled
    correlation (Frank & Al-Ali 1975, the estimator of Xu et al. 2017), which never looks at
    the noise-free images.

    Returns
    -------
    dict with keys ``requested``, ``direct``, ``frank_al_ali``
    """
    rng, noise_sd, labels, rotations, shifts = _measurement_setup(
        class_names, snr, n, tilt_range, box, voxel_size, tilt_step, noise_stage, random_state
    )
    seeds_a = np.random.SeedSequence(int(rng.integers(2**63))).spawn(n)
    seeds_b = np.random.SeedSequence(int(rng.integers(2**63))).spawn(n)
    _, first = _run_chunk(labels, rotations, shifts, seeds_a, noise_sd, want_projections=True)
    _, second = _run_chunk(labels, rotations, shifts, seeds_b, noise_sd, want_projections=True)
    clean = np.stack([c for c, _ in first])
    noisy_a = np.stack([x for _, x in first])
    noisy_b = np.stack([x for _, x in second])
    axes = (-2, -1)
    signal = float(np.mean(np.var(clean, axis=axes)))
    noise = float(np.mean(np.var(noisy_a - clean, axis=axes)))
    a = noisy_a - noisy_a.mean(axis=axes, keepdims=True)
    b = noisy_b - noisy_b.mean(axis=axes, keepdims=True)
    rho = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    return {"requested": float(snr), "direct": signal / noise, "frank_al_ali": rho / (1 - rho)}


DEFAULT_BANDS = ((0.05, 0.1), (0.1, 0.2), (0.2, 0.5))


def measure_band_snr(
    class_names: list[str],
    *,
    snr: float,
    bands: tuple[tuple[float, float], ...] = DEFAULT_BANDS,
    n: int = 32,
    tilt_range: float = 60.0,
    box: int = 40,
    voxel_size: float = 9.2,
    tilt_step: float = 2.0,
    noise_stage: str = "paper",
    random_state: int | np.random.Generator | None = None,
) -> dict[str, float]:
    """SNR of the reconstructed subtomograms per band of spatial frequency.

    Signal: the noise-free reconstruction of the same poses (CTF, MTF, wedge and all); noise:
    noisy minus noise-free reconstruction. For each band ``lo ≤ |k| < hi`` (cycles/voxel of the
    3-D transform) the summed signal power over the summed noise power, pooled over ``n``
    subtomograms (the classes in turn); ``"all"`` pools every non-zero frequency (the ratio of
    the variances). This is what a classifier of the subtomograms sees, where the nominal
    ``snr`` is defined on the projections (see :func:`measure_subtomogram_snr`).

    Parameters
    ----------
    class_names : list of str
        Densities, as :func:`simulate_subtomograms`.
    snr : float
        Nominal projection SNR.
    bands : tuple of (float, float)
        Frequency bands in cycles/voxel (default 0.05–0.1, 0.1–0.2, 0.2–0.5).
    n : int, default 32
        Subtomograms pooled.
    tilt_range, box, voxel_size, tilt_step, noise_stage
        As :func:`simulate_subtomograms`.
    random_state : None, int or Generator
        Seed.

    Returns
    -------
    dict
        ``"lo-hi"`` (e.g. ``"0.05-0.1"``) → SNR, and ``"all"``.

    Raises
    ------
    CryomlError
        For bad arguments or an empty band.
    """
    for lo, hi in bands:
        if not 0 <= lo < hi:
            raise CryomlError(f"'bands' must be (low, high) pairs with 0 <= low < high; got "
                              f"{(lo, hi)}.")
    rng, noise_sd, labels, rotations, shifts = _measurement_setup(
        class_names, snr, n, tilt_range, box, voxel_size, tilt_step, noise_stage, random_state
    )
    seeds = np.random.SeedSequence(int(rng.integers(2**63))).spawn(n)
    noisy, _, clean = _run_chunk(labels, rotations, shifts, seeds, noise_sd, want_clean=True)
    signal = _shell_power(clean)
    noise = _shell_power(noisy - clean)
    radius = _rfft_radius(int(box))
    out = {}
    for lo, hi in bands:
        inside = (radius >= lo) & (radius < hi)
        if not inside.any():
            raise CryomlError(f"band {lo}-{hi} cycles/voxel holds no frequency at box {box}.")
        out[f"{lo:g}-{hi:g}"] = float(signal[inside].sum() / noise[inside].sum())
    out["all"] = float(signal[radius > 0].sum() / noise[radius > 0].sum())
    return out


def _rfft_radius(box: int) -> np.ndarray:
    axis = np.fft.fftfreq(box)
    half = np.fft.rfftfreq(box)
    return np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + half[None, None, :] ** 2)


def _shell_power(volumes: np.ndarray) -> np.ndarray:
    """Power per rfftn coefficient summed over volumes, each weighted by how often it stands
    in the full transform (twice, except the self-conjugate planes)."""
    box = volumes.shape[-1]
    spectrum = np.fft.rfftn(volumes.astype(np.float64), axes=(-3, -2, -1))
    power = (np.abs(spectrum) ** 2).sum(axis=0)
    weight = np.full(box // 2 + 1, 2.0)
    weight[0] = 1.0
    if box % 2 == 0:
        weight[-1] = 1.0
    return power * weight
