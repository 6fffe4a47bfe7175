import numpy as np
import pytest
from scipy import ndimage

from cryoml._errors import CryomlError
from cryoml.subtomo import XU2017_COMPLEXES, leave_one_out

from .conftest import make_set


def test_the_22_complexes_leave_out_the_ribosome_halves_and_the_largest_maps():
    assert len(XU2017_COMPLEXES) == 22 == len(set(XU2017_COMPLEXES))
    for excluded in ("4v4r_30S", "4v4r_50S", "4v94", "5mrc"):
        assert excluded not in XU2017_COMPLEXES


# one epoch on a tiny set: whether the network learns is not what this test checks
@pytest.mark.filterwarnings("ignore:.*no better than chance")
def test_leave_one_out_runs_end_to_end_and_reports_the_resolution():
    data, labels, shapes = make_set(n_classes=3, n_per_class=10, box=16, noise=0.05, seed=4)
    data = -data  # dense matter dark, as in cryo-ET
    train = np.arange(len(labels)) % 2 == 0
    truth = ndimage.gaussian_filter(shapes[2], 0.5)
    result = leave_one_out(
        (data[train], labels[train]), (data[~train], labels[~train]), 2, truth,
        voxel_size=9.2, tilt_range=None, model="inception3d",
        classifier_options={"epochs": 1, "batch_size": 8}, k=3, n_classes=2, n_iterations=1,
        angular_step=45, lowpass_voxels=4.0, random_state=0,
    )
    assert 1.8 <= result["resolution_nm"] < 100
    # a class of fewer than min_class_size (10) subtomograms is never a success
    assert result["success"] == (result["resolution_nm"] <= 7 and result["class_size"] >= 10)
    assert result["average"].shape == truth.shape
    assert len(result["fsc_frequencies"]) == len(result["fsc"])
    # ignoring shell 1 can only move the first crossing outwards (finer or equal)
    assert result["resolution_nm_from_shell_2"] <= result["resolution_nm"]
    assert len(result["fsc"]) == 8 and result["fsc"][0] == pytest.approx(1, abs=0.2)
    assert 0 < result["cluster_fraction_C"] <= 1
    parts = result["seconds_network"] + result["seconds_averaging"]
    assert 0 < parts == pytest.approx(result["seconds"])
    with pytest.raises(CryomlError, match="lowpass_voxels"):  # reaches the classification
        leave_one_out((data[train], labels[train]), (data[~train], labels[~train]), 2, truth,
                      voxel_size=9.2, tilt_range=None, model="inception3d",
                      classifier_options={"epochs": 1, "batch_size": 8}, k=3,
                      lowpass_voxels="sharp", random_state=0)
    with pytest.raises(CryomlError, match="no member"):
        leave_one_out((data, labels), (data, labels), 7, truth, voxel_size=9.2)


def test_among_equally_pure_classes_the_one_with_most_members_of_c_is_chosen():
    from cryoml.subtomo._discovery import _most_enriched_class

    labels = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2])
    is_c = np.array([True, True, True, True, True, True, True, True, False])
    fractions, best = _most_enriched_class(labels, is_c, 3)
    assert fractions == [1.0, 1.0, pytest.approx(2 / 3)]
    assert best == 1  # 4 members of C, not the first 100 % class with 2
