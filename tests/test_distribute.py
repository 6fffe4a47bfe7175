"""Data-parallel training on four virtual CPU devices matches training on one device."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, numpy as np, keras
from cryoml.distribute import data_parallel, list_devices

def train(parallel):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("float32")
    def build():
        inputs = keras.Input((8, 8, 1))
        hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        outputs = keras.layers.Dense(1)(keras.layers.Flatten()(hidden))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        return model
    if parallel:
        with data_parallel() as n:
            model = build()
            history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    else:
        n = 1
        model = build()
        history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    return n, history.history["loss"], [w.tolist() for w in model.get_weights()]

n, loss_parallel, weights_parallel = train(True)
_, loss_single, weights_single = train(False)
print(json.dumps({"devices": len(list_devices("cpu")), "n": n, "loss_parallel": loss_parallel,
                  "loss_single": loss_single,
                  "max_weight_difference": max(float(np.max(np.abs(np.array(a) - np.array(b))))
                                               for a, b in zip(weights_parallel, weights_single))}))
"""


def _run_on_virtual_devices(script: str, n_devices: int) -> dict:
    """Run ``script`` with JAX on ``n_devices`` virtual CPU devices; its last line as JSON."""
    pytest.importorskip("jax", reason="keras.distribution needs JAX (pip install jax)")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_data_parallel_over_four_virtual_devices_matches_one_device():
    figures = _run_on_virtual_devices(SCRIPT, 4)
    assert figures["devices"] == 4 and figures["n"] == 4
    assert figures["loss_parallel"][-1] < figures["loss_parallel"][0]
    assert figures["max_weight_difference"] < 1e-4


def test_data_parallel_refuses_a_backend_keras_cannot_distribute():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() == "jax":
        pytest.skip("this process runs JAX")
    from cryoml import CryomlError
    from cryoml.distribute import data_parallel

    with pytest.raises(CryomlError, match="JAX backend"), data_parallel():
        pass


UNEVEN = r"""
import json, numpy as np
from cryoml import CryomlError
from cryoml.distribute import batch_multiple, data_parallel
from cryoml.subtomo import SubtomoClassifier

rng = np.random.default_rng(0)
x = rng.normal(size=(13, 16, 16, 16)).astype("float32")  # 13: no batch size splits it evenly
y = rng.integers(0, 2, 13)
out = {"outside": batch_multiple()}
with data_parallel() as n:
    out["inside"] = batch_multiple()
    clf = SubtomoClassifier(model="dsrf3d", epochs=1, batch_size=4 * n, progress=False,
                            random_state=0).fit(x, y)
    out["probabilities"] = list(clf.predict_proba(x).shape)
    try:
        SubtomoClassifier(model="dsrf3d", epochs=1, batch_size=5, progress=False).fit(x, y)
    except CryomlError as error:
        out["error"] = str(error)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_data_parallel_handles_a_last_batch_that_does_not_split_evenly():
    figures = _run_on_virtual_devices(UNEVEN, 2)
    assert figures["outside"] == 1 and figures["inside"] == 2
    assert figures["probabilities"] == [13, 2]
    assert "multiple of 2" in figures["error"]
