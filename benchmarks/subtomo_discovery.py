"""Leave-one-class-out discovery (Xu et al. 2017, Fig. 4) and cluster sizes (Suppl. Fig. S1).

For every complex C (or those named by ``--classes``): train one CNN without C, project the
test set on its linear layer, k-means (k = 100), take the cluster most enriched in C, classify
and average inside it (3 classes, 5 iterations), FSC of the best average against the true map;
success when the FSC-0.5 resolution is ≤ 7 nm (paper: 16/22 Inception3D, 18/22 DSRF3D).

Cluster sizes: k-means (k = 100) of the test set in the feature space of a network trained on
all classes, against k-means of pose-normalised voxels; ``max / median`` cluster size of each.

Defaults: SNR 0.1, ±60°, noise added before CTF × MTF as the paper did (``--noise-stage
paper``; ``detector`` is the old, much easier order). Resumable into ONE results file (default
``outputs/benchmarks/subtomo_discovery_paper_noise.json``): every finished leave-out (and the
cluster sizes) is saved at once — several processes may share the file (a lock; each save
merges into what is there) — and a later call skips what the file already holds (``--redo``
to run again). ``--budget-s S`` stops before a leave-out that would not finish within S
seconds of the start (estimate: the longest leave-out in the file, else 360 s). The printed
JSON has ``successes`` → method, ``n_classes`` and ``cluster_size_max_over_median`` →
``features`` / ``pose_norm`` (50 PCA components) / ``pose_norm_raw_voxels`` (no PCA).

    .venv/bin/python benchmarks/subtomo_discovery.py --quick
    KERAS_BACKEND=jax python benchmarks/subtomo_discovery.py --classes 1bxn 1f4a --budget-s 510

Several leave-outs per GPU on a multi-GPU host (the GPU idles while a run aligns on the CPU):
simulate once with ``--simulate-only``, then give each process its own classes and results
file (all reading the same ``--simulated`` set), and merge the files with
``merge_discovery.py``::

    python benchmarks/subtomo_discovery.py --simulated /tmp/set.npz --simulate-only
    q() { echo "python benchmarks/subtomo_discovery.py --model inception3d --raw \
      --skip-cluster-sizes --n-jobs 5 --simulated /tmp/set.npz --results /tmp/d_$1.json \
      --classes ${@:2}"; }
    QUEUES_PER_GPU=3 benchmarks/gpu_queues.sh log.txt 540 "$(q 0 1bxn 1f4a)" "$(q 1 1qvr)" ...
    python benchmarks/merge_discovery.py discovery.json /tmp/d_*.json

(or let every process write the same ``--results`` file: saves are locked and merged).
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


def totals(runs: dict, model: str) -> dict:
    """Successes (first crossing and from FSC shell 2), runs done per model, and the
    resolutions of ``model``'s runs, from ``runs`` (model → class → result)."""
    return {
        "successes": {m: int(sum(r["success"] for r in v.values())) for m, v in runs.items()},
        "successes_from_shell_2": {  # runs from before this key count as they were
            m: int(sum(r.get("success_from_shell_2", r["success"]) for r in v.values()))
            for m, v in runs.items()
        },
        "n_done": {m: len(v) for m, v in runs.items()},
        "resolution_nm": {name: r["resolution_nm"] for name, r in runs.get(model, {}).items()},
    }


def _size_report(labels, true_labels, k, empty, class_names) -> dict:
    """Cluster sizes, what the largest cluster holds, and the sizes without the empty class
    (a few hundred pure-noise subtomograms can all fall into one cluster)."""
    import numpy as np

    from cryoml.subtomo import cluster_size_stats

    stats = cluster_size_stats(labels, k)
    largest = int(np.argmax(np.bincount(labels, minlength=k)))
    inside = true_labels[labels == largest]
    top = np.bincount(inside).argmax()
    report = {key: stats[key] for key in ("max", "median", "max_over_median", "n_le_10")}
    report["largest_cluster_main_class"] = class_names[top]
    report["largest_cluster_main_class_fraction"] = float(np.mean(inside == top))
    if empty is not None:  # clusters left with members once the empty class is removed
        sizes = np.bincount(labels[true_labels != empty], minlength=k)
        sizes = sizes[sizes > 0]
        report["without_empty"] = {
            "n_clusters": int(sizes.size), "max": int(sizes.max()),
            "median": float(np.median(sizes)),
            "max_over_median": float(sizes.max() / np.median(sizes)),
            "n_le_10": int(np.sum(sizes <= 10)),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5 complexes, 60 per class, 24³, 8 epochs, k = 10 (CPU)",
    )
    parser.add_argument("--classes", nargs="*", help="complexes to leave out (default: all)")
    parser.add_argument("--model", default="dsrf3d", choices=("inception3d", "dsrf3d"))
    parser.add_argument(
        "--raw",
        action="store_true",
        help="train on the raw simulated volumes (normalize=False), as the "
        "authors' code did; Inception3D needs it with the paper's recipe",
    )
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--noise-stage", choices=("paper", "detector"), default="paper",
                        help="noise before CTF × MTF as the paper (default) or after them")
    parser.add_argument("--budget-s", type=float,
                        help="stop before a leave-out that would end later than this many "
                        "seconds after the start (finished ones are saved; run again)")
    parser.add_argument("--redo", action="store_true",
                        help="run leave-outs again even when the results file holds them")
    parser.add_argument("--tilt", type=float, default=60.0)
    parser.add_argument("--n-per-class", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--k", type=int)
    parser.add_argument("--angular-step", type=float)
    parser.add_argument("--skip-cluster-sizes", action="store_true")
    parser.add_argument("--simulate-only", action="store_true",
                        help="write (or check) the --simulated set and stop")
    parser.add_argument("--results", type=Path)
    parser.add_argument(
        "--simulated",
        type=Path,
        help="a .npz of the simulated set: read it if it exists (its settings must match), "
        "otherwise simulate and write it there, so parallel runs simulate once",
    )
    parser.add_argument("--classifier-options", type=json.loads, default={}, metavar="JSON",
                        help="SubtomoClassifier options over --raw/--epochs, e.g. DSRF3D as it "
                        "learned on the paper-noise Table 1: '{\"recipe\": \"modern\", "
                        "\"learning_rate\": 1e-4, \"augment\": null, "
                        "\"model_options\": {\"dropout\": 0}}'")
    parser.add_argument("--lowpass-voxels", default="auto",
                        help="alignment band of the classification: 'auto' (adaptive, the "
                        "default) or a fixed number of voxels (3: the band before session 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 2,
                        help="processes for simulating, threads for the alignment")
    start_time = time.perf_counter()
    args = parser.parse_args()
    band = args.lowpass_voxels if args.lowpass_voxels == "auto" else float(args.lowpass_voxels)
    if args.simulate_only and args.simulated is None:
        parser.error("--simulate-only needs --simulated PATH.npz to write the set to")

    import numpy as np

    from cryoml.simulate import SubtomogramSet, load_density, simulate_subtomograms
    from cryoml.subtomo import (
        XU2017_COMPLEXES,
        SubtomoClassifier,
        leave_one_out,
        pose_normalised_kmeans,
        subdivide,
    )

    if args.quick:
        complexes = ["1bxn", "3j9i", "1u6g", "4v4r", "3cf3"]
        n_per_class, epochs, k, box, step = 60, 8, 10, 24, 30.0
    else:
        complexes = list(XU2017_COMPLEXES)
        n_per_class, epochs, k, box, step = 1000, 20, 100, 40, 25.0
    n_per_class = args.n_per_class or n_per_class
    epochs = args.epochs or epochs
    k = args.k or k
    step = args.angular_step or step
    voxel_size = 9.2 * 40 / box
    left_out = args.classes or complexes
    suffix = "_quick" if args.quick else ""
    stage = "_paper_noise" if args.noise_stage == "paper" else ""
    results_path = args.results or OUTPUTS / f"subtomo_discovery{stage}{suffix}.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": {}}

    def log(message):
        print(message, file=sys.stderr, flush=True)

    def settings():
        return {
            "snr": args.snr,
            "noise_stage": args.noise_stage,
            "tilt": args.tilt,
            "n_per_class": n_per_class,
            "epochs": epochs,
            "k": k,
            "box": box,
            "voxel_size": voxel_size,
            "angular_step": step,
            "quick": args.quick,
            "input": "raw" if args.raw else "standardised",
            "complexes": complexes,
            # runs from before the adaptive band (fixed 3 voxels) must not mix with newer ones
            "alignment_band": args.lowpass_voxels,
            **({"classifier_options": args.classifier_options} if args.classifier_options
               else {}),
        }

    if "settings" in results:
        old = {"noise_stage": "detector", **results["settings"]}  # files from before the key
        differs = {k: (old.get(k), v) for k, v in settings().items() if old.get(k) != v}
        if differs:
            sys.exit(f"{results_path}: its runs used other settings {differs}; name another "
                     "--results file.")

    def save():
        """Merge this process's runs into the file under a lock (other processes may share
        it), then write it atomically."""
        import fcntl

        with open(results_path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if results_path.is_file():
                on_disk = json.loads(results_path.read_text())
                for model, runs in on_disk.get("runs", {}).items():
                    mine = results["runs"].setdefault(model, {})
                    for name, run in runs.items():
                        mine.setdefault(name, run)
                for key in ("cluster_size_max_over_median", "cluster_sizes"):
                    if key in on_disk and key not in results:
                        results[key] = on_disk[key]
            results.update(totals(results["runs"], args.model))
            results["n_classes"] = len(complexes)
            results["hardware"] = hardware()
            results["settings"] = settings()
            tmp = results_path.with_suffix(f".json.tmp{os.getpid()}")
            tmp.write_text(json.dumps(results, indent=1))
            os.replace(tmp, results_path)

    def fits(seconds: float) -> bool:
        return args.budget_s is None or (
            time.perf_counter() - start_time + seconds <= args.budget_s)

    def estimate() -> float:
        seen = [r["seconds"] for r in results["runs"].get(args.model, {}).values()
                if "seconds" in r]
        return max(seen) if seen else (360.0 if not args.quick else 120.0)

    t0 = time.perf_counter()
    wanted = {"snr": args.snr, "tilt_range": args.tilt, "box": box, "n_per_class": n_per_class,
              "random_state": args.seed, "noise_stage": args.noise_stage}
    if args.simulated is not None and args.simulated.is_file():
        data = SubtomogramSet.load(args.simulated)
        differs = {key: (data.params.get(key), value) for key, value in wanted.items()
                   if data.params.get(key) != value}
        if differs or data.class_names[: len(complexes)] != complexes:
            sys.exit(f"{args.simulated}: simulated with other settings {differs}; "
                     "remove it or name another --simulated file.")
    else:
        data = simulate_subtomograms(
            complexes,
            n_per_class,
            snr=args.snr,
            tilt_range=args.tilt,
            box=box,
            voxel_size=voxel_size,
            random_state=args.seed,
            n_jobs=args.n_jobs,
            noise_stage=args.noise_stage,
        )
        if args.simulated is not None:
            data.save(args.simulated)
    if args.simulate_only:
        log(f"{args.simulated}: {data!r}")
        return
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(data))
    half = len(order) // 2
    train, test = np.sort(order[:half]), np.sort(order[half:])
    train_set = (data.data[train], data.labels[train])
    test_set = (data.data[test], data.labels[test])
    data.data = None  # the halves are copies: frees ~6 GB per process when several share a host
    log(f"simulated {len(data)} in {time.perf_counter() - t0:.0f} s")

    if (not args.skip_cluster_sizes and "cluster_size_max_over_median" not in results
            and fits(240.0 if not args.quick else 60.0)):
        clf = SubtomoClassifier(
            model=args.model,
            epochs=epochs,
            normalize=not args.raw,
            random_state=args.seed,
            progress=False,
            **args.classifier_options,
        ).fit(*train_set, class_names=data.class_names)
        features = clf.transform(test_set[0])
        divisions = {
            "features": subdivide(features, k, random_state=args.seed),
            "pose_norm": pose_normalised_kmeans(test_set[0], k, random_state=args.seed,
                                                n_jobs=args.n_jobs),
            # The paper does not say whether its baseline reduced the voxels first; without
            # PCA, k-means gives a few huge clusters (max/median 32 against 1.9 with 50
            # components on a 2,300-subtomogram probe), as its Fig. S1 describes.
            "pose_norm_raw_voxels": pose_normalised_kmeans(
                test_set[0], k, n_components=None, random_state=args.seed,
                n_jobs=args.n_jobs),
        }
        results["cluster_size_max_over_median"] = {
            name: division.stats["max_over_median"] for name, division in divisions.items()
        }
        empty = data.class_names.index("empty") if "empty" in data.class_names else None
        results["cluster_sizes"] = {
            name: _size_report(division.labels, test_set[1], k, empty, data.class_names)
            for name, division in divisions.items()
        }
        results["cluster_sizes"]["test_accuracy_all_classes"] = clf.evaluate(*test_set)[
            "accuracy"
        ]
        save()
        log(f"cluster sizes: {results['cluster_sizes']}")

    stopped = None
    for name in left_out:
        if not args.redo and name in results["runs"].get(args.model, {}):
            log(f"{name}: done already")
            continue
        if not fits(estimate()):
            stopped = name
            break
        index = data.class_names.index(name)
        truth = load_density(name, voxel_size=voxel_size, box=box)
        result = leave_one_out(
            train_set,
            test_set,
            index,
            truth,
            voxel_size=voxel_size,
            tilt_range=args.tilt,
            model=args.model,
            classifier_options={"epochs": epochs, "normalize": not args.raw,
                                **args.classifier_options},
            k=k,
            angular_step=step,
            lowpass_voxels=band,
            random_state=args.seed,
            n_jobs=args.n_jobs,
        )
        result.pop("average", None)  # an array; the JSON holds the numbers
        results["runs"].setdefault(args.model, {})[name] = result
        save()
        log(
            f"{name}: {result['resolution_nm']:.1f} nm "
            f"({result['resolution_nm_from_shell_2']:.1f} nm from shell 2) "
            f"({'success' if result['success'] else 'miss'}), cluster {result['cluster_size']} "
            f"({result['cluster_fraction_C']:.2f} C), class {result['class_size']}, "
            f"{result['seconds']:.0f} s (network {result['seconds_network']:.0f} s, "
            f"averaging {result['seconds_averaging']:.0f} s)"
        )
    if stopped:
        log(f"budget of {args.budget_s:.0f} s: stopped before {stopped} (~{estimate():.0f} s "
            f"each); {time.perf_counter() - start_time:.0f} s used. Run again to continue.")
    save()
    emit(results)


if __name__ == "__main__":
    main()
