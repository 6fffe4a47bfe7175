"""Two training diagnostics behind recipe choices: TomoSeg's Adam rate and subtomogram input scale.

* ``tomoseg``: one simulated cell tomogram (32×192×192 at 10 Å, SNR 0.1, ±60°), preprocessed
  as in notebook 01; 10 positive (membrane) and 60 negative tiles from the ground truth; a
  16-filter network trained with the ``eman2`` recipe (Adam) at several learning rates. Prints
  the loss history, the amplitude and the Dice of the whole output against the truth at
  thresholds 0.3 / 0.5 / 1.0, beside the loss of a network that outputs zeros,
  log(mean label²).
* ``subtomo``: 6 shared complexes + empty, 40 per class, 40³ at 9.2 Å, SNR 0.5, ±60°; half
  trains Inception3D with the ``paper`` recipe (SGD Nesterov, lr 0.01) for 8 epochs on
  (a) standardised subtomograms (unit s.d., cryoml's default), (b) the raw simulated volumes
  (as the authors' code fed them), (c) standardised and scaled to s.d. 0.05. Prints the test
  accuracy and the loss per epoch.

CPU-sized (minutes on 2 cores). ``python benchmarks/training_diagnostics.py tomoseg|subtomo``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, hardware


def tomoseg_rates(rates: list[float], epochs: int, seed: int = 0) -> dict:
    from cryoml import preprocess, tomoseg
    from cryoml.metrics import dice
    from cryoml.simulate import simulate_cell_tomogram
    from cryoml.widgets._state import cut_tiles

    cell = simulate_cell_tomogram(
        (32, 192, 192), voxel_size=10.0, snr=0.1, ribosome_density=40000, random_state=seed
    )
    clean, _ = preprocess.preprocess(
        cell.tomogram, voxel_size=10.0, lowpass=25.0, highpass=4000.0, clamp_sd=3.0
    )
    truth = cell.labels["membrane"] > 0
    pos, neg = tomoseg.sample_boxes(cell.labels["membrane"], 10, 60, tile_size=64,
                                    random_state=seed)
    masks = cut_tiles(cell.labels["membrane"], pos, tile_size=64)
    trainset = tomoseg.build_training_set(clean, pos, masks, neg, feature="membrane",
                                          voxel_size=10.0, random_state=seed)
    out = {
        "tiles": len(trainset),
        "zero_output_loss": float(np.log((trainset.labels**2).mean())),
        "runs": {},
    }
    for rate in rates:
        start = time.perf_counter()
        segmenter = tomoseg.TomoSegmenter(feature="membrane", recipe="eman2",
                                          learning_rate=rate, epochs=epochs, n_filters=16,
                                          random_state=seed, progress=False).fit(trainset)
        output = tomoseg.apply_network(clean, segmenter, voxel_size=10.0, progress=False)
        out["runs"][f"{rate:g}"] = {
            "loss": [round(v, 3) for v in segmenter.history_["loss"]],
            "val_loss": [round(v, 3) for v in segmenter.history_["val_loss"]],
            "amplitude": segmenter.amplitude_,
            "dice": {f"{t:g}": dice(output > t, truth) for t in (0.3, 0.5, 1.0)},
            "seconds": time.perf_counter() - start,
        }
    return out


def subtomo_scale(epochs: int, seed: int = 0) -> dict:
    from cryoml.simulate import simulate_subtomograms
    from cryoml.subtomo import SubtomoClassifier

    names = ["4v4r", "3j9i", "1bxn", "3cf3", "1qvr", "2cg9"]
    data = simulate_subtomograms(names, 40, snr=0.5, tilt_range=60, random_state=seed, n_jobs=2)
    x, y = data.data, data.labels
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = np.sort(order[: len(x) // 2]), np.sort(order[len(x) // 2 :])
    centred = x - x.mean(axis=(1, 2, 3), keepdims=True)
    variants = {
        "standardised": (x, True),
        "raw": (x, False),
        "standardised_x0.05": (
            (0.05 * centred / centred.std(axis=(1, 2, 3), keepdims=True)).astype(np.float32),
            False,
        ),
    }
    out = {"raw_sd": float(x.std()), "n": len(x), "classes": len(data.class_names), "runs": {}}
    for name, (values, normalize) in variants.items():
        start = time.perf_counter()
        classifier = SubtomoClassifier(model="inception3d", recipe="paper", epochs=epochs,
                                       normalize=normalize, random_state=seed, progress=False)
        classifier.fit(values[train], y[train])
        out["runs"][name] = {
            "accuracy": classifier.evaluate(values[test], y[test])["accuracy"],
            "loss": [round(v, 3) for v in classifier.history_["loss"]],
            "seconds": time.perf_counter() - start,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=("tomoseg", "subtomo"))
    parser.add_argument("--rates", type=float, nargs="+", default=[1e-3, 3e-4, 1e-4])
    parser.add_argument("--epochs", type=int, help="default: 40 (tomoseg), 8 (subtomo)")
    args = parser.parse_args()
    if args.which == "tomoseg":
        figures = tomoseg_rates(args.rates, args.epochs or 40)
    else:
        figures = subtomo_scale(args.epochs or 8)
    figures["hardware"] = hardware()
    emit(figures)


if __name__ == "__main__":
    main()
