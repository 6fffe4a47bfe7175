"""Static figures shared by the notebooks: confusion matrices and ours-vs-paper bar charts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cryoml._errors import CryomlError

__all__ = ["plot_comparison", "plot_confusion", "show"]


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
    for ax, (name, report) in zip(axes[0], reports.items(), strict=True):
        confusion = np.asarray(report["confusion_matrix"], dtype=float)
        rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"{name}: accuracy {report['accuracy']:.2f}", fontsize=10)
        names = class_names or report.get("class_names") or [str(i) for i in range(len(rows))]
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    figure.tight_layout()
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
