"""Simulate data with ground truth: subtomogram sets, cellular tomograms, micrographs.

examples:
  cryoml simulate subtomograms set.npz --classes ribosome_like,barrel_d7,ring_c7 -n 100 --snr 0.1
  cryoml simulate subtomograms grid/ --xu2017-grid --builtin -n 1000 --jobs 2
  cryoml simulate subtomograms easy.npz --builtin -n 100 --snr 0.1 --noise-stage detector
  cryoml simulate subtomograms set.h5 --classes 4v4r,3j9i,1bxn -n 50 --snr 0.05 --mrc-dir stacks/
  cryoml simulate tomogram cell.mrc --shape 64 256 256 --voxel-size 10 --snr 0.1 --seed 1
  cryoml simulate micrographs mics/ -n 10 --particle klh --pixel-size 3 --snr 0.01
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``subtomograms``, ``tomogram`` and ``micrographs`` subcommands."""
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    subtomo = sub.add_parser(
        "subtomograms", help="labelled subtomogram set(s) (Xu et al. 2017), .npz or .h5"
    )
    subtomo.add_argument("output", type=Path, help=".npz/.h5 file (a folder with --xu2017-grid)")
    subtomo.add_argument("--classes", help="comma-separated density names or paths")
    subtomo.add_argument("--builtin", action="store_true", help="use every built-in complex")
    subtomo.add_argument("-n", "--n-per-class", type=int, default=100)
    subtomo.add_argument("--snr", type=float, default=0.1, help="projection SNR (0: noise-free)")
    subtomo.add_argument("--tilt-range", type=float, default=60.0, help="± degrees")
    subtomo.add_argument("--tilt-step", type=float, default=2.0, help="degrees")
    subtomo.add_argument("--box", type=int, default=40)
    subtomo.add_argument("--voxel-size", type=float, default=9.2, help="Å")
    subtomo.add_argument("--no-empty", dest="include_empty", action="store_false",
                         help="no empty class")
    subtomo.add_argument("--xu2017-grid", action="store_true",
                         help="all 15 SNR × tilt conditions, one file each in OUTPUT/")
    subtomo.add_argument(
        "--noise-stage", choices=("paper", "detector"), default="paper",
        help="add the noise to the projections before CTF × MTF, as Xu et al. 2017 (paper, "
        "default), or after them (detector: easier at the same nominal SNR)")
    subtomo.add_argument("--mrc-dir", type=Path, help="also write one MRC stack per class here")
    subtomo.add_argument("--jobs", type=int, default=2, help="worker processes")
    _common(subtomo)

    tomo = sub.add_parser("tomogram", help="cellular tomogram phantom + labels + particles")
    tomo.add_argument("output", type=Path, help="tomogram .mrc; labels etc. are written beside it")
    tomo.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256), metavar=("Z", "Y", "X"))
    tomo.add_argument("--voxel-size", type=float, default=10.0, help="Å")
    tomo.add_argument("--snr", type=float, default=0.1, help="projection SNR (0: noise-free)")
    tomo.add_argument("--tilt-range", type=float, default=60.0, help="± degrees")
    tomo.add_argument("--tilt-step", type=float, default=2.0, help="degrees")
    tomo.add_argument("--ribosome-density", type=float, default=5000.0, help="per µm³")
    tomo.add_argument("--complex-density", type=float, default=5000.0, help="per µm³")
    tomo.add_argument("--clean", action="store_true", help="also write the noise-free phantom")
    tomo.add_argument("--masks", action="store_true", help="also write one MRC mask per label")
    _common(tomo)

    mics = sub.add_parser("micrographs", help="single-particle micrographs with picks")
    mics.add_argument("output", type=Path, help="folder for mic_NNN.mrc/.star/.csv")
    mics.add_argument("-n", type=int, default=1, help="number of micrographs")
    mics.add_argument("--shape", type=int, nargs=2, default=(2048, 2048), metavar=("Y", "X"))
    mics.add_argument("--pixel-size", type=float, default=3.0, help="Å")
    mics.add_argument("--particle", default="klh", help="density name (klh, 4v4r, ...)")
    mics.add_argument("--snr", type=float, default=0.01)
    mics.add_argument("--particles", type=int, dest="n_particles", help="per micrograph")
    _common(mics)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def main(args: argparse.Namespace) -> int:
    """Run one simulation and write its files."""
    runner = {"subtomograms": _subtomograms, "tomogram": _tomogram, "micrographs": _micrographs}
    return runner[args.kind](args)


def _subtomograms(args: argparse.Namespace) -> int:
    import logging

    from cryoml._errors import CryomlError
    from cryoml.simulate import builtin_complexes, simulate_condition_grid, simulate_subtomograms

    log = logging.getLogger("cryoml.cli.simulate")
    if args.builtin:
        classes = [c for c in builtin_complexes() if c != "klh"]
    elif args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    else:
        raise CryomlError("name the classes with --classes a,b,c or use --builtin.")
    options = dict(box=args.box, voxel_size=args.voxel_size, include_empty=args.include_empty,
                   n_jobs=args.jobs, tilt_step=args.tilt_step, noise_stage=args.noise_stage,
                   progress=True)
    if args.xu2017_grid:
        paths = simulate_condition_grid(
            classes, args.n_per_class, out_dir=args.output, random_state=args.seed,
            overwrite=args.overwrite, **options,
        )
        for path in paths.values():
            log.info("wrote %s", path)
        return 0
    from cryoml._validation import check_memory
    from cryoml.io import check_writable

    check_writable(args.output, overwrite=args.overwrite)
    n_classes = len(classes) + int(args.include_empty)
    check_memory(
        3.0 * n_classes * max(args.n_per_class, 0) * max(args.box, 1) ** 3 * 4,
        what=f"simulating {n_classes} x {args.n_per_class} subtomograms of {args.box}³ voxels",
        fix="Lower -n/--n-per-class or --box, or simulate in several runs.",
    )
    result = simulate_subtomograms(
        classes, args.n_per_class, snr=args.snr or None, tilt_range=args.tilt_range,
        random_state=args.seed, **options,
    )
    result.save(args.output, overwrite=args.overwrite)
    log.info("wrote %s (%d subtomograms)", args.output, len(result))
    if args.mrc_dir:
        for path in result.to_mrc(args.mrc_dir, overwrite=args.overwrite):
            log.info("wrote %s", path)
    return 0


def _stem(path: Path) -> Path:
    return path.with_suffix("") if path.suffix.lower() in (".mrc", ".rec", ".map") else path


def _tomogram(args: argparse.Namespace) -> int:
    import logging

    import numpy as np

    from cryoml.io import atomic_path, check_writable, write_coordinates, write_mrc
    from cryoml.simulate import simulate_cell_tomogram

    log = logging.getLogger("cryoml.cli.simulate")
    stem = _stem(args.output)
    outputs = {
        "tomogram": stem.with_suffix(".mrc"),
        "labels": stem.parent / f"{stem.name}_labels.mrc",
        "names": stem.parent / f"{stem.name}_labels.json",
        "star": stem.with_suffix(".star"),
        "csv": stem.with_suffix(".csv"),
        "poses": stem.parent / f"{stem.name}_poses.npz",
    }
    if args.clean:
        outputs["clean"] = stem.parent / f"{stem.name}_clean.mrc"
    for path in outputs.values():
        check_writable(path, overwrite=args.overwrite)
    from cryoml._validation import check_memory

    check_memory(
        12.0 * float(np.prod([max(n, 1) for n in args.shape], dtype=float)) * 4,
        what=f"simulating a tomogram of --shape {' '.join(map(str, args.shape))}",
        fix="Lower --shape (or raise --voxel-size for the same physical size).",
    )
    cell = simulate_cell_tomogram(
        tuple(args.shape), voxel_size=args.voxel_size, snr=args.snr or None,
        tilt_range=args.tilt_range, tilt_step=args.tilt_step, random_state=args.seed,
        ribosome_density=args.ribosome_density, complex_density=args.complex_density,
        progress=True,
    )
    voxel = args.voxel_size
    write_mrc(outputs["tomogram"], cell.tomogram.data, voxel_size=voxel, overwrite=args.overwrite)
    labels, names = cell.label_volume()
    write_mrc(outputs["labels"], labels.astype(np.int8), voxel_size=voxel,
              overwrite=args.overwrite)
    with atomic_path(outputs["names"], overwrite=args.overwrite) as tmp:
        tmp.write_text(json.dumps({"labels": {str(i + 1): n for i, n in enumerate(names)},
                                   "params": cell.params}, indent=1))
    write_coordinates(outputs["star"], cell.particles, overwrite=args.overwrite)
    write_coordinates(outputs["csv"], cell.particles, overwrite=args.overwrite)
    with atomic_path(outputs["poses"], overwrite=args.overwrite) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, centres=cell.particles.centres, classes=cell.particles.classes,
                 rotations=cell.rotations)
    if args.clean:
        write_mrc(outputs["clean"], cell.clean, voxel_size=voxel, overwrite=args.overwrite)
    if args.masks:
        for name, mask in cell.labels.items():
            write_mrc(stem.parent / f"{stem.name}_{name}.mrc", mask.astype(np.int8),
                      voxel_size=voxel, overwrite=args.overwrite)
    log.info("wrote %s and its labels, particles (%d) and poses", outputs["tomogram"],
             len(cell.particles))
    return 0


def _micrographs(args: argparse.Namespace) -> int:
    import logging

    import numpy as np

    from cryoml.io import atomic_path, check_writable, write_coordinates, write_mrc
    from cryoml.simulate import simulate_micrographs

    log = logging.getLogger("cryoml.cli.simulate")
    folder = args.output
    names = [f"mic_{i:03d}" for i in range(args.n)]
    if folder.exists() and not folder.is_dir():
        from cryoml._errors import CryomlError

        raise CryomlError(f"{folder} is a file; micrographs are written into a folder.")
    from cryoml._validation import check_memory

    check_memory(
        4.0 * max(args.n, 0) * float(max(args.shape[0], 1)) * max(args.shape[1], 1) * 4,
        what=f"simulating {args.n} micrographs of --shape {args.shape[0]} {args.shape[1]}",
        fix="Lower -n or --shape, or simulate in several runs.",
    )
    for name in names:
        for suffix in (".mrc", ".star", ".csv", "_all.csv"):
            check_writable(folder / f"{name}{suffix}", overwrite=args.overwrite)
    micrographs = simulate_micrographs(
        args.n, shape=tuple(args.shape), pixel_size=args.pixel_size, particle=args.particle,
        snr=args.snr, random_state=args.seed, n_particles=args.n_particles,
    )
    for name, micrograph in zip(names, micrographs, strict=True):
        write_mrc(folder / f"{name}.mrc", micrograph.image.data, voxel_size=args.pixel_size,
                  overwrite=args.overwrite)
        write_coordinates(folder / f"{name}.star", micrograph.particles,
                          micrograph_name=f"{name}.mrc", overwrite=args.overwrite)
        write_coordinates(folder / f"{name}.csv", micrograph.particles, overwrite=args.overwrite)
        frame = micrograph.all_particles.to_frame()
        for flag, values in micrograph.flags.items():
            frame[flag] = np.asarray(values, bool)
        frame["good"] = micrograph.good
        with atomic_path(folder / f"{name}_all.csv", overwrite=args.overwrite) as tmp:
            frame.to_csv(tmp, index=False)
        log.info("wrote %s (%d good of %d particles)", folder / f"{name}.mrc",
                 len(micrograph.particles), len(micrograph.all_particles))
    return 0
