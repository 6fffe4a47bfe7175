import argparse
import json

import numpy as np
import pytest

from cryoml import io
from cryoml.cli.pick import add_args, main


def run(argv):
    parser = argparse.ArgumentParser()
    add_args(parser)
    return main(parser.parse_args(argv))


@pytest.fixture
def toy_files(tmp_path, toy_set):
    mics, coords = [], []
    for index, micrograph in enumerate(toy_set[:4]):
        mic = io.write_mrc(tmp_path / f"mic{index}.mrc", micrograph.image, voxel_size=2.0)
        box = io.write_coordinates(tmp_path / f"mic{index}.box", micrograph.particles)
        mics.append(str(mic))
        coords.append(str(box))
    return tmp_path, mics, coords


def test_pick_train_extract_evaluate_from_the_command_line(toy_files, capsys):
    folder, mics, coords = toy_files
    model = folder / "picker.keras"
    assert (
        run(
            [
                "train",
                *mics[:2],
                "--coords",
                *coords[:2],
                "--box",
                "48",
                "--epochs",
                "3",
                "--calibrate-micrographs",
                mics[2],
                "--calibrate-coords",
                coords[2],
                "--out",
                str(model),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert 0 <= summary["threshold"] <= 1
    assert "calibration" in summary
    assert (
        run(
            [
                "extract",
                str(model),
                mics[3],
                "--out-dir",
                str(folder / "picks"),
                "--format",
                "star",
                "--threshold",
                "0",
            ]
        )
        == 0
    )
    capsys.readouterr()
    picks = io.read_coordinates(folder / "picks" / "mic3.star")
    assert len(picks) > 0 and picks.scores is not None
    assert (
        run(
            [
                "evaluate",
                str(folder / "picks" / "mic3.star"),
                "--truth",
                coords[3],
                "--radius",
                "14",
                "--plot",
                str(folder / "pr.png"),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert {"precision", "recall", "average_precision", "threshold"} <= set(result)
    assert (folder / "pr.png").is_file()
    assert run(["score", str(model), mics[3], "--out", str(folder / "s.npz")]) == 0
    with np.load(folder / "s.npz") as saved:
        assert int(saved["step"]) == 8 and saved["scores"].ndim == 2


def test_pick_template_writes_box_files(toy_files, capsys):
    folder, mics, coords = toy_files
    assert (
        run(
            [
                "template",
                mics[3],
                "--train-micrographs",
                *mics[:2],
                "--train-coords",
                *coords[:2],
                "--box",
                "48",
                "--out-dir",
                str(folder / "tm"),
            ]
        )
        == 0
    )
    picks = io.read_coordinates(folder / "tm" / "mic3.box")
    assert picks.box_size == 48 and len(picks) > 0


def test_mismatched_coordinate_count_is_an_error(toy_files):
    from cryoml._errors import CryomlError

    folder, mics, coords = toy_files
    with pytest.raises(CryomlError, match="one coordinate file per micrograph"):
        run(
            [
                "train",
                *mics[:2],
                "--coords",
                coords[0],
                "--box",
                "48",
                "--out",
                str(folder / "x.keras"),
            ]
        )
