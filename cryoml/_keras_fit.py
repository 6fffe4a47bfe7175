"""One training loop for cryoml's Keras estimators: best weights kept, early stop, interrupt.

Keras is imported inside the function, so importing this module stays light.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["fit_keeping_best"]

logger = logging.getLogger(__name__)


def fit_keeping_best(
    model,
    *fit_args,
    epochs: int,
    monitor: str,
    patience: int | None,
    progress: bool,
    description: str,
    on_epoch_begin: Callable[[int], None] | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    postfix: Callable[[dict, float], dict] | None = None,
    checkpoint: Path | None = None,
    callbacks: list | None = None,
    **fit_kwargs,
) -> tuple[float, bool]:
    """Run ``model.fit`` and leave the model holding its best weights.

    Parameters
    ----------
    model : keras.Model
        A compiled model.
    *fit_args, **fit_kwargs
        Passed to ``model.fit`` (data, batch size, validation data, ...).
    epochs : int
        Epochs to train.
    monitor : str
        Log key whose lowest value marks the best weights (``"val_loss"`` or ``"loss"``).
    patience : int or None
        Stop after this many epochs without improvement (None: never).
    progress : bool
        Show a tqdm bar over epochs.
    description : str
        Label of the bar.
    on_epoch_begin, on_epoch_end : callable, optional
        Hooks called with the epoch (and the logs), e.g. to record history or set a rate.
    postfix : callable, optional
        ``postfix(logs, monitored_value) -> dict`` shown on the bar.
    checkpoint : pathlib.Path, optional
        Save the model here whenever it improves.
    callbacks : list of keras.callbacks.Callback, optional
        Called after the one that keeps the best weights (which are restored at the end even
        when one of these stops training).

    Returns
    -------
    best : float
        The best monitored value (inf when no epoch finished).
    interrupted : bool
        True if training was stopped with Ctrl-C (KeyboardInterrupt); the best weights are kept.
    """
    import keras

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=description, unit="epoch")

    class _Keeper(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = math.inf
            self.best_weights = None
            self.wait = 0

        def on_epoch_begin(self, epoch, logs=None):
            if on_epoch_begin is not None:
                on_epoch_begin(epoch)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)
            value = float(logs.get(monitor, np.nan))
            if np.isfinite(value) and value < self.best:
                self.best, self.wait = value, 0
                self.best_weights = self.model.get_weights()
                if checkpoint is not None:
                    self.model.save(checkpoint)
            else:
                self.wait += 1
                if patience is not None and self.wait >= patience:
                    self.model.stop_training = True
            if bar is not None:
                bar.update(1)
                if postfix is not None:
                    bar.set_postfix(**postfix(logs, value))

    keeper = _Keeper()
    interrupted = False
    try:
        model.fit(*fit_args, epochs=epochs, verbose=0, callbacks=[keeper, *(callbacks or [])],
                  **fit_kwargs)
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("training interrupted; keeping the best weights so far")
    finally:
        if bar is not None:
            bar.close()
    if keeper.best_weights is not None:
        model.set_weights(keeper.best_weights)
    return keeper.best, interrupted
