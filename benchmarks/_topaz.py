"""Run the Topaz baseline (PyPI topaz-em 0.3.20) by subprocess from its own virtualenv.

The virtualenv is made by benchmarks/topaz_env.sh (default .topaz-venv/ at the repository
root, or $TOPAZ_VENV). Topaz is never imported into cryoml's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def topaz_executable() -> Path:
    venv = Path(os.environ.get("TOPAZ_VENV", ROOT / ".topaz-venv"))
    executable = venv / "bin" / "topaz"
    if not executable.exists():
        raise FileNotFoundError(
            f"{executable} not found; build it with `bash benchmarks/topaz_env.sh`"
        )
    return executable


def _run(arguments, *, note=None, timeout=3600) -> float:
    command = [str(topaz_executable()), *map(str, arguments)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(
            f"`topaz {arguments[0]}` failed ({result.returncode}): {result.stderr[-1500:]}"
        )
    if note:
        note(f"topaz {arguments[0]}: {elapsed:.1f} s")
    return elapsed


def _write_images(folder: Path, images: dict) -> None:
    import mrcfile

    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        with mrcfile.new(folder / f"{name}.mrc", overwrite=True) as handle:
            handle.set_data(np.asarray(image, dtype=np.float32))


def _read_picks(path: Path, names: list[str], box: int):
    """Topaz coordinate table -> list of Particles (Y, X) with scores, in ``names`` order."""
    import pandas as pd

    from cryoml.io import Particles

    table = pd.read_csv(path, sep="\t")
    out = []
    for name in names:
        rows = table[table["image_name"] == name]
        centres = rows[["y_coord", "x_coord"]].to_numpy(float).reshape(-1, 2)
        out.append(Particles(centres, box_size=box, scores=rows["score"].to_numpy(float)))
    return out


def _extract(model, processed: Path, names, *, radius, up_scale, out, note, threshold=-20):
    arguments = [
        "extract",
        "-m",
        model,
        "-r",
        radius,
        "-t",
        threshold,
        "-x",
        up_scale,
        "-d",
        "-1",
        "-o",
        out,
        *[processed / f"{n}.mrc" for n in names],
    ]
    return _run(arguments, note=note)


def run_topaz_baseline(
    *, train, calibrate, test, positives, radius, diameter, quick, work: Path, note,
    training: tuple[int, int, int] | None = None,
) -> dict:
    """Topaz pretrained (resnet16) and Topaz trained on the same training picks.

    Micrographs are those of benchmarks/picking.py (dicts with image, truth, box); Topaz gets
    them downsampled ×2 by its own ``preprocess`` (its usual step), and its coordinates are
    scaled back. ``training`` = (epochs, epoch size, minibatch) overrides the defaults of
    ``quick``. Returns the APs, precision/recall at the F2 peak on the same test
    micrographs, seconds per micrograph, and the PR curves under "_curves".
    """
    from cryoml.picking import evaluate_picks

    del calibrate  # Topaz picks its own threshold; AP needs none
    if work.exists():
        shutil.rmtree(work)
    downsample = 2
    box = test[0]["box"]
    n_train = 8 if quick else 24
    train_names = [f"train{i:03d}" for i in range(min(n_train, len(train)))]
    test_names = [f"test{i:03d}" for i in range(len(test))]
    _write_images(work / "raw", {n: train[i]["image"] for i, n in enumerate(train_names)})
    _write_images(work / "raw", {n: test[i]["image"] for i, n in enumerate(test_names)})
    _run(
        [
            "preprocess",
            "-s",
            downsample,
            "-d",
            "-1",
            "-o",
            work / "processed",
            *sorted((work / "raw").glob("*.mrc")),
        ],
        note=note,
    )
    extract_radius = max(2, int(np.rint(0.75 * diameter / downsample)))
    truth = [m["truth"] for m in test]
    result = {"topaz_downsample": downsample, "topaz_test_micrographs": len(test)}
    curves = {}

    seconds = _extract(
        "resnet16",
        work / "processed",
        test_names,
        radius=extract_radius,
        up_scale=downsample,
        out=work / "pretrained.txt",
        note=note,
    )
    picks = _read_picks(work / "pretrained.txt", test_names, box)
    evaluation = evaluate_picks(picks, truth, radius=radius)
    curves["Topaz pretrained (resnet16)"] = evaluation
    result.update(
        topaz_pretrained_ap=evaluation.average_precision,
        topaz_pretrained_s_per_micrograph=seconds / len(test),
        topaz_pretrained_best_f2={"precision": evaluation.precision, "recall": evaluation.recall},
    )
    note(f"Topaz pretrained AP {evaluation.average_precision:.3f}")

    # Train on the same training picks (positives only, PU learning as Topaz intends).
    lines = ["image_name\tx_coord\ty_coord"]
    for index, name in enumerate(train_names):
        for y, x in positives[index].centres / downsample:
            lines.append(f"{name}\t{x:.0f}\t{y:.0f}")
    (work / "targets.txt").write_text("\n".join(lines) + "\n")
    train_dir = work / "processed_train"
    train_dir.mkdir()
    for name in train_names:
        shutil.copy(work / "processed" / f"{name}.mrc", train_dir / f"{name}.mrc")
    per_micrograph = int(np.ceil(np.mean([len(m["truth"]) for m in train])))
    # CPU: one Topaz epoch of 100 minibatches of 256 took ~6 min here; keep training small.
    epochs, epoch_size, minibatch = training or ((2, 40, 64) if quick else (5, 200, 128))
    (work / "model").mkdir()
    start = time.perf_counter()
    _run(
        [
            "train",
            "--train-images",
            train_dir,
            "--train-targets",
            work / "targets.txt",
            "-n",
            per_micrograph,
            "-r",
            3,
            "--num-epochs",
            epochs,
            "--epoch-size",
            epoch_size,
            "--minibatch-size",
            minibatch,
            "-d",
            "-1",
            "--num-workers",
            0,
            "--save-prefix",
            work / "model" / "topaz",
            "-o",
            work / "train_log.txt",
        ],
        note=note,
    )
    train_seconds = time.perf_counter() - start
    model = work / "model" / f"topaz_epoch{epochs}.sav"
    _extract(
        model,
        work / "processed",
        test_names,
        radius=extract_radius,
        up_scale=downsample,
        out=work / "trained.txt",
        note=note,
    )
    picks = _read_picks(work / "trained.txt", test_names, box)
    evaluation = evaluate_picks(picks, truth, radius=radius)
    curves["Topaz trained (resnet8)"] = evaluation
    result.update(
        topaz_trained_ap=evaluation.average_precision,
        topaz_trained_best_f2={"precision": evaluation.precision, "recall": evaluation.recall},
        topaz_train={
            "micrographs": len(train_names),
            "epochs": epochs,
            "epoch_size": epoch_size,
            "minibatch_size": minibatch,
            "seconds": train_seconds,
            "expected_particles_per_micrograph": per_micrograph,
        },
    )
    note(f"Topaz trained AP {evaluation.average_precision:.3f}")
    result["_curves"] = curves
    return result


def time_pretrained(micrograph: np.ndarray, *, downsample: int, work: Path, note):
    """Seconds for Topaz pretrained resnet16 to preprocess (downsample) and pick one image."""
    if work.exists():
        shutil.rmtree(work)
    _write_images(work / "raw", {"speed": micrograph})
    preprocess = _run(
        [
            "preprocess",
            "-s",
            downsample,
            "-d",
            "-1",
            "-o",
            work / "processed",
            work / "raw" / "speed.mrc",
        ],
        note=note,
    )
    extract = _extract(
        "resnet16",
        work / "processed",
        ["speed"],
        radius=10,
        up_scale=downsample,
        out=work / "picks.txt",
        note=note,
        threshold=-6,
    )
    shape = micrograph.shape
    return preprocess + extract, (
        f"topaz preprocess -s {downsample} ({preprocess:.1f} s) + extract resnet16 on the "
        f"{shape[0] // downsample}² result ({extract:.1f} s), CPU, including model loading"
    )
