"""The picking workflow end to end on small micrographs made on the spot."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["run_demo"]


def run_demo(out_dir: Path, *, quick: bool = True) -> dict:
    """Train a DeepEM picker on small synthetic micrographs, pick, evaluate, plot the PR curve.

    Micrographs of ring-shaped particles and blob decoys in noise
    (:func:`cryoml.picking.toy_micrographs`): train on some, choose the F2 threshold on others,
    pick and evaluate on the rest (dense scorer), compare with template matching, write the PR
    curves (``pr_curve.png``) and the picks of one micrograph as EMAN2 ``.box`` and RELION
    ``.star``. Quick mode takes well under a minute on two CPU cores.

    Parameters
    ----------
    out_dir : Path
        Output folder (created).
    quick : bool, default True
        Fewer and smaller micrographs, fewer epochs.

    Returns
    -------
    dict
        Held-out accuracy, F2 threshold, precision, recall, AP (DeepEM and template matching),
        seconds, and the files written.
    """
    from cryoml import io
    from cryoml.picking import (
        ParticlePicker,
        TemplateMatcher,
        evaluate_picks,
        match_radius,
        plot_precision_recall,
        toy_micrographs,
    )

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_train, n_calibrate, n_test = (6, 2, 4) if quick else (16, 4, 8)
    micrographs = toy_micrographs(
        n_train + n_calibrate + n_test,
        shape=(256, 256) if quick else (512, 512),
        box_size=48,
        n_particles=12 if quick else 40,
        snr=0.3,
        random_state=0,
    )
    train = micrographs[:n_train]
    calibrate = micrographs[n_train : n_train + n_calibrate]
    test = micrographs[n_train + n_calibrate :]
    radius = match_radius(train[0].diameter)

    picker = ParticlePicker(
        48,
        recipe="modern",
        epochs=8 if quick else 20,
        particle_diameter=train[0].diameter,
        random_state=0,
        progress=False,
    )
    picker.fit([m.image for m in train], [m.particles for m in train])
    picker.calibrate_threshold([m.image for m in calibrate], [m.particles for m in calibrate])
    candidates = [picker.candidates(m.image) for m in test]
    truth = [m.particles for m in test]
    deepem = evaluate_picks(candidates, truth, radius=radius, threshold=picker.threshold_)

    matcher = TemplateMatcher(48, particle_diameter=train[0].diameter)
    matcher.fit([m.image for m in train], [m.particles for m in train])
    matcher.calibrate_threshold([m.image for m in calibrate], [m.particles for m in calibrate])
    template = evaluate_picks(
        [matcher.candidates(m.image) for m in test],
        truth,
        radius=radius,
        threshold=matcher.threshold_,
    )
    plot_path = plot_precision_recall(
        {"DeepEM (dense)": deepem, "template matching": template},
        out_dir / "pr_curve.png",
        title="Picking on toy micrographs",
        overwrite=True,
    )
    picks = picker.pick(test[0].image)
    box_path = io.write_coordinates(out_dir / "test0.box", picks, overwrite=True)
    star_path = io.write_coordinates(
        out_dir / "test0.star", picks, micrograph_name="test0.mrc", overwrite=True
    )
    io.write_mrc(out_dir / "test0.mrc", test[0].image, voxel_size=1.0, overwrite=True)
    return {
        "validation_accuracy": picker.validation_accuracy_,
        "threshold_f2": picker.threshold_,
        "precision": deepem.precision,
        "recall": deepem.recall,
        "ap": deepem.average_precision,
        "template_matching_ap": template.average_precision,
        "match_radius_px": radius,
        "seconds": time.perf_counter() - start,
        "files": [str(p) for p in (plot_path, box_path, star_path)],
    }
