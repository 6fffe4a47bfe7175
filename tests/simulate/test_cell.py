import numpy as np
import pytest

from cryoml import CryomlError
from cryoml.simulate import project_slab, reconstruct_wbp, simulate_cell_tomogram, tilt_angles


@pytest.fixture(scope="module")
def cell():
    # E. coli-like crowding, so that the tiny test volume holds a few ribosomes.
    return simulate_cell_tomogram((32, 96, 96), voxel_size=10.0, snr=0.1, random_state=0,
                                  ribosome_density=40000.0)


def test_cell_tomogram_has_volume_labels_and_particles(cell):
    assert cell.tomogram.shape == (32, 96, 96)
    assert cell.tomogram.voxel_size == 10.0
    assert cell.tomogram.data.dtype == np.float32
    for name in ("membrane", "microtubule", "ribosome", "carbon"):
        assert cell.labels[name].dtype == bool and cell.labels[name].shape == (32, 96, 96)
        assert cell.labels[name].any(), name
    assert len(cell.particles) == len(cell.rotations) >= 1
    assert cell.particles.ndim == 3
    assert set(cell.particles.class_names.values()) >= {cell.params["ribosome"]}


def test_membrane_label_covers_the_dense_bilayer(cell):
    membrane = cell.labels["membrane"] & ~cell.labels["carbon"]
    others = ~membrane & ~cell.labels["carbon"] & ~cell.labels["gold"]
    assert cell.clean[membrane].mean() > 3 * cell.clean[others].mean()


def test_particle_centres_lie_on_their_labelled_density(cell):
    ribosome = cell.labels["ribosome"] | cell.labels["complex"]
    centres = np.rint(cell.particles.centres).astype(int)
    near = [
        ribosome[max(z - 2, 0) : z + 3, max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].any()
        for z, y, x in centres
    ]
    assert np.mean(near) == 1.0


def test_integer_label_volume_names_every_feature(cell):
    volume, names = cell.label_volume()
    assert volume.dtype == np.uint8
    assert names[0] == "carbon"
    assert set(np.unique(volume)) <= set(range(len(names) + 1))


def test_same_seed_gives_the_same_tomogram():
    a = simulate_cell_tomogram((16, 48, 48), random_state=5, snr=0.5)
    b = simulate_cell_tomogram((16, 48, 48), random_state=5, snr=0.5)
    assert np.array_equal(a.tomogram.data, b.tomogram.data)


def test_slab_wbp_recovers_a_bead_where_it_was():
    volume = np.zeros((24, 8, 64), np.float32)
    volume[12, :, 40] = 1.0
    angles = tilt_angles(60, 2)
    recon = reconstruct_wbp(project_slab(volume, angles), angles, thickness=24)
    z, x = np.unravel_index(np.argmax(recon[:, 4]), (24, 64))
    assert (z, x) == (12, 40)


def test_bad_shapes_are_refused():
    with pytest.raises(CryomlError, match="shape"):
        simulate_cell_tomogram((8, 64))


def test_visible_truth_drops_the_faces_the_wedge_hides(cell):
    membrane, visible = cell.labels["membrane"], cell.visible["membrane"]
    assert not np.any(visible & ~membrane)
    fraction = visible.sum() / membrane.sum()
    assert 0.5 < fraction < 0.95
    # Hidden voxels sit where the membrane runs parallel to the slices: their neighbours in
    # the slice plane are membrane too far more often than their neighbours along Z.
    hidden = membrane & ~visible
    along_z = (hidden[1:] & membrane[:-1]).sum() / hidden.sum()
    along_x = (hidden[:, :, 1:] & membrane[:, :, :-1]).sum() / hidden.sum()
    assert along_x > along_z
    assert np.array_equal(cell.visible["ribosome"], cell.labels["ribosome"])
    tube, tube_visible = cell.labels["microtubule"], cell.visible["microtubule"]
    if tube.any():
        assert not np.any(tube_visible & ~tube) and tube_visible.sum() < tube.sum()


def test_others_is_every_other_feature_with_double_membranes_as_membranes(cell):
    others = cell.others("ribosome")
    assert "ribosome" not in others and "double_membrane" not in others
    assert (others["membrane"] >= cell.labels["double_membrane"]).all()  # inside membrane
    np.testing.assert_array_equal(others["microtubule"], cell.labels["microtubule"])
    assert set(cell.others("membrane")) == set(others) - {"membrane"} | {"ribosome"}
    assert all(mask.any() for mask in others.values())
    with pytest.raises(CryomlError, match="unknown feature"):
        cell.others("nucleus")


def test_particles_lie_inside_the_slab_faces():
    # The z faces are the lamella's surfaces: a particle there would be cut in half, and
    # testing only its part inside the volume once made the faces collect most ribosomes.
    cell = simulate_cell_tomogram((64, 128, 128), voxel_size=10.0, snr=None, random_state=1,
                                  ribosome_density=40000.0)
    z = cell.particles.centres[:, 0]
    nz = cell.tomogram.shape[0]
    assert len(z) >= 5
    assert np.minimum(z, nz - 1 - z).min() >= 4
    for name in ("ribosome", "complex"):
        label = cell.labels[name]
        assert not label[0].any() and not label[-1].any(), name


def test_noise_follows_the_cell_not_its_gold_beads():
    # Dense fiducials once raised the noise of the whole tomogram with their number, so
    # tomograms of one SNR showed their ribosomes at different contrast.
    few, many = (simulate_cell_tomogram((24, 64, 64), voxel_size=10.0, snr=0.1, random_state=3,
                                        gold_per_um2=gold) for gold in (0.0, 3000.0))
    assert many.labels["gold"].sum() > 20 * 27  # beads of ~1,000 voxels; well over 20 of them
    assert few.params["noise_sd"] > 0
    assert abs(many.params["noise_sd"] / few.params["noise_sd"] - 1) < 0.1


def test_snr_reference_of_another_shape_is_refused():
    from cryoml.simulate import simulate_tilt_series

    with pytest.raises(CryomlError, match="snr_reference"):
        simulate_tilt_series(np.zeros((8, 16, 16), np.float32), angles=np.array([0.0]),
                             voxel_size=10.0, snr_reference=np.zeros((8, 16, 8), np.float32))
