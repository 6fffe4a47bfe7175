"""Rotation-invariant features (spherical harmonics per radial shell) and the RIF-SVM baseline.

The baseline of Xu et al. (2017), after Xu et al. (2009, 2011); their code is not public, so it
is built here from the idea: each radial shell ``r = 1 … R`` of a subtomogram (about its centre)
is a function on the sphere, expanded in real spherical harmonics ``Y_lm`` up to degree ``L``;
the power per degree ``P_l(r) = Σ_m c_lm(r)²`` does not change when the map is rotated, because a
rotation only mixes the coefficients of one degree unitarily.

Fast by construction: the shells are sampled at ``n_points`` Fibonacci-sphere directions
(equal quadrature weights ``4π / n_points``), all shells in one trilinear
:func:`scipy.ndimage.map_coordinates` call, and the projection on the harmonics is one matrix
product with a precomputed ``(n_points, (L+1)²)`` matrix. The features are ``sqrt(P_l(r))``
(amplitudes; power compresses too much for an RBF kernel), ``R × (L + 1)`` per subtomogram.

The missing wedge is not rotation invariant, which is the weakness the paper points out.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from scipy import ndimage

from cryoml._errors import CryomlError
from cryoml._validation import check_random_state
from cryoml.subtomo._data import open_subtomograms, read_batch, standardize

__all__ = ["RIFSVM", "fibonacci_sphere", "real_sph_harm_matrix", "rotation_invariant_features"]

logger = logging.getLogger(__name__)


def fibonacci_sphere(n_points: int) -> np.ndarray:
    """``n_points`` nearly uniform unit vectors (Z, Y, X) on the sphere (golden spiral), (n, 3).

    Examples
    --------
    >>> points = fibonacci_sphere(100)
    >>> points.shape, bool(np.allclose(np.linalg.norm(points, axis=1), 1))
    ((100, 3), True)
    """
    i = np.arange(n_points) + 0.5
    z = 1 - 2 * i / n_points
    azimuth = np.pi * (1 + 5**0.5) * i
    rho = np.sqrt(1 - z**2)
    return np.stack([z, rho * np.sin(azimuth), rho * np.cos(azimuth)], axis=1)


def real_sph_harm_matrix(points: np.ndarray, max_degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Real orthonormal spherical harmonics at unit vectors.

    Parameters
    ----------
    points : (n, 3) ndarray
        Unit vectors in (Z, Y, X) order (polar angle measured from Z).
    max_degree : int
        Highest degree L.

    Returns
    -------
    matrix : (n, (L+1)²) ndarray of float64
        ``Y_lm`` at each point, columns ordered by degree then order.
    degrees : ((L+1)²,) ndarray of int
        The degree of each column.
    """
    from scipy.special import sph_harm_y

    polar = np.arccos(np.clip(points[:, 0], -1, 1))
    azimuth = np.arctan2(points[:, 1], points[:, 2])
    columns, degrees = [], []
    for degree in range(max_degree + 1):
        for order in range(-degree, degree + 1):
            value = sph_harm_y(degree, abs(order), polar, azimuth)
            if order == 0:
                column = value.real
            elif order > 0:
                column = np.sqrt(2) * (-1) ** order * value.real
            else:
                column = np.sqrt(2) * (-1) ** order * value.imag
            columns.append(column)
            degrees.append(degree)
    return np.stack(columns, axis=1), np.asarray(degrees)


@functools.lru_cache(maxsize=8)
def _rif_plan(shape: tuple[int, int, int], max_degree: int, n_points: int, n_shells: int):
    """Sample coordinates (3, shells·points), projection matrix and degree indicator."""
    directions = fibonacci_sphere(n_points)
    matrix, degrees = real_sph_harm_matrix(directions, max_degree)
    projection = (matrix * (4 * np.pi / n_points)).astype(np.float32)  # quadrature weights
    centre = np.array([s // 2 for s in shape], dtype=np.float64)
    radii = np.arange(1, n_shells + 1, dtype=np.float64)
    coords = centre[:, None, None] + directions.T[:, None, :] * radii[None, :, None]
    indicator = np.zeros((len(degrees), max_degree + 1), dtype=np.float32)
    indicator[np.arange(len(degrees)), degrees] = 1.0
    return coords.reshape(3, -1), projection, indicator


def rotation_invariant_features(
    data,
    *,
    max_degree: int = 10,
    n_shells: int | None = None,
    n_points: int | None = None,
    normalize: bool = True,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Spherical-harmonic rotation-invariant features of subtomograms.

    Parameters
    ----------
    data : (N, Z, Y, X) or (Z, Y, X) array-like, SubtomogramSet or path
        Subtomograms (read batch by batch from disk-backed sources).
    max_degree : int, default 10
        Highest spherical-harmonic degree L.
    n_shells : int, optional
        Radial shells 1 … R voxels from the centre (``index // 2``); default: up to the
        largest sphere inside the box (``min(shape) // 2 - 1``).
    n_points : int, optional
        Sample directions per shell; default ``max(4 (L+1)², 64)``.
    normalize : bool, default True
        Standardise each subtomogram first (zero mean, unit s.d.).
    batch_size : int, default 256
        Subtomograms read at a time.
    progress : bool, default False
        tqdm bar over batches.

    Returns
    -------
    (N, R · (L + 1)) ndarray of float32
        ``sqrt`` of the power per degree, shell-major (one row for a single volume: (1, ...)).

    Raises
    ------
    CryomlError
        For a bad degree, shell count or input.

    Examples
    --------
    >>> volume = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    >>> rotation_invariant_features(volume, max_degree=4).shape
    (1, 35)
    """
    if hasattr(data, "shape") and len(data.shape) == 3:
        data = np.asarray(data, dtype=np.float32)[None]
    data, _, _ = open_subtomograms(data)
    shape = tuple(int(s) for s in data.shape[1:])
    if int(max_degree) != max_degree or max_degree < 0:
        raise CryomlError(f"'max_degree' must be a whole number >= 0; got {max_degree!r}.")
    largest = min(shape) // 2 - 1
    n_shells = largest if n_shells is None else int(n_shells)
    if not 1 <= n_shells <= largest:
        raise CryomlError(
            f"'n_shells' must be in [1, {largest}] for {shape} boxes; got {n_shells}."
        )
    n_points = max(4 * (int(max_degree) + 1) ** 2, 64) if n_points is None else int(n_points)
    coords, projection, indicator = _rif_plan(shape, int(max_degree), n_points, n_shells)
    n = int(data.shape[0])
    out = np.empty((n, n_shells * (int(max_degree) + 1)), dtype=np.float32)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="RIF features", unit="batch")
    for start in starts:
        block = read_batch(data, np.arange(start, min(start + batch_size, n)))
        if normalize:
            block = standardize(block)
        samples = np.stack([
            ndimage.map_coordinates(volume, coords, order=1, mode="constant", prefilter=False)
            for volume in block
        ]).reshape(len(block) * n_shells, n_points)
        coefficients = samples @ projection
        power = (coefficients * coefficients) @ indicator
        out[start : start + len(block)] = np.sqrt(power).reshape(len(block), -1)
    return out


class RIFSVM:
    """RIF-SVM baseline: rotation-invariant features + RBF SVM, C and γ by cross-validation.

    Parameters
    ----------
    max_degree : int, default 10
        Spherical-harmonic degree of the features.
    n_shells : int, optional
        Radial shells (default: all inside the box).
    C_grid : sequence of float, default (1, 10, 100)
        Values of ``C`` tried.
    gamma_grid : sequence of float, default (0.1, 1, 10)
        Values of γ tried, in units of ``1 / n_features`` (features are standardised).
    cv : int, default 3
        Cross-validation folds.
    search_subsample : int or None, default 3000
        The grid search runs on a stratified random subset of this many training vectors
        (SVM training time grows quadratically); the best parameters are then refitted on all.
    n_jobs : int, default 1
        Parallel jobs of the grid search.
    random_state : None, int or Generator
        Seeds the fold split.
    progress : bool, default False
        tqdm bar over feature batches.

    Attributes
    ----------
    pipeline_ : sklearn.pipeline.Pipeline
        Scaler + SVC refitted with the best parameters.
    best_params_ : dict
        Chosen ``C`` and ``gamma``.
    cv_score_ : float
        Best mean cross-validated accuracy.

    Examples
    --------
    >>> RIFSVM(max_degree=6).max_degree
    6
    """

    def __init__(
        self,
        *,
        max_degree: int = 10,
        n_shells: int | None = None,
        C_grid=(1.0, 10.0, 100.0),
        gamma_grid=(0.1, 1.0, 10.0),
        cv: int = 3,
        search_subsample: int | None = 3000,
        n_jobs: int = 1,
        random_state: int | np.random.Generator | None = None,
        progress: bool = False,
    ) -> None:
        self.max_degree = max_degree
        self.n_shells = n_shells
        self.C_grid = C_grid
        self.gamma_grid = gamma_grid
        self.cv = cv
        self.search_subsample = search_subsample
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress

    def features(self, data) -> np.ndarray:
        """The rotation-invariant features of ``data`` with this estimator's settings."""
        return rotation_invariant_features(
            data, max_degree=self.max_degree, n_shells=self.n_shells, progress=self.progress
        )

    def fit(self, data, labels=None) -> RIFSVM:
        """Compute features and fit the scaler + SVC with a grid search over C and γ.

        Raises
        ------
        CryomlError
            Without labels or with fewer than two classes.
        """
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        data, labels, _ = open_subtomograms(data, labels)
        if labels is None or len(np.unique(labels)) < 2:
            raise CryomlError("RIFSVM.fit needs 'labels' with at least two classes.")
        features = self.features(data)
        rng = check_random_state(self.random_state)
        counts = np.bincount(labels)
        folds = int(min(self.cv, counts[counts > 0].min()))
        if folds < 2:
            raise CryomlError("RIFSVM.fit needs at least two subtomograms in every class.")
        grid = {
            "svc__C": [float(c) for c in self.C_grid],
            "svc__gamma": [float(g) / features.shape[1] for g in self.gamma_grid],
        }
        search = GridSearchCV(
            make_pipeline(StandardScaler(), SVC(kernel="rbf")),
            grid,
            cv=StratifiedKFold(folds, shuffle=True, random_state=int(rng.integers(2**31 - 1))),
            n_jobs=int(self.n_jobs),
        )
        subset = np.arange(len(labels))
        if self.search_subsample is not None and len(labels) > int(self.search_subsample):
            from sklearn.model_selection import train_test_split

            subset, _ = train_test_split(
                subset, train_size=int(self.search_subsample), stratify=labels,
                random_state=int(rng.integers(2**31 - 1)),
            )
        search.fit(features[subset], labels[subset])
        self.pipeline_ = search.best_estimator_
        if len(subset) < len(labels):
            self.pipeline_.fit(features, labels)
        self.best_params_ = {k.split("__")[1]: v for k, v in search.best_params_.items()}
        self.cv_score_ = float(search.best_score_)
        self.n_classes_ = int(labels.max() + 1)
        return self

    def predict(self, data) -> np.ndarray:
        """Predicted class indices, (N,).

        Raises
        ------
        CryomlError
            If not fitted.
        """
        if not hasattr(self, "pipeline_"):
            raise CryomlError("this RIFSVM is not fitted yet: call fit() first.")
        return self.pipeline_.predict(self.features(data))

    def evaluate(self, data, labels=None) -> dict:
        """Accuracy, confusion matrix and per-class recall (see ``classification_report``)."""
        from cryoml.subtomo._training import classification_report

        data, labels, names = open_subtomograms(data, labels)
        if labels is None:
            raise CryomlError("'labels' are needed to evaluate.")
        return classification_report(
            labels, self.predict(data), n_classes=max(self.n_classes_, int(labels.max()) + 1),
            class_names=names,
        )
