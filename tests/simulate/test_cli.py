import argparse

import numpy as np
import pytest

from cryoml.cli.simulate import add_args, main


def _run(argv):
    parser = argparse.ArgumentParser()
    add_args(parser)
    return main(parser.parse_args(argv))


def test_cli_writes_a_subtomogram_set_and_mrc_stacks(tmp_path):
    from cryoml.simulate import SubtomogramSet

    out = tmp_path / "set.npz"
    assert _run(["subtomograms", str(out), "--classes", "ring_c7,dumbbell", "-n", "2",
                 "--box", "24", "--jobs", "1", "--seed", "0",
                 "--mrc-dir", str(tmp_path / "stacks")]) == 0
    loaded = SubtomogramSet.load(out)
    assert loaded.data.shape == (6, 24, 24, 24)
    assert len(list((tmp_path / "stacks").glob("*.mrcs"))) == 3
    assert loaded.params["noise_stage"] == "paper"  # the Xu et al. order by default


def test_cli_noise_stage_option_reaches_the_set_and_refuses_unknown_stages(tmp_path, capsys):
    from cryoml.simulate import SubtomogramSet

    out = tmp_path / "detector.npz"
    assert _run(["subtomograms", str(out), "--classes", "ring_c7", "-n", "1", "--box", "16",
                 "--voxel-size", "18", "--jobs", "1", "--noise-stage", "detector"]) == 0
    assert SubtomogramSet.load(out).params["noise_stage"] == "detector"
    with pytest.raises(SystemExit):
        _run(["subtomograms", str(out), "--classes", "ring_c7", "--noise-stage", "before"])
    assert "--noise-stage" in capsys.readouterr().err


def test_cli_writes_a_tomogram_with_labels_and_particles(tmp_path):
    from cryoml.io import read_coordinates, read_mrc

    out = tmp_path / "cell.mrc"
    assert _run(["tomogram", str(out), "--shape", "24", "64", "64", "--seed", "1", "--masks"]) == 0
    tomogram = read_mrc(out)
    labels = read_mrc(tmp_path / "cell_labels.mrc")
    assert tomogram.shape == labels.shape == (24, 64, 64)
    assert tomogram.voxel_size == pytest.approx(10.0)
    assert np.asarray(labels.data).max() >= 1
    particles = read_coordinates(tmp_path / "cell.star")
    assert particles.ndim == 3
    assert (tmp_path / "cell_membrane.mrc").is_file()
    with pytest.raises(Exception, match="already exists"):
        _run(["tomogram", str(out), "--shape", "24", "64", "64"])


def test_cli_writes_micrographs_with_good_and_all_picks(tmp_path):
    import pandas as pd

    from cryoml.io import read_coordinates, read_mrc

    assert _run(["micrographs", str(tmp_path), "-n", "1", "--shape", "256", "256",
                 "--pixel-size", "8", "--particle", "ribosome_like", "--snr", "0.1",
                 "--particles", "6", "--seed", "2"]) == 0
    assert read_mrc(tmp_path / "mic_000.mrc").shape == (256, 256)
    good = read_coordinates(tmp_path / "mic_000.star")
    frame = pd.read_csv(tmp_path / "mic_000_all.csv")
    assert int(frame["good"].sum()) == len(good)
    assert {"overlapped", "aggregated"} <= set(frame.columns)
