"""Single-particle micrographs for picking, with complete ground truth.

Each micrograph (Y, X) is composed as

``image = CTF·MTF ⊗ (particles + carbon + contamination) + ice background + noise``

* **particles** — projections (projection-slice theorem on the 2× oversampled transform, then
  Fourier resampling to the pixel size) of one density in random orientations: ``"uniform"``
  over SO(3), or ``"top_side"`` (for the KLH-like cylinder: a fraction ``top_fraction`` of top
  views — axis along the beam ± 10° — and side views — axis in the grid plane), placed at
  sub-pixel positions (Fourier shift);
* **overlapping pairs** (centres 0.45–0.8 diameters apart) and **small aggregates** (3–6
  touching particles) — flagged ``overlapped`` / ``aggregated``;
* a **carbon film** region beyond a curved hole edge (textured, 10 nm thick) and **ice
  contamination** blobs (irregular, very dense) — particles on them are flagged ``on_carbon`` /
  ``on_contamination``;
* an **ice-thickness gradient** (thicker ice: darker, amplitude contrast, not CTF-modulated);
* white Gaussian noise at ``snr``, defined as the variance of the noise-free, CTF-filtered
  particle image *inside the boxes of the good particles* over the noise variance (so the SNR
  describes particles, not the fraction of empty area). DeepEM's simulations go to 0.001.

Dense matter is dark (signed CTF). Ground truth: the centres (Y, X) of the good particles (no
flag) in :attr:`Micrograph.particles`, and every particle with its flags in
:attr:`Micrograph.all_particles` / :attr:`Micrograph.flags` — a good picker skips the flagged
ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from cryoml._errors import CryomlError
from cryoml._validation import check_positive, check_random_state
from cryoml.simulate._optics import CTFParams, ctf, mtf

__all__ = ["Micrograph", "simulate_micrographs"]

FLAGS = ("overlapped", "aggregated", "on_carbon", "on_contamination")


@dataclasses.dataclass(eq=False)
class Micrograph:
    """A simulated micrograph and its ground truth.

    Attributes
    ----------
    image : cryoml.io.Image
        The micrograph (Y, X), float32, pixel size in Å.
    particles : cryoml.io.Particles
        Centres (Y, X) of the good particles (no flag), with ``box_size``.
    all_particles : cryoml.io.Particles
        Every particle in the image.
    flags : dict of str to (N,) bool ndarray
        Per particle of ``all_particles``: ``overlapped``, ``aggregated``, ``on_carbon``,
        ``on_contamination``.
    box_size : int
        Picking box edge in pixels (1.2 × the particle's diameter).
    clean : (Y, X) ndarray of float32
        The noise-free image (without ice background).
    masks : dict of str to (Y, X) bool ndarray
        ``carbon`` and ``contamination`` regions.
    params : dict
        Parameters of the simulation (including the per-micrograph defocus and noise s.d.).
    """

    image: object
    particles: object
    all_particles: object
    flags: dict
    box_size: int
    clean: np.ndarray
    masks: dict
    params: dict

    @property
    def good(self) -> np.ndarray:
        """Boolean mask over ``all_particles``: True for particles without any flag."""
        bad = np.zeros(len(self.all_particles), bool)
        for values in self.flags.values():
            bad |= values
        return ~bad


def _view_rotation(rng, views: str, top_fraction: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    flip = np.eye(3)[::-1]
    if views == "uniform":
        return flip @ Rotation.random(random_state=rng).as_matrix() @ flip
    # Rotations in (x, y, z); the complex's symmetry axis is z (array axis 0), the beam too.
    spin = Rotation.from_euler("z", rng.uniform(0, 360), degrees=True)
    in_plane = Rotation.from_euler("z", rng.uniform(0, 360), degrees=True)
    if rng.random() < top_fraction:
        tilt = Rotation.from_euler("x", rng.normal(0, 6), degrees=True)
    else:
        tilt = Rotation.from_euler("x", 90 + rng.normal(0, 6), degrees=True)
    return flip @ (in_plane * tilt * spin).as_matrix() @ flip


class _Projector:
    """Projections of one density at the micrograph's pixel size."""

    def __init__(self, name, pixel_size):
        from cryoml.simulate._density import available_maps, load_density
        from cryoml.simulate._procedural import builtin_complexes
        from cryoml.simulate._tilt import FourierSlicer, _SliceGeometry

        if name in builtin_complexes():
            working = max(pixel_size, 5.0)
        elif name in available_maps():
            working = max(pixel_size, 10.0)
        else:
            working = max(pixel_size, 5.0)
        density = load_density(name, voxel_size=working)
        if density.shape[0] % 2:
            density = np.pad(density, ((0, 1),) * 3)
        self.working = working
        self.pixel = pixel_size
        self.slicer = FourierSlicer(density)
        self.geometry = _SliceGeometry.build(density.shape[0], np.zeros(1))
        support = np.argwhere(density > 0.1) - density.shape[0] // 2
        self.radius = float(np.sqrt((support**2).sum(axis=1)).max() + 1) * working  # Å
        n = density.shape[0]
        self.out_n = int(np.ceil(n * working / pixel_size / 2) * 2)
        from cryoml.simulate._density import _interp_matrix

        self.matrix = _interp_matrix(n, working, self.out_n, pixel_size).astype(np.float32)
        self.scale = np.float32(working / pixel_size)  # keep the projected mass per Å²

    def project(self, rotation, frac_shift):
        from cryoml.simulate._tilt import _project_item, _slices_to_images

        n = self.geometry.box
        shift = np.array([0.0, *np.asarray(frac_shift) * self.pixel / self.working])
        transfer = np.ones((n, n // 2 + 1), np.float32)
        slices = _project_item(self.slicer, self.geometry, rotation, shift, transfer)
        image = _slices_to_images(slices, n)[0] * self.working
        return (self.matrix @ image @ self.matrix.T) / self.scale


def _place(rng, shape, count, radius_px, occupied):
    """Rejection-sample ``count`` centres (Y, X) at least 2.1 radii from all others."""
    centres = []
    margin = radius_px
    for _ in range(count * 30):
        if len(centres) >= count:
            break
        c = rng.uniform([margin, margin], [shape[0] - margin, shape[1] - margin])
        existing = occupied + centres
        if existing and np.min(np.linalg.norm(np.asarray(existing) - c, axis=1)) < 2.1 * radius_px:
            continue
        centres.append(c)
    return centres


def _blob_field(rng, shape, count, radius_range, pixel):
    """Irregular dense blobs (sum of a few Gaussians each); returns (field, mask)."""
    field = np.zeros(shape, np.float32)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    for _ in range(count):
        centre = rng.uniform([0, 0], shape)
        radius = rng.uniform(*radius_range) / pixel
        for _ in range(rng.integers(2, 5)):
            offset = centre + rng.normal(0, radius * 0.4, 2)
            r = radius * rng.uniform(0.5, 1.0)
            lo = np.maximum((offset - 3 * r).astype(int), 0)
            hi = np.minimum((offset + 3 * r).astype(int) + 1, shape)
            if np.any(hi <= lo):
                continue
            sub = (yy[lo[0] : hi[0]] - offset[0]) ** 2 + (xx[:, lo[1] : hi[1]] - offset[1]) ** 2
            field[lo[0] : hi[0], lo[1] : hi[1]] += np.exp(-sub / (2 * r * r)).astype(np.float32)
    mask = field > 0.3
    return field, mask


def simulate_micrographs(
    n: int,
    *,
    shape: tuple[int, int] = (2048, 2048),
    pixel_size: float = 3.0,
    particle: str = "klh",
    snr: float = 0.01,
    random_state: int | np.random.Generator | None = None,
    n_particles: int | None = None,
    views: str | None = None,
    top_fraction: float = 0.3,
    overlap_fraction: float = 0.1,
    aggregate_fraction: float = 0.1,
    n_contaminations: int | None = None,
    carbon: bool = True,
    ice_gradient: float = 0.5,
    defocus_range: tuple[float, float] = (1.5, 3.0),
    ctf_params: CTFParams | None = None,
    use_mtf: bool = True,
) -> list[Micrograph]:
    """Simulate ``n`` micrographs of one particle type with complete ground truth.

    Parameters
    ----------
    n : int
        Number of micrographs.
    shape : (int, int), default (2048, 2048)
        Image shape (Y, X).
    pixel_size : float, default 3
        Å per pixel (2–4 is typical for picking).
    particle : str, default "klh"
        Density name (built-in ``"klh"``, shared ``"4v4r"`` 70S ribosome, any built-in or path).
    snr : float, default 0.01
        ``var(particle signal in the good boxes) / var(noise)`` (see module docstring).
    random_state : None, int or Generator
        Seed.
    n_particles : int, optional
        Particles per micrograph; default fills ~12 % of the area.
    views : {"uniform", "top_side"}, optional
        Orientation distribution; default ``"top_side"`` for ``"klh"``, else ``"uniform"``.
    top_fraction : float, default 0.3
        Fraction of top views with ``"top_side"``.
    overlap_fraction, aggregate_fraction : float, default 0.1
        Fractions of particles placed in overlapping pairs / small aggregates.
    n_contaminations : int, optional
        Ice-contamination blobs (default: 0–3 per 2048² micrograph).
    carbon : bool, default True
        Put a carbon-film region at one edge of about half of the micrographs.
    ice_gradient : float, default 0.5
        Peak-to-peak ice background across the field in units of the noise s.d.
    defocus_range : (float, float), default (1.5, 3.0)
        Underfocus in µm, drawn uniformly per micrograph.
    ctf_params : CTFParams, optional
        Other microscope settings (its defocus is replaced by the drawn one).
    use_mtf : bool, default True
        Apply the detector MTF.

    Returns
    -------
    list of Micrograph

    Raises
    ------
    CryomlError
        For bad arguments or unknown particles.
    """
    if int(n) != n or n < 1:
        raise CryomlError(f"'n' must be a whole number of micrographs >= 1; got {n!r}.")
    if len(shape) != 2 or any(int(s) != s or s < 64 for s in shape):
        raise CryomlError(f"'shape' must be two whole numbers >= 64 (Y, X); got {shape!r}.")
    pixel_size = check_positive(pixel_size, name="pixel_size")
    snr = check_positive(snr, name="snr")
    if views not in (None, "uniform", "top_side"):
        raise CryomlError(f"'views' must be 'uniform' or 'top_side'; got {views!r}.")
    for name, value in (("top_fraction", top_fraction), ("overlap_fraction", overlap_fraction),
                        ("aggregate_fraction", aggregate_fraction)):
        if not 0 <= value <= 1:
            raise CryomlError(f"'{name}' must be between 0 and 1; got {value!r}.")
    rng = check_random_state(random_state)
    views = views or ("top_side" if particle == "klh" else "uniform")
    shape = (int(shape[0]), int(shape[1]))
    projector = _Projector(str(particle), pixel_size)
    # Centres are drawn at least 1.6 radii from the edges.
    smallest = int(np.ceil(2 * 1.6 * projector.radius / pixel_size)) + 1
    if min(shape) < smallest:
        raise CryomlError(
            f"'shape' {shape} (--shape) is too small for the particle {particle!r}, "
            f"{2 * projector.radius / pixel_size:.0f} px across at {pixel_size} Å/px: give at "
            f"least {smallest} px per side, a larger pixel size or a smaller particle."
        )
    base = ctf_params or CTFParams(defocus=2.0)
    return [
        _one_micrograph(rng, projector, shape, pixel_size, snr, base, views, top_fraction,
                        overlap_fraction, aggregate_fraction, n_particles, n_contaminations,
                        carbon, ice_gradient, defocus_range, use_mtf, str(particle))
        for _ in range(int(n))
    ]


def _random_round(rng: np.random.Generator, value: float) -> int:
    """floor(value), plus one with probability value − floor(value): right on average."""
    whole = int(np.floor(value))
    return whole + int(value > whole and rng.random() < value - whole)


def _one_micrograph(rng, projector, shape, pixel, snr, base_ctf, views, top_fraction,
                    overlap_fraction, aggregate_fraction, n_particles, n_contaminations, carbon,
                    ice_gradient, defocus_range, use_mtf, particle_name):
    from cryoml.io import Image, Particles

    radius_px = projector.radius / pixel
    area = shape[0] * shape[1]
    if n_particles is None:
        n_particles = max(4, int(0.12 * area / (np.pi * radius_px**2)))
    # Rounded at random (not to the nearest) so that the fractions hold on average even when
    # a micrograph has room for only a few large particles (KLH: 8 or so, i.e. 0.4 pairs).
    n_pairs = _random_round(rng, n_particles * overlap_fraction / 2)
    n_aggregates = _random_round(rng, n_particles * aggregate_fraction / 4.5)
    n_single = max(0, n_particles - 2 * n_pairs - int(4.5 * n_aggregates))
    seeds = _place(rng, shape, n_single + n_pairs + n_aggregates, radius_px * 1.6, [])
    # Kinds in random order: when the field is too crowded for every seed, singles, pairs and
    # aggregates are all cut in proportion (not the pairs and aggregates, placed last, first).
    kinds = rng.permutation(np.repeat([0, 1, 2], [n_single, n_pairs, n_aggregates]))
    centres, overlapped, aggregated = [], [], []
    for kind, seed in zip(kinds, seeds, strict=False):
        if kind == 0:
            centres.append(seed)
            overlapped.append(False)
            aggregated.append(False)
        elif kind == 1:
            angle = rng.uniform(0, 2 * np.pi)
            distance = rng.uniform(0.9, 1.6) * radius_px  # 0.45-0.8 diameters
            partner = seed + distance * np.array([np.sin(angle), np.cos(angle)])
            centres += [seed, partner]
            overlapped += [True, True]
            aggregated += [False, False]
        else:
            members = [seed]
            for _ in range(rng.integers(2, 6)):
                anchor = members[rng.integers(len(members))]
                angle = rng.uniform(0, 2 * np.pi)
                members.append(anchor + rng.uniform(1.6, 2.0) * radius_px *
                               np.array([np.sin(angle), np.cos(angle)]))
            centres += members
            overlapped += [False] * len(members)
            aggregated += [True] * len(members)
    centres = np.array(centres, float).reshape(-1, 2)
    inside = np.all((centres >= 0) & (centres < np.array(shape)), axis=1)
    centres = centres[inside]
    overlapped = np.array(overlapped, bool)[inside]
    aggregated = np.array(aggregated, bool)[inside]
    if len(centres) > 1:
        # Anything that ended up touching another particle counts as overlapped.
        from scipy.spatial import cKDTree

        distance, _ = cKDTree(centres).query(centres, k=2)
        overlapped |= (distance[:, 1] < 1.8 * radius_px) & ~aggregated

    particles_img = np.zeros(shape, np.float32)
    for centre in centres:
        rotation = _view_rotation(rng, views, top_fraction)
        whole = np.floor(centre).astype(int)
        frac = centre - whole
        proj = projector.project(rotation, frac)
        m = proj.shape[0]
        start = whole - m // 2
        lo = np.maximum(start, 0)
        hi = np.minimum(start + m, shape)
        if np.any(hi <= lo):
            continue
        particles_img[lo[0] : hi[0], lo[1] : hi[1]] += proj[
            lo[0] - start[0] : hi[0] - start[0], lo[1] - start[1] : hi[1] - start[1]]

    yy, xx = np.ogrid[: shape[0], : shape[1]]
    carbon_mask = np.zeros(shape, bool)
    carbon_img = np.zeros(shape, np.float32)
    if carbon and rng.random() < 0.5:
        # The hole edge: a circle of radius ~1.5 fields whose outside is carbon.
        angle = rng.uniform(0, 2 * np.pi)
        hole_r = 1.5 * max(shape)
        depth = rng.uniform(0.1, 0.3) * min(shape)
        centre = np.array(shape) / 2 - (hole_r - min(shape) / 2 + depth) * np.array(
            [np.sin(angle), np.cos(angle)])
        distance = np.sqrt((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2)
        carbon_mask = distance > hole_r
        texture = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 2.0)
        texture *= np.float32(0.5 / max(float(texture.std()), 1e-6))
        thickness = 100.0  # Å of carbon, density ≈ 0.5 of protein
        carbon_img = np.where(carbon_mask, 0.5 * thickness * (1 + texture), 0).astype(np.float32)
    if n_contaminations is None:
        n_contaminations = int(rng.poisson(1.5 * area / 2048**2))
    contamination, contamination_mask = _blob_field(
        rng, shape, n_contaminations, (150.0, 600.0), pixel)
    contamination *= np.float32(4 * projector.radius)  # very dense: thick ice crystals

    defocus = float(rng.uniform(*defocus_range))
    params_ctf = dataclasses.replace(base_ctf, defocus=defocus)
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    radius = np.sqrt(fy * fy + fx * fx)
    transfer = ctf(radius / pixel, params_ctf)
    if use_mtf:
        transfer = transfer * mtf(np.minimum(radius / 0.5, 1.0))
    transfer = transfer.astype(np.float32)

    def filtered(image):
        return sfft.irfft2(sfft.rfft2(image, workers=-1) * transfer, s=shape, workers=-1)

    particle_signal = filtered(particles_img).astype(np.float32)
    clean = filtered(particles_img + carbon_img + contamination).astype(np.float32)

    flags = {
        "overlapped": overlapped,
        "aggregated": aggregated,
        "on_carbon": _on_mask(centres, carbon_mask, radius_px),
        "on_contamination": _on_mask(centres, contamination_mask, radius_px),
    }
    good = ~(flags["overlapped"] | flags["aggregated"] | flags["on_carbon"]
             | flags["on_contamination"])
    box = int(np.ceil(2.4 * radius_px / 2) * 2)
    signal_var = _box_variance(particle_signal, centres[good] if good.any() else centres, box)
    noise_sd = float(np.sqrt(signal_var / snr)) if signal_var > 0 else 1.0
    ramp_dir = rng.uniform(0, 2 * np.pi)
    ramp = (np.sin(ramp_dir) * (yy / shape[0]) + np.cos(ramp_dir) * (xx / shape[1])).astype(
        np.float32)
    ramp -= ramp.mean()
    span = float(ramp.max() - ramp.min()) or 1.0
    background = -np.float32(ice_gradient * noise_sd / span) * ramp
    image = clean + background + rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_sd)
    all_particles = Particles(centres, box_size=box)
    params = {
        "pixel_size": float(pixel), "particle": particle_name, "snr": float(snr),
        "views": views, "defocus_um": defocus, "ctf": params_ctf.to_dict(),
        "noise_sd": noise_sd, "signal_variance": signal_var,
        "particle_diameter_A": 2 * projector.radius, "n_particles": len(centres),
        "n_good": int(good.sum()),
        "snr_definition": "var(CTF-filtered particle image in good boxes) / var(noise)",
    }
    return Micrograph(
        image=Image(image.astype(np.float32), voxel_size=float(pixel)),
        particles=all_particles.subset(good),
        all_particles=all_particles,
        flags=flags,
        box_size=box,
        clean=clean,
        masks={"carbon": carbon_mask, "contamination": contamination_mask},
        params=params,
    )


def _on_mask(centres, mask, radius_px):
    if not mask.any() or len(centres) == 0:
        return np.zeros(len(centres), bool)
    distance = ndimage.distance_transform_edt(~mask)
    index = np.clip(np.rint(centres).astype(int), 0, np.array(mask.shape) - 1)
    return distance[index[:, 0], index[:, 1]] < radius_px


def _box_variance(image, centres, box):
    values = []
    half = box // 2
    for y, x in np.rint(centres).astype(int):
        patch = image[max(y - half, 0) : y + half, max(x - half, 0) : x + half]
        if patch.size:
            values.append(float(patch.var()))
    return float(np.mean(values)) if values else 0.0
