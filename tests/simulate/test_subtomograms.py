import numpy as np
import pytest

from cryoml import CryomlError
from cryoml.simulate import (
    SubtomogramSet,
    measure_subtomogram_snr,
    simulate_subtomograms,
    wedge_power_ratio,
    xu2017_conditions,
)

CLASSES = ["ribosome_like", "barrel_d7", "ring_c7"]


@pytest.fixture(scope="module")
def small_set():
    return simulate_subtomograms(CLASSES, 3, snr=0.1, box=24, random_state=0, n_jobs=1)


def test_set_has_labels_poses_and_an_empty_class(small_set):
    assert small_set.data.shape == (12, 24, 24, 24)
    assert small_set.data.dtype == np.float32
    assert small_set.class_names == [*CLASSES, "empty"]
    assert np.bincount(small_set.labels).tolist() == [3, 3, 3, 3]
    rotations = small_set.rotations
    assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-6)
    assert np.allclose(np.linalg.det(rotations), 1)
    assert np.all(np.abs(small_set.shifts) <= 2)
    assert small_set.params["snr"] == 0.1 and small_set.params["tilt_range"] == 60


def test_same_seed_gives_the_same_set_for_any_number_of_jobs():
    one = simulate_subtomograms(CLASSES[:2], 8, snr=0.05, box=16, voxel_size=18,
                                random_state=3, n_jobs=1)
    two = simulate_subtomograms(CLASSES[:2], 8, snr=0.05, box=16, voxel_size=18,
                                random_state=3, n_jobs=2)
    assert np.array_equal(one.data, two.data)
    assert one.params["random_state"] == 3  # recorded, so a saved set can be matched
    other = simulate_subtomograms(CLASSES[:2], 8, snr=0.05, box=16, voxel_size=18,
                                  random_state=4, n_jobs=1)
    assert not np.array_equal(one.data, other.data)


def test_noise_free_reconstruction_has_a_real_missing_wedge():
    clean = simulate_subtomograms(["ribosome_like"], 2, snr=None, box=32, random_state=1,
                                  include_empty=False, n_jobs=1)
    for volume in clean.data:
        assert wedge_power_ratio(volume, tilt_range=60) <= 0.01
        # The density itself (no wedge) has plenty of power there: the ratio is geometry.
    from cryoml.simulate import load_density

    assert wedge_power_ratio(load_density("ribosome_like", voxel_size=9.2, box=32),
                             tilt_range=60) > 0.05


def test_noise_free_subtomogram_resembles_the_rotated_particle():
    from scipy import ndimage

    from cryoml.simulate import load_density

    result = simulate_subtomograms(["dumbbell"], 1, snr=None, box=32, random_state=2,
                                   include_empty=False, n_jobs=1, use_ctf=False, use_mtf=False,
                                   max_shift=0, tilt_range=89, tilt_step=1)
    density = load_density("dumbbell", voxel_size=9.2, box=32)
    rotation = result.rotations[0]
    centre = np.full(3, 16.0)
    rotated = ndimage.affine_transform(density, rotation.T, offset=centre - rotation.T @ centre,
                                       order=1)
    corr = np.corrcoef(result.data[0].ravel(), rotated.ravel())[0, 1]
    assert corr > 0.9


def test_projection_snr_matches_the_request_within_ten_percent():
    measured = measure_subtomogram_snr(CLASSES, snr=0.05, n=24, box=24, random_state=0)
    assert measured["direct"] == pytest.approx(0.05, rel=0.1)
    assert measured["frank_al_ali"] == pytest.approx(0.05, rel=0.1)


def test_set_round_trips_through_npz_and_h5(small_set, tmp_path):
    for name in ("set.npz", "set.h5"):
        path = small_set.save(tmp_path / name)
        back = SubtomogramSet.load(path)
        assert np.array_equal(back.data, small_set.data)
        assert np.array_equal(back.labels, small_set.labels)
        assert back.class_names == small_set.class_names
        assert back.params == small_set.params
    with pytest.raises(CryomlError, match="already exists"):
        small_set.save(tmp_path / "set.npz")


def test_mrc_export_writes_one_stack_per_class(small_set, tmp_path):
    paths = small_set.to_mrc(tmp_path)
    assert len(paths) == 4


def test_xu2017_grid_has_fifteen_conditions():
    grid = xu2017_conditions()
    assert len(grid) == 15
    assert {c["snr"] for c in grid} == {1000, 0.5, 0.1, 0.05, 0.03}


def test_bad_arguments_are_refused():
    with pytest.raises(CryomlError, match="n_per_class"):
        simulate_subtomograms(CLASSES, 0, snr=0.1)
    with pytest.raises(CryomlError, match="class_names"):
        simulate_subtomograms("ring_c7", 1, snr=0.1)
    with pytest.raises(CryomlError, match="tilt_range"):
        simulate_subtomograms(CLASSES, 1, snr=0.1, tilt_range=95)


def test_fourier_drawn_noise_has_the_statistics_of_real_noise_images():
    from cryoml.simulate._subtomograms import _fourier_white_noise

    rng = np.random.default_rng(0)
    box = 16
    drawn = _fourier_white_noise(rng, (400, box, box // 2 + 1), box, 2.0)
    images = np.fft.irfft2(drawn, s=(box, box))
    reference = np.fft.rfft2(rng.standard_normal((400, box, box)) * 2.0)
    assert images.var() == pytest.approx(4.0, rel=0.03)
    assert np.allclose(np.fft.rfft2(images), drawn, atol=1e-3)  # Hermitian: a real image
    for column in (0, 1, box // 2):
        assert np.mean(np.abs(drawn[:, :, column]) ** 2) == pytest.approx(
            np.mean(np.abs(reference[:, :, column]) ** 2), rel=0.1
        )


def test_condition_grid_writes_one_loadable_file_per_condition(tmp_path):
    from cryoml.simulate import simulate_condition_grid

    conditions = [{"snr": 0.5, "tilt_range": 60}, {"snr": 0.03, "tilt_range": 40}]
    paths = simulate_condition_grid(["ring_c7"], 2, conditions=conditions, out_dir=tmp_path,
                                    random_state=0, box=16, voxel_size=18, n_jobs=1)
    assert set(paths) == {(0.5, 60.0), (0.03, 40.0)}
    loaded = SubtomogramSet.load(paths[(0.03, 40.0)])
    assert loaded.params["tilt_range"] == 40 and loaded.params["snr"] == 0.03
    assert len(loaded) == 4


def test_unguarded_script_with_spawned_workers_gets_a_clear_error(tmp_path):
    """A script that loaded an ML framework re-runs in each 'spawn' worker: say so and why."""
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("jax", reason="needs a threaded ML framework to import (jax)")
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        import jax  # a threaded ML framework: workers must then be spawned
        from cryoml import CryomlError
        from cryoml.simulate import simulate_subtomograms
        try:
            simulate_subtomograms(["1bxn"], 12, snr=0.5, box=16, voxel_size=23.0, n_jobs=2,
                                  random_state=0, progress=False)
        except CryomlError as error:
            print("CRYOML-ERROR", error)
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert "CRYOML-ERROR" in result.stdout, result.stderr[-2000:]
    assert "__main__" in result.stdout and "n_jobs=1" in result.stdout


def test_paper_noise_stage_puts_the_particle_band_near_the_nominal_snr():
    """Noise before CTF × MTF (Xu et al. 2017): the 0.05–0.2 cycles/voxel band of the
    reconstructions is within a factor 2 of the nominal SNR; noise after them (detector) leaves
    that band many times cleaner."""
    from cryoml.simulate import measure_band_snr

    classes = ["ribosome_like", "proteasome_like"]
    bands = ((0.05, 0.2), (0.2, 0.5))
    paper = measure_band_snr(classes, snr=0.1, bands=bands, n=16, random_state=0)
    detector = measure_band_snr(classes, snr=0.1, bands=bands, n=16, noise_stage="detector",
                                random_state=0)
    assert 0.05 <= paper["0.05-0.2"] <= 0.2
    assert detector["0.05-0.2"] > 5 * paper["0.05-0.2"]
    assert paper["0.2-0.5"] < 0.1  # high frequencies stay noise-dominated


def test_snr_is_the_requested_one_at_either_noise_stage():
    for stage in ("paper", "detector"):
        measured = measure_subtomogram_snr(CLASSES, snr=0.05, n=12, box=24, noise_stage=stage,
                                           random_state=1)
        assert measured["direct"] == pytest.approx(0.05, rel=0.15), stage


def test_noise_stage_is_recorded_and_checked():
    data = simulate_subtomograms(CLASSES[:1], 2, snr=0.1, box=16, voxel_size=18, n_jobs=1,
                                 random_state=0, noise_stage="detector")
    assert data.params["noise_stage"] == "detector"
    paper = simulate_subtomograms(CLASSES[:1], 2, snr=0.1, box=16, voxel_size=18, n_jobs=1,
                                  random_state=0)
    assert paper.params["noise_stage"] == "paper"
    assert not np.allclose(paper.data, data.data)
    noise_free = simulate_subtomograms(CLASSES[:1], 2, snr=None, box=16, voxel_size=18,
                                       n_jobs=1, random_state=0, noise_stage="detector")
    same = simulate_subtomograms(CLASSES[:1], 2, snr=None, box=16, voxel_size=18, n_jobs=1,
                                 random_state=0)
    assert np.allclose(noise_free.data, same.data, atol=1e-6)  # the order only matters with noise
    with pytest.raises(CryomlError, match="noise_stage"):
        simulate_subtomograms(CLASSES, 1, snr=0.1, noise_stage="before")
