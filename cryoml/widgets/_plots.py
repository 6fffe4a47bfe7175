"""Static figures shared by the notebooks: confusion matrices and ours-vs-paper bar charts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cryoml._errors import CryomlError

__all__ = ["plot_comparison", "plot_confusion", "plot_discovery", "show"]


def show(figure: Any) -> None:
    """Display a matplotlib figure in a notebook, whatever the backend and however it was made.

    A live ipympl canvas is shown as the widget; any other figure (``inline``, Agg, or a
    ``matplotlib.figure.Figure`` made without pyplot, as the library's plot functions return)
    is shown as a PNG picture, so it is stored in executed notebooks too.
    """
    import io as _io

    from IPython.display import Image, display

    if not hasattr(figure, "savefig"):
        raise CryomlError(f"show() takes a matplotlib figure; got {type(figure).__name__}.")
    canvas = getattr(figure, "canvas", None)
    try:
        import ipywidgets

        if isinstance(canvas, ipywidgets.DOMWidget):
            display(canvas)
            return
    except ImportError:
        pass
    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    display(Image(data=buffer.getvalue(), format="png"))


def plot_confusion(
    reports: Mapping[str, Mapping[str, Any]], *, class_names: Sequence[str] | None = None
) -> Any:
    """Confusion matrices side by side, one per method, rows normalised to recall.

    Parameters
    ----------
    reports : dict of str to dict
        Method name → report with ``confusion_matrix`` (rows: true, columns: predicted) and
        ``accuracy`` (as from :func:`cryoml.subtomo.classification_report`).
    class_names : sequence of str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if not reports:
        raise CryomlError("no reports to plot; pass {method name: report}.")
    with plt.ioff():  # shown by the caller (or show()), not twice by the inline backend
        figure, axes = plt.subplots(1, len(reports), figsize=(3.6 * len(reports), 3.4),
                                    squeeze=False)
    image = None
    for ax, (name, report) in zip(axes[0], reports.items(), strict=True):
        confusion = np.asarray(report["confusion_matrix"], dtype=float)
        rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"{name}: accuracy {report['accuracy']:.2f}", fontsize=10)
        names = class_names or report.get("class_names") or [str(i) for i in range(len(rows))]
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if len(rows) <= 10:  # numbers stay legible; beyond that the colour bar alone reads
            for (i, j), value in np.ndenumerate(rows):
                if value >= 0.005:
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if value > 0.6 else "black")
    figure.tight_layout()
    colour_bar = figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, pad=0.02)
    colour_bar.set_label("share of the true class (recall per row)", fontsize=8)
    return figure


def plot_comparison(
    ours: Mapping[str, float],
    paper: Mapping[str, float] | None = None,
    *,
    ylabel: str = "accuracy",
    title: str = "",
) -> Any:
    """Bars of our figures beside the paper's, per method (missing paper values are skipped).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    names = list(ours)
    positions = np.arange(len(names))
    with plt.ioff():
        figure, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.2))
    width = 0.38 if paper else 0.6
    ax.bar(positions - (width / 2 if paper else 0), [ours[n] for n in names], width,
           label="cryoml (this run)")
    if paper:
        values = [paper.get(n, np.nan) for n in names]
        ax.bar(positions + width / 2, values, width, label="paper", color="0.6")
    ax.set_xticks(positions, names, rotation=20)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    figure.tight_layout()
    return figure


def plot_discovery(result: Mapping[str, Any], true_map: Any, *, voxel_size: float) -> Any:
    """A discovery run as a figure: the average beside the true map, and their FSC curve.

    Parameters
    ----------
    result : dict
        From :func:`cryoml.subtomo.leave_one_out` (``average``, ``fsc``,
        ``fsc_frequencies``, ``resolution_nm``, ``class_size``).
    true_map : (n, n, n) array_like
        The left-out class's true density.
    voxel_size : float
        Å per voxel (for the resolution axis).

    Returns
    -------
    matplotlib.figure.Figure
        Axes 0 and 1: central XY, XZ slices of the average and the true map; axis 2: FSC.
    """
    from matplotlib.figure import Figure

    if "average" not in result or "fsc" not in result:
        raise CryomlError("plot_discovery needs a leave_one_out result (average and fsc).")
    average = np.asarray(result["average"], dtype=float)
    truth = np.asarray(true_map, dtype=float)
    centre = average.shape[0] // 2
    figure = Figure(figsize=(10, 3.2))
    axes = figure.subplots(1, 3, gridspec_kw={"width_ratios": (1, 1, 1.3)})
    for ax, volume, title in ((axes[0], average, f"average of {result['class_size']}"),
                              (axes[1], truth, "true map")):
        planes = np.concatenate([volume[centre], volume[:, centre]], axis=1)
        ax.imshow(planes, cmap="gray")
        ax.set_title(f"{title} (XY | XZ)", fontsize=10)
        ax.set_axis_off()
    frequencies = np.asarray(result.get("fsc_frequencies") or
                             np.arange(len(result["fsc"])) / (2 * len(result["fsc"])))
    axes[2].plot(frequencies / voxel_size * 10, result["fsc"], marker="o", ms=3,
                 label="average vs true map")
    axes[2].axhline(0.5, color="0.5", ls="--", label="FSC = 0.5")
    axes[2].set_xlabel("spatial frequency (1/nm)")
    axes[2].set_ylabel("FSC")
    axes[2].set_ylim(-0.2, 1.05)
    axes[2].set_title(f"resolution {result['resolution_nm']:.1f} nm at FSC 0.5", fontsize=10)
    axes[2].legend(fontsize="small")
    figure.tight_layout()
    return figure
