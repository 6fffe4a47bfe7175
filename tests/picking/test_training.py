import numpy as np
import pytest

from cryoml._errors import CryomlError
from cryoml.io import Particles
from cryoml.picking import (
    ParticlePicker,
    evaluate_picks,
    extract_boxes,
    sample_negatives,
    split_picks,
)


def test_boxes_are_cut_around_centres_and_outside_ones_skipped():
    image = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    boxes, kept = extract_boxes(image, np.array([[50.0, 40.0], [3.0, 5.0]]), 10)
    assert kept.tolist() == [0]
    assert boxes.shape == (1, 10, 10)
    assert boxes[0, 0, 0] == image[45, 35]  # corner = centre - box / 2


def test_random_negatives_keep_their_distance_from_particles():
    avoid = np.array([[50.0, 50.0]])
    negatives = sample_negatives(
        (100, 100), avoid, 30, box_size=20, min_distance=25, random_state=0
    )
    assert len(negatives) == 30
    assert np.all(np.hypot(*(negatives - avoid).T) >= 25)


def test_trained_picker_passes_the_held_out_check_and_finds_test_particles(trained_picker, toy_set):
    assert trained_picker.validation_accuracy_ >= 0.9
    assert set(trained_picker.history_) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert trained_picker.training_boxes_.shape[1:] == (48, 48)
    test = toy_set[5:]
    candidates = [trained_picker.candidates(m.image) for m in test]
    evaluation = evaluate_picks(
        candidates, [m.particles for m in test], radius=0.5 * test[0].diameter
    )
    assert evaluation.average_precision > 0.8


@pytest.mark.parametrize(("augment", "copies"), [("rotations", 4), ("dihedral", 8)])
def test_training_uses_the_rotations_and_mirrors_of_each_box(toy_set, monkeypatch, augment,
                                                              copies):
    picker = ParticlePicker(48, epochs=1, validation_fraction=0, augment=augment,
                            random_state=0, progress=False)
    seen = {}
    import keras

    original = keras.Model.fit

    def spy(self, x, y, **kwargs):
        seen["x"], seen["y"] = x, y
        return original(self, x[:8], y[:8], **{**kwargs, "epochs": 1})

    monkeypatch.setattr(keras.Model, "fit", spy)
    picker.fit([toy_set[0].image], [toy_set[0].particles])
    n_boxes = len(picker.training_boxes_)
    assert len(seen["x"]) == copies * n_boxes
    # every training box appears with its three rotations (and mirrored with "dihedral")
    first = picker.training_boxes_[0]
    variants = [np.rot90(first, k) for k in range(4)]
    mirrored = [np.rot90(first[:, ::-1], k) for k in range(4)]
    found = [any(np.array_equal(v, x[..., 0]) for x in seen["x"]) for v in variants + mirrored]
    assert all(found[:4]) and all(found[4:]) == (augment == "dihedral")


def test_chance_level_training_warns(toy_set):
    from cryoml._errors import CryomlWarning

    rng = np.random.default_rng(0)
    boxes = rng.normal(size=(80, 48, 48)).astype(np.float32)  # noise: nothing to learn
    labels = np.tile([0, 1], 40)
    picker = ParticlePicker(48, epochs=1, validation_fraction=0.25, random_state=0,
                            progress=False)
    with pytest.warns(CryomlWarning, match="near chance"):
        picker.fit_boxes(boxes, labels)


def test_hard_negative_round_adds_false_picks_as_negatives(trained_picker, toy_set):
    import copy

    picker = copy.deepcopy(trained_picker)
    train = toy_set[:5]
    before = len(picker.training_boxes_)
    picker.mine_hard_negatives([m.image for m in train], [m.particles for m in train],
                               epochs=1)
    (added,) = picker.hard_negative_counts_
    assert added > 0  # the decoys (dense blobs) and noise give false picks above 0.5
    assert len(picker.training_boxes_) == before + added
    assert not picker.training_labels_[before:].any()
    with pytest.raises(CryomlError, match="hard_negative_rounds"):
        ParticlePicker(48, hard_negative_rounds=-1).fit_boxes(np.zeros((2, 48, 48)), [0, 1])


def test_a_dense_step_that_does_not_divide_the_stride_is_refused_before_training():
    with pytest.raises(CryomlError, match="'dense_step' 3 must divide the network's stride"):
        ParticlePicker(48, dense_step=3).fit_boxes(np.zeros((2, 48, 48)), [0, 1])


def test_calibrated_threshold_is_where_f2_peaks_and_picks_respect_it(trained_picker, toy_set):
    calibrate = toy_set[5:7]
    trained_picker.calibrate_threshold(
        [m.image for m in calibrate], [m.particles for m in calibrate]
    )
    calibration = trained_picker.calibration_
    assert calibration["beta"] == 2.0
    assert calibration["recall"] >= 0.8
    picks = trained_picker.pick(toy_set[7].image)
    assert np.all(picks.scores >= trained_picker.threshold_)
    assert len(picks) > 0


def test_recursive_training_adds_verified_picks(trained_picker, toy_set):
    import copy

    picker = copy.copy(trained_picker)
    picker.epochs = 1
    new = toy_set[5]
    candidates = picker.candidates(new.image)
    true_picks, false_picks = split_picks(candidates, new.particles, radius=14)
    before = len(picker.training_boxes_)
    picker.refit_recursive([new.image], [true_picks], [false_picks])
    added = len(picker.training_boxes_) - before
    assert added == len(true_picks) + len(false_picks) > 0
    assert picker.training_labels_[before:].sum() == len(true_picks)


@pytest.mark.filterwarnings("ignore:ParticlePicker. held-out accuracy")
def test_paper_recipe_trains_with_squared_error_and_plain_sgd(toy_set):
    import keras

    picker = ParticlePicker(48, recipe="paper", epochs=1, random_state=0, progress=False)
    picker.fit([toy_set[0].image], [toy_set[0].particles])
    assert isinstance(picker.model_.optimizer, keras.optimizers.SGD)
    assert float(picker.model_.optimizer.learning_rate) == 1.0
    assert "squared" in picker.model_.loss.__name__


def test_unfitted_picker_and_bad_parameters_are_refused():
    with pytest.raises(CryomlError, match="not fitted"):
        ParticlePicker(48).pick(np.zeros((100, 100)))
    with pytest.raises(CryomlError, match="recipe"):
        ParticlePicker(48, recipe="adam").fit_boxes(np.zeros((2, 48, 48)), [0, 1])
    with pytest.raises(CryomlError, match="preset"):
        ParticlePicker(preset="70s").fit_boxes(np.zeros((2, 48, 48)), [0, 1])
    with pytest.raises(CryomlError, match="one coordinate set per micrograph"):
        ParticlePicker(48).fit([np.zeros((100, 100))] * 2, [Particles(np.zeros((0, 2)))])


def test_saved_picker_loads_and_scores_the_same(trained_picker, toy_set, tmp_path):
    path = trained_picker.save(tmp_path / "picker.keras")
    loaded = ParticlePicker.load(path)
    image = toy_set[6].image
    np.testing.assert_allclose(
        loaded.score(image).scores, trained_picker.score(image).scores, atol=1e-6
    )
    assert loaded.threshold_ == trained_picker.threshold_
    assert loaded.sd_band_ == pytest.approx(trained_picker.sd_band_)
    with pytest.raises(CryomlError, match="exists"):
        trained_picker.save(tmp_path / "picker.keras")


def test_positives_get_shifted_copies_held_out_together_and_balanced_negatives(toy_set):
    picker = ParticlePicker(48, epochs=1, jitter=3, jitter_copies=2, validation_fraction=0.3,
                            random_state=0, progress=False)
    picker.fit([toy_set[0].image], [toy_set[0].particles])
    labels, boxes = picker.training_labels_, picker.training_boxes_
    n_particles = len(toy_set[0].particles)
    positives = boxes[labels == 1]
    assert len(positives) == 3 * n_particles  # every particle inside, centred + 2 shifted
    assert (labels == 0).sum() == len(positives)  # the random negatives grow with the copies
    centred, shifted = positives[:n_particles], positives[n_particles:]
    # copies are the same particle moved by 1-3 px, not the centred box again
    assert not any(np.array_equal(centred[i % n_particles], s) for i, s in enumerate(shifted))
    # copies of a held-out particle are never trained on
    held_out = picker._validation_mask[labels == 1]
    for i in range(n_particles):
        assert held_out[i] == held_out[n_particles + i] == held_out[2 * n_particles + i]


def test_jitter_defaults_follow_the_recipe(toy_set):
    modern = ParticlePicker(48, particle_diameter=20, random_state=0, progress=False)
    paper = ParticlePicker(48, recipe="paper", random_state=0, progress=False)
    modern.architecture_ = modern._validate_parameters()
    paper.architecture_ = paper._validate_parameters()
    assert modern.jitter_ == min(modern.architecture_.stride / 2, 2.0)
    assert paper.jitter_ == 0.0  # the published recipe: centred boxes only
    with pytest.raises(CryomlError, match="jitter_copies"):
        ParticlePicker(48, jitter_copies=-1).fit([toy_set[0].image], [toy_set[0].particles])


def test_held_out_accuracy_is_balanced_over_particles_and_background():
    rng = np.random.default_rng(0)
    boxes = rng.normal(size=(120, 48, 48)).astype(np.float32)
    boxes[:30] += 3.0  # 30 easy particles against 90 background boxes
    labels = np.r_[np.ones(30), np.zeros(90)]
    picker = ParticlePicker(48, epochs=1, validation_fraction=0.5, random_state=0,
                            progress=False)
    picker.fit_boxes(boxes, labels)
    from cryoml.picking._training import _rotations

    held_boxes = boxes[picker._validation_mask]
    held = np.tile(labels[picker._validation_mask], 4)
    right = (picker._predict(_rotations(held_boxes)[..., None]) >= 0.5) == (held == 1)
    balanced = np.mean([right[held == c].mean() for c in (0, 1)])
    assert picker.validation_accuracy_ == pytest.approx(balanced)
    if right[held == 0].mean() != right[held == 1].mean():  # else both measures agree anyway
        assert picker.validation_accuracy_ != pytest.approx(right.mean())


def test_held_out_check_stays_on_the_given_boxes_when_negatives_are_added():
    rng = np.random.default_rng(1)
    boxes = rng.normal(size=(120, 48, 48)).astype(np.float32)
    boxes[:40] += 3.0  # 40 easy particles against 80 background boxes
    labels = np.r_[np.ones(40), np.zeros(80)]
    picker = ParticlePicker(48, epochs=2, validation_fraction=0.25, random_state=0,
                            progress=False)
    picker.fit_boxes(boxes, labels)
    first_mask = picker._validation_mask.copy()
    assert np.isnan(picker.hard_negative_accuracy_)
    # particle-like boxes added as negatives, as mining or flagged false picks do
    hard = boxes[:40] + rng.normal(scale=0.1, size=(40, 48, 48)).astype(np.float32)
    picker._fit_boxes(np.concatenate([boxes, hard]), np.r_[labels, np.zeros(40)],
                      picker._rng, warm_start=True, epochs=1)
    from cryoml.picking._training import _rotations

    given = picker._validation_mask[:120]
    np.testing.assert_array_equal(given, first_mask)
    held = np.tile(labels[given], 4)
    right = (picker._predict(_rotations(boxes[given])[..., None]) >= 0.5) == (held == 1)
    assert picker.validation_accuracy_ == pytest.approx(
        np.mean([right[held == c].mean() for c in (0, 1)]))
    added = picker._validation_mask[120:]
    assert added.any()
    scores = picker._predict(_rotations(hard[added])[..., None])
    assert picker.hard_negative_accuracy_ == pytest.approx(np.mean(scores < 0.5))
