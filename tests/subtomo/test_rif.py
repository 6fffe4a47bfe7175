import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from cryoml._errors import CryomlError
from cryoml.subtomo import RIFSVM, rotation_invariant_features

from .conftest import blob_shapes, make_set


def _rotate(volume, matrix):
    centre = np.array(volume.shape) // 2
    return ndimage.affine_transform(volume, matrix, offset=centre - matrix @ centre, order=3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_features_of_a_rotated_noise_free_map_are_within_one_percent(seed):
    volume = ndimage.gaussian_filter(blob_shapes(1, 24, seed=seed)[0], 1.0)
    rotated = _rotate(volume, Rotation.random(random_state=seed).as_matrix())
    original = rotation_invariant_features(volume)
    moved = rotation_invariant_features(rotated)
    assert np.linalg.norm(moved - original) / np.linalg.norm(original) < 0.01


def test_features_tell_different_shapes_apart():
    shapes = ndimage.gaussian_filter(blob_shapes(2, 24, seed=5), (0, 1, 1, 1))
    a, b = rotation_invariant_features(shapes)
    assert np.linalg.norm(a - b) / np.linalg.norm(a) > 0.1


def test_feature_count_is_shells_times_degrees():
    volumes = np.zeros((2, 20, 20, 20), dtype=np.float32)
    volumes[:, 10, 10, 10] = 1
    assert rotation_invariant_features(volumes, max_degree=5, n_shells=4).shape == (2, 24)
    with pytest.raises(CryomlError, match="n_shells"):
        rotation_invariant_features(volumes, n_shells=50)


def test_rif_svm_classifies_rotated_shapes():
    data, labels, _ = make_set(n_classes=3, n_per_class=16, box=16, noise=0.2, seed=3)
    train = np.arange(len(labels)) % 2 == 0
    model = RIFSVM(max_degree=6, random_state=0).fit(data[train], labels[train])
    report = model.evaluate(data[~train], labels[~train])
    assert report["accuracy"] > 0.8
    assert set(model.best_params_) == {"C", "gamma"}


def test_rif_svm_predict_before_fit_is_refused():
    with pytest.raises(CryomlError, match="fit"):
        RIFSVM().predict(np.zeros((1, 16, 16, 16)))
