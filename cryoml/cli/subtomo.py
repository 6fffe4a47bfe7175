"""Subtomogram classification and subdivision (train, evaluate, features, subdivide, discover).

examples:
  cryoml subtomo train train.h5 net.keras --model dsrf3d --recipe paper --epochs 20
  cryoml subtomo evaluate net.keras test.h5 --json report.json
  cryoml subtomo features net.keras test.h5 features.npy --layer logits
  cryoml subtomo features net.keras "sets/*.h5" --out-dir features/ --workers 2   # on Dask
  cryoml subtomo subdivide features.npy clusters.json --k 100 --tsne tsne.png
  cryoml subtomo rif-svm train.h5 test.h5 --json rif.json
  cryoml subtomo discover train.h5 test.h5 --left-out 4 --true-map 1u6g net_without_4.json
Sets are SubtomogramSet files (.h5 read batch by batch, or .npz) from cryoml.simulate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryoml.cli._batch import add_batch_args, run_files


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the subcommands of ``cryoml subtomo``."""
    sub = parser.add_subparsers(dest="subtomo_command", metavar="STEP", required=True)

    train = sub.add_parser("train", help="train Inception3D or DSRF3D on a labelled set")
    train.add_argument("data", type=Path, help="labelled SubtomogramSet (.h5 or .npz)")
    train.add_argument("output", type=Path, help="network file (.keras)")
    train.add_argument("--model", choices=("inception3d", "dsrf3d"), default="inception3d")
    train.add_argument("--recipe", choices=("paper", "modern"), default="paper")
    train.add_argument("--epochs", type=int, help="override the recipe (paper: 20)")
    train.add_argument("--batch-size", type=int, help="override the recipe (paper: 64)")
    train.add_argument("--learning-rate", type=float, help="override the recipe")
    train.add_argument("--validation-fraction", type=float, default=0.1)
    train.add_argument("--checkpoint", type=Path, help="best weights so far (.keras)")
    train.add_argument(
        "--raw",
        action="store_true",
        help="feed the subtomograms unstandardised, as the authors' code did (see the "
        "'normalize' notes of SubtomoClassifier)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--overwrite", action="store_true")

    evaluate = sub.add_parser("evaluate", help="accuracy, confusion matrix, per-class recall")
    evaluate.add_argument("network", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("--json", type=Path, help="write the report here")

    features = sub.add_parser(
        "features",
        help="linear-layer (or hidden-layer) features (many sets on a Dask cluster)",
        usage="%(prog)s [options] network data output\n"
        "       %(prog)s [options] network data [data ...] --out-dir OUT_DIR",
        description="Features of one set (data output.npy), or of many (files, quoted globs or "
        "@list.txt, with --out-dir: OUT_DIR/<name>_<layer>.npy each) on a Dask LocalCluster or "
        "a running scheduler; finished sets are recorded in a manifest and skipped when the "
        "command is run again.",
    )
    features.add_argument("network", type=Path)
    features.add_argument(
        "paths",
        nargs="+",
        metavar="data",
        help="SubtomogramSet file(s) (.h5/.npz), globs or @list.txt, then, without --out-dir, "
        "the output .npy of (N, F) features",
    )
    features.add_argument("--layer", default="logits")
    features.add_argument("--out-dir", type=Path, help="output folder (many sets)")
    features.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output (with --out-dir: files no earlier run recorded in its manifest)",
    )
    add_batch_args(features)

    subdivide = sub.add_parser("subdivide", help="k-means over-partitioning of features")
    subdivide.add_argument("features", type=Path, help=".npy of (N, F)")
    subdivide.add_argument("output", type=Path, help="JSON: cluster labels and size statistics")
    subdivide.add_argument("--k", type=int, default=100)
    subdivide.add_argument("--method", choices=("auto", "kmeans", "minibatch"), default="auto")
    subdivide.add_argument("--tsne", type=Path, help="also save a t-SNE scatter plot (PNG)")
    subdivide.add_argument("--seed", type=int, default=0)
    subdivide.add_argument("--overwrite", action="store_true")

    rif = sub.add_parser("rif-svm", help="RIF-SVM baseline: train on one set, test on another")
    rif.add_argument("train", type=Path)
    rif.add_argument("test", type=Path)
    rif.add_argument("--max-degree", type=int, default=10)
    rif.add_argument("--json", type=Path)
    rif.add_argument("--seed", type=int, default=0)

    discover = sub.add_parser("discover", help="leave-one-class-out discovery of one class")
    discover.add_argument("train", type=Path)
    discover.add_argument("test", type=Path)
    discover.add_argument("--left-out", required=True, help="class index or name")
    discover.add_argument(
        "--true-map",
        required=True,
        help="true density of that class: map name ('1u6g') or MRC path",
    )
    discover.add_argument("output", type=Path, help="JSON result")
    discover.add_argument("--model", choices=("inception3d", "dsrf3d"), default="dsrf3d")
    discover.add_argument("--epochs", type=int, default=20)
    discover.add_argument("--k", type=int, default=100)
    discover.add_argument(
        "--raw",
        action="store_true",
        help="train on the raw volumes (no per-subtomogram standardisation), as the authors' "
        "code did; Inception3D with the paper recipe needs it",
    )
    discover.add_argument(
        "--n-jobs", type=int, default=-1, help="threads for the alignment (-1: every core)"
    )
    discover.add_argument("--seed", type=int, default=0)
    discover.add_argument("--overwrite", action="store_true")


def _write_json(path: Path, payload: dict, overwrite: bool) -> None:
    from cryoml.io import atomic_path

    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=1))


def main(args: argparse.Namespace) -> int:
    """Run one ``cryoml subtomo`` step."""
    import numpy as np

    from cryoml import subtomo
    from cryoml._errors import CryomlError

    progress = not getattr(args, "quiet", False)
    step = args.subtomo_command
    if step == "train":
        from cryoml.io import check_writable

        for option, path in (("output", args.output), ("--checkpoint", args.checkpoint)):
            if path is not None and path.suffix != ".keras":
                raise CryomlError(
                    f"{option} {path}: networks are saved as .keras; use that suffix (checked "
                    "before training, so no work is lost)."
                )
        check_writable(args.output, overwrite=args.overwrite)
        clf = subtomo.SubtomoClassifier(
            model=args.model,
            recipe=args.recipe,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            validation_fraction=args.validation_fraction,
            checkpoint=args.checkpoint,
            normalize=not args.raw,
            random_state=args.seed,
            progress=progress,
        ).fit(args.data)
        clf.save(args.output, overwrite=args.overwrite)
        print(
            f"saved {args.output} (best loss {clf.best_loss_:.4f}"
            f"{', interrupted' if clf.interrupted_ else ''})"
        )
    elif step == "evaluate":
        clf = subtomo.SubtomoClassifier.load(args.network, progress=progress)
        report = clf.evaluate(args.data)
        print(f"accuracy {report['accuracy']:.3f} on {report['n']} subtomograms")
        if args.json:
            _write_json(args.json, report, overwrite=True)
    elif step == "features":
        from cryoml.io import atomic_path
        from cryoml.subtomo._batch import features_file

        if args.out_dir is not None:
            if not args.network.is_file():
                raise CryomlError(f"{args.network}: no such network file. Check the path.")
            return run_files(
                features_file,
                args.paths,
                out_dir=args.out_dir,
                suffix=f"_{args.layer}.npy",
                options={"network": str(args.network.resolve()), "layer": args.layer},
                args=args,
                overwrite=args.overwrite,
            )
        if len(args.paths) != 2:
            raise CryomlError(
                "give one set and the output (DATA OUTPUT.npy), or any number of sets with "
                "--out-dir FOLDER."
            )
        data, output = map(Path, args.paths)
        with atomic_path(output, overwrite=args.overwrite) as tmp:
            result = features_file(
                data, tmp, network=args.network, layer=args.layer, progress=progress
            )
        print(f"features {tuple(result['shape'])} -> {output}")
    elif step == "subdivide":
        if not args.features.is_file():
            raise CryomlError(f"{args.features}: no such features file.")
        try:
            values = np.load(args.features, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            reason = str(error)
            if "allow_pickle" in reason or "Object arrays" in reason:
                reason = "it holds Python objects, which cryoml never unpickles"
            raise CryomlError(
                f"{args.features}: not a numeric .npy array of (N, F) features ({reason}). "
                "Write features with `cryoml subtomo features`."
            ) from None
        if not isinstance(values, np.ndarray) or values.ndim != 2 or values.dtype.kind not in "fiu":
            raise CryomlError(
                f"{args.features}: features must be a numeric (N, F) array; got "
                f"{getattr(values, 'dtype', type(values).__name__)} of shape "
                f"{getattr(values, 'shape', '?')}."
            )
        if not np.all(np.isfinite(values)):
            raise CryomlError(f"{args.features}: features hold NaN or infinite values.")
        from cryoml.io import check_writable

        check_writable(args.output, overwrite=args.overwrite)
        if args.tsne:
            check_writable(args.tsne, overwrite=args.overwrite)
        division = subtomo.subdivide(values, args.k, method=args.method, random_state=args.seed)
        payload = {"labels": division.labels.tolist(), "method": division.method, **division.stats}
        _write_json(args.output, payload, args.overwrite)
        print(
            f"{args.k} clusters: max {division.stats['max']}, median "
            f"{division.stats['median']}, {division.stats['n_le_10']} with <= 10 members"
        )
        if args.tsne:
            _save_tsne(
                args.tsne,
                subtomo.tsne_embedding(values, random_state=args.seed),
                division.labels,
                args.overwrite,
            )
    elif step == "rif-svm":
        model = subtomo.RIFSVM(
            max_degree=args.max_degree, random_state=args.seed, progress=progress
        ).fit(args.train)
        report = model.evaluate(args.test)
        report["best_params"] = model.best_params_
        print(
            f"RIF-SVM accuracy {report['accuracy']:.3f} (C={model.best_params_['C']}, "
            f"gamma={model.best_params_['gamma']:.3g})"
        )
        if args.json:
            _write_json(args.json, report, overwrite=True)
    elif step == "discover":
        from cryoml.io import check_writable
        from cryoml.simulate import SubtomogramSet, load_density

        check_writable(args.output, overwrite=args.overwrite)
        train, test = SubtomogramSet.load(args.train), SubtomogramSet.load(args.test)
        if args.left_out.isdigit():
            left_out = int(args.left_out)
        elif args.left_out in test.class_names:
            left_out = test.class_names.index(args.left_out)
        else:
            raise CryomlError(
                f"{args.test}: no class {args.left_out!r}; its classes are "
                f"{', '.join(test.class_names)} (or give a class index)."
            )
        if not 0 <= left_out < len(test.class_names):
            raise CryomlError(
                f"{args.test}: class index {left_out} is out of range "
                f"(0 … {len(test.class_names) - 1})."
            )
        voxel_size = float(test.params["voxel_size"])
        true_map = load_density(args.true_map, voxel_size=voxel_size, box=test.data.shape[1])
        result = subtomo.leave_one_out(
            train,
            test,
            left_out,
            true_map,
            voxel_size=voxel_size,
            tilt_range=test.params.get("tilt_range"),
            model=args.model,
            classifier_options={"epochs": args.epochs, "normalize": not args.raw},
            k=args.k,
            random_state=args.seed,
            progress=progress,
            n_jobs=args.n_jobs,
        )
        result.pop("average")  # an array; the JSON holds the numbers
        _write_json(args.output, result, args.overwrite)
        print(
            f"class {test.class_names[left_out]}: {result['resolution_nm']:.1f} nm "
            f"({'success' if result['success'] else 'miss'}); "
            f"{result['resolution_nm_from_shell_2']:.1f} nm counting from FSC shell 2"
        )
    return 0


def _save_tsne(path: Path, embedding, labels, overwrite: bool) -> None:
    from matplotlib.figure import Figure

    from cryoml.io import atomic_path

    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    axes.scatter(embedding[:, 0], embedding[:, 1], c=labels, s=4, cmap="tab20")
    axes.set_title("t-SNE of subtomogram features (colour: k-means cluster)")
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
