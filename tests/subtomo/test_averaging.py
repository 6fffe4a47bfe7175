import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from cryoml import CryomlError
from cryoml.subtomo import (
    align_to_reference,
    average_aligned,
    classify_and_average,
    fsc_resolution_nm,
    rotate_volume,
    wedge_mask,
)

from .conftest import blob_shapes


def _with_wedge(volume, tilt_range):
    mask = wedge_mask(volume.shape, tilt_range)
    filtered = np.fft.irfftn(np.fft.rfftn(volume) * mask, s=volume.shape, axes=(0, 1, 2))
    return filtered.astype(np.float32)


@pytest.fixture(scope="module")
def shape():
    return ndimage.gaussian_filter(blob_shapes(1, 24, seed=7)[0], 0.7)


def test_fsc_of_identical_volumes_is_one_and_of_noise_near_zero():
    from cryoml.metrics import fsc

    rng = np.random.default_rng(0)
    a = rng.normal(size=(24, 24, 24))
    _, curve = fsc(a, a)
    assert np.allclose(curve, 1)
    _, noise = fsc(a, rng.normal(size=(24, 24, 24)))
    assert np.abs(noise[2:]).mean() < 0.1
    assert fsc_resolution_nm(a, a, voxel_size=9.2) == pytest.approx(1.84)


def test_alignment_recovers_a_known_rotation_and_shift_despite_the_wedge(shape):
    truth = Rotation.from_euler("zyx", [40, 70, -25], degrees=True).as_matrix()
    moved = _with_wedge(rotate_volume(shape, truth, shift=(1, -2, 1), order=3), 60)
    found = align_to_reference(moved, shape, tilt_range=60, angular_step=30)
    error = np.degrees(Rotation.from_matrix(found.rotations[0] @ truth.T).magnitude())
    assert error < 8
    np.testing.assert_allclose(found.shifts[0], [1, -2, 1], atol=0.7)


def test_wedge_mask_observes_the_tilt_range():
    mask = wedge_mask((32, 32, 32), 60, rfft=False)
    kz, kx = 8, 2  # 76° from the X axis: missing
    assert not mask[kz, 0, kx]
    assert mask[2, 0, 8]
    assert wedge_mask((8, 8, 8), None).all()


def test_classification_separates_two_shapes_and_averages_them():
    rng = np.random.default_rng(3)
    shapes = ndimage.gaussian_filter(blob_shapes(2, 20, seed=11), (0, 0.7, 0.7, 0.7))
    volumes, labels = [], []
    for label in (0, 1):
        for matrix in Rotation.random(5, random_state=rng.integers(1000)).as_matrix():
            volume = _with_wedge(rotate_volume(shapes[label], matrix, order=3), 60)
            volumes.append(volume + rng.normal(0, 0.02, volume.shape))
            labels.append(label)
    labels = np.array(labels)
    result = classify_and_average(np.array(volumes, np.float32), 2, n_iterations=1,
                                  tilt_range=60, angular_step=40, random_state=0)
    agreement = np.mean(result.labels == labels)
    assert max(agreement, 1 - agreement) == 1.0
    for k in range(2):
        truth = shapes[np.bincount(labels[result.labels == k]).argmax()]
        pose = align_to_reference(result.averages[k], truth, tilt_range=None, angular_step=30)
        aligned = average_aligned(result.averages[k][None], pose.rotations, pose.shifts,
                                  tilt_range=None)
        assert np.corrcoef(aligned.ravel(), truth.ravel())[0, 1] > 0.8


def test_threads_do_not_change_classification_or_averages():
    rng = np.random.default_rng(5)
    shapes = ndimage.gaussian_filter(blob_shapes(2, 16, seed=3), (0, 0.7, 0.7, 0.7))
    volumes = np.array([
        _with_wedge(rotate_volume(shapes[i % 2], matrix, order=3), 60)
        + rng.normal(0, 0.02, (16, 16, 16))
        for i, matrix in enumerate(Rotation.random(6, random_state=1).as_matrix())
    ], np.float32)
    options = dict(n_iterations=1, tilt_range=60, angular_step=45, random_state=0)
    serial = classify_and_average(volumes, 2, n_jobs=None, **options)
    threaded = classify_and_average(volumes, 2, n_jobs=3, **options)
    np.testing.assert_array_equal(serial.labels, threaded.labels)
    np.testing.assert_array_equal(serial.alignment.rotations, threaded.alignment.rotations)
    np.testing.assert_allclose(serial.averages, threaded.averages, rtol=0, atol=1e-6)


def test_bad_thread_counts_are_refused(shape):
    from cryoml import CryomlError

    with pytest.raises(CryomlError, match="n_jobs"):
        align_to_reference(shape, shape, n_jobs=0)


def test_classes_that_empty_are_reseeded_and_keep_a_member(shape):
    # identical copies score the same against every average, so all fall into the first class;
    # the other two must each get one member back (a second empty class used to steal the
    # member just given to the first, and averaging an empty class failed)
    volumes = np.repeat(shape[None], 6, axis=0)
    result = classify_and_average(volumes, 3, n_iterations=2, tilt_range=None,
                                  angular_step=60, random_state=0)
    assert result.sizes.sum() == 6 and np.all(result.sizes >= 1)
    assert np.all(np.isfinite(result.averages))


def test_reseeding_takes_the_worst_fits_from_classes_that_stay_filled():
    from cryoml.subtomo._averaging import _reseed_empty_classes

    labels = np.array([0, 0, 0, 1, 0])
    scores = np.array([0.9, 0.2, 0.8, 0.1, 0.5])
    # class 2 and 3 are empty; subtomogram 3 is the worst but alone in class 1
    assert _reseed_empty_classes(labels, scores, 4) == [(2, 1), (3, 4)]


def test_coverage_floor_keeps_sparsely_observed_voxels_from_amplifying_noise(shape):
    from cryoml.metrics import fsc

    rng = np.random.default_rng(2)
    # nine volumes in one orientation and one turned 90° about X: the voxels only the tenth
    # observes are divided by 1 under full compensation, by 5 under the 0.5 floor
    turn = Rotation.from_euler("x", 90, degrees=True).as_matrix()
    rotations = np.array([np.eye(3)] * 9 + [turn])
    volumes = np.array([
        _with_wedge(rotate_volume(shape, r, order=3), 60) + rng.normal(0, 0.5, shape.shape)
        for r in rotations
    ], np.float32)
    shifts = np.zeros((10, 3))
    full = average_aligned(volumes, rotations, shifts, tilt_range=60, min_coverage=0.0)
    floored = average_aligned(volumes, rotations, shifts, tilt_range=60)
    assert np.mean(fsc(floored, shape)[1][1:8]) > np.mean(fsc(full, shape)[1][1:8]) + 0.05
    plain = average_aligned(volumes, rotations, shifts, tilt_range=60, min_coverage=1.0)
    moved_back = [rotate_volume(volumes[i], rotations[i], inverse=True) for i in range(10)]
    np.testing.assert_allclose(plain, np.mean(moved_back, axis=0), atol=1e-4)


def test_coverage_floor_outside_zero_to_one_is_refused(shape):
    from cryoml import CryomlError

    with pytest.raises(CryomlError, match="min_coverage"):
        average_aligned(shape[None], np.eye(3)[None], np.zeros((1, 3)), min_coverage=2)


def test_references_rotated_in_fourier_space_match_rotation_in_real_space(shape):
    from cryoml.subtomo._averaging import _Aligner

    aligner = _Aligner(shape.shape, tilt_range=60, bin_factor=1, lowpass_voxels=3,
                       max_shift=2, angular_step=40, n_jobs=1)
    rotations = Rotation.random(3, random_state=2).as_matrix()
    sampled = aligner._rotated_reference_spectra(aligner.transform(shape), rotations)
    for rotation, spectrum in zip(rotations, sampled, strict=True):
        direct = np.fft.rfftn(rotate_volume(shape, rotation, order=3)) * aligner.weight
        overlap = np.vdot(direct, spectrum).real
        assert overlap / (np.linalg.norm(direct) * np.linalg.norm(spectrum)) > 0.995
        assert not np.any(spectrum[aligner.weight == 0])



def test_binned_search_uses_frequencies_up_to_the_lowpass_in_full_size_voxels():
    from cryoml.subtomo._averaging import _Aligner

    aligner = _Aligner((40, 40, 40), tilt_range=None, bin_factor=2, lowpass_voxels=8,
                       max_shift=2, angular_step=40, n_jobs=1)
    # support_k is in cycles per binned voxel; a binned voxel is two full-size voxels
    radius = np.linalg.norm(aligner.support_k, axis=0) / 2
    assert radius.max() == pytest.approx(1 / 8, abs=1 / 40)


def test_half_set_band_follows_what_the_members_agree_on(shape):
    # Aligned, nearly clean copies agree to Nyquist: the finest cut (3 voxels). Pure noise
    # agrees nowhere: the coarsest (10 voxels). Fewer than 4 members: no change (None).
    from cryoml.subtomo._averaging import _AUTO_BAND_LIMITS, _half_set_band

    rng = np.random.default_rng(0)
    poses = np.repeat(np.eye(3)[None], 8, axis=0), np.zeros((8, 3))
    clean = np.array([shape + rng.normal(0, 0.001, shape.shape) for _ in range(8)], np.float32)
    noise = rng.normal(0, 1, (8, *shape.shape)).astype(np.float32)
    members = np.arange(8)
    assert _half_set_band(clean, members, *poses, None, None) == _AUTO_BAND_LIMITS[0]
    assert _half_set_band(noise, members, *poses, None, None) == _AUTO_BAND_LIMITS[1]
    assert _half_set_band(clean, members[:3], *poses, None, None) is None


def test_adaptive_alignment_band_is_recorded_and_bad_values_refused(shape):
    rng = np.random.default_rng(2)
    volumes = np.array([
        _with_wedge(rotate_volume(shape, matrix, order=3), 60) + rng.normal(0, 0.02, shape.shape)
        for matrix in Rotation.random(6, random_state=4).as_matrix()
    ], np.float32)
    result = classify_and_average(volumes, 1, n_iterations=2, tilt_range=60, angular_step=45,
                                  random_state=0)
    bands = [step["lowpass_voxels"] for step in result.history]
    assert bands[0] == 24 / 5  # the coarse start: the 5th shell of a 24³ box
    assert bands[1] < bands[0]  # near-clean members agree finer: the cut moves out
    fixed = classify_and_average(volumes, 1, n_iterations=1, tilt_range=60, angular_step=45,
                                 lowpass_voxels=3.0, random_state=0)
    assert fixed.history[0]["lowpass_voxels"] == 3.0
    for bad in ("fine", -2.0):
        with pytest.raises(CryomlError, match="lowpass_voxels"):
            classify_and_average(volumes, 1, n_iterations=1, lowpass_voxels=bad)
