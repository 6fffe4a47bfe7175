"""A network that collapses to a constant map is trained again from new weights."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from cryoml._errors import CryomlError, CryomlWarning
from cryoml.tomoseg import TomoSegmenter, build_training_set


@pytest.fixture(scope="module")
def stripe_set():
    rng = np.random.default_rng(0)
    mask = np.zeros((4, 160, 96), bool)
    mask[:, 40:44, :] = True
    volume = (mask * 2.0 + rng.normal(0, 0.5, mask.shape)).astype(np.float32)
    positives = np.array([[1, 42, 40], [2, 42, 56]])
    negatives = np.array([[1, 120, 40], [2, 120, 50]])
    return build_training_set(volume, positives, mask, negatives, feature="stripe",
                              voxel_size=10.0, n_copies=2, random_state=0)


def _tiny(**options) -> TomoSegmenter:
    return TomoSegmenter(feature="stripe", architecture="paper", n_filters=2, kernel_size=3,
                         epochs=1, progress=False, random_state=0, **options)


def test_a_constant_network_is_recognised_and_a_learning_one_is_not(stripe_set):
    segmenter = _tiny().fit(stripe_set)
    for weights in segmenter.model_.weights:
        weights.assign(np.zeros(weights.shape, weights.dtype))
    segmenter.model_.weights[-1].assign(np.full(segmenter.model_.weights[-1].shape, 0.3,
                                                segmenter.model_.weights[-1].dtype))
    note = segmenter._collapse_note(stripe_set)
    assert note is not None and "collapsed to a constant map" in note
    learner = TomoSegmenter(feature="stripe", architecture="unet", n_filters=4, epochs=15,
                            learning_rate=3e-3, progress=False, random_state=0).fit(stripe_set)
    assert learner._collapse_note(stripe_set) is None and learner.restarts_used_ == 0


def test_a_collapsed_fit_is_trained_again_from_new_weights(stripe_set, monkeypatch, caplog):
    notes = iter(["gives nearly the same output (test)", None])
    monkeypatch.setattr(TomoSegmenter, "_collapse_note", lambda self, ts: next(notes))
    segmenter = _tiny()
    first_weights = []
    original = TomoSegmenter._build

    def build(self, *args):
        model = original(self, *args)
        first_weights.append([w.copy() for w in model.get_weights()])
        return model

    monkeypatch.setattr(TomoSegmenter, "_build", build)
    with caplog.at_level(logging.WARNING, logger="cryoml"), warnings.catch_warnings():
        warnings.simplefilter("error", CryomlWarning)  # no warning is left: the retry learned
        segmenter.fit(stripe_set)
    assert segmenter.restarts_used_ == 1 and len(first_weights) == 2
    assert "training again from new random weights (restart 1 of 2)" in caplog.text
    assert not all(np.array_equal(a, b) for a, b in zip(*first_weights, strict=True))
    assert len(segmenter.history_["loss"]) == 1  # the history of the fit that is kept


def test_a_network_that_collapses_every_time_warns_once_after_its_restarts(stripe_set,
                                                                           monkeypatch):
    monkeypatch.setattr(TomoSegmenter, "_collapse_note",
                        lambda self, ts: "gives nearly the same output (test)")
    with pytest.warns(CryomlWarning, match="also after 1 restart") as record:
        _tiny(restarts=1).fit(stripe_set)
    assert len([w for w in record if issubclass(w.category, CryomlWarning)]) == 1
    with pytest.warns(CryomlWarning, match=r"output \(test\)\. Train again"):
        _tiny(restarts=0).fit(stripe_set)
    for bad in (-1, 1.5, None, "two"):
        with pytest.raises(CryomlError, match="restarts"):
            _tiny(restarts=bad)
