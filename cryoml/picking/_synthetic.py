"""Tiny synthetic micrographs for tests and the demo: ring particles, blob decoys, noise.

Not a physical simulation (see :mod:`cryoml.simulate` for that): each particle is a soft ring
with an off-centre knob at a random angle; decoys are small dense blobs (like ice) that a good
picker must skip. White Gaussian noise sets the SNR (signal variance over noise variance,
measured over the particle discs).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cryoml._errors import CryomlError
from cryoml._validation import check_random_state
from cryoml.io import Particles

__all__ = ["ToyMicrograph", "toy_micrographs"]


@dataclasses.dataclass
class ToyMicrograph:
    """One synthetic micrograph with its truth.

    Attributes
    ----------
    image : (Y, X) ndarray of float32
    particles : Particles
        Centres (Y, X) of the true particles, with ``box_size``.
    decoys : (K, 2) ndarray
        Centres of the decoy blobs.
    diameter : float
        Particle diameter in pixels.
    """

    image: np.ndarray
    particles: Particles
    decoys: np.ndarray
    diameter: float


def _place(rng, shape, n, margin, min_distance, existing=()):
    points = list(existing)
    out = []
    for _ in range(200 * max(n, 1)):
        if len(out) == n:
            break
        point = rng.uniform(margin, np.asarray(shape) - margin)
        if all(np.hypot(*(point - q)) >= min_distance for q in points):
            points.append(point)
            out.append(point)
    return np.asarray(out, dtype=float).reshape(-1, 2)


def _add_touching(rng, shape, centres, n_pairs, margin, diameter):
    """Give ``n_pairs`` of the placed particles a partner exactly one diameter away."""
    points = [np.asarray(c) for c in centres]
    for index in rng.permutation(len(centres))[:n_pairs]:
        for _ in range(50):
            angle = rng.uniform(0, 2 * np.pi)
            partner = centres[index] + diameter * np.array([np.sin(angle), np.cos(angle)])
            if np.any(partner < margin) or np.any(partner > np.asarray(shape) - margin):
                continue
            if all(np.hypot(*(partner - q)) >= 0.999 * diameter for q in points):
                points.append(partner)
                break
    return np.asarray(points, dtype=float).reshape(-1, 2)


def toy_micrographs(
    n: int,
    *,
    shape: tuple[int, int] = (256, 256),
    box_size: int = 48,
    n_particles: int = 10,
    n_decoys: int = 4,
    snr: float = 0.5,
    touching_fraction: float = 0.0,
    random_state: int | np.random.Generator | None = None,
) -> list[ToyMicrograph]:
    """Make ``n`` small micrographs of ring particles, blob decoys and Gaussian noise.

    Parameters
    ----------
    n : int
        Number of micrographs.
    shape : (int, int), default (256, 256)
        Micrograph shape.
    box_size : int, default 48
        Box edge; the particle diameter is 0.6 × box.
    n_particles, n_decoys : int
        Particles and decoys per micrograph (fewer if they do not fit).
    snr : float, default 0.5
        Signal-to-noise ratio (variance ratio over the particle discs).
    touching_fraction : float, default 0
        Share of the particles placed touching another one (centres one diameter apart, at a
        random angle) for crowded fields; the others keep 1.1 diameters from every particle.
    random_state : None, int or Generator

    Returns
    -------
    list of ToyMicrograph

    Raises
    ------
    CryomlError
        If ``n`` < 1, ``snr`` <= 0 or the box does not fit the micrograph.
    """
    if int(n) != n or n < 1:
        raise CryomlError(f"'n' must be a positive integer; got {n!r}.")
    if snr <= 0:
        raise CryomlError(f"'snr' must be > 0; got {snr!r}.")
    if not 0 <= touching_fraction <= 1:
        raise CryomlError(f"'touching_fraction' must be in [0, 1]; got {touching_fraction!r}.")
    if min(shape) < 2 * box_size:
        raise CryomlError(f"shape {shape} is too small for {box_size}-px boxes.")
    rng = check_random_state(random_state)
    diameter = 0.6 * box_size
    radius = diameter / 2
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    out = []
    for _ in range(int(n)):
        margin = box_size / 2 + 1
        n_touching = round(touching_fraction * n_particles) // 2 * 2
        centres = _place(rng, shape, n_particles - n_touching // 2, margin, 1.1 * diameter)
        if n_touching:
            centres = _add_touching(rng, shape, centres, n_touching // 2, margin, diameter)
        decoys = _place(rng, shape, n_decoys, margin, 1.1 * diameter, existing=centres)
        clean = np.zeros(shape, dtype=np.float32)
        for cy, cx in centres:
            distance = np.hypot(yy - cy, xx - cx)
            clean += np.exp(-0.5 * ((distance - 0.75 * radius) / (0.12 * radius)) ** 2)
            clean += 0.5 * np.exp(-0.5 * (distance / (0.25 * radius)) ** 2)
            angle = rng.uniform(0, 2 * np.pi)
            ky, kx = cy + 0.45 * radius * np.sin(angle), cx + 0.45 * radius * np.cos(angle)
            clean += 0.8 * np.exp(-0.5 * (np.hypot(yy - ky, xx - kx) / (0.15 * radius)) ** 2)
        for cy, cx in decoys:
            distance = np.hypot(yy - cy, xx - cx)
            clean += 1.6 * np.exp(-0.5 * (distance / (0.3 * radius)) ** 2)
        inside = np.zeros(shape, dtype=bool)
        for cy, cx in centres:
            inside |= np.hypot(yy - cy, xx - cx) <= radius
        signal_var = float(clean[inside].var()) if inside.any() else 1.0
        noise = rng.normal(0.0, np.sqrt(signal_var / snr), size=shape).astype(np.float32)
        image = (clean + noise).astype(np.float32)
        out.append(
            ToyMicrograph(
                image=image,
                particles=Particles(centres, box_size=box_size),
                decoys=decoys,
                diameter=diameter,
            )
        )
    return out
