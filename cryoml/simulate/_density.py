"""Density maps: load by name or path, resample in Fourier space, pad/crop, build from atoms.

All volumes are (Z, Y, X) float32. Loaded densities are put on a common scale: the background
(median of the box's outer shell) is subtracted and the map is scaled so that its protein
interior (the mean of voxels above half the maximum) is 1. Maps of different complexes can then be
mixed in one simulation without one class drowning in another's noise.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np

from cryoml._errors import CryomlError, CryomlWarning
from cryoml._validation import check_array, check_positive

__all__ = [
    "available_maps",
    "density_from_atoms",
    "load_density",
    "pad_or_crop",
    "reference_structures_dir",
    "resample_fourier",
]

_ATOM_SUFFIXES = {".pdb", ".ent", ".cif", ".mmcif"}
_MAP_SUFFIXES = {".mrc", ".map", ".mrcs", ".rec"}


def reference_structures_dir() -> Path | None:
    """The reference data's ``structures/`` folder (real maps and atomic models), or None."""
    from cryoml.datasets import reference_data

    root = reference_data()
    if root is None or not (root / "structures").is_dir():
        return None
    return root / "structures"


def _map_name(path: Path) -> str | None:
    """The density name of a map file (``4v4r`` for ``4v4r.mrc`` or ``4v4r.mrc.gz``), or None."""
    name = path.name.lower()
    for suffix in _MAP_SUFFIXES:
        for ending in (suffix, suffix + ".gz"):
            if name.endswith(ending):
                return path.name[: -len(ending)]
    return None


def _is_map_file(path: Path) -> bool:
    return _map_name(path) is not None


def _is_atom_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) or name.endswith(s + ".gz") for s in _ATOM_SUFFIXES)


def available_maps() -> list[str]:
    """Names of the real density maps that load by name, without a path.

    Searched, in order: the repository's ``data/densities`` (example maps, always present in a
    clone), the user cache (maps made by :func:`cryoml.datasets.fetch_density`) and the optional
    reference data's ``structures/maps_10A`` and ``membrane_maps_10A``.

    Returns
    -------
    list of str
        Sorted, without duplicates.
    """
    from cryoml.datasets import density_folders

    names: set[str] = set()
    for folder in density_folders():
        for path in folder.iterdir():
            name = _map_name(path)
            if name is not None and path.is_file():
                names.add(name)
    return sorted(names)


def _find_named_map(name: str) -> Path | None:
    from cryoml.datasets import density_folders

    for folder in density_folders():
        for ending in (".mrc", ".mrc.gz"):
            candidate = folder / f"{name}{ending}"
            if candidate.is_file():
                return candidate
    return None


def load_density(
    name_or_path: str | os.PathLike,
    *,
    voxel_size: float,
    box: int | None = None,
    resolution: float | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Load a density by name or path, resampled to ``voxel_size`` and padded/cropped to ``box``.

    Parameters
    ----------
    name_or_path : str or path-like
        A built-in procedural complex (see :func:`builtin_complexes`), the name of a real map
        (``"4v4r"``; see :func:`available_maps` for where names are looked up), or a path
        to an MRC map or an atomic model (``.pdb`` / ``.cif``, converted with
        :func:`density_from_atoms`).
    voxel_size : float
        Output voxel size in Å.
    box : int, optional
        Output cube edge in voxels; default: the resampled map's own size.
    resolution : float, optional
        Gaussian low-pass in Å (also the atom blur for models; default for models and built-ins:
        ``max(2 * voxel_size, 10)``).
    normalize : bool, default True
        Subtract the background and scale the protein interior to 1 (see module docstring).

    Returns
    -------
    (box, box, box) ndarray of float32

    Raises
    ------
    CryomlError
        For an unknown name, a missing file or a bad size.

    Warns
    -----
    CryomlWarning
        When cropping to ``box`` cuts away more than 5 % of the map's mass.
    """
    from cryoml.simulate._procedural import builtin_complexes, procedural_density

    voxel_size = check_positive(voxel_size, name="voxel_size")
    if box is not None and (int(box) != box or box < 4):
        raise CryomlError(f"'box' must be a whole number of voxels >= 4; got {box!r}.")
    if resolution is not None:
        check_positive(resolution, name="resolution")
    text = str(name_or_path)
    if text in builtin_complexes():
        volume = procedural_density(text, voxel_size=voxel_size, resolution=resolution)
    else:
        path = Path(name_or_path)
        if not path.suffix and _find_named_map(text) is not None:
            path = _find_named_map(text)
        if not path.is_file():
            maps = available_maps()
            listed = ", ".join(maps[:30]) + (", ..." if len(maps) > 30 else "")
            raise CryomlError(
                f"unknown density {text!r}: not a built-in complex "
                f"({', '.join(builtin_complexes())}), not a known map ({listed or 'none found'})"
                " and not a file. Pass one of these names, a path to an .mrc map or a .pdb/.cif "
                f"model, or make the map from the PDB entry: `cryoml fetch pdb {text} --map` "
                "(needs the network once)."
            )
        if _is_atom_file(path):
            volume = density_from_atoms(
                path, voxel_size=voxel_size, resolution=resolution or max(2 * voxel_size, 10.0)
            )
        elif _is_map_file(path):
            volume = _load_map_cached(str(path.resolve()), float(voxel_size), resolution)
        else:
            raise CryomlError(
                f"{path}: unknown density format '{path.suffix}'; use .mrc/.map or .pdb/.cif."
            )
    volume = np.array(volume, dtype=np.float32)
    if normalize:
        volume = _normalize(volume)
    if box is not None:
        volume = _crop_with_check(volume, int(box), text)
    return volume


def _crop_with_check(volume: np.ndarray, box: int, what: str) -> np.ndarray:
    total = float(np.clip(volume, 0, None).sum())
    out = pad_or_crop(volume, box)
    if total > 0:
        kept = float(np.clip(out, 0, None).sum())
        lost = 1.0 - kept / total
        if lost > 0.05:
            warnings.warn(
                f"density {what!r}: cropping to a {box}³ box cuts away {lost:.0%} of its mass. "
                "Use a larger box or a larger voxel size.",
                CryomlWarning,
                stacklevel=3,
            )
    return out


@functools.lru_cache(maxsize=64)
def _load_map_cached(path: str, voxel_size: float, resolution: float | None) -> np.ndarray:
    from cryoml.io import read_mrc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryomlWarning)
        image = read_mrc(path)
    data = np.asarray(image.data, dtype=np.float32)
    if data.ndim != 3:
        raise CryomlError(f"{path}: a density map must be 3-D; got shape {data.shape}.")
    source_voxel = image.voxel_size
    if source_voxel is None:
        raise CryomlError(f"{path}: the MRC header gives no voxel size; set it in the file.")
    data = data - _background(data)
    if resolution is not None:
        data = _gaussian_lowpass(data, voxel_size=source_voxel, resolution=resolution)
    out = resample_fourier(data, voxel_size=source_voxel, new_voxel_size=voxel_size)
    out.setflags(write=False)
    return out


def _background(volume: np.ndarray) -> float:
    shell = np.concatenate(
        [volume[[0, -1]].ravel(), volume[:, [0, -1]].ravel(), volume[:, :, [0, -1]].ravel()]
    )
    return float(np.median(shell))


def _normalize(volume: np.ndarray) -> np.ndarray:
    volume = volume - np.float32(_background(volume))
    peak = float(volume.max())
    if peak <= 0:
        return volume
    level = float(volume[volume > 0.5 * peak].mean())
    return (volume / np.float32(level)).astype(np.float32)


def _gaussian_lowpass(volume: np.ndarray, *, voxel_size: float, resolution: float) -> np.ndarray:
    """Gaussian low-pass: Fourier amplitude ``exp(−(R k)²)`` (real-space σ = R / (π √2))."""
    from cryoml.simulate._optics import frequency_grid

    sigma = resolution / (np.pi * np.sqrt(2.0))
    freq = frequency_grid(volume.shape) / voxel_size
    spectrum = np.fft.rfftn(volume)
    spectrum *= np.exp(-2.0 * (np.pi * sigma * freq) ** 2)
    out = np.fft.irfftn(spectrum, s=volume.shape, axes=tuple(range(volume.ndim)))
    return out.astype(np.float32)


def _interp_matrix(n_old: int, spacing_old: float, n_new: int, spacing_new: float) -> np.ndarray:
    """Trigonometric-interpolation matrix (n_new, n_old) between centred grids, low-passed to the
    coarser grid's Nyquist (the old even-length Nyquist term is dropped)."""
    k = np.fft.fftfreq(n_old) * n_old
    freq = k / (n_old * spacing_old)
    limit = 0.5 / max(spacing_old, spacing_new)
    keep = (np.abs(freq) < limit - 1e-12) & (np.abs(k) < n_old / 2)
    freq = freq[keep]
    x_old = (np.arange(n_old) - n_old // 2) * spacing_old
    x_new = (np.arange(n_new) - n_new // 2) * spacing_new
    delta = x_new[:, None, None] - x_old[None, :, None]
    return np.cos(2 * np.pi * freq[None, None, :] * delta).sum(axis=-1) / n_old


def resample_fourier(
    volume: np.ndarray,
    *,
    voxel_size: float,
    new_voxel_size: float,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Resample a volume or image to another voxel size by Fourier (trigonometric) interpolation.

    Exact for band-limited periodic content at any ratio of sizes (not only integer bin factors):
    the map's Fourier series, cut at the coarser grid's Nyquist frequency, is evaluated on the new
    grid. The centre voxel (index ``n // 2``) stays the centre.

    Parameters
    ----------
    volume : (Z, Y, X) or (Y, X) ndarray
        Input data.
    voxel_size, new_voxel_size : float
        Input and output voxel sizes in Å.
    shape : tuple of int, optional
        Output shape; default ``round(n * voxel_size / new_voxel_size)`` per axis.

    Returns
    -------
    ndarray of float32
    """
    volume = check_array(volume, ndim=(2, 3), name="volume")
    voxel_size = check_positive(voxel_size, name="voxel_size")
    new_voxel_size = check_positive(new_voxel_size, name="new_voxel_size")
    if shape is None:
        shape = tuple(max(1, round(n * voxel_size / new_voxel_size)) for n in volume.shape)
    out = np.asarray(volume, dtype=np.float64)
    for axis, (n_old, n_new) in enumerate(zip(volume.shape, shape, strict=True)):
        if n_old == n_new and voxel_size == new_voxel_size:
            continue
        matrix = _interp_matrix(n_old, voxel_size, n_new, new_voxel_size)
        out = np.moveaxis(np.tensordot(matrix, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    return out.astype(np.float32)


def pad_or_crop(volume: np.ndarray, box: int | tuple[int, ...]) -> np.ndarray:
    """Centre-pad with zeros or centre-crop to ``box`` (keeps index ``n // 2`` at the centre)."""
    volume = np.asarray(volume)
    shape = (box,) * volume.ndim if np.isscalar(box) else tuple(box)
    out = np.zeros(shape, dtype=volume.dtype)
    src, dst = [], []
    for n_old, n_new in zip(volume.shape, shape, strict=True):
        offset = n_new // 2 - n_old // 2
        lo_old, lo_new = max(0, -offset), max(0, offset)
        length = min(n_old - lo_old, n_new - lo_new)
        src.append(slice(lo_old, lo_old + length))
        dst.append(slice(lo_new, lo_new + length))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def render_points(
    points: np.ndarray,
    weights: np.ndarray,
    *,
    voxel_size: float,
    box: int | None = None,
    sigma: float,
    oversample: int = 2,
    centre: bool = True,
) -> np.ndarray:
    """Sum of isotropic Gaussians (σ in Å) at ``points`` (Å, (N, 3) in Z, Y, X), on a cube grid.

    Points are splatted trilinearly on a grid ``oversample`` times finer, blurred in Fourier
    space and Fourier-cropped to ``voxel_size``. With ``centre`` the weighted centre of mass
    lands on voxel ``box // 2``.
    """
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if centre:
        points = points - np.average(points, axis=0, weights=weights)
    if box is None:
        extent = 2 * np.abs(points).max() + 6 * sigma + 2 * voxel_size
        box = int(np.ceil(extent / voxel_size))
        box += box % 2
    fine_n = box * oversample
    fine_voxel = voxel_size / oversample
    coords = points / fine_voxel
    base = np.floor(coords).astype(np.int64)
    frac = coords - base
    grid = np.zeros(fine_n**3, dtype=np.float64)
    for dz in (0, 1):
        wz = frac[:, 0] if dz else 1 - frac[:, 0]
        for dy in (0, 1):
            wy = frac[:, 1] if dy else 1 - frac[:, 1]
            for dx in (0, 1):
                wx = frac[:, 2] if dx else 1 - frac[:, 2]
                idx = (
                    ((base[:, 0] + dz) % fine_n) * fine_n * fine_n
                    + ((base[:, 1] + dy) % fine_n) * fine_n
                    + (base[:, 2] + dx) % fine_n
                )
                grid += np.bincount(idx, weights=weights * wz * wy * wx, minlength=fine_n**3)
    grid = grid.reshape((fine_n,) * 3) / fine_voxel**3
    spectrum = np.fft.rfftn(grid.astype(np.float32))
    keep = np.r_[0 : box // 2 + 1, fine_n - (box - box // 2 - 1) : fine_n]
    spectrum = spectrum[keep][:, keep][:, :, : box // 2 + 1]
    from cryoml.simulate._optics import frequency_grid

    freq = frequency_grid((box,) * 3) / voxel_size
    spectrum *= np.exp(-2.0 * (np.pi * sigma * freq) ** 2) * (box / fine_n) ** 3
    out = np.fft.irfftn(spectrum, s=(box,) * 3, axes=(0, 1, 2))
    return np.roll(out, (box // 2,) * 3, axis=(0, 1, 2)).astype(np.float32)


def density_from_atoms(
    path: str | os.PathLike,
    *,
    voxel_size: float,
    resolution: float = 10.0,
    box: int | None = None,
) -> np.ndarray:
    """A density map from an atomic model: a sum of Gaussians weighted by atomic number.

    Like Situs ``pdb2vol`` / EMAN2 ``e2pdb2mrc``: every atom of the first model (waters and
    hydrogens skipped) contributes a Gaussian of weight Z × occupancy and width
    σ = resolution / (π √2) Å, i.e. a Gaussian whose Fourier amplitude ``exp(−(R k)²)`` falls to
    1/e at the resolution frequency ``k = 1/R``. Atoms are splatted trilinearly on a grid finer
    than ``voxel_size`` (≤ 2.5 Å), blurred in Fourier space and Fourier-cropped. The map is
    centred on the model's centre of mass. Checked against the shared ``maps_10A/1bxn.mrc``
    (made from ``pdb/1bxn.pdb`` by others): correlation 0.965 after centring both maps on their
    centres of mass, at 10 Å resolution and 10 Å voxels.

    Parameters
    ----------
    path : str or path-like
        ``.pdb`` or ``.cif`` file (read with gemmi).
    voxel_size : float
        Å per voxel.
    resolution : float, default 10
        Resolution in Å.
    box : int, optional
        Cube edge; default just large enough for the model plus the blur.

    Returns
    -------
    (box, box, box) ndarray of float32 (not normalised; :func:`load_density` normalises).

    Raises
    ------
    CryomlError
        If the file is missing, unreadable or has no atoms.
    """
    import gemmi

    path = Path(path)
    voxel_size = check_positive(voxel_size, name="voxel_size")
    resolution = check_positive(resolution, name="resolution")
    if not path.is_file():
        raise CryomlError(f"{path}: no such file. Check the path to the atomic model.")
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as error:
        raise CryomlError(f"{path}: cannot read the atomic model ({error}).") from None
    structure.remove_waters()
    structure.remove_hydrogens()
    if len(structure) == 0:
        raise CryomlError(f"{path}: the model holds no atoms.")
    positions, weights = [], []
    for chain in structure[0]:
        for residue in chain:
            for atom in residue:
                positions.append((atom.pos.z, atom.pos.y, atom.pos.x))
                weights.append(atom.element.atomic_number * atom.occ)
    if not positions:
        raise CryomlError(f"{path}: the model holds no atoms.")
    sigma = resolution / (np.pi * np.sqrt(2.0))
    oversample = max(1, int(np.ceil(voxel_size / 2.5)))
    return render_points(
        np.array(positions), np.array(weights), voxel_size=voxel_size, box=box, sigma=sigma,
        oversample=oversample,
    )
