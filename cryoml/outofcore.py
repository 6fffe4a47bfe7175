"""Process MRC volumes larger than memory, slab by slab along Z, with halos.

:func:`process_in_slabs` reads a slab of Z slices (plus ``halo`` slices on each side, so a
convolution or a 2.5D network sees its neighbours), applies a function, drops the halo and writes
the result into a pre-allocated output MRC. Reading and writing use explicit file offsets rather
than a memory map, so the pages of the volume never accumulate in the process's resident memory:
peak memory is bounded by a few slabs, whatever the volume's size. The output is written under a
temporary name and renamed only when complete.

This is written by hand rather than with ``dask.array.map_overlap`` because the latter's memory
depends on the scheduler's ordering of tasks and on memory-mapped pages counted as resident; a
slab loop gives a bound one can state: ``(slab_depth + 2·halo) × Y × X × (input + output bytes)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import mrcfile
import numpy as np

from cryoml._errors import CryomlError
from cryoml.io._atomic import atomic_path

__all__ = ["MrcSlabReader", "process_in_slabs", "slab_depth_for_memory"]

log = logging.getLogger(__name__)


class MrcSlabReader:
    """Read Z slabs of an MRC volume by file offset, without mapping the whole file.

    Parameters
    ----------
    path : str or path-like
        An MRC volume (mode 0, 1, 2, 6 or 12).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with mrcfile.mmap(self.path, mode="r", permissive=False) as handle:
                self.shape = tuple(int(n) for n in handle.data.shape)
                self.dtype = handle.data.dtype.newbyteorder("=")
                self._file_dtype = handle.data.dtype
                self.voxel_size = float(handle.voxel_size.x) or None
                self._offset = int(handle.header.nbytes) + int(handle.extended_header.nbytes)
        except ValueError as error:
            raise CryomlError(f"{self.path}: cannot read as MRC ({error}).") from None
        if len(self.shape) != 3:
            raise CryomlError(f"{self.path}: expected a 3-D volume; got shape {self.shape}.")

    @property
    def slice_bytes(self) -> int:
        """Bytes of one Z slice in the file."""
        return self.shape[1] * self.shape[2] * self._file_dtype.itemsize

    def read(self, z_start: int, z_stop: int) -> np.ndarray:
        """Slices ``z_start:z_stop`` (clipped to the volume) as a (Z, Y, X) array."""
        z_start, z_stop = max(0, z_start), min(self.shape[0], z_stop)
        count = (z_stop - z_start) * self.shape[1] * self.shape[2]
        with open(self.path, "rb") as handle:
            handle.seek(self._offset + z_start * self.slice_bytes)
            data = np.fromfile(handle, dtype=self._file_dtype, count=count)
        if data.size != count:
            raise CryomlError(f"{self.path}: file ends early (truncated); export it again.")
        return data.reshape(z_stop - z_start, *self.shape[1:]).astype(self.dtype, copy=False)


def slab_depth_for_memory(
    shape: tuple[int, int, int], max_memory_mb: float, *, halo: int = 0, bytes_per_voxel: int = 12
) -> int:
    """Deepest slab whose input, halo and output fit in ``max_memory_mb``.

    ``bytes_per_voxel`` covers input, working copy and output (float32 each by default).
    """
    per_slice = shape[1] * shape[2] * bytes_per_voxel
    depth = int(max_memory_mb * 2**20 // per_slice) - 2 * halo
    if depth < 1:
        raise CryomlError(
            f"a memory budget of {max_memory_mb:g} MB cannot hold one slice of {shape[1]}×"
            f"{shape[2]} with a halo of {halo}; raise the budget or tile the slices."
        )
    return min(depth, shape[0])


def process_in_slabs(
    source: str | os.PathLike,
    output: str | os.PathLike,
    function: Callable[[np.ndarray], np.ndarray],
    *,
    halo: int = 0,
    slab_depth: int | None = None,
    max_memory_mb: float = 1024.0,
    out_dtype: np.dtype | type = np.float32,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Apply ``function`` to an MRC volume slab by slab and write the result as MRC.

    Parameters
    ----------
    source : str or path-like
        Input MRC volume (Z, Y, X); only slabs of it are ever in memory.
    output : str or path-like
        Output MRC, same shape and voxel size.
    function : callable
        Maps a (depth, Y, X) array to an array of the same shape (e.g. a filter, or a network
        applied slice by slice). It receives ``halo`` extra slices on each side where they exist.
    halo : int, default 0
        Neighbouring slices each slab needs on each side.
    slab_depth : int, optional
        Slices per slab; default from ``max_memory_mb``.
    max_memory_mb : float, default 1024
        Memory budget used to choose ``slab_depth``.
    out_dtype : dtype, default float32
        Output type.
    overwrite : bool, default False
        Replace an existing output.
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    dict
        ``slab_depth``, ``n_slabs`` and output statistics.
    """
    from tqdm.auto import tqdm

    reader = MrcSlabReader(source)
    depth = slab_depth or slab_depth_for_memory(reader.shape, max_memory_mb, halo=halo)
    out_dtype = np.dtype(out_dtype)
    stats = {"min": np.inf, "max": -np.inf, "sum": 0.0, "sumsq": 0.0}
    n_slabs = -(-reader.shape[0] // depth)
    with atomic_path(output, overwrite=overwrite) as tmp:
        # Allocate the output with a correct header, then fill it by offset.
        with mrcfile.new_mmap(
            tmp, shape=reader.shape, mrc_mode=_mrc_mode(out_dtype), overwrite=True
        ) as handle:
            if reader.voxel_size:
                handle.voxel_size = reader.voxel_size
            data_offset = int(handle.header.nbytes) + int(handle.extended_header.nbytes)
        slice_bytes = reader.shape[1] * reader.shape[2] * out_dtype.itemsize
        with open(tmp, "r+b") as out_file:
            for z0 in tqdm(
                range(0, reader.shape[0], depth),
                total=n_slabs,
                unit="slab",
                desc="slabs",
                disable=not progress,
            ):
                z1 = min(z0 + depth, reader.shape[0])
                block = reader.read(z0 - halo, z1 + halo)
                result = np.asarray(function(block))
                if result.shape != block.shape:
                    raise CryomlError(
                        f"the slab function returned shape {result.shape} for input "
                        f"{block.shape}; it must keep the shape."
                    )
                lead = z0 - max(0, z0 - halo)
                kept = result[lead : lead + (z1 - z0)].astype(out_dtype, copy=False)
                out_file.seek(data_offset + z0 * slice_bytes)
                out_file.write(np.ascontiguousarray(kept).tobytes())
                stats["min"] = min(stats["min"], float(kept.min()))
                stats["max"] = max(stats["max"], float(kept.max()))
                stats["sum"] += float(kept.sum(dtype=np.float64))
                stats["sumsq"] += float(np.square(kept, dtype=np.float64).sum())
        n = float(np.prod(reader.shape))
        mean = stats["sum"] / n
        rms = float(np.sqrt(max(stats["sumsq"] / n - mean * mean, 0.0)))
        with mrcfile.mmap(tmp, mode="r+") as handle:
            handle.header.dmin, handle.header.dmax = stats["min"], stats["max"]
            handle.header.dmean, handle.header.rms = mean, rms
    return {
        "slab_depth": depth,
        "n_slabs": n_slabs,
        "min": stats["min"],
        "max": stats["max"],
        "mean": mean,
        "sd": rms,
    }


def _mrc_mode(dtype: np.dtype) -> int:
    modes = {
        np.dtype(np.int8): 0,
        np.dtype(np.int16): 1,
        np.dtype(np.float32): 2,
        np.dtype(np.uint16): 6,
        np.dtype(np.float16): 12,
    }
    if dtype not in modes:
        raise CryomlError(f"MRC cannot hold {dtype}; use float32, float16, int8, int16 or uint16.")
    return modes[dtype]
