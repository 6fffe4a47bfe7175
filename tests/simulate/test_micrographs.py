import numpy as np
import pytest

from cryoml import CryomlError
from cryoml.simulate import simulate_micrographs


@pytest.fixture(scope="module")
def micrographs():
    return simulate_micrographs(
        2, shape=(384, 384), pixel_size=6.0, particle="ribosome_like", snr=0.5,
        n_particles=14, overlap_fraction=0.3, aggregate_fraction=0.3, random_state=0,
    )


def test_micrographs_have_images_and_ground_truth(micrographs):
    for micrograph in micrographs:
        assert micrograph.image.shape == (384, 384)
        assert micrograph.image.voxel_size == 6.0
        assert micrograph.image.data.dtype == np.float32
        assert micrograph.particles.ndim == 2
        assert len(micrograph.particles) == micrograph.good.sum() <= len(micrograph.all_particles)
        assert set(micrograph.flags) == {"overlapped", "aggregated", "on_carbon",
                                         "on_contamination"}


def test_overlapped_and_aggregated_particles_are_flagged_and_not_good(micrographs):
    flagged = sum(int((m.flags["overlapped"] | m.flags["aggregated"]).sum()) for m in micrographs)
    assert flagged >= 4
    for micrograph in micrographs:
        centres = micrograph.all_particles.centres
        distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        np.fill_diagonal(distance, np.inf)
        diameter = micrograph.params["particle_diameter_A"] / 6.0
        crowded = distance.min(axis=1) < 0.85 * diameter
        assert not np.any(crowded & micrograph.good)


def test_particles_are_dark_at_their_true_centres(micrographs):
    micrograph = micrographs[0]
    clean = micrograph.clean
    centres = np.rint(micrograph.particles.centres).astype(int)
    values = clean[centres[:, 0], centres[:, 1]]
    background = np.median(clean)
    assert np.mean(values < background) > 0.7


def test_noise_matches_the_requested_snr(micrographs):
    micrograph = micrographs[0]
    noise = micrograph.image.data - micrograph.clean
    noise = noise - np.median(noise)
    measured = micrograph.params["signal_variance"] / float(np.var(noise))
    assert measured == pytest.approx(0.5, rel=0.15)


def test_bad_arguments_are_refused():
    with pytest.raises(CryomlError, match="views"):
        simulate_micrographs(1, shape=(128, 128), views="sideways")
    with pytest.raises(CryomlError, match="snr"):
        simulate_micrographs(1, shape=(128, 128), snr=0)


def test_few_particles_still_give_the_requested_share_of_overlaps_on_average():
    # 6 particles × 0.1 / 2 = 0.3 pairs per micrograph: rounding to the nearest would place none.
    micrographs = simulate_micrographs(
        30, shape=(192, 192), pixel_size=12.0, particle="ribosome_like", snr=1.0,
        n_particles=6, overlap_fraction=0.1, aggregate_fraction=0.0, random_state=1,
    )
    pairs = sum(int(m.flags["overlapped"].sum()) for m in micrographs) / 2
    assert 3 <= pairs <= 16  # expected 9


def test_a_crowded_field_keeps_its_pairs_and_aggregates():
    # Room for ~15 of 60 requested particles: crowding must not remove the flagged kinds first.
    micrographs = simulate_micrographs(
        5, shape=(192, 192), pixel_size=12.0, particle="ribosome_like", snr=1.0,
        n_particles=60, overlap_fraction=0.3, aggregate_fraction=0.3, random_state=2,
    )
    assert sum(int(m.flags["overlapped"].sum()) for m in micrographs) >= 6
    assert sum(int(m.flags["aggregated"].sum()) for m in micrographs) >= 6
