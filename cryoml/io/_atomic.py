"""Atomic file writes: write to a temporary file in the target folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryoml._errors import CryomlError

__all__ = ["atomic_path", "check_free_space", "check_writable"]

# Temporary names carry the writer's host and process id, so that a later write of the same
# file can remove what a killed (SIGKILL, power loss) writer on this host left behind.
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
_TMP_TAG = ".cryoml-"


def _format_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover


def check_free_space(path: str | os.PathLike, needed_bytes: int) -> None:
    """Refuse to start writing ``needed_bytes`` into ``path``'s folder when it has less free.

    Raises
    ------
    CryomlError
        Naming the file, the space it needs and the space left.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if needed_bytes > free:
        raise CryomlError(
            f"cannot write {path}: it needs about {_format_bytes(needed_bytes)} but only "
            f"{_format_bytes(free)} is free on that disk. Free some space or choose another "
            "output location."
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    pattern = re.compile(
        rf"^\.{re.escape(path.name)}{re.escape(_TMP_TAG)}(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-"
    )
    try:
        siblings = list(path.parent.glob(f".{glob_escape(path.name)}{_TMP_TAG}*"))
    except OSError:
        return
    for sibling in siblings:
        match = pattern.match(sibling.name)
        if match is None or match["host"] != _HOST:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                sibling.unlink()


def glob_escape(name: str) -> str:
    """Escape glob metacharacters in a file name."""
    import glob

    return glob.escape(name)


def check_writable(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Check that ``path`` may be written, before any work is done.

    Raises
    ------
    CryomlError
        If the file exists and ``overwrite`` is False, or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise CryomlError(
            f"{path} is a folder; give a file name for the output (e.g. {path / 'out'}...), "
            "or remove the folder."
        )
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
def atomic_path(
    path: str | os.PathLike, *, overwrite: bool = False, size_hint: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or an exception leaves no half-written file behind, and an existing file
    stays untouched until the new one is complete. Temporaries that a killed writer on this
    host left beside ``path`` are removed first.

    Parameters
    ----------
    path : str or path-like
        The file to write.
    overwrite : bool, default False
        Replace an existing file.
    size_hint : int, optional
        Bytes the file will take: checked against the free space before writing, and named
        when the disk fills up.

    Raises
    ------
    CryomlError
        If the file exists (without ``overwrite``), cannot be written, or the disk is full.

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
    _remove_stale_temporaries(path)
    if size_hint is not None:
        check_free_space(path, int(size_hint))
    handle, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}{_TMP_TAG}{_HOST}-{os.getpid()}-",
        suffix=".tmp" + "".join(path.suffixes),
        dir=path.parent or ".",
    )
    os.close(handle)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        try:
            yield tmp
            os.replace(tmp, path)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            need = f"about {_format_bytes(size_hint)}" if size_hint else "more space"
            raise CryomlError(
                f"cannot write {path}: the disk is full (no space left on device; the file "
                f"needs {need}). Free some space or choose another output location; nothing "
                "was written under that name."
            ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
