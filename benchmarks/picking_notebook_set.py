"""DeepEM against Topaz on notebook 04's QUICK micrographs: same boxes, test set and metric.

Simulated KLH micrographs (14 micrographs of 512² at 14 Å/px, SNR 0.1, seed 0: 8 to train, 2 to
calibrate DeepEM's F2 threshold, 4 to test), DeepEM as the notebook trains it (8 epochs, Adam
3e-3, one hard-negative round; batch 16, where the notebook now uses 32 to keep its 2-minute
budget: AP 0.741 against 0.768 in one run each), Topaz pretrained (resnet16) and Topaz trained
on the same good particles (PU learning, 4 epochs × 100 minibatches of 64, on the CPU). AP over all
candidates on the 4 test micrographs, picks right within half a diameter. Needs the Topaz
virtualenv (``bash benchmarks/topaz_env.sh``). Prints one JSON object (~6 min on 2 CPU cores).

    .venv/bin/python benchmarks/picking_notebook_set.py [--no-deepem] [--no-topaz]
        [--dense-step N | --score-step N] [--seeds S ...] [--hard-negative-rounds N] [--ensemble N]

``--dense-step`` sets DeepEM's dense grid step (default: the network's stride, 8);
``--score-step`` sets it only after training (mining stays on the stride grid);
``--seeds`` trains DeepEM once per seed (default 0) and reports each;
``--hard-negative-rounds`` sets its mining rounds (default 1); ``--ensemble N`` trains N networks
per seed (seeds s … s+N−1) and averages their score maps (``PickerEnsemble``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _topaz

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-deepem", action="store_true")
    parser.add_argument("--no-topaz", action="store_true")
    parser.add_argument("--dense-step", type=int, default=None)
    parser.add_argument("--score-step", type=int, default=None,
                        help="dense step set after training: the hard-negative round mines "
                        "on the stride grid, calibration and test use this step")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--ensemble", type=int, default=1,
                        help="train this many networks per seed (seeds s, s+1, ...) and "
                        "average their score maps (PickerEnsemble; default 1: one network)")
    parser.add_argument("--hard-negative-rounds", type=int, default=1,
                        help="DeepEM's hard-negative mining rounds (default 1, the notebook's)")
    args = parser.parse_args()
    from cryoml import picking
    from cryoml.simulate import simulate_micrographs

    start = time.perf_counter()

    def note(message):
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", file=sys.stderr, flush=True)

    micrographs = simulate_micrographs(14, shape=(512, 512), pixel_size=14.0, particle="klh",
                                       snr=0.1, n_particles=14, random_state=0)
    train, calibrate, test = micrographs[:8], micrographs[8:10], micrographs[10:]
    box = train[0].box_size
    diameter = train[0].params["particle_diameter_A"] / 14.0
    radius = picking.match_radius(diameter)
    result = {}
    if not args.no_deepem:
        for seed in args.seeds:
            picker = picking.ParticlePicker(box, recipe="modern", epochs=8, batch_size=16,
                                            learning_rate=3e-3, particle_diameter=diameter,
                                            hard_negative_rounds=args.hard_negative_rounds,
                                            dense_step=args.dense_step,
                                            random_state=seed, progress=False)
            if args.ensemble > 1:
                picker = picking.PickerEnsemble.train(
                    picker, [m.image for m in train], [m.particles for m in train],
                    n_models=args.ensemble)
                members = picker.pickers_
            else:
                picker.fit([m.image for m in train], [m.particles for m in train])
                members = [picker]
            if args.score_step is not None:
                for member in members:
                    member.dense_step = args.score_step
            picker.calibrate_threshold([m.image for m in calibrate],
                                       [m.particles for m in calibrate])
            evaluation = picking.evaluate_picks(
                [picker.candidates(m.image) for m in test], [m.particles for m in test],
                radius=radius, threshold=picker.threshold_)
            key = "deepem" if len(args.seeds) == 1 else f"deepem_seed{seed}"
            result[key] = {"ap": evaluation.average_precision,
                           "precision": evaluation.precision, "recall": evaluation.recall,
                           "threshold": picker.threshold_,
                           "heldout_balanced_accuracy": [m.validation_accuracy_
                                                         for m in members],
                           "networks": len(members),
                           "dense_step": members[0].dense_step or members[0].architecture_.stride}
            note(f"DeepEM seed {seed} AP {evaluation.average_precision:.3f}")
    if args.no_topaz:
        result["seconds"] = time.perf_counter() - start
        print(json.dumps(result, indent=1, default=float))
        return 0

    def as_dict(m):
        return {"image": m.image.data, "truth": m.particles, "box": box}

    topaz = _topaz.run_topaz_baseline(
        train=[as_dict(m) for m in train], calibrate=None, test=[as_dict(m) for m in test],
        positives=[m.particles for m in train], radius=radius, diameter=diameter, quick=True,
        work=ROOT / "outputs" / "benchmarks" / "topaz_notebook_set", note=note,
        training=(4, 100, 64))
    topaz.pop("_curves", None)
    result["topaz"] = topaz
    result["note"] = ("Topaz's precision/recall are at its best F2 on the test micrographs; "
                      "DeepEM's at the F2 threshold chosen on the calibration micrographs.")
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
