"""How much the RIF-SVM baseline's implementation choices move its accuracy, on one set.

Xu et al. (2017) describe their baseline only as spherical-harmonic rotation-invariant features
(SHTools) with an RBF SVM from scikit-learn; feature scaling and SVM parameters are not given.
Our :class:`cryoml.subtomo.RIFSVM` lies above the paper's RIF-SVM column in all 15 Table 1
cells. This script scores, on one simulated set (22 complexes + empty, paper noise), the
library's tuned baseline beside the choices a scikit-learn user of 2017 could have made:
power (SHTools' spectrum) or amplitude features, standardised or not, ``C = 1`` with
``gamma="auto"`` (the 2017 default, 1 / n_features) or ``"scale"``, a linear SVM, and lower
spherical-harmonic degrees. Prints JSON (``accuracy`` → variant).

    .venv/bin/python benchmarks/rif_variants.py                 # 200 per class, ~2 min, 2 CPUs
    .venv/bin/python benchmarks/rif_variants.py --quick         # 40 per class, 24³
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import OUTPUTS, emit, hardware


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 per class, 24³ (CPU, seconds)")
    parser.add_argument("--n-per-class", type=int, help="subtomograms per class (half train)")
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--tilt", type=float, default=60.0)
    parser.add_argument("--noise-stage", choices=("paper", "detector"), default="paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=min(os.cpu_count() or 2, 16))
    args = parser.parse_args()

    import numpy as np
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    from cryoml.simulate import simulate_subtomograms
    from cryoml.subtomo import RIFSVM, XU2017_COMPLEXES, rotation_invariant_features

    box = 24 if args.quick else 40
    n_per_class = args.n_per_class or (40 if args.quick else 200)
    start = time.perf_counter()
    data = simulate_subtomograms(list(XU2017_COMPLEXES), n_per_class, snr=args.snr,
                                 tilt_range=args.tilt, box=box, voxel_size=9.2 * 40 / box,
                                 random_state=args.seed, n_jobs=args.n_jobs,
                                 noise_stage=args.noise_stage)
    order = np.random.default_rng(args.seed).permutation(len(data))
    train, test = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])
    volumes, labels = data.data, data.labels
    accuracy: dict[str, float] = {}

    def score(name, model, features):
        model.fit(features[train], labels[train])
        accuracy[name] = round(float((model.predict(features[test]) == labels[test]).mean()), 3)

    library = RIFSVM(random_state=args.seed, n_jobs=args.n_jobs).fit(volumes[train], labels[train])
    accuracy["library: amplitude, standardised, C and gamma tuned"] = round(
        float(library.evaluate(volumes[test], labels[test])["accuracy"]), 3)
    amplitude = rotation_invariant_features(volumes, max_degree=library.max_degree)
    power = amplitude**2  # SHTools' spectrum: power per degree and shell
    scaled = lambda svm: make_pipeline(StandardScaler(), svm)  # noqa: E731
    score("amplitude, standardised, C=1, gamma=scale", scaled(SVC(C=1.0, gamma="scale")), amplitude)
    score("power, standardised, C=1, gamma=auto", scaled(SVC(C=1.0, gamma="auto")), power)
    score("power, unscaled, C=1, gamma=auto (scikit-learn 2017 defaults)",
          SVC(C=1.0, gamma="auto"), power)
    score("amplitude, unscaled, C=1, gamma=auto", SVC(C=1.0, gamma="auto"), amplitude)
    score("amplitude, standardised, linear SVM", scaled(LinearSVC(C=1.0, max_iter=5000)), amplitude)
    for degree in (4, 6):
        features = rotation_invariant_features(volumes, max_degree=degree)
        score(f"amplitude, degree {degree}, standardised, C=10, gamma=1/n",
              scaled(SVC(C=10.0, gamma=1.0 / features.shape[1])), features)
    figures = {
        "accuracy": accuracy,
        "best_params": library.best_params_,
        "settings": {"n_per_class": n_per_class, "box": box, "snr": args.snr, "tilt": args.tilt,
                     "noise_stage": args.noise_stage, "seed": args.seed, "quick": args.quick},
        "seconds": round(time.perf_counter() - start, 1),
        "hardware": hardware(),
    }
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    path = OUTPUTS / f"rif_variants{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(figures, indent=1))
    emit(figures)


if __name__ == "__main__":
    main()
