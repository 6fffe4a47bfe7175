"""``cryoml demo`` part of the widgets: execute the step-through notebooks headless."""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_demo"]


def run_demo(out_dir: Path, *, quick: bool = True) -> dict:
    """Execute every notebook in ``notebooks/`` into ``out_dir`` (with their figures).

    Takes a few minutes in QUICK mode on two CPU cores (all six notebooks); failures are
    reported in the returned dict rather than raised, so the other demos still run.

    Returns
    -------
    dict
        Per notebook: ``seconds``, ``cpu_seconds``, ``ok``, ``error``; plus ``n_failed``.
    """
    from cryoml.widgets._notebooks import execute_notebooks

    results = execute_notebooks(Path(out_dir), quick=quick, raise_on_error=False)
    summary = {
        name: {key: value for key, value in result.items() if key != "path"}
        for name, result in results.items()
    }
    summary["n_failed"] = sum(not r["ok"] for r in results.values())
    return summary
