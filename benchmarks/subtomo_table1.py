"""Table 1 of Xu et al. (2017): classification accuracy over 5 SNR × 3 tilt ranges.

Per cell: simulate 22 complexes + empty, ``n_per_class`` each (paper: 1000), 40³ at 9.2 Å,
noise added before CTF × MTF as the paper did (``--noise-stage paper``, the default; ``detector``
is the old, much easier order); train on one half, test on the other; Inception3D and DSRF3D
(paper recipe) and RIF-SVM (on all cores).

Resumable, piece by piece, into ONE results file (default
``outputs/benchmarks/subtomo_table1_paper_noise.json``; ``subtomo_table1.json`` for the
detector stage): every finished (cell, method) is saved at once, and a later call with the same
command skips what the file already holds (``--redo`` to run it again). ``--budget-s S`` stops
before starting a piece that would not finish within S seconds of the start (the estimate is
the longest time that piece took in earlier cells, else a default for an H200 host), so a call
ends in time with its pieces saved; run the same command again to continue. RIF-SVM runs in a
thread on all CPU cores while the CNNs train on the GPU (``--no-overlap-rif``: after them).

``--protocol reduced`` (labelled so in the results): only the cells SNR 0.1 ±60°, 0.05 ±60°
and 0.03 ±40° (the paper's headline cells), each with the full per-cell protocol; ``full``
(default): all 15 cells, those three first.

Prints the merged JSON (key ``accuracy`` → method → cell) and writes a markdown table beside the
paper's numbers (``.md`` beside the results file).

    .venv/bin/python benchmarks/subtomo_table1.py --quick            # CPU, minutes
    KERAS_BACKEND=jax python benchmarks/subtomo_table1.py --raw inception3d --budget-s 510
"""

from __future__ import annotations

import argparse
import concurrent.futures
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
REDUCED_CELLS = ((0.1, 60.0), (0.05, 60.0), (0.03, 40.0))
# Seconds per piece of a full-size cell (23,000 subtomograms) on one H200 host with 16 cores,
# used until this run's results file has measured ones (session 1-3 timings, RIF-SVM guessed
# high: its SVM grows with the support vectors, and noisier data keep more of them).
DEFAULT_SECONDS = {"simulate": 45.0, "inception3d": 100.0, "dsrf3d": 160.0, "rif_svm": 200.0}


def cell_name(snr: float, tilt: float) -> str:
    return f"snr={snr:g},tilt={tilt:g}"


def parse_cell(text: str) -> tuple[float, float]:
    parts = dict(item.split("=") for item in text.replace(" ", "").split(","))
    return float(parts["snr"]), float(parts["tilt"])


class CachedCell:
    """A cell read back from ``--cache``: what :func:`simulate_cell`'s callers use of a set."""

    def __init__(self, data, labels, class_names):
        self.data, self.labels, self.class_names = data, labels, class_names

    def __len__(self) -> int:
        return len(self.labels)


def simulate_cell(snr, tilt, args, complexes):
    """The cell's subtomograms, split in half (the same set for every method of a cell)."""
    import numpy as np

    from cryoml.simulate import simulate_subtomograms

    cached = None
    if args.cache is not None:
        key = (f"{cell_name(snr, tilt)}_{args.noise_stage}_n{args.n_per_class}_box{args.box}"
               f"_seed{args.seed}_{len(complexes)}complexes")
        cached = args.cache / key
    if cached is not None and (cached / "labels.npy").is_file():
        meta = json.loads((cached / "meta.json").read_text())
        data = CachedCell(np.load(cached / "data.npy", mmap_mode="r"),
                          np.load(cached / "labels.npy"), meta["class_names"])
    else:
        data = simulate_subtomograms(
            complexes, args.n_per_class, snr=snr, tilt_range=tilt, box=args.box,
            voxel_size=args.voxel_size, random_state=args.seed, n_jobs=args.n_jobs,
            noise_stage=args.noise_stage,
        )
        if cached is not None:  # other processes of a probe read the same cell
            tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
            tmp.mkdir(parents=True, exist_ok=True)
            np.save(tmp / "data.npy", data.data)
            np.save(tmp / "labels.npy", data.labels)
            (tmp / "meta.json").write_text(json.dumps({"class_names": data.class_names}))
            try:
                os.replace(tmp, cached)
            except OSError:  # another process finished first
                pass
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(data))
    half = len(order) // 2
    train, test = np.sort(order[:half]), np.sort(order[half:])
    return (data.data[train], data.labels[train]), (data.data[test], data.labels[test]), data


def run_method(method, train, test, class_names, args) -> dict:
    """Fit one method on ``train`` and score it on ``test``; accuracy and seconds."""
    from cryoml.subtomo import RIFSVM, SubtomoClassifier

    start = time.perf_counter()
    out: dict = {}
    if method == "rif_svm":
        model = RIFSVM(random_state=args.seed, n_jobs=args.n_jobs).fit(*train)
        report = model.evaluate(*test)
        out["n_jobs"] = args.n_jobs
    else:
        options = {"recipe": args.recipe, "epochs": args.epochs,
                   "normalize": method not in args.raw,
                   **args.classifier_options.get(method, {})}
        clf = SubtomoClassifier(model=method, random_state=args.seed, progress=False, **options)
        clf.fit(*train, class_names=class_names)
        report = clf.evaluate(*test)
        out["input"] = "standardised" if clf.normalize else "raw"
        out["val_accuracy"] = [round(v, 4) for v in clf.history_["val_accuracy"]]
    out["accuracy"] = float(report["accuracy"])
    out["confusion_matrix"] = report.get("confusion_matrix")
    out["class_names"] = report.get("class_names") or list(class_names)
    out["seconds"] = time.perf_counter() - start
    return out


def parse_classifier_options(items: list[str], parser) -> dict[str, dict]:
    """``MODEL=JSON`` items as {model: SubtomoClassifier keyword arguments}."""
    parsed: dict[str, dict] = {}
    for item in items:
        model, _, text = item.partition("=")
        try:
            options = json.loads(text)
        except json.JSONDecodeError as error:
            parser.error(f"--classifier-options {item!r}: not JSON after '=' ({error})")
        if model not in METHODS[:2] or not isinstance(options, dict):
            parser.error(f"--classifier-options {item!r}: use MODEL={{...}} with MODEL one of "
                         f"{list(METHODS[:2])}")
        parsed[model] = options
    return parsed


def estimate_seconds(results: dict, piece: str, scale: float) -> float:
    """The longest time ``piece`` took in this file's cells, else the H200 default × scale."""
    seen = [d[f"{piece}_s"] for d in results.get("details", {}).values() if f"{piece}_s" in d]
    return max(seen) if seen else DEFAULT_SECONDS[piece] * scale


def markdown(results: dict) -> str:
    settings = results.get("settings", {})
    lines = [
        f"Noise stage: {settings.get('noise_stage', 'detector')}; protocol per cell: "
        f"{json.dumps(results.get('protocol', {}))}; {results.get('hardware', '')}",
        "",
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
    start_time = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 classes, 40 per class, 24³ at 15.3 Å, 4 cells, 5 epochs (CPU)")
    parser.add_argument("--cells", nargs="*", help='e.g. "snr=0.1,tilt=60" (default: all)')
    parser.add_argument("--protocol", choices=("full", "reduced"), default="full",
                        help="reduced: only SNR 0.1 ±60°, 0.05 ±60°, 0.03 ±40° (full per-cell "
                        "protocol each)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--results", type=Path, help="results JSON to merge into")
    parser.add_argument("--noise-stage", choices=("paper", "detector"), default="paper",
                        help="noise before CTF × MTF as the paper (default) or after them")
    parser.add_argument("--budget-s", type=float,
                        help="stop before a piece that would end later than this many seconds "
                        "after the start (finished pieces are saved; run again to continue)")
    parser.add_argument("--redo", action="store_true",
                        help="run pieces again even when the results file holds them")
    parser.add_argument("--no-overlap-rif", dest="overlap_rif", action="store_false",
                        help="run RIF-SVM after the CNNs instead of beside them (by default it "
                        "runs in a thread on the CPU cores while the CNNs train on the GPU)")
    parser.add_argument("--n-per-class", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--recipe", default="paper", choices=("paper", "modern"))
    parser.add_argument("--raw", nargs="*", choices=METHODS[:2], default=None,
                        metavar="MODEL",
                        help="train these CNNs (all when none is named) on the raw simulated "
                        "volumes (normalize=False), as the authors' code did, instead of "
                        "standardising each one")
    parser.add_argument("--classifier-options", nargs="*", default=[], metavar="MODEL=JSON",
                        help="SubtomoClassifier options for one CNN, over --recipe/--raw, e.g. "
                        "'dsrf3d={\"recipe\": \"modern\", \"learning_rate\": 1e-4, "
                        "\"augment\": null, \"model_options\": {\"dropout\": 0}}'")
    parser.add_argument("--cache", type=Path,
                        help="folder for simulated cells (.npy): a later process with the same "
                        "settings reads the cell instead of simulating it again")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: the CNNs train and predict under Keras mixed precision "
                        "(about twice DSRF3D's speed on an H200; labelled in the results)")
    parser.add_argument("--box", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 2,
                        help="simulation processes and RIF-SVM jobs (default: all cores)")
    args = parser.parse_args()
    args.raw = (set() if args.raw is None else set(args.raw or METHODS[:2]))
    args.classifier_options = parse_classifier_options(args.classifier_options, parser)
    if args.precision == "bfloat16":
        import keras

        keras.config.set_dtype_policy("mixed_bfloat16")

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
        first = [cell_name(s, t) for s, t in REDUCED_CELLS]
        default_cells = (first if args.protocol == "reduced" else
                         first + [cell_name(s, t) for s, t in PAPER if (s, t) not in
                                  REDUCED_CELLS])
    args.voxel_size = 9.2 * 40 / args.box  # keep the paper's 36.8 nm field of view
    cells = [parse_cell(c) for c in (args.cells or default_cells)]
    suffix = "_quick" if args.quick else ""
    stage = "_paper_noise" if args.noise_stage == "paper" else ""
    results_path = args.results or OUTPUTS / f"subtomo_table1{stage}{suffix}.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results = (json.loads(results_path.read_text()) if results_path.is_file()
               else {"accuracy": {m: {} for m in METHODS}, "details": {}})
    settings = {
        "n_classes": len(complexes) + 1, "n_per_class": args.n_per_class,
        "epochs": args.epochs, "recipe": args.recipe, "box": args.box,
        "raw_input": sorted(args.raw), "voxel_size": args.voxel_size, "quick": args.quick,
        "complexes": complexes, "noise_stage": args.noise_stage, "seed": args.seed,
    }
    # only when given, so that files from before these options still match
    if args.classifier_options:
        settings["classifier_options"] = args.classifier_options
    if args.precision != "float32":
        settings["precision"] = args.precision
    old = results.get("settings")
    if old is not None:
        old = {"noise_stage": "detector", "seed": 0, **old}  # files from before these keys
        differs = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if differs:
            sys.exit(f"{results_path}: its cells were run with other settings {differs}; name "
                     "another --results file.")
    results["settings"] = settings
    results.setdefault("protocol", {})
    scale = (len(complexes) + 1) * args.n_per_class / 23000 * (args.box / 40) ** 3

    def log(message):
        print(message, file=sys.stderr, flush=True)

    def save():
        results["hardware"] = hardware()
        tmp = results_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, results_path)  # after every piece: an interrupted run keeps them
        results_path.with_suffix(".md").write_text(markdown(results))

    def fits(seconds: float) -> bool:
        return args.budget_s is None or (
            time.perf_counter() - start_time + seconds <= args.budget_s)

    def record(name, method, out):
        details = results["details"].setdefault(name, {})
        results["accuracy"].setdefault(method, {})[name] = out["accuracy"]
        details[method] = out["accuracy"]
        details[f"{method}_s"] = out["seconds"]
        if out.get("confusion_matrix") is not None:  # where the errors go, per class
            details[f"{method}_confusion"] = {"classes": out["class_names"],
                                              "matrix": out["confusion_matrix"]}
        if "input" in out:
            details[f"{method}_input"] = out["input"]
            details[f"{method}_val_accuracy"] = out["val_accuracy"]
        results["protocol"][name] = args.protocol if args.cells is None else "cells named"
        save()
        log(f"  {method}: {out['accuracy']:.3f} ({out['seconds']:.0f} s)")

    stopped = None
    for snr, tilt in cells:
        name = cell_name(snr, tilt)
        todo = [m for m in args.methods
                if args.redo or name not in results["accuracy"].get(m, {})]
        if not todo:
            log(f"cell {name}: done already")
            continue
        need = estimate_seconds(results, "simulate", scale) + estimate_seconds(
            results, todo[0], scale)
        if not fits(need):
            stopped = f"cell {name} ({todo}) needs ~{need:.0f} s"
            break
        log(f"cell {name}: {todo}")
        details = results["details"].setdefault(name, {})
        t0 = time.perf_counter()
        train, test, data = simulate_cell(snr, tilt, args, complexes)
        details["simulate_s"] = time.perf_counter() - t0
        log(f"  simulated {len(data)} in {details['simulate_s']:.0f} s")
        background = None
        cnns = [m for m in todo if m != "rif_svm"]
        if args.overlap_rif and "rif_svm" in todo and cnns:
            # RIF-SVM runs on the CPU cores while the CNNs train on the GPU (libsvm and the
            # FFTs release the GIL; the grid search's folds run in worker processes).
            if fits(estimate_seconds(results, "rif_svm", scale)):
                background = concurrent.futures.ThreadPoolExecutor(1).submit(
                    run_method, "rif_svm", train, test, data.class_names, args)
                todo = cnns
            else:
                stopped = f"rif_svm in cell {name} needs more time"
        for method in todo:
            need = estimate_seconds(results, method, scale)
            if not fits(need):
                stopped = f"{method} in cell {name} needs ~{need:.0f} s"
                break
            record(name, method, run_method(method, train, test, data.class_names, args))
        if background is not None:
            record(name, "rif_svm", background.result())
        del train, test, data
        if stopped:
            break
    if stopped:
        log(f"budget of {args.budget_s:.0f} s: stopped before {stopped}; "
            f"{time.perf_counter() - start_time:.0f} s used. Run the same command to continue.")
    results["complete"] = all(
        cell_name(s, t) in results["accuracy"].get(m, {}) for s, t in cells for m in args.methods
    )
    save()
    emit(results)


if __name__ == "__main__":
    main()
