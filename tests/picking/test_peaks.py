import numpy as np
import pytest

from cryoml._errors import CryomlError
from cryoml.picking import (
    ScoreMap,
    box_standard_deviations,
    estimate_sd_band,
    fbeta_threshold,
    filter_by_sd,
    find_peaks,
)


def test_peaks_are_local_maxima_above_the_threshold_sorted_by_score():
    scores = np.zeros((10, 10), np.float32)
    scores[2, 2] = 0.9
    scores[7, 6] = 0.7
    scores[5, 5] = 0.3  # below threshold
    peaks = find_peaks(ScoreMap(scores, step=4, box_size=16), threshold=0.5, min_distance=4)
    assert peaks.scores.tolist() == pytest.approx([0.9, 0.7])
    # centre = corner + box / 2 = index * step + 8
    assert peaks.centres.tolist() == [[16.0, 16.0], [36.0, 32.0]]
    assert peaks.box_size == 16


def test_peaks_closer_than_min_distance_keep_only_the_higher_one():
    scores = np.zeros((10, 10), np.float32)
    scores[2, 2] = 0.9
    scores[2, 5] = 0.8  # 3 grid steps = 12 px away, and a local maximum on its own
    score_map = ScoreMap(scores, step=4, box_size=16)
    assert len(find_peaks(score_map, threshold=0.5, min_distance=4)) == 2
    close = find_peaks(score_map, threshold=0.5, min_distance=13)
    assert close.scores.tolist() == pytest.approx([0.9])


def test_f2_threshold_on_a_hand_made_case_favours_recall():
    # 5 true particles; candidates by decreasing score with hit flags:
    scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    hits = [True, True, False, True, False, True, False]
    # threshold 0.5: tp 4 fp 2 -> P 0.667 R 0.8 -> F2 = 5 PR / (4P + R) = 0.769 (the peak);
    # threshold 0.9: P 1.0 R 0.4 -> F2 0.455; 0.7: P 0.75 R 0.6 -> F2 0.625.
    result = fbeta_threshold(scores, hits, n_true=5, beta=2)
    assert result["threshold"] == 0.5
    assert result["precision"] == pytest.approx(4 / 6)
    assert result["recall"] == pytest.approx(0.8)
    assert result["fbeta"] == pytest.approx(5 * (4 / 6) * 0.8 / (4 * (4 / 6) + 0.8))
    # F0.5 weights precision instead and stops earlier.
    assert fbeta_threshold(scores, hits, n_true=5, beta=0.5)["threshold"] == 0.9


def test_sd_band_comes_from_positive_boxes_and_drops_outliers():
    from cryoml.io import Particles

    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (100, 200)).astype(np.float32)
    image[:, 150:] *= 5  # a "carbon" region with much higher s.d.
    band = estimate_sd_band(np.full(50, 1.0) + rng.normal(0, 0.02, 50))
    assert band[0] < 1.0 < band[1] < 1.5
    picks = Particles(np.array([[50.0, 50.0], [50.0, 175.0]]), box_size=20, scores=[0.9, 0.8])
    kept = filter_by_sd(picks, image, band)
    assert kept.centres.tolist() == [[50.0, 50.0]]
    sds = box_standard_deviations(image, picks.centres, 20)
    assert sds[1] > 4 * sds[0]


def test_sd_band_needs_positives():
    with pytest.raises(CryomlError, match="zero positive"):
        estimate_sd_band([])


def test_suppression_is_circular_so_diagonal_touching_peaks_both_survive():
    scores = np.zeros((12, 12), np.float32)
    scores[2, 2] = 0.9
    scores[5, 5] = 0.8  # 3 steps down and right: 12·√2 ≈ 17 px away, inside a 14-px square
    score_map = ScoreMap(scores, step=4, box_size=16)
    assert len(find_peaks(score_map, threshold=0.5, min_distance=14)) == 2
    assert len(find_peaks(score_map, threshold=0.5, min_distance=18)) == 1


def test_crowded_noise_free_field_recall_at_the_default_min_distance():
    from scipy.spatial import cKDTree

    from cryoml.picking import TemplateMatcher, evaluate_picks, match_radius, toy_micrographs

    fields = toy_micrographs(2, shape=(256, 256), box_size=32, n_particles=40, n_decoys=0,
                             snr=1e6, touching_fraction=0.6, random_state=0)
    diameter = fields[0].diameter
    centres = fields[0].particles.centres
    distance, _ = cKDTree(centres).query(centres, k=2)
    assert np.mean(distance[:, 1] <= 1.01 * diameter) >= 0.3  # really crowded
    matcher = TemplateMatcher(32, particle_diameter=diameter, sd_quantiles=None)
    assert matcher._min_distance() == pytest.approx(0.5 * diameter)
    matcher.fit([f.image for f in fields], [f.particles for f in fields])
    evaluation = evaluate_picks([matcher.candidates(f.image) for f in fields],
                                [f.particles for f in fields], radius=match_radius(diameter))
    assert evaluation.curve_recall.max() >= 0.95
