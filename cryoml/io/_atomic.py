"""Atomic file writes: write to a temporary file in the target folder, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryoml._errors import CryomlError

__all__ = ["atomic_path", "check_writable"]


def check_writable(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Check that ``path`` may be written, before any work is done.

    Raises
    ------
    CryomlError
        If the file exists and ``overwrite`` is False, or its folder cannot be written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CryomlError(
            f"{path} already exists; pass overwrite=True (or --overwrite) to replace it, "
            "or choose another name."
        )
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise CryomlError(
            f"cannot create the folder {folder} for {path}: a file of that name is in the way. "
            "Choose another output location."
        )
    if not folder.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CryomlError(
                f"cannot create the folder {folder} for {path}: {error.strerror}. "
                "Choose an output location you can write to."
            ) from None
    if not os.access(folder, os.W_OK):
        raise CryomlError(
            f"cannot write {path}: the folder {folder} is not writable. "
            "Choose an output location you can write to."
        )
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or an exception leaves no half-written file behind, and an existing file
    stays untouched until the new one is complete.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = check_writable(path, overwrite=overwrite)
    handle, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent or "."
    )
    os.close(handle)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
