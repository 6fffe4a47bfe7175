"""Bin, band-pass (Å), normalise and clamp an image or volume; writes MRC and a JSON record.

examples:
  cryoml preprocess tomo.mrc tomo_pre.mrc --lowpass 20 --highpass 4000 --bin 4 --clamp 3
  cryoml preprocess mic.mrc mic_pre.mrc --bin 2 --bin-method mean --no-normalise
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``cryoml preprocess``."""
    parser.add_argument("input", type=Path, help="MRC or TIFF image/volume")
    parser.add_argument("output", type=Path, help="output MRC; the record goes to OUTPUT.json")
    parser.add_argument("--lowpass", type=float, help="Gaussian low-pass in Å (paper: 20)")
    parser.add_argument("--highpass", type=float, help="Gaussian high-pass in Å (paper: 4000)")
    parser.add_argument("--bin", type=int, default=1, dest="bin_factor", help="shrink factor")
    parser.add_argument(
        "--bin-method",
        choices=("fourier", "mean"),
        default="fourier",
        help="Fourier crop (no aliasing) or block mean (default: fourier)",
    )
    parser.add_argument("--clamp", type=float, default=3.0, help="clamp at ± N s.d. (0: off)")
    parser.add_argument(
        "--no-normalise", dest="normalise", action="store_false", help="keep the value scale"
    )
    parser.add_argument("--voxel-size", type=float, help="Å/voxel, when the header has none")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def main(args: argparse.Namespace) -> int:
    """Preprocess one file."""
    import logging

    from cryoml import io
    from cryoml._errors import CryomlError
    from cryoml.io import check_writable
    from cryoml.preprocess import preprocess

    log = logging.getLogger("cryoml.cli.preprocess")
    _check_options(args)
    record_path = args.output.with_name(args.output.name + ".json")
    check_writable(args.output, overwrite=args.overwrite)
    check_writable(record_path, overwrite=args.overwrite)
    image = io.read_image(args.input)
    if image.data.dtype.kind == "c":
        raise CryomlError(
            f"{args.input} holds complex values; preprocessing needs real ones. Export the "
            "amplitude or the real part from the program that wrote it."
        )
    voxel_size = args.voxel_size or image.voxel_size
    if voxel_size is None and (args.lowpass is not None or args.highpass is not None):
        raise CryomlError(
            f"{args.input} gives no voxel size, and --lowpass/--highpass are in Å; pass "
            "--voxel-size (Å/voxel)."
        )
    try:
        data, record = _run(preprocess, image, voxel_size, args)
    except CryomlError as error:
        raise CryomlError(f"{args.input}: {error}") from None
    io.write_mrc(args.output, data, voxel_size=record.voxel_size, overwrite=args.overwrite)
    record.save(record_path, overwrite=args.overwrite)
    log.info("wrote %s %s and %s", args.output, data.shape, record_path)
    return 0


def _run(preprocess, image, voxel_size, args: argparse.Namespace):
    return preprocess(
        image.data,
        voxel_size=voxel_size,
        lowpass=args.lowpass,
        highpass=args.highpass,
        bin_factor=args.bin_factor,
        bin_method=args.bin_method,
        normalise=args.normalise,
        clamp_sd=args.clamp or None,
    )


def _check_options(args: argparse.Namespace) -> None:
    """Refuse bad options by their names, before reading anything."""
    import math

    from cryoml._errors import CryomlError
    from cryoml.io._mrc import MRC_SUFFIXES

    if args.output.suffix.lower() not in MRC_SUFFIXES:
        raise CryomlError(
            f"{args.output}: the output is written as MRC; give a name ending in "
            f"{', '.join(MRC_SUFFIXES)} (not '{args.output.suffix}')."
        )
    if args.bin_factor < 1:
        raise CryomlError(f"--bin must be a whole number >= 1; got {args.bin_factor}.")
    if not math.isfinite(args.clamp) or args.clamp < 0:
        raise CryomlError(f"--clamp must be >= 0 standard deviations (0: off); got {args.clamp}.")
    for option, value in (
        ("--lowpass", args.lowpass),
        ("--highpass", args.highpass),
        ("--voxel-size", args.voxel_size),
    ):
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise CryomlError(f"{option} must be a positive number of Å; got {value}.")
