"""Picking one micrograph file into one coordinate file: the task of ``cryoml pick extract``.

:func:`extract_file` is a top-level function, so that :func:`cryoml.batch.run_batch` can send
it to Dask workers; each call loads the picker from its path.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["extract_file"]


def extract_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    model: str | os.PathLike,
    threshold: float | None = None,
    method: str | None = None,
    all_candidates: bool = False,
    min_distance: float | None = None,
    override_pixel_size: bool = False,
) -> dict:
    """Pick the particles of one micrograph file and write them; a task for ``run_batch``.

    Parameters
    ----------
    input_path : str or path-like
        Micrograph (MRC/TIFF).
    output_path : str or path-like
        Coordinate file to write (replaced if it exists); its suffix (``.box``, ``.star``,
        ``.csv`` or ``.json``) gives the format.
    model : str or path-like
        Picker saved by :meth:`ParticlePicker.save` (``.keras`` with its ``.keras.json``), or
        the folder of a :class:`PickerEnsemble`.
    threshold : float, optional
        Score threshold; default: the picker's (calibrated) ``threshold_``.
    method : {"dense", "raster"}, optional
        Scoring method; default: the picker's ``scorer``.
    all_candidates : bool, default False
        Write every local maximum with its score, ignoring the threshold (for evaluation).
    min_distance : float, optional
        Smallest distance between picks in pixels; default: the picker's.
    override_pixel_size : bool, default False
        Pick a micrograph whose pixel size differs from the training micrographs'.

    Returns
    -------
    dict
        ``{"micrograph": name, "picks": count}``.

    Raises
    ------
    CryomlError
        For a missing or unreadable model or micrograph, or a pixel-size mismatch.
    """
    from cryoml import io
    from cryoml.picking._ensemble import load_picker

    input_path = Path(input_path)
    picker = load_picker(model)
    picker.progress = False
    if min_distance is not None:
        picker.min_distance = min_distance
    image = io.read_image(input_path)
    if all_candidates:
        picks = picker.candidates(image, method=method, override_pixel_size=override_pixel_size)
    else:
        picks = picker.pick(
            image, threshold=threshold, method=method, override_pixel_size=override_pixel_size
        )
    io.write_coordinates(output_path, picks, micrograph_name=input_path.name, overwrite=True)
    return {"micrograph": input_path.name, "picks": len(picks)}
