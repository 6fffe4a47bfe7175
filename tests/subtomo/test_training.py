import h5py
import numpy as np
import pytest

from cryoml._errors import CryomlError
from cryoml.subtomo import SubtomoClassifier, augment_batch, classification_report, linear_features


@pytest.fixture(scope="module")
def trained(tiny_set):
    data, labels, _ = tiny_set
    clf = SubtomoClassifier(model="inception3d", recipe="modern", epochs=4, batch_size=8,
                            random_state=0, progress=False)
    return clf.fit(data, labels, class_names=["a", "b", "c"])


def test_fit_records_history_and_learns_the_tiny_classes(trained, tiny_set):
    data, labels, _ = tiny_set
    assert len(trained.history_["loss"]) == 4
    report = trained.evaluate(data, labels)
    assert report["accuracy"] > 0.5
    assert np.array(report["confusion_matrix"]).sum() == len(labels)
    assert len(report["per_class_recall"]) == 3


def test_predict_before_fit_says_how_to_fix_it(tiny_set):
    with pytest.raises(CryomlError, match="fit"):
        SubtomoClassifier().predict(tiny_set[0])


def test_linear_features_read_the_logits_and_a_hidden_layer(trained, tiny_set):
    data = tiny_set[0]
    logits = linear_features(trained, data)
    assert logits.shape == (len(data), 3)
    probabilities = trained.predict_proba(data)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), probabilities, atol=1e-4)
    assert linear_features(trained, data, layer="flatten").shape == (len(data), 5**3 * 160)
    with pytest.raises(CryomlError, match="no layer"):
        linear_features(trained, data, layer="nope")


def test_save_and_load_give_the_same_predictions(trained, tiny_set, tmp_path):
    path = trained.save(tmp_path / "net.keras")
    loaded = SubtomoClassifier.load(path, progress=False)
    np.testing.assert_allclose(
        loaded.predict_proba(tiny_set[0]), trained.predict_proba(tiny_set[0]), atol=1e-5
    )
    assert loaded.class_names_ == ["a", "b", "c"]
    with pytest.raises(CryomlError, match=r"exists|overwrite"):
        trained.save(path)


def test_paper_recipe_trains_dsrf3d_from_an_hdf5_file_with_a_checkpoint(tiny_set, tmp_path):
    data, labels, _ = tiny_set
    with h5py.File(tmp_path / "set.h5", "w") as handle:
        handle.create_dataset("data", data=data, chunks=(1, 16, 16, 16))
        handle.create_dataset("labels", data=labels)
    checkpoint = tmp_path / "best.keras"
    clf = SubtomoClassifier(model="dsrf3d", epochs=1, batch_size=8, checkpoint=checkpoint,
                            random_state=1, progress=False).fit(tmp_path / "set.h5")
    assert checkpoint.is_file()
    assert clf.predict(tmp_path / "set.h5").shape == labels.shape
    assert clf.settings_["optimizer"] == "sgd_nesterov"


def test_model_options_reach_the_builder_and_survive_save(tiny_set, tmp_path):
    data, labels, _ = tiny_set
    clf = SubtomoClassifier(model="dsrf3d", epochs=1, batch_size=8, random_state=0,
                            progress=False, model_options={"dropout": 0.0, "n_dense": 16})
    clf.fit(data, labels)
    names = [layer.name for layer in clf.model_.layers]
    assert "dropout1" not in names
    assert clf.model_.get_layer("fc1").units == 16
    loaded = SubtomoClassifier.load(clf.save(tmp_path / "net.keras"), progress=False)
    assert loaded.model_options == {"dropout": 0.0, "n_dense": 16}
    with pytest.raises(CryomlError, match=r"no option 'width'.*dropout"):
        SubtomoClassifier(model="dsrf3d", model_options={"width": 2}).fit(data, labels)


def test_interrupted_training_keeps_the_best_weights(tiny_set, monkeypatch):
    import keras

    data, labels, _ = tiny_set
    real_fit = keras.Model.fit

    def fit_then_interrupt(self, *args, **kwargs):
        kwargs["epochs"] = 1
        real_fit(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "fit", fit_then_interrupt)
    clf = SubtomoClassifier(model="inception3d", epochs=5, batch_size=8, random_state=0,
                            progress=False).fit(data, labels)
    assert clf.interrupted_
    assert len(clf.history_["loss"]) == 1
    assert clf.predict(data).shape == labels.shape


def test_bad_settings_are_refused_with_the_choices():
    with pytest.raises(CryomlError, match="inception3d"):
        SubtomoClassifier(model="vgg")._settings()
    with pytest.raises(CryomlError, match="modern"):
        SubtomoClassifier(recipe="fast")._settings()


def test_wedge_augmentation_keeps_the_missing_wedge_in_place():
    from cryoml.subtomo import wedge_mask

    rng = np.random.default_rng(0)
    mask = wedge_mask((12, 12, 12), 45, rfft=False)
    volume = np.fft.ifftn(np.fft.fftn(rng.normal(size=(12, 12, 12))) * mask).real
    batch = augment_batch(np.repeat(volume[None], 16, 0).astype(np.float32), "wedge", rng)
    for rotated in batch:
        power = np.abs(np.fft.fftn(np.roll(rotated, 1, axis=(0, 1, 2)))) ** 2
        assert power[~mask].sum() < 1e-6 * power.sum()


def test_classification_report_counts_per_class_recall():
    report = classification_report(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), n_classes=3)
    assert report["per_class_recall"] == [1.0, 0.0, 1.0]
    assert report["confusion_matrix"][1] == [0, 0, 1]


def test_a_network_that_cannot_learn_warns_that_it_is_at_chance(tiny_set):
    from cryoml._errors import CryomlWarning

    data, labels, _ = tiny_set
    blank = np.zeros_like(data)  # nothing to tell the classes apart
    clf = SubtomoClassifier(model="inception3d", epochs=1, batch_size=8, random_state=0,
                            progress=False)
    with pytest.warns(CryomlWarning, match=r"chance.*normalize=False"):
        clf.fit(blank, labels)


def test_the_chance_check_reads_the_best_epoch_and_skips_sets_too_small_to_tell():
    import warnings

    from cryoml._errors import CryomlWarning

    clf = SubtomoClassifier(model="dsrf3d")
    clf.n_classes_ = 3
    labels = np.repeat([0, 1, 2], 10)
    clf.history_ = {"accuracy": [0.3, 0.34], "val_accuracy": [0.30, 0.34],
                    "loss": [], "val_loss": []}
    with pytest.warns(CryomlWarning, match="best val_accuracy 0.340 is no better than chance"):
        clf._warn_if_at_chance(labels, labels)
    clf.settings_ = {"optimizer": "sgd_nesterov"}  # DSRF3D on the paper's SGD: say what learned
    with pytest.warns(CryomlWarning, match=r"recipe='modern', learning_rate=1e-4"):
        clf._warn_if_at_chance(labels, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryomlWarning)
        clf._warn_if_at_chance(labels[:15], labels)  # 15 training subtomograms: cannot tell
        clf.history_["val_accuracy"] = [0.3, 0.9]  # learned, by the validation data
        clf._warn_if_at_chance(labels, labels)
        clf.history_["accuracy"] = [0.3, 0.8]  # learned, by the training data
        clf._warn_if_at_chance(labels, None)
