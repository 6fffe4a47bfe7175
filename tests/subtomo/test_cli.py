import argparse
import json

import numpy as np

from cryoml.cli.subtomo import add_args, main

from .conftest import sphere_set


def _run(argv):
    parser = argparse.ArgumentParser()
    add_args(parser)
    return main(parser.parse_args(argv))


def test_cli_trains_evaluates_extracts_features_and_subdivides(tmp_path):
    import h5py

    data, labels, _ = sphere_set(n_per_class=8)
    with h5py.File(tmp_path / "set.h5", "w") as handle:
        handle.create_dataset("data", data=data)
        handle.create_dataset("labels", data=labels)
    net = tmp_path / "net.keras"
    assert _run(["train", str(tmp_path / "set.h5"), str(net), "--model", "inception3d",
                 "--epochs", "1", "--batch-size", "8"]) == 0
    assert _run(["evaluate", str(net), str(tmp_path / "set.h5"), "--json",
                 str(tmp_path / "report.json")]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["n"] == len(labels)
    assert _run(["features", str(net), str(tmp_path / "set.h5"), str(tmp_path / "f.npy")]) == 0
    assert np.load(tmp_path / "f.npy").shape == (len(labels), 3)
    assert _run(["subdivide", str(tmp_path / "f.npy"), str(tmp_path / "c.json"), "--k", "4"]) == 0
    assert len(json.loads((tmp_path / "c.json").read_text())["sizes"]) == 4
    assert _run(["rif-svm", str(tmp_path / "set.h5"), str(tmp_path / "set.h5"), "--max-degree",
                 "4"]) == 0
