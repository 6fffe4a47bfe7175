"""DeepEM particle picking: train a picker, score micrographs, extract picks, evaluate, baseline.

examples:
  cryoml pick train mic01.mrc mic02.mrc --coords mic01.box mic02.box --box 64 --out picker.keras \
      --calibrate-micrographs mic03.mrc --calibrate-coords mic03.box
  cryoml pick train mic*.mrc --coords picks/*.star --preset 19s --recipe paper --out p.keras
  cryoml pick score picker.keras mic04.mrc --out mic04_scores.npz --method raster
  cryoml pick extract picker.keras mic04.mrc mic05.mrc --out-dir picks --format star
  cryoml pick extract picker.keras "mics/*.mrc" --out-dir picks --workers 4     # on Dask
  cryoml pick extract picker.keras @mics.txt --out-dir picks --scheduler tcp://head:8786
  cryoml pick extract picker.keras mic04.mrc --out-dir all --all-candidates   # for evaluate
  cryoml pick evaluate all/mic04.box --truth truth/mic04.box --model picker.keras --plot pr.png
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


BOX_HELP = (
    "box edge in pixels: about 1.5 × the particle diameter, so that the particle and a rim of "
    "background fit (64 for a 40-px particle); the network's kernels and pools follow from it "
    "(preset_for_box). Give --box or --preset"
)
PRESET_HELP = (
    "a network of the DeepEM paper's Table 1, which fixes the box: klh 272 px, 19s 160 px, "
    "26s 150 px, inflammasome 112 px (bin your micrographs so the particle fills ~2/3 of it)"
)
RECIPE_HELP = (
    "modern: binary cross-entropy + Adam 1e-3, converges in fewer epochs; paper: the "
    "paper's squared error + plain SGD at learning rate 1 (faithful, needs ~20+ epochs)"
)
MIN_DISTANCE_HELP = (
    "smallest distance between picks in px (circular non-maximum suppression); default 0.5 × "
    "the particle diameter, which keeps touching particles"
)
DIAMETER_HELP = "particle diameter in px (default: 2/3 of the box)"


class _DefaultsFormatter(argparse.HelpFormatter):
    """Append "(default: …)" to options whose default is a real value (not None/False/[])."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and not (default is None or default is False or default == [])
            and default is not argparse.SUPPRESS
        ):
            text += " (default: %(default)s)"
        return text


def _fmt(prog):
    return _DefaultsFormatter(prog, max_help_position=32)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the subcommands of ``cryoml pick``."""
    sub = parser.add_subparsers(dest="pick_command", metavar="STEP", required=True)

    train = sub.add_parser(
        "train",
        help="train a DeepEM picker from micrographs + coordinates",
        description="Train a DeepEM picker on boxes around the given particles (positives) and "
        "around random background or --negatives, each box seen in 8 orientations. Give "
        "calibration micrographs with their coordinates to choose the pick threshold where F2 "
        "peaks; without them the threshold stays at 0.5.",
        formatter_class=_fmt,
    )
    train.add_argument("micrographs", nargs="+", type=Path, help="training micrographs (MRC/TIFF)")
    train.add_argument(
        "--coords",
        nargs="+",
        type=Path,
        required=True,
        help="particle coordinates (.box/.star/.csv), one file per micrograph, same order",
    )
    train.add_argument("--negatives", nargs="+", type=Path, help="non-particle coordinates")
    train.add_argument("--box", type=int, help=BOX_HELP)
    train.add_argument("--preset", choices=("klh", "19s", "26s", "inflammasome"), help=PRESET_HELP)
    train.add_argument("--recipe", choices=("modern", "paper"), default="modern", help=RECIPE_HELP)
    train.add_argument("--epochs", type=int, default=20, help="passes over the training boxes")
    train.add_argument("--batch-size", type=int, default=50, help="boxes per update (paper: 50)")
    train.add_argument("--diameter", type=float, help=DIAMETER_HELP)
    train.add_argument("--min-distance", type=float, help=MIN_DISTANCE_HELP)
    train.add_argument(
        "--dense-step", type=int,
        help="grid step in px of the dense score map, kept with the model; must divide the "
        "network's stride (the product of its pools, 8 for the paper's). Default: the stride. "
        "Half the stride costs 4x the scoring time and found particles better on our "
        "simulated sets (AP +0.02-0.06)")
    train.add_argument(
        "--jitter",
        type=float,
        help="largest shift (px, each axis) of the two off-centre copies of every particle box, "
        "so that particles between the score map's grid points are still recognised (default: "
        "0.1 x diameter, at most half the grid step, with --recipe modern; 0 = centred boxes "
        "only, the paper's recipe default)",
    )
    train.add_argument(
        "--hard-negative-rounds",
        type=int,
        default=0,
        help="rounds of hard-negative mining: false picks on the training micrographs become "
        "negatives and training continues (only if every particle there is in --coords)",
    )
    train.add_argument(
        "--calibrate-micrographs",
        nargs="+",
        type=Path,
        default=[],
        help="labelled micrographs (not trained on) where the F2-optimal threshold is chosen",
    )
    train.add_argument(
        "--calibrate-coords", nargs="+", type=Path, default=[], help="their coordinates"
    )
    train.add_argument("--seed", type=int, default=0, help="random seed")
    train.add_argument(
        "--ensemble", type=int, default=1, metavar="N",
        help="train N networks (seeds --seed ... --seed+N-1) and average their score maps; "
        "--out is then a folder. On notebook 04's simulated micrographs 3 networks raised the "
        "AP from 0.786 to 0.817 (mean of three runs), on a harder set at SNR 0.01 by 0.02; "
        "N times the training and scoring time")
    train.add_argument("--out", type=Path, required=True,
                       help="output .keras (+ .keras.json); a folder with --ensemble N > 1")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model")

    score = sub.add_parser(
        "score", help="write the score map of a micrograph (.npz)", formatter_class=_fmt
    )
    score.add_argument("model", type=Path, help="picker .keras")
    score.add_argument("micrograph", type=Path)
    score.add_argument(
        "--method",
        choices=("dense", "raster"),
        default="dense",
        help="dense: one fully convolutional pass (fast); raster: the paper's box-by-box scan",
    )
    score.add_argument("--out", type=Path, required=True, help="output .npz")
    score.add_argument("--overwrite", action="store_true", help="replace an existing file")
    _add_override(score)

    extract = sub.add_parser(
        "extract",
        help="pick particles and write .box / .star files (many files on a Dask cluster)",
        description="Pick micrographs (files, quoted globs or @list.txt) into OUT_DIR/<name>."
        "<format>, one task per micrograph on a Dask LocalCluster or a running scheduler; "
        "finished micrographs are recorded in a manifest and skipped when the command is run "
        "again. Picks below the threshold are not written: to evaluate a picker (PR curve, AP) "
        "write every scored candidate with --all-candidates.",
        formatter_class=_fmt,
    )
    extract.add_argument("model", type=Path, help="picker .keras")
    extract.add_argument("micrographs", nargs="+", help="micrographs, globs or @list.txt")
    extract.add_argument(
        "--threshold", type=float, help="lowest score written (default: the calibrated one)"
    )
    extract.add_argument(
        "--all-candidates",
        action="store_true",
        help="write every local maximum with its score, whatever the threshold (for "
        "`cryoml pick evaluate`: the PR curve and AP need them all)",
    )
    extract.add_argument(
        "--method",
        choices=("dense", "raster"),
        default="dense",
        help="dense: one fully convolutional pass (fast); raster: the paper's box-by-box scan",
    )
    extract.add_argument(
        "--min-distance",
        type=float,
        help=MIN_DISTANCE_HELP.split(";")[0] + "; default: the model's",
    )
    extract.add_argument(
        "--format", choices=("box", "star", "csv", "json"), default="box", help="output format"
    )
    extract.add_argument("--out-dir", type=Path, required=True, help="output folder")
    extract.add_argument(
        "--overwrite",
        action="store_true",
        help="replace pick files in OUT_DIR that no earlier run recorded in its manifest",
    )
    _add_override(extract)
    add_batch_args(extract)

    evaluate = sub.add_parser(
        "evaluate",
        help="precision, recall, F-beta, AP of picks vs truth",
        description="Judge pick files (with scores) against true coordinates: a pick is right "
        "within --radius px of a true centre, matched one to one. For a full PR curve the "
        "picks must hold every candidate (`cryoml pick extract --all-candidates`).",
        formatter_class=_fmt,
    )
    evaluate.add_argument("picks", nargs="+", type=Path, help="pick files (with scores)")
    evaluate.add_argument("--truth", nargs="+", type=Path, required=True, help="true coordinates")
    evaluate.add_argument(
        "--radius",
        type=float,
        help="match radius in px (default: 0.5 × the --model's particle diameter, else 1/3 of "
        "the picks' box size)",
    )
    evaluate.add_argument("--model", type=Path, help="the picker .keras, for the default radius")
    evaluate.add_argument("--threshold", type=float, help="default: where F-beta peaks")
    evaluate.add_argument("--beta", type=float, default=2.0, help="F-beta weight of recall")
    evaluate.add_argument("--plot", type=Path, help="PR curve PNG")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing plot")

    template = sub.add_parser(
        "template", help="normalised cross-correlation template picking", formatter_class=_fmt
    )
    template.add_argument("micrographs", nargs="+", type=Path, help="micrographs to pick")
    template.add_argument("--train-micrographs", nargs="+", type=Path, required=True)
    template.add_argument("--train-coords", nargs="+", type=Path, required=True)
    template.add_argument("--box", type=int, required=True, help=BOX_HELP.split(";")[0])
    template.add_argument("--diameter", type=float, help=DIAMETER_HELP)
    template.add_argument("--n-angles", type=int, default=1, help="reference rotations")
    template.add_argument("--min-distance", type=float, help=MIN_DISTANCE_HELP)
    template.add_argument("--threshold", type=float, help="default: F2 peak on training mics")
    template.add_argument(
        "--format", choices=("box", "star", "csv", "json"), default="box", help="output format"
    )
    template.add_argument("--out-dir", type=Path, required=True, help="output folder")
    template.add_argument("--overwrite", action="store_true", help="replace existing files")


def _add_override(parser) -> None:
    parser.add_argument(
        "--override-pixel-size",
        action="store_true",
        help="score micrographs whose pixel size differs from the training micrographs' "
        "(only if you know the headers are wrong; otherwise bin with `cryoml preprocess`)",
    )


def _check_positive_options(args) -> None:
    from cryoml._errors import CryomlError

    for name in ("epochs", "batch_size", "box", "n_angles", "dense_step"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise CryomlError(f"--{name.replace('_', '-')} must be >= 1; got {value}.")
    for name in ("min_distance", "diameter", "radius", "jitter"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            raise CryomlError(f"--{name.replace('_', '-')} must be >= 0; got {value}.")
    rounds = getattr(args, "hard_negative_rounds", None)
    if rounds is not None and rounds < 0:
        raise CryomlError(f"--hard-negative-rounds must be >= 0; got {rounds}.")


def _read_images(paths):
    from cryoml import io

    images = []
    for path in paths:
        image = io.read_image(path)
        if image.voxel_size is None:
            log.warning(
                "%s: no pixel size in the header, so the picker cannot check that training "
                "and picked micrographs share one; set it in the header "
                "(cryoml.io.write_mrc(..., voxel_size=...)).",
                path,
            )
        images.append(image)
    return images


def _read_coords(paths, micrographs, name):
    from cryoml import io

    _check_pairs(paths, micrographs, name)
    return [io.read_coordinates(path) for path in paths]


def _check_pairs(paths, micrographs, name):
    from cryoml._errors import CryomlError

    if len(paths) != len(micrographs):
        raise CryomlError(
            f"got {len(micrographs)} micrographs but {len(paths)} {name} files; give one "
            "coordinate file per micrograph, in the same order."
        )
    from cryoml.io._coordinates import check_pairing

    check_pairing([getattr(m, "path", m) for m in micrographs], paths, left_option="micrograph",
                  right_option=name)


def _check_inputs(paths, what="file"):
    from cryoml._errors import CryomlError

    for path in paths:
        if not Path(path).is_file():
            raise CryomlError(f"{path}: no such {what}.")


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


def _train(args) -> int:
    from cryoml._errors import CryomlError
    from cryoml.io import check_writable
    from cryoml.picking import ParticlePicker

    if args.box is None and args.preset is None:
        raise CryomlError("give --box (about 1.5 × the particle diameter in px) or --preset.")
    if args.ensemble < 1:
        raise CryomlError(f"--ensemble must be >= 1; got {args.ensemble}.")
    if args.ensemble == 1 and not str(args.out).endswith(".keras"):
        raise CryomlError(f"{args.out}: a picker is saved as a .keras file; change the suffix.")
    if args.ensemble > 1 and args.out.suffix:
        raise CryomlError(
            f"{args.out}: an ensemble (--ensemble {args.ensemble}) is saved as a folder; give a "
            "name without a suffix."
        )
    check_writable(args.out if args.ensemble == 1 else args.out / "ensemble.json",
                   overwrite=args.overwrite)
    picker = ParticlePicker(
        args.box,
        preset=args.preset,
        recipe=args.recipe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        particle_diameter=args.diameter,
        min_distance=args.min_distance,
        dense_step=args.dense_step,
        hard_negative_rounds=args.hard_negative_rounds,
        jitter=args.jitter,
        random_state=args.seed,
        progress=logging.getLogger().level <= logging.INFO,
    )
    picker._validate_parameters()  # cheap checks before reading and training
    _check_pairs(args.coords, args.micrographs, "--coords")
    if args.negatives:
        _check_pairs(args.negatives, args.micrographs, "--negatives")
    _check_pairs(args.calibrate_coords, args.calibrate_micrographs, "--calibrate-coords")
    _check_inputs([*args.micrographs, *args.coords, *(args.negatives or []),
                   *args.calibrate_micrographs, *args.calibrate_coords])
    images = _read_images(args.micrographs)
    coords = _read_coords(args.coords, images, "--coords")
    negatives = _read_coords(args.negatives, images, "--negatives") if args.negatives else None
    if args.ensemble > 1:
        from cryoml.picking import PickerEnsemble

        picker = PickerEnsemble.train(picker, images, coords, negatives, n_models=args.ensemble)
        members = picker.pickers_
    else:
        members = [picker.fit(images, coords, negatives)]
    accuracies = [m.validation_accuracy_ for m in members]
    summary = {"validation_accuracy": accuracies if args.ensemble > 1 else accuracies[0]}
    if args.ensemble == 1 and picker.hard_negative_counts_:
        summary["hard_negatives_added"] = list(picker.hard_negative_counts_)
        if picker.hard_negative_accuracy_ == picker.hard_negative_accuracy_:  # not NaN
            summary["held_out_hard_negative_accuracy"] = picker.hard_negative_accuracy_
    if args.calibrate_micrographs:
        calibration = _read_images(args.calibrate_micrographs)
        truth = _read_coords(args.calibrate_coords, calibration, "--calibrate-coords")
        picker.calibrate_threshold(calibration, truth)
        summary["calibration"] = picker.calibration_
    else:
        log.warning(
            "no --calibrate-micrographs given: the pick threshold stays at 0.5, which is "
            "rarely the best. Give labelled micrographs not trained on (with "
            "--calibrate-coords) to choose it where F2 peaks, or pass --threshold to extract."
        )
    picker.save(args.out, overwrite=args.overwrite)
    summary["threshold"] = picker.threshold_
    summary["threshold_calibrated"] = bool(args.calibrate_micrographs)
    summary["min_distance_px"] = picker._min_distance()
    summary["model"] = str(args.out)
    print(json.dumps(summary, indent=1))
    return 0


def _load_model(path):
    from cryoml._errors import CryomlError
    from cryoml.picking import load_picker

    if not path.is_dir():
        sidecar = path.with_name(path.name + ".json")
        for needed in (path, sidecar):
            if not needed.is_file():
                raise CryomlError(f"{needed}: no such file; a saved picker needs both files.")
    return load_picker(path)


def main(args: argparse.Namespace) -> int:
    """Run one ``cryoml pick`` step."""
    import numpy as np

    from cryoml._errors import CryomlError
    from cryoml.io import atomic_path, check_writable

    _check_positive_options(args)
    step = args.pick_command
    if step == "train":
        return _train(args)
    if step == "score":
        if args.out.suffix != ".npz":
            raise CryomlError(f"{args.out}: score maps are written as .npz; change the suffix.")
        check_writable(args.out, overwrite=args.overwrite)
        _check_inputs([args.micrograph], "micrograph")
        picker = _load_model(args.model)
        (image,) = _read_images([args.micrograph])
        score_map = picker.score(
            image, method=args.method, override_pixel_size=args.override_pixel_size
        )
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

        if args.all_candidates and args.threshold is not None:
            raise CryomlError("--all-candidates writes every score; drop --threshold.")
        if args.out_dir is not None and args.out_dir.exists() and not args.out_dir.is_dir():
            raise CryomlError(
                f"--out-dir {args.out_dir} is a file, not a folder; give a folder for the picks."
            )
        picker = _load_model(args.model)
        if args.threshold is None and not args.all_candidates:
            calibrated = picker.calibration_ is not None
            log.info(
                "threshold %.3f (%s); for a PR curve or AP write every candidate with "
                "--all-candidates",
                picker.threshold_,
                "calibrated where F2 peaks" if calibrated else "not calibrated: the default",
            )
        return run_files(
            extract_file,
            args.micrographs,
            out_dir=args.out_dir,
            suffix=f".{args.format}",
            options={
                "model": str(args.model.resolve()),
                "threshold": args.threshold,
                "method": args.method,
                "all_candidates": args.all_candidates,
                "min_distance": args.min_distance,
                "override_pixel_size": args.override_pixel_size,
            },
            args=args,
            overwrite=args.overwrite,
        )
    if step == "evaluate":
        from cryoml import io
        from cryoml.picking import evaluate_picks, match_radius, plot_precision_recall

        if len(args.picks) != len(args.truth):
            raise CryomlError("give one --truth file per pick file, in the same order.")
        if args.plot:
            check_writable(args.plot, overwrite=args.overwrite)
        from cryoml.io._coordinates import check_pairing

        check_pairing(args.picks, args.truth, left_option="picks", right_option="--truth")
        picks = [io.read_coordinates(path) for path in args.picks]
        truth = [io.read_coordinates(path) for path in args.truth]
        radius = args.radius
        if radius is None and args.model is not None:
            radius = match_radius(_load_model(args.model).diameter)
            log.info("match radius %.1f px: half the model's particle diameter", radius)
        elif radius is None:
            box = next((p.box_size for p in picks if p.box_size), None)
            if box is None:
                raise CryomlError(
                    "the pick files hold no box size: give --radius (half the particle "
                    "diameter, px) or --model (the picker, which knows its diameter)."
                )
            radius = match_radius(2 * box / 3)
            log.info("match radius %.1f px: half of 2/3 of the %d-px box", radius, box)
        evaluation = evaluate_picks(
            picks, truth, radius=radius, threshold=args.threshold, beta=args.beta
        )
        if args.plot:
            plot_precision_recall({"picks": evaluation}, args.plot, overwrite=args.overwrite)
        print(json.dumps(evaluation.to_dict(), indent=1))
        return 0
    if step == "template":
        from cryoml.picking import TemplateMatcher

        _check_inputs([*args.micrographs, *args.train_micrographs, *args.train_coords])
        _check_pairs(args.train_coords, args.train_micrographs, "--train-coords")
        matcher = TemplateMatcher(
            args.box,
            n_angles=args.n_angles,
            particle_diameter=args.diameter,
            min_distance=args.min_distance,
        )
        train_images = _read_images(args.train_micrographs)
        train_coords = _read_coords(args.train_coords, train_images, "--train-coords")
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
