"""Where GPU time goes: device-only compute vs host-fed calls vs file-to-file runs (JAX only).

For the three networks on one GPU, measures in one run:

* subtomogram inference (Inception3D, DSRF3D; 23 classes, 40³) per second at batch 256, 1024,
  2048, fp32 and bf16: through ``predict_on_batch`` on host arrays (``host_per_s``) and as a
  jitted ``stateless_call`` on an array already on the device (``device_per_s``: the ceiling);
* TomoSeg's fused engine on 4096² slices: host-fed, device-only, and the transfers; the two
  15×15 convolutions on their own; the whole ``apply_network`` from one memory-mapped MRC
  (16 slices) to another, with a cProfile of where the host time goes;
* DeepEM dense scoring of a 2048² micrograph (KLH preset): the compiled scorer, first call
  (compilation) and later calls, against the same computation run op by op (eager).

Needs ``KERAS_BACKEND=jax`` and a GPU: ``KERAS_BACKEND=jax python benchmarks/gpu_breakdown.py``.
Writes ``$OUT/probe.json`` (or /tmp/probe.json) and prints it.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def t_loop(fn, n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls, after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def jitted(model):
    """``model`` as one jitted function of an on-device batch (the compute ceiling)."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    other = [v.value for v in model.non_trainable_variables]
    call = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
    return lambda x: call(trainable, other, x)


def subtomo(results: dict) -> None:
    import jax
    import keras

    from cryoml.subtomo.models import build_model

    for precision in ("float32", "bfloat16"):
        keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
        for name in ("inception3d", "dsrf3d"):
            model = build_model(name, (40, 40, 40), 23)
            for batch in (256, 1024, 2048):
                rng = np.random.default_rng(0)
                x = rng.normal(size=(batch, 40, 40, 40, 1)).astype(np.float32)
                host = t_loop(lambda: np.asarray(model.predict_on_batch(x)), 5)  # noqa: B023
                forward, on_device = jitted(model), jax.device_put(x)
                device = t_loop(lambda: forward(on_device).block_until_ready(), 10)  # noqa: B023
                key = f"subtomo_{name}_{precision}_b{batch}"
                results[key] = {
                    "host_per_s": round(batch / host),
                    "device_per_s": round(batch / device),
                }
                print(key, results[key], flush=True)
    keras.config.set_dtype_policy("float32")


def tomoseg(results: dict) -> None:
    import jax

    from cryoml import io
    from cryoml.tomoseg import TomoSegmenter, apply_network
    from cryoml.tomoseg._apply import _FusedForward
    from cryoml.tomoseg.models import build_tomoseg_cnn

    net = build_tomoseg_cnn(n_filters=40)
    for precision in ("float32", "bfloat16"):
        fused = _FusedForward(net, 1.0, precision=precision)
        for batch in (1, 4):
            x = np.random.default_rng(0).normal(size=(batch, 4096, 4096, 1)).astype(np.float32)
            host = t_loop(lambda: fused(x), 3)  # noqa: B023
            forward, on_device = jitted(fused.model), jax.device_put(x)
            device = t_loop(lambda: forward(on_device).block_until_ready(), 5)  # noqa: B023
            put = t_loop(lambda: jax.device_put(x).block_until_ready(), 3)  # noqa: B023
            out = forward(on_device)
            get = t_loop(lambda: np.asarray(out), 3)  # noqa: B023
            key = f"tomoseg_{precision}_b{batch}"
            results[key] = {
                "host_s_per_slice": host / batch,
                "device_s_per_slice": device / batch,
                "put_s_per_slice": put / batch,
                "get_s_per_slice": get / batch,
            }
            print(key, results[key], flush=True)
    for precision in ("float32", "bfloat16"):
        dtype = jax.numpy.bfloat16 if precision == "bfloat16" else jax.numpy.float32
        k1, k2 = jax.numpy.ones((15, 15, 1, 40), dtype), jax.numpy.ones((15, 15, 40, 40), dtype)
        x1 = jax.numpy.ones((1, 4096, 4096, 1), dtype)
        x2 = jax.numpy.ones((1, 2048, 2048, 40), dtype)
        conv = jax.jit(
            lambda x, k: jax.lax.conv_general_dilated(
                x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        )
        results[f"conv1_{precision}"] = t_loop(lambda: conv(x1, k1).block_until_ready(), 5)  # noqa: B023
        results[f"conv2_{precision}"] = t_loop(lambda: conv(x2, k2).block_until_ready(), 5)  # noqa: B023
        print(precision, results[f"conv1_{precision}"], results[f"conv2_{precision}"], flush=True)

    segmenter = TomoSegmenter(feature="b", n_filters=40, progress=False)
    segmenter.model_, segmenter.amplitude_, segmenter.voxel_size_ = net, 1.0, 10.0
    segmenter.preprocess_, segmenter.n_neighbours_ = {}, 0
    segmenter.history_ = {"loss": [], "val_loss": [], "learning_rate": []}
    folder = tempfile.mkdtemp()
    volume = np.random.default_rng(0).normal(size=(16, 4096, 4096)).astype(np.float32)
    io.write_mrc(f"{folder}/t.mrc", volume, voxel_size=10.0)
    for precision in ("float32", "bfloat16"):
        options = {"overwrite": True, "progress": False, "precision": precision}
        apply_network(f"{folder}/t.mrc", segmenter, output=f"{folder}/w.mrc", **options)
        start = time.perf_counter()
        profile = cProfile.Profile()
        profile.enable()
        apply_network(f"{folder}/t.mrc", segmenter, output=f"{folder}/o.mrc", **options)
        profile.disable()
        results[f"apply_file_{precision}_s_per_slice"] = (time.perf_counter() - start) / 16
        print("apply file", precision, results[f"apply_file_{precision}_s_per_slice"], flush=True)
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


def deepem(results: dict) -> None:
    from cryoml.picking import PRESETS, build_deepem_cnn, dense_score_map
    from cryoml.picking._scoring import _dense_forward, _DenseParameters

    preset = PRESETS["klh"]
    model = build_deepem_cnn(preset.box_size, kernels=preset.kernels, pools=preset.pools)
    image = np.random.default_rng(0).normal(size=(2048, 2048)).astype(np.float32)
    start = time.perf_counter()
    dense_score_map(model, image)
    results["dense_first_s"] = time.perf_counter() - start
    results["dense_s"] = t_loop(lambda: dense_score_map(model, image), 5)
    params = _DenseParameters(model)
    crop = image[: 272 + 148 * 12, : 272 + 148 * 12]

    def eager():
        total = 0
        for k in range(4):
            turned = np.ascontiguousarray(np.rot90(crop, k))[None]
            total = total + np.rot90(np.asarray(_dense_forward(turned, params))[0], -k)
        return total

    results["dense_eager_s"] = t_loop(eager, 3)
    print("dense", results["dense_s"], results["dense_eager_s"], flush=True)


def main() -> None:
    import jax

    results: dict = {}
    subtomo(results)
    tomoseg(results)
    deepem(results)
    results["device"] = str(jax.devices()[0].device_kind)
    out = os.environ.get("OUT", "/tmp")
    with open(f"{out}/probe.json", "w") as handle:
        json.dump(results, handle, indent=1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
