"""One training loop for cryoml's Keras estimators: best weights kept, early stop, interrupt.

Keras is imported inside the function, so importing this module stays light.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["fit_keeping_best", "keras_seed"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def keras_seed(seed: int) -> Iterator[None]:
    """Seed Keras for the block (initial weights, dropout, shuffles), then give back the
    random streams the caller owns.

    ``keras.utils.set_random_seed`` reseeds Python's and NumPy's global generators and Keras's
    global seed generator; a library must not leave them so (a user's ``np.random`` draws
    after a ``fit`` would restart from our seed). Their states, read before Keras is first
    imported (TensorFlow's import draws from NumPy's stream), are restored on leaving, also
    after an exception. The backend's own global seed (TensorFlow's ``tf.random.set_seed``)
    cannot be read back and stays set.
    """
    # read before importing Keras: a first import of TensorFlow draws from NumPy's stream
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    import keras

    try:  # Keras's global seed and generator (private names: skipped if they move)
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils

        keys = (rng_utils.GLOBAL_RANDOM_SEED, seed_generator.GLOBAL_SEED_GENERATOR)
        keras_state = {key: global_state.get_global_attribute(key) for key in keys}
    except (ImportError, AttributeError):
        global_state, keras_state = None, {}
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002
        for key, value in keras_state.items():
            global_state.set_global_attribute(key, value)


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
