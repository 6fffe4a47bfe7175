"""Shared options for subcommands that process many files (globs, lists, Dask clusters)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def add_batch_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--out-dir``, ``--scheduler``, ``--workers`` and ``--no-resume``."""
    group = parser.add_argument_group("many files (Dask)")
    group.add_argument(
        "--scheduler",
        help="address of a running Dask scheduler (e.g. tcp://head:8786, or a dask-jobqueue "
        "SLURMCluster's scheduler_address); default: a local cluster",
    )
    group.add_argument("--workers", type=int, help="local cluster workers (default: CPU cores)")
    group.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="process every file again even if the manifest shows it finished",
    )


def run_files(
    task: Callable[..., dict],
    inputs: list[str],
    *,
    out_dir: Path,
    suffix: str,
    options: dict,
    args: argparse.Namespace,
    overwrite: bool = True,
) -> int:
    """Run ``task`` over the inputs through :func:`cryoml.batch.run_batch` and print a summary.

    ``overwrite=False`` refuses to replace output files that no earlier run recorded in the
    manifest (see :func:`~cryoml.batch.run_batch`). Returns the exit status: 1 if a file failed.
    """
    from cryoml.batch import run_batch

    report = run_batch(
        task,
        inputs,
        out_dir=out_dir,
        suffix=suffix,
        options=options,
        scheduler=args.scheduler,
        n_workers=args.workers,
        resume=args.resume,
        progress=not getattr(args, "quiet", False),
        overwrite=overwrite,
    )
    print(
        json.dumps(
            {
                "done": len(report.done),
                "skipped": len(report.skipped),
                "failed": report.failed,
                "files_per_minute": round(report.files_per_minute, 2),
                "workers": report.n_workers,
                "out_dir": str(out_dir),
            }
        )
    )
    return 1 if report.failed else 0
