"""Tiny shared data for the picking tests: 256² toy micrographs, 48-px boxes."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def toy_set():
    from cryoml.picking import toy_micrographs

    return toy_micrographs(
        8, shape=(256, 256), box_size=48, n_particles=10, snr=0.5, random_state=1
    )


@pytest.fixture(scope="session")
def trained_picker(toy_set):
    from cryoml.picking import ParticlePicker

    train = toy_set[:5]
    picker = ParticlePicker(48, epochs=6, random_state=0, progress=False)
    return picker.fit([m.image for m in train], [m.particles for m in train])


@pytest.fixture
def sharp_model():
    """A random DeepEM network whose scores actually vary (large weights), for comparisons."""
    import keras
    import numpy as np

    from cryoml.picking import build_deepem_cnn, preset_for_box

    keras.utils.set_random_seed(3)
    design = preset_for_box(48)
    model = build_deepem_cnn(48, kernels=design.kernels, pools=design.pools)
    rng = np.random.default_rng(3)
    weights = [rng.normal(0, 1.0, w.shape).astype("float32") for w in model.get_weights()]
    model.set_weights(weights)
    # Scale the output unit so that its logit has mean 0 and s.d. 2 over random boxes.
    features = keras.Model(model.input, model.get_layer("flatten").output)
    probe = keras.ops.convert_to_numpy(features(rng.normal(size=(64, 48, 48, 1)).astype("float32")))
    logits = probe @ weights[-2][:, 0]
    scale = 2.0 / logits.std()
    weights[-2] = weights[-2] * scale
    weights[-1] = np.array([-logits.mean() * scale], dtype="float32")
    model.set_weights(weights)
    return model
