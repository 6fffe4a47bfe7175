import numpy as np
import pytest

from cryoml._errors import CryomlError
from cryoml.picking import ScoreMap, dense_score_map, raster_score_map


def test_dense_scores_equal_raster_scores_at_every_raster_position(sharp_model):
    image = np.random.default_rng(0).normal(size=(150, 170)).astype(np.float32)
    dense = dense_score_map(sharp_model, image)
    raster = raster_score_map(sharp_model, image, step=dense.step)
    assert dense.step == 8
    assert dense.scores.shape == raster.scores.shape == (13, 16)
    assert dense.scores.std() > 0.01  # the comparison is not between constants
    np.testing.assert_allclose(dense.scores, raster.scores, atol=1e-5)


def test_a_finer_dense_step_scores_every_box_of_the_finer_grid_as_the_raster_does(sharp_model):
    image = np.random.default_rng(4).normal(size=(120, 130)).astype(np.float32)
    fine = dense_score_map(sharp_model, image, step=4)
    raster = raster_score_map(sharp_model, image, step=4)
    assert fine.step == 4
    ny, nx = fine.scores.shape
    assert (ny, nx) == (2 * ((120 - 4 - 48) // 8 + 1), 2 * ((130 - 4 - 48) // 8 + 1))
    assert fine.scores.std() > 0.01
    np.testing.assert_allclose(fine.scores, raster.scores[:ny, :nx], atol=1e-5)
    with pytest.raises(CryomlError, match="must divide the network's stride"):
        dense_score_map(sharp_model, image, step=3)


def test_dense_scores_equal_the_papers_20_px_raster_where_the_grids_meet(sharp_model):
    image = np.random.default_rng(1).normal(size=(200, 200)).astype(np.float32)
    dense = dense_score_map(sharp_model, image)
    raster = raster_score_map(sharp_model, image, step=20)
    common = np.array([[y, x] for y in (0, 40, 80, 120) for x in (0, 40, 80, 120)])
    np.testing.assert_allclose(dense.at_corners(common), raster.at_corners(common), atol=1e-5)


def test_dense_scores_of_a_three_pool_network_equal_raster_scores():
    import keras

    from cryoml.picking import build_deepem_cnn

    keras.utils.set_random_seed(0)
    model = build_deepem_cnn(40, kernels=(7, 4, 3), pools=(3, 2, 1))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 1, w.shape).astype("float32") for w in model.get_weights()])
    image = rng.normal(size=(100, 88)).astype(np.float32)
    dense = dense_score_map(model, image)
    raster = raster_score_map(model, image, step=6)
    assert dense.scores.std() > 0.01
    np.testing.assert_allclose(dense.scores, raster.scores, atol=1e-5)


def test_box_score_is_the_mean_of_its_four_rotations(sharp_model):
    from keras.ops import convert_to_numpy

    rng = np.random.default_rng(2)
    box = rng.normal(size=(48, 48)).astype(np.float32)
    single = [
        float(convert_to_numpy(sharp_model(np.rot90(box, k)[None, ..., None].copy()))[0, 0])
        for k in range(4)
    ]
    assert np.std(single) > 1e-3  # the network is not rotation invariant by itself
    raster = raster_score_map(sharp_model, box, step=1, normalise=False)
    assert raster.scores.shape == (1, 1)
    assert raster.scores[0, 0] == pytest.approx(np.mean(single), abs=1e-5)
    unrotated = raster_score_map(sharp_model, box, step=1, normalise=False, rotations=False)
    assert unrotated.scores[0, 0] == pytest.approx(single[0], abs=1e-5)


def test_rotating_the_micrograph_rotates_the_dense_score_map(sharp_model):
    image = np.random.default_rng(3).normal(size=(48 + 8 * 9, 48 + 8 * 9)).astype(np.float32)
    scores = dense_score_map(sharp_model, image).scores
    turned = dense_score_map(sharp_model, np.rot90(image)).scores
    np.testing.assert_allclose(np.rot90(scores), turned, atol=1e-5)


def test_score_map_centres_are_corners_plus_half_a_box():
    score_map = ScoreMap(np.zeros((2, 3), np.float32), step=20, box_size=48)
    centres = score_map.centres()
    assert centres[0, 0].tolist() == [24, 24]
    assert centres[1, 2].tolist() == [44, 64]


def test_micrograph_smaller_than_the_box_is_refused(sharp_model):
    with pytest.raises(CryomlError, match="smaller than the 48-px box"):
        dense_score_map(sharp_model, np.zeros((30, 100), np.float32))


def test_keras_dense_twin_gives_the_unrotated_raster_scores(sharp_model):
    from keras.ops import convert_to_numpy

    from cryoml.picking import build_deepem_dense

    twin = build_deepem_dense(sharp_model)
    image = np.random.default_rng(4).normal(size=(48 + 8 * 5, 48 + 8 * 7)).astype(np.float32)
    scores = convert_to_numpy(twin(image[None, ..., None]))[0, ..., 0]
    raster = raster_score_map(sharp_model, image, step=8, rotations=False, normalise=False)
    np.testing.assert_allclose(scores, raster.scores, atol=1e-5)


def test_dense_scorer_notices_new_weights(sharp_model):
    # The compiled dense scorer is cached on the model; retraining must not serve stale scores.
    image = np.random.default_rng(5).normal(size=(48 + 8 * 6, 48 + 8 * 6)).astype(np.float32)
    before = dense_score_map(sharp_model, image).scores
    sharp_model.set_weights([w * 0.9 for w in sharp_model.get_weights()])
    after = dense_score_map(sharp_model, image)
    raster = raster_score_map(sharp_model, image, step=after.step)
    assert np.abs(after.scores - before).max() > 1e-3
    np.testing.assert_allclose(after.scores, raster.scores, atol=1e-5)
