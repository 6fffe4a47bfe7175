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
    np.testing.assert_allclose(piped, expected, rtol=1e-6, atol=1e-7)
