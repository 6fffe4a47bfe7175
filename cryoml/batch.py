"""Run one per-file task over many files on a Dask cluster, resumably and without partial outputs.

A *task* is a top-level (importable, picklable) function ``task(input_path, output_path,
**options) -> dict`` that writes exactly one output file. :func:`run_batch`:

* expands globs and ``@list.txt`` files into inputs and names each output
  ``OUT_DIR/<input stem><suffix>``;
* skips inputs already finished, as recorded in ``OUT_DIR/cryoml-manifest.json`` (input size and
  modification time must match, the output must still exist with its recorded size, and the
  run's *key* must match: a hash of every option and of the content of every file an option
  names, such as the network, so that a retrained network or another threshold reruns all);
* with ``overwrite=False``, refuses (before any work) to replace output files that no earlier
  run recorded in the manifest, such as hand-edited results;
* runs the rest on a ``dask.distributed`` cluster: a local one by default
  (:class:`~dask.distributed.LocalCluster`), or any running scheduler by address — for example one
  started by dask-jobqueue on SLURM::

      from dask_jobqueue import SLURMCluster
      cluster = SLURMCluster(cores=8, memory="32GB", walltime="02:00:00")
      cluster.scale(jobs=10)
      # then: cryoml tomoseg apply 'tomos/*.mrc' --net membrane.keras --out seg/ \\
      #          --scheduler cluster.scheduler_address

* has each worker write to a hidden temporary file and rename it only when the task succeeded,
  so a worker killed mid-write leaves no output under the final name; Dask reruns the task on
  another worker, and stale temporary files are removed at the next start;
* updates the manifest atomically after every finished file and shows progress.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryoml._errors import CryomlError
from cryoml.io._atomic import atomic_path

__all__ = ["BatchReport", "expand_inputs", "run_batch"]

MANIFEST_NAME = "cryoml-manifest.json"
_PARTIAL_TAG = ".partial-"

log = logging.getLogger(__name__)


@dataclasses.dataclass
class BatchReport:
    """What a batch run did.

    Attributes
    ----------
    done : list of dict
        One record per file processed in this run (input, output, seconds, worker, result).
    skipped : list of str
        Inputs skipped because the manifest shows them finished.
    failed : dict of str to str
        Inputs whose task raised, with the error.
    seconds : float
        Wall-clock time of the run.
    n_workers : int
        Workers the cluster had when the run started.
    """

    done: list[dict] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    n_workers: int = 0

    @property
    def files_per_minute(self) -> float:
        """Files finished per minute of wall-clock time in this run."""
        return 60.0 * len(self.done) / self.seconds if self.seconds > 0 else 0.0


def expand_inputs(patterns: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand globs and ``@list.txt`` files (one path per line) into a sorted list of files.

    Raises
    ------
    CryomlError
        If a pattern matches nothing or a listed file does not exist.
    """
    found: list[Path] = []
    for pattern in map(str, patterns):
        if pattern.startswith("@"):
            listing = Path(pattern[1:])
            if not listing.is_file():
                raise CryomlError(f"{listing}: no such list file.")
            names = [line.strip() for line in listing.read_text().splitlines()]
            paths = [Path(n) for n in names if n and not n.startswith("#")]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise CryomlError(f"{listing} names files that do not exist: {missing[:5]}.")
            found.extend(paths)
        else:
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise CryomlError(f"'{pattern}' matches no file. Check the path or glob.")
            found.extend(Path(m) for m in matches)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def _stamp(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def run_key(task: Callable[..., dict], options: dict | None) -> str:
    """A hash of the task, its options and the content of every file an option names.

    Two runs with the same key write the same outputs from the same inputs: a retrained
    network (same path, new weights), another threshold, engine or precision all change it.
    """
    digest = hashlib.sha256()
    digest.update(f"{task.__module__}.{task.__qualname__}".encode())
    digest.update(json.dumps(options or {}, sort_keys=True, default=str).encode())
    for value in sorted(str(v) for v in (options or {}).values() if isinstance(v, (str, Path))):
        for path in (Path(value), Path(value + ".json")):
            try:
                if not path.is_file():
                    continue
                with open(path, "rb") as handle:
                    for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                        digest.update(block)
            except OSError:
                continue
    return digest.hexdigest()[:32]


def _load_manifest(out_dir: Path) -> dict[str, dict]:
    path = out_dir / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text()).get("files", {})
    except json.JSONDecodeError:
        log.warning("%s is unreadable; every input will be processed again", path)
        return {}


def _save_manifest(out_dir: Path, entries: dict[str, dict]) -> None:
    with atomic_path(out_dir / MANIFEST_NAME, overwrite=True) as tmp:
        tmp.write_text(json.dumps({"files": entries}, indent=1, sort_keys=True))


def _is_finished(entry: dict | None, input_path: Path, output_path: Path, key: str) -> bool:
    if entry is None or not output_path.exists() or entry.get("key") != key:
        return False
    return entry.get("input") == _stamp(input_path) and entry.get("output_size") == (
        output_path.stat().st_size
    )


def _written_by_us(entry: dict | None, output_path: Path) -> bool:
    # The manifest records this very file, unchanged since a run wrote it.
    return (
        entry is not None
        and entry.get("output") == str(output_path)
        and entry.get("output_size") == output_path.stat().st_size
    )


def _remove_stale_partials(out_dir: Path) -> None:
    for stale in out_dir.glob(f".*{_PARTIAL_TAG}*"):
        log.info("removing %s left by an interrupted run", stale)
        stale.unlink(missing_ok=True)


def _run_one(task: Callable[..., dict], input_path: str, output_path: str, options: dict) -> dict:
    # Runs on a worker. Write under a hidden temporary name; rename only on success.
    final = Path(output_path)
    partial = final.with_name(f".{final.stem}{_PARTIAL_TAG}{uuid.uuid4().hex[:8]}{final.suffix}")
    start = time.perf_counter()
    try:
        result = task(Path(input_path), partial, **options) or {}
        if not partial.exists():
            raise CryomlError(f"task {task.__name__} wrote no output for {input_path}.")
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return {
        "input": input_path,
        "output": output_path,
        "seconds": time.perf_counter() - start,
        "worker_pid": os.getpid(),
        "result": result,
    }


def _check_distinct_outputs(files: Sequence[Path], out_dir: Path, suffix: str) -> None:
    """Refuse inputs whose outputs would land on one file (same name, different folders)."""
    first: dict[str, Path] = {}
    for path in files:
        name = f"{path.stem}{suffix}"
        if name in first:
            raise CryomlError(
                f"{first[name]} and {path} would both be written to {out_dir / name} (same file "
                f"name in different folders). Run them with different output folders, or "
                f"rename one."
            )
        first[name] = path


def run_batch(
    task: Callable[..., dict],
    inputs: Sequence[str | os.PathLike],
    *,
    out_dir: str | os.PathLike,
    suffix: str,
    options: dict | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    resume: bool = True,
    retries: int = 2,
    progress: bool = True,
    overwrite: bool = True,
) -> BatchReport:
    """Run ``task`` over every input file on a Dask cluster.

    Parameters
    ----------
    task : callable
        Top-level function ``task(input_path, output_path, **options) -> dict``.
    inputs : sequence of str or path-like
        Files, globs or ``@list.txt`` files.
    out_dir : str or path-like
        Output folder (created if needed); holds the manifest.
    suffix : str
        Output name suffix, e.g. ``"_seg.mrc"``.
    options : dict, optional
        Keyword arguments passed to every task call.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); default: a LocalCluster.
    n_workers : int, optional
        Workers of the LocalCluster (default: min(files, CPU cores)).
    threads_per_worker : int, default 1
        Threads per LocalCluster worker.
    resume : bool, default True
        Skip files the manifest shows finished (if False, process every input again; the
        manifest keeps its records, updated as files finish).
    retries : int, default 2
        How often Dask retries a task that raised.
    progress : bool, default True
        Show a progress bar.
    overwrite : bool, default True
        Replace existing output files. If False, outputs that exist but that the manifest does
        not record as written by an earlier run are an error (outputs recorded there are still
        replaced when they are processed again).

    Returns
    -------
    BatchReport

    Raises
    ------
    CryomlError
        If an input pattern matches nothing, two inputs would write one output (same name in
        different folders), or ``overwrite`` is False and an output to be written exists but is
        not recorded in the manifest.
    """
    files = expand_inputs(inputs)
    out_dir = Path(out_dir)
    _check_distinct_outputs(files, out_dir, suffix)
    if out_dir.exists() and not out_dir.is_dir():
        raise CryomlError(
            f"--out-dir {out_dir} is a file, not a folder; give a folder for the outputs."
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CryomlError(
            f"cannot create the output folder {out_dir} (--out-dir): {error.strerror}. Choose "
            "a folder you can write to."
        ) from None
    key = run_key(task, options)
    _remove_stale_partials(out_dir)
    manifest = _load_manifest(out_dir)
    report = BatchReport()
    todo: list[tuple[Path, Path]] = []
    for path in files:
        output = out_dir / f"{path.stem}{suffix}"
        if resume and _is_finished(manifest.get(str(path)), path, output, key):
            report.skipped.append(str(path))
        else:
            todo.append((path, output))
    if not overwrite:
        foreign = [
            str(output)
            for path, output in todo
            if output.exists() and not _written_by_us(manifest.get(str(path)), output)
        ]
        if foreign:
            raise CryomlError(
                f"{len(foreign)} output file(s) already exist and no earlier run recorded them in "
                f"{out_dir / MANIFEST_NAME}: {foreign[:5]}. Pass --overwrite (overwrite=True) to "
                "replace them, or choose another output folder."
            )
    if not todo:
        log.info("all %d files already finished (see %s)", len(files), out_dir / MANIFEST_NAME)
        return report
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    start = time.perf_counter()
    cluster = None
    if scheduler is None:
        workers = n_workers or max(1, min(len(todo), os.cpu_count() or 1))
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
        )
    try:
        with Client(scheduler or cluster) as client:
            report.n_workers = len(client.scheduler_info().get("workers", {}))
            futures = {
                client.submit(
                    _run_one,
                    task,
                    str(path),
                    str(output),
                    dict(options or {}),
                    pure=False,
                    retries=retries,
                    key=f"cryoml-{path.name}-{uuid.uuid4().hex[:6]}",
                ): path
                for path, output in todo
            }
            bar = tqdm(total=len(futures), desc=task.__name__, unit="file", disable=not progress)
            for future in as_completed(futures):
                path = futures[future]
                try:
                    record = future.result()
                except Exception as error:  # report every failure, keep the others going
                    report.failed[str(path)] = f"{type(error).__name__}: {error}"
                    log.error("%s failed: %s", path, error)
                else:
                    output = Path(record["output"])
                    manifest[str(path)] = {
                        "input": _stamp(path),
                        "key": key,
                        "output": str(output),
                        "output_size": output.stat().st_size,
                        "finished": datetime.datetime.now(datetime.UTC).isoformat(),
                        "seconds": round(record["seconds"], 3),
                    }
                    _save_manifest(out_dir, manifest)
                    report.done.append(record)
                bar.update()
            bar.close()
    finally:
        if cluster is not None:
            cluster.close()
        # Every task has ended: temporary files left now belong to killed workers.
        _remove_stale_partials(out_dir)
    report.seconds = time.perf_counter() - start
    return report
