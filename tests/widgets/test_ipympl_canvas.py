"""An ipympl canvas inside a view's box gets its size and first picture before display.

Without them the canvas stays 0 × 0 px until the kernel answers the front end's first
message, which after Run All waits for every queued cell (notebook 01's last viewer stayed
blank in JupyterLab; the real-browser test checks the page itself)."""

import numpy as np
import pytest

pytest.importorskip("ipympl")


def test_a_boxed_ipympl_canvas_is_sized_and_has_a_picture_when_displayed(monkeypatch):
    from ipympl.backend_nbagg import Canvas, FigureManager
    from matplotlib.figure import Figure

    import cryoml.widgets._views as views

    def ipympl_figure(figsize):
        figure = Figure(figsize=figsize, dpi=100)
        FigureManager(Canvas(figure), 1)
        return figure

    monkeypatch.setattr(views, "_new_figure", ipympl_figure)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objects, **kw: shown.extend(objects))
    viewer = views.SliceViewer(np.random.default_rng(0).random((8, 24, 24)), figsize=(3, 2))
    assert viewer.canvas_is_widget
    assert tuple(viewer.figure.canvas._size) == (0, 0)  # what ipympl leaves for a boxed canvas
    viewer._ipython_display_()
    assert shown == [viewer.widget]
    ratio = viewer.figure.canvas.device_pixel_ratio
    assert tuple(viewer.figure.canvas._size) == (300 / ratio, 200 / ratio)
    assert viewer.figure.canvas._data_url.startswith("data:image/png;base64,iVBOR")
    viewer.close()
