"""Training previews: (tile, mask, output) triplets for every tile, and the loss history."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cryoml._errors import CryomlError
from cryoml.io._atomic import atomic_path

__all__ = ["plot_history", "preview_grid"]


def preview_grid(training_set, segmenter=None, *, columns: int = 4, max_tiles: int | None = None):
    """A figure with one (tile, mask, output) triplet per training tile.

    Parameters
    ----------
    training_set : TrainingSet
    segmenter : TomoSegmenter, optional
        Trained network; without it the output column is left empty.
    columns : int, default 4
        Triplets per row.
    max_tiles : int, optional
        Show only the first tiles (all by default, as EMAN2's preview).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    n = len(training_set) if max_tiles is None else min(len(training_set), int(max_tiles))
    if n == 0:
        raise CryomlError("the training set is empty; nothing to preview.")
    centre = training_set.n_channels // 2
    tiles = training_set.tiles[:n, ..., centre]
    labels = training_set.labels[:n]
    outputs = None if segmenter is None else segmenter.predict_tiles(training_set.tiles[:n])
    columns = max(1, int(columns))
    rows = -(-n // columns)
    figure = Figure(figsize=(3 * columns * 1.2, rows * 1.3), dpi=80)
    axes = figure.subplots(rows, 3 * columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(n):
        r, c = divmod(i, columns)
        kind = "+" if training_set.is_positive[i] else "−"
        axes[r, 3 * c].imshow(tiles[i], cmap="gray")
        axes[r, 3 * c].set_title(f"{i}{kind}", fontsize=6)
        axes[r, 3 * c + 1].imshow(labels[i], cmap="magma", vmin=0, vmax=1)
        if outputs is not None:
            axes[r, 3 * c + 2].imshow(outputs[i], cmap="magma", vmin=0, vmax=1.5)
    figure.suptitle("tile | mask | output", fontsize=8)
    return figure


def plot_history(history: dict, *, title: str = "training"):
    """Figure of the per-epoch training and validation loss (log-MSE)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3), dpi=100)
    ax = figure.subplots()
    for key in ("loss", "val_loss"):
        values = history.get(key, [])
        if len(values) and np.any(np.isfinite(values)):
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("log MSE")
    ax.set_title(title)
    ax.legend()
    figure.tight_layout()
    return figure


def save_figure(figure, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save a figure as PNG atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png")
    return Path(path)
