"""Pipelined host-fed inference (JAX backend) gives what predict_on_batch gives."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_pipelined_inference_equals_batch_by_batch_prediction(policy):
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("the pipelined feed is the JAX backend's path (KERAS_BACKEND=jax)")
    from cryoml.subtomo._data import make_batches
    from cryoml.subtomo._training import predict_batches
    from cryoml.subtomo.models import build_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_model("dsrf3d", (16, 16, 16), 5)
    finally:
        keras.config.set_dtype_policy(previous)
    x = np.random.default_rng(0).normal(size=(37, 16, 16, 16)).astype(np.float32)
    piped = predict_batches(model, x, batch_size=8)  # 5 batches, the last one padded
    batches = make_batches(x, np.arange(37), batch_size=8, pad_last=True)
    expected = np.concatenate(
        [np.asarray(model.predict_on_batch(batches[i][0]), np.float32) for i in range(5)]
    )[:37]
    assert piped.shape == (37, 5) and piped.dtype == np.float32
    if policy == "float32":
        np.testing.assert_allclose(piped, expected, rtol=1e-6, atol=1e-7)
    else:  # raw float16 less the first voxel, standardised on the device: rounding steps
        np.testing.assert_allclose(piped, expected, atol=2e-2)
        assert np.mean(piped.argmax(1) == expected.argmax(1)) >= 0.9


def test_centred_half_is_the_sample_less_its_first_value_or_refused():
    from concurrent.futures import ThreadPoolExecutor

    from cryoml.subtomo._training import _centred_half

    rng = np.random.default_rng(1)
    x = (rng.normal(size=(9, 8, 8, 8, 1)) * 3 + 500.0).astype(np.float32)
    half = _centred_half(x)
    assert half.dtype == np.float16 and half.shape == x.shape
    expected = x - x[:, :1, :1, :1]
    np.testing.assert_allclose(half.astype(np.float32), expected, atol=2**-11 * 30)
    with ThreadPoolExecutor(3) as pool:
        assert np.array_equal(_centred_half(x, pool, parts=4), half)
    wide = x.copy()
    wide[4, 5, 3, 1] = 1e6  # a range float16 cannot hold
    assert _centred_half(wide) is None
    broken = x.copy()
    broken[2, 0, 4, 0] = np.nan
    assert _centred_half(broken) is None


def test_bfloat16_networks_get_centred_float16_and_agree_with_the_float32_feed(monkeypatch):
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("the pipelined feed is the JAX backend's path (KERAS_BACKEND=jax)")
    import cryoml.subtomo._training as training
    from cryoml.subtomo.models import build_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model("dsrf3d", (16, 16, 16), 5)
    finally:
        keras.config.set_dtype_policy(previous)
    x = (np.random.default_rng(0).normal(size=(21, 16, 16, 16)) * 4 - 300).astype(np.float32)
    sent = []
    original = training._centred_half
    monkeypatch.setattr(training, "_centred_half",
                        lambda batch, pool=None: sent.append(1) or original(batch, pool))
    got = training.predict_batches(model, x, batch_size=8)
    assert len(sent) == 3  # every batch went over in float16
    monkeypatch.setattr(training, "_centred_half", lambda batch, pool=None: None)
    exact = training.predict_batches(model, x, batch_size=8)  # float32 throughout
    np.testing.assert_allclose(got, exact, atol=2e-2)
    assert np.mean(got.argmax(1) == exact.argmax(1)) >= 0.9
