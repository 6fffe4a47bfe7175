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
    labels = (training_set.labels if segmenter is None else segmenter._labels_of(training_set))[:n]
    outputs = None if segmenter is None else segmenter.predict_tiles(training_set.tiles[:n])
    columns = max(1, int(columns))
    rows = -(-n // columns)
    figure = Figure(figsize=(3 * columns * 1.2 + 0.8, rows * 1.45 + 0.5), dpi=80)
    axes = figure.subplots(rows, 3 * columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    shown = None
    for i in range(n):
        r, c = divmod(i, columns)
        kind = "positive" if training_set.is_positive[i] else "negative"
        axes[r, 3 * c].imshow(tiles[i], cmap="gray")
        axes[r, 3 * c].set_title(f"{i} {kind}", fontsize=9, loc="left")
        shown = axes[r, 3 * c + 1].imshow(labels[i], cmap="magma", vmin=0, vmax=1)
        if outputs is not None:
            axes[r, 3 * c + 2].imshow(outputs[i], cmap="magma", vmin=0, vmax=1)
    figure.suptitle("tile | mask | network output (per triplet)", fontsize=10)
    figure.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01,
                    label="mask / output value")
    return figure


def plot_history(history: dict, *, title: str = "training"):
    """Figure of the per-epoch training and validation loss (TomoSeg's loss is a log-MSE).

    Epochs are counted from 1 on an integer axis; the curves are named ``loss`` and
    ``val_loss``, as in :class:`cryoml.widgets.TrainingMonitor`.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(4, 3), dpi=100)
    ax = figure.subplots()
    for key in ("loss", "val_loss"):
        values = history.get(key, [])
        if len(values) and np.any(np.isfinite(values)):
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")  # the name the TrainingMonitor uses for the same numbers
    ax.set_title(title)
    ax.legend()
    figure.tight_layout()
    return figure


def save_figure(figure, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save a figure as PNG atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png")
    return Path(path)
