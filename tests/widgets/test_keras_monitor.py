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


def _tomoseg_fit(callbacks):
    from cryoml.tomoseg import TomoSegmenter, TrainingSet

    rng = np.random.default_rng(0)
    tiles = rng.normal(size=(16, 64, 64, 1)).astype(np.float32)
    labels = np.zeros((16, 32, 32), np.float32)
    labels[::2, 10:20, 10:20] = 1
    trainset = TrainingSet(tiles, labels, np.arange(16) % 2 == 0, feature="x", voxel_size=10.0)
    segmenter = TomoSegmenter(epochs=10, n_filters=2, kernel_size=3, random_state=0,
                              progress=False)
    return segmenter.fit(trainset, callbacks=callbacks).history_["loss"]


def _subtomo_fit(callbacks):
    from cryoml.subtomo import SubtomoClassifier

    rng = np.random.default_rng(0)
    data = rng.normal(size=(24, 16, 16, 16)).astype(np.float32)
    classifier = SubtomoClassifier(model="dsrf3d", epochs=10, batch_size=8, random_state=0,
                                   progress=False)
    return classifier.fit(data, np.arange(24) % 2, callbacks=callbacks).history_["loss"]


def _picking_fit(callbacks):
    from cryoml.picking import ParticlePicker

    rng = np.random.default_rng(0)
    boxes = rng.normal(size=(20, 48, 48)).astype(np.float32)
    picker = ParticlePicker(48, epochs=10, random_state=0, progress=False)
    return picker.fit_boxes(boxes, np.arange(20) % 2, callbacks=callbacks).history_["loss"]


@pytest.mark.filterwarnings("ignore::cryoml.CryomlWarning")  # 2 epochs on noise: no real net
@pytest.mark.parametrize("fit", [_tomoseg_fit, _subtomo_fit, _picking_fit],
                         ids=["tomoseg", "subtomo", "picking"])
def test_estimators_take_callbacks_and_a_stop_from_the_monitor(fit):
    state = TrainingMonitorState(monitor="loss")
    state.on_change(lambda event, value: event == "epoch" and state.epoch == 2
                    and state.request_stop())
    losses = fit([state.keras_callback(restore_best_weights=False)])
    assert state.epoch == 2 and state.status == "stopped"
    assert len(losses) == 2
