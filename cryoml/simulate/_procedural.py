"""Built-in procedural complexes: density maps that need no downloaded data.

Each complex is a set of ellipsoidal subunits (uniform protein density 1) arranged with a
symmetry, filled with points and blurred to the requested resolution by
:func:`cryoml.simulate._density.render_points`. Sizes are those of real complexes (GroEL-like
barrel 140 Å wide, 70S-like ribosome ≈ 250 Å, KLH-like didecamer 350 Å wide and 380 Å long),
so the shapes look right at 2–10 Å per voxel. Symmetry axes are along Z (array axis 0), so a
projection along Z of the unrotated map is a *top view*.
"""

from __future__ import annotations

import functools

import numpy as np

from cryoml._errors import CryomlError

__all__ = ["builtin_complexes", "procedural_density"]

# (centre x, y, z in Å; semi-axes a, b, c in Å; rotation 3x3 acting on local (x, y, z))
_Subunit = tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray]


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _ring(
    n: int, radius: float, z: float, axes: tuple[float, float, float], *, phase: float = 0.0,
    tilt: float = 0.0,
) -> list[_Subunit]:
    """``n`` ellipsoids around Z at ``radius``; local axes (radial, tangential, along Z)."""
    out = []
    for i in range(n):
        angle = phase + 2 * np.pi * i / n
        rotation = _rot_z(angle) @ _rot_y(tilt)
        centre = (radius * np.cos(angle), radius * np.sin(angle), z)
        out.append((centre, axes, rotation))
    return out


def _one(centre, axes, rotation=None) -> list[_Subunit]:
    return [(tuple(centre), tuple(axes), np.eye(3) if rotation is None else rotation)]


def _ring_c7() -> list[_Subunit]:
    return _ring(7, 30.0, 0.0, (16.0, 13.0, 14.0))


def _ring_c5() -> list[_Subunit]:
    return _ring(5, 38.0, 0.0, (20.0, 18.0, 14.0), tilt=0.3)


def _barrel_d7() -> list[_Subunit]:
    units = []
    for z, phase in ((-37.0, 0.0), (37.0, np.pi / 7)):
        units += _ring(7, 52.0, z, (18.0, 20.0, 34.0), phase=phase)
    return units


def _proteasome_like() -> list[_Subunit]:
    units = []
    for z, radius, axes in ((-56.0, 40.0, (14, 16, 17)), (-19.0, 48.0, (17, 20, 18)),
                            (19.0, 48.0, (17, 20, 18)), (56.0, 40.0, (14, 16, 17))):
        units += _ring(7, radius, z, axes, phase=0.2 * z / 19.0)
    return units


def _hexamer_two_tier() -> list[_Subunit]:
    units = _ring(6, 40.0, -18.0, (20.0, 19.0, 17.0))
    units += _ring(6, 40.0, 18.0, (20.0, 19.0, 17.0), phase=np.pi / 6)
    units += _ring(6, 68.0, -30.0, (13.0, 11.0, 11.0), phase=np.pi / 12)  # N-domains
    return units


def _cage_octahedral() -> list[_Subunit]:
    # 24 subunits on the faces/edges of an octahedral cage (ferritin-like, 120 Å across).
    from scipy.spatial.transform import Rotation

    group = Rotation.create_group("O")
    seed = np.array([0.2, 0.45, 0.87])
    seed = seed / np.linalg.norm(seed) * 48.0
    units = []
    for matrix in group.as_matrix():
        centre = matrix @ seed
        normal = centre / np.linalg.norm(centre)
        tangent = np.cross(normal, [0.0, 0.0, 1.0] if abs(normal[2]) < 0.9 else [1.0, 0, 0])
        tangent /= np.linalg.norm(tangent)
        frame = np.stack([normal, tangent, np.cross(normal, tangent)], axis=1)
        units.append((tuple(centre), (8.0, 20.0, 12.0), matrix @ np.linalg.inv(matrix) @ frame))
    return units


def _ribosome_like() -> list[_Subunit]:
    units = _one((0.0, 20.0, 0.0), (105.0, 80.0, 85.0))  # large subunit body
    units += _one((0.0, 70.0, 75.0), (30.0, 22.0, 30.0))  # central protuberance
    units += _one((-80.0, 60.0, 40.0), (14.0, 35.0, 12.0), _rot_z(0.6))  # L7/L12-like stalk
    units += _one((70.0, 55.0, 20.0), (30.0, 22.0, 26.0))  # L1-like protuberance
    units += _one((0.0, -70.0, 10.0), (85.0, 30.0, 60.0), _rot_z(0.2))  # small subunit body
    units += _one((-20.0, -88.0, 70.0), (38.0, 24.0, 30.0))  # small subunit head
    units += _one((55.0, -85.0, -25.0), (22.0, 18.0, 26.0))  # platform
    return units


def _klh() -> list[_Subunit]:
    # Didecamer: a hollow cylinder (wall of 6 tiers x 10 subunits) with a collar at both ends.
    units = []
    for tier in range(6):
        z = -150.0 + tier * 60.0
        units += _ring(10, 150.0, z, (22.0, 46.0, 30.0), phase=(tier % 2) * np.pi / 10)
    units += _ring(5, 95.0, -178.0, (20.0, 40.0, 18.0))
    units += _ring(5, 95.0, 178.0, (20.0, 40.0, 18.0), phase=np.pi / 5)
    units += _one((0.0, 0.0, 0.0), (60.0, 60.0, 12.0))  # central plug seen in top views
    return units


def _dumbbell() -> list[_Subunit]:
    units = _one((0.0, 0.0, -45.0), (32.0, 30.0, 28.0))
    units += _one((0.0, 0.0, 45.0), (26.0, 24.0, 24.0))
    units += _one((0.0, 0.0, 0.0), (9.0, 9.0, 25.0))
    return units


def _helix_rod() -> list[_Subunit]:
    units = []
    for i in range(9):
        angle = i * 2 * np.pi * 13 / 28  # actin-like 13/6 helix
        units.append(((25.0 * np.cos(angle), 25.0 * np.sin(angle), -110.0 + 27.5 * i),
                      (22.0, 18.0, 17.0), _rot_z(angle)))
    return units


def _tetrahedron() -> list[_Subunit]:
    vertices = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float) * 30.0
    return [(tuple(v), (22.0, 20.0, 18.0), _rot_z(i * 0.7)) for i, v in enumerate(vertices)]


def _globule_small() -> list[_Subunit]:
    return _one((0.0, 0.0, 0.0), (32.0, 24.0, 18.0), _rot_y(0.4))


def _y_shape() -> list[_Subunit]:
    # Antibody-like: three arms of 2 domains at 120° in a plane.
    units = []
    for i, angle in enumerate((np.pi / 2, np.pi / 2 + 2.1, np.pi / 2 - 2.1)):
        for r in (22.0, 58.0):
            units.append(((r * np.cos(angle), r * np.sin(angle), 4.0 * i), (19.0, 14.0, 15.0),
                          _rot_z(angle)))
    return units


_BUILDERS = {
    "ring_c7": _ring_c7,
    "ring_c5": _ring_c5,
    "barrel_d7": _barrel_d7,
    "proteasome_like": _proteasome_like,
    "hexamer_two_tier": _hexamer_two_tier,
    "cage_octahedral": _cage_octahedral,
    "ribosome_like": _ribosome_like,
    "klh": _klh,
    "dumbbell": _dumbbell,
    "helix_rod": _helix_rod,
    "tetrahedron": _tetrahedron,
    "globule_small": _globule_small,
    "y_shape": _y_shape,
}


def builtin_complexes() -> list[str]:
    """Names of the built-in procedural complexes (usable wherever a density name is taken).

    Examples
    --------
    >>> "ribosome_like" in builtin_complexes() and len(builtin_complexes()) >= 8
    True
    """
    return list(_BUILDERS)


def procedural_density(
    name: str, *, voxel_size: float, resolution: float | None = None
) -> np.ndarray:
    """Render a built-in complex at ``voxel_size`` Å (a cube just large enough to hold it).

    Parameters
    ----------
    name : str
        One of :func:`builtin_complexes`.
    voxel_size : float
        Å per voxel.
    resolution : float, optional
        Blur in Å (default ``max(2 * voxel_size, 10)``).

    Returns
    -------
    (n, n, n) ndarray of float32, symmetry axis along Z (axis 0), protein interior ≈ 1.

    Raises
    ------
    CryomlError
        For an unknown name.
    """
    if name not in _BUILDERS:
        raise CryomlError(
            f"unknown built-in complex {name!r}; choose from {', '.join(_BUILDERS)}."
        )
    resolution = float(resolution) if resolution is not None else max(2 * voxel_size, 10.0)
    return _render_cached(name, float(voxel_size), resolution).copy()


@functools.lru_cache(maxsize=64)
def _render_cached(name: str, voxel_size: float, resolution: float) -> np.ndarray:
    from cryoml.simulate._density import render_points

    rng = np.random.default_rng(20170101)  # fixed: a built-in shape never changes
    spacing = max(voxel_size / 2.0, 2.5)
    points, weights = [], []
    for centre, axes, rotation in _BUILDERS[name]():
        axes_arr = np.asarray(axes, dtype=np.float64)
        volume = 4.0 / 3.0 * np.pi * np.prod(axes_arr)
        count = int(np.clip(volume / spacing**3, 60, 20000))
        direction = rng.standard_normal((count, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = rng.random(count) ** (1.0 / 3.0)
        local = direction * radius[:, None] * axes_arr
        xyz = local @ np.asarray(rotation).T + np.asarray(centre)
        points.append(xyz[:, ::-1])  # (x, y, z) -> (Z, Y, X)
        weights.append(np.full(count, volume / count))
    sigma = resolution / (np.pi * np.sqrt(2.0))
    return render_points(
        np.concatenate(points), np.concatenate(weights), voxel_size=voxel_size, sigma=sigma,
        oversample=2 if voxel_size > 4 else 1,
    )
