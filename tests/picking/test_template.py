import numpy as np
import pytest

from cryoml._errors import CryomlError
from cryoml.picking import TemplateMatcher, evaluate_picks, make_template, template_score_map


def test_ncc_is_one_where_the_template_sits_and_ignores_contrast_and_offset():
    rng = np.random.default_rng(0)
    template = rng.normal(size=(16, 16)).astype(np.float32)
    image = rng.normal(size=(80, 90)).astype(np.float32) * 0.1
    image[30:46, 20:36] = 3.0 * template + 7.0
    score_map = template_score_map(image, template, mask_radius=7.5)
    best = np.unravel_index(np.argmax(score_map.scores), score_map.scores.shape)
    assert best == (30, 20)
    assert score_map.scores[best] == pytest.approx(1.0, abs=0.02)
    assert score_map.scores.max() <= 1.0 + 1e-4


def test_rotational_average_is_isotropic():
    boxes = np.random.default_rng(0).normal(size=(5, 21, 21))
    template = make_template(boxes)
    np.testing.assert_allclose(template, np.rot90(template), atol=1e-6)


def test_template_matcher_finds_toy_particles(toy_set):
    train, test = toy_set[:4], toy_set[5:]
    matcher = TemplateMatcher(48).fit([m.image for m in train], [m.particles for m in train])
    candidates = [matcher.candidates(m.image) for m in test]
    result = evaluate_picks(candidates, [m.particles for m in test], radius=14)
    assert result.average_precision > 0.8


def test_template_must_be_square():
    with pytest.raises(CryomlError, match="square"):
        template_score_map(np.zeros((50, 50)), np.zeros((10, 12)))
