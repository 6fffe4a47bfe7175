"""Load a saved Keras network safely, with messages that say what went wrong."""

from __future__ import annotations

from pathlib import Path

from cryoml._errors import CryomlError

__all__ = ["load_keras_model"]


def load_keras_model(path: Path, *, what: str, how: str):
    """``keras.saving.load_model(path, compile=False)`` in safe mode, errors as CryomlError.

    Parameters
    ----------
    path : pathlib.Path
        The ``.keras`` file.
    what : str
        What the file should be (``"cryoml TomoSeg network"``), for messages.
    how : str
        How to make one (``"`cryoml tomoseg train`"``), for messages.

    Raises
    ------
    CryomlError
        If Keras refuses the file for safety (it holds code, e.g. a Lambda layer) or cannot
        build a model from it.
    """
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, KeyError, OSError...
        text = str(error)
        if "safe_mode" in text or "Lambda" in text or "unsafe" in text.lower():
            raise CryomlError(
                f"{path}: refused for safety. The file holds Python code (such as a Lambda "
                "layer) that Keras would run while loading it, and cryoml never runs code from "
                f"a network file: anyone could have put anything there. Use a {what} saved by "
                f"{how}; if you wrote this file yourself, rebuild it without Lambda layers."
            ) from None
        first = text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__
        raise CryomlError(
            f"{path}: Keras cannot build a network from this file ({first}). It is not a "
            f"{what}; make one with {how}."
        ) from None


def check_model_io(model, path: Path, *, what: str, input_rank: int, output_rank: int,
                   output_units: int | None = None, how: str) -> None:
    """Refuse a loaded model whose input/output ranks (and output units) differ from ``what``'s.

    Raises
    ------
    CryomlError
        Naming the file, the shapes found and the shapes expected.
    """
    try:
        inputs = [tuple(t.shape) for t in model.inputs]
        outputs = [tuple(t.shape) for t in model.outputs]
    except Exception:  # a model that was never built has no symbolic inputs
        inputs, outputs = [], []
    ok = (
        len(inputs) == 1
        and len(outputs) == 1
        and len(inputs[0]) == input_rank
        and len(outputs[0]) == output_rank
        and (output_units is None or outputs[0][-1] == output_units)
    )
    if not ok:
        units = "" if output_units is None else f" with {output_units} outputs"
        raise CryomlError(
            f"{path}: this network takes {inputs or 'unknown inputs'} and gives "
            f"{outputs or 'unknown outputs'}, not what a {what} has ({input_rank}-D input, "
            f"{output_rank}-D output{units}); its cryoml metadata does not belong to this "
            f"model. Make one with {how}."
        )
