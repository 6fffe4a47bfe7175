"""Particle coordinates: EMAN2 ``.box`` and info ``.json``, RELION ``.star``, plain ``.csv``.

Inside cryoml, coordinates are box *centres* in array-index order — (Y, X) for images and
(Z, Y, X) for volumes — in pixels of the image they refer to, counted from 0. Each file format
keeps its own convention; conversion happens only here:

* EMAN2 ``.box``: ``x y w h`` per line, (x, y) the box's lower-left corner, i.e. centre − w/2.
* EMAN2 ``info/*.json``: ``boxes`` ([x, y, source, ...]) or ``boxes_3d``
  ([x, y, z, source, score, class]) as box centres, and ``class_list`` {id: {name, boxsize}}.
* RELION ``.star``: ``rlnCoordinateX/Y/Z`` (centres), optional ``rlnAutopickFigureOfMerit``
  and ``rlnClassNumber``; written 0-based as most pickers (Topaz, crYOLO) do.
* ``.csv``: columns ``x, y[, z][, score][, class][, box_size]`` (centres).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryoml._errors import CryomlError
from cryoml.io._atomic import atomic_path

__all__ = [
    "Particles",
    "check_boxes_inside",
    "check_pairing",
    "coordinate_name",
    "read_coordinates",
    "write_coordinates",
]

_AXES = ("z", "y", "x")
_CSV_COLUMNS = {"x", "y", "z", "score", "class", "box_size"}


@dataclasses.dataclass(eq=False)
class Particles:
    """Particle centres with optional box size, scores and classes.

    Parameters
    ----------
    centres : (N, 2) or (N, 3) ndarray
        Box centres in pixels, (Y, X) or (Z, Y, X) order, counted from 0.
    box_size : int, optional
        Edge of the (square or cubic) box in pixels.
    scores : (N,) ndarray, optional
        A confidence per particle (higher is more confident).
    classes : (N,) ndarray of int, optional
        A class id per particle.
    class_names : dict of int to str, optional
        Names of the class ids.

    Examples
    --------
    >>> import numpy as np
    >>> particles = Particles(np.array([[10.0, 20.0]]), box_size=8)
    >>> len(particles), particles.ndim
    (1, 2)
    """

    centres: np.ndarray
    box_size: int | None = None
    scores: np.ndarray | None = None
    classes: np.ndarray | None = None
    class_names: dict[int, str] | None = None

    def __post_init__(self) -> None:
        centres = np.asarray(self.centres, dtype=np.float64)
        if centres.size == 0:
            centres = centres.reshape(0, centres.shape[-1] if centres.ndim == 2 else 2)
        if centres.ndim != 2 or centres.shape[1] not in (2, 3):
            raise CryomlError(
                f"particle centres must have shape (N, 2) or (N, 3); got {centres.shape}."
            )
        if not np.all(np.isfinite(centres)):
            raise CryomlError("particle centres hold NaN or infinite values.")
        self.centres = centres
        if self.box_size is not None:
            if not float(self.box_size).is_integer() or self.box_size <= 0:
                raise CryomlError(
                    f"box size must be a positive whole number of pixels; got {self.box_size}."
                )
            self.box_size = int(self.box_size)
        for name in ("scores", "classes"):
            values = getattr(self, name)
            if values is not None:
                values = np.asarray(values)
                if values.shape != (len(centres),):
                    raise CryomlError(
                        f"{name} must have one value per particle ({len(centres)}); "
                        f"got shape {values.shape}."
                    )
                setattr(self, name, values.astype(int) if name == "classes" else values)

    def __len__(self) -> int:
        return len(self.centres)

    @property
    def ndim(self) -> int:
        """2 for image coordinates, 3 for volume coordinates."""
        return self.centres.shape[1]

    def subset(self, keep: np.ndarray) -> Particles:
        """Return the particles selected by a boolean mask or index array."""
        return Particles(
            self.centres[keep],
            box_size=self.box_size,
            scores=None if self.scores is None else self.scores[keep],
            classes=None if self.classes is None else self.classes[keep],
            class_names=self.class_names,
        )

    def to_frame(self) -> pd.DataFrame:
        """The particles as a table with columns x, y[, z][, score][, class]."""
        axes = _AXES[-self.ndim :]
        frame = pd.DataFrame({axis: self.centres[:, i] for i, axis in enumerate(axes)})
        frame = frame[[a for a in ("x", "y", "z") if a in frame]]
        if self.scores is not None:
            frame["score"] = self.scores
        if self.classes is not None:
            frame["class"] = self.classes
        return frame


def check_boxes_inside(
    particles: Particles, shape: tuple[int, ...], *, source: str | None = None
) -> None:
    """Raise if any box reaches outside an image or volume of ``shape``.

    Raises
    ------
    CryomlError
        Naming how many boxes are off the edge and the first of them.
    """
    if particles.ndim != len(shape):
        raise CryomlError(
            f"{particles.ndim}-D coordinates cannot index a {len(shape)}-D array of shape {shape}."
        )
    half = (particles.box_size or 0) / 2
    low = particles.centres - half
    high = particles.centres + half
    outside = np.any((low < 0) | (high > np.asarray(shape)), axis=1)
    if np.any(outside):
        first = int(np.flatnonzero(outside)[0])
        where = f" in {source}" if source else ""
        raise CryomlError(
            f"{int(outside.sum())} of {len(particles)} boxes{where} reach outside the image of "
            f"shape {shape} (first: centre {particles.centres[first].tolist()}, box "
            f"{particles.box_size}). Remove them or use a smaller box."
        )


def read_coordinates(path: str | os.PathLike, *, box_size: int | None = None) -> Particles:
    """Read particle coordinates, choosing the format by the file's suffix.

    Parameters
    ----------
    path : str or path-like
        ``.box``, ``.json``, ``.star`` or ``.csv``.
    box_size : int, optional
        Box size to use when the file gives none.

    Returns
    -------
    Particles
        Centres in (Y, X) or (Z, Y, X) order.

    Raises
    ------
    CryomlError
        For missing files, unknown suffixes, malformed lines, unknown columns or negative
        box sizes.
    """
    path = Path(path)
    if not path.is_file():
        raise CryomlError(f"{path}: no such file. Check the path.")
    readers = {".box": _read_box, ".json": _read_json, ".star": _read_star, ".csv": _read_csv}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise CryomlError(
            f"{path}: unknown coordinate format '{path.suffix}'. Use .box, .json, .star or .csv."
        )
    try:
        particles = reader(path)
    except CryomlError as error:
        if str(path) in str(error):
            raise
        raise CryomlError(f"{path}: {error}") from None
    except UnicodeDecodeError:
        raise CryomlError(
            f"{path}: not a text file (binary bytes); a {path.suffix} coordinate file is text. "
            "Check that this is the right file."
        ) from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as error:
        raise CryomlError(
            f"{path}: cannot read particle coordinates from it ({type(error).__name__}: "
            f"{error}). Check the file's format against the {path.suffix} conventions."
        ) from None
    if particles.box_size is None and box_size is not None:
        particles.box_size = int(box_size)
    return particles


def write_coordinates(
    path: str | os.PathLike,
    particles: Particles,
    *,
    micrograph_name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write particle coordinates in the format given by the suffix, atomically.

    Parameters
    ----------
    path : str or path-like
        ``.box`` (2-D only, needs a box size), ``.json``, ``.star`` or ``.csv``.
    particles : Particles
        What to write.
    micrograph_name : str, optional
        Written as ``rlnMicrographName`` / ``rlnTomoName`` in STAR files.
    overwrite : bool, default False
        Replace an existing file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".box", ".json", ".star", ".csv"):
        raise CryomlError(
            f"{path}: unknown coordinate format '{path.suffix}'. Use .box, .json, .star or .csv."
        )
    with atomic_path(path, overwrite=overwrite) as tmp:
        if suffix == ".box":
            _write_box(tmp, particles)
        elif suffix == ".json":
            _write_json(tmp, particles)
        elif suffix == ".star":
            _write_star(tmp, particles, micrograph_name)
        else:
            particles.to_frame().assign(
                **({"box_size": particles.box_size} if particles.box_size else {})
            ).to_csv(tmp, index=False, float_format="%.6g")
    return path


# --- which micrograph a file is for -----------------------------------------------------------

_IMAGE_SUFFIX = re.compile(r"\.(mrcs?|map|rec|st|ali|tiff?|box|star|csv|json)$", re.IGNORECASE)


def _stem(name: str) -> str:
    name = Path(str(name)).name
    while _IMAGE_SUFFIX.search(name):
        name = _IMAGE_SUFFIX.sub("", name)
    return name.lower()


def coordinate_name(path: str | os.PathLike) -> tuple[str, bool]:
    """The micrograph a coordinate file is for, and whether the file states it.

    A STAR file states it in ``rlnMicrographName`` / ``rlnTomoName`` (one value for the whole
    file); otherwise the file's own name stands for it (``mic04.box`` is for ``mic04``).

    Returns
    -------
    name : str
        Lower-case name without folders or image/coordinate suffixes.
    stated : bool
        True when the name comes from inside the file.
    """
    path = Path(path)
    if path.suffix.lower() == ".star" and path.is_file():
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        if "rlnMicrographName" in text or "rlnTomoName" in text:
            import starfile

            try:
                content = starfile.read(path, always_dict=True)
            except Exception:  # unreadable files are refused by read_coordinates itself
                content = {}
            for table in content.values():
                if not isinstance(table, pd.DataFrame):
                    continue
                for column in ("rlnMicrographName", "rlnTomoName"):
                    if column in table and table[column].nunique() == 1:
                        return _stem(str(table[column].iloc[0])), True
    return _stem(path.name), False


def _agree(a: str, b: str) -> bool:
    return a == b or a in b or b in a


def _conflict(a: str, b: str) -> bool:
    # Same pattern with other numbers (mic04 / mic05): certainly two micrographs.
    return re.sub(r"\d+", "#", a) == re.sub(r"\d+", "#", b) and a != b


def check_pairing(
    left: Sequence[str | os.PathLike],
    right: Sequence[str | os.PathLike],
    *,
    left_option: str,
    right_option: str,
) -> None:
    """Refuse pairs (by position) of files that are for different micrographs.

    Names come from :func:`coordinate_name` (for images, the file name). A pair is refused when
    its names differ and (a) a STAR file states its micrograph, (b) the names follow one pattern
    with other numbers (``mic04`` / ``mic05``), or (c) one file's name matches another pair's.

    Raises
    ------
    CryomlError
        Naming both files of the first mismatched pair and the option to fix.
    """
    lefts = [coordinate_name(p) for p in left]
    rights = [coordinate_name(p) for p in right]
    for index, (a, b) in enumerate(zip(lefts, rights, strict=False)):
        (left_name, left_stated), (right_name, right_stated) = a, b
        if _agree(left_name, right_name):
            continue
        swapped = any(
            _agree(right_name, other[0]) for j, other in enumerate(lefts) if j != index
        ) or any(_agree(left_name, other[0]) for j, other in enumerate(rights) if j != index)
        if left_stated or right_stated or swapped or _conflict(left_name, right_name):
            raise CryomlError(
                f"{left_option} file {left[index]} is for micrograph '{left_name}' but the "
                f"{right_option} file paired with it by position, {right[index]}, is for "
                f"'{right_name}'. Give the files in the same order, one per micrograph "
                "(names come from rlnMicrographName in STAR files, else from the file names)."
            )


# --- EMAN2 .box -----------------------------------------------------------------------------


def _read_box(path: Path) -> Particles:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            values = [float(v) for v in fields[:4]]
        except ValueError:
            raise CryomlError(
                f"{path}, line {number}: expected numbers 'x y w h'; got {line.strip()!r}."
            ) from None
        if len(values) < 4:
            raise CryomlError(
                f"{path}, line {number}: an EMAN2 .box line needs 'x y w h'; got {line.strip()!r}."
            )
        if not all(np.isfinite(values)):
            raise CryomlError(
                f"{path}, line {number}: NaN or infinite values in {line.strip()!r}; "
                "coordinates must be finite numbers."
            )
        if values[2] <= 0 or values[3] <= 0:
            raise CryomlError(
                f"{path}, line {number}: box {len(rows) + 1} has a zero or negative size "
                f"({values[2:]}); box sizes must be positive."
            )
        rows.append(values)
    table = np.array(rows, dtype=float).reshape(-1, 4)
    if np.any(table[:, 2:] <= 0):
        bad = int(np.flatnonzero(np.any(table[:, 2:] <= 0, axis=1))[0])
        raise CryomlError(
            f"{path}: box {bad + 1} has a zero or negative size ({table[bad, 2:].tolist()}); "
            "box sizes must be positive."
        )
    sizes = np.unique(table[:, 2:])
    box_size = int(sizes[0]) if len(sizes) == 1 else None
    centres_xy = table[:, :2] + table[:, 2:] / 2
    return Particles(centres_xy[:, ::-1], box_size=box_size)


def _write_box(path: Path, particles: Particles) -> None:
    if particles.ndim != 2:
        raise CryomlError(
            f"{path.name}: EMAN2 .box files hold 2-D coordinates; use .json or .star for 3-D."
        )
    if particles.box_size is None:
        raise CryomlError(f"{path.name}: a .box file needs a box size; set particles.box_size.")
    size = particles.box_size
    corners_xy = particles.centres[:, ::-1] - size / 2
    lines = [f"{x:.0f}\t{y:.0f}\t{size}\t{size}" for x, y in np.round(corners_xy, 0)]
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


# --- EMAN2 info json ------------------------------------------------------------------------


def _read_json(path: Path) -> Particles:
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CryomlError(f"{path}: not valid JSON ({error}).") from None
    class_list = info.get("class_list", {})
    class_names = {int(k): str(v.get("name", k)) for k, v in class_list.items()} or None
    box_sizes = {int(v["boxsize"]) for v in class_list.values() if "boxsize" in v}
    box_size = box_sizes.pop() if len(box_sizes) == 1 else None
    if "boxes_3d" in info:
        rows = info["boxes_3d"]
        try:
            xyz = np.array([[float(r[0]), float(r[1]), float(r[2])] for r in rows]).reshape(-1, 3)
        except (TypeError, ValueError, IndexError):
            raise CryomlError(f"{path}: 'boxes_3d' entries must start with x, y, z.") from None
        scores = np.array([float(r[4]) if len(r) > 4 else 0.0 for r in rows])
        classes = np.array([int(r[5]) if len(r) > 5 else 0 for r in rows], dtype=int)
        return Particles(
            xyz[:, ::-1],
            box_size=box_size,
            scores=scores,
            classes=classes,
            class_names=class_names,
        )
    if "boxes" in info:
        rows = info["boxes"]
        try:
            xy = np.array([[float(r[0]), float(r[1])] for r in rows]).reshape(-1, 2)
        except (TypeError, ValueError, IndexError):
            raise CryomlError(f"{path}: 'boxes' entries must start with x, y.") from None
        return Particles(xy[:, ::-1], box_size=box_size)
    raise CryomlError(
        f"{path}: no 'boxes' or 'boxes_3d' key; this is not an EMAN2 info file with particles."
    )


def _write_json(path: Path, particles: Particles) -> None:
    n = len(particles)
    scores = particles.scores if particles.scores is not None else np.zeros(n)
    classes = particles.classes if particles.classes is not None else np.zeros(n, dtype=int)
    names = particles.class_names or {int(c): f"class{int(c)}" for c in np.unique(classes)}
    class_list = {
        str(k): ({"name": v, "boxsize": particles.box_size} if particles.box_size else {"name": v})
        for k, v in names.items()
    }
    xyz = particles.centres[:, ::-1]
    if particles.ndim == 3:
        rows = [
            [*map(float, p), "cryoml", float(s), int(c)]
            for p, s, c in zip(xyz, scores, classes, strict=True)
        ]
        info = {"boxes_3d": rows, "class_list": class_list}
    else:
        info = {"boxes": [[*map(float, p), "cryoml"] for p in xyz], "class_list": class_list}
    path.write_text(json.dumps(info, indent=1))


# --- RELION star ----------------------------------------------------------------------------


def _read_star(path: Path) -> Particles:
    import starfile

    try:
        content = starfile.read(path, always_dict=True)
    except Exception as error:  # starfile raises many types on malformed text
        raise CryomlError(f"{path}: cannot parse as a STAR file ({error}).") from None
    table = next(
        (t for t in content.values() if isinstance(t, pd.DataFrame) and "rlnCoordinateX" in t),
        None,
    )
    if table is None:
        raise CryomlError(
            f"{path}: no table with rlnCoordinateX/rlnCoordinateY; cannot read particle "
            "coordinates from it."
        )
    axes = ["rlnCoordinateX", "rlnCoordinateY"]
    if "rlnCoordinateZ" in table:
        axes.append("rlnCoordinateZ")
    xyz = table[axes].to_numpy(dtype=float)
    _check_rows_finite(path, xyz, "data row")
    scores = (
        table["rlnAutopickFigureOfMerit"].to_numpy(float)
        if "rlnAutopickFigureOfMerit" in table
        else None
    )
    classes = table["rlnClassNumber"].to_numpy(int) if "rlnClassNumber" in table else None
    return Particles(xyz[:, ::-1], scores=scores, classes=classes)


def _write_star(path: Path, particles: Particles, micrograph_name: str | None) -> None:
    import starfile

    xyz = particles.centres[:, ::-1]
    columns = {"rlnCoordinateX": xyz[:, 0], "rlnCoordinateY": xyz[:, 1]}
    if particles.ndim == 3:
        columns["rlnCoordinateZ"] = xyz[:, 2]
    table = pd.DataFrame(columns)
    if particles.scores is not None:
        table["rlnAutopickFigureOfMerit"] = particles.scores
    if particles.classes is not None:
        table["rlnClassNumber"] = particles.classes
    if micrograph_name is not None:
        key = "rlnTomoName" if particles.ndim == 3 else "rlnMicrographName"
        table[key] = micrograph_name
    starfile.write({"particles": table}, path, overwrite=True)


def _check_rows_finite(path: Path, values: np.ndarray, what: str, offset: int = 1) -> None:
    bad = ~np.all(np.isfinite(values), axis=1)
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0])
        raise CryomlError(
            f"{path}, {what} {first + offset}: coordinates are empty, NaN or infinite "
            f"({values[first].tolist()}); {int(bad.sum())} such row(s). Fix or remove them."
        )


# --- CSV ------------------------------------------------------------------------------------


def _read_csv(path: Path) -> Particles:
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise CryomlError(f"{path}: cannot parse as CSV ({error}).") from None
    columns = {c.strip().lower(): c for c in table.columns}
    unknown = sorted(set(columns) - _CSV_COLUMNS)
    if unknown or not {"x", "y"} <= set(columns):
        raise CryomlError(
            f"{path}: coordinate CSV columns must be x, y[, z][, score][, class][, box_size]; "
            f"got {list(table.columns)}"
            + (f" (unknown: {unknown})" if unknown else "")
            + ". Rename the columns to these names."
        )
    axes = [a for a in ("x", "y", "z") if a in columns]
    xyz = table[[columns[a] for a in axes]].to_numpy(dtype=float)
    _check_rows_finite(path, xyz, "row", offset=2)
    box = table[columns["box_size"]].iloc[0] if "box_size" in columns and len(table) else None
    return Particles(
        xyz[:, ::-1],
        box_size=None if box is None else int(box),
        scores=table[columns["score"]].to_numpy(float) if "score" in columns else None,
        classes=table[columns["class"]].to_numpy(int) if "class" in columns else None,
    )
