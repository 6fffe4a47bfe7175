import numpy as np
import pytest

from cryoml import CryomlError, io


def _particles(ndim, n=5, seed=0, box_size=32):
    rng = np.random.default_rng(seed)
    centres = np.round(rng.uniform(20, 200, size=(n, ndim)))
    return io.Particles(
        centres,
        box_size=box_size,
        scores=rng.uniform(size=n),
        classes=rng.integers(0, 3, size=n),
    )


@pytest.mark.parametrize("suffix", [".box", ".json", ".star", ".csv"])
def test_two_dimensional_coordinates_round_trip(tmp_path, suffix):
    particles = _particles(2)
    io.write_coordinates(tmp_path / f"p{suffix}", particles)
    back = io.read_coordinates(tmp_path / f"p{suffix}", box_size=32)
    np.testing.assert_allclose(back.centres, particles.centres, atol=1e-6)
    assert back.box_size == 32


@pytest.mark.parametrize("suffix", [".json", ".star", ".csv"])
def test_three_dimensional_coordinates_round_trip_with_scores_and_classes(tmp_path, suffix):
    particles = _particles(3)
    io.write_coordinates(tmp_path / f"p{suffix}", particles)
    back = io.read_coordinates(tmp_path / f"p{suffix}")
    np.testing.assert_allclose(back.centres, particles.centres, atol=1e-6)
    np.testing.assert_array_equal(back.classes, particles.classes)
    np.testing.assert_allclose(back.scores, particles.scores, rtol=1e-5)


def test_box_file_holds_lower_left_corner_in_x_y_order(tmp_path):
    # A centre at row 100, column 40 with a 20-px box has its corner at x=30, y=90.
    io.write_coordinates(tmp_path / "a.box", io.Particles([[100.0, 40.0]], box_size=20))
    assert (tmp_path / "a.box").read_text().split() == ["30", "90", "20", "20"]


def test_star_file_holds_centres_in_x_y_z_order(tmp_path):
    import starfile

    io.write_coordinates(tmp_path / "a.star", io.Particles([[5.0, 6.0, 7.0]]))
    table = starfile.read(tmp_path / "a.star")
    row = table.iloc[0]
    assert (row.rlnCoordinateX, row.rlnCoordinateY, row.rlnCoordinateZ) == (7.0, 6.0, 5.0)


def test_eman2_json_boxes_3d_are_x_y_z_centres(tmp_path):
    import json

    io.write_coordinates(
        tmp_path / "a.json", io.Particles([[5.0, 6.0, 7.0]], box_size=24, class_names={0: "ribo"})
    )
    info = json.loads((tmp_path / "a.json").read_text())
    assert info["boxes_3d"][0][:3] == [7.0, 6.0, 5.0]
    assert info["class_list"]["0"] == {"name": "ribo", "boxsize": 24}


def test_real_relion_star_with_2d_coordinates_reads(reference_data):
    particles = io.read_coordinates(
        reference_data / "particles" / "ay19102021_ribo_sta_testing.star"
    )
    assert particles.ndim == 2
    assert len(particles) > 100


def test_boxes_inside_the_image_pass_and_outside_ones_are_named():
    inside = io.Particles([[20.0, 20.0]], box_size=16)
    io.check_boxes_inside(inside, (64, 64))
    outside = io.Particles([[20.0, 20.0], [60.0, 5.0]], box_size=16)
    with pytest.raises(CryomlError, match="1 of 2 boxes"):
        io.check_boxes_inside(outside, (64, 64))
