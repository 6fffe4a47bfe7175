"""PickerEnsemble: averaged score maps, calibration and persistence of several pickers."""

from __future__ import annotations

import numpy as np
import pytest

from cryoml._errors import CryomlError
from cryoml.picking import ParticlePicker, PickerEnsemble, evaluate_picks, load_picker


@pytest.fixture(scope="module")
def ensemble(toy_set):
    train = toy_set[:5]
    template = ParticlePicker(48, epochs=2, random_state=5, progress=False)
    return PickerEnsemble.train(template, [m.image for m in train],
                                [m.particles for m in train], n_models=2)


def test_members_differ_and_the_score_map_is_their_mean(ensemble, toy_set):
    first, second = ensemble.pickers_
    assert first.random_state == 5 and second.random_state == 6
    assert {**first.get_params(), "random_state": 6} == second.get_params()
    image = toy_set[6].image
    maps = [p.score(image) for p in ensemble.pickers_]
    assert not np.allclose(maps[0].scores, maps[1].scores)  # different random starts
    averaged = ensemble.score(image)
    np.testing.assert_allclose(averaged.scores, (maps[0].scores + maps[1].scores) / 2,
                               rtol=1e-6)
    assert averaged.step == maps[0].step and averaged.origin == maps[0].origin


def test_calibrated_ensemble_picks_and_survives_a_round_trip(ensemble, toy_set, tmp_path):
    calibrate, test = toy_set[5:6], toy_set[6:]
    ensemble.calibrate_threshold([m.image for m in calibrate], [m.particles for m in calibrate])
    assert ensemble.calibration_["beta"] == 2.0
    picks = [ensemble.candidates(m.image) for m in test]
    result = evaluate_picks(picks, [m.particles for m in test], radius=12,
                            threshold=ensemble.threshold_)
    assert result.average_precision > 0.5  # the toy rings are easy; chance is far lower
    folder = ensemble.save(tmp_path / "ensemble")
    assert sorted(p.name for p in folder.iterdir())[:2] == ["ensemble.json", "member_0.keras"]
    back = load_picker(folder)
    assert isinstance(back, PickerEnsemble)
    assert back.threshold_ == ensemble.threshold_
    np.testing.assert_allclose(back.score(test[0].image).scores,
                               ensemble.score(test[0].image).scores, rtol=1e-5, atol=1e-6)
    with pytest.raises(CryomlError, match="exists"):
        ensemble.save(folder)


def test_bad_ensembles_are_refused(ensemble, toy_set, tmp_path):
    with pytest.raises(CryomlError, match="at least one"):
        PickerEnsemble([])
    with pytest.raises(CryomlError, match="not fitted"):
        PickerEnsemble([ParticlePicker(48)])
    with pytest.raises(CryomlError, match="n_models"):
        PickerEnsemble.train(ParticlePicker(48), [toy_set[0].image], [toy_set[0].particles],
                             n_models=0)
    other = ParticlePicker(48, dense_step=4, random_state=0, progress=False)
    other.model_, other.architecture_ = ensemble.pickers_[0].model_, \
        ensemble.pickers_[0].architecture_
    other.threshold_, other.sd_band_ = 0.5, None
    with pytest.raises(CryomlError, match="different grids"):
        PickerEnsemble([ensemble.pickers_[0], other]).score(toy_set[0].image)
    with pytest.raises(CryomlError, match="no such file"):
        PickerEnsemble.load(tmp_path)
    with pytest.raises(CryomlError, match="not a saved picker"):
        load_picker(tmp_path / "picks.star")
