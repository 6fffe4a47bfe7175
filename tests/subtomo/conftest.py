"""Tiny synthetic subtomograms: a few random blob shapes, randomly rotated, with noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage


def blob_shapes(n_classes: int, box: int, seed: int = 0) -> np.ndarray:
    """Distinct, asymmetric densities: a few Gaussian blobs at random offsets per class."""
    rng = np.random.default_rng(seed)
    grid = np.indices((box,) * 3).astype(np.float32) - box // 2
    shapes = []
    for _ in range(n_classes):
        volume = np.zeros((box,) * 3, dtype=np.float32)
        for _ in range(4):
            centre = rng.uniform(-box / 5, box / 5, size=3)
            sigma = rng.uniform(1.2, 2.2)
            volume += np.exp(-np.sum((grid - centre[:, None, None, None]) ** 2, 0) / (2 * sigma**2))
        shapes.append(volume)
    return np.stack(shapes)


def make_set(n_classes=3, n_per_class=12, box=16, noise=0.3, seed=0):
    """(data (N, box³) float32, labels (N,), shapes (K, box³)); random rotations + noise."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed + 1)
    shapes = blob_shapes(n_classes, box, seed)
    data, labels = [], []
    centre = np.full(3, box // 2, dtype=float)
    for label in range(n_classes):
        for matrix in Rotation.random(n_per_class, random_state=rng).as_matrix():
            offset = centre - matrix @ centre
            rotated = ndimage.affine_transform(shapes[label], matrix, offset=offset, order=1)
            data.append(rotated + rng.normal(0, noise, rotated.shape))
            labels.append(label)
    return np.asarray(data, dtype=np.float32), np.asarray(labels), shapes


def sphere_set(n_per_class=12, box=16, noise=0.5, seed=0):
    """Three classes of balls (radius 2.5, 4.5, 6.5 voxels) in noise: easy, pose-free."""
    rng = np.random.default_rng(seed)
    radius = np.sqrt(np.sum((np.indices((box,) * 3) - box // 2) ** 2, axis=0))
    shapes = np.stack([(radius < r).astype(np.float32) for r in (2.5, 4.5, 6.5)])
    labels = np.repeat(np.arange(3), n_per_class)
    data = shapes[labels] + rng.normal(0, noise, (len(labels), box, box, box))
    return data.astype(np.float32), labels, shapes


@pytest.fixture(scope="module")
def tiny_set():
    return sphere_set()
