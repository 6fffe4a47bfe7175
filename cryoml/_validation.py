"""Shared input checks. Public functions call these first; private cores assume checked input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoml._errors import CryomlError

__all__ = [
    "check_array",
    "check_memory",
    "check_positive",
    "check_random_state",
    "check_training_settings",
]


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed_bytes: float, *, what: str, fix: str) -> None:
    """Refuse work that needs more memory than is available, before it starts.

    Raises
    ------
    CryomlError
        Naming what needs the memory, how much, how much is available and ``fix``.
    """
    available = available_memory()
    if available is None or needed_bytes <= available:
        return
    raise CryomlError(
        f"{what} needs about {needed_bytes / 2**30:.1f} GiB of memory but only "
        f"{available / 2**30:.1f} GiB is available. {fix}"
    )


def check_array(
    array: object,
    *,
    ndim: int | Sequence[int],
    name: str,
    finite: bool = True,
    source: str | None = None,
) -> np.ndarray:
    """Return ``array`` as an ndarray after checking its dimensionality and values.

    Parameters
    ----------
    array : array_like
        The input.
    ndim : int or sequence of int
        Allowed numbers of dimensions.
    name : str
        What the array is (``"tomogram"``, ``"micrograph"``), for messages.
    finite : bool, default True
        Refuse NaN and infinite values.
    source : str, optional
        The file the array came from, named in messages.

    Returns
    -------
    ndarray
        The input as an ndarray (not copied when already one).

    Raises
    ------
    CryomlError
        If the dimensionality is wrong, the array is empty or holds NaN/Inf.
    """
    where = f" (from {source})" if source else ""
    arr = np.asarray(array)
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed:
        wanted = " or ".join(f"{n}-D" for n in allowed)
        raise CryomlError(
            f"{name}{where} must be {wanted}; got an array of shape {arr.shape}. "
            "Pass a single image (Y, X) or volume (Z, Y, X) as the argument expects."
        )
    if arr.size == 0:
        raise CryomlError(f"{name}{where} is empty (shape {arr.shape}).")
    if finite and arr.dtype.kind in "fc":
        bad = _count_nonfinite(arr)
        if bad:
            raise CryomlError(
                f"{name}{where} holds {bad} NaN or infinite values. Replace them "
                "(e.g. numpy.nan_to_num) or re-export the data from the program that wrote it."
            )
    return arr


def _count_nonfinite(arr: np.ndarray, chunk_elements: int = 1 << 24) -> int:
    # Memory-mapped volumes can exceed RAM: count in slabs along the first axis.
    if arr.ndim == 0 or arr.size <= chunk_elements:
        return int(arr.size - np.count_nonzero(np.isfinite(arr)))
    per_row = max(1, arr.size // arr.shape[0])
    step = max(1, chunk_elements // per_row)
    total = 0
    for start in range(0, arr.shape[0], step):
        part = np.asarray(arr[start : start + step])
        total += int(part.size - np.count_nonzero(np.isfinite(part)))
        from cryoml._pages import drop_pages

        drop_pages(arr)  # a memory map's pages would stay resident: the whole file
    return total


def check_positive(value: float, *, name: str, allow_zero: bool = False) -> float:
    """Check that a scalar parameter is positive (or non-negative) and finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CryomlError(f"'{name}' must be a number; got {value!r}.") from None
    if not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise CryomlError(f"'{name}' must be finite and {bound}; got {value!r}.")
    return number


def check_random_state(random_state: int | np.random.Generator | None) -> np.random.Generator:
    """Normalise ``random_state`` (None, int or Generator) to a :class:`numpy.random.Generator`."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    raise CryomlError(
        f"'random_state' must be None, an int or a numpy.random.Generator; got {random_state!r}."
    )


def check_training_settings(
    settings: dict, *, validation_fraction: float, patience: int | None
) -> None:
    """Check the settings every Keras estimator of cryoml shares.

    Parameters
    ----------
    settings : dict
        The resolved recipe, with ``epochs``, ``batch_size`` and ``learning_rate``.
    validation_fraction : float
        Share of the training data held out, in [0, 1).
    patience : int or None
        Epochs without improvement before stopping early (None: never).

    Raises
    ------
    CryomlError
        Naming the parameter and the value received.
    """
    if int(settings["epochs"]) < 1 or int(settings["batch_size"]) < 1:
        raise CryomlError(
            f"'epochs' and 'batch_size' must be >= 1; got {settings['epochs']} and "
            f"{settings['batch_size']}."
        )
    if not float(settings["learning_rate"]) > 0:
        raise CryomlError(f"'learning_rate' must be > 0; got {settings['learning_rate']}.")
    if not 0 <= float(validation_fraction) < 1:
        raise CryomlError(f"'validation_fraction' must be in [0, 1); got {validation_fraction}.")
    if patience is not None and int(patience) < 1:
        raise CryomlError(f"'patience' must be >= 1 or None; got {patience}.")
