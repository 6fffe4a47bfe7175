"""DeepEM particle picking on simulated micrographs, against template matching and Topaz.

Prints one JSON object with ``ap``, ``threshold_f2``, ``precision``, ``recall``,
``template_matching_ap``, ``topaz_pretrained_ap``, ``topaz_trained_ap``, ``training_size_ap``
(keyed by positive-box count), ``snr_ap`` (keyed by SNR) and extras; PNGs go to
outputs/benchmarks/.

Data (cryoml.simulate.simulate_micrographs):

* KLH-like: the built-in KLH cylinder (top and side views), simulated at 4.4 Å/px on
  1024² fields (SNR defined there, the simulator's definition: variance of the CTF-filtered
  particle signal in good boxes over noise variance), then Fourier-binned ×2 to 8.8 Å/px
  (512², box 68 px: the paper's 272-px box at 2.2 Å/px, binned ×4). Overlapping pairs,
  aggregates, a carbon edge and ice contamination are included; only unflagged particles are
  truth, so picking a flagged one counts as a false positive.
* 70S ribosome (shared map 4v4r) for the SNR series, simulated at 3 Å/px on 1024², binned ×2.

Protocol: micrographs are split into training, calibration (F2 threshold) and test sets.
DeepEM trains on N positive + N negative boxes (N = 800 for the headline; half of the
negatives are flagged particles of the training micrographs — overlapping, aggregated, on
carbon or ice, as a person assembling a negative set would include — when there are enough,
the rest random background), ×4 rotations, "modern" recipe; picks are scored densely. Picks
match truth within 0.5 × particle diameter. AP is the area under the PR curve of all
candidate peaks on the test micrographs.

* Crowded toy fields (:func:`cryoml.picking.toy_micrographs` with ``touching_fraction=0.5``):
  ring particles, half of them touching a neighbour, noise-free and at SNR 0.5; DeepEM,
  template matching (and Topaz when its virtualenv exists) with the recall ceiling.

DeepEM is also re-trained with one round of hard-negative mining on its training micrographs;
with ``--ensemble N``, N−1 more networks are trained and mined the same way from the next seeds
and the N score maps averaged (``PickerEnsemble``).

Usage: .venv/bin/python benchmarks/picking.py [--quick] [--no-topaz] [--no-series]
    [--dense-step N] [--ensemble N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FLAG_NAMES = ("overlapped", "aggregated", "on_carbon", "on_contamination")


def note(message: str) -> None:
    print(f"[picking {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def simulate(particle, n, *, pixel_size, snr, bin_factor, n_particles, seed, shape=(1024, 1024)):
    """Simulated micrographs, binned; dicts with image, truth, flagged centres, diameter."""
    from cryoml.io import Particles
    from cryoml.preprocess import bin_image
    from cryoml.simulate import simulate_micrographs

    out = []
    rng = np.random.default_rng(seed)
    for micrograph in simulate_micrographs(
        n,
        shape=shape,
        pixel_size=pixel_size,
        particle=particle,
        snr=snr,
        random_state=rng,
        n_particles=n_particles,
    ):
        image = bin_image(micrograph.image.data, bin_factor).astype(np.float32)
        box = int(round(micrograph.box_size / bin_factor / 2) * 2)
        good = micrograph.particles.centres / bin_factor
        every = micrograph.all_particles.centres / bin_factor
        out.append(
            {
                "image": image,
                "truth": Particles(good, box_size=box),
                "all": every,
                "flags": {k: np.asarray(micrograph.flags[k]) for k in FLAG_NAMES},
                "box": box,
                "diameter": micrograph.params["particle_diameter_A"] / pixel_size / bin_factor,
                "pixel_size": pixel_size * bin_factor,
            }
        )
    return out


def take_positives(micrographs, n_positive):
    """Per-micrograph truth subsets holding n_positive particles in all (in order)."""
    from cryoml.io import Particles

    chosen, left = [], n_positive
    for micrograph in micrographs:
        truth = micrograph["truth"]
        count = min(left, len(truth))
        chosen.append(Particles(truth.centres[:count], box_size=truth.box_size))
        left -= count
    return chosen, n_positive - left


def negatives_for(micrographs, positives, n_negative, *, seed, diameter):
    """Half flagged particles (when available), the rest random background, per micrograph."""
    from cryoml.picking import sample_negatives

    rng = np.random.default_rng(seed)
    flagged = []
    for index, micrograph in enumerate(micrographs):
        bad = np.zeros(len(micrograph["all"]), bool)
        for values in micrograph["flags"].values():
            bad |= values
        flagged += [(index, c) for c in micrograph["all"][bad]]
    n_flagged = min(len(flagged), n_negative // 2)
    picked = [flagged[i] for i in rng.permutation(len(flagged))[:n_flagged]]
    per_mic = [[] for _ in micrographs]
    for index, centre in picked:
        per_mic[index].append(centre)
    n_random = n_negative - n_flagged
    used = [i for i, p in enumerate(positives) if len(p)] or list(range(len(micrographs)))
    share = np.full(len(micrographs), 0)
    for k in range(n_random):
        share[used[k % len(used)]] += 1
    result = []
    for index, micrograph in enumerate(micrographs):
        random = sample_negatives(
            micrograph["image"].shape,
            micrograph["all"],
            int(share[index]),
            box_size=micrograph["box"],
            min_distance=diameter,
            random_state=rng,
        )
        own = np.asarray(per_mic[index], float).reshape(-1, 2)
        result.append(np.concatenate([own, random]))
    return result


def train_picker(train, n_positive, *, epochs, seed, diameter, box, dense_step=None):
    from cryoml.picking import ParticlePicker

    positives, got = take_positives(train, n_positive)
    negatives = negatives_for(train, positives, got, seed=seed, diameter=diameter)
    keep = [i for i, p in enumerate(positives) if len(p) or len(negatives[i])]
    picker = ParticlePicker(
        box,
        recipe="modern",
        epochs=epochs,
        particle_diameter=diameter,
        dense_step=dense_step,
        random_state=seed,
        progress=False,
    )
    picker.fit(
        [train[i]["image"] for i in keep],
        [positives[i] for i in keep],
        [negatives[i] for i in keep],
    )
    return picker, got


def flagged_picked(micrographs, picks, radius):
    """Share of flagged particles (per flag) with a pick within ``radius``."""
    from scipy.spatial import cKDTree

    hit = {k: 0 for k in FLAG_NAMES}
    total = {k: 0 for k in FLAG_NAMES}
    for micrograph, picked in zip(micrographs, picks, strict=True):
        near = np.zeros(len(micrograph["all"]), bool)
        if len(picked) and len(micrograph["all"]):
            distance, _ = cKDTree(picked.centres).query(micrograph["all"])
            near = distance <= radius
        for name in FLAG_NAMES:
            mask = micrograph["flags"][name]
            total[name] += int(mask.sum())
            hit[name] += int((mask & near).sum())
    return {k: (hit[k] / total[k] if total[k] else None) for k in FLAG_NAMES} | {"counts": total}


def evaluate_method(name, candidates, threshold, test, radius):
    from cryoml.picking import evaluate_picks

    evaluation = evaluate_picks(
        candidates, [m["truth"] for m in test], radius=radius, threshold=threshold
    )
    above = [c.subset(c.scores >= threshold) for c in candidates]
    note(
        f"{name}: AP {evaluation.average_precision:.3f}, P {evaluation.precision:.3f}, "
        f"R {evaluation.recall:.3f} at {threshold:.3f}"
    )
    return evaluation, flagged_picked(test, above, radius)


def crowded_set(*, quick, seed, out, topaz, dense_step=None):
    """Crowded toy fields (half the particles touching a neighbour), noise-free and noisy.

    Ring particles with blob decoys (:func:`cryoml.picking.toy_micrographs`), 48-px boxes,
    diameter 28.8 px, 40 particles on 384² (or 60 on 512²). DeepEM and template matching are
    trained on the training fields, the threshold is chosen on calibration fields, and AP,
    precision, recall and the recall ceiling (max recall over all thresholds) are measured on
    test fields.
    """
    from scipy.spatial import cKDTree

    from cryoml.picking import (
        ParticlePicker,
        TemplateMatcher,
        evaluate_picks,
        match_radius,
        plot_precision_recall,
        toy_micrographs,
    )

    n_train, n_cal, n_test = (6, 2, 3) if quick else (16, 4, 8)
    shape, n_particles = ((384, 384), 40) if quick else ((512, 512), 60)
    results, curves = {}, {}
    for label, snr in (("noise_free", 1e6), ("snr_0.5", 0.5)):
        t0 = time.perf_counter()
        fields = toy_micrographs(
            n_train + n_cal + n_test,
            shape=shape,
            box_size=48,
            n_particles=n_particles,
            n_decoys=4,
            snr=snr,
            touching_fraction=0.5,
            random_state=seed + 7,
        )
        train, cal, test = fields[:n_train], fields[n_train : n_train + n_cal], fields[-n_test:]
        diameter = fields[0].diameter
        radius = match_radius(diameter)
        touching = []
        for field in test:
            centres = field.particles.centres
            distance, _ = cKDTree(centres).query(centres, k=2)
            touching.append(np.mean(distance[:, 1] <= 1.01 * diameter))
        picker = ParticlePicker(
            48,
            epochs=10 if quick else 20,
            particle_diameter=diameter,
            dense_step=dense_step,
            random_state=seed,
            progress=False,
        )
        picker.fit([f.image for f in train], [f.particles for f in train])
        picker.calibrate_threshold([f.image for f in cal], [f.particles for f in cal])
        truth = [f.particles for f in test]
        deepem = evaluate_picks(
            [picker.candidates(f.image) for f in test],
            truth,
            radius=radius,
            threshold=picker.threshold_,
        )
        matcher = TemplateMatcher(48, particle_diameter=diameter)
        matcher.fit([f.image for f in train], [f.particles for f in train])
        matcher.calibrate_threshold([f.image for f in cal], [f.particles for f in cal])
        template = evaluate_picks(
            [matcher.candidates(f.image) for f in test],
            truth,
            radius=radius,
            threshold=matcher.threshold_,
        )
        entry = {
            "touching_fraction": float(np.mean(touching)),
            "n_true": deepem.n_true,
            "validation_accuracy": picker.validation_accuracy_,
            "deepem": {
                "ap": deepem.average_precision,
                "precision": deepem.precision,
                "recall": deepem.recall,
                "threshold_f2": picker.threshold_,
                "recall_ceiling": float(np.max(deepem.curve_recall, initial=0.0)),
            },
            "template_matching": {
                "ap": template.average_precision,
                "precision": template.precision,
                "recall": template.recall,
                "recall_ceiling": float(np.max(template.curve_recall, initial=0.0)),
            },
            "min_distance_px": picker._min_distance(),
        }
        if topaz:
            try:
                import _topaz

                boxed = [{"image": f.image, "truth": f.particles, "box": 48} for f in train + test]
                found = _topaz.run_topaz_baseline(
                    train=boxed[:n_train],
                    calibrate=[],
                    test=boxed[n_train:],
                    positives=[f.particles for f in train],
                    radius=radius,
                    diameter=diameter,
                    quick=quick,
                    work=out / f"topaz_crowded_{label}",
                    note=note,
                )
                for name, curve in found.pop("_curves", {}).items():
                    curves[f"{name}, {label}"] = curve
                entry["topaz"] = found
            except Exception as error:  # the baseline must not sink the benchmark
                entry["topaz"] = {"note": f"Topaz failed: {type(error).__name__}: {error}"}
        results[label] = entry
        curves[f"DeepEM, {label}"] = deepem
        curves[f"template matching, {label}"] = template
        note(
            f"crowded {label}: touching {entry['touching_fraction']:.2f}, DeepEM AP "
            f"{deepem.average_precision:.3f} P {deepem.precision:.3f} R {deepem.recall:.3f} "
            f"ceiling {entry['deepem']['recall_ceiling']:.3f}; template AP "
            f"{template.average_precision:.3f} ({time.perf_counter() - t0:.0f} s)"
        )
    plot_precision_recall(
        curves,
        out / "picking_pr_crowded.png",
        title="Crowded fields (half the particles touching)",
        overwrite=True,
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sets, fewer epochs (CPU)")
    parser.add_argument("--no-topaz", action="store_true", help="skip the Topaz baseline")
    parser.add_argument(
        "--no-series",
        action="store_true",
        help="skip the training-size and SNR series (KLH headline and crowded set only)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ensemble", type=int, default=1, metavar="N",
                        help="also an ensemble of N DeepEM networks (the headline one and N-1 "
                        "more, each with its hard-negative round), score maps averaged")
    parser.add_argument("--dense-step", type=int, default=None,
                        help="DeepEM's dense grid step in px (default: the network's stride)")
    parser.add_argument(
        "--klh-train",
        type=int,
        help="KLH training micrographs (default 70 quick, 105 full; ~12 good particles each, "
        "so 100 give the 1,200 positives of the largest training-size point)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    from cryoml.picking import (
        TemplateMatcher,
        evaluate_picks,
        match_radius,
        plot_precision_recall,
        split_picks,
    )

    quick = args.quick
    n_main = 800
    epochs = 10 if quick else 20
    series_epochs = 8 if quick else 20
    sizes = [100, 400, 800, 1200]
    klh_particles = 30
    # ~12 good particles each (the rest overlap, aggregate or lie on carbon or ice)
    n_klh_train = args.klh_train or (70 if quick else 105)
    n_klh_cal, n_klh_test = (6, 8) if quick else (8, 16)

    # --- KLH-like -----------------------------------------------------------------------
    t0 = time.perf_counter()
    klh = simulate(
        "klh",
        n_klh_train + n_klh_cal + n_klh_test,
        pixel_size=4.4,
        snr=0.01,
        bin_factor=2,
        n_particles=klh_particles,
        seed=args.seed,
    )
    train = klh[:n_klh_train]
    calibrate = klh[n_klh_train : n_klh_train + n_klh_cal]
    test = klh[n_klh_train + n_klh_cal :]
    box, diameter = klh[0]["box"], float(np.median([m["diameter"] for m in klh]))
    radius = match_radius(diameter)
    available = sum(len(m["truth"]) for m in train)
    note(
        f"KLH: {len(klh)} micrographs simulated in {time.perf_counter() - t0:.0f} s; box {box}, "
        f"diameter {diameter:.1f} px, {available} training positives available"
    )

    t0 = time.perf_counter()
    picker, n_used = train_picker(
        train, n_main, epochs=epochs, seed=args.seed, diameter=diameter, box=box,
        dense_step=args.dense_step,
    )
    train_seconds = time.perf_counter() - t0
    note(
        f"DeepEM trained on {n_used}+{n_used} boxes in {train_seconds:.0f} s, "
        f"held-out accuracy {picker.validation_accuracy_:.3f}"
    )
    picker.calibrate_threshold([m["image"] for m in calibrate], [m["truth"] for m in calibrate])
    t0 = time.perf_counter()
    candidates = [picker.candidates(m["image"]) for m in test]
    score_seconds = (time.perf_counter() - t0) / len(test)
    deepem, deepem_flags = evaluate_method("DeepEM", candidates, picker.threshold_, test, radius)

    # Recursive training: verified picks on the calibration micrographs join the training set.
    t0 = time.perf_counter()
    true_picks, false_picks = [], []
    for micrograph in calibrate:
        picks = picker.pick(micrograph["image"])
        good, bad = split_picks(picks, micrograph["truth"], radius=radius)
        true_picks.append(good)
        false_picks.append(bad)
    import copy

    recursive = copy.deepcopy(picker)
    recursive.epochs = 3 if quick else epochs // 2
    recursive.refit_recursive(
        [m["image"] for m in calibrate], true_picks, false_picks, warm_start=True
    )
    recursive.calibrate_threshold([m["image"] for m in calibrate], [m["truth"] for m in calibrate])
    recursive_eval, recursive_flags = evaluate_method(
        "DeepEM + recursive",
        [recursive.candidates(m["image"]) for m in test],
        recursive.threshold_,
        test,
        radius,
    )
    note(f"recursive round in {time.perf_counter() - t0:.0f} s")

    # Hard-negative mining (automated recursive training on the training micrographs: false
    # picks there, flagged particles included, become negatives).
    t0 = time.perf_counter()
    mined = copy.deepcopy(picker)
    mined.mine_hard_negatives([m["image"] for m in train], [m["truth"] for m in train], rounds=1)
    mined.calibrate_threshold([m["image"] for m in calibrate], [m["truth"] for m in calibrate])
    mined_candidates = [mined.candidates(m["image"]) for m in test]
    mined_eval, mined_flags = evaluate_method(
        "DeepEM + hard negatives",
        mined_candidates,
        mined.threshold_,
        test,
        radius,
    )
    note(
        f"hard-negative round ({mined.hard_negative_counts_[0]} boxes) in "
        f"{time.perf_counter() - t0:.0f} s"
    )

    # An ensemble: more networks trained and mined the same way from other seeds, their score
    # maps averaged with the one above (PickerEnsemble).
    ensemble = ensemble_eval = ensemble_flags = None
    if args.ensemble > 1:
        from cryoml.picking import PickerEnsemble

        t0 = time.perf_counter()
        members = [mined]
        for offset in range(1, args.ensemble):
            member, _ = train_picker(train, n_main, epochs=epochs, seed=args.seed + offset,
                                     diameter=diameter, box=box, dense_step=args.dense_step)
            member.mine_hard_negatives([m["image"] for m in train], [m["truth"] for m in train],
                                       rounds=1)
            members.append(member)
        ensemble = PickerEnsemble(members)
        ensemble.calibrate_threshold([m["image"] for m in calibrate],
                                     [m["truth"] for m in calibrate])
        ensemble_candidates = [ensemble.candidates(m["image"]) for m in test]
        ensemble_eval, ensemble_flags = evaluate_method(
            f"DeepEM + hard negatives, {args.ensemble} networks", ensemble_candidates,
            ensemble.threshold_, test, radius)
        note(f"ensemble of {args.ensemble} in {time.perf_counter() - t0:.0f} s")

    # Template matching on the same data.
    t0 = time.perf_counter()
    positives, _ = take_positives(train, n_main)
    matcher = TemplateMatcher(box, particle_diameter=diameter)
    matcher.fit([m["image"] for m in train], positives)
    matcher.calibrate_threshold([m["image"] for m in calibrate], [m["truth"] for m in calibrate])
    template, template_flags = evaluate_method(
        "template matching",
        [matcher.candidates(m["image"]) for m in test],
        matcher.threshold_,
        test,
        radius,
    )
    note(f"template matching in {time.perf_counter() - t0:.0f} s")

    # Topaz on (a few of) the same test micrographs.
    topaz = {"topaz_pretrained_ap": None, "topaz_trained_ap": None}
    topaz_curves = {}
    if args.no_topaz:
        topaz["topaz_note"] = "skipped (--no-topaz)"
    else:
        try:
            import _topaz

            n_topaz_test = 2 if quick else 4
            topaz = _topaz.run_topaz_baseline(
                train=train,
                calibrate=calibrate,
                test=test[:n_topaz_test],
                positives=positives,
                radius=radius,
                diameter=diameter,
                quick=quick,
                work=args.out / "topaz_work",
                note=note,
            )
            # Topaz ran on the first n_topaz_test micrographs only: say so in the legend.
            topaz_curves = {f"{name}, first {n_topaz_test} micrographs": curve
                            for name, curve in topaz.pop("_curves", {}).items()}
            # The same subset, for a like-for-like comparison: the first model, the one a
            # user ends with (after the hard-negative round) and the ensemble.
            truth = [m["truth"] for m in test[:n_topaz_test]]

            def subset_ap(found, threshold):
                return evaluate_picks(found[:n_topaz_test], truth, radius=radius,
                                      threshold=threshold).average_precision

            topaz["deepem_ap_on_topaz_subset"] = subset_ap(candidates, picker.threshold_)
            topaz["deepem_hard_negatives_ap_on_topaz_subset"] = subset_ap(mined_candidates,
                                                                          mined.threshold_)
            if ensemble is not None:
                topaz["deepem_ensemble_ap_on_topaz_subset"] = subset_ap(ensemble_candidates,
                                                                        ensemble.threshold_)
        except Exception as error:  # the baseline must not sink the benchmark
            topaz["topaz_note"] = f"Topaz failed: {type(error).__name__}: {error}"
            note(topaz["topaz_note"])

    curves = {
        "DeepEM": deepem,
        "DeepEM + recursive": recursive_eval,
        "DeepEM + hard negatives": mined_eval,
        **({f"DeepEM, {args.ensemble} networks": ensemble_eval} if ensemble else {}),
        "template matching": template,
        **topaz_curves,
    }
    plot_precision_recall(
        curves,
        args.out / "picking_pr_klh.png",
        title=f"KLH-like, SNR 0.01 ({len(test)} test micrographs)",
        overwrite=True,
    )

    crowded = crowded_set(quick=quick, seed=args.seed, out=args.out, topaz=not args.no_topaz,
                          dense_step=args.dense_step)

    # --- training-size series (KLH) -------------------------------------------------------
    size_eval = {}
    size_ap = {}
    for size in [] if args.no_series else sizes:
        if size == n_main:
            size_eval[str(size)] = deepem  # the headline model (n_used positives)
        elif size > available:
            size_ap[str(size)] = None
            note(f"training size {size}: only {available} positives simulated; skipped")
            continue
        else:
            t0 = time.perf_counter()
            model, _ = train_picker(
                train, size, epochs=series_epochs, seed=args.seed, diameter=diameter, box=box,
                dense_step=args.dense_step,
            )
            model.calibrate_threshold(
                [m["image"] for m in calibrate], [m["truth"] for m in calibrate]
            )
            size_eval[str(size)], _ = evaluate_method(
                f"DeepEM {size}+{size}",
                [model.candidates(m["image"]) for m in test],
                model.threshold_,
                test,
                radius,
            )
            note(f"size {size} in {time.perf_counter() - t0:.0f} s")
        size_ap[str(size)] = size_eval[str(size)].average_precision
    if size_eval:
        plot_precision_recall(
            {f"{k}+{k} boxes": v for k, v in size_eval.items()},
            args.out / "picking_pr_training_size.png",
            title="Training size (KLH-like)",
            overwrite=True,
        )

    # --- SNR series (70S ribosome) --------------------------------------------------------
    snr_eval, snr_ap, snr_details = {}, {}, {}
    n_snr_train, n_snr_cal, n_snr_test = (12, 3, 4) if quick else (30, 5, 8)
    n_snr_pos = 250 if quick else 600
    for snr in () if args.no_series else (0.01, 0.005, 0.001):
        t0 = time.perf_counter()
        ribo = simulate(
            "4v4r",
            n_snr_train + n_snr_cal + n_snr_test,
            pixel_size=3.0,
            snr=snr,
            bin_factor=2,
            n_particles=40,
            seed=args.seed + 1,
        )
        r_train = ribo[:n_snr_train]
        r_cal = ribo[n_snr_train : n_snr_train + n_snr_cal]
        r_test = ribo[n_snr_train + n_snr_cal :]
        r_diameter = float(np.median([m["diameter"] for m in ribo]))
        model, got = train_picker(
            r_train,
            n_snr_pos,
            epochs=series_epochs,
            seed=args.seed,
            diameter=r_diameter,
            box=ribo[0]["box"],
        )
        model.calibrate_threshold([m["image"] for m in r_cal], [m["truth"] for m in r_cal])
        evaluation, _ = evaluate_method(
            f"70S SNR {snr}",
            [model.candidates(m["image"]) for m in r_test],
            model.threshold_,
            r_test,
            match_radius(r_diameter),
        )
        snr_eval[f"SNR {snr}"] = evaluation
        snr_ap[str(snr)] = evaluation.average_precision
        snr_details[str(snr)] = {
            "precision": evaluation.precision,
            "recall": evaluation.recall,
            "threshold_f2": evaluation.threshold,
            "n_positive_boxes": got,
            "box": ribo[0]["box"],
            "validation_accuracy": model.validation_accuracy_,
        }
        note(f"SNR {snr} in {time.perf_counter() - t0:.0f} s")
    if snr_eval:
        plot_precision_recall(
            snr_eval, args.out / "picking_pr_snr.png", title="SNR (70S ribosome)", overwrite=True
        )

    result = {
        "ap": deepem.average_precision,
        "threshold_f2": picker.threshold_,
        "precision": deepem.precision,
        "recall": deepem.recall,
        "template_matching_ap": template.average_precision,
        "topaz_pretrained_ap": topaz.get("topaz_pretrained_ap"),
        "topaz_trained_ap": topaz.get("topaz_trained_ap"),
        "training_size_ap": size_ap,
        "snr_ap": snr_ap,
        # extras
        "targets": {"precision": 0.92, "recall": 0.92, "ap_vs_topaz": ">= Topaz AP"},
        "validation_accuracy": picker.validation_accuracy_,
        "n_training_boxes": {"positive": n_used, "negative": n_used},
        "recursive_training": {
            "ap": recursive_eval.average_precision,
            "precision": recursive_eval.precision,
            "recall": recursive_eval.recall,
            "threshold_f2": recursive.threshold_,
            "flagged_picked_fraction": recursive_flags,
        },
        "hard_negative_mining": {
            "ap": mined_eval.average_precision,
            "precision": mined_eval.precision,
            "recall": mined_eval.recall,
            "threshold_f2": mined.threshold_,
            "boxes_added": mined.hard_negative_counts_,
            "flagged_picked_fraction": mined_flags,
        },
        "ensemble": None if ensemble is None else {
            "networks": args.ensemble,
            "ap": ensemble_eval.average_precision,
            "precision": ensemble_eval.precision,
            "recall": ensemble_eval.recall,
            "threshold_f2": ensemble.threshold_,
            "flagged_picked_fraction": ensemble_flags,
        },
        "crowded": crowded,
        "template_matching": {
            "precision": template.precision,
            "recall": template.recall,
            "threshold_f2": matcher.threshold_,
            "flagged_picked_fraction": template_flags,
        },
        "flagged_picked_fraction": deepem_flags,
        "topaz": {k: v for k, v in topaz.items() if not k.startswith("topaz_") or "note" in k},
        "snr_series": snr_details,
        "match_radius_px": radius,
        "particle_diameter_px": diameter,
        "box_px": box,
        "pixel_size_A": klh[0]["pixel_size"],
        "data": "simulated KLH (4.4 Å/px, 1024², SNR 0.01, binned x2) and 70S (4v4r, 3 Å/px, "
        "binned x2)",
        "n_micrographs": {"train": len(train), "calibrate": len(calibrate), "test": len(test)},
        "epochs": epochs,
        "series_epochs": series_epochs,
        "dense_step": args.dense_step,  # None: the network's stride (70S SNR series: always)
        "deepem_train_seconds": train_seconds,
        "deepem_score_seconds_per_micrograph": score_seconds,
        "quick": quick,
        "seconds": time.perf_counter() - started,
        "hardware": "2-core CPU" if (os.cpu_count() or 0) <= 2 else f"{os.cpu_count()}-core CPU",
    }
    print(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
