"""Where cryoml's data lives: the repository's ``data/``, the user cache, the reference data."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "density_folders", "example_data_dir", "reference_data"]

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def example_data_dir() -> Path | None:
    """The repository's ``data/`` folder of example data, or None in an install without it.

    Returns
    -------
    pathlib.Path or None
    """
    folder = _PROJECT_ROOT / "data"
    return folder if (folder / "README.md").is_file() else None


def cache_dir() -> Path:
    """The user cache for fetched public data.

    ``$CRYOML_CACHE`` when set, else the platform's cache folder (``~/.cache/cryoml`` on Linux).
    The folder is not created here.

    Returns
    -------
    pathlib.Path
    """
    if os.environ.get("CRYOML_CACHE"):
        return Path(os.environ["CRYOML_CACHE"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("cryoml"))


def reference_data() -> Path | None:
    """The optional reference data folder of the tests and benchmarks, or None where absent.

    ``$CRYOML_REFERENCE_DATA`` when set — and then only it, so pointing it at an empty folder
    hides ``../shared/data`` too — else ``../shared/data`` beside the repository.

    Returns
    -------
    pathlib.Path or None
    """
    setting = os.environ.get("CRYOML_REFERENCE_DATA")
    candidate = Path(setting).expanduser() if setting else _PROJECT_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def density_folders() -> list[Path]:
    """Folders searched for a density named without a path, in order of precedence.

    The repository's ``data/densities``, the cache's ``densities`` (filled by
    :func:`cryoml.datasets.fetch_density`), then the reference data's ``structures/maps_10A``
    and ``structures/membrane_maps_10A``. Only existing folders are listed.

    Returns
    -------
    list of pathlib.Path
    """
    candidates = []
    example = example_data_dir()
    if example is not None:
        candidates.append(example / "densities")
    candidates.append(cache_dir() / "densities")
    reference = reference_data()
    if reference is not None:
        candidates += [reference / "structures" / f for f in ("maps_10A", "membrane_maps_10A")]
    return [folder for folder in candidates if folder.is_dir()]
