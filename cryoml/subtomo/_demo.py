"""A small end-to-end subtomogram classification + k-means + t-SNE run for ``cryoml demo``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)

_DEMO_COMPLEXES = ["1bxn", "3j9i", "3cf3", "4v4r"]  # all fit a 16³ box at 18.4 Å


def run_demo(out_dir: Path, *, quick: bool = True) -> dict:
    """Simulate a few classes, train Inception3D, report accuracy, k-means and t-SNE.

    Parameters
    ----------
    out_dir : Path
        Folder for ``subtomo_demo.json`` and ``subtomo_tsne.png``.
    quick : bool, default True
        16³ boxes at 18.4 Å (the paper's 9.2 Å binned by 2), 50 per class (half for
        training), 10 epochs, raw input as notebook 02 (≈ 30 s on two CPU cores); False: 40³
        at 9.2 Å, 100 per class, 10 epochs.

    Returns
    -------
    dict
        ``accuracy``, ``n_test``, ``cluster_size_max_over_median``, ``seconds`` and the paths.
    """
    from cryoml.simulate import simulate_subtomograms
    from cryoml.subtomo import SubtomoClassifier, linear_features, subdivide, tsne_embedding

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    box, voxel, n_per_class, epochs = (16, 18.4, 50, 10) if quick else (40, 9.2, 100, 10)
    subtomograms = simulate_subtomograms(
        _DEMO_COMPLEXES, n_per_class, snr=0.5, tilt_range=60, box=box, voxel_size=voxel,
        random_state=0, n_jobs=2,
    )
    rng = np.random.default_rng(0)
    order = rng.permutation(len(subtomograms))
    train, test = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    # Raw input: on standardised input Inception3D's large linear layer can collapse to
    # chance (the demo scored 0.37 that way, three classes never predicted).
    clf = SubtomoClassifier(model="inception3d", recipe="modern", epochs=epochs, batch_size=16,
                            normalize=False, validation_fraction=0.15, random_state=0,
                            progress=False)
    clf.fit(subtomograms.data[train], subtomograms.labels[train],
            class_names=subtomograms.class_names)
    report = clf.evaluate(subtomograms.data[test], subtomograms.labels[test])
    features = linear_features(clf, subtomograms.data[test])
    division = subdivide(features, k=min(10, len(test)), random_state=0)
    embedding = tsne_embedding(features, perplexity=15, max_iter=500, random_state=0)
    png = out_dir / "subtomo_tsne.png"
    _plot(png, embedding, subtomograms.labels[test], subtomograms.class_names)
    figures = {
        "accuracy": report["accuracy"],
        "per_class_recall": dict(zip(subtomograms.class_names, report["per_class_recall"],
                                     strict=True)),
        "n_test": report["n"],
        "cluster_size_max_over_median": division.stats["max_over_median"],
        "seconds": round(time.perf_counter() - start, 1),
        "tsne_png": str(png),
    }
    (out_dir / "subtomo_demo.json").write_text(json.dumps(figures, indent=1))
    return figures


def _plot(path: Path, embedding, labels, names) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    for index, name in enumerate(names):
        chosen = labels == index
        axes.scatter(embedding[chosen, 0], embedding[chosen, 1], s=10, label=name)
    axes.legend(fontsize=7)
    axes.set_title("t-SNE of Inception3D linear features (test set)")
    figure.savefig(path, dpi=100)
