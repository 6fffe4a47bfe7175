import numpy as np
import pytest

from cryoml import CryomlError, metrics


def test_each_true_particle_is_matched_at_most_once():
    predicted = [[0.0, 0.0], [0.5, 0.0], [20.0, 20.0]]
    true = [[0.2, 0.0]]
    scores = metrics.detection_scores(predicted, true, radius=2.0)
    assert scores["n_true_positive"] == 1
    assert scores["n_false_positive"] == 2
    assert scores["recall"] == 1.0


def test_matching_prefers_the_assignment_that_matches_more_pairs():
    # Greedy nearest matching would pair pick 0 with true 1 and leave true 0 unmatched.
    predicted = [[0.0, 1.0], [0.0, 3.1]]
    true = [[0.0, 0.0], [0.0, 2.0]]
    predicted_index, _true_index = metrics.match_points(predicted, true, radius=1.2)
    assert len(predicted_index) == 2


def test_precision_recall_curve_and_average_precision_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    hits = np.array([True, False, True, False])
    precision, recall, _thresholds = metrics.precision_recall_curve(scores, hits, n_true=4)
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5, 0.5])
    assert metrics.average_precision(precision, recall) == pytest.approx(0.25 + 0.25 * 2 / 3)


def test_average_precision_agrees_with_scikit_learn_when_every_particle_is_scored():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    labels = rng.uniform(size=200) < 0.3
    scores = rng.normal(size=200) + labels
    precision, recall, _ = metrics.precision_recall_curve(scores, labels, int(labels.sum()))
    assert metrics.average_precision(precision, recall) == pytest.approx(
        average_precision_score(labels, scores)
    )


def test_best_f2_threshold_favours_recall():
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.2])
    hits = np.array([True, True, True, True, False])
    best = metrics.best_fbeta_threshold(scores, hits, n_true=4, beta=2.0)
    assert best["threshold"] == 0.3
    assert best["recall"] == 1.0


def test_dice_and_iou_of_known_masks():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:5] = True
    b[2:7] = True
    assert metrics.dice(a, b) == pytest.approx(2 * 30 / 100)
    assert metrics.iou(a, b) == pytest.approx(30 / 70)
    with pytest.raises(CryomlError, match="same shape"):
        metrics.dice(a, b[:5])


def test_fsc_is_one_for_identical_volumes_and_falls_for_independent_noise():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(24, 24, 24))
    _, same = metrics.fsc(volume, volume)
    np.testing.assert_allclose(same[1:], 1.0, atol=1e-9)
    _, noise = metrics.fsc(volume, rng.normal(size=(24, 24, 24)))
    assert np.abs(noise[2:]).max() < 0.4


def test_fsc_resolution_is_where_signal_power_equals_noise_power():
    from cryoml.preprocess import bandpass

    rng = np.random.default_rng(1)
    # Two noisy copies of one low-passed signal: FSC(f) = H(f)² / (H(f)² + σ²). With a Gaussian
    # low-pass at 40 Å, H(1/40 Å)² = e^-1, so noise of s.d. e^-1/2 puts the 0.5 crossing at 40 Å.
    signal = bandpass(rng.normal(size=(48, 48, 48)), voxel_size=10.0, lowpass=40.0)
    sigma = np.exp(-0.5)
    copy_a = signal + sigma * rng.normal(size=signal.shape)
    copy_b = signal + sigma * rng.normal(size=signal.shape)
    resolution = metrics.fsc_resolution(copy_a, copy_b, voxel_size=10.0)
    assert resolution == pytest.approx(40.0, rel=0.15)


def test_fsc_resolution_can_ignore_a_dip_in_the_first_shell():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.normal(size=(24, 24, 24)), 1.0)
    spectrum = np.fft.fftn(volume)
    kz, ky, kx = np.meshgrid(*[np.fft.fftfreq(24)] * 3, indexing="ij")
    shell_1 = np.rint(np.sqrt(kz**2 + ky**2 + kx**2) * 24) == 1
    spectrum[shell_1] *= -1  # anti-correlated in shell 1 only, identical everywhere else
    dipped = np.fft.ifftn(spectrum).real
    assert metrics.fsc(volume, dipped)[1][1] < -0.9
    assert metrics.fsc_resolution(volume, dipped, voxel_size=10.0) > 200  # box-sized
    assert metrics.fsc_resolution(volume, dipped, voxel_size=10.0, first_shell=2) == 20.0
    with pytest.raises(CryomlError, match="first_shell"):
        metrics.fsc_resolution(volume, dipped, voxel_size=10.0, first_shell=12)
