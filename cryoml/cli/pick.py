"""DeepEM particle picking: train a picker, score micrographs, extract picks, evaluate, baseline.

examples:
  cryoml pick train mic01.mrc mic02.mrc --coords mic01.box mic02.box --box 64 --out picker.keras \
      --calibrate-micrographs mic03.mrc --calibrate-coords mic03.box
  cryoml pick train mic*.mrc --coords picks/*.star --preset 19s --recipe paper --out p.keras
  cryoml pick score picker.keras mic04.mrc --out mic04_scores.npz --method raster
  cryoml pick extract picker.keras mic04.mrc mic05.mrc --out-dir picks --format star
  cryoml pick extract picker.keras "mics/*.mrc" --out-dir picks --workers 4     # on Dask
  cryoml pick extract picker.keras @mics.txt --out-dir picks --scheduler tcp://head:8786
  cryoml pick evaluate picks/mic04.star --truth truth/mic04.box --radius 20 --plot pr.png
  cryoml pick template mic04.mrc --train-micrographs mic01.mrc --train-coords mic01.box \
      --box 64 --out-dir template_picks
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cryoml.cli._batch import add_batch_args, run_files

log = logging.getLogger("cryoml.cli.pick")


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the subcommands of ``cryoml pick``."""
    sub = parser.add_subparsers(dest="pick_command", metavar="STEP", required=True)

    train = sub.add_parser("train", help="train a DeepEM picker from micrographs + coordinates")
    train.add_argument("micrographs", nargs="+", type=Path, help="training micrographs (MRC/TIFF)")
    train.add_argument(
        "--coords", nargs="+", type=Path, required=True, help="particle coordinates, one per mic"
    )
    train.add_argument("--negatives", nargs="+", type=Path, help="non-particle coordinates")
    train.add_argument("--box", type=int, help="box size in pixels (or --preset)")
    train.add_argument("--preset", choices=("klh", "19s", "26s", "inflammasome"))
    train.add_argument("--recipe", choices=("modern", "paper"), default="modern")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=50)
    train.add_argument("--diameter", type=float, help="particle diameter in px (default 2/3 box)")
    train.add_argument("--calibrate-micrographs", nargs="+", type=Path, default=[])
    train.add_argument("--calibrate-coords", nargs="+", type=Path, default=[])
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True, help="output .keras (+ .keras.json)")
    train.add_argument("--overwrite", action="store_true")

    score = sub.add_parser("score", help="write the score map of a micrograph (.npz)")
    score.add_argument("model", type=Path, help="picker .keras")
    score.add_argument("micrograph", type=Path)
    score.add_argument("--method", choices=("dense", "raster"), default="dense")
    score.add_argument("--out", type=Path, required=True, help="output .npz")
    score.add_argument("--overwrite", action="store_true")

    extract = sub.add_parser(
        "extract",
        help="pick particles and write .box / .star files (many files on a Dask cluster)",
        description="Pick micrographs (files, quoted globs or @list.txt) into OUT_DIR/<name>."
        "<format>, one task per micrograph on a Dask LocalCluster or a running scheduler; "
        "finished micrographs are recorded in a manifest and skipped when the command is run "
        "again.",
    )
    extract.add_argument("model", type=Path, help="picker .keras")
    extract.add_argument("micrographs", nargs="+", help="micrographs, globs or @list.txt")
    extract.add_argument("--threshold", type=float, help="default: the calibrated threshold")
    extract.add_argument("--method", choices=("dense", "raster"), default="dense")
    extract.add_argument("--format", choices=("box", "star", "csv", "json"), default="box")
    extract.add_argument("--out-dir", type=Path, required=True)
    extract.add_argument(
        "--overwrite",
        action="store_true",
        help="replace pick files in OUT_DIR that no earlier run recorded in its manifest",
    )
    add_batch_args(extract)

    evaluate = sub.add_parser("evaluate", help="precision, recall, F-beta, AP of picks vs truth")
    evaluate.add_argument("picks", nargs="+", type=Path, help="pick files (with scores)")
    evaluate.add_argument("--truth", nargs="+", type=Path, required=True)
    evaluate.add_argument("--radius", type=float, required=True, help="match radius in px")
    evaluate.add_argument("--threshold", type=float, help="default: where F-beta peaks")
    evaluate.add_argument("--beta", type=float, default=2.0)
    evaluate.add_argument("--plot", type=Path, help="PR curve PNG")
    evaluate.add_argument("--overwrite", action="store_true")

    template = sub.add_parser("template", help="normalised cross-correlation template picking")
    template.add_argument("micrographs", nargs="+", type=Path, help="micrographs to pick")
    template.add_argument("--train-micrographs", nargs="+", type=Path, required=True)
    template.add_argument("--train-coords", nargs="+", type=Path, required=True)
    template.add_argument("--box", type=int, required=True)
    template.add_argument("--n-angles", type=int, default=1)
    template.add_argument("--threshold", type=float, help="default: F2 peak on training mics")
    template.add_argument("--format", choices=("box", "star", "csv", "json"), default="box")
    template.add_argument("--out-dir", type=Path, required=True)
    template.add_argument("--overwrite", action="store_true")


def _read_images(paths):
    from cryoml import io

    return [io.read_image(path) for path in paths]


def _read_coords(paths, micrographs, name):
    from cryoml import io
    from cryoml._errors import CryomlError

    if len(paths) != len(micrographs):
        raise CryomlError(
            f"got {len(micrographs)} micrographs but {len(paths)} {name} files; give one "
            "coordinate file per micrograph, in the same order."
        )
    from cryoml.io._coordinates import check_pairing

    check_pairing([image.path for image in micrographs], paths, left_option="micrograph",
                  right_option=name)
    return [io.read_coordinates(path) for path in paths]


def _write_picks(picker, micrograph_paths, out_dir, fmt, threshold, method, overwrite):
    from cryoml import io

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, image in zip(micrograph_paths, _read_images(micrograph_paths), strict=True):
        picks = picker.pick(image, threshold=threshold, method=method)
        target = out_dir / f"{path.stem}.{fmt}"
        io.write_coordinates(target, picks, micrograph_name=path.name, overwrite=overwrite)
        log.info("%s: %d picks -> %s", path.name, len(picks), target)
        written.append({"micrograph": str(path), "picks": len(picks), "file": str(target)})
    print(json.dumps(written, indent=1))


def main(args: argparse.Namespace) -> int:
    """Run one ``cryoml pick`` step."""
    import numpy as np

    from cryoml._errors import CryomlError
    from cryoml.io import atomic_path, check_writable
    from cryoml.picking import ParticlePicker

    step = args.pick_command
    if step == "train":
        if args.out.suffix != ".keras":
            raise CryomlError(
                f"--out {args.out}: pickers are saved as .keras; use that suffix (checked "
                "before training, so no work is lost)."
            )
        check_writable(args.out, overwrite=args.overwrite)
        images = _read_images(args.micrographs)
        coords = _read_coords(args.coords, images, "--coords")
        negatives = _read_coords(args.negatives, images, "--negatives") if args.negatives else None
        picker = ParticlePicker(
            args.box,
            preset=args.preset,
            recipe=args.recipe,
            epochs=args.epochs,
            batch_size=args.batch_size,
            particle_diameter=args.diameter,
            random_state=args.seed,
            progress=logging.getLogger().level <= logging.INFO,
        )
        picker.fit(images, coords, negatives)
        summary = {"validation_accuracy": picker.validation_accuracy_}
        if args.calibrate_micrographs:
            calibration = _read_images(args.calibrate_micrographs)
            truth = _read_coords(args.calibrate_coords, calibration, "--calibrate-coords")
            picker.calibrate_threshold(calibration, truth)
            summary["calibration"] = picker.calibration_
        picker.save(args.out, overwrite=args.overwrite)
        summary["threshold"] = picker.threshold_
        summary["model"] = str(args.out)
        print(json.dumps(summary, indent=1))
        return 0
    if step == "score":
        picker = ParticlePicker.load(args.model)
        (image,) = _read_images([args.micrograph])
        score_map = picker.score(image, method=args.method)
        if args.out.suffix != ".npz":
            raise CryomlError(f"{args.out}: score maps are written as .npz; change the suffix.")
        with atomic_path(args.out, overwrite=args.overwrite) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                scores=score_map.scores,
                step=score_map.step,
                box_size=score_map.box_size,
                origin=np.asarray(score_map.origin),
            )
        log.info("score map %s (step %d) -> %s", score_map.scores.shape, score_map.step, args.out)
        return 0
    if step == "extract":
        from cryoml.picking._batch import extract_file

        sidecar = args.model.with_name(args.model.name + ".json")
        for needed in (args.model, sidecar):
            if not needed.is_file():
                raise CryomlError(f"{needed}: no such file; a saved picker needs both files.")
        return run_files(
            extract_file,
            args.micrographs,
            out_dir=args.out_dir,
            suffix=f".{args.format}",
            options={
                "model": str(args.model.resolve()),
                "threshold": args.threshold,
                "method": args.method,
            },
            args=args,
            overwrite=args.overwrite,
        )
    if step == "evaluate":
        from cryoml import io
        from cryoml.picking import evaluate_picks, plot_precision_recall

        if len(args.picks) != len(args.truth):
            raise CryomlError("give one --truth file per pick file, in the same order.")
        from cryoml.io._coordinates import check_pairing

        check_pairing(args.picks, args.truth, left_option="picks", right_option="--truth")
        picks = [io.read_coordinates(path) for path in args.picks]
        truth = [io.read_coordinates(path) for path in args.truth]
        evaluation = evaluate_picks(
            picks, truth, radius=args.radius, threshold=args.threshold, beta=args.beta
        )
        if args.plot:
            plot_precision_recall({"picks": evaluation}, args.plot, overwrite=args.overwrite)
        print(json.dumps(evaluation.to_dict(), indent=1))
        return 0
    if step == "template":
        from cryoml.picking import TemplateMatcher

        train_images = _read_images(args.train_micrographs)
        train_coords = _read_coords(args.train_coords, train_images, "--train-coords")
        matcher = TemplateMatcher(args.box, n_angles=args.n_angles)
        matcher.fit(train_images, train_coords)
        if args.threshold is None:
            matcher.calibrate_threshold(train_images, train_coords)
        _write_picks(
            matcher,
            args.micrographs,
            args.out_dir,
            args.format,
            args.threshold,
            None,
            args.overwrite,
        )
        return 0
    raise CryomlError(f"unknown pick step {step!r}")  # pragma: no cover
