"""Running the step-through notebooks: backend choice inside them, headless execution outside.

Each notebook in ``notebooks/`` has a cell tagged ``parameters`` (``QUICK = True``,
``OUT = Path(...)``, with ``Path`` imported before). :func:`execute_notebooks` runs every
notebook top to bottom with nbclient, injecting a cell after the parameters cell (as
papermill does) that sets ``QUICK`` and ``OUT``, and writes the executed notebooks, with
their figures, to an output folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cryoml._errors import CryomlError
from cryoml._quiet import quiet_tensorflow

__all__ = [
    "execute_notebooks",
    "find_notebooks",
    "headline",
    "is_quick",
    "read_headline",
    "setup_notebook",
]

logger = logging.getLogger(__name__)

_HEADLESS = "CRYOML_NOTEBOOK_HEADLESS"
_HEADLINE = "headline: "


def is_quick(default: bool = True) -> bool:
    """``$CRYOML_QUICK`` as a bool (``1/true/yes`` or ``0/false/no``); ``default`` if unset."""
    value = os.environ.get("CRYOML_QUICK", "").strip().lower()
    if not value:
        return bool(default)
    return value in ("1", "true", "yes", "on")


def setup_notebook(*, interactive: bool | None = None, quiet: bool = True) -> str:
    """Set up a notebook session: matplotlib backend for the widgets, quiet TensorFlow.

    Live widgets need ipympl (``%matplotlib widget``). When the notebook runs headless
    (``$CRYOML_NOTEBOOK_HEADLESS`` set, as :func:`execute_notebooks` does) the ``inline``
    backend is used, so that figures are stored in the executed notebook.

    This is the one place where cryoml changes process-wide settings, and only because the
    notebook asks: the library itself never does. Call it in the first code cell, before
    anything trains.

    Parameters
    ----------
    interactive : bool, optional
        Live ipympl figures; default: unless ``$CRYOML_NOTEBOOK_HEADLESS`` is set.
    quiet : bool, default True
        Keep TensorFlow's start-up log (oneDNN, absl, CUDA notices: printed in pink, they
        read as errors) and ``tf.function`` retracing warnings out of the outputs: sets
        ``$TF_CPP_MIN_LOG_LEVEL=2`` unless set, imports TensorFlow (when it is Keras's
        backend) with its C++ start-up lines set aside, and filters the ``tensorflow``
        logger down to errors. Errors still show.

    Returns
    -------
    str
        ``"widget"``, ``"inline"`` or ``"none"`` (not inside IPython).
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return "none"
    if quiet:
        quiet_tensorflow()
    shell = get_ipython()
    if shell is None:
        return "none"
    if interactive is None:
        interactive = not os.environ.get(_HEADLESS)
    backend = "widget" if interactive else "inline"
    if interactive:
        try:
            import ipympl  # noqa: F401
        except ImportError:
            logger.warning("ipympl is missing (pip install ipympl); figures will be static")
            backend = "inline"
    shell.run_line_magic("matplotlib", backend)
    return backend


def headline(**numbers: Any) -> None:
    """Print a notebook's headline numbers as one line, ``headline: {json}``.

    Each notebook ends with this call, so that its last output line holds the figures that
    show the method working; :func:`read_headline` reads them back from the executed
    notebook (``make demo`` prints them, the tests hold them to quality floors).
    Floats are rounded to 3 decimals; NumPy scalars become Python numbers.

    Parameters
    ----------
    **numbers
        Name → number, bool, string, or a (nested) list/dict of those.

    Examples
    --------
    >>> headline(test_accuracy=0.91234, classes=4)
    headline: {"test_accuracy": 0.912, "classes": 4}
    """
    import json

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if hasattr(value, "item") and getattr(value, "shape", None) == ():
            value = value.item()
        if isinstance(value, float):
            return round(value, 3)
        if value is None or isinstance(value, (bool, int, str)):
            return value
        raise CryomlError(
            f"headline(): {type(value).__name__} is not a number, bool or string; pass plain "
            "values (e.g. float(x))."
        )

    print(_HEADLINE + json.dumps(plain(numbers)), flush=True)


def read_headline(notebook: str | os.PathLike | Any) -> dict[str, Any]:
    """The headline numbers printed by :func:`headline` as an executed notebook's last line.

    Parameters
    ----------
    notebook : path or nbformat notebook
        An executed notebook.

    Returns
    -------
    dict

    Raises
    ------
    CryomlError
        If the notebook's last output line is not a ``headline: {json}`` line.
    """
    import json

    import nbformat

    name = "the notebook"
    if isinstance(notebook, (str, os.PathLike)):
        name = str(notebook)
        notebook = nbformat.read(notebook, as_version=4)
    lines: list[str] = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                lines.extend(line for line in output.get("text", "").splitlines() if line.strip())
            elif output.get("output_type") in ("execute_result", "display_data", "error"):
                lines.append(f"<{output['output_type']}>")
    last = lines[-1] if lines else "<no output>"
    if not last.startswith(_HEADLINE):
        raise CryomlError(
            f"{name}: the last output line is {last[:80]!r}, not 'headline: {{...}}'. End the "
            "notebook with cryoml.widgets.headline(...)."
        )
    try:
        return json.loads(last[len(_HEADLINE):])
    except json.JSONDecodeError as error:
        raise CryomlError(f"{name}: the headline line is not valid JSON ({error}).") from None


def find_notebooks(folder: str | os.PathLike | None = None) -> list[Path]:
    """The step-through notebooks (``NN_name.ipynb``), in order.

    ``folder`` defaults to ``notebooks/`` in the project root.
    """
    if folder is None:
        from cryoml._testing import project_root

        folder = project_root() / "notebooks"
    folder = Path(folder)
    if not folder.is_dir():
        raise CryomlError(f"{folder}: no notebooks folder here. Pass the folder that holds them.")
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def _inject(notebook: Any, parameters: dict[str, str]) -> None:
    """Insert ``name = expression`` lines after the cell tagged ``parameters``."""
    import nbformat

    source = "# Parameters injected by cryoml.widgets.execute_notebooks\n" + "\n".join(
        f"{name} = {value}" for name, value in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    cell.id = "injected-parameters"
    position = next(
        (i + 1 for i, c in enumerate(notebook.cells)
         if "parameters" in c.get("metadata", {}).get("tags", [])),
        0,
    )
    notebook.cells.insert(position, cell)


def _children_cpu() -> float:
    """CPU seconds (user + system) used by finished child processes (the kernels)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return float("nan")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def execute_notebooks(
    out_dir: str | os.PathLike,
    *,
    notebooks: list[str | os.PathLike] | None = None,
    quick: bool = True,
    timeout: float = 240.0,
    raise_on_error: bool = True,
    kernel_name: str = "python3",
) -> dict[str, dict[str, Any]]:
    """Execute notebooks headless and write them, with outputs, to ``out_dir``.

    Parameters
    ----------
    out_dir : str or path-like
        Receives ``<name>.ipynb`` (executed) and ``<name>/`` (files the notebook writes;
        emptied before each run).
    notebooks : list of paths, optional
        Default: :func:`find_notebooks`.
    quick : bool, default True
        Value injected as ``QUICK``.
    timeout : float, default 240
        Seconds allowed per cell.
    raise_on_error : bool, default True
        Raise after running all notebooks if any failed.
    kernel_name : str, default "python3"

    Returns
    -------
    dict
        Per notebook name: ``seconds`` (wall clock), ``cpu_seconds`` (the kernel's CPU time,
        a load-independent measure), ``ok``, ``path`` (executed notebook), ``error``,
        ``headline`` (its :func:`read_headline` numbers, or None if it printed none),
        ``kernel_log`` (the kernel process's stderr, kept out of the caller's terminal).

    Raises
    ------
    CryomlError
        Naming the notebooks that failed and the first error of each (``raise_on_error``).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from cryoml.io import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in notebooks] if notebooks is not None else find_notebooks()
    if not paths:
        raise CryomlError("no notebooks to execute (expected NN_name.ipynb files).")
    env = dict(os.environ)
    env.update({_HEADLESS: "1", "CRYOML_QUICK": "1" if quick else "0", "MPLBACKEND": "agg"})
    # ipykernel stops copying descriptor-level output (C++ logs) into cells when it sees
    # this variable; run under pytest, the kernel must still behave as a user's does
    env.pop("PYTEST_CURRENT_TEST", None)
    env.setdefault("OMP_NUM_THREADS", "2")
    # no TF_CPP_MIN_LOG_LEVEL here: the notebooks quiet TensorFlow themselves
    # (setup_notebook), as they must in JupyterLab, and the tests check that they do
    results: dict[str, dict[str, Any]] = {}
    for path in paths:
        name = path.stem
        work = out_dir / name
        if work.is_dir():  # a fresh run: no annotations resumed from the last one
            shutil.rmtree(work)
        work.mkdir()
        notebook = nbformat.read(path, as_version=4)
        _inject(notebook, {"QUICK": repr(bool(quick)), "OUT": f"Path({str(work.resolve())!r})"})
        client = NotebookClient(
            notebook, timeout=timeout, kernel_name=kernel_name,
            resources={"metadata": {"path": str(path.parent.resolve())}},
        )
        start = time.perf_counter()
        cpu_start = _children_cpu()
        error = None
        # The kernel's own stderr (TensorFlow's C++ start-up lines, ipykernel's transport
        # notice) goes to a log beside the executed notebook, not over the caller's terminal.
        kernel_log = out_dir / f"{name}.kernel.log"
        try:
            with open(kernel_log, "w") as kernel_stderr:
                client.execute(env=env, stderr=kernel_stderr)
        except (CellExecutionError, CellTimeoutError) as failure:
            error = str(failure).strip().splitlines()[-1] if str(failure).strip() else repr(failure)
        except Exception as failure:  # kernel died, etc.: still record and go on
            error = f"{type(failure).__name__}: {failure}"
        seconds = time.perf_counter() - start
        cpu_seconds = _children_cpu() - cpu_start
        target = out_dir / path.name
        with atomic_path(target, overwrite=True) as tmp:
            nbformat.write(notebook, tmp)
        target.chmod(0o644)  # temporary files are private; the result is not
        try:
            numbers = read_headline(notebook)
        except CryomlError:
            numbers = None
        results[name] = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
                         "ok": error is None, "path": target, "error": error,
                         "kernel_log": kernel_log,
                         "headline": numbers}
        logger.info("%s: %s in %.1f s", name, "ok" if error is None else "FAILED", seconds)
    failed = {k: v["error"] for k, v in results.items() if not v["ok"]}
    if failed and raise_on_error:
        raise CryomlError(
            "notebooks failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items())
            + f". The executed notebooks in {out_dir} show where."
        )
    return results
