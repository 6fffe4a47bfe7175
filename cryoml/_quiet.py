"""Keeping a backend's start-up noise out of what users read (notebook cells, terminals).

Used where cryoml owns the process or the user asked for it (``cryoml`` commands,
:func:`cryoml.widgets.setup_notebook`), never on plain library import.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["import_backend_quietly", "quiet_tensorflow"]


class _ErrorsOnly(logging.Filter):
    """Let through only records at ERROR or above."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _keras_backend_name() -> str:
    """The backend Keras will load, read without importing Keras (which loads it)."""
    import json

    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        return str(json.loads((home / "keras.json").read_text()).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr (file descriptor 2) set aside.

    TensorFlow 2.21 writes its start-up lines (absl's "All log messages before
    absl::InitializeLog()", oneDNN's notice) from C++ before ``TF_CPP_MIN_LOG_LEVEL`` is
    read, and a Jupyter kernel copies descriptor 2 into the output of the cell that first
    imports it. If the import fails, what it wrote is passed on.
    """
    import importlib.util
    import sys
    import tempfile

    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    with tempfile.TemporaryFile(mode="w+b") as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_backend_quietly() -> None:
    """Import Keras's backend now, its C++ start-up lines set aside, if it is TensorFlow."""
    if _keras_backend_name() == "tensorflow":
        _import_tensorflow_quietly()


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up lines and warnings (``tf.function`` retracing) out of the
    output; its errors still show.

    Sets ``$TF_CPP_MIN_LOG_LEVEL=2`` unless set, filters the ``tensorflow`` logger down to
    errors (a filter, not a level: TensorFlow resets its logger's level to INFO when it is
    first used in an interactive shell) and imports the backend quietly. Idempotent.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf_logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _ErrorsOnly) for f in tf_logger.filters):
        tf_logger.addFilter(_ErrorsOnly())
    import_backend_quietly()
