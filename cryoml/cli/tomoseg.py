"""TomoSeg: build training sets, train, preview, apply, merge and extract (Chen et al. 2017).

examples:
  cryoml tomoseg buildset tomo_pre.mrc --positives pos.csv --masks masks.mrc \\
      --negatives neg.csv --feature membrane -o membrane_set.npz
  cryoml tomoseg train membrane_set.npz -o membrane.keras --recipe paper
  cryoml tomoseg train membrane_set.npz -o membrane2.keras --continue membrane.keras --lr 1e-5
  cryoml tomoseg preview membrane_set.npz membrane.keras -o preview.png
  cryoml tomoseg apply tomo_pre.mrc membrane.keras -o tomo_membrane.mrc
  cryoml tomoseg apply "tomos/*.mrc" membrane.keras --out-dir seg/ --workers 2
  cryoml tomoseg merge tomo_membrane.mrc tomo_ribosome.mrc --names membrane ribosome \\
      -o tomo_labels.mrc
  cryoml tomoseg extract tomo_ribosome.mrc --box 32 -o ribosomes.star --average avg.mrc \\
      --tomogram tomo_pre.mrc
  cryoml tomoseg extract tomoB_ribosome.mrc --box 32 -o ribosomes_B.star \\
      --calibrate-on tomoA_ribosome.mrc --calibrate-coords tomoA_ribosomes.star
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryoml.cli._batch import add_batch_args, run_files


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``cryoml tomoseg`` subcommands."""
    sub = parser.add_subparsers(dest="tomoseg_command", metavar="STEP", required=True)

    p = sub.add_parser("buildset", help="cut training tiles from a preprocessed tomogram")
    p.add_argument("tomogram", type=Path, help="preprocessed tomogram (MRC/TIFF)")
    p.add_argument(
        "--positives", type=Path, required=True, help="positive box centres (.csv/.star/.json, 3-D)"
    )
    p.add_argument(
        "--masks",
        type=Path,
        required=True,
        help="binary masks: a volume of the tomogram's shape (MRC) or a (P, T, T) "
        "stack, one painted tile per positive",
    )
    p.add_argument("--negatives", type=Path, help="negative box centres")
    p.add_argument("--feature", default="feature", help="feature name (default: feature)")
    p.add_argument("--tile", type=int, default=64, help="tile edge (default 64)")
    p.add_argument("--copies", type=int, help="rotated copies per positive (default: balance)")
    p.add_argument(
        "--neighbours",
        type=int,
        default=0,
        help="2.5D: k neighbouring slices above and below as channels (default 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .npz")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("train", help="train a network on a training set")
    p.add_argument("trainset", type=Path, help="training set .npz (from buildset)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .keras")
    p.add_argument(
        "--architecture",
        choices=("paper", "unet"),
        default="paper",
        help="paper: the published CNN (default); unet: a small U-Net, full-resolution output",
    )
    p.add_argument(
        "--recipe",
        choices=("paper", "eman2", "unet"),
        help="training recipe (default: eman2 for the paper network, unet for the U-Net)",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int, dest="batch_size")
    p.add_argument("--lr", type=float, dest="learning_rate")
    p.add_argument(
        "--filters", type=int, help="filters per layer (paper network: 40; U-Net first level: 32)"
    )
    p.add_argument("--patience", type=int, help="early stop after N epochs without progress")
    p.add_argument(
        "--smooth-z",
        type=float,
        metavar="ANGSTROM",
        help="Gaussian sigma (Å) along Z that 'apply' uses by default for this network: joins "
        "what a slice-by-slice network finds in some slices and loses in the next (default: "
        "40 for the U-Net, 0 for the paper network, as EMAN2)",
    )
    p.add_argument(
        "--continue", type=Path, dest="continue_from", help="continue training this saved network"
    )
    p.add_argument(
        "--corrections",
        type=Path,
        help="with --continue and --tomogram: boxes (.star/.json/.box) of the network's false "
        "positives, added as negative tiles to TRAINSET (the set it was trained on)",
    )
    p.add_argument("--tomogram", type=Path, help="preprocessed tomogram the corrections are on")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed of weights and shuffling (default 0)"
    )
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("preview", help="(tile, mask, output) grid and loss history as PNG")
    p.add_argument("trainset", type=Path)
    p.add_argument("network", type=Path, nargs="?", help="trained .keras (optional)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output PNG")
    p.add_argument("--max-tiles", type=int)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser(
        "apply",
        help="segment tomograms slice by slice (one file, or many on a Dask cluster)",
        description="Segment one tomogram (-o OUT.mrc), or many (files, quoted globs or "
        "@list.txt, with --out-dir) on a Dask LocalCluster or a running scheduler; finished "
        "files are recorded in a manifest and skipped when the command is run again.",
    )
    p.add_argument("tomograms", nargs="+", help="preprocessed tomogram(s), globs or @list.txt")
    p.add_argument("network", type=Path, help="trained .keras")
    p.add_argument("-o", "--output", type=Path, help="output MRC (one tomogram)")
    p.add_argument("--out-dir", type=Path, help="output folder (many tomograms)")
    p.add_argument(
        "--engine", choices=("auto", "fused", "keras", "fft", "device_fft"), default="auto"
    )
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    p.add_argument(
        "--output-dtype",
        choices=("float32", "float16", "uint8"),
        default="float32",
        help="output type: float16 halves the bytes written, uint8 (round(min(v, 1)·255), MRC "
        "mode 0 with IMOD's unsigned flag) quarters them (one H200, 4096² slices file to file: "
        "float16 0.10 s, uint8 0.07 s per slice, the disk's own pace) (default: %(default)s)",
    )
    add_batch_args(p)
    p.add_argument("--batch", type=int, dest="batch_size")
    p.add_argument("--tile", type=int, dest="tile_size", help="largest window edge")
    p.add_argument(
        "--smooth-z",
        type=float,
        metavar="ANGSTROM",
        help="Gaussian sigma (Å) along Z applied to the output; 0 keeps the raw slice-by-slice "
        "output (default: the network's own, 40 for the U-Net, 0 for the paper network)",
    )
    p.add_argument(
        "--ignore-voxel-size",
        action="store_true",
        help="apply even if the voxel size differs from the network's",
    )
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("merge", help="argmax of several outputs → integer labels")
    p.add_argument("outputs", type=Path, nargs="+", help="scaled outputs (MRC)")
    p.add_argument("--names", nargs="+", help="feature names, one per output")
    p.add_argument("--threshold", type=float, default=0.8, help="background level (0.8)")
    p.add_argument("-o", "--output", type=Path, required=True, help="label MRC (+ .json table)")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("extract", help="pick particles from a segmentation")
    p.add_argument("segmentation", type=Path, help="scaled output (MRC)")
    p.add_argument("--box", type=int, required=True, help="box edge in voxels")
    p.add_argument(
        "--threshold", type=float, help="foreground cut (default 1.0, or the calibrated one)"
    )
    p.add_argument(
        "--min-mass",
        type=int,
        help="drop components of this many voxels or fewer (default 20, or the calibrated one)",
    )
    p.add_argument("--min-distance", type=float, help="default box/4")
    p.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        help="Gaussian sigma (voxels) applied to the output before the cut; 1 joins a 2D "
        "network's slice-to-slice pieces of one particle (default 0: the output as it is)",
    )
    p.add_argument(
        "--calibrate-on",
        type=Path,
        metavar="OUTPUT",
        help="choose --threshold and --min-mass where F1 peaks on this network output of an "
        "annotated tomogram (with --calibrate-coords), then extract",
    )
    p.add_argument(
        "--calibrate-coords",
        type=Path,
        metavar="COORDS",
        help="particle centres marked on the --calibrate-on tomogram (.star/.json/.csv, 3-D)",
    )
    p.add_argument(
        "--calibrate-radius",
        type=float,
        help="a pick within this many voxels of a marked centre is right (default box/2)",
    )
    p.add_argument(
        "--filament",
        type=int,
        metavar="N",
        help="seed N random points in the mask instead (filaments)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("-o", "--output", type=Path, required=True, help=".star, .json or .csv")
    p.add_argument("--tomogram", type=Path, help="tomogram to cut subtomograms from")
    p.add_argument("--average", type=Path, help="write the average of the picks (MRC)")
    p.add_argument("--overwrite", action="store_true")


def _check_keras_output(path: Path, option: str) -> None:
    from cryoml._errors import CryomlError

    if path.suffix != ".keras":
        raise CryomlError(
            f"{option} {path}: networks are saved as .keras; use that suffix (checked before "
            "training, so no work is lost)."
        )


def _check_masks(masks, args: argparse.Namespace, shape: tuple[int, ...]) -> None:
    import numpy as np

    from cryoml._errors import CryomlError

    if masks.shape != tuple(shape) and masks.shape[1:] != (args.tile, args.tile):
        raise CryomlError(
            f"--masks {args.masks} has shape {masks.shape}; it must be a volume of the shape of "
            f"{args.tomogram} {tuple(shape)}, or a (P, {args.tile}, {args.tile}) stack, one "
            "painted tile per positive."
        )
    low, high = float(np.min(masks)), float(np.max(masks))
    if low < 0 or high > 1:
        raise CryomlError(
            f"--masks {args.masks} holds values {low:g} … {high:g}; masks must be binary (0 and "
            "1). For one feature of a label volume, write (labels == k) as the mask first."
        )


def _extraction_cut(args: argparse.Namespace) -> tuple[float, int]:
    """``extract``'s threshold and least mass: given, EMAN2's defaults, or calibrated."""
    from cryoml import io, tomoseg
    from cryoml._errors import CryomlError

    if args.calibrate_on is None:
        if args.calibrate_coords is not None or args.calibrate_radius is not None:
            raise CryomlError(
                "--calibrate-coords/--calibrate-radius need --calibrate-on (the network output "
                "of the tomogram whose particles were marked)."
            )
        return (
            1.0 if args.threshold is None else args.threshold,
            20 if args.min_mass is None else args.min_mass,
        )
    if args.calibrate_coords is None:
        raise CryomlError("--calibrate-on needs --calibrate-coords (the centres marked on it).")
    if args.filament:
        raise CryomlError(
            "--calibrate-on chooses particle picks; it does not apply to --filament seeding."
        )
    if args.threshold is not None or args.min_mass is not None:
        raise CryomlError(
            "--calibrate-on chooses --threshold and --min-mass; give either, not both."
        )
    reference = io.read_mrc(args.calibrate_on, mmap=True)
    truth = io.read_coordinates(args.calibrate_coords)
    if len(truth) and truth.centres.shape[1] != 3:
        raise CryomlError(
            f"--calibrate-coords {args.calibrate_coords}: 2-D coordinates; give the (Z, Y, X) "
            "centres of the particles marked on the --calibrate-on tomogram."
        )
    result = tomoseg.calibrate_extraction(
        reference.data,
        truth,
        box_size=args.box,
        radius=args.calibrate_radius,
        min_distance=args.min_distance,
        smooth=args.smooth,
    )
    print(
        f"calibrated on {args.calibrate_on} ({result.n_true} marked centres): threshold "
        f"{result.threshold:g}, min mass {result.min_mass} (precision {result.precision:.3f}, "
        f"recall {result.recall:.3f}, F1 {result.fbeta:.3f}, {result.n_picks} picks)"
    )
    return result.threshold, result.min_mass


def _volume(path: Path):
    from cryoml.io import read_image

    return read_image(path)


def main(args: argparse.Namespace) -> int:
    """Run one TomoSeg step."""
    import json
    import logging

    from cryoml import io, tomoseg
    from cryoml._errors import CryomlError

    log = logging.getLogger(__name__)
    progress = not getattr(args, "quiet", False)
    step = args.tomoseg_command
    if step == "buildset":
        io.check_writable(args.output, overwrite=args.overwrite)
        image = _volume(args.tomogram)
        masks = io.read_image(args.masks).data
        _check_masks(masks, args, image.data.shape)
        positives = io.read_coordinates(args.positives)
        negatives = io.read_coordinates(args.negatives) if args.negatives else None
        record = None
        record_path = args.tomogram.with_suffix(args.tomogram.suffix + ".json")
        if record_path.is_file():
            from cryoml.preprocess import PreprocessRecord

            record = PreprocessRecord.load(record_path)
        trainset = tomoseg.build_training_set(
            image,
            positives,
            masks,
            negatives,
            feature=args.feature,
            tile_size=args.tile,
            n_copies=args.copies,
            n_neighbours=args.neighbours,
            preprocess=record,
            random_state=args.seed,
        )
        trainset.save(args.output, overwrite=args.overwrite)
        print(f"{args.output}: {len(trainset)} tiles ({int(trainset.is_positive.sum())} positive)")
    elif step == "train":
        _check_keras_output(args.output, "-o/--output")
        io.check_writable(args.output, overwrite=args.overwrite)
        trainset = tomoseg.TrainingSet.load(args.trainset)
        if args.corrections and not (args.continue_from and args.tomogram):
            raise CryomlError(
                "--corrections needs --continue (the network to correct) and --tomogram (the "
                "preprocessed tomogram the boxes are on)."
            )
        if args.continue_from:
            segmenter = tomoseg.TomoSegmenter.load(args.continue_from, progress=progress)
            if segmenter.feature != trainset.feature:
                log.warning(
                    "continuing network %s ('%s') on %s: the new network is named '%s'",
                    args.continue_from, segmenter.feature, args.trainset, trainset.feature,
                )
                segmenter.feature = trainset.feature
            for key in ("epochs", "batch_size", "learning_rate"):
                setattr(segmenter, key, getattr(args, key))
            if args.smooth_z is not None:
                from cryoml.tomoseg._smooth import _check_sigma

                segmenter.smooth_z = _check_sigma(args.smooth_z)
            if args.recipe:
                segmenter.recipe = args.recipe
        else:
            segmenter = tomoseg.TomoSegmenter(
                feature=trainset.feature,
                architecture=args.architecture,
                recipe=args.recipe,
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                n_filters=args.filters,
                patience=args.patience,
                smooth_z=args.smooth_z,
                random_state=args.seed,
                progress=progress,
            )
        if args.corrections:
            boxes = io.read_coordinates(args.corrections)
            tomogram = io.read_image(args.tomogram)
            segmenter.training_set_ = trainset
            segmenter.add_corrections(tomogram, boxes.centres, epochs=args.epochs)
            print(f"{len(boxes)} correction boxes from {args.corrections} added as negatives")
        else:
            segmenter.fit(trainset, continue_training=args.continue_from is not None)
        segmenter.save(args.output, overwrite=args.overwrite)
        print(
            f"{args.output}: best loss {segmenter.best_loss_:.3f}, amplitude "
            f"{segmenter.amplitude_:.3g}"
        )
    elif step == "preview":
        trainset = tomoseg.TrainingSet.load(args.trainset)
        segmenter = tomoseg.TomoSegmenter.load(args.network) if args.network else None
        figure = tomoseg.preview_grid(trainset, segmenter, max_tiles=args.max_tiles)
        tomoseg.save_figure(figure, args.output, overwrite=args.overwrite)
        if segmenter is not None:
            history_png = args.output.with_name(args.output.stem + "_history.png")
            tomoseg.save_figure(
                tomoseg.plot_history(segmenter.history_), history_png, overwrite=args.overwrite
            )
        print(args.output)
    elif step == "apply":
        options = {
            "override_voxel_size": args.ignore_voxel_size,
            "engine": args.engine,
            "precision": args.precision,
            "output_dtype": args.output_dtype,
            "batch_size": args.batch_size,
            "tile_size": args.tile_size,
            "smooth_z": args.smooth_z,
        }
        if args.out_dir is not None:
            from cryoml.tomoseg._apply import apply_file

            options["network"] = str(args.network.resolve())
            return run_files(
                apply_file,
                args.tomograms,
                out_dir=args.out_dir,
                suffix=f"_{args.network.stem}.mrc",
                options=options,
                args=args,
                overwrite=args.overwrite,
            )
        if len(args.tomograms) != 1 or args.output is None:
            raise CryomlError(
                "give one tomogram with -o OUTPUT.mrc, or any number with --out-dir FOLDER."
            )
        tomoseg.apply_network(
            args.tomograms[0],
            args.network,
            output=args.output,
            overwrite=args.overwrite,
            progress=progress,
            **options,
        )
        print(args.output)
    elif step == "merge":
        images = [io.read_mrc(p, mmap=True) for p in args.outputs]
        labels, table = tomoseg.merge_segmentations(
            [im.data for im in images], names=args.names, threshold=args.threshold
        )
        table_path = args.output.with_suffix(".json")
        io.check_writable(table_path, overwrite=args.overwrite)
        io.write_mrc(args.output, labels, voxel_size=images[0].voxel_size, overwrite=args.overwrite)
        with io.atomic_path(table_path, overwrite=args.overwrite) as tmp:
            tmp.write_text(json.dumps({str(k): v for k, v in table.items()}, indent=1))
        print(f"{args.output} ({table_path})")
    elif step == "extract":
        if args.average and args.tomogram is None:
            raise CryomlError("--average needs --tomogram (the volume to cut boxes from).")
        io.check_writable(args.output, overwrite=args.overwrite)
        if args.average:
            from cryoml.io._mrc import MRC_SUFFIXES

            if args.average.suffix.lower() not in MRC_SUFFIXES:
                raise CryomlError(f"--average {args.average}: the average is written as MRC.")
            io.check_writable(args.average, overwrite=args.overwrite)
            if not args.tomogram.is_file():
                raise CryomlError(f"--tomogram {args.tomogram}: no such file. Check the path.")
        threshold, min_mass = _extraction_cut(args)
        image = io.read_mrc(args.segmentation)
        if args.filament:
            particles = tomoseg.seed_filaments(
                image.data >= threshold,
                args.filament,
                box_size=args.box,
                min_distance=args.min_distance,
                random_state=args.seed,
            )
        else:
            particles = tomoseg.extract_particles(
                image.data,
                box_size=args.box,
                threshold=threshold,
                min_mass=min_mass,
                min_distance=args.min_distance,
                smooth=args.smooth,
            )
        io.write_coordinates(args.output, particles, overwrite=args.overwrite)
        print(f"{args.output}: {len(particles)} particles")
        if args.average:
            if args.tomogram is None:
                raise CryomlError("--average needs --tomogram (the volume to cut boxes from).")
            if len(particles) == 0:
                raise CryomlError("no particles picked; nothing to average.")
            volume = _volume(args.tomogram)
            boxes = tomoseg.cut_subtomograms(volume.data, particles)
            io.write_mrc(
                args.average,
                tomoseg.average_subtomograms(boxes),
                voxel_size=volume.voxel_size,
                overwrite=args.overwrite,
            )
            print(f"{args.average}: average of {len(boxes)}")
    log.debug("tomoseg %s done", step)
    return 0
