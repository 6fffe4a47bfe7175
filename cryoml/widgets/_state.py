"""Toolkit-free widget state: values, rules and change callbacks, no drawing.

Each interactive widget of :mod:`cryoml.widgets` is a *state* class defined here plus a view in
``_views.py``. The state owns the values (slice index, boxes, masks, threshold, selection),
checks them, writes annotations to disk as they are made and calls its change callbacks; the
view renders the state with ipywidgets/matplotlib and forwards user events to it. This module
must import neither ipywidgets nor matplotlib (napari/magicgui rule), so the logic is tested
without a kernel or a screen.

Callbacks registered with :meth:`Observable.on_change` are called as ``callback(event, value)``
where ``event`` names what changed (``"index"``, ``"boxes"``, ``"mask"``, ...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cryoml._errors import CryomlError
from cryoml._validation import check_array, check_positive

__all__ = [
    "BoxPickerState",
    "EmbeddingState",
    "MaskPainterState",
    "Observable",
    "PRState",
    "SliceState",
    "TrainingMonitorState",
    "cut_tiles",
]

logger = logging.getLogger(__name__)

Callback = Callable[[str, Any], None]


class Observable:
    """Holds change callbacks and calls them as ``callback(event, value)``."""

    def __init__(self) -> None:
        self._callbacks: list[Callback] = []

    def on_change(self, callback: Callback) -> Callback:
        """Register ``callback(event, value)``; returns it (usable as a decorator)."""
        if not callable(callback):
            raise CryomlError(f"callback must be callable; got {type(callback).__name__}.")
        self._callbacks.append(callback)
        return callback

    def remove_callback(self, callback: Callback) -> None:
        """Forget a callback registered with :meth:`on_change`."""
        self._callbacks = [c for c in self._callbacks if c is not callback]

    def _emit(self, event: str, value: Any = None) -> None:
        for callback in list(self._callbacks):
            callback(event, value)


def _as_data(
    array: object, name: str, ndim: int | Sequence[int]
) -> tuple[np.ndarray, float | None]:
    """Accept an ndarray or a cryoml Image; return (data, voxel size or None)."""
    voxel_size = None
    if hasattr(array, "data") and hasattr(array, "voxel_size"):
        voxel_size = array.voxel_size
        array = array.data
    return check_array(array, ndim=ndim, name=name, finite=False), voxel_size


# --- SliceViewer ----------------------------------------------------------------------------


class SliceState(Observable):
    """A slice through a volume with contrast, zoom, overlays and picks.

    Parameters
    ----------
    volume : (Z, Y, X) or (Y, X) array_like or Image
        What to show; a 2-D image is one slice.
    axis : {0, 1, 2}, default 0
        The axis sliced (0: Z, XY slices).
    index : int, optional
        First slice shown (default: the middle one).
    percentiles : (float, float), default (1, 99)
        Initial contrast limits as percentiles of the volume.

    Examples
    --------
    >>> import numpy as np
    >>> state = SliceState(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    >>> state.index, state.image().shape
    (1, (3, 4))
    """

    def __init__(
        self,
        volume: object,
        *,
        axis: int = 0,
        index: int | None = None,
        percentiles: tuple[float, float] = (1.0, 99.0),
    ) -> None:
        super().__init__()
        data, self.voxel_size = _as_data(volume, "volume", (2, 3))
        self.volume = data[None] if data.ndim == 2 else data
        if axis not in (0, 1, 2):
            raise CryomlError(f"'axis' must be 0 (Z), 1 (Y) or 2 (X); got {axis!r}.")
        self.axis = int(axis)
        self._index = self.n_slices // 2 if index is None else self._clamp(index)
        self.zoom = 1.0
        self.centre = (self.shape[0] / 2, self.shape[1] / 2)
        self.overlays: dict[str, dict[str, Any]] = {}
        self.picks: dict[str, dict[str, Any]] = {}
        self.vmin, self.vmax = 0.0, 1.0
        self.auto_contrast(percentiles)

    @property
    def n_slices(self) -> int:
        """Number of slices along the sliced axis."""
        return int(self.volume.shape[self.axis])

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of one slice."""
        shape = [s for i, s in enumerate(self.volume.shape) if i != self.axis]
        return int(shape[0]), int(shape[1])

    def _clamp(self, index: object) -> int:
        try:
            value = int(index)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise CryomlError(f"slice index must be an integer; got {index!r}.") from None
        return int(np.clip(value, 0, self.n_slices - 1))

    @property
    def index(self) -> int:
        """The slice shown (clamped to the volume)."""
        return self._index

    @index.setter
    def index(self, value: int) -> None:
        self.set_index(value)

    def set_index(self, value: int) -> None:
        """Show slice ``value`` (clamped to [0, n_slices - 1]); emits ``"index"``."""
        value = self._clamp(value)
        if value != self._index:
            self._index = value
            self._emit("index", value)

    def image(self) -> np.ndarray:
        """The current slice, (rows, columns)."""
        return np.take(self.volume, self._index, axis=self.axis)

    def set_contrast(self, vmin: float, vmax: float) -> None:
        """Set the display range; emits ``"contrast"``."""
        vmin, vmax = float(vmin), float(vmax)
        if not vmax > vmin:
            raise CryomlError(f"contrast needs vmin < vmax; got vmin={vmin}, vmax={vmax}.")
        self.vmin, self.vmax = vmin, vmax
        self._emit("contrast", (vmin, vmax))

    def auto_contrast(self, percentiles: tuple[float, float] = (1.0, 99.0)) -> None:
        """Set the display range to percentiles of the whole volume."""
        low, high = (float(p) for p in percentiles)
        if not 0 <= low < high <= 100:
            raise CryomlError(
                f"percentiles must satisfy 0 <= low < high <= 100; got {percentiles}."
            )
        sample = self.volume[:: max(1, self.volume.shape[0] // 16)]
        vmin, vmax = np.percentile(sample[np.isfinite(sample)], [low, high])
        if not vmax > vmin:
            vmax = vmin + 1.0
        self.set_contrast(vmin, vmax)

    def set_zoom(self, factor: float, centre: tuple[float, float] | None = None) -> None:
        """Zoom by ``factor`` (>= 1) about ``centre`` (row, column); emits ``"zoom"``."""
        factor = float(factor)
        if not factor >= 1.0:
            raise CryomlError(f"zoom factor must be >= 1; got {factor}.")
        self.zoom = factor
        if centre is not None:
            self.centre = (float(centre[0]), float(centre[1]))
        self._emit("zoom", self.view_window())

    def view_window(self) -> tuple[float, float, float, float]:
        """(row0, row1, col0, col1) of the visible region, kept inside the slice."""
        rows, cols = self.shape
        half_r, half_c = rows / (2 * self.zoom), cols / (2 * self.zoom)
        cr = float(np.clip(self.centre[0], half_r, rows - half_r))
        cc = float(np.clip(self.centre[1], half_c, cols - half_c))
        return cr - half_r, cr + half_r, cc - half_c, cc + half_c

    def add_overlay(
        self, name: str, volume: object, *, kind: str = "mask", color: str | None = None,
        label_names: dict[int, str] | None = None,
    ) -> None:
        """Overlay a mask (bool) or a label volume (integers, 0 = background).

        ``label_names`` names the values of a label volume (``{1: "membrane", 2:
        "ribosome"}``) for the legend, which has one entry (and colour) per value present.

        Raises
        ------
        CryomlError
            If the overlay's shape differs from the volume's or ``kind`` is unknown.
        """
        data, _ = _as_data(volume, f"overlay {name!r}", (2, 3))
        data = data[None] if data.ndim == 2 else data
        if data.shape != self.volume.shape:
            raise CryomlError(
                f"overlay {name!r} has shape {data.shape}; it must match the volume's "
                f"{self.volume.shape}."
            )
        if kind not in ("mask", "labels"):
            raise CryomlError(f"overlay kind must be 'mask' or 'labels'; got {kind!r}.")
        values = [int(v) for v in np.unique(data) if v != 0] if kind == "labels" else []
        self.overlays[name] = {"data": data, "kind": kind, "color": color, "visible": True,
                               "values": values, "label_names": dict(label_names or {})}
        self._emit("overlays", name)

    def set_overlay_visible(self, name: str, visible: bool) -> None:
        """Show or hide one overlay or pick set by name."""
        table = self.overlays if name in self.overlays else self.picks
        if name not in table:
            raise CryomlError(f"no overlay or picks named {name!r}; have {self.legend_names()}.")
        table[name]["visible"] = bool(visible)
        self._emit("overlays", name)

    def overlay_slice(self, name: str) -> np.ndarray:
        """The current slice of overlay ``name``."""
        return np.take(self.overlays[name]["data"], self._index, axis=self.axis)

    def add_picks(
        self, name: str, centres: object, *, radius: float | None = None, color: str | None = None
    ) -> None:
        """Show particle centres (Particles or (N, 3) Z, Y, X) near the current slice.

        ``radius`` (default: half the Particles' box size, else 2) is how far from the slice a
        centre may lie and still be drawn.
        """
        box = getattr(centres, "box_size", None)
        points = np.asarray(getattr(centres, "centres", centres), dtype=float)
        if points.size == 0:
            points = np.zeros((0, 3))
        if points.ndim != 2 or points.shape[1] != 3:
            raise CryomlError(
                f"picks {name!r} must be (N, 3) centres in (Z, Y, X); got shape {points.shape}."
            )
        if radius is None:
            radius = box / 2 if box else 2.0
        self.picks[name] = {
            "centres": points,
            "radius": float(radius),
            "color": color,
            "visible": True,
        }
        self._emit("picks", name)

    def picks_on_slice(self, name: str) -> np.ndarray:
        """(M, 2) in-slice (row, column) of the picks within ``radius`` of the current slice."""
        entry = self.picks[name]
        points = entry["centres"]
        near = np.abs(points[:, self.axis] - self._index) <= entry["radius"]
        return np.delete(points[near], self.axis, axis=1)

    def legend_names(self) -> list[str]:
        """Names of the overlays and pick sets, in the order added."""
        return [*self.overlays, *self.picks]


# --- BoxPicker ------------------------------------------------------------------------------


class BoxPickerState(Observable):
    """Boxes on an image or a volume's slices, in named sets, saved as each box is made.

    Every change rewrites the set's coordinate file atomically (``cryoml.io.write_coordinates``),
    so a kernel crash loses nothing; constructing the state again with the same ``path``
    continues from the saved boxes (``resume=True``).

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) array_like or Image
        What is boxed; boxes on a volume are (Z, Y, X) centres on the slice they were made on.
    box_size : int, default 64
        Box edge in pixels.
    path : str or path-like, optional
        Base name of the coordinate files; set ``s`` is saved to ``<stem>_<s><suffix>``.
        The suffix chooses the format: ``.json`` (EMAN2 info), ``.box`` (2-D only), ``.star``
        or ``.csv``. None keeps the boxes in memory only.
    sets : sequence of str, default ("positive", "negative")
        Names of the box sets; the first is active at start.
    resume : bool, default True
        Load boxes already saved under ``path``.
    overwrite : bool, default False
        With ``resume=False``, replace existing files instead of refusing.

    Raises
    ------
    CryomlError
        For a bad box size, a ``.box`` path with a volume, or existing files with
        ``resume=False`` and ``overwrite=False``.

    Examples
    --------
    >>> import numpy as np
    >>> state = BoxPickerState(np.zeros((64, 64), np.float32), box_size=16)
    >>> state.click(20, 30)
    'added'
    >>> state.boxes("positive").tolist()
    [[20.0, 30.0]]
    """

    def __init__(
        self,
        image: object,
        *,
        box_size: int = 64,
        path: str | os.PathLike | None = None,
        sets: Sequence[str] = ("positive", "negative"),
        resume: bool = True,
        overwrite: bool = False,
    ) -> None:
        super().__init__()
        self.image, self.voxel_size = _as_data(image, "image", (2, 3))
        self.ndim = self.image.ndim
        self.box_size = self._check_box(box_size)
        self.sets = [str(s) for s in sets]
        if not self.sets or len(set(self.sets)) != len(self.sets):
            raise CryomlError(f"'sets' must be distinct names, at least one; got {list(sets)}.")
        self.active_set = self.sets[0]
        self.slice_index = self.image.shape[0] // 2 if self.ndim == 3 else 0
        self._boxes = {s: np.zeros((0, self.ndim)) for s in self.sets}
        self.path = None if path is None else Path(path)
        if self.path is not None:
            suffix = self.path.suffix.lower()
            if suffix not in (".json", ".box", ".star", ".csv"):
                raise CryomlError(
                    f"{self.path}: box files must end in .json, .box, .star or .csv."
                )
            if suffix == ".box" and self.ndim == 3:
                raise CryomlError(
                    f"{self.path}: EMAN2 .box files hold 2-D boxes; use .json or .star for "
                    "boxes on a volume."
                )
            existing = [p for p in self.paths().values() if p.exists()]
            if existing and resume:
                self._load()
            elif existing and not overwrite:
                raise CryomlError(
                    f"{existing[0]} already exists; pass resume=True to continue from it, "
                    "overwrite=True to start afresh, or choose another path."
                )

    def _check_box(self, box_size: object) -> int:
        value = check_positive(box_size, name="box_size")
        if not float(value).is_integer():
            raise CryomlError(f"'box_size' must be a whole number of pixels; got {box_size}.")
        if int(value) > min(self.image.shape[-2:]):
            raise CryomlError(
                f"'box_size' {int(value)} is larger than the image ({self.image.shape[-2:]})."
            )
        return int(value)

    def paths(self) -> dict[str, Path]:
        """The file of each set (empty when no path was given)."""
        if self.path is None:
            return {}
        return {
            s: self.path.with_name(f"{self.path.stem}_{s}{self.path.suffix}") for s in self.sets
        }

    def _load(self) -> None:
        from cryoml.io import read_coordinates

        for name, path in self.paths().items():
            if path.exists():
                particles = read_coordinates(path, box_size=self.box_size)
                if len(particles) and particles.ndim != self.ndim:
                    raise CryomlError(
                        f"{path} holds {particles.ndim}-D boxes but the image is "
                        f"{self.ndim}-D; choose another path."
                    )
                centres = particles.centres.reshape(-1, self.ndim)
                outside = np.any((centres < 0) | (centres >= np.asarray(self.image.shape)), axis=1)
                if np.any(outside):
                    raise CryomlError(
                        f"{path} holds {int(outside.sum())} boxes outside this image of shape "
                        f"{self.image.shape}; it was made for another image. Pass "
                        "resume=False, overwrite=True to start afresh, or choose another path."
                    )
                self._boxes[name] = centres
        logger.info("resumed %s boxes from %s", self.counts(), self.path)

    def save(self, name: str | None = None) -> list[Path]:
        """Write one set (default: all) to its file atomically; returns the paths written."""
        from cryoml.io import write_coordinates

        written = []
        for set_name, path in self.paths().items():
            if name is None or name == set_name:
                write_coordinates(path, self.particles(set_name), overwrite=True)
                written.append(path)
        if written:
            self._emit("saved", written)
        return written

    def set_active(self, name: str) -> None:
        """Make ``name`` the set that clicks add to; emits ``"active_set"``."""
        if name not in self.sets:
            raise CryomlError(f"unknown box set {name!r}; choose one of {self.sets}.")
        self.active_set = name
        self._emit("active_set", name)

    def set_slice(self, index: int) -> None:
        """The volume slice that clicks refer to; emits ``"slice"``."""
        if self.ndim != 3:
            return
        self.slice_index = int(np.clip(int(index), 0, self.image.shape[0] - 1))
        self._emit("slice", self.slice_index)

    def set_box_size(self, box_size: int) -> None:
        """Change the box size (all sets); boxes pushed off the edge move inward."""
        self.box_size = self._check_box(box_size)
        for name in self.sets:
            self._boxes[name] = np.array([self._inside(c) for c in self._boxes[name]]).reshape(
                -1, self.ndim
            )
        self._emit("box_size", self.box_size)
        self.save()

    def boxes(self, name: str | None = None) -> np.ndarray:
        """(N, 2) or (N, 3) centres of one set (default: the active one)."""
        return self._boxes[self.active_set if name is None else name].copy()

    def counts(self) -> dict[str, int]:
        """Number of boxes per set."""
        return {name: len(b) for name, b in self._boxes.items()}

    def particles(self, name: str | None = None) -> Any:
        """One set as :class:`cryoml.io.Particles` with the box size."""
        from cryoml.io import Particles

        return Particles(self.boxes(name), box_size=self.box_size)

    def _inside(self, centre: np.ndarray) -> np.ndarray:
        centre = np.asarray(centre, dtype=float).copy()
        half = self.box_size / 2
        limits = np.asarray(self.image.shape[-2:], dtype=float)
        centre[-2:] = np.clip(np.round(centre[-2:]), half, limits - half)
        return centre

    def _centre(self, y: float, x: float) -> np.ndarray:
        point = [float(y), float(x)] if self.ndim == 2 else [self.slice_index, float(y), float(x)]
        return self._inside(np.asarray(point))

    def add(self, y: float, x: float, *, name: str | None = None) -> np.ndarray:
        """Add a box centred at (y, x) on the current slice (moved inward at the edges)."""
        name = self.active_set if name is None else name
        if name not in self.sets:
            raise CryomlError(f"unknown box set {name!r}; choose one of {self.sets}.")
        centre = self._centre(y, x)
        self._boxes[name] = np.vstack([self._boxes[name], centre[None]])
        self._emit("boxes", (name, self.boxes(name)))
        self.save(name)
        return centre

    def add_boxes(self, centres: object, *, name: str | None = None) -> None:
        """Add many boxes at once ((N, 2) or (N, 3) centres, or Particles) and save once.

        For boxes chosen by code (a previous session, a picker, a simulation's ground truth).
        """
        name = self.active_set if name is None else name
        if name not in self.sets:
            raise CryomlError(f"unknown box set {name!r}; choose one of {self.sets}.")
        points = np.asarray(getattr(centres, "centres", centres), dtype=float)
        points = points.reshape(-1, self.ndim) if points.size else np.zeros((0, self.ndim))
        if points.shape[1] != self.ndim:
            raise CryomlError(
                f"box centres must be (N, {self.ndim}) for a {self.ndim}-D image; got "
                f"{points.shape}."
            )
        moved = np.array([self._inside(p) for p in points]).reshape(-1, self.ndim)
        self._boxes[name] = np.vstack([self._boxes[name], moved])
        self._emit("boxes", (name, self.boxes(name)))
        self.save(name)

    def remove_near(self, y: float, x: float) -> tuple[str, int] | None:
        """Remove the nearest box on this slice whose square holds (y, x); None if none does."""
        best: tuple[float, str, int] | None = None
        for name, centres in self._boxes.items():
            if not len(centres):
                continue
            on_slice = np.ones(len(centres), bool)
            if self.ndim == 3:
                on_slice = np.rint(centres[:, 0]) == self.slice_index
            offset = np.abs(centres[:, -2:] - [float(y), float(x)])
            hit = on_slice & np.all(offset <= self.box_size / 2, axis=1)
            for i in np.flatnonzero(hit):
                distance = float(np.hypot(*offset[i]))
                if best is None or distance < best[0]:
                    best = (distance, name, int(i))
        if best is None:
            return None
        _, name, i = best
        self._boxes[name] = np.delete(self._boxes[name], i, axis=0)
        self._emit("boxes", (name, self.boxes(name)))
        self.save(name)
        return name, i

    def click(self, y: float, x: float, *, shift: bool = False) -> str:
        """A click: add a box to the active set, or with ``shift`` remove the box under it.

        Returns ``"added"``, ``"removed"`` or ``"none"`` (a shift-click on no box).
        """
        if shift:
            return "removed" if self.remove_near(y, x) is not None else "none"
        self.add(y, x)
        return "added"

    def boxes_on_slice(self, name: str) -> np.ndarray:
        """(M, 2) (row, column) centres of set ``name`` made on the current slice."""
        centres = self._boxes[name]
        if self.ndim == 2:
            return centres.copy()
        return centres[np.rint(centres[:, 0]) == self.slice_index][:, 1:]


# --- MaskPainter ----------------------------------------------------------------------------


def cut_tiles(volume: object, centres: object, *, tile_size: int = 64) -> np.ndarray:
    """Cut (N, T, T) tiles of a volume around (Z, Y, X) box centres (Particles or array).

    Tiles reaching outside the volume are moved inward, as the box picker does; works for
    images, masks and label volumes alike (the dtype is kept).

    Raises
    ------
    CryomlError
        Without centres, or with tiles larger than the slices.
    """
    data, _ = _as_data(volume, "volume", 3)
    points = np.asarray(getattr(centres, "centres", centres), dtype=float).reshape(-1, 3)
    if not len(points):
        raise CryomlError("no boxes to cut: box at least one positive first.")
    tile = int(tile_size)
    if tile > min(data.shape[1:]):
        raise CryomlError(f"'tile_size' {tile} is larger than the slices {data.shape[1:]}.")
    half = tile // 2
    tiles = []
    for z, y, x in np.rint(points).astype(int):
        y = int(np.clip(y, half, data.shape[1] - (tile - half)))
        x = int(np.clip(x, half, data.shape[2] - (tile - half)))
        z = int(np.clip(z, 0, data.shape[0] - 1))
        tiles.append(data[z, y - half : y - half + tile, x - half : x - half + tile])
    return np.stack(tiles)



class MaskPainterState(Observable):
    """Binary masks painted on tiles with a round pen; undo; saved after every stroke.

    Parameters
    ----------
    tiles : (N, T, T) or (T, T) array_like
        The tiles to paint on (e.g. the positive boxes, see :meth:`from_boxes`).
    masks : (N, T, T) array_like of bool, optional
        Masks to start from.
    pen_size : float, default 5
        Pen diameter in pixels.
    path : str or path-like, optional
        ``.mrc`` (int8 stack) or ``.npz`` file rewritten atomically after every stroke and
        undo; with ``resume=True`` an existing file is loaded.
    resume : bool, default True
        Continue from masks saved at ``path``.
    overwrite : bool, default False
        With ``resume=False``, replace an existing file at ``path`` (at the first stroke)
        instead of refusing.
    undo_depth : int, default 50
        Strokes that can be undone.
    voxel_size : float, optional
        Å/pixel written into the ``.mrc`` header.

    Examples
    --------
    >>> import numpy as np
    >>> painter = MaskPainterState(np.zeros((1, 16, 16)), pen_size=3)
    >>> painter.stroke([(8, 2), (8, 12)])
    >>> int(painter.masks[0, 8].sum())  # x = 1..13: the stroke plus the pen's radius
    13
    >>> painter.undo()
    True
    >>> int(painter.masks.sum())
    0
    """

    def __init__(
        self,
        tiles: object,
        *,
        masks: object | None = None,
        pen_size: float = 5.0,
        path: str | os.PathLike | None = None,
        resume: bool = True,
        overwrite: bool = False,
        undo_depth: int = 50,
        voxel_size: float | None = None,
    ) -> None:
        super().__init__()
        self.voxel_size = voxel_size
        data = check_array(tiles, ndim=(2, 3), name="tiles")
        self.tiles = data[None] if data.ndim == 2 else data
        if masks is None:
            self.masks = np.zeros(self.tiles.shape, bool)
        else:
            masks = np.asarray(masks)
            masks = masks[None] if masks.ndim == 2 else masks
            if masks.shape != self.tiles.shape:
                raise CryomlError(
                    f"'masks' has shape {masks.shape}; it must match the tiles' "
                    f"{self.tiles.shape}."
                )
            self.masks = masks > 0
        self.pen_size = float(check_positive(pen_size, name="pen_size"))
        self.erase = False
        self.tile_index = 0
        self.undo_depth = int(undo_depth)
        self._undo: list[tuple[int, np.ndarray]] = []
        self._last: tuple[float, float] | None = None
        self.path = None if path is None else Path(path)
        if self.path is not None:
            if self.path.suffix.lower() not in (".mrc", ".npz"):
                raise CryomlError(f"{self.path}: masks are saved as .mrc or .npz.")
            if self.path.is_dir():
                raise CryomlError(f"{self.path} is a folder; give a .mrc or .npz file name.")
            if self.path.exists() and resume:
                self._load()
            elif self.path.exists() and not overwrite:
                # The first stroke would replace the painted masks with this fresh set.
                raise CryomlError(
                    f"{self.path} already exists; pass resume=True to continue from it, "
                    "overwrite=True to start afresh, or choose another path."
                )

    @classmethod
    def from_boxes(
        cls, volume: object, centres: object, *, tile_size: int = 64, **options: Any
    ) -> MaskPainterState:
        """Cut ``tile_size`` tiles around (Z, Y, X) box centres (Particles or array) to paint.

        Boxes reaching outside the volume are moved inward, as the box picker does.
        """
        options.setdefault("voxel_size", getattr(volume, "voxel_size", None))
        return cls(cut_tiles(volume, centres, tile_size=tile_size).astype(np.float32), **options)

    def set_masks(self, masks: object) -> None:
        """Replace all masks ((N, T, T), e.g. cut from a ground truth with :func:`cut_tiles`).

        Undoable like a stroke; saved at once.
        """
        masks = np.asarray(masks)
        if masks.shape != self.masks.shape:
            raise CryomlError(
                f"'masks' has shape {masks.shape}; it must match the tiles' {self.masks.shape}."
            )
        for index in range(self.n_tiles):
            self._undo.append((index, self.masks[index].copy()))
        del self._undo[: -self.undo_depth]
        self.masks = masks > 0
        self._emit("mask", self.tile_index)
        self.save()

    def _load(self) -> None:
        if self.path.suffix.lower() == ".mrc":
            import warnings

            from cryoml import CryomlWarning
            from cryoml.io import read_mrc

            with warnings.catch_warnings():  # masks need no voxel size
                warnings.simplefilter("ignore", CryomlWarning)
                saved = np.asarray(read_mrc(self.path).data)
        else:
            with np.load(self.path, allow_pickle=False) as archive:
                saved = archive["masks"]
        saved = saved.reshape((-1, *saved.shape[-2:]))
        if saved.shape != self.masks.shape:
            raise CryomlError(
                f"{self.path} holds masks of shape {saved.shape}, not {self.masks.shape}; "
                "pass resume=False or another path."
            )
        self.masks = saved > 0

    def save(self) -> Path | None:
        """Write all masks atomically to ``path`` (no-op without a path)."""
        if self.path is None:
            return None
        if self.path.suffix.lower() == ".mrc":
            from cryoml.io import write_mrc

            write_mrc(self.path, self.masks.astype(np.int8), voxel_size=self.voxel_size,
                      is_stack=True, overwrite=True)
        else:
            from cryoml.io import atomic_path

            with atomic_path(self.path, overwrite=True) as tmp, open(tmp, "wb") as handle:
                np.savez_compressed(handle, masks=self.masks)
        self._emit("saved", self.path)
        return self.path

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return int(self.tiles.shape[0])

    def set_tile(self, index: int) -> None:
        """Paint on tile ``index``; emits ``"tile"``."""
        index = int(index)
        if not 0 <= index < self.n_tiles:
            raise CryomlError(f"tile index must be in [0, {self.n_tiles - 1}]; got {index}.")
        self.tile_index = index
        self._emit("tile", index)

    def set_pen_size(self, size: float) -> None:
        """Pen diameter in pixels; emits ``"pen_size"``."""
        self.pen_size = float(check_positive(size, name="pen_size"))
        self._emit("pen_size", self.pen_size)

    def set_erase(self, erase: bool) -> None:
        """Switch between painting (False) and erasing (True); emits ``"erase"``."""
        self.erase = bool(erase)
        self._emit("erase", self.erase)

    def mask(self) -> np.ndarray:
        """The current tile's mask (a copy)."""
        return self.masks[self.tile_index].copy()

    def begin_stroke(self, y: float, x: float) -> None:
        """Pen down at (y, x): remembers the mask for undo and paints a dot."""
        self._undo.append((self.tile_index, self.masks[self.tile_index].copy()))
        del self._undo[: -self.undo_depth]
        self._last = None
        self.extend_stroke(y, x)

    def extend_stroke(self, y: float, x: float) -> None:
        """Pen moved to (y, x): paints (or erases) the segment from the last point."""
        if self._last is None and not self._undo:
            self.begin_stroke(y, x)
            return
        start = self._last if self._last is not None else (float(y), float(x))
        self._paint_segment(start, (float(y), float(x)))
        self._last = (float(y), float(x))
        self._emit("mask", self.tile_index)

    def end_stroke(self) -> None:
        """Pen up: the stroke is saved."""
        self._last = None
        self.save()

    def stroke(self, points: Iterable[tuple[float, float]], *, erase: bool | None = None) -> None:
        """Paint one stroke through ``points`` [(y, x), ...] and save it."""
        points = [tuple(p) for p in points]
        if not points:
            return
        previous = self.erase
        if erase is not None:
            self.erase = bool(erase)
        try:
            self.begin_stroke(*points[0])
            for y, x in points[1:]:
                self.extend_stroke(y, x)
            self.end_stroke()
        finally:
            self.erase = previous

    def _paint_segment(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        mask = self.masks[self.tile_index]
        radius = self.pen_size / 2
        length = float(np.hypot(end[0] - start[0], end[1] - start[1]))
        n = max(2, int(np.ceil(length / max(radius / 2, 0.5))) + 1)
        ys = np.linspace(start[0], end[0], n)
        xs = np.linspace(start[1], end[1], n)
        rows, cols = np.ogrid[: mask.shape[0], : mask.shape[1]]
        for y, x in zip(ys, xs, strict=True):
            disc = (rows - y) ** 2 + (cols - x) ** 2 <= radius**2
            mask[disc] = not self.erase

    def undo(self) -> bool:
        """Undo the last stroke (on whichever tile it was); False when nothing is left."""
        if not self._undo:
            return False
        index, previous = self._undo.pop()
        self.masks[index] = previous
        self.tile_index = index
        self._emit("mask", index)
        self.save()
        return True

    def painted(self) -> np.ndarray:
        """(N,) bool: which tiles have anything painted."""
        return self.masks.reshape(self.n_tiles, -1).any(axis=1)


# --- TrainingMonitor ------------------------------------------------------------------------


class TrainingMonitorState(Observable):
    """Loss curves and progress of a training run, and a stop request.

    Fed by :func:`cryoml.widgets.keras_callback` (a Keras callback adapter) or by any loop that
    calls :meth:`train_begin`, :meth:`batch_end`, :meth:`epoch_end` and :meth:`train_end`.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The logged value whose minimum marks the best epoch (falls back to ``loss``).

    Examples
    --------
    >>> state = TrainingMonitorState()
    >>> state.train_begin(epochs=2)
    >>> state.epoch_end(0, {"loss": 1.0, "val_loss": 0.9})  # True: the best epoch so far
    True
    >>> state.best_epoch, state.status
    (0, 'running')
    """

    def __init__(self, *, monitor: str = "val_loss") -> None:
        super().__init__()
        self.monitor = monitor
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded."""
        self.history: dict[str, list[float]] = {}
        self.epochs: int | None = None
        self.steps: int | None = None
        self.epoch = 0
        self.batch = 0
        self.best_epoch: int | None = None
        self.best_value = float("inf")
        self.stop_requested = False
        self.status = "idle"

    def train_begin(self, *, epochs: int | None = None, steps: int | None = None) -> None:
        """A run starts; emits ``"status"``."""
        self.epochs = None if epochs is None else int(epochs)
        self.steps = None if steps is None else int(steps)
        self.stop_requested = False
        self.status = "running"
        self._emit("status", self.status)

    def batch_end(self, batch: int) -> bool:
        """A batch ended; returns True when training should stop. Emits ``"batch"``."""
        self.batch = int(batch) + 1
        self._emit("batch", self.batch)
        return self.stop_requested

    def epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> bool:
        """An epoch ended with ``logs``; returns True when it is the best so far.

        Emits ``"epoch"`` with the history.
        """
        self.epoch = int(epoch) + 1
        for key, value in (logs or {}).items():
            try:
                self.history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
        key = self.monitor if self.monitor in (logs or {}) else "loss"
        value = float((logs or {}).get(key, np.nan))
        improved = bool(np.isfinite(value) and value < self.best_value)
        if improved:
            self.best_value, self.best_epoch = value, int(epoch)
        self._emit("epoch", self.history)
        return improved

    def request_stop(self) -> None:
        """Ask the run to stop after the current batch (the Stop button); emits ``"status"``."""
        self.stop_requested = True
        if self.status == "running":
            self.status = "stopping"
        self._emit("status", self.status)

    def train_end(self) -> None:
        """The run ended (normally or by a stop request); emits ``"status"``."""
        self.status = "stopped" if self.stop_requested else "finished"
        self._emit("status", self.status)

    def progress(self) -> float:
        """Fraction of epochs done (0 when the number of epochs is unknown)."""
        return float(self.epoch / self.epochs) if self.epochs else 0.0

    def keras_callback(self, *, restore_best_weights: bool = True) -> Any:
        """A Keras callback feeding this state (see :func:`cryoml.widgets.keras_callback`)."""
        from cryoml.widgets._keras import keras_callback

        return keras_callback(self, restore_best_weights=restore_best_weights)


# --- PRExplorer -----------------------------------------------------------------------------


class PRState(Observable):
    """Precision, recall and F-beta of scored picks as the threshold moves.

    Parameters
    ----------
    scores : (N,) array_like
        Score of each pick (at the lowest threshold, so that every pick is judged).
    is_true_positive : (N,) array_like of bool
        Whether each pick matched a true particle (``cryoml.metrics.match_points``).
    n_true : int
        Number of true particles (the recall denominator).
    centres : (N, 2) array_like, optional
        (Y, X) of the picks, for overlays.
    beta : float, default 2
        F-beta weight of recall (DeepEM chooses the threshold where F2 peaks).
    threshold : float, optional
        Start threshold (default: the F-beta-optimal one).

    Examples
    --------
    >>> state = PRState([0.9, 0.8, 0.3], [True, False, True], 2)
    >>> state.set_threshold(0.85)
    >>> state.point()["precision"], state.point()["recall"]
    (1.0, 0.5)
    """

    def __init__(
        self,
        scores: object,
        is_true_positive: object,
        n_true: int,
        *,
        centres: object | None = None,
        beta: float = 2.0,
        threshold: float | None = None,
    ) -> None:
        super().__init__()
        from cryoml import metrics

        self.scores = check_array(scores, ndim=1, name="scores").astype(float)
        self.is_true_positive = np.asarray(is_true_positive, dtype=bool).ravel()
        if self.is_true_positive.shape != self.scores.shape:
            raise CryomlError(
                f"'is_true_positive' has {self.is_true_positive.size} values for "
                f"{self.scores.size} scores; give one per pick."
            )
        if int(n_true) < 0:
            raise CryomlError(f"'n_true' must be >= 0; got {n_true}.")
        self.n_true = int(n_true)
        self.beta = float(check_positive(beta, name="beta"))
        self.centres = None
        if centres is not None:
            self.centres = np.asarray(getattr(centres, "centres", centres), dtype=float)
            if self.centres.shape != (len(self.scores), 2):
                raise CryomlError(
                    f"'centres' must be ({len(self.scores)}, 2) (Y, X); got "
                    f"{self.centres.shape}."
                )
        self.precision, self.recall, self.thresholds = metrics.precision_recall_curve(
            self.scores, self.is_true_positive, self.n_true
        )
        self.best = metrics.best_fbeta_threshold(
            self.scores, self.is_true_positive, self.n_true, beta=self.beta
        )
        self.average_precision = metrics.average_precision(self.precision, self.recall)
        start = self.best["threshold"] if threshold is None else threshold
        self.threshold = float(start) if np.isfinite(start) else 0.0

    @classmethod
    def from_picks(
        cls, picks: object, true_centres: object, *, radius: float, **options: Any
    ) -> PRState:
        """Judge scored picks (Particles with scores) against true centres within ``radius``."""
        from cryoml import metrics

        scores = getattr(picks, "scores", None)
        if scores is None:
            raise CryomlError("the picks carry no scores; the PR explorer needs scored picks.")
        centres = np.asarray(picks.centres, dtype=float)
        truth = np.asarray(getattr(true_centres, "centres", true_centres), dtype=float)
        matched, _ = metrics.match_points(centres, truth, radius)
        hits = np.zeros(len(centres), bool)
        hits[matched] = True
        return cls(scores, hits, len(truth), centres=centres, **options)

    @property
    def range(self) -> tuple[float, float]:
        """(lowest, highest) score: the slider's range."""
        if not len(self.scores):
            return 0.0, 1.0
        return float(self.scores.min()), float(self.scores.max())

    def set_threshold(self, value: float) -> None:
        """Move the threshold; emits ``"threshold"`` with :meth:`point`."""
        self.threshold = float(value)
        self._emit("threshold", self.point())

    def use_best(self) -> None:
        """Jump to the F-beta-optimal threshold."""
        self.set_threshold(self.best["threshold"])

    def kept(self) -> np.ndarray:
        """(N,) bool: the picks at or above the threshold."""
        return self.scores >= self.threshold

    def point(self) -> dict[str, float]:
        """Counts, precision, recall and F-beta at the current threshold."""
        from cryoml import metrics

        kept = self.kept()
        tp = int(np.sum(kept & self.is_true_positive))
        fp = int(np.sum(kept)) - tp
        fn = self.n_true - tp
        precision, recall, fbeta = metrics.precision_recall_fbeta(tp, fp, fn, beta=self.beta)
        return {
            "threshold": self.threshold,
            "n_kept": int(np.sum(kept)),
            "n_true_positive": tp,
            "precision": precision,
            "recall": recall,
            "fbeta": fbeta,
        }


# --- EmbeddingExplorer ----------------------------------------------------------------------


def _inside_polygon(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even–odd rule: which (x, y) points lie inside the polygon (no matplotlib needed)."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), bool)
    xv, yv = vertices[:, 0], vertices[:, 1]
    for i in range(len(vertices)):
        x1, y1, x2, y2 = xv[i - 1], yv[i - 1], xv[i], yv[i]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_cross)
    return inside


class EmbeddingState(Observable):
    """A 2-D embedding (t-SNE, features) of subtomograms, colourings and a selection.

    Parameters
    ----------
    embedding : (N, 2) array_like
        One point per subtomogram.
    images : (N, Z, Y, X) or (N, Y, X) array_like, optional
        The subtomograms (their central Z slices are shown) or ready 2-D views.
    labels : (N,) array_like of int, optional
        True classes.
    clusters : (N,) array_like of int, optional
        Cluster assignments (k-means).
    class_names : sequence of str, optional
        Names of the label ids.

    Examples
    --------
    >>> import numpy as np
    >>> state = EmbeddingState(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]),
    ...                        images=np.arange(12.0).reshape(3, 2, 2))
    >>> state.select_in_polygon([(-1, -1), (2, -1), (2, 2), (-1, 2)]).tolist()
    [0, 1]
    >>> state.average().tolist()
    [[2.0, 3.0], [4.0, 5.0]]
    """

    def __init__(
        self,
        embedding: object,
        *,
        images: object | None = None,
        labels: object | None = None,
        clusters: object | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.embedding = check_array(embedding, ndim=2, name="embedding").astype(float)
        if self.embedding.shape[1] != 2:
            raise CryomlError(
                f"'embedding' must be (N, 2); got {self.embedding.shape}. Reduce it first "
                "(e.g. sklearn.manifold.TSNE)."
            )
        n = len(self.embedding)
        self.images = None
        if images is not None:
            images = check_array(images, ndim=(3, 4), name="images")
            if len(images) != n:
                raise CryomlError(f"'images' holds {len(images)} items for {n} points.")
            self.images = images
        self.colourings: dict[str, np.ndarray] = {}
        for name, values in (("class", labels), ("cluster", clusters)):
            if values is not None:
                values = np.asarray(values).ravel().astype(int)
                if values.shape != (n,):
                    raise CryomlError(f"'{name}' values: {values.size} given for {n} points.")
                self.colourings[name] = values
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.colour_by = next(iter(self.colourings), None)
        self.selected = np.zeros(0, dtype=int)

    def set_colour_by(self, name: str) -> None:
        """Colour points by ``"class"`` or ``"cluster"``; emits ``"colour_by"``."""
        if name not in self.colourings:
            raise CryomlError(f"no colouring {name!r}; have {list(self.colourings)}.")
        self.colour_by = name
        self._emit("colour_by", name)

    def colours(self) -> np.ndarray | None:
        """(N,) integer values of the current colouring (None without one)."""
        return None if self.colour_by is None else self.colourings[self.colour_by]

    def select(self, indices: object, *, add: bool = False) -> np.ndarray:
        """Select points by index (``add`` to extend); emits ``"selection"``."""
        indices = np.asarray(indices, dtype=int).ravel()
        if indices.size and (indices.min() < 0 or indices.max() >= len(self.embedding)):
            raise CryomlError(
                f"selected indices must be in [0, {len(self.embedding) - 1}]; got "
                f"{indices.min()}..{indices.max()}."
            )
        if add:
            indices = np.concatenate([self.selected, indices])
        self.selected = np.unique(indices)
        self._emit("selection", self.selected.copy())
        return self.selected.copy()

    def select_in_polygon(self, vertices: object, *, add: bool = False) -> np.ndarray:
        """Select the points inside a lasso polygon of (x, y) vertices."""
        vertices = np.asarray(vertices, dtype=float)
        if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
            raise CryomlError(f"a lasso needs >= 3 (x, y) vertices; got shape {vertices.shape}.")
        return self.select(np.flatnonzero(_inside_polygon(self.embedding, vertices)), add=add)

    def select_nearest(self, x: float, y: float, *, add: bool = False) -> int:
        """Select the point nearest to a click at (x, y); returns its index."""
        distance = np.hypot(self.embedding[:, 0] - float(x), self.embedding[:, 1] - float(y))
        index = int(np.argmin(distance))
        self.select([index], add=add)
        return index

    def select_group(self, value: int, *, by: str | None = None) -> np.ndarray:
        """Select every point of one class or cluster."""
        by = self.colour_by if by is None else by
        if by not in self.colourings:
            raise CryomlError(f"no colouring {by!r}; have {list(self.colourings)}.")
        return self.select(np.flatnonzero(self.colourings[by] == int(value)))

    def clear(self) -> None:
        """Select nothing."""
        self.select([])

    def central_slices(self, indices: object | None = None) -> np.ndarray:
        """(M, Y, X) central Z slices of the selected (or given) subtomograms."""
        if self.images is None:
            raise CryomlError("no images were given; pass images= to show subtomograms.")
        chosen = self.selected if indices is None else np.asarray(indices, dtype=int)
        items = self.images[chosen]
        if items.ndim == 4:
            items = items[:, items.shape[1] // 2]
        return np.asarray(items, dtype=np.float32)

    def average(self) -> np.ndarray | None:
        """Mean of the selected subtomograms' central slices (None when nothing is selected)."""
        if not len(self.selected):
            return None
        return self.central_slices().mean(axis=0)
