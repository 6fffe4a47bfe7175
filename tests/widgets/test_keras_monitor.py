"""The Keras adapter of the training monitor: live history, Stop, best weights."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cryoml.widgets import TrainingMonitorState, attach_monitor  # noqa: E402


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    return x, x @ np.array([1.0, -2.0, 0.5, 0.0], np.float32)


def test_stop_request_ends_fit_and_the_best_weights_are_kept():
    state = TrainingMonitorState(monitor="loss")
    x, y = _data()
    model = _model()
    seen = []

    def stop_after_two(event, value):
        if event == "epoch":
            seen.append(model.get_weights())
            if state.epoch == 2:
                state.request_stop()

    state.on_change(stop_after_two)
    model.fit(x, y, epochs=20, batch_size=16, verbose=0, callbacks=[state.keras_callback()])
    assert state.epoch == 2 and state.status == "stopped"
    best = state.best_epoch
    for kept, expected in zip(model.get_weights(), seen[best], strict=True):
        np.testing.assert_allclose(kept, expected)


def test_attach_hooks_every_fit_in_the_block_and_restores_fit():
    state = TrainingMonitorState()
    x, y = _data()
    model = _model()
    original = keras.Model.fit
    with attach_monitor(state):
        model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0)
    assert keras.Model.fit is original
    assert len(state.history["val_loss"]) == 2
    assert state.status == "finished"


def test_training_in_the_background_reports_to_the_monitor_view():
    import matplotlib

    matplotlib.use("agg")
    from cryoml.widgets import TrainingMonitor

    monitor = TrainingMonitor(monitor="loss")
    x, y = _data()
    model = _model()
    future = monitor.run_in_background(model.fit, x, y, epochs=3, batch_size=32, verbose=0)
    history = future.result(timeout=120)
    assert len(history.history["loss"]) == 3
    assert monitor.progress.value == 3 and monitor.state.status == "finished"
    monitor.close()
