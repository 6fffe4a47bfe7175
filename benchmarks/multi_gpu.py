"""Data-parallel training speed over 1, 2, ... GPUs (``keras.distribution``, KERAS_BACKEND=jax).

Trains :class:`cryoml.subtomo.SubtomoClassifier` (paper recipe, 40³ subtomograms, 23 classes)
inside :func:`cryoml.distribute.data_parallel` on the first ``n`` devices and times the epochs
after the first (which compiles). Two ways of scaling are measured in the same run:

* ``weak``: 64 subtomograms per device (global batch 64·n), what one would use to go faster;
* ``strong``: the paper's global batch of 64 split over the devices (same optimisation path).

Prints JSON: ``train_per_s`` → model → scaling → device count, and ``speedup`` (n devices over
one, same scaling). Data are random, so only speed is meaningful here.

    KERAS_BACKEND=jax python benchmarks/multi_gpu.py --devices 1 2
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


def epoch_rate(model: str, n_devices: int, batch: int, args) -> float:
    """Subtomograms per second over epochs 2..E of one training run."""
    import keras

    from cryoml.distribute import data_parallel, list_devices
    from cryoml.subtomo import SubtomoClassifier

    rng = np.random.default_rng(0)
    n_train = args.steps * batch
    x = rng.normal(scale=0.07, size=(n_train, args.box, args.box, args.box)).astype(np.float32)
    y = rng.integers(0, 23, size=n_train)
    ends: list[float] = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.perf_counter())

    devices = list_devices()[:n_devices]
    with data_parallel(devices):
        SubtomoClassifier(
            model=model, epochs=args.epochs, batch_size=batch, validation_fraction=0.0,
            normalize=False, random_state=0, progress=False,
        ).fit(x, y, class_names=[str(i) for i in range(23)], callbacks=[EpochClock()])
    return n_train * (len(ends) - 1) / (ends[-1] - ends[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", default=["inception3d", "dsrf3d"])
    parser.add_argument("--scaling", nargs="+", default=["weak", "strong"],
                        choices=("weak", "strong"))
    parser.add_argument("--steps", type=int, default=300,
                        help="batches per epoch (per-epoch overhead such as keeping the best "
                        "weights is amortised over them; 60 was too few, see RESULTS.md)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--box", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.box, args.steps, args.epochs, args.models = 16, 3, 2, ["dsrf3d"]

    from cryoml.distribute import list_devices

    available = len(list_devices())
    counts = [n for n in args.devices if n <= available]
    rates: dict = {}
    for model in args.models:
        for scaling in args.scaling:
            for n in counts:
                batch = 64 * n if scaling == "weak" else 64
                rate = epoch_rate(model, n, batch, args)
                rates.setdefault(model, {}).setdefault(scaling, {})[str(n)] = rate
                print(f"{model} {scaling} {n} device(s), batch {batch}: {rate:.0f}/s",
                      file=sys.stderr, flush=True)
    speedup = {
        model: {scaling: {n: value / by_n["1"] for n, value in by_n.items()}
                for scaling, by_n in by_scaling.items() if "1" in by_n}
        for model, by_scaling in rates.items()
    }
    emit({"train_per_s": rates, "speedup": speedup, "devices_available": available,
          "skipped_device_counts": [n for n in args.devices if n > available],
          "settings": {"steps": args.steps, "epochs": args.epochs, "box": args.box},
          "hardware": hardware()})


if __name__ == "__main__":
    main()
