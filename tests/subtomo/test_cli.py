import argparse
import json

import numpy as np
import pytest

from cryoml.cli.subtomo import add_args, main

from .conftest import sphere_set


def _run(argv):
    parser = argparse.ArgumentParser()
    add_args(parser)
    return main(parser.parse_args(argv))


# one epoch on a tiny set: whether the network learns is not what this test checks
@pytest.mark.filterwarnings("ignore:.*no better than chance")
def test_cli_trains_evaluates_extracts_features_and_subdivides(tmp_path):
    import h5py

    data, labels, _ = sphere_set(n_per_class=8)
    with h5py.File(tmp_path / "set.h5", "w") as handle:
        handle.create_dataset("data", data=data)
        handle.create_dataset("labels", data=labels)
    net = tmp_path / "net.keras"
    assert (
        _run(
            [
                "train",
                str(tmp_path / "set.h5"),
                str(net),
                "--model",
                "inception3d",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--raw",
            ]
        )
        == 0
    )
    from cryoml.subtomo import SubtomoClassifier

    assert SubtomoClassifier.load(net).normalize is False  # --raw is remembered with the net
    assert (
        _run(
            [
                "evaluate",
                str(net),
                str(tmp_path / "set.h5"),
                "--json",
                str(tmp_path / "report.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "report.json").read_text())["n"] == len(labels)
    assert _run(["features", str(net), str(tmp_path / "set.h5"), str(tmp_path / "f.npy")]) == 0
    assert np.load(tmp_path / "f.npy").shape == (len(labels), 3)
    assert _run(["subdivide", str(tmp_path / "f.npy"), str(tmp_path / "c.json"), "--k", "4"]) == 0
    assert len(json.loads((tmp_path / "c.json").read_text())["sizes"]) == 4
    assert (
        _run(["rif-svm", str(tmp_path / "set.h5"), str(tmp_path / "set.h5"), "--max-degree", "4"])
        == 0
    )


# one epoch on a tiny set: whether the network learns is not what this test checks
@pytest.mark.filterwarnings("ignore:.*no better than chance")
def test_features_of_many_sets_on_dask_equal_the_one_set_result_and_rerun_skips(tmp_path, capsys):
    import h5py

    sets = tmp_path / "sets"
    sets.mkdir()
    for index, seed in enumerate((1, 2)):
        data, labels, _ = sphere_set(n_per_class=4, seed=seed)
        with h5py.File(sets / f"set{index}.h5", "w") as handle:
            handle.create_dataset("data", data=data)
            handle.create_dataset("labels", data=labels)
    net = tmp_path / "net.keras"
    train = ["train", str(sets / "set0.h5"), str(net), "--model", "dsrf3d", "--epochs", "1"]
    assert _run([*train, "--batch-size", "4", "--seed", "0"]) == 0
    single = tmp_path / "one.npy"
    assert _run(["features", str(net), str(sets / "set1.h5"), str(single), "--layer", "fc2"]) == 0
    out_dir = tmp_path / "features"
    batch = ["features", str(net), str(sets / "*.h5"), "--out-dir", str(out_dir), "--layer", "fc2"]
    capsys.readouterr()
    assert _run([*batch, "--workers", "1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["done"] == 2
    np.testing.assert_array_equal(np.load(out_dir / "set1_fc2.npy"), np.load(single))
    assert np.load(single).std() > 0
    assert np.load(out_dir / "set0_fc2.npy").shape == np.load(single).shape
    assert _run([*batch, "--workers", "1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["skipped"] == 2


def test_features_without_out_dir_need_exactly_one_set_and_an_output(tmp_path):
    from cryoml._errors import CryomlError

    with pytest.raises(CryomlError, match="--out-dir"):
        _run(["features", str(tmp_path / "net.keras"), "a.h5", "b.h5", "c.npy"])


# one epoch on a tiny set: whether the network learns is not what this test checks
@pytest.mark.filterwarnings("ignore:.*no better than chance")
def test_cli_discover_refuses_an_unknown_class_and_reports_a_run(tmp_path, capsys):
    from cryoml import CryomlError
    from cryoml.simulate import simulate_subtomograms

    data = simulate_subtomograms(["1bxn", "2cg9"], 4, snr=0.5, box=16, voxel_size=30.0,
                                 n_jobs=1, random_state=0, progress=False)
    data.save(tmp_path / "set.npz")
    common = [str(tmp_path / "set.npz"), str(tmp_path / "set.npz"), "--true-map", "1bxn",
              str(tmp_path / "out.json")]
    with pytest.raises(CryomlError, match=r"no class '3j9i'.*1bxn, 2cg9, empty"):
        _run(["discover", *common, "--left-out", "3j9i"])
    with pytest.raises(CryomlError, match="out of range"):
        _run(["discover", *common, "--left-out", "7"])
    assert not (tmp_path / "out.json").exists()
    _run(["discover", *common, "--left-out", "1bxn", "--epochs", "1", "--k", "2"])
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["resolution_nm_from_shell_2"] <= result["resolution_nm"]
    assert "counting from FSC shell 2" in capsys.readouterr().out
