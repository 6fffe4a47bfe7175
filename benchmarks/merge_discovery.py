"""Merge the results files of parallel ``subtomo_discovery.py`` runs into one.

Runs are merged per model (a later file's run of the same class wins); cluster sizes are kept
from whichever file has them; the totals are recomputed. Prints the totals as JSON.

    python benchmarks/merge_discovery.py merged.json /tmp/d_0.json /tmp/d_1.json ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from subtomo_discovery import totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("inputs", type=Path, nargs="+")
    args = parser.parse_args()
    merged: dict | None = None
    for path in args.inputs:
        part = json.loads(path.read_text())
        if merged is None:
            merged = part
            continue
        for model, runs in part.get("runs", {}).items():
            merged["runs"].setdefault(model, {}).update(runs)
        for key in ("cluster_size_max_over_median", "cluster_sizes"):
            if key in part:
                merged[key] = part[key]
    merged.update(totals(merged["runs"], next(iter(merged["runs"]), "")))  # first model's
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=1))
    os.replace(tmp, args.output)
    keys = ("successes", "successes_from_shell_2", "n_done", "resolution_nm")
    print(json.dumps({key: merged[key] for key in keys}, indent=1))


if __name__ == "__main__":
    main()
