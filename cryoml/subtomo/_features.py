"""Deep structural features, k-means over-partitioning, the pose-normalisation baseline, t-SNE.

Xu et al. (2017) remove the softmax of a trained network and use the linear layer's outputs as
features (``R^L``), over-partition them with k-means (k = 100 ≫ number of classes) and view
them with t-SNE. Their baseline for the cluster-size comparison is k-means on pose-normalised
subtomograms (Xu et al. 2015): each subtomogram is centred on its centre of mass and rotated
so that its principal axes (of the density's second moments) lie along Z, Y, X, then clustered
as a voxel vector. The paper found very uneven clusters for the baseline (84 of 100 with ≤ 10
members, the largest 2470) and even ones for deep features.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from scipy import ndimage

from cryoml._errors import CryomlError
from cryoml._validation import check_array, check_random_state
from cryoml.subtomo._data import open_subtomograms, read_batch, standardize

__all__ = [
    "Subdivision",
    "cluster_size_stats",
    "linear_features",
    "pose_normalised_kmeans",
    "pose_normalize",
    "subdivide",
    "tsne_embedding",
]

logger = logging.getLogger(__name__)

_MINIBATCH_ABOVE = 20_000


def linear_features(model, data, *, layer: str = "logits", batch_size: int = 256) -> np.ndarray:
    """Features of subtomograms from a trained network's linear (pre-softmax) or hidden layer.

    Parameters
    ----------
    model : SubtomoClassifier or keras.Model
        A trained classifier (its input standardisation is applied) or a Keras model with a
        layer named ``layer`` (input used as given).
    data : (N, Z, Y, X) array-like, SubtomogramSet or path
        Subtomograms (read batch by batch).
    layer : str, default "logits"
        Layer to read: ``"logits"`` (the paper's features) or a hidden layer (``"fc2"``,
        ``"flatten"``, ...).
    batch_size : int, default 256

    Returns
    -------
    (N, F) ndarray of float32

    Raises
    ------
    CryomlError
        For an unknown layer or an untrained model.
    """
    from cryoml.subtomo._training import SubtomoClassifier, predict_batches

    if isinstance(model, SubtomoClassifier):
        return model.transform(data, layer=layer, batch_size=batch_size)
    if not hasattr(model, "get_layer"):
        raise CryomlError(
            f"'model' must be a SubtomoClassifier or a keras.Model; got {type(model).__name__}."
        )
    import keras

    names = [lay.name for lay in model.layers]
    if layer not in names:
        raise CryomlError(f"the model has no layer {layer!r}; its layers are {names}.")
    data, _, _ = open_subtomograms(data)
    sub = keras.Model(model.inputs, model.get_layer(layer).output)
    return predict_batches(sub, data, batch_size=batch_size, normalize=False)


def cluster_size_stats(labels: np.ndarray, n_clusters: int | None = None) -> dict:
    """Cluster-size distribution: sizes, max, median, max/median and the number of clusters
    with ≤ 10 members (empty clusters count, with size 0).

    Examples
    --------
    >>> stats = cluster_size_stats(np.array([0, 0, 0, 1, 2, 2]))
    >>> stats["max"], stats["median"], stats["n_le_10"]
    (3, 2.0, 3)
    """
    labels = np.asarray(labels, dtype=int)
    sizes = np.bincount(labels, minlength=int(n_clusters or 0))
    median = float(np.median(sizes)) if sizes.size else 0.0
    return {
        "sizes": sizes.tolist(),
        "max": int(sizes.max(initial=0)),
        "median": median,
        "max_over_median": float(sizes.max(initial=0) / median) if median > 0 else float("inf"),
        "n_le_10": int(np.sum(sizes <= 10)),
        "n_clusters": int(sizes.size),
    }


@dataclasses.dataclass
class Subdivision:
    """Result of :func:`subdivide`.

    Attributes
    ----------
    labels : (N,) ndarray of int
        Cluster of each subtomogram.
    centers : (k, F) ndarray
        Cluster centres.
    stats : dict
        :func:`cluster_size_stats` of the labels.
    method : str
        ``"kmeans"`` or ``"minibatch"``.
    """

    labels: np.ndarray
    centers: np.ndarray
    stats: dict
    method: str

    def enrichment(self, true_labels: np.ndarray, cls: int) -> np.ndarray:
        """Fraction of each cluster's members that belong to class ``cls``, (k,)."""
        true_labels = np.asarray(true_labels)
        k = len(self.centers)
        members = np.bincount(self.labels, minlength=k)
        hits = np.bincount(self.labels[true_labels == cls], minlength=k)
        return np.where(members > 0, hits / np.maximum(members, 1), 0.0)


def subdivide(
    features: np.ndarray,
    k: int = 100,
    *,
    method: str = "auto",
    n_init: int = 3,
    random_state: int | np.random.Generator | None = None,
) -> Subdivision:
    """Over-partition feature vectors with k-means (MiniBatchKMeans for large sets).

    Parameters
    ----------
    features : (N, F) array_like
        Feature vectors (e.g. :func:`linear_features`).
    k : int, default 100
        Clusters (the paper: 100).
    method : {"auto", "kmeans", "minibatch"}, default "auto"
        ``auto``: :class:`sklearn.cluster.KMeans` up to 20,000 vectors, else
        :class:`sklearn.cluster.MiniBatchKMeans`.
    n_init : int, default 3
        k-means restarts.
    random_state : None, int or Generator

    Returns
    -------
    Subdivision

    Raises
    ------
    CryomlError
        For ``k`` < 1 or larger than the number of vectors, or an unknown method.
    """
    features = check_array(features, ndim=2, name="features")
    n = features.shape[0]
    if int(k) != k or not 1 <= k <= n:
        raise CryomlError(f"'k' must be a whole number in [1, {n}] (the vectors); got {k!r}.")
    if method not in ("auto", "kmeans", "minibatch"):
        raise CryomlError(f"'method' must be 'auto', 'kmeans' or 'minibatch'; got {method!r}.")
    if method == "auto":
        method = "minibatch" if n > _MINIBATCH_ABOVE else "kmeans"
    seed = int(check_random_state(random_state).integers(2**31 - 1))
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if method == "kmeans":
        estimator = KMeans(int(k), n_init=int(n_init), random_state=seed)
    else:
        estimator = MiniBatchKMeans(int(k), n_init=int(n_init), batch_size=4096, random_state=seed)
    labels = estimator.fit_predict(np.asarray(features, dtype=np.float64))
    return Subdivision(
        labels=labels.astype(int),
        centers=estimator.cluster_centers_,
        stats=cluster_size_stats(labels, int(k)),
        method=method,
    )


def pose_normalize(volume: np.ndarray, *, sigma: float = 1.0, dark_density: bool = True):
    """Centre a subtomogram on its centre of mass and rotate its principal axes onto Z, Y, X.

    Parameters
    ----------
    volume : (Z, Y, X) ndarray
        One subtomogram.
    sigma : float, default 1.0
        Gaussian smoothing (voxels) before the moments are taken.
    dark_density : bool, default True
        Matter is dark (negative) in the subtomogram (cryoml.simulate and raw cryo-ET data).

    Returns
    -------
    (Z, Y, X) ndarray of float32
        The pose-normalised volume (axis signs chosen so the third moments are positive).
    """
    volume = check_array(volume, ndim=3, name="volume").astype(np.float32)
    smooth = ndimage.gaussian_filter(volume, sigma)
    smooth = -smooth if dark_density else smooth
    weights = np.clip(smooth - smooth.mean() - smooth.std(), 0, None)
    if weights.sum() <= 0:
        return volume
    grid = np.indices(volume.shape).reshape(3, -1).astype(np.float64)
    w = weights.ravel() / weights.sum()
    com = grid @ w
    centred = grid - com[:, None]
    cov = (centred * w) @ centred.T
    _, vectors = np.linalg.eigh(cov)
    axes = vectors[:, ::-1]  # largest variance first → Z
    projected = axes.T @ centred
    third = (projected * projected * projected) @ w  # ** 3 is ~30x slower here
    axes = axes * np.where(third < 0, -1.0, 1.0)
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    centre = np.array([s // 2 for s in volume.shape], dtype=np.float64)
    # output voxel p ↦ input com + axes @ (p − centre)
    return ndimage.affine_transform(
        volume, axes, offset=com - axes @ centre, order=1, mode="constant", cval=volume.mean()
    ).astype(np.float32)


def pose_normalised_kmeans(
    data,
    k: int = 100,
    *,
    n_components: int | None = 50,
    dark_density: bool = True,
    random_state: int | np.random.Generator | None = None,
    progress: bool = False,
    n_jobs: int | None = -1,
) -> Subdivision:
    """Baseline subdivision: k-means on pose-normalised voxels (Xu et al. 2015).

    Parameters
    ----------
    data : (N, Z, Y, X) array-like, SubtomogramSet or path
        Subtomograms.
    k : int, default 100
        Clusters.
    n_components : int or None, default 50
        PCA components kept before k-means (None: raw voxels).
    dark_density : bool, default True
        See :func:`pose_normalize`.
    random_state : None, int or Generator
    progress : bool, default False
    n_jobs : int or None, default -1
        Threads for the pose normalisation (-1: every core; None: 1). Results do not depend
        on it.

    Returns
    -------
    Subdivision
    """
    from cryoml.subtomo._threads import resolve_threads, thread_map

    data, _, _ = open_subtomograms(data)
    threads = resolve_threads(n_jobs)
    n = int(data.shape[0])
    vectors = np.empty((n, int(np.prod(data.shape[1:]))), dtype=np.float32)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="pose normalisation", unit="subtomogram")

    def normalise(chunk: np.ndarray) -> None:
        for i, volume in zip(chunk, standardize(read_batch(data, chunk)), strict=True):
            vectors[i] = pose_normalize(volume, dark_density=dark_density).ravel()
        if bar is not None:
            bar.update(len(chunk))

    # chunks of 16: one read per chunk, and many chunks per thread for an even load
    thread_map(normalise, [np.arange(i, min(n, i + 16)) for i in range(0, n, 16)], threads)
    if bar is not None:
        bar.close()
    rng = check_random_state(random_state)
    if n_components is not None and n_components < min(vectors.shape):
        from sklearn.decomposition import PCA

        vectors = PCA(int(n_components), random_state=int(rng.integers(2**31 - 1))).fit_transform(
            vectors
        )
    return subdivide(vectors, k, random_state=rng)


def tsne_embedding(
    features: np.ndarray,
    *,
    n_components: int = 2,
    perplexity: float = 30.0,
    max_iter: int = 1000,
    random_state: int | np.random.Generator | None = None,
) -> np.ndarray:
    """t-SNE embedding of feature vectors for viewing, (N, n_components) float32.

    ``perplexity`` is capped at (N − 1) / 3; ``max_iter`` optimisation steps (≥ 250).

    Raises
    ------
    CryomlError
        For fewer than 4 vectors.
    """
    features = check_array(features, ndim=2, name="features")
    if len(features) < 4:
        raise CryomlError(f"t-SNE needs at least 4 vectors; got {len(features)}.")
    from sklearn.manifold import TSNE

    perplexity = float(min(perplexity, (len(features) - 1) / 3))
    seed = int(check_random_state(random_state).integers(2**31 - 1))
    embedding = TSNE(
        n_components=int(n_components), perplexity=perplexity, init="pca",
        max_iter=max(250, int(max_iter)), random_state=seed,
    ).fit_transform(np.asarray(features, dtype=np.float64))
    return embedding.astype(np.float32)
