"""Cellular tomogram phantoms with ground truth, imaged through the tilt-series pipeline.

The phantom is a slab of cytoplasm (Z = beam direction, thickness = ``shape[0]`` voxels):

* **cell boundary** — a single lipid bilayer crossing the volume (a gently curved sphere of
  radius ≈ 3 × the field of view), the outside being empty ice;
* **vesicles** — single bilayers, slightly ellipsoidal, radius 15–45 nm;
* **mitochondrion** — a double membrane: outer and inner bilayers 8 nm apart, denser matrix;
* **microtubules** — hollow tubes of 25 nm outer / 15 nm inner diameter following smooth random
  curves (radius of curvature ≥ 1 µm) across the whole field (µm long in large volumes);
* **ribosomes** and **other complexes** — real maps (shared ``4v4r`` and e.g. ``3j9i``,
  ``1bxn``, ``3cf3``, ``2cg9``, ``1qvr``) or, without shared data, the built-in
  ``ribosome_like`` and ring/barrel complexes, in random orientations without overlaps and
  wholly inside the slab (its z faces are the lamella's surfaces; a ribosome needs ~250 Å), at
  5,000 ribosomes and 5,000 other complexes per µm³ of cytoplasm by default. 5,000 /µm³
  (≈ 8 µM) is a cytosolic ribosome concentration between mammalian cells (≈ 2,000 /µm³:
  ~4 million ribosomes in ~2,000 µm³) and yeast (≈ 5,000–10,000 /µm³); E. coli reaches
  20,000–50,000 /µm³ and can be asked for;
* **gold fiducials** (10 nm beads, ~8× protein density, at the slab surfaces) and a **carbon
  film edge** (15 nm thick, ragged edge, textured) as distractors;
* faint small-protein texture in the cytoplasm.

Bilayers have two dense leaflets (Gaussian head-group profiles σ = 0.8 nm) 4 nm apart.

Labels (bool volumes): ``membrane`` = voxels within 3 nm of a bilayer's mid-plane (all
bilayers), ``double_membrane`` = the mitochondrion's bilayers, ``microtubule`` = the tube wall
(7.5–12.5 nm from the axis), ``ribosome`` / ``complex`` = voxels of each particle above half
the protein density, ``gold``, ``carbon``.

Visible truth (``CellTomogram.visible``): what an annotator or a 2-D network can see through the
missing wedge. A membrane or microtubule-wall voxel is *visible* when its surface normal makes an
angle of more than 90° − ``tilt_range`` with the beam axis Z (more than 30° for ±60° tilts):
a face nearly parallel to the slice plane has its Fourier energy along Z, inside the wedge, and
leaves no contrast in the slices. The normal is the gradient of the signed distance to the
bilayer's mid-plane (membranes) or the radial direction from the tube axis (microtubules).
Particles (``ribosome``, ``complex``) and ``gold`` are compact and count as visible throughout.
The rule treats the wedge as a cone about Z; the true single-axis wedge also hides some faces
tilted about the tilt axis, which this rule still counts as visible.

Then: a tilt series (shear projection, CTF × MTF, noise at ``snr`` measured against the
projections of the cell without gold and carbon) and weighted back-projection (see
:mod:`cryoml.simulate._tilt`).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from scipy import ndimage

from cryoml._errors import CryomlError
from cryoml._validation import check_positive, check_random_state
from cryoml.simulate._optics import CTFParams

__all__ = ["LABEL_ORDER", "CellTomogram", "simulate_cell_tomogram"]

log = logging.getLogger(__name__)

LABEL_ORDER = ("carbon", "membrane", "microtubule", "ribosome", "complex", "gold")
_NM = 10.0  # Å per nm
_PLACEMENT_TRIES = 200  # random spots tried per particle before giving it up
_LEAFLET_HALF_GAP = 2.0 * _NM
_LEAFLET_SIGMA = 0.8 * _NM
_MEMBRANE_HALF_WIDTH = 3.0 * _NM


@dataclasses.dataclass(eq=False)
class CellTomogram:
    """A simulated cellular tomogram and its ground truth.

    Attributes
    ----------
    tomogram : cryoml.io.Image
        The reconstruction (Z, Y, X), voxel size in Å. Dense matter is dark at low frequency
        (CTF without phase flip).
    labels : dict of str to (Z, Y, X) bool ndarray
        ``membrane``, ``double_membrane``, ``microtubule``, ``ribosome``, ``complex``, ``gold``,
        ``carbon`` (see module docstring).
    particles : cryoml.io.Particles
        Centres (Z, Y, X) of the ribosomes and complexes, ``classes`` and ``class_names``.
    rotations : (N, 3, 3) ndarray
        Orientation of each particle (acting on (Z, Y, X) vectors).
    clean : (Z, Y, X) ndarray of float32
        The noise-free phantom density (before imaging; protein ≈ 1).
    tilt_angles : ndarray
        Tilts of the simulated series, degrees.
    params : dict
        Every parameter of the simulation.
    visible : dict of str to (Z, Y, X) bool ndarray
        The part of each label an annotator can see through the missing wedge (see module
        docstring): ``membrane``, ``microtubule``, ``ribosome``, ``complex``, ``gold``.
    """

    tomogram: object
    labels: dict
    particles: object
    rotations: np.ndarray
    clean: np.ndarray
    tilt_angles: np.ndarray
    params: dict
    visible: dict = dataclasses.field(default_factory=dict)

    def others(self, feature: str) -> dict[str, np.ndarray]:
        """Every feature but ``feature``, name → mask: where a user boxes negatives for it
        (see :func:`cryoml.tomoseg.sample_boxes`).

        Double membranes count as membranes (they are a kind of membrane, not another
        feature): left out of the membrane's others, and inside ``membrane`` for the rest.
        Features absent from this tomogram are left out.

        Raises
        ------
        CryomlError
            If ``feature`` is not one of :attr:`labels`.
        """
        if feature not in self.labels:
            raise CryomlError(f"unknown feature {feature!r}; choose from {sorted(self.labels)}.")
        return {name: mask for name, mask in self.labels.items()
                if name not in (feature, "double_membrane") and mask.any()}

    def label_volume(self, order: tuple[str, ...] = LABEL_ORDER) -> tuple[np.ndarray, list[str]]:
        """One integer volume (0 = background, i = ``names[i - 1]``; later names win overlaps)."""
        out = np.zeros(self.clean.shape, np.uint8)
        names = [name for name in order if name in self.labels]
        for index, name in enumerate(names, start=1):
            out[self.labels[name]] = index
        return out, names


def _bilayer(distance: np.ndarray) -> np.ndarray:
    two_s2 = 2.0 * _LEAFLET_SIGMA**2
    return np.exp(-((distance - _LEAFLET_HALF_GAP) ** 2) / two_s2) + np.exp(
        -((distance + _LEAFLET_HALF_GAP) ** 2) / two_s2
    )


class _Phantom:
    """Accumulates density and labels; coordinates in Å, voxel centres at index * voxel."""

    def __init__(self, shape, voxel_size):
        self.shape = tuple(shape)
        self.voxel = voxel_size
        self.density = np.zeros(shape, np.float32)
        self.labels = {
            name: np.zeros(shape, bool)
            for name in ("membrane", "double_membrane", "microtubule", "ribosome", "complex",
                         "gold", "carbon")
        }
        self.visible = {name: np.zeros(shape, bool) for name in ("membrane", "microtubule")}
        # |normal_z| below this is visible through the wedge (set from the tilt range).
        self.visible_nz = np.float32(np.sin(np.radians(60.0)))
        # Where particles may go (cytoplasm, not yet occupied), at the full grid.
        self.free = np.ones(shape, bool)
        # Density of gold and carbon, kept apart so that the noise follows the cell's matter.
        self.foreign = None

    def add_foreign(self, sl, values):
        """Add gold or carbon density: to the phantom, and to the record of foreign matter."""
        if self.foreign is None:
            self.foreign = np.zeros(self.shape, np.float32)
        self.density[sl] += values
        self.foreign[sl] += values

    def region(self, centre_a: np.ndarray, radius_a: float):
        """Slices and open coordinate grids (Å) of the voxels within a cube around a point."""
        centre = np.asarray(centre_a) / self.voxel
        r = radius_a / self.voxel + 1
        slices, grids = [], []
        for axis, n in enumerate(self.shape):
            lo = int(max(0, np.floor(centre[axis] - r)))
            hi = int(min(n, np.ceil(centre[axis] + r) + 1))
            if hi <= lo:
                return None, None
            slices.append(slice(lo, hi))
            grids.append(np.arange(lo, hi, dtype=np.float32) * self.voxel)
        mesh = np.meshgrid(*grids, indexing="ij", sparse=True)
        return tuple(slices), mesh

    def ellipsoid_distance(self, centre, axes, rotation, mesh):
        """Approximate signed distance (Å) to an ellipsoid surface (exact for spheres)."""
        rel = [mesh[i] - np.float32(centre[i]) for i in range(3)]
        local = [sum(np.float32(rotation[j, i]) * rel[j] for j in range(3)) for i in range(3)]
        norm = np.sqrt(local[0] ** 2 + local[1] ** 2 + local[2] ** 2)
        rho = np.sqrt(sum((local[i] / np.float32(axes[i])) ** 2 for i in range(3)))
        rho = np.maximum(rho, 1e-6)
        return norm * (1.0 - 1.0 / rho)


def _random_rotation(rng):
    from scipy.spatial.transform import Rotation

    flip = np.eye(3)[::-1]
    return flip @ Rotation.random(random_state=rng).as_matrix() @ flip


def simulate_cell_tomogram(
    shape: tuple[int, int, int] = (64, 256, 256),
    *,
    voxel_size: float = 10.0,
    snr: float | None = 0.1,
    tilt_range: float = 60.0,
    tilt_step: float = 2.0,
    random_state: int | np.random.Generator | None = None,
    ribosome: str | None = None,
    complexes: list[str] | None = None,
    ribosome_density: float = 5000.0,
    complex_density: float = 5000.0,
    n_vesicles: int | None = None,
    n_microtubules: int | None = None,
    mitochondrion: bool = True,
    cell_boundary: bool = True,
    gold_per_um2: float = 60.0,
    carbon_edge: bool = True,
    ctf_params: CTFParams | None = None,
    use_ctf: bool = True,
    use_mtf: bool = True,
    progress: bool = False,
) -> CellTomogram:
    """Simulate a cellular tomogram with membranes, microtubules, complexes and distractors.

    Parameters
    ----------
    shape : (int, int, int), default (64, 256, 256)
        Volume (Z, Y, X) in voxels; Z is the slab thickness (beam direction). Particles lie
        wholly inside the slab (one thinner than a particle takes it centred in Z, cut by both
        faces); a ribosome is ~250 Å across, so ribosomes come in numbers only from ~800 Å
        (80 slices at 10 Å) up.
    voxel_size : float, default 10
        Å per voxel.
    snr : float or None, default 0.1
        Per-projection SNR (``var(signal) / var(noise)``), the signal being the projection of
        the cell without its gold beads and carbon (the noise does not grow with the number
        of fiducials in the field); None: noise-free.
    tilt_range, tilt_step : float
        Tilts ±``tilt_range`` every ``tilt_step`` degrees.
    random_state : None, int or Generator
        Seed.
    ribosome : str, optional
        Ribosome density (default ``"4v4r"`` when the shared maps exist, else
        ``"ribosome_like"``).
    complexes : list of str, optional
        Other complexes (default: 20S proteasome, RuBisCO, p97, Hsp90, ClpB maps, or built-in
        rings/barrels without shared data).
    ribosome_density, complex_density : float, default 5000
        Particles per µm³ of cytoplasm (see module docstring for why).
    n_vesicles, n_microtubules : int, optional
        Defaults scale with the field of view (≈ 15 vesicles and 6 microtubules per µm²).
    mitochondrion, cell_boundary, carbon_edge : bool, default True
        Include these features.
    gold_per_um2 : float, default 60
        Gold beads per µm² of field of view.
    ctf_params : CTFParams, optional
        Microscope settings (default 300 kV, 2 mm, 5 µm underfocus).
    use_ctf, use_mtf : bool, default True
        Apply CTF / MTF.
    progress : bool, default False
        Log progress at INFO level per stage.

    Returns
    -------
    CellTomogram

    Raises
    ------
    CryomlError
        For a bad shape or parameters.
    """
    from cryoml.io import Image, Particles
    from cryoml.simulate._density import available_maps, load_density
    from cryoml.simulate._tilt import reconstruct_wbp, simulate_tilt_series, tilt_angles

    if len(shape) != 3 or any(int(n) != n or n < 16 for n in shape):
        raise CryomlError(f"'shape' must be three whole numbers >= 16 (Z, Y, X); got {shape!r}.")
    shape = tuple(int(n) for n in shape)
    voxel_size = check_positive(voxel_size, name="voxel_size")
    if snr is not None:
        check_positive(snr, name="snr")
    check_positive(ribosome_density, name="ribosome_density", allow_zero=True)
    check_positive(complex_density, name="complex_density", allow_zero=True)
    check_positive(gold_per_um2, name="gold_per_um2", allow_zero=True)
    angles = tilt_angles(tilt_range, tilt_step)
    rng = check_random_state(random_state)
    maps = set(available_maps())
    if ribosome is None:
        ribosome = "4v4r" if "4v4r" in maps else "ribosome_like"
    if complexes is None:
        real = ["3j9i", "1bxn", "3cf3", "2cg9", "1qvr"]
        complexes = real if all(c in maps for c in real) else [
            "proteasome_like", "barrel_d7", "hexamer_two_tier", "cage_octahedral", "dumbbell"]

    def stage(text):
        if progress:
            log.info("cell phantom: %s", text)

    phantom = _Phantom(shape, voxel_size)
    phantom.visible_nz = np.float32(np.sin(np.radians(min(float(tilt_range), 90.0))))
    size_a = np.array(shape, float) * voxel_size
    area_um2 = size_a[1] * size_a[2] / 1e8
    stage("carbon and cell boundary")
    if carbon_edge:
        _add_carbon(phantom, rng)
    if cell_boundary:
        _add_cell_boundary(phantom, rng)
    stage("mitochondrion and vesicles")
    spheres: list[tuple[np.ndarray, float]] = []
    if mitochondrion:
        _add_mitochondrion(phantom, rng, spheres)
    n_vesicles = max(2, round(15 * area_um2)) if n_vesicles is None else int(n_vesicles)
    for _ in range(n_vesicles):
        _add_vesicle(phantom, rng, spheres)
    stage("microtubules")
    n_microtubules = max(1, round(6 * area_um2)) if n_microtubules is None else int(n_microtubules)
    for _ in range(n_microtubules):
        _add_microtubule(phantom, rng)
    stage("complexes")
    cytoplasm_um3 = float(phantom.free.mean()) * float(np.prod(size_a)) / 1e12
    templates = {}
    for name in [ribosome, *complexes]:
        density = load_density(name, voxel_size=voxel_size)
        templates[name] = density
    placed = _place_complexes(
        phantom, rng, templates, ribosome, complexes,
        n_ribosomes=int(rng.poisson(ribosome_density * cytoplasm_um3)),
        n_complexes=int(rng.poisson(complex_density * cytoplasm_um3)),
    )
    stage("gold")
    _add_gold(phantom, rng, int(rng.poisson(gold_per_um2 * area_um2)))
    _add_texture(phantom, rng)
    stage("tilt series and reconstruction")
    params_ctf = (ctf_params or CTFParams()) if use_ctf else None
    # The SNR refers to the cell's own matter: with gold and carbon counted, each dense bead
    # raised the noise of the whole tomogram (measured: ribosome contrast after normalisation
    # -0.29 with 2,521 gold voxels against -0.36 with 528, and -0.35 to -0.38 without gold).
    reference = None if phantom.foreign is None else phantom.density - phantom.foreign
    series = simulate_tilt_series(
        phantom.density, angles=angles, voxel_size=voxel_size, ctf_params=params_ctf,
        use_mtf=use_mtf, snr=snr, random_state=rng, snr_reference=reference,
    )
    del reference
    noise_sd = float(np.mean(series.noise_sd))
    recon = reconstruct_wbp(series.projections, angles, thickness=shape[0])
    del series
    class_names = {0: str(ribosome)}
    for index, name in enumerate(complexes, start=1):
        class_names[index] = str(name)
    centres, classes, rotations = placed
    max_template = max(t.shape[0] for t in templates.values())
    particles = Particles(
        np.asarray(centres, float).reshape(-1, 3), box_size=int(max_template),
        classes=np.asarray(classes, int), class_names=class_names,
    )
    params = {
        "shape": list(shape), "voxel_size": float(voxel_size),
        "snr": None if snr is None else float(snr), "tilt_range": float(tilt_range),
        "tilt_step": float(tilt_step), "ribosome": str(ribosome),
        "complexes": [str(c) for c in complexes], "ribosome_density_per_um3": ribosome_density,
        "complex_density_per_um3": complex_density, "cytoplasm_um3": cytoplasm_um3,
        "n_vesicles": n_vesicles, "n_microtubules": n_microtubules,
        "ctf": None if params_ctf is None else params_ctf.to_dict(), "mtf": bool(use_mtf),
        "reconstruction": "weighted back-projection",
        "snr_reference": "the cell without gold and carbon",
        "noise_sd": noise_sd,
    }
    return CellTomogram(
        tomogram=Image(recon, voxel_size=float(voxel_size)),
        labels=phantom.labels,
        particles=particles,
        rotations=np.asarray(rotations, float).reshape(-1, 3, 3),
        clean=phantom.density,
        tilt_angles=angles,
        params=params,
        visible={
            **phantom.visible,
            **{name: phantom.labels[name] for name in ("ribosome", "complex", "gold")},
        },
    )


def _add_membrane(phantom, sl, distance, *, double=False):
    phantom.density[sl] += _bilayer(distance).astype(np.float32)
    mask = np.abs(distance) <= _MEMBRANE_HALF_WIDTH
    phantom.labels["membrane"][sl] |= mask
    if np.any(mask):
        full = np.broadcast_to(distance, mask.shape).astype(np.float32)
        gradient = np.gradient(full) if min(full.shape) > 1 else None
        if gradient is not None:
            length = np.sqrt(sum(g * g for g in gradient)) + np.float32(1e-12)
            phantom.visible["membrane"][sl] |= mask & (np.abs(gradient[0]) / length
                                                       < phantom.visible_nz)
    if double:
        phantom.labels["double_membrane"][sl] |= mask
    return mask


def _add_carbon(phantom, rng):
    nz, ny, nx = phantom.shape
    thickness = min(15 * _NM / phantom.voxel, nz * 0.5)
    z0 = rng.uniform(thickness / 2, nz - thickness / 2)
    x = np.arange(nx)
    edge = ny * rng.uniform(0.08, 0.16) + ny * 0.02 * np.sin(
        2 * np.pi * x / nx * rng.uniform(1, 3) + rng.uniform(0, 6.3)
    ) + ndimage.gaussian_filter1d(rng.standard_normal(nx), 3) * 1.5
    zz = np.arange(nz)[:, None, None]
    yy = np.arange(ny)[None, :, None]
    mask = (np.abs(zz - z0) <= thickness / 2) & (yy < edge[None, None, :])
    texture = ndimage.gaussian_filter(rng.standard_normal((nz, ny, nx // 4 + 1)), 1.0)
    texture = ndimage.zoom(texture, (1, 1, nx / texture.shape[2]), order=1)[:, :, :nx]
    phantom.add_foreign(np.s_[:], np.where(mask, 0.6 + 0.6 * texture, 0).astype(np.float32))
    phantom.labels["carbon"] |= mask
    phantom.free &= ~(yy < edge[None, None, :] + 3 * _NM / phantom.voxel)


def _add_cell_boundary(phantom, rng):
    nz, ny, nx = phantom.shape
    voxel = phantom.voxel
    radius = 3.0 * max(ny, nx) * voxel
    # Surface crosses X at ~85-92 % of the field; the cell interior is at smaller X.
    crossing = rng.uniform(0.85, 0.92) * nx * voxel
    centre = np.array([nz * voxel / 2, ny * voxel * rng.uniform(0.3, 0.7), crossing - radius])
    for z0 in range(0, nz, 32):
        sl = (slice(z0, min(nz, z0 + 32)), slice(None), slice(None))
        zz = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None, None] * voxel
        yy = np.arange(ny, dtype=np.float32)[None, :, None] * voxel
        xx = np.arange(nx, dtype=np.float32)[None, None, :] * voxel
        distance = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
        distance = distance - np.float32(radius)
        _add_membrane(phantom, sl, distance)
        phantom.free[sl] &= distance < -(_MEMBRANE_HALF_WIDTH + 2 * _NM)


def _fits(centre, radius, spheres):
    return all(np.linalg.norm(centre - c) > radius + r + 5 * _NM for c, r in spheres)


def _add_mitochondrion(phantom, rng, spheres):
    nz, ny, nx = phantom.shape
    voxel = phantom.voxel
    axes = np.array([min(nz * voxel * 0.45, 120 * _NM), min(ny * voxel * 0.16, 250 * _NM),
                     min(nx * voxel * 0.28, 500 * _NM)])
    for _ in range(50):
        centre = np.array([nz * voxel / 2, rng.uniform(0.3, 0.7) * ny * voxel,
                           rng.uniform(0.3, 0.55) * nx * voxel])
        sl, mesh = phantom.region(centre, axes.max() + 5 * _NM)
        if sl is not None and phantom.free[tuple(int(c / voxel) for c in centre)]:
            break
    else:
        return
    angle = rng.uniform(-0.4, 0.4)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    distance = phantom.ellipsoid_distance(centre, axes, rotation, mesh)
    gap = 8.0 * _NM
    _add_membrane(phantom, sl, distance, double=True)
    _add_membrane(phantom, sl, distance + gap, double=True)
    matrix = distance < -(gap + _MEMBRANE_HALF_WIDTH)
    phantom.density[sl] += np.where(matrix, 0.12, 0).astype(np.float32)
    phantom.free[sl] &= distance > _MEMBRANE_HALF_WIDTH + 2 * _NM
    spheres.append((centre, float(axes.max())))


def _add_vesicle(phantom, rng, spheres):
    nz, ny, nx = phantom.shape
    voxel = phantom.voxel
    for _ in range(30):
        radius = rng.uniform(15, 45) * _NM
        radius = min(radius, nz * voxel * 0.45)
        high = [nz * voxel - radius * 0.6, ny * voxel, nx * voxel]
        centre = rng.uniform([radius * 0.6, 0, 0], high)
        index = tuple(
            min(int(c / voxel), n - 1) for c, n in zip(centre, phantom.shape, strict=True)
        )
        if phantom.free[index] and _fits(centre, radius, spheres):
            break
    else:
        return
    axes = radius * rng.uniform(0.85, 1.15, size=3)
    sl, mesh = phantom.region(centre, axes.max() + 5 * _NM)
    distance = phantom.ellipsoid_distance(centre, axes, _random_rotation(rng), mesh)
    _add_membrane(phantom, sl, distance)
    phantom.density[sl] += np.where(distance < -_MEMBRANE_HALF_WIDTH, 0.05, 0).astype(np.float32)
    phantom.free[sl] &= distance > _MEMBRANE_HALF_WIDTH + 2 * _NM
    spheres.append((centre, float(axes.max())))


def _add_microtubule(phantom, rng):
    from scipy.spatial import cKDTree

    voxel = phantom.voxel
    size = np.array(phantom.shape, float) * voxel
    outer, inner = 12.5 * _NM, 7.5 * _NM
    step = min(voxel, 1.0 * _NM)
    # Start on a random side of the field, head inwards; heading drifts with curvature ≥ 1 µm.
    # The tube stops where it would leave the cytoplasm (cell boundary, organelles, carbon).
    def blocked(where):
        index = np.clip((where / voxel).astype(int), 0, np.array(phantom.shape) - 1)
        return not phantom.free[tuple(index)]

    def trace():
        for _ in range(20):
            point = np.array([rng.uniform(0.3, 0.7) * size[0], *rng.uniform(0, 1, 2) * size[1:]])
            side = rng.integers(4)
            if side == 0:
                point[2], heading = 0.0, rng.uniform(-0.7, 0.7)
            elif side == 1:
                point[2], heading = size[2], np.pi + rng.uniform(-0.7, 0.7)
            elif side == 2:
                point[1], heading = 0.0, np.pi / 2 + rng.uniform(-0.7, 0.7)
            else:
                point[1], heading = size[1], -np.pi / 2 + rng.uniform(-0.7, 0.7)
            if not blocked(point):
                break
        else:
            return []
        curvature = rng.uniform(-1, 1) / (rng.uniform(1.0, 4.0) * 1e4)  # 1/Å, radius 1-4 µm
        dz = rng.uniform(-0.05, 0.05)
        points = []
        margin = outer + 2 * voxel
        for _ in range(int(4 * size.sum() / step)):
            points.append(point.copy())
            heading += curvature * step + rng.normal(0, 2e-4 * np.sqrt(step))
            point = point + step * np.array([dz, np.sin(heading), np.cos(heading)])
            point[0] = np.clip(point[0], outer * 0.5, size[0] - outer * 0.5)
            if np.any(point[1:] < -margin) or np.any(point[1:] > size[1:] + margin):
                break
            inside = np.all(point[1:] >= 0) and np.all(point[1:] < size[1:])
            if inside and blocked(point):
                break
        return points

    # The longest of a few tries, so crowded fields still get a tube.
    points = max((trace() for _ in range(6)), key=len)
    if len(points) < 2:
        return
    points = np.array(points)
    tree = cKDTree(points)
    for start in range(0, len(points), 48):
        chunk = points[start : start + 49]
        centre = (chunk.min(axis=0) + chunk.max(axis=0)) / 2
        half = (chunk.max(axis=0) - chunk.min(axis=0)).max() / 2 + outer + voxel
        sl, mesh = phantom.region(centre, half)
        if sl is None:
            continue
        grid = np.stack(np.broadcast_arrays(*mesh), axis=-1).reshape(-1, 3)
        distance, nearest = tree.query(grid, distance_upper_bound=outer + 2 * voxel)
        distance[(nearest == 0) | (nearest == len(points) - 1)] = np.inf  # open ends, no caps
        found = nearest < len(points)
        normal_z = np.ones(len(grid), np.float32)
        normal_z[found] = np.abs(grid[found, 0] - points[nearest[found], 0]) / np.maximum(
            distance[found], 1e-6)
        region_shape = tuple(s.stop - s.start for s in sl)
        distance = distance.reshape(region_shape).astype(np.float32)
        wall = (distance >= inner) & (distance <= outer)
        phantom.visible["microtubule"][sl] |= wall & (
            normal_z.reshape(region_shape) < phantom.visible_nz)
        edge = np.float32(0.6 * _NM)
        profile = 1.0 / (1.0 + np.exp(-(distance - inner) / edge)) / (
            1.0 + np.exp((distance - outer) / edge))
        profile = np.where(np.isfinite(distance), profile, 0).astype(np.float32)
        phantom.density[sl] = np.maximum(phantom.density[sl], profile * 0.9)
        phantom.labels["microtubule"][sl] |= wall
        phantom.free[sl] &= ~(distance <= outer + 3 * _NM)


def _place_complexes(phantom, rng, templates, ribosome, complexes, *, n_ribosomes, n_complexes):
    voxel = phantom.voxel
    names = [ribosome] * n_ribosomes + [
        complexes[i] for i in rng.integers(len(complexes), size=n_complexes)
    ]
    rng.shuffle(names)
    class_of = {ribosome: 0, **{name: i + 1 for i, name in enumerate(complexes)}}
    radii = {}
    for name, template in templates.items():
        mask = template > 0.1
        coords = np.argwhere(mask) - template.shape[0] // 2
        radii[name] = float(np.sqrt((coords**2).sum(axis=1)).max() + 1) if len(coords) else 2.0
    # Candidates are drawn only where the tested ball lies inside the slab: its z faces are the
    # lamella's surfaces, which no particle crosses. Testing only the part of a ball inside the
    # volume (as before) accepted half-particles at the faces far more often than whole ones
    # in the crowded interior, so the faces collected most ribosomes.
    slice_size = phantom.shape[1] * phantom.shape[2]
    free_idx = {}
    for name, radius in radii.items():
        band = _slab_band(phantom.shape[0], radius * 0.8)
        free_idx[name] = np.flatnonzero(phantom.free[band].ravel()) + band.start * slice_size
    centres, classes, rotations, radius_list = [], [], [], []
    for name in names:
        template = templates[name]
        radius = radii[name]
        candidates = free_idx[name]
        for _ in range(_PLACEMENT_TRIES):
            if len(candidates) == 0:
                break
            index = np.unravel_index(candidates[rng.integers(len(candidates))], phantom.shape)
            centre = np.array(index, float) + rng.uniform(-0.5, 0.5, 3)
            if centres:
                gaps = np.linalg.norm(np.asarray(centres) - centre, axis=1)
                gaps = gaps - np.asarray(radius_list)
                if np.any(gaps < radius + 1):
                    continue
            if not _region_free(phantom.free, centre, radius * 0.8):
                continue
            rotation = _random_rotation(rng)
            _paste(phantom, template, centre, rotation, name == ribosome)
            centres.append(centre)
            classes.append(class_of[name])
            rotations.append(rotation)
            radius_list.append(radius)
            break
    log.debug("placed %d of %d complexes", len(centres), len(names))
    del voxel
    return centres, classes, rotations


def _slab_band(nz, radius):
    """Z indices whose ball of ``radius`` (voxels) lies inside a slab of ``nz`` slices.

    A slab thinner than the ball keeps its middle slice, so thin test volumes still get particles.
    """
    margin = int(np.ceil(min(radius, (nz - 1) / 2)))
    return slice(margin, max(nz - margin, margin + 1))


def _region_free(free, centre, radius):
    lo = np.maximum(np.floor(centre - radius).astype(int), 0)
    hi = np.minimum(np.ceil(centre + radius).astype(int) + 1, free.shape)
    if np.any(hi <= lo):
        return False
    block = free[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2
    return bool(np.all(block[inside]))


def _paste(phantom, template, centre, rotation, is_ribosome):
    n = template.shape[0]
    middle = np.full(3, n // 2, float)
    start = np.floor(centre).astype(int) - n // 2
    frac = centre - np.floor(centre)
    # out(o) = template(R^T (o - middle - frac) + middle)
    matrix = rotation.T
    offset = middle - matrix @ (middle + frac)
    rotated = ndimage.affine_transform(template, matrix, offset=offset, order=1, cval=0.0)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + n, phantom.shape)
    src = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
    dst = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    piece = rotated[src]
    phantom.density[dst] += piece
    mask = piece > 0.5
    phantom.labels["ribosome" if is_ribosome else "complex"][dst] |= mask
    phantom.free[dst] &= ~(piece > 0.05)


def _add_gold(phantom, rng, count):
    voxel = phantom.voxel
    radius = 5.0 * _NM
    nz = phantom.shape[0]
    for _ in range(count):
        top = rng.random() < 0.5
        depth = radius + rng.uniform(0, 3 * _NM)
        z = depth if top else nz * voxel - depth
        centre = np.array([z, *(rng.uniform(0, 1, 2) * np.array(phantom.shape[1:]) * voxel)])
        sl, mesh = phantom.region(centre, radius + 2 * voxel)
        if sl is None:
            continue
        distance = np.sqrt(sum((mesh[i] - np.float32(centre[i])) ** 2 for i in range(3)))
        profile = 1.0 / (1.0 + np.exp((distance - radius) / np.float32(0.5 * _NM)))
        phantom.add_foreign(sl, (8.0 * profile).astype(np.float32))
        phantom.labels["gold"][sl] |= distance <= radius


def _add_texture(phantom, rng):
    coarse_shape = tuple(max(4, n // 2) for n in phantom.shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), 1.0)
    field = ndimage.zoom(field, [n / c for n, c in zip(phantom.shape, coarse_shape, strict=True)],
                         order=1)
    field = field[tuple(slice(0, n) for n in phantom.shape)]
    field *= np.float32(0.06 / max(float(field.std()), 1e-6))
    cytoplasm = phantom.free | phantom.labels["ribosome"] | phantom.labels["complex"]
    phantom.density += np.where(cytoplasm, field + np.float32(0.05), 0).astype(np.float32)
