"""Table 1 of Xu et al. (2017): classification accuracy over 5 SNR × 3 tilt ranges.

Per cell: simulate 22 complexes + empty, ``n_per_class`` each (paper: 1000), 40³ at 9.2 Å;
train on one half, test on the other; Inception3D and DSRF3D (paper recipe) and RIF-SVM.

Chunked: ``--cells "snr=0.1,tilt=60" "snr=0.05,tilt=40"`` runs only those cells and merges
them into the results file (default ``outputs/benchmarks/subtomo_table1.json``), so the full
grid can be run piece by piece (one cell ≈ a few minutes on one H100 with KERAS_BACKEND=jax).
Prints the merged JSON (key ``accuracy`` → method → cell) and writes a markdown table beside the
paper's numbers (``subtomo_table1.md``).

    .venv/bin/python benchmarks/subtomo_table1.py --quick            # CPU, minutes
    KERAS_BACKEND=jax python benchmarks/subtomo_table1.py --cells "snr=0.1,tilt=60"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import OUTPUTS, emit, hardware

PAPER = {  # Table 1: (Inception3D, DSRF3D, RIF-SVM)
    (1000, 60): (0.993, 0.990, 0.992), (1000, 50): (0.994, 0.978, 0.983),
    (1000, 40): (0.983, 0.991, 0.967),
    (0.5, 60): (0.975, 0.972, 0.929), (0.5, 50): (0.964, 0.967, 0.885),
    (0.5, 40): (0.931, 0.951, 0.857),
    (0.1, 60): (0.851, 0.891, 0.762), (0.1, 50): (0.807, 0.873, 0.633),
    (0.1, 40): (0.809, 0.866, 0.649),
    (0.05, 60): (0.757, 0.767, 0.592), (0.05, 50): (0.682, 0.728, 0.455),
    (0.05, 40): (0.637, 0.684, 0.468),
    (0.03, 60): (0.608, 0.658, 0.446), (0.03, 50): (0.516, 0.604, 0.319),
    (0.03, 40): (0.473, 0.556, 0.341),
}
METHODS = ("inception3d", "dsrf3d", "rif_svm")


def cell_name(snr: float, tilt: float) -> str:
    return f"snr={snr:g},tilt={tilt:g}"


def parse_cell(text: str) -> tuple[float, float]:
    parts = dict(item.split("=") for item in text.replace(" ", "").split(","))
    return float(parts["snr"]), float(parts["tilt"])


def run_cell(snr, tilt, args, complexes, log):
    import numpy as np

    from cryoml.simulate import simulate_subtomograms
    from cryoml.subtomo import RIFSVM, SubtomoClassifier

    t0 = time.perf_counter()
    data = simulate_subtomograms(
        complexes, args.n_per_class, snr=snr, tilt_range=tilt, box=args.box,
        voxel_size=args.voxel_size, random_state=args.seed, n_jobs=args.n_jobs,
    )
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(data))
    half = len(order) // 2
    train, test = np.sort(order[:half]), np.sort(order[half:])
    x_train, y_train = data.data[train], data.labels[train]
    x_test, y_test = data.data[test], data.labels[test]
    out = {"simulate_s": time.perf_counter() - t0}
    log(f"  simulated {len(data)} in {out['simulate_s']:.0f} s")
    for method in args.methods:
        t1 = time.perf_counter()
        if method == "rif_svm":
            model = RIFSVM(random_state=args.seed, n_jobs=args.n_jobs).fit(x_train, y_train)
            accuracy = model.evaluate(x_test, y_test)["accuracy"]
        else:
            clf = SubtomoClassifier(model=method, recipe=args.recipe, epochs=args.epochs,
                                    normalize=method not in args.raw, random_state=args.seed,
                                    progress=False)
            clf.fit(x_train, y_train, class_names=data.class_names)
            accuracy = clf.evaluate(x_test, y_test)["accuracy"]
        out[method] = float(accuracy)
        if method != "rif_svm":
            out[f"{method}_input"] = "raw" if method in args.raw else "standardised"
        out[f"{method}_s"] = time.perf_counter() - t1
        log(f"  {method}: {accuracy:.3f} ({out[f'{method}_s']:.0f} s)")
    return out


def markdown(results: dict) -> str:
    lines = [
        "| SNR | tilt | Inception3D (ours / paper) | DSRF3D (ours / paper) | "
        "RIF-SVM (ours / paper) |",
        "|---|---|---|---|---|",
    ]
    for (snr, tilt), paper in PAPER.items():
        name = cell_name(snr, tilt)
        cells = []
        for method, reference in zip(METHODS, paper, strict=True):
            value = results["accuracy"].get(method, {}).get(name)
            cells.append(f"{'—' if value is None else f'{value:.3f}'} / {reference:.3f}")
        lines.append(f"| {snr:g} | ±{tilt:g}° | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 classes, 40 per class, 24³ at 15.3 Å, 4 cells, 5 epochs (CPU)")
    parser.add_argument("--cells", nargs="*", help='e.g. "snr=0.1,tilt=60" (default: all)')
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--results", type=Path, help="results JSON to merge into")
    parser.add_argument("--n-per-class", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--recipe", default="paper", choices=("paper", "modern"))
    parser.add_argument("--raw", nargs="*", choices=METHODS[:2], default=None,
                        metavar="MODEL",
                        help="train these CNNs (all when none is named) on the raw simulated "
                        "volumes (normalize=False), as the authors' code did, instead of "
                        "standardising each one")
    parser.add_argument("--box", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    args.raw = (set() if args.raw is None else set(args.raw or METHODS[:2]))

    from cryoml.subtomo import XU2017_COMPLEXES

    if args.quick:
        complexes = ["1bxn", "3j9i", "1u6g", "4v4r"]
        args.n_per_class = args.n_per_class or 40
        args.epochs = args.epochs or 5
        args.box = args.box or 24
        default_cells = ["snr=1000,tilt=60", "snr=0.5,tilt=60", "snr=0.1,tilt=60",
                         "snr=0.1,tilt=40"]
    else:
        complexes = list(XU2017_COMPLEXES)
        args.n_per_class = args.n_per_class or 1000
        args.epochs = args.epochs or 20
        args.box = args.box or 40
        default_cells = [cell_name(s, t) for s, t in PAPER]
    args.voxel_size = 9.2 * 40 / args.box  # keep the paper's 36.8 nm field of view
    cells = [parse_cell(c) for c in (args.cells or default_cells)]
    suffix = "_quick" if args.quick else ""
    results_path = args.results or OUTPUTS / f"subtomo_table1{suffix}.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results = (json.loads(results_path.read_text()) if results_path.is_file()
               else {"accuracy": {m: {} for m in METHODS}, "details": {}})

    def log(message):
        print(message, file=sys.stderr, flush=True)

    for snr, tilt in cells:
        name = cell_name(snr, tilt)
        log(f"cell {name}")
        out = run_cell(snr, tilt, args, complexes, log)
        for method in args.methods:
            results["accuracy"].setdefault(method, {})[name] = out[method]
        results["details"][name] = out
        results["hardware"] = hardware()
        results["settings"] = {
            "n_classes": len(complexes) + 1, "n_per_class": args.n_per_class,
            "epochs": args.epochs, "recipe": args.recipe, "box": args.box,
            "raw_input": sorted(args.raw),
            "voxel_size": args.voxel_size, "quick": args.quick,
            "complexes": complexes,
        }
        tmp = results_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, results_path)  # after every cell: an interrupted run keeps its cells
    (results_path.with_suffix(".md")).write_text(markdown(results))
    emit(results)


if __name__ == "__main__":
    main()
