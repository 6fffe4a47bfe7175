"""calibrate_extraction: the threshold and least mass chosen on an annotated output (issue 20)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from cryoml import io
from cryoml._errors import CryomlError
from cryoml.metrics import match_points
from cryoml.tomoseg import ExtractionCalibration, calibrate_extraction, extract_particles

SHAPE = (32, 64, 64)
BOX = 12
TRUE = np.array([[12, 14, 14], [12, 14, 46], [20, 46, 14], [20, 46, 46], [16, 30, 30]], float)
SPECKS = np.array([[10, 30, 12], [22, 12, 30], [20, 30, 50], [8, 50, 30]])


def _volume(seed: int = 0) -> np.ndarray:
    """Ball-shaped blobs (mass ~250) on the true centres, cubic specks of 4³ = 64 voxels with
    higher peaks elsewhere, and weak noise (no ties between voxels)."""
    rng = np.random.default_rng(seed)
    volume = rng.uniform(0, 0.1, SHAPE).astype(np.float32)
    zz, yy, xx = np.indices(SHAPE)
    for z, y, x in TRUE:
        r2 = (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2
        volume += np.where(r2 < 16, 2.0 - 0.05 * r2, 0).astype(np.float32)
    for z, y, x in SPECKS:
        volume[z : z + 4, y : y + 4, x : x + 4] += 3.0
    return volume


def test_calibration_picks_the_mass_that_removes_the_small_false_blobs():
    volume = _volume()
    result = calibrate_extraction(volume, TRUE, box_size=BOX)
    assert isinstance(result, ExtractionCalibration)
    # EMAN2's default (threshold 1, mass > 20) keeps the 64-voxel specks as picks.
    default = extract_particles(volume, box_size=BOX)
    assert len(default) == len(TRUE) + len(SPECKS)
    j = list(result.min_masses).index(20)
    i = list(result.thresholds).index(1.0)
    assert result.precisions[i, j] == pytest.approx(len(TRUE) / len(default))
    # The calibrated mass drops them and keeps every particle.
    assert 64 <= result.min_mass < 250
    assert (result.precision, result.recall, result.fbeta) == (1.0, 1.0, 1.0)
    assert result.n_picks == result.n_true == len(TRUE)
    picks = extract_particles(volume, **result.extract_kwargs)
    matched, _ = match_points(picks.centres, TRUE, result.radius)
    assert len(picks) == len(matched) == len(TRUE)
    # Defaults: radius box/2, EMAN2's 20 in the mass grid, the result serialisable.
    assert result.radius == BOX / 2 and 20 in result.min_masses and 1.0 in result.thresholds
    summary = result.to_dict()
    assert summary["min_mass"] == result.min_mass and len(summary["fbetas"]) == len(
        result.thresholds
    )


@pytest.mark.parametrize("plateau", [False, True])
def test_every_grid_point_scores_exactly_the_picks_of_extract_particles(plateau):
    volume = _volume(1)
    if plateau:  # a saturated output: many equal maxima per blob
        volume = np.minimum(volume, 1.5)
    thresholds, masses = (0.05, 0.5, 1.0, 1.6), (0, 20, 63, 64, 100, 300)
    result = calibrate_extraction(
        volume, TRUE, box_size=BOX, radius=4.0, thresholds=thresholds, min_masses=masses,
        min_distance=5.0, edge=3.0, beta=2.0,
    )
    truth = TRUE  # all at least 3 voxels from every face
    for i, t in enumerate(thresholds):
        for j, m in enumerate(masses):
            picks = extract_particles(
                volume, box_size=BOX, threshold=t, min_mass=m, min_distance=5.0, edge=3.0
            )
            matched, _ = match_points(picks.centres, truth, 4.0) if len(picks) else ([], [])
            assert result.picks[i, j] == len(picks), (t, m)
            precision = len(matched) / len(picks) if len(picks) else 0.0
            assert result.precisions[i, j] == precision, (t, m)
            assert result.recalls[i, j] == len(matched) / len(truth), (t, m)
    assert result.fbeta == result.fbetas.max() > 0 and result.beta == 2.0
    assert result.extract_kwargs == {
        "box_size": BOX, "threshold": result.threshold, "min_mass": result.min_mass,
        "min_distance": 5.0, "edge": 3.0, "smooth": 0.0,
    }


def test_centres_at_the_edge_are_left_out_and_particles_are_accepted():
    volume = _volume()
    centres = np.vstack([TRUE, [[1, 30, 30]]])  # within box/2 of a face: cannot be picked
    result = calibrate_extraction(volume, io.Particles(centres), box_size=BOX)
    assert result.n_true == len(TRUE) and result.recall == 1.0


def test_no_right_pick_anywhere_returns_the_first_grid_point():
    volume = _volume()
    result = calibrate_extraction(volume, [[16, 8, 56]], box_size=BOX, min_masses=[20, 100])
    assert (result.threshold, result.min_mass, result.fbeta) == (0.3, 20, 0.0)


def test_bad_input_is_refused_with_a_clear_message():
    volume = _volume()
    with pytest.raises(CryomlError, match="no true centres"):
        calibrate_extraction(volume, np.zeros((0, 3)), box_size=BOX)
    with pytest.raises(CryomlError, match="no true centres"):
        calibrate_extraction(volume, io.Particles(np.zeros((0, 3))), box_size=BOX)
    with pytest.raises(CryomlError, match="output"):
        calibrate_extraction(volume[0], TRUE, box_size=BOX)
    with pytest.raises(CryomlError, match=r"\(N, 3\)"):
        calibrate_extraction(volume, TRUE[:, 1:], box_size=BOX)
    with pytest.raises(CryomlError, match="from every face"):
        calibrate_extraction(volume, [[0, 0, 0]], box_size=BOX)
    with pytest.raises(CryomlError, match="thresholds"):
        calibrate_extraction(volume, TRUE, box_size=BOX, thresholds=[])
    with pytest.raises(CryomlError, match="min_masses"):
        calibrate_extraction(volume, TRUE, box_size=BOX, min_masses=[-1, 20])
    with pytest.raises(CryomlError, match="beta"):
        calibrate_extraction(volume, TRUE, box_size=BOX, beta=0)
    with pytest.raises(CryomlError, match="radius"):
        calibrate_extraction(volume, TRUE, box_size=BOX, radius=-1)


def _cli(*argv: str) -> int:
    from cryoml.cli import tomoseg as cli

    parser = argparse.ArgumentParser()
    cli.add_args(parser)
    return cli.main(parser.parse_args(list(argv)))


def test_cli_extract_calibrates_on_an_annotated_output_first(tmp_path, capsys):
    a = io.write_mrc(tmp_path / "a.mrc", _volume(0), voxel_size=10.0)
    b = io.write_mrc(tmp_path / "b.mrc", _volume(2), voxel_size=10.0)
    coords = io.write_coordinates(tmp_path / "a.star", io.Particles(TRUE))
    out = tmp_path / "b.star"
    base = ("extract", str(b), "--box", str(BOX), "-o", str(out))
    assert _cli(*base, "--calibrate-on", str(a), "--calibrate-coords", str(coords)) == 0
    printed = capsys.readouterr().out
    assert "calibrated on" in printed and "min mass 108" in printed
    assert len(io.read_coordinates(out)) == len(TRUE)
    with pytest.raises(CryomlError, match="not both"):
        _cli(*base, "--overwrite", "--calibrate-on", str(a), "--calibrate-coords", str(coords),
             "--threshold", "1.2")
    with pytest.raises(CryomlError, match="needs --calibrate-coords"):
        _cli(*base, "--overwrite", "--calibrate-on", str(a))
    with pytest.raises(CryomlError, match="need --calibrate-on"):
        _cli(*base, "--overwrite", "--calibrate-coords", str(coords))
    # Without calibration, EMAN2's defaults keep the specks.
    assert _cli(*base, "--overwrite") == 0
    assert len(io.read_coordinates(out)) == len(TRUE) + len(SPECKS)


def _slice_by_slice_particle() -> np.ndarray:
    """One ball-shaped particle (radius 5) answered on every other slice only, as a 2D
    network's output can break up from slice to slice: discs of ~80 voxels, no bigger piece."""
    zz, yy, xx = np.indices(SHAPE)
    r2 = (zz - 16) ** 2 + (yy - 32) ** 2 + (xx - 32) ** 2
    volume = np.where(r2 <= 25, 2.0 - 0.02 * r2, 0.0).astype(np.float32)
    volume[1::2] = 0.0
    return volume


def test_smoothing_joins_a_particle_broken_from_slice_to_slice(tmp_path):
    volume = _slice_by_slice_particle()
    cut = {"box_size": BOX, "threshold": 0.5, "min_mass": 150}
    assert len(extract_particles(volume, **cut)) == 0  # every piece is below the mass
    picks = extract_particles(volume, **cut, smooth=1.0)
    assert len(picks) == 1 and np.abs(picks.centres[0] - [16, 32, 32]).max() <= 1
    calibration = calibrate_extraction(volume, [[16, 32, 32]], box_size=BOX, smooth=1.0)
    assert calibration.smooth == 1.0 and calibration.extract_kwargs["smooth"] == 1.0
    assert calibration.recall == 1.0
    assert calibrate_extraction(volume, [[16, 32, 32]], box_size=BOX,
                                min_masses=[150]).recall == 0.0
    with pytest.raises(CryomlError, match="smooth"):
        extract_particles(volume, **cut, smooth=-1)
    b = io.write_mrc(tmp_path / "b.mrc", volume, voxel_size=10.0)
    out = tmp_path / "b.star"
    base = ("extract", str(b), "--box", str(BOX), "-o", str(out), "--threshold", "0.5",
            "--min-mass", "150", "--overwrite")
    assert _cli(*base) == 0 and len(io.read_coordinates(out)) == 0
    assert _cli(*base, "--smooth", "1") == 0 and len(io.read_coordinates(out)) == 1
