"""Speed of Inception3D / DSRF3D training and inference (subtomograms/s) and of RIF features.

Measured on whatever Keras backend and device are active (``KERAS_BACKEND=jax`` on a GPU
machine; TensorFlow or torch on the CPU here), on random 40³ subtomograms, after a warm-up
(compilation excluded). Training: the paper recipe, batch 64; inference: batch 256 (``--batch``)
on arrays already in memory (``infer_per_s``), and through the library's batch reader with
per-subtomogram standardisation on the CPU (``infer_per_s_with_loading``).
RIF features: seconds per 40³ subtomogram on the CPU (NumPy/SciPy, one process).

    .venv/bin/python benchmarks/subtomo_speed.py --quick
    KERAS_BACKEND=jax python benchmarks/subtomo_speed.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, hardware

PAPER = {  # s per subtomogram on two GTX 1080 (training per epoch; inference)
    "train_s": {"inception3d": 0.0034, "dsrf3d": 0.0055},
    "infer_s": {"inception3d": 0.0015, "dsrf3d": 0.0017},
    "rif_s": 0.1,
}


def measure(model_name: str, n_train: int, n_infer: int, batch: int, n_classes: int = 23):
    import keras
    import numpy as np

    from cryoml.subtomo.models import build_model

    rng = np.random.default_rng(0)
    model = build_model(model_name, (40, 40, 40), n_classes)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy")
    x = rng.normal(size=(n_train, 40, 40, 40, 1)).astype(np.float32)
    y = np.eye(n_classes, dtype=np.float32)[rng.integers(n_classes, size=n_train)]
    model.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)  # compile
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    train_per_s = n_train / (time.perf_counter() - start)
    xi = rng.normal(size=(batch, 40, 40, 40, 1)).astype(np.float32)
    np.asarray(model.predict_on_batch(xi))  # compile
    n_batches = max(1, n_infer // batch)
    start = time.perf_counter()
    for _ in range(n_batches):
        out = model.predict_on_batch(xi)
    np.asarray(out)
    infer_per_s = n_batches * batch / (time.perf_counter() - start)
    # The library path (cryoml.subtomo.SubtomoClassifier.transform): raw batches read on the
    # CPU, standardised inside the compiled network call.
    from cryoml.subtomo._training import predict_batches

    volumes = rng.normal(size=(min(n_batches, 40) * batch, 40, 40, 40)).astype(np.float32)
    start = time.perf_counter()
    predict_batches(model, volumes, batch_size=batch)
    library_per_s = len(volumes) / (time.perf_counter() - start)
    return train_per_s, infer_per_s, library_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few subtomograms (CPU)")
    parser.add_argument("--batch", type=int, default=256, help="inference batch size")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: Keras mixed precision for the networks")
    args = parser.parse_args()
    if args.precision == "bfloat16":
        import keras

        keras.config.set_dtype_policy("mixed_bfloat16")
    import numpy as np

    from cryoml.subtomo import rotation_invariant_features

    n_train, n_infer = (256, 512) if args.quick else (20_480, 51_200)
    figures = {"train_per_s": {}, "infer_per_s": {}, "infer_per_s_with_loading": {}}
    for name in ("inception3d", "dsrf3d"):
        train, infer, library = measure(name, n_train, n_infer, args.batch)
        figures["train_per_s"][name] = round(train, 1)
        figures["infer_per_s"][name] = round(infer, 1)
        figures["infer_per_s_with_loading"][name] = round(library, 1)
    volumes = np.random.default_rng(1).normal(size=(200, 40, 40, 40)).astype(np.float32)
    rotation_invariant_features(volumes[:8])  # build the plan
    start = time.perf_counter()
    rotation_invariant_features(volumes)
    figures["rif_s_per_subtomo"] = (time.perf_counter() - start) / len(volumes)
    figures["hardware"] = hardware()
    figures["paper"] = {
        "train_per_s": {k: round(1 / v, 1) for k, v in PAPER["train_s"].items()},
        "infer_per_s": {k: round(1 / v, 1) for k, v in PAPER["infer_s"].items()},
        "rif_s_per_subtomo": PAPER["rif_s"],
    }
    figures["targets"] = {"infer_per_s": 20000, "train_per_s": 5000, "rif_s_per_subtomo": 0.01}
    figures["settings"] = {"n_train": n_train, "n_infer": n_infer, "batch_infer": args.batch,
                           "batch_train": 64, "box": 40, "quick": args.quick,
                           "precision": args.precision}
    emit(figures)


if __name__ == "__main__":
    main()
