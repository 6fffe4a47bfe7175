"""ipywidgets + matplotlib views of the widget states in ``_state.py``.

A view builds controls (sliders, buttons) and a matplotlib figure, renders its state, and
forwards user events (slider moves, clicks, drags, lasso) to the state; it holds no logic of
its own. In JupyterLab with ipympl (``%matplotlib widget``, see
:func:`cryoml.widgets.setup_notebook`) the figure is a live canvas widget; with any other
backend (Agg in tests, ``inline`` when notebooks run headless) the view still builds, and
displaying it shows the controls and a static picture of the figure.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cryoml._errors import CryomlError
from cryoml.widgets._state import (
    BoxPickerState,
    EmbeddingState,
    MaskPainterState,
    PRState,
    SliceState,
    TrainingMonitorState,
)

__all__ = [
    "BoxPicker",
    "EmbeddingExplorer",
    "MaskPainter",
    "PRExplorer",
    "SliceViewer",
    "TrainingMonitor",
]

logger = logging.getLogger(__name__)

_SET_COLOURS = ["#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd"]


def _widgets() -> Any:
    """Import ipywidgets or say how to install it."""
    try:
        import ipywidgets
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "cryoml.widgets views need ipywidgets (and ipympl for live figures in "
            "JupyterLab). Install them with:  pip install ipywidgets ipympl"
        ) from error
    return ipywidgets


def _new_figure(figsize: tuple[float, float]) -> Any:
    import matplotlib.pyplot as plt

    with plt.ioff():
        figure = plt.figure(figsize=figsize)
    canvas = figure.canvas
    # The ipympl toolbar (drawn over the canvas' left edge; the views leave room for it,
    # see _View._assemble) stays visible rather than fading in over the image.
    for name, value in (("header_visible", False), ("footer_visible", False),
                        ("toolbar_position", "left"), ("toolbar_visible", "visible")):
        if hasattr(canvas, name):
            setattr(canvas, name, value)
    return figure


def _mouse_modifier(event: Any, name: str) -> bool:
    """Whether modifier ``name`` ("shift", "control") was held during a mouse event."""
    key = getattr(event, "key", None) or ""
    modifiers = getattr(event, "modifiers", None) or set()
    return name in str(key).split("+") or name in modifiers


def _navigating(figure: Any) -> bool:
    """True while the toolbar's pan or zoom tool is active (clicks then navigate)."""
    toolbar = getattr(figure.canvas, "toolbar", None)
    return bool(getattr(toolbar, "mode", ""))


class _View:
    """Common parts: the figure, the widget tree, redraw and display."""

    state: Any

    def __init__(self, figsize: tuple[float, float]) -> None:
        self._ipw = _widgets()
        self.figure = _new_figure(figsize)
        self.canvas_is_widget = isinstance(self.figure.canvas, self._ipw.DOMWidget)
        self.widget: Any = None
        self._handle: Any = None

    def _assemble(self, *rows: Any) -> None:
        children = [r for r in rows if r is not None]
        if self.canvas_is_widget:
            # ipympl draws its toolbar over the canvas' left edge: keep the axes clear of it
            room = min(0.25, 48.0 / (self.figure.get_figwidth() * self.figure.dpi))
            if self.figure.subplotpars.left < room:
                self.figure.subplots_adjust(left=room)
            children.append(self.figure.canvas)
        self.widget = self._ipw.VBox(children)

    def redraw(self) -> None:
        """Ask the canvas to draw again; a static picture shown by a notebook is updated."""
        self.figure.canvas.draw_idle()
        if self._handle is not None:
            self._handle.update(self._picture())

    def _picture(self) -> Any:
        import io

        from IPython.display import Image

        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        return Image(data=buffer.getvalue(), format="png")

    def _prime_canvas(self) -> None:
        """Give an ipympl canvas its size and first picture before it is displayed.

        ipympl does this in the canvas' own ``_repr_mimebundle_``, which is not called for a
        canvas inside a box; until the kernel answers the front end's first message the
        canvas is then 0 × 0 px. After Run All that answer waits for every queued cell, and
        the last viewer of notebook 01 stayed blank in JupyterLab."""
        import base64
        import io

        canvas = self.figure.canvas
        if not self.canvas_is_widget or not hasattr(canvas, "_size"):
            return
        ratio = float(getattr(canvas, "device_pixel_ratio", 1.0) or 1.0)
        width = self.figure.get_figwidth() * self.figure.dpi / ratio
        height = self.figure.get_figheight() * self.figure.dpi / ratio
        if hasattr(canvas, "_data_url"):
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", dpi="figure")
            canvas._data_url = ("data:image/png;base64,"
                                + base64.b64encode(buffer.getvalue()).decode("ascii"))
        canvas._size = (float(width), float(height))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._prime_canvas()
        display(self.widget)
        if not self.canvas_is_widget:  # no ipympl: a picture that follows the state
            self._handle = display(self._picture(), display_id=True)

    def close(self) -> None:
        """Close the figure and the widgets."""
        import matplotlib.pyplot as plt

        plt.close(self.figure)
        if self.widget is not None:
            self.widget.close()


# --- SliceViewer ----------------------------------------------------------------------------


class SliceViewer(_View):
    """Slice slider, contrast and zoom over a volume, with mask/label overlays and picks.

    Parameters
    ----------
    volume : (Z, Y, X) array_like, Image or SliceState
        The volume (or a prepared state).
    axis : int, default 0
        Axis sliced (0: XY slices).
    overlays : dict of str to (Z, Y, X) array, optional
        Boolean masks (or integer label volumes) drawn over the slices.
    picks : dict of str to Particles or (N, 3) array, optional
        Particle centres drawn as circles on the slices near them.
    cmap : str, default "gray"
    figsize : (float, float), default (6, 6)

    Examples
    --------
    >>> import numpy as np
    >>> viewer = SliceViewer(np.random.default_rng(0).normal(size=(8, 32, 32)))
    >>> viewer.slider.value = 2
    >>> viewer.state.index
    2
    """

    def __init__(
        self,
        volume: object,
        *,
        axis: int = 0,
        overlays: dict[str, object] | None = None,
        picks: dict[str, object] | None = None,
        cmap: str = "gray",
        figsize: tuple[float, float] = (6.0, 6.0),
    ) -> None:
        super().__init__(figsize)
        ipw = self._ipw
        self.state = volume if isinstance(volume, SliceState) else SliceState(volume, axis=axis)
        for name, mask in (overlays or {}).items():
            kind = "mask" if np.asarray(mask).dtype == bool else "labels"
            self.state.add_overlay(name, mask, kind=kind)
        for name, centres in (picks or {}).items():
            self.state.add_picks(name, centres)
        state = self.state
        self.slider = ipw.IntSlider(
            value=state.index, min=0, max=max(state.n_slices - 1, 1), description="slice",
            continuous_update=True, layout=ipw.Layout(width="98%"),
        )
        if state.n_slices == 1:  # a 2D image: no slice to choose, no dead slider
            self.slider.layout.display = "none"
            self.slider.disabled = True
        lo, hi = float(state.volume.min()), float(state.volume.max())
        if not hi > lo:
            hi = lo + 1.0
        self.contrast = ipw.FloatRangeSlider(
            value=(max(lo, state.vmin), min(hi, state.vmax)), min=lo, max=hi,
            step=(hi - lo) / 200, description="contrast", readout_format=".2f",
            layout=ipw.Layout(width="98%"),
        )
        self.zoom = ipw.FloatSlider(value=1.0, min=1.0, max=8.0, step=0.25, description="zoom")
        self.slider.observe(lambda change: state.set_index(change["new"]), names="value")
        self.contrast.observe(lambda change: state.set_contrast(*change["new"]), names="value")
        self.zoom.observe(lambda change: state.set_zoom(change["new"]), names="value")

        self.axes = self.figure.add_subplot(1, 1, 1)
        self.axes.set_axis_off()
        self.image_artist = self.axes.imshow(
            state.image(), cmap=cmap, vmin=state.vmin, vmax=state.vmax, interpolation="nearest"
        )
        self._overlay_artists: dict[str, Any] = {}
        self._pick_artists: dict[str, Any] = {}
        self._title()
        self._draw_layers()
        self.figure.tight_layout()
        state.on_change(self._on_state)
        self.figure.canvas.mpl_connect("scroll_event", self._on_scroll)
        self._assemble(self.slider, ipw.HBox([self.contrast, self.zoom]))

    def _title(self) -> None:
        if self.state.n_slices == 1:
            return
        axis = "ZYX"[self.state.axis]
        self.axes.set_title(f"{axis} = {self.state.index} / {self.state.n_slices - 1}")

    def _colour(self, name: str, position: int) -> str:
        import matplotlib as mpl

        entry = self.state.overlays.get(name) or self.state.picks.get(name)
        colours = mpl.colormaps["tab10"].colors
        return entry.get("color") or mpl.colors.to_hex(colours[position % 10])

    def _draw_layers(self) -> None:
        import matplotlib as mpl

        for artist in [*self._overlay_artists.values(), *self._pick_artists.values()]:
            artist.remove()
        self._overlay_artists, self._pick_artists = {}, {}
        handles = []
        for position, name in enumerate(self.state.legend_names()):
            colour = self._colour(name, position)
            if name in self.state.overlays:
                entry = self.state.overlays[name]
                if not entry["visible"]:
                    continue
                values = self.state.overlay_slice(name)
                if entry["kind"] == "mask":
                    rgba = np.zeros((*values.shape, 4), np.float32)
                    rgba[values > 0] = (*mpl.colors.to_rgb(colour), 0.4)
                    artist = self.axes.imshow(rgba, interpolation="nearest")
                else:
                    shown = np.ma.masked_equal(values.astype(int), 0)
                    artist = self.axes.imshow(
                        shown, cmap="tab10", alpha=0.45, vmin=1, vmax=10,
                        interpolation="nearest",
                    )
                self._overlay_artists[name] = artist
                if entry["kind"] == "mask":
                    handles.append(mpl.patches.Patch(color=colour, alpha=0.6, label=name))
                else:  # one entry per label value, in the colour tab10 gives it
                    tab10 = mpl.colormaps["tab10"].colors
                    handles += [
                        mpl.patches.Patch(color=tab10[min(max(v, 1), 10) - 1], alpha=0.6,
                                          label=f"{name}: {entry['label_names'].get(v, v)}")
                        for v in entry.get("values", [])]
            else:
                entry = self.state.picks[name]
                if not entry["visible"]:
                    continue
                points = self.state.picks_on_slice(name)
                artist = self.axes.scatter(
                    points[:, 1], points[:, 0], s=80, facecolors="none", edgecolors=colour,
                    linewidths=1.5, label=name,
                )
                self._pick_artists[name] = artist
                handles.append(artist)
        legend = self.axes.get_legend()
        if legend is not None:
            legend.remove()
        if handles:
            self.axes.legend(handles=handles, loc="upper right", fontsize="small",
                             framealpha=0.7)

    def _on_state(self, event: str, value: Any) -> None:
        state = self.state
        if event == "index":
            self.image_artist.set_data(state.image())
            self.slider.value = state.index
            self._title()
            self._draw_layers()
        elif event == "contrast":
            self.image_artist.set_clim(state.vmin, state.vmax)
        elif event == "zoom":
            row0, row1, col0, col1 = value
            self.axes.set_xlim(col0 - 0.5, col1 - 0.5)
            self.axes.set_ylim(row1 - 0.5, row0 - 0.5)
        elif event in ("overlays", "picks"):
            self._draw_layers()
        self.redraw()

    def _on_scroll(self, event: Any) -> None:
        if event.inaxes is self.axes:
            self.state.set_index(self.state.index + (1 if event.button == "up" else -1))


# --- BoxPicker ------------------------------------------------------------------------------


class BoxPicker(_View):
    """Click to box examples, shift-click (or right-click) to remove; saved as you go.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) array_like, Image or BoxPickerState
    box_size : int, default 64
    path : str or path-like, optional
        Where boxes are saved as they are made (see :class:`BoxPickerState`).
    sets : sequence of str, default ("positive", "negative")
    figsize : (float, float), default (6, 6)
    **options
        Passed to :class:`BoxPickerState` (``resume``, ``overwrite``).
    """

    def __init__(
        self,
        image: object,
        *,
        box_size: int = 64,
        path: Any = None,
        sets: tuple[str, ...] = ("positive", "negative"),
        figsize: tuple[float, float] = (6.0, 6.0),
        **options: Any,
    ) -> None:
        super().__init__(figsize)
        ipw = self._ipw
        if isinstance(image, BoxPickerState):
            self.state = image
        else:
            self.state = BoxPickerState(image, box_size=box_size, path=path, sets=sets, **options)
        state = self.state
        self.set_buttons = ipw.ToggleButtons(options=state.sets, value=state.active_set,
                                             description="set")
        self.box_size = ipw.IntSlider(value=state.box_size, min=4,
                                      max=min(state.image.shape[-2:]), step=2,
                                      description="box size")
        self.slider = None
        if state.ndim == 3:
            self.slider = ipw.IntSlider(value=state.slice_index, min=0,
                                        max=state.image.shape[0] - 1, description="slice",
                                        layout=ipw.Layout(width="98%"))
            self.slider.observe(lambda change: state.set_slice(change["new"]), names="value")
        self.status = ipw.HTML()
        self.set_buttons.observe(lambda change: state.set_active(change["new"]), names="value")
        self.box_size.observe(lambda change: state.set_box_size(change["new"]), names="value")

        self.axes = self.figure.add_subplot(1, 1, 1)
        self.axes.set_axis_off()
        plane = self._plane()
        low, high = np.percentile(plane, [1, 99])
        self.image_artist = self.axes.imshow(plane, cmap="gray", vmin=low, vmax=high)
        self._patches: list[Any] = []
        self._draw_boxes()
        self.figure.tight_layout()
        state.on_change(self._on_state)
        self.figure.canvas.mpl_connect("button_press_event", self._on_click)
        self._assemble(ipw.HBox([self.set_buttons, self.box_size]), self.slider, self.status)

    def _plane(self) -> np.ndarray:
        state = self.state
        return state.image[state.slice_index] if state.ndim == 3 else state.image

    def _draw_boxes(self) -> None:
        import matplotlib as mpl

        for patch in self._patches:
            patch.remove()
        self._patches = []
        size = self.state.box_size
        for position, name in enumerate(self.state.sets):
            colour = _SET_COLOURS[position % len(_SET_COLOURS)]
            for row, col in self.state.boxes_on_slice(name):
                patch = mpl.patches.Rectangle(
                    (col - size / 2 - 0.5, row - size / 2 - 0.5), size, size, fill=False,
                    edgecolor=colour, linewidth=1.5,
                )
                self.axes.add_patch(patch)
                self._patches.append(patch)
        counts = ", ".join(f"{k}: {v}" for k, v in self.state.counts().items())
        where = f" — saved to {self.state.path.parent}" if self.state.path else ""
        self.status.value = f"<b>{counts}</b>{where}"

    def _on_state(self, event: str, value: Any) -> None:
        if event == "slice":
            self.image_artist.set_data(self._plane())
            if self.slider is not None and self.slider.value != value:
                self.slider.value = value
        elif event == "active_set" and self.set_buttons.value != value:
            self.set_buttons.value = value
        if event in ("boxes", "slice", "box_size"):
            self._draw_boxes()
            self.redraw()

    def _on_click(self, event: Any) -> None:
        if event.inaxes is not self.axes or event.xdata is None or _navigating(self.figure):
            return
        remove = _mouse_modifier(event, "shift") or event.button == 3
        self.state.click(event.ydata, event.xdata, shift=remove)


# --- MaskPainter ----------------------------------------------------------------------------


class MaskPainter(_View):
    """Paint (and erase) binary masks on tiles with a round pen; undo; saved after each stroke.

    Parameters
    ----------
    tiles : (N, T, T) array_like or MaskPainterState
    pen_size : float, default 5
    path : str or path-like, optional
        ``.mrc`` or ``.npz`` file the masks are saved to as they are painted.
    figsize : (float, float), default (5, 5)
    **options
        Passed to :class:`MaskPainterState`.
    """

    def __init__(
        self,
        tiles: object,
        *,
        pen_size: float = 5.0,
        path: Any = None,
        figsize: tuple[float, float] = (5.0, 5.0),
        **options: Any,
    ) -> None:
        super().__init__(figsize)
        ipw = self._ipw
        if isinstance(tiles, MaskPainterState):
            self.state = tiles
        else:
            self.state = MaskPainterState(tiles, pen_size=pen_size, path=path, **options)
        state = self.state
        self.tile_slider = ipw.IntSlider(value=0, min=0, max=max(0, state.n_tiles - 1),
                                         description="tile")
        self.pen = ipw.FloatSlider(value=state.pen_size, min=1, max=31, step=1,
                                   description="pen size")
        self.mode = ipw.ToggleButtons(options=["paint", "erase"], value="paint")
        self.undo_button = ipw.Button(description="Undo", icon="undo")
        self.status = ipw.HTML()
        self.tile_slider.observe(lambda change: state.set_tile(change["new"]), names="value")
        self.pen.observe(lambda change: state.set_pen_size(change["new"]), names="value")
        self.mode.observe(lambda change: state.set_erase(change["new"] == "erase"),
                          names="value")
        self.undo_button.on_click(lambda _button: state.undo())

        self.axes = self.figure.add_subplot(1, 1, 1)
        self.axes.set_axis_off()
        tile = state.tiles[state.tile_index]
        self.tile_artist = self.axes.imshow(tile, cmap="gray")
        self.mask_artist = self.axes.imshow(self._rgba(), interpolation="nearest")
        self._drawing = False
        self._show_tile()
        self.figure.tight_layout()
        state.on_change(self._on_state)
        canvas = self.figure.canvas
        canvas.mpl_connect("button_press_event", self._on_press)
        canvas.mpl_connect("motion_notify_event", self._on_move)
        canvas.mpl_connect("button_release_event", self._on_release)
        self._assemble(ipw.HBox([self.tile_slider, self.pen]),
                       ipw.HBox([self.mode, self.undo_button]), self.status)

    def _rgba(self) -> np.ndarray:
        mask = self.state.masks[self.state.tile_index]
        rgba = np.zeros((*mask.shape, 4), np.float32)
        rgba[mask] = (1.0, 0.2, 0.2, 0.45)
        return rgba

    def _show_tile(self) -> None:
        tile = self.state.tiles[self.state.tile_index]
        self.tile_artist.set_data(tile)
        self.tile_artist.set_clim(*np.percentile(tile, [1, 99]))
        self.mask_artist.set_data(self._rgba())
        painted = int(self.state.painted().sum())
        self.axes.set_title(f"tile {self.state.tile_index + 1} / {self.state.n_tiles}")
        self.status.value = f"{painted} of {self.state.n_tiles} tiles painted"

    def _on_state(self, event: str, value: Any) -> None:
        if event in ("tile", "mask"):
            if self.tile_slider.value != self.state.tile_index:
                self.tile_slider.value = self.state.tile_index
            self._show_tile()
            self.redraw()
        elif event == "erase":
            self.mode.value = "erase" if value else "paint"

    def _on_press(self, event: Any) -> None:
        if event.inaxes is not self.axes or event.xdata is None or _navigating(self.figure):
            return
        self._drawing = True
        self.state.begin_stroke(event.ydata, event.xdata)

    def _on_move(self, event: Any) -> None:
        if self._drawing and event.inaxes is self.axes and event.xdata is not None:
            self.state.extend_stroke(event.ydata, event.xdata)

    def _on_release(self, event: Any) -> None:
        if self._drawing:
            self._drawing = False
            self.state.end_stroke()


# --- TrainingMonitor ------------------------------------------------------------------------


class TrainingMonitor(_View):
    """Live loss curves, epoch progress and a Stop button for Keras training.

    Use :meth:`callback` with ``model.fit(callbacks=[...])`` or with any cryoml estimator's
    ``fit(..., callbacks=[...])``, or :meth:`attach` around code that trains (it hooks every
    ``keras.Model.fit`` in the block). Because a busy kernel
    does not receive button clicks, :meth:`run_in_background` runs the training in a thread so
    that Stop works; its result is a ``concurrent.futures.Future``.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The loss whose minimum marks (and restores) the best epoch.
    figsize : (float, float), default (6, 3.2)
    """

    def __init__(self, *, monitor: str = "val_loss",
                 figsize: tuple[float, float] = (6.0, 3.2)) -> None:
        super().__init__(figsize)
        ipw = self._ipw
        self.state = TrainingMonitorState(monitor=monitor)
        self.progress = ipw.IntProgress(value=0, min=0, max=1, description="epochs")
        self.status = ipw.HTML("idle")
        self.stop_button = ipw.Button(description="Stop", icon="stop", button_style="danger")
        self.stop_button.on_click(lambda _button: self.state.request_stop())
        self.axes = self.figure.add_subplot(1, 1, 1)
        from matplotlib.ticker import MaxNLocator

        self.axes.set_xlabel("epoch")
        self.axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        self.axes.set_ylabel("loss")
        self._lines: dict[str, Any] = {}
        self._best = None
        self.figure.tight_layout()
        self.state.on_change(self._on_state)
        self._assemble(ipw.HBox([self.progress, self.stop_button, self.status]))

    def _on_state(self, event: str, value: Any) -> None:
        state = self.state
        if event == "status":
            self.progress.max = max(1, state.epochs or 1)
            self.status.value = state.status
            self.stop_button.disabled = state.status not in ("running",)
        elif event == "epoch":
            self.progress.value = state.epoch
            for key, values in state.history.items():
                if "loss" not in key:
                    continue
                if key not in self._lines:
                    (self._lines[key],) = self.axes.plot([], [], marker="o", ms=3, label=key)
                    self.axes.legend(fontsize="small")
                self._lines[key].set_data(np.arange(1, len(values) + 1), values)
            if self._best is not None:
                self._best.remove()
                self._best = None
            if state.best_epoch is not None:
                self._best = self.axes.axvline(state.best_epoch + 1, color="0.5", ls="--")
            self.axes.relim()
            self.axes.autoscale_view()
            best = "" if state.best_epoch is None else (
                f", best epoch {state.best_epoch + 1} ({state.best_value:.4g})")
            self.status.value = f"epoch {state.epoch}/{state.epochs or '?'}{best}"
            self.redraw()

    def callback(self, *, restore_best_weights: bool = True) -> Any:
        """A Keras callback reporting to this monitor (stop button, best weights)."""
        return self.state.keras_callback(restore_best_weights=restore_best_weights)

    @contextlib.contextmanager
    def attach(self, *, restore_best_weights: bool = True) -> Iterator[Any]:
        """Within the block, every ``keras.Model.fit`` reports to this monitor."""
        from cryoml.widgets._keras import attach_monitor

        with attach_monitor(self.state, restore_best_weights=restore_best_weights) as callback:
            yield callback

    def run_in_background(self, function: Callable[..., Any], *args: Any,
                          **kwargs: Any) -> concurrent.futures.Future:
        """Run ``function(*args, **kwargs)`` in a thread with the monitor attached.

        Returns a Future; call ``.result()`` (in a later cell) to wait for it and get the
        trained estimator. The kernel stays free, so the Stop button is received.
        """
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)

        def job() -> Any:
            with self.attach():
                target = function
                owner = getattr(function, "__self__", None)
                if owner is not None and getattr(function, "__name__", "") == "fit":
                    target = owner.fit  # looked up again, so that model.fit gets the hook
                return target(*args, **kwargs)

        future = executor.submit(job)
        executor.shutdown(wait=False)
        return future


# --- PRExplorer -----------------------------------------------------------------------------


class PRExplorer(_View):
    """Threshold slider → picks on the micrograph, point on the PR curve, P/R/F-beta read-out.

    Parameters
    ----------
    state : PRState
        Scored, judged picks (see :meth:`PRState.from_picks`).
    micrograph : (Y, X) array_like or Image, optional
        Shown with the kept picks (green: true, red: false) and the true centres.
    true_centres : (M, 2) array_like or Particles, optional
    box_size : int, optional
        Radius of the drawn circles (box / 2); default 20 px.
    figsize : (float, float), default (10, 4.5)
    """

    def __init__(
        self,
        state: PRState,
        *,
        micrograph: object | None = None,
        true_centres: object | None = None,
        box_size: int | None = None,
        figsize: tuple[float, float] = (10.0, 4.5),
    ) -> None:
        super().__init__(figsize)
        ipw = self._ipw
        if not isinstance(state, PRState):
            raise CryomlError(
                f"PRExplorer needs a PRState; got {type(state).__name__}. Build one with "
                "PRState(scores, is_true_positive, n_true) or PRState.from_picks(...)."
            )
        self.state = state
        low, high = state.range
        self.slider = ipw.FloatSlider(
            value=float(np.clip(state.threshold, low, high)), min=low, max=high,
            step=max((high - low) / 500, 1e-6), description="threshold",
            readout_format=".3f", layout=ipw.Layout(width="60%"),
        )
        self.best_button = ipw.Button(description=f"F{state.beta:g}-optimal")
        self.readout = ipw.HTML()
        self.slider.observe(lambda change: state.set_threshold(change["new"]), names="value")
        self.best_button.on_click(lambda _button: state.use_best())

        import matplotlib as mpl

        with_image = micrograph is not None and state.centres is not None
        self.image_axes = self.figure.add_subplot(1, 2, 1) if with_image else None
        self.pr_axes = self.figure.add_subplot(1, 2, 2) if with_image else (
            self.figure.add_subplot(1, 1, 1))
        self._radius = (box_size or 40) / 2
        self._kept_artists: list[Any] = []
        if with_image:
            data = getattr(micrograph, "data", micrograph)
            data = np.asarray(data, dtype=np.float32)
            self.image_axes.imshow(data, cmap="gray", vmin=np.percentile(data, 1),
                                   vmax=np.percentile(data, 99))
            self.image_axes.set_axis_off()
            handles = [
                mpl.lines.Line2D([], [], ls="none", marker="o", mfc="none", mec=colour, ms=8,
                                 label=label)
                for colour, label in (("#2ca02c", "kept pick, true"),
                                      ("#d62728", "kept pick, false"))]
            if true_centres is not None:
                truth = np.asarray(getattr(true_centres, "centres", true_centres), dtype=float)
                handles.insert(0, self.image_axes.scatter(
                    truth[:, 1], truth[:, 0], s=6, c="#1f77b4", label="true centre"))
            self.image_axes.legend(handles=handles, loc="upper center", fontsize="small",
                                   bbox_to_anchor=(0.5, -0.01), ncol=len(handles),
                                   framealpha=0.8)
        axes = self.pr_axes
        axes.plot(state.recall, state.precision, color="0.3", lw=1.5,
                  label=f"PR (AP {state.average_precision:.2f})")
        best = state.best
        axes.plot([best["recall"]], [best["precision"]], marker="*", ms=14, color="#ff7f0e",
                  ls="none", label=f"F{state.beta:g} optimum ({best['threshold']:.3g})")
        (self.point_artist,) = axes.plot([], [], "o", ms=9, color="#d62728", label="threshold")
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.set_xlim(0, 1.02)
        axes.set_ylim(0, 1.02)
        axes.legend(loc="lower left", fontsize="small")
        self._update(state.point())
        self.figure.tight_layout()
        state.on_change(lambda event, value: self._update(value) if event == "threshold"
                        else None)
        self._assemble(ipw.HBox([self.slider, self.best_button]), self.readout)

    def _update(self, point: dict[str, float]) -> None:
        self.point_artist.set_data([point["recall"]], [point["precision"]])
        if abs(self.slider.value - point["threshold"]) > 1e-12:
            self.slider.value = float(np.clip(point["threshold"], self.slider.min,
                                              self.slider.max))
        self.readout.value = (
            f"threshold <b>{point['threshold']:.3f}</b>: {point['n_kept']} picks kept, "
            f"precision <b>{point['precision']:.3f}</b>, recall <b>{point['recall']:.3f}</b>, "
            f"F{self.state.beta:g} <b>{point['fbeta']:.3f}</b>"
        )
        if self.image_axes is not None:
            for artist in self._kept_artists:
                artist.remove()
            kept = self.state.kept()
            self._kept_artists = []
            for hits, colour in ((True, "#2ca02c"), (False, "#d62728")):
                chosen = kept & (self.state.is_true_positive == hits)
                points = self.state.centres[chosen]
                self._kept_artists.append(self.image_axes.scatter(
                    points[:, 1], points[:, 0], s=(self._radius / 2) ** 2, facecolors="none",
                    edgecolors=colour, linewidths=1.2))
        self.redraw()


# --- EmbeddingExplorer ----------------------------------------------------------------------


def _montage(images: np.ndarray, columns: int) -> np.ndarray:
    n, height, width = images.shape
    rows = int(np.ceil(n / columns))
    board = np.full((rows * height, columns * width), np.nan, np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        board[r * height : (r + 1) * height, c * width : (c + 1) * width] = image
    return board


class EmbeddingExplorer(_View):
    """Scatter of an embedding coloured by class or cluster; selection → slices and average.

    Double-click a point to select it (shift adds), or draw a lasso around several; the
    selected subtomograms' central slices and their average appear on the right.

    Parameters
    ----------
    embedding : (N, 2) array_like or EmbeddingState
    images, labels, clusters, class_names
        See :class:`EmbeddingState`.
    max_shown : int, default 16
        Central slices shown in the gallery.
    figsize : (float, float), default (10, 5)
    """

    def __init__(
        self,
        embedding: object,
        *,
        images: object | None = None,
        labels: object | None = None,
        clusters: object | None = None,
        class_names: Any = None,
        max_shown: int = 16,
        figsize: tuple[float, float] = (10.0, 5.0),
    ) -> None:
        super().__init__(figsize)
        ipw = self._ipw
        if isinstance(embedding, EmbeddingState):
            self.state = embedding
        else:
            self.state = EmbeddingState(embedding, images=images, labels=labels,
                                        clusters=clusters, class_names=class_names)
        state = self.state
        self.max_shown = int(max_shown)
        options = list(state.colourings) or ["none"]
        self.colour_menu = ipw.Dropdown(options=options, value=options[0],
                                        description="colour by")
        self.clear_button = ipw.Button(description="Clear selection")
        self.status = ipw.HTML("click a point or draw a lasso")
        if state.colourings:
            self.colour_menu.observe(lambda change: state.set_colour_by(change["new"]),
                                     names="value")
        self.clear_button.on_click(lambda _button: state.clear())

        grid = self.figure.add_gridspec(2, 2, width_ratios=(1.3, 1))
        self.scatter_axes = self.figure.add_subplot(grid[:, 0])
        self.gallery_axes = self.figure.add_subplot(grid[0, 1])
        self.average_axes = self.figure.add_subplot(grid[1, 1])
        for axes in (self.gallery_axes, self.average_axes):
            axes.set_axis_off()
        xy = state.embedding
        self.points = self.scatter_axes.scatter(xy[:, 0], xy[:, 1], c=np.zeros(len(xy)), s=10,
                                               cmap="tab20")
        (self.selected_artist,) = self.scatter_axes.plot([], [], "o", ms=7, mfc="none",
                                                         mec="k")
        self.scatter_axes.set_xticks([])
        self.scatter_axes.set_yticks([])
        self._colour()
        self._show_selection()
        self.figure.tight_layout()
        state.on_change(self._on_state)
        from matplotlib.widgets import LassoSelector

        self.lasso = LassoSelector(self.scatter_axes, self._on_lasso, button=1)
        self.figure.canvas.mpl_connect("button_press_event", self._on_click)
        self._assemble(ipw.HBox([self.colour_menu, self.clear_button]), self.status)

    def _colour(self) -> None:
        import matplotlib as mpl

        state = self.state
        values = state.colours()
        legend = self.scatter_axes.get_legend()
        if legend is not None:
            legend.remove()
        if values is not None:
            palette = mpl.colormaps["tab20"].colors
            values = np.asarray(values).astype(int)
            self.points.set_array(None)
            self.points.set_facecolors([palette[v % len(palette)] for v in values])
            groups = np.unique(values)
            names = state.class_names if state.colour_by == "class" and state.class_names else None
            handles = [
                mpl.lines.Line2D([], [], ls="none", marker="o", ms=5,
                                 color=palette[v % len(palette)],
                                 label=names[v] if names is not None and v < len(names)
                                 else f"{state.colour_by} {v}")
                for v in groups[: len(palette)]
            ]
            title = state.colour_by if len(groups) <= len(palette) else (
                f"{state.colour_by}: first {len(palette)} of {len(groups)} (colours repeat)")
            self.scatter_axes.legend(handles=handles, title=title, fontsize="x-small",
                                     title_fontsize="small", loc="upper center",
                                     bbox_to_anchor=(0.5, -0.01), ncol=4, framealpha=0.8)
        self.scatter_axes.set_title(f"coloured by {state.colour_by or 'nothing'}")

    def _show_selection(self) -> None:
        state = self.state
        chosen = state.selected
        xy = state.embedding[chosen]
        self.selected_artist.set_data(xy[:, 0], xy[:, 1])
        self.gallery_axes.clear()
        self.average_axes.clear()
        self.gallery_axes.set_axis_off()
        self.average_axes.set_axis_off()
        text = f"{len(chosen)} selected"
        if len(chosen) and state.images is not None:
            slices = state.central_slices(chosen[: self.max_shown])
            columns = int(np.ceil(np.sqrt(len(slices))))
            self.gallery_axes.imshow(_montage(slices, columns), cmap="gray")
            self.gallery_axes.set_title(f"central slices ({len(slices)} shown)", fontsize=9)
            self.average_axes.imshow(state.average(), cmap="gray")
            self.average_axes.set_title(f"average of {len(chosen)}", fontsize=9)
            for name, values in state.colourings.items():
                counts = np.bincount(values[chosen])
                top = int(np.argmax(counts))
                label = state.class_names[top] if (
                    name == "class" and state.class_names and top < len(state.class_names)
                ) else str(top)
                text += f"; most common {name}: {label} ({counts[top]})"
        self.status.value = text

    def _on_state(self, event: str, value: Any) -> None:
        if event == "colour_by":
            self._colour()
        elif event == "selection":
            self._show_selection()
        self.redraw()

    def _on_lasso(self, vertices: Any) -> None:
        if len(vertices) >= 3:
            self.state.select_in_polygon(vertices)

    def _on_click(self, event: Any) -> None:
        if event.inaxes is self.scatter_axes and event.xdata is not None and event.dblclick:
            self.state.select_nearest(event.xdata, event.ydata,
                                      add=_mouse_modifier(event, "shift"))
