"""Inference standardises each subtomogram inside the compiled network call (issue 18): the
host ships raw volumes, and the outputs are those of host-standardised input."""

from __future__ import annotations

import numpy as np
import pytest


def _volumes(n=21, box=16, seed=0):
    """Noise with a different scale and a large offset per subtomogram."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, box, box, box)).astype(np.float32)
    scale = rng.uniform(0.5, 20.0, size=(n, 1, 1, 1)).astype(np.float32)
    offset = rng.uniform(-300.0, 300.0, size=(n, 1, 1, 1)).astype(np.float32)
    return x * scale + offset


def _model(policy="float32"):
    import keras

    from cryoml.subtomo.models import build_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        return build_model("dsrf3d", (16, 16, 16), 5)
    finally:
        keras.config.set_dtype_policy(previous)


def test_the_standardisation_layer_matches_the_host_standardisation():
    from cryoml.subtomo._data import standardize, standardize_layer

    x = _volumes(n=6)
    x[1] += 1e4  # an offset 10⁴ times the s.d.: float32 means would lose the signal
    x[2] = 7.0  # constant: zeros, as on the host
    exact = x.astype(np.float64).reshape(len(x), -1)
    exact -= exact.mean(axis=1, keepdims=True)
    exact /= np.maximum(exact.std(axis=1, keepdims=True), 1e-6)
    out = np.asarray(standardize_layer()(x[..., None]), dtype=np.float32)[..., 0]
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.reshape(len(x), -1), exact, atol=1e-5)
    np.testing.assert_allclose(out[[0, 3, 4, 5]], standardize(x[[0, 3, 4, 5]]), atol=2e-5)
    assert np.all(out[2] == 0)


def test_inference_feeds_raw_volumes_and_standardises_them_in_the_network_call():
    from cryoml.subtomo._data import make_batches, standardize
    from cryoml.subtomo._training import predict_batches

    model = _model()
    x = _volumes()
    # The host feed of inference reads raw volumes only (consecutive ones: a view, no copy).
    feed = make_batches(x, np.arange(len(x)), batch_size=8, normalize=False)[0][0]
    assert np.shares_memory(feed, x) and np.array_equal(feed[..., 0], x[:8])
    expected = np.asarray(model.predict_on_batch(standardize(x)[..., None]), dtype=np.float32)
    got = predict_batches(model, x, batch_size=8)  # 3 batches, the last one padded
    assert got.shape == (21, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # Skipping the standardisation would give other outputs: raw volumes give these.
    raw = predict_batches(model, x, batch_size=8, normalize=False)
    assert np.abs(raw - expected).max() > 0.05
    # Per-subtomogram affine changes of the input do not change the outputs.
    shifted = predict_batches(model, 3.0 * x - 500.0, batch_size=8)
    np.testing.assert_allclose(shifted, expected, rtol=1e-3, atol=1e-4)
    # The wrapper is built once and kept; the network's own model is unchanged.
    from cryoml.subtomo._training import _standardising

    assert _standardising(model) is _standardising(model)
    assert "standardize" not in [layer.name for layer in model.layers]


def test_device_standardisation_in_bfloat16_matches_the_old_host_standardised_feed():
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("the pipelined bfloat16 feed is the JAX backend's path (KERAS_BACKEND=jax)")
    from cryoml.subtomo._data import make_batches
    from cryoml.subtomo._training import _predict_pipelined, predict_batches

    model = _model("mixed_bfloat16")
    x = _volumes()
    old_batches = make_batches(x, np.arange(len(x)), batch_size=8, normalize=True,
                               pad_last=True)
    old = np.concatenate(list(_predict_pipelined(model, old_batches, range(3))))[: len(x)]
    got = predict_batches(model, x, batch_size=8)
    np.testing.assert_allclose(got, old, atol=1e-2)  # bfloat16 outputs: a rounding step
    assert np.array_equal(got.argmax(1), old.argmax(1))
    raw = predict_batches(model, x, batch_size=8, normalize=False)
    assert np.abs(raw - old).max() > 0.05


def test_read_batch_reads_runs_as_slices_and_other_indices_in_their_order(tmp_path):
    from cryoml.subtomo._data import read_batch

    x = np.arange(6 * 8, dtype=np.float32).reshape(6, 2, 2, 2)
    run = read_batch(x, np.arange(1, 4))
    assert np.shares_memory(run, x) and np.array_equal(run, x[1:4])
    for indices in ([3, 1, 2], [0, 2, 4], [5], [4, 5, 5]):
        got = read_batch(x, np.array(indices))
        assert not np.shares_memory(got, x) or len(indices) == 1
        assert np.array_equal(got, x[indices])
    np.save(tmp_path / "x.npy", x.astype(np.float16))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    got = read_batch(mapped, np.arange(2, 5))
    assert got.dtype == np.float32 and np.array_equal(got, x[2:5])
