import numpy as np
import pytest

from cryoml.io import Particles, read_coordinates, write_coordinates
from cryoml.picking import evaluate_picks, match_radius, plot_precision_recall


def test_evaluation_counts_matches_within_the_radius():
    truth = np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 90.0]])
    picks = Particles(
        np.array([[12.0, 10.0], [50.0, 58.0], [30.0, 70.0]]), box_size=20, scores=[0.9, 0.8, 0.7]
    )
    result = evaluate_picks(picks, truth, radius=5, threshold=0.0)
    assert (result.n_true_positive, result.n_false_positive, result.n_false_negative) == (1, 2, 2)
    wider = evaluate_picks(picks, truth, radius=10, threshold=0.0)
    assert wider.n_true_positive == 2
    assert wider.precision == pytest.approx(2 / 3)
    assert wider.recall == pytest.approx(2 / 3)
    # AP: hits at ranks 1 and 2 -> recall steps of 1/3 at precision 1
    assert wider.average_precision == pytest.approx(2 / 3)


def test_default_threshold_is_the_f2_peak():
    truth = np.array([[10.0, 10.0], [50.0, 50.0]])
    picks = Particles(
        np.array([[10.0, 10.0], [80.0, 80.0], [50.0, 50.0]]), box_size=20, scores=[0.9, 0.8, 0.1]
    )
    result = evaluate_picks(picks, truth, radius=5)
    assert result.threshold == pytest.approx(0.1)
    assert result.recall == 1.0


def test_match_radius_is_half_the_diameter():
    assert match_radius(40) == 20


def test_pr_curve_is_written_as_png(tmp_path):
    truth = np.array([[10.0, 10.0]])
    picks = Particles(np.array([[10.0, 10.0], [40.0, 40.0]]), box_size=20, scores=[0.9, 0.5])
    result = evaluate_picks(picks, truth, radius=5)
    path = plot_precision_recall({"test": result}, tmp_path / "pr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("suffix", [".box", ".star"])
def test_picks_round_trip_through_box_and_star_files(tmp_path, suffix):
    picks = Particles(
        np.array([[30.0, 40.0], [100.0, 20.0]]), box_size=48, scores=np.array([0.9, 0.7])
    )
    path = write_coordinates(tmp_path / f"mic{suffix}", picks)
    back = read_coordinates(path, box_size=48)
    np.testing.assert_allclose(back.centres, picks.centres)


def test_box_files_store_the_lower_left_corner_as_x_y(tmp_path):
    # EMAN2 .box: "x y w h" with (x, y) = centre - box/2; our centres are (Y, X).
    picks = Particles(np.array([[30.0, 40.0]]), box_size=48, scores=np.array([0.9]))
    path = write_coordinates(tmp_path / "mic.box", picks)
    assert path.read_text().split() == ["16", "6", "48", "48"]


def test_star_files_store_centres_as_x_y(tmp_path):
    import starfile

    picks = Particles(np.array([[30.0, 40.0]]), box_size=48, scores=np.array([0.9]))
    path = write_coordinates(tmp_path / "mic.star", picks, micrograph_name="mic.mrc")
    table = starfile.read(path)
    assert table["rlnCoordinateX"].iloc[0] == 40.0
    assert table["rlnCoordinateY"].iloc[0] == 30.0
    assert table["rlnAutopickFigureOfMerit"].iloc[0] == pytest.approx(0.9)
