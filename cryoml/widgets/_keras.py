"""Keras adapter of the training monitor: a callback feeding :class:`TrainingMonitorState`.

Imported only when a monitor is attached to a training run, so ``import cryoml.widgets`` does
not load Keras (or TensorFlow).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import keras

from cryoml.widgets._state import TrainingMonitorState

__all__ = ["attach_monitor", "keras_callback"]

logger = logging.getLogger(__name__)


class _MonitorCallback(keras.callbacks.Callback):
    """Forwards Keras events to the state; stops on request; keeps the best weights."""

    def __init__(self, state: TrainingMonitorState, *, restore_best_weights: bool) -> None:
        super().__init__()
        self.state = state
        self.restore_best_weights = restore_best_weights
        self.best_weights: list[Any] | None = None

    def on_train_begin(self, logs=None):
        self.best_weights = None
        self.state.train_begin(
            epochs=self.params.get("epochs"), steps=self.params.get("steps")
        )

    def on_train_batch_end(self, batch, logs=None):
        if self.state.batch_end(batch):
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.state.epoch_end(epoch, logs) and self.restore_best_weights:
            self.best_weights = self.model.get_weights()
        if self.state.stop_requested:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            logger.info("restored the weights of epoch %s", self.state.best_epoch)
        self.state.train_end()


def keras_callback(
    state: TrainingMonitorState, *, restore_best_weights: bool = True
) -> keras.callbacks.Callback:
    """A ``keras.callbacks.Callback`` that feeds ``state`` during ``model.fit``.

    The callback records every epoch's logs, sets ``model.stop_training`` after the batch in
    which :meth:`TrainingMonitorState.request_stop` was called (the Stop button), and at the end
    of training restores the weights of the epoch with the lowest monitored loss.

    Parameters
    ----------
    state : TrainingMonitorState
    restore_best_weights : bool, default True

    Returns
    -------
    keras.callbacks.Callback
    """
    return _MonitorCallback(state, restore_best_weights=restore_best_weights)


@contextlib.contextmanager
def attach_monitor(
    state: TrainingMonitorState, *, restore_best_weights: bool = True
) -> Iterator[keras.callbacks.Callback]:
    """Within the block, every ``keras.Model.fit`` call also reports to ``state``.

    This lets the monitor watch estimators that call ``fit`` internally (TomoSegmenter,
    ParticlePicker, SubtomoClassifier) without them taking a ``callbacks`` argument. The
    estimators' own best-weight keeping still applies; the original ``fit`` is restored on
    leaving the block, also after an exception.
    """
    callback = keras_callback(state, restore_best_weights=restore_best_weights)
    had_own = "fit" in vars(keras.Model)
    original = keras.Model.fit

    def fit(model, *args, **kwargs):
        callbacks = list(kwargs.pop("callbacks", None) or [])
        kwargs["callbacks"] = [*callbacks, callback]
        return original(model, *args, **kwargs)

    keras.Model.fit = fit
    try:
        yield callback
    finally:
        if had_own:
            keras.Model.fit = original
        else:
            del keras.Model.fit
