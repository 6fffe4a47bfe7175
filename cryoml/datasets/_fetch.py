"""Public data fetched on demand into the user cache, through pooch, with checksums.

Every download goes through :func:`fetch_url`, which wraps :func:`pooch.retrieve`:

* a file already in the cache is used as it is (no network);
* a known SHA-256 is checked after download, and a mismatch deletes the file;
* where no checksum is known in advance (PDB and EMDB entries, whose files the archives may
  re-issue), the digest of the first download is written beside the file (``.sha256``) and
  every later use is checked against it, so a file damaged in the cache is caught;
* with no network, or with ``CRYOML_OFFLINE=1``, a :class:`~cryoml.CryomlError` says which
  address to download by hand and where to put the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryoml._errors import CryomlError
from cryoml.datasets._places import cache_dir

__all__ = [
    "REGISTRY",
    "RemoteFile",
    "fetch",
    "fetch_density",
    "fetch_emdb",
    "fetch_pdb",
    "fetch_url",
]

logger = logging.getLogger(__name__)

PDB_URL = "https://files.rcsb.org/download/{id}.cif.gz"
EMDB_URL = "https://ftp.ebi.ac.uk/pub/databases/emdb/structures/EMD-{id}/map/emd_{id}.map.gz"


@dataclass(frozen=True)
class RemoteFile:
    """A public file cryoml knows how to fetch.

    Attributes
    ----------
    url : str
        Download address.
    description : str
        What the file holds.
    licence : str
        Its licence and where it comes from.
    sha256 : str or None
        Expected digest; None where it is recorded at first download (see module docstring).
    size : str
        Approximate download size, for the user's information.
    """

    url: str
    description: str
    licence: str
    sha256: str | None = None
    size: str = ""


REGISTRY: dict[str, RemoteFile] = {
    "empiar-10025-topaz-tutorial": RemoteFile(
        url="http://bergerlab-downloads.csail.mit.edu/topaz/topaz-tutorial-data.tar.gz",
        description=(
            "Real single-particle micrographs of the T20S proteasome (EMPIAR-10025) with "
            "manual particle picks, as packaged for the Topaz tutorial."
        ),
        licence="EMPIAR entries are public (CC0); packaged by the Topaz authors (GPL-3 project).",
        size="~1.2 GB",
    ),
    "czii-10445-ts_100_3": RemoteFile(
        url=(
            "https://files.cryoetdataportal.cziscience.com/10445/TS_100_3/Reconstructions/"
            "VoxelSpacing10.012/Tomograms/100/TS_100_3.mrc"
        ),
        description=(
            "A real cryo-electron tomogram (630×630×184 at 10.012 Å) of the CZII object "
            "identification challenge, CZ cryoET Data Portal dataset 10445."
        ),
        licence="CC-BY 4.0, CZ cryoET Data Portal (cite dataset 10445).",
        size="~290 MB",
    ),
}


def _offline() -> bool:
    return os.environ.get("CRYOML_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manual_hint(url: str, target: Path) -> str:
    return (
        f"Download {url} by hand (browser, wget or curl) and save it as {target}; cryoml uses it "
        "from there. Set CRYOML_CACHE to keep the cache elsewhere."
    )


def fetch_url(
    url: str,
    *,
    sha256: str | None = None,
    fname: str | None = None,
    subdir: str = "downloads",
    progress: bool = True,
) -> Path:
    """Download ``url`` into the cache once and return the local path.

    Parameters
    ----------
    url : str
        The address (http, https or ftp).
    sha256 : str, optional
        Expected SHA-256; without it the first download's digest is recorded and checked on
        every later use.
    fname : str, optional
        File name in the cache; default the last part of the address.
    subdir : str, default "downloads"
        Folder of the cache to put it in.
    progress : bool, default True
        Show a progress bar while downloading (needs tqdm).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CryomlError
        When offline (or ``CRYOML_OFFLINE=1``) and the file is not cached, when the download
        fails, or when a checksum does not match (the bad file is removed).
    """
    import pooch

    fname = fname or url.rstrip("/").rsplit("/", 1)[-1]
    folder = cache_dir() / subdir
    target = folder / fname
    pinned = target.with_name(target.name + ".sha256")
    if target.is_file():
        recorded = sha256 or (pinned.read_text().strip() if pinned.is_file() else None)
        if recorded and _sha256(target) != recorded.lower():
            raise CryomlError(
                f"{target}: the cached file does not match its checksum (damaged or replaced). "
                f"Delete it and fetch again. {_manual_hint(url, target)}"
            )
        return target
    if _offline():
        raise CryomlError(f"{fname} is not in the cache and CRYOML_OFFLINE is set. "
                          + _manual_hint(url, target))
    try:
        path = Path(
            pooch.retrieve(
                url,
                known_hash=f"sha256:{sha256}" if sha256 else None,
                fname=fname,
                path=folder,
                progressbar=progress,
            )
        )
    except ValueError as error:
        # pooch's checksum mismatch: it has already deleted the download.
        raise CryomlError(f"{url}: the download does not match its checksum ({error}).") from None
    except Exception as error:  # requests' connection, HTTP and timeout errors, ftplib's errors
        raise CryomlError(
            f"could not download {url} ({type(error).__name__}: {error}). "
            + _manual_hint(url, target)
        ) from None
    if sha256 is None:
        pinned.write_text(_sha256(path) + "\n")
    logger.info("fetched %s -> %s", url, path)
    return path


def fetch(name: str, *, progress: bool = True) -> Path:
    """Fetch a named public file of :data:`REGISTRY` into the cache.

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY` (``cryoml fetch list`` lists them).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CryomlError
        For an unknown name, or as :func:`fetch_url`.
    """
    if name not in REGISTRY:
        raise CryomlError(f"unknown data set {name!r}; known: {', '.join(sorted(REGISTRY))}.")
    entry = REGISTRY[name]
    return fetch_url(entry.url, sha256=entry.sha256, subdir="datasets", progress=progress)


def _check_id(value: str, *, what: str, length: int | None) -> str:
    text = str(value).strip()
    if not text.isalnum() or (length is not None and len(text) != length):
        form = f"{length} letters or digits" if length else "digits"
        raise CryomlError(f"{what} {value!r} is not a valid identifier ({form}).")
    return text


def fetch_pdb(pdb_id: str, *, progress: bool = True) -> Path:
    """Fetch an atomic model (mmCIF, gzip-compressed) from the RCSB PDB into the cache.

    Parameters
    ----------
    pdb_id : str
        Four-character PDB identifier (``"1u6g"``).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``<cache>/pdb/<ID>.cif.gz`` (readable by gemmi and :func:`cryoml.simulate.load_density`).

    Raises
    ------
    CryomlError
        For a malformed identifier, or as :func:`fetch_url`.
    """
    code = _check_id(pdb_id, what="PDB id", length=4).upper()
    return fetch_url(PDB_URL.format(id=code), fname=f"{code}.cif.gz", subdir="pdb",
                     progress=progress)


def fetch_emdb(emd_id: str | int, *, progress: bool = True) -> Path:
    """Fetch a density map from the EMDB into the cache.

    Parameters
    ----------
    emd_id : str or int
        EMDB number, with or without the ``EMD-`` prefix (``"EMD-3228"`` or ``3228``).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``<cache>/emdb/emd_<N>.map.gz`` (mrcfile and :func:`cryoml.io.read_mrc` read it).

    Raises
    ------
    CryomlError
        For a malformed identifier, or as :func:`fetch_url`.
    """
    text = str(emd_id).strip().upper().removeprefix("EMD-").removeprefix("EMD_")
    number = _check_id(text, what="EMDB id", length=None)
    if not number.isdigit():
        raise CryomlError(f"EMDB id {emd_id!r} is not a valid identifier (digits).")
    return fetch_url(EMDB_URL.format(id=number), subdir="emdb", progress=progress)


def fetch_density(
    pdb_id: str,
    *,
    voxel_size: float = 10.0,
    resolution: float = 10.0,
    progress: bool = True,
) -> Path:
    """Fetch a PDB model and turn it into a density map that cryoml then finds by name.

    The model is converted with :func:`cryoml.simulate.density_from_atoms` (gemmi) and written
    to ``<cache>/densities/<id>.mrc``, so ``load_density("<id>")`` and every simulator accept
    the lower-case identifier afterwards, offline.

    Parameters
    ----------
    pdb_id : str
        Four-character PDB identifier.
    voxel_size : float, default 10
        Å per voxel of the stored map (simulators resample it as they need).
    resolution : float, default 10
        Gaussian resolution of the map in Å.
    progress : bool, default True
        Show a progress bar while downloading.

    Returns
    -------
    pathlib.Path
        The map.

    Raises
    ------
    CryomlError
        As :func:`fetch_pdb`, or when the model cannot be read.
    """
    from cryoml.io import write_mrc
    from cryoml.simulate import density_from_atoms

    code = _check_id(pdb_id, what="PDB id", length=4).lower()
    target = cache_dir() / "densities" / f"{code}.mrc"
    if target.is_file():
        return target
    model = fetch_pdb(code, progress=progress)
    volume = density_from_atoms(model, voxel_size=voxel_size, resolution=resolution)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_mrc(target, volume, voxel_size=voxel_size)
