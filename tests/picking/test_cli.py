import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from cryoml import io
from cryoml.cli.pick import add_args, main

# Pipelines trained for seconds on two toy micrographs may end at chance; that warning is
# tested in test_training.py.
AT_CHANCE = pytest.mark.filterwarnings("ignore:ParticlePicker. held-out accuracy")


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


@AT_CHANCE
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


def test_extract_many_micrographs_on_dask_equals_one_at_a_time_and_rerun_skips(
    toy_files, trained_picker, capsys
):
    from cryoml._errors import CryomlError

    folder, mics, _ = toy_files
    model = trained_picker.save(folder / "picker.keras")
    out_dir = folder / "picks"
    argv = ["extract", str(model), str(folder / "mic[23].mrc"), "--out-dir", str(out_dir)]
    argv += ["--format", "star", "--threshold", "0.3", "--workers", "1"]
    capsys.readouterr()
    assert run(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 0, {})
    for mic in mics[2:4]:
        name = Path(mic).stem
        # What the serial loop wrote before: the in-memory picker, one micrograph at a time.
        picks = trained_picker.pick(io.read_image(mic), threshold=0.3, method="dense")
        single = io.write_coordinates(
            folder / f"{name}_single.star", picks, micrograph_name=Path(mic).name
        )
        written = (out_dir / f"{name}.star").read_text()

        def body(text):  # the header comment holds the time of writing
            return [line for line in text.splitlines() if not line.startswith("#")]

        assert body(written) == body(single.read_text())
        assert f"{name}.mrc" in written
        again = io.read_coordinates(out_dir / f"{name}.star")
        assert len(again) > 0 and again.scores is not None
    assert run(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["skipped"] == 2
    # A pick file no run recorded (e.g. edited by hand) is not replaced without --overwrite.
    (folder / "mine").mkdir()
    (folder / "mine" / "mic2.star").write_text("hand-picked")
    argv[argv.index(str(out_dir))] = str(folder / "mine")
    with pytest.raises(CryomlError, match="--overwrite"):
        run(argv)
    assert (folder / "mine" / "mic2.star").read_text() == "hand-picked"


def test_help_shows_defaults_and_explains_box_presets_and_recipes(capsys):
    parser = argparse.ArgumentParser()
    add_args(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 20)" in text and "(default: modern)" in text
    assert "1.5 × the particle diameter" in text  # how to choose --box
    assert "klh 272 px" in text and "squared error" in text
    assert "--min-distance" in text and "touching particles" in text
    assert "--jitter" in text and "copies of every particle box" in text


def test_cheap_checks_come_before_any_work(tmp_path):
    from cryoml._errors import CryomlError

    # The model does not exist: the suffix is refused first, before loading or scoring.
    with pytest.raises(CryomlError, match=r"\.npz"):
        run(["score", str(tmp_path / "none.keras"), str(tmp_path / "m.mrc"), "--out",
             str(tmp_path / "x.npy")])
    with pytest.raises(CryomlError, match="--min-distance"):
        run(["train", "a.mrc", "--coords", "a.box", "--box", "48", "--min-distance", "-1",
             "--out", str(tmp_path / "p.keras")])
    with pytest.raises(CryomlError, match="--jitter"):
        run(["train", "a.mrc", "--coords", "a.box", "--box", "48", "--jitter", "-2",
             "--out", str(tmp_path / "p.keras")])
    with pytest.raises(CryomlError, match="--calibrate-coords"):
        run(["train", "a.mrc", "--coords", "a.box", "--box", "48", "--calibrate-micrographs",
             "c.mrc", "--out", str(tmp_path / "p.keras")])
    with pytest.raises(CryomlError, match="dense_step' 3 must divide"):
        run(["train", "a.mrc", "--coords", "a.box", "--box", "48", "--dense-step", "3",
             "--out", str(tmp_path / "p.keras")])


def test_all_candidates_and_evaluate_radius_from_the_model(toy_files, trained_picker, capsys,
                                                            caplog):
    folder, mics, coords = toy_files
    model = trained_picker.save(folder / "picker.keras")
    argv = ["extract", str(model), mics[3], "--out-dir", str(folder / "all"), "--workers", "1",
            "--format", "star"]
    assert run([*argv, "--all-candidates"]) == 0
    every = io.read_coordinates(folder / "all" / "mic3.star")
    capsys.readouterr()
    assert len(every) == len(trained_picker.candidates(io.read_image(mics[3])))
    assert every.scores.min() < trained_picker.threshold_  # below-threshold ones too
    with caplog.at_level("INFO", logger="cryoml.cli.pick"):
        assert run(["evaluate", str(folder / "all" / "mic3.star"), "--truth", coords[3],
                    "--model", str(model)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["radius"] == pytest.approx(0.5 * trained_picker.diameter)
    assert "half the model's particle diameter" in caplog.text


@AT_CHANCE
def test_train_without_calibration_says_the_threshold_stays_at_half(toy_files, capsys, caplog):
    folder, mics, coords = toy_files
    with caplog.at_level("WARNING", logger="cryoml.cli.pick"):
        assert run(["train", mics[0], "--coords", coords[0], "--box", "48", "--epochs", "1",
                    "--min-distance", "12", "--out", str(folder / "p.keras")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["threshold"] == 0.5 and summary["threshold_calibrated"] is False
    assert summary["min_distance_px"] == 12
    assert "no --calibrate-micrographs" in caplog.text


@AT_CHANCE
def test_pick_train_an_ensemble_then_extract_score_and_evaluate_with_it(toy_files, capsys):
    folder, mics, coords = toy_files
    with pytest.raises(Exception, match="saved as a folder"):
        run(["train", *mics[:2], "--coords", *coords[:2], "--box", "48", "--ensemble", "2",
             "--out", str(folder / "e.keras")])
    model = folder / "ensemble"
    assert run(["train", *mics[:2], "--coords", *coords[:2], "--box", "48", "--epochs", "2",
                "--ensemble", "2", "--calibrate-micrographs", mics[2], "--calibrate-coords",
                coords[2], "--out", str(model)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["validation_accuracy"]) == 2 and "calibration" in summary
    assert sorted(p.name for p in model.glob("*.keras")) == ["member_0.keras", "member_1.keras"]
    assert run(["extract", str(model), mics[3], "--out-dir", str(folder / "picks"),
                "--format", "star", "--all-candidates", "--min-distance", "10"]) == 0
    picks = io.read_coordinates(folder / "picks" / "mic3.star")
    assert len(picks) > 0 and picks.scores is not None
    distances = np.linalg.norm(picks.centres[:, None] - picks.centres[None], axis=-1)
    assert distances[np.triu_indices(len(picks), 1)].min() >= 10
    assert run(["score", str(model), mics[3], "--out", str(folder / "s.npz")]) == 0
    with np.load(folder / "s.npz") as scores:
        assert scores["scores"].ndim == 2
    capsys.readouterr()
    assert run(["evaluate", str(folder / "picks" / "mic3.star"), "--truth", coords[3],
                "--model", str(model)]) == 0
    assert "average_precision" in json.loads(capsys.readouterr().out)
