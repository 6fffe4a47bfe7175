"""Training a picker on whole micrographs: every box of a training micrograph is an example.

The paper trains its classifier on boxes: N around particles, N of background. Yet a labelled
micrograph holds far more background than a few hundred boxes show, and the network meets all
of it when it scores the micrograph. Trained on random crops of whole micrographs instead, the
network's fully convolutional form sees a 12 × 12 grid of boxes per crop (a grid point every
``stride`` pixels, the crops at random offsets and in the 8 orientations of the square):

* target 1 where a box centre lies within 0.15 particle diameter of a labelled particle;
* target 0 where it lies farther than 0.5 diameter from every labelled particle;
* no loss in between, where a box holds most of a particle off centre.

The loss is binary cross-entropy (or the paper recipe's squared error) with the two classes
weighted to count equally in every batch. Every particle in the training micrographs must be
labelled: an unlabelled one is taught as background.

Measured on the simulated KLH set at SNR 0.01 (``benchmarks/RESULTS.md``), the wide network
trained this way picked with AP 0.70, against 0.34 for the paper's network trained on boxes
(0.57 after one round of hard-negative mining) and 0.59 for the paper's network trained on
micrographs.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.spatial import cKDTree

from cryoml._errors import CryomlError

log = logging.getLogger(__name__)

#: Box centres this close to a labelled particle (× diameter) are taught as particles.
POSITIVE_RADIUS = 0.15
#: Box centres farther than this from every labelled particle (× diameter) are background.
BACKGROUND_RADIUS = 0.5
#: Grid points per crop edge.
CROP_GRID = 12
#: Fewest batches per epoch, so that small training sets still get enough updates.
MIN_STEPS_PER_EPOCH = 50


def crop_grid(shapes: list[tuple[int, int]], box: int, stride: int) -> int:
    """Grid points per crop edge that fit into the smallest training micrograph."""
    smallest = min(min(shape) for shape in shapes)
    grid = min(CROP_GRID, (smallest - box) // stride + 1)
    if grid < 1:
        raise CryomlError(
            f"training micrographs of {smallest} px are smaller than the {box}-px box; use a "
            "smaller box or bigger micrographs."
        )
    return int(grid)


def steps_per_epoch(shapes: list[tuple[int, int]], grid: int, stride: int, batch: int) -> int:
    """Batches in one epoch: enough crops to cover the training micrographs' area once."""
    area = sum(shape[0] * shape[1] for shape in shapes)
    return max(MIN_STEPS_PER_EPOCH, math.ceil(area / ((grid * stride) ** 2 * batch)))


class _Trees:
    """Nearest-distance lookups to one micrograph's particles (empty sets allowed)."""

    def __init__(self, centres: np.ndarray):
        self.tree = cKDTree(centres) if len(centres) else None

    def distance(self, points: np.ndarray) -> np.ndarray:
        if self.tree is None:
            return np.full(len(points), np.inf)
        return self.tree.query(points)[0]


def make_crop_dataset(
    images: list[np.ndarray],
    particles: list[np.ndarray],
    ignored: list[np.ndarray],
    *,
    box: int,
    stride: int,
    diameter: float,
    batch: int,
    steps: int,
    rng: np.random.Generator,
):
    """A ``keras.utils.PyDataset`` of random crops with their target and weight grids.

    Parameters
    ----------
    images : list of (Y, X) ndarray
        Normalised training micrographs.
    particles : list of (N, 2) ndarray
        Labelled particle centres (taught as particles).
    ignored : list of (M, 2) ndarray
        Centres whose neighbourhood (within 0.5 diameter) gets no loss: held-out particles and
        held-out background.
    box, stride : int
        Box edge and grid step of the network.
    diameter : float
        Particle diameter in pixels.
    batch, steps : int
        Crops per batch and batches per epoch.
    rng : numpy.random.Generator

    Returns
    -------
    keras.utils.PyDataset
        Items (x, y): x (batch, S, S, 1) crops and y (batch, G, G, 2) with the target in
        channel 0 and the weight in channel 1.
    """
    import keras

    grid = crop_grid([image.shape for image in images], box, stride)
    size = box + (grid - 1) * stride
    positive = [_Trees(p) for p in particles]
    masked = [_Trees(m) for m in ignored]
    offsets = np.arange(grid) * stride + box / 2

    class Crops(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()

        def __len__(self):
            return steps

        def __getitem__(self, index):
            x = np.empty((batch, size, size, 1), np.float32)
            y = np.empty((batch, grid, grid, 2), np.float32)
            for b in range(batch):
                i = int(rng.integers(len(images)))
                image = images[i]
                y0 = int(rng.integers(0, image.shape[0] - size + 1))
                x0 = int(rng.integers(0, image.shape[1] - size + 1))
                gy, gx = np.meshgrid(offsets + y0, offsets + x0, indexing="ij")
                points = np.stack([gy.ravel(), gx.ravel()], axis=1)
                near = positive[i].distance(points).reshape(grid, grid) / diameter
                hidden = masked[i].distance(points).reshape(grid, grid) / diameter
                target = (near <= POSITIVE_RADIUS).astype(np.float32)
                weight = ((near <= POSITIVE_RADIUS) | (near > BACKGROUND_RADIUS)) & (
                    hidden > BACKGROUND_RADIUS
                )
                crop = image[y0 : y0 + size, x0 : x0 + size]
                turns, mirror = int(rng.integers(4)), bool(rng.integers(2))
                stack = np.stack([crop], axis=-1)
                labels = np.stack([target, weight.astype(np.float32)], axis=-1)
                if mirror:
                    stack, labels = stack[:, ::-1], labels[:, ::-1]
                x[b] = np.rot90(stack, turns)
                y[b] = np.rot90(labels, turns)
            return x, y

    return Crops()


def balanced_loss(recipe: str):
    """Per-batch loss with particles and background weighted to count equally.

    ``"modern"``: binary cross-entropy; ``"paper"``: the paper's half squared error.
    """
    from keras import ops

    def loss(y_true, y_pred):
        target, weight = y_true[..., 0], y_true[..., 1]
        score = y_pred[..., 0]
        if recipe == "paper":
            on_particles = 0.5 * ops.square(1.0 - score)
            on_background = 0.5 * ops.square(score)
        else:
            score = ops.clip(score, 1e-6, 1.0 - 1e-6)
            on_particles = -ops.log(score)
            on_background = -ops.log(1.0 - score)
        n_particles = ops.sum(weight * target) + 1.0
        n_background = ops.sum(weight * (1.0 - target)) + 1.0
        return 0.5 * (
            ops.sum(weight * target * on_particles) / n_particles
            + ops.sum(weight * (1.0 - target) * on_background) / n_background
        )

    loss.__name__ = "balanced_loss"
    return loss
