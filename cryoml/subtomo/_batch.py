"""Features of one subtomogram set file into one ``.npy`` file: the task of
``cryoml subtomo features``.

:func:`features_file` is a top-level function, so that :func:`cryoml.batch.run_batch` can send
it to Dask workers; each call loads the network from its path.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["features_file"]


def features_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    network: str | os.PathLike,
    layer: str = "logits",
    batch_size: int = 256,
    progress: bool = False,
) -> dict:
    """Write the features of one subtomogram set as an (N, F) ``.npy``; a task for ``run_batch``.

    Parameters
    ----------
    input_path : str or path-like
        SubtomogramSet file (``.h5``, read batch by batch, or ``.npz``).
    output_path : str or path-like
        ``.npy`` file to write (replaced if it exists).
    network : str or path-like
        Network saved by :meth:`SubtomoClassifier.save` (``.keras``).
    layer : str, default "logits"
        Layer to read (see :func:`linear_features`).
    batch_size : int, default 256
    progress : bool, default False
        Show a progress bar over the batches.

    Returns
    -------
    dict
        ``{"shape": [N, F]}``.

    Raises
    ------
    CryomlError
        For a missing network or set, a wrong box size or an unknown layer.
    """
    import numpy as np

    from cryoml.subtomo._features import linear_features
    from cryoml.subtomo._training import SubtomoClassifier

    classifier = SubtomoClassifier.load(network, progress=progress)
    values = linear_features(classifier, input_path, layer=layer, batch_size=batch_size)
    with open(Path(output_path), "wb") as handle:
        np.save(handle, values)
    return {"shape": list(values.shape)}
