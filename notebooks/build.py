"""Build the step-through notebooks (.ipynb) from their percent-format sources (.py).

The ``NN_name.py`` files beside this script are the reviewable sources: cells start with
``# %%`` (code; ``# %% tags=["parameters"]`` adds tags) or ``# %% [markdown]`` (markdown, each
line prefixed with ``# ``). Run from the project root:

    .venv/bin/python notebooks/build.py          # write every NN_name.ipynb
    .venv/bin/python notebooks/build.py --check  # fail if an .ipynb is stale or a cell is long

Code cells longer than MAX_LINES lines are refused: notebooks call the library, they do not
re-implement it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

MAX_LINES = 25
HERE = Path(__file__).resolve().parent
_MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def parse(source: str) -> list[nbformat.NotebookNode]:
    """Cells of a percent-format script."""
    cells: list[nbformat.NotebookNode] = []
    kind, tags, lines = None, [], []

    def flush() -> None:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind is None or not lines:
            return
        if kind == "markdown":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                             for line in lines)
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell("\n".join(lines))
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in source.splitlines():
        match = _MARKER.match(line)
        if match:
            flush()
            kind = "markdown" if match["markdown"] else "code"
            tags = json.loads(match["tags"]) if match["tags"] else []
            lines = []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build(path: Path) -> nbformat.NotebookNode:
    """The notebook for one source file; raises if a code cell is too long."""
    cells = parse(path.read_text())
    for number, cell in enumerate(cells, start=1):
        n = len(cell.source.splitlines())
        if cell.cell_type == "code" and n > MAX_LINES:
            raise SystemExit(f"{path.name}, cell {number}: {n} lines (max {MAX_LINES}); split it.")
    for number, cell in enumerate(cells):
        cell.id = f"{path.stem[:2]}-{number:03d}"
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                       "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(notebook)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(HERE.glob("[0-9][0-9]_*.py")):
        text = nbformat.writes(build(source)) + "\n"
        target = source.with_suffix(".ipynb")
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(target.name)
            continue
        target.write_text(text)
        print(f"wrote {target.relative_to(HERE.parent)}")
    if stale:
        print("stale (run notebooks/build.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
