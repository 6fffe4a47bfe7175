"""Where GPU time goes (issue 18): TomoSeg FFT vs direct engines, file to file against the
disk floor, and subtomogram inference host-fed vs on the device (JAX).

One run, one JSON (``$OUT/probe.json``, or /tmp/probe.json, and printed last):

* ``tomoseg_device``: per 4096² slice of device compute (input already on the device,
  ``block_until_ready``) for the direct fused engine (fp32, bf16) and the device FFT engine
  (FFT sizes 128/256/512, batches 1/2/4), same run, same weights; their agreement (max
  difference over max, on 4096² and at 512² with float32 "highest" matmul precision, since the
  GPU's default float32 convolution uses TF32); extrapolated to 4096×4096×1024.
* ``tomoseg_files``: ``apply_network`` from a memory-mapped MRC of ``--slices`` 4096² float32
  slices (default 64) to an MRC, for the FFT engine with float32 / float16 / uint8 output and
  the fused bf16 engine; the disk floor (the same reads and writes with no compute: slices read
  from the input map, the same bytes written to an output map and flushed, batch by batch, in
  a reader thread and a writer thread) for each output type; the ratio of each run to its
  floor; all extrapolated to 1,024 slices. The input's pages are dropped from the page cache
  (``posix_fadvise``) before each run so reads come from the disk.
* ``subtomo``: Inception3D and DSRF3D (23 classes, 40³, raw volumes with a scale and an
  offset per subtomogram): on-device ceiling (jitted, standardised input on the device), the
  same with the standardisation in the call (raw input on the device); the library path
  (``predict_batches``: raw float32 read, a view for consecutive subtomograms, prefetched and
  double-buffered ``device_put``, standardised inside the compiled call) with its ratio to the
  ceiling, beside the old numbers: session 7's path (standardised on the host, then the same
  pipelined feed in bfloat16 when the network computes in it), the raw-input path
  (``normalize=False``), the old batch-by-batch loop and ``predict_on_batch`` on host arrays;
  the agreement of the new and old outputs; the pieces (host feed old and new; transfer:
  ``device_put`` of float32 and bfloat16 batches; host bfloat16 cast; network).

``--compare-reader`` adds the uint8 run with the slice reader of sessions 2–12 (stack, then
``np.pad``). ``--quick`` shrinks everything (256² slices, 4 slices, small batches) to check the
script on a CPU. ``--sections`` picks sections (default: tomoseg_device tomoseg_files
subtomo).

    KERAS_BACKEND=jax python benchmarks/gpu_breakdown.py            # one H200, ~5 min
    KERAS_BACKEND=jax python benchmarks/gpu_breakdown.py --quick    # CPU smoke test
    KERAS_BACKEND=jax python benchmarks/gpu_breakdown.py --sections subtomo   # inference only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

T0 = time.perf_counter()


def log(*args) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s]", *args, flush=True)


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


def make_segmenter():
    import keras

    from cryoml.tomoseg import TomoSegmenter
    from cryoml.tomoseg.models import build_tomoseg_cnn

    keras.utils.set_random_seed(0)
    net = build_tomoseg_cnn(n_filters=40)
    rng = np.random.default_rng(1)
    for weight in net.weights:  # non-zero biases, so that the ReLUs cut
        if "bias" in weight.path:
            weight.assign(rng.normal(0, 0.02, weight.shape).astype(np.float32))
    segmenter = TomoSegmenter(feature="b", n_filters=40, progress=False)
    segmenter.model_, segmenter.amplitude_, segmenter.voxel_size_ = net, 1.0, 10.0
    segmenter.preprocess_, segmenter.n_neighbours_ = {}, 0
    segmenter.history_ = {"loss": [], "val_loss": [], "learning_rate": []}
    return segmenter


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def tomoseg_device(results: dict, segmenter, size: int, quick: bool) -> None:
    import jax

    from cryoml.tomoseg._apply import _FusedForward
    from cryoml.tomoseg._fft_device import DeviceFFTForward

    net = segmenter.model_
    out: dict = {"size": size}
    rng = np.random.default_rng(0)
    x4 = jax.device_put(rng.normal(size=(4 if not quick else 2, size, size, 1)).astype(np.float32))
    reps = 2 if quick else 5
    direct = {}
    for precision in ("float32", "bfloat16"):
        fused = _FusedForward(net, 1.0, precision=precision)
        forward = jitted(fused.model)
        batch = x4[:2]
        seconds = t_loop(lambda: forward(batch).block_until_ready(), reps)  # noqa: B023
        out[f"fused_{precision}_s_per_slice"] = seconds / 2
        direct[precision] = np.asarray(forward(batch))[..., 0]
        log("fused", precision, seconds / 2)
    best = None
    sweep = {}
    for fft_size in (128,) if quick else (128, 256, 512):
        engine = DeviceFFTForward(net, 1.0, fft_size=fft_size)
        for batch_n in (2,) if quick else (1, 2, 4):
            batch = x4[:batch_n]
            seconds = t_loop(
                lambda: engine.device_call(batch)[0].block_until_ready(),  # noqa: B023
                reps,
            ) / batch_n
            sweep[f"n{fft_size}_b{batch_n}"] = seconds
            log("device_fft", fft_size, batch_n, seconds)
            if best is None or seconds < best[0]:
                best = (seconds, fft_size, batch_n)
    out["device_fft_sweep_s_per_slice"] = sweep
    seconds, fft_size, batch_n = best
    out["device_fft_s_per_slice"] = seconds
    out["device_fft_best"] = {"fft_size": fft_size, "batch": batch_n}
    engine = DeviceFFTForward(net, 1.0, fft_size=fft_size)
    fft_out = np.asarray(engine.device_call(x4[:2])[0])
    out["agreement_fft_vs_fused_float32_tf32"] = rel_diff(fft_out, direct["float32"])
    out["agreement_bf16_vs_float32_fused"] = rel_diff(direct["bfloat16"], direct["float32"])
    small = np.asarray(x4[:1, :512, :512])  # (the whole slice in quick mode)
    with jax.default_matmul_precision("highest"):
        exact = _FusedForward(net, 1.0, precision="float32")
        reference = exact(small)
        fft_small = DeviceFFTForward(net, 1.0, fft_size=fft_size)(small)[0]
    out["agreement_fft_vs_fused_512_highest"] = rel_diff(fft_small, reference)
    volume_slices = 1024 * (4096 / size) ** 2
    out["tomogram_4096x4096x1024_compute_s"] = {
        "device_fft": round(seconds * volume_slices, 2),
        "fused_bfloat16": round(out["fused_bfloat16_s_per_slice"] * volume_slices, 2),
        "fused_float32": round(out["fused_float32_s_per_slice"] * volume_slices, 2),
    }
    out["speedup_fft_over_fused_bfloat16"] = round(out["fused_bfloat16_s_per_slice"] / seconds, 2)
    out["speedup_fft_over_fused_float32"] = round(out["fused_float32_s_per_slice"] / seconds, 2)
    out["library_in_memory"] = library_in_memory(segmenter, size, quick)
    results["tomoseg_device"] = out
    results["_fft_best"] = best


def library_in_memory(segmenter, size: int, quick: bool) -> dict:
    """``apply_network`` on slices in host memory with the ``device_fft`` engine: the default
    batch (slices per network call, from ``default_gpu_pixels``) against one slice per call."""
    from cryoml.tomoseg import apply_network
    from cryoml.tomoseg._apply import _device_free_bytes, default_gpu_pixels

    n = 2 if quick else 16
    volume = np.random.default_rng(1).normal(size=(n, size, size)).astype(np.float32)
    padded = (size + 2 * 48) ** 2
    pixels = default_gpu_pixels("device_fft", False, _device_free_bytes())
    out: dict = {"slices": n, "default_pixels": int(pixels),
                 "default_slices_per_call": max(1, pixels // padded)}
    for name, batch in (("default", None), ("one_slice_per_call", 1)):
        def run(batch=batch):
            return apply_network(volume, segmenter, voxel_size=segmenter.voxel_size_,
                                 engine="device_fft", batch_size=batch, progress=False)
        run()  # compile
        start = time.perf_counter()
        run()
        out[f"{name}_s_per_slice"] = round((time.perf_counter() - start) / n, 4)
        log("library in memory", name, out[f"{name}_s_per_slice"])
    return out


def _drop_file_cache(path) -> None:
    """Evict a file's clean pages from the page cache, so the next read comes from disk."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def disk_floor(source: str, target: str, dtype: str, per_step: int) -> float:
    """Seconds to read every slice of ``source`` and write the same output bytes, no compute.

    The same path as ``apply_network``: slices read from the input's memory map and stacked,
    written into an output MRC map, flushed and dropped batch by batch, with reading and
    writing overlapped in two threads.
    """
    import mrcfile

    from cryoml._pages import drop_pages
    from cryoml.io import read_image

    _drop_file_cache(source)
    start = time.perf_counter()
    volume = read_image(source, mmap=True).data
    n_z = volume.shape[0]
    out_dtype = np.dtype(dtype)
    mode = {"float32": 2, "float16": 12, "uint8": 0}[dtype]
    with mrcfile.new_mmap(target, shape=volume.shape, mrc_mode=mode, overwrite=True) as handle:
        data = handle.data.view(out_dtype)

        def load(z0):
            return np.stack([np.asarray(volume[z]) for z in range(z0, min(n_z, z0 + per_step))])

        def store(planes, z0):
            data[z0 : z0 + len(planes)] = planes.astype(out_dtype, copy=False)
            drop_pages(volume)
            drop_pages(data)

        starts = list(range(0, n_z, per_step))
        with ThreadPoolExecutor(2) as pool:
            loading, writing = pool.submit(load, starts[0]), None
            for i, z0 in enumerate(starts):
                planes = loading.result()
                if i + 1 < len(starts):
                    loading = pool.submit(load, starts[i + 1])
                if writing is not None:
                    writing.result()
                writing = pool.submit(store, planes, z0)
            writing.result()
    seconds = time.perf_counter() - start
    os.unlink(target)
    return seconds


def tomoseg_files(results: dict, segmenter, size: int, n_slices: int,
                  compare_reader: bool = False, only: list[str] | None = None) -> None:
    import mrcfile

    from cryoml.tomoseg import apply_network

    folder = tempfile.mkdtemp(dir=os.environ.get("TMPDIR"))
    source = f"{folder}/t.mrc"
    rng = np.random.default_rng(0)
    distinct = [rng.standard_normal((size, size), dtype=np.float32) for _ in range(4)]
    with mrcfile.new_mmap(source, shape=(n_slices, size, size), mrc_mode=2) as handle:
        for z in range(n_slices):
            handle.data[z] = distinct[z % 4]
        handle.voxel_size = 10.0
    warm = f"{folder}/warm.mrc"
    with mrcfile.new_mmap(warm, shape=(4, size, size), mrc_mode=2) as handle:
        handle.data[:] = np.stack(distinct)
        handle.voxel_size = 10.0
    log("wrote input", n_slices, size)
    out: dict = {"slices": n_slices, "size": size, "note": "input pages evicted before each run"}
    _, fft_size, batch_n = results.get("_fft_best", (None, 256, 2))
    scale = 1024 * (4096 / size) ** 2 / n_slices
    runs = [
        ("device_fft", "float32"),
        ("device_fft", "float16"),
        ("device_fft", "uint8"),
        ("fused", "float32"),
    ]
    if only:
        runs = [run for run in runs if f"{run[0]}_{run[1]}" in only]
    floors: dict = {}
    for engine, dtype in runs:
        options = {
            "overwrite": True,
            "progress": False,
            "engine": engine,
            "output_dtype": dtype,
        }
        if engine == "device_fft":
            options["batch_size"] = batch_n
            options["tile_size"] = fft_size  # the overlap-save FFT size for this engine
        else:
            options["precision"] = "bfloat16"
        apply_network(warm, segmenter, output=f"{folder}/w.mrc", **options)  # compile
        if dtype not in floors:
            floors[dtype] = disk_floor(source, f"{folder}/floor.mrc", dtype, options.get(
                "batch_size", 1))
            log("disk floor", dtype, floors[dtype])
        _drop_file_cache(source)
        start = time.perf_counter()
        apply_network(source, segmenter, output=f"{folder}/o.mrc", **options)
        wall = time.perf_counter() - start
        os.unlink(f"{folder}/o.mrc")
        key = f"{engine}_{dtype}" + ("_bf16" if engine == "fused" else "")
        out[key] = {
            "s_per_slice": wall / n_slices,
            "tomogram_4096x4096x1024_s": round(wall * scale, 1),
            "disk_floor_s_per_slice": floors[dtype] / n_slices,
            "disk_floor_4096x4096x1024_s": round(floors[dtype] * scale, 1),
            "ratio_to_disk_floor": round(wall / floors[dtype], 2),
        }
        log("file to file", key, out[key])
    if compare_reader:
        # The same uint8 run with the reader of sessions 2-12 (stack, then np.pad: three
        # copies of each slice), to attribute the change to it.
        from cryoml.tomoseg import _apply
        from cryoml.tomoseg._trainset import slice_channels

        def old_reader(volume, zs, k, rows, shape, edge):
            planes = np.stack([slice_channels(volume, z, k) for z in zs])
            n_y, n_x = volume.shape[1:]
            widths = ((0, 0), (edge, shape[0] - n_y - edge), (edge, shape[1] - n_x - edge),
                      (0, 0))
            planes = np.pad(planes, widths, mode="reflect")
            if rows > len(planes):
                filler = np.zeros((rows - len(planes), *planes.shape[1:]), np.float32)
                planes = np.concatenate([planes, filler])
            return planes

        new_reader, _apply.read_padded = _apply.read_padded, old_reader
        try:
            options = {"overwrite": True, "progress": False, "engine": "device_fft",
                       "output_dtype": "uint8", "batch_size": batch_n, "tile_size": fft_size}
            _drop_file_cache(source)
            start = time.perf_counter()
            apply_network(source, segmenter, output=f"{folder}/o.mrc", **options)
            wall = time.perf_counter() - start
            os.unlink(f"{folder}/o.mrc")
        finally:
            _apply.read_padded = new_reader
        out["device_fft_uint8_old_reader"] = {
            "s_per_slice": wall / n_slices,
            "tomogram_4096x4096x1024_s": round(wall * scale, 1),
            "ratio_to_disk_floor": round(wall / floors["uint8"], 2),
        }
        log("file to file, old reader", out["device_fft_uint8_old_reader"])
    os.unlink(source)
    results["tomoseg_files"] = out


def subtomo(results: dict, quick: bool) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import jax
    import keras
    import ml_dtypes

    from cryoml.subtomo._data import make_batches, standardize
    from cryoml.subtomo._training import (
        _centred_half,
        _jitted_predict,
        _predict_pipelined,
        _standardising,
        predict_batches,
    )
    from cryoml.subtomo.models import build_model

    box = 16 if quick else 40
    configs = (
        [("dsrf3d", "bfloat16", 16), ("inception3d", "float32", 16)]
        if quick
        else [
            ("inception3d", "bfloat16", 2048),
            ("inception3d", "bfloat16", 1024),
            ("inception3d", "float32", 2048),
            ("dsrf3d", "bfloat16", 2048),
        ]
    )
    n_batches = 3 if quick else 8
    out: dict = {
        "box": box,
        "batches_per_run": n_batches,
        "note": "raw float32 volumes in host memory; 'library_*' runs cover every batch",
    }
    rng = np.random.default_rng(0)
    largest = max(batch for _, _, batch in configs)
    pool = rng.standard_normal((largest * n_batches, box, box, box), dtype=np.float32)
    pool *= rng.uniform(0.5, 4.0, (len(pool), 1, 1, 1)).astype(np.float32)  # raw: scale, offset
    pool += rng.uniform(-50.0, 50.0, (len(pool), 1, 1, 1)).astype(np.float32)
    for name, precision, batch in configs:
        keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
        model = build_model(name, (box, box, box), 23)
        keras.config.set_dtype_policy("float32")
        data = pool[: batch * n_batches]
        x = standardize(data[:batch])[..., None].astype(np.float32)
        raw = np.ascontiguousarray(data[:batch])[..., None]

        def device_time(net, batch_on_host):
            call = _jitted_predict(net)  # the library's compiled function: compiled once here
            trainable = [v.value for v in net.trainable_variables]
            other = [v.value for v in net.non_trainable_variables]
            on_device = jax.device_put(batch_on_host)
            return t_loop(lambda: call(trainable, other, on_device).block_until_ready(), 5)

        device = device_time(model, x)  # the ceiling: standardised input already on the device
        device_std = device_time(_standardising(model), raw)  # + standardising on the device
        host = t_loop(lambda: np.asarray(model.predict_on_batch(x)), 3)  # noqa: B023
        old_batches = make_batches(data, np.arange(len(data)), batch_size=batch)
        new_batches = make_batches(data, np.arange(len(data)), batch_size=batch, normalize=False)
        feed_old = t_loop(lambda: old_batches[1][0], 3)  # noqa: B023
        feed_new = t_loop(lambda: new_batches[1][0], 3)  # noqa: B023
        put32 = t_loop(lambda: jax.device_put(x).block_until_ready(), 3)  # noqa: B023
        xb = x.astype(ml_dtypes.bfloat16)
        put16 = t_loop(lambda: jax.device_put(xb).block_until_ready(), 3)  # noqa: B023
        cast = t_loop(lambda: x.astype(ml_dtypes.bfloat16), 3)  # noqa: B023

        def timed(run):
            start = time.perf_counter()
            values = run()
            return (time.perf_counter() - start) / n_batches, values

        def new_path(model=model, data=data, batch=batch):
            # The library path: raw float32 shipped, standardised in the compiled call.
            return predict_batches(model, data, batch_size=batch)

        def float32_feed_path(model=model, batches=new_batches):
            # Session 13's library path: raw float32 shipped, standardised on the device.
            return np.concatenate(list(_predict_pipelined(
                _standardising(model), batches, range(n_batches), dtype=np.float32)))

        def old_path(model=model, batches=old_batches):
            # Session 7's path: standardised on the host, then the same pipelined feed.
            return np.concatenate(list(_predict_pipelined(model, batches, range(n_batches))))

        def raw_input_path(model=model, data=data, batch=batch):
            # Raw-input networks (normalize=False): unchanged, bfloat16 cast on the host.
            return predict_batches(model, data, batch_size=batch, normalize=False)

        # Warm-ups: the standardising wrapper (float32 input), and the network with the input
        # dtype of the old and raw-input paths (bfloat16 for a bfloat16 network).
        predict_batches(model, data[: 2 * batch], batch_size=batch)
        predict_batches(model, data[: 2 * batch], batch_size=batch, normalize=False)
        new, new_out = timed(new_path)
        float32_feed, float32_out = timed(float32_feed_path)
        with ThreadPoolExecutor(max(1, min(8, (os.cpu_count() or 2) - 2))) as helpers:
            centre = t_loop(lambda: _centred_half(data[:batch], helpers), 3)  # noqa: B023
        xh = np.zeros(x.shape, np.float16)
        put16h = t_loop(lambda: jax.device_put(xh).block_until_ready(), 3)  # noqa: B023
        old_piped, old_out = timed(old_path)
        raw_path, _ = timed(raw_input_path)
        old_start = time.perf_counter()
        for i in range(n_batches):
            np.asarray(model.predict_on_batch(old_batches[i][0]))
        old_loop = (time.perf_counter() - old_start) / n_batches
        key = f"{name}_{precision}_b{batch}"
        out[key] = {
            "device_per_s": round(batch / device),
            "device_with_standardisation_per_s": round(batch / device_std),
            "library_per_s": round(batch / new),
            "library_over_ceiling": round(device / new, 3),
            "library_feed": "float16 less the first voxel" if precision == "bfloat16"
            else "float32",
            "library_float32_feed_per_s": round(batch / float32_feed),
            "float32_feed_over_ceiling": round(device / float32_feed, 3),
            "agreement_library_vs_float32_feed_max_abs": float(
                np.abs(new_out - float32_out).max()),
            "argmax_agreement_library_vs_float32_feed": float(
                np.mean(new_out.argmax(1) == float32_out.argmax(1))),
            "library_old_host_standardised_pipelined_per_s": round(batch / old_piped),
            "old_over_ceiling": round(device / old_piped, 3),
            "library_raw_input_per_s": round(batch / raw_path),
            "raw_input_over_ceiling": round(device / raw_path, 3),
            "library_old_loop_per_s": round(batch / old_loop),
            "host_fed_predict_on_batch_per_s": round(batch / host),
            "agreement_new_vs_old_max_abs": float(np.abs(new_out - old_out).max()),
            "argmax_agreement_new_vs_old": float(
                np.mean(new_out.argmax(1) == old_out.argmax(1))),
            "pieces_s_per_batch": {
                "network_on_device": round(device, 4),
                "network_with_standardisation_on_device": round(device_std, 4),
                "feed_old_read_and_standardise": round(feed_old, 4),
                "feed_new_read_raw": round(feed_new, 5),
                "put_float32": round(put32, 4),
                "put_bfloat16": round(put16, 4),
                "put_float16": round(put16h, 4),
                "centre_to_float16_host": round(centre, 4),
                "cast_to_bfloat16_host": round(cast, 4),
            },
        }
        log("subtomo", key, out[key])
    results["subtomo"] = out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    parser.add_argument("--slices", type=int, help="slices of the file-to-file runs (64)")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["tomoseg_device", "tomoseg_files", "subtomo"],
        choices=["tomoseg_device", "tomoseg_files", "subtomo"],
    )
    parser.add_argument("--compare-reader", action="store_true",
                        help="also run the uint8 file-to-file case with the old slice reader")
    parser.add_argument("--file-runs", nargs="+", default=None,
                        choices=["device_fft_float32", "device_fft_float16", "device_fft_uint8",
                                 "fused_float32"],
                        help="file-to-file runs to make (default: all four)")
    args = parser.parse_args(argv)
    import jax
    import keras

    results: dict = {
        "device": str(jax.devices()[0].device_kind),
        "backend": keras.backend.backend(),
        "quick": bool(args.quick),
    }
    size = 256 if args.quick else 4096
    if {"tomoseg_device", "tomoseg_files"} & set(args.sections):
        segmenter = make_segmenter()
    if "tomoseg_device" in args.sections:
        tomoseg_device(results, segmenter, size, args.quick)
    if "tomoseg_files" in args.sections:
        tomoseg_files(results, segmenter, size, args.slices or (4 if args.quick else 64),
                      compare_reader=args.compare_reader, only=args.file_runs)
    if "subtomo" in args.sections:
        subtomo(results, args.quick)
    results.pop("_fft_best", None)
    results["total_s"] = round(time.perf_counter() - T0, 1)
    out = os.environ.get("OUT", "/tmp")
    with open(f"{out}/probe.json", "w") as handle:
        json.dump(results, handle, indent=1)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
