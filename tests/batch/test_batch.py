import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from cryoml import CryomlError
from cryoml.batch import MANIFEST_NAME, expand_inputs, run_batch

sys.path.insert(0, str(Path(__file__).parent))
from _tasks import double_volume


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        np.save(folder / f"t{i}.npy", np.full((4, 4), i, np.float32))
    return folder


@pytest.fixture(autouse=True)
def _workers_find_the_task_module(monkeypatch):
    # Worker processes import the task by module name.
    path = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", path + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_globs_and_list_files_expand_to_existing_files(inputs, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{inputs / 't0.npy'}\n# comment\n{inputs / 't1.npy'}\n")
    assert len(expand_inputs([str(inputs / "*.npy")])) == 4
    assert [p.name for p in expand_inputs([f"@{listing}"])] == ["t0.npy", "t1.npy"]
    with pytest.raises(CryomlError, match="matches no file"):
        expand_inputs([str(inputs / "*.mrc")])


@pytest.mark.slow
def test_a_killed_worker_leaves_no_partial_output_and_every_file_finishes(inputs, tmp_path):
    out = tmp_path / "out"
    report = run_batch(
        double_volume,
        [str(inputs / "*.npy")],
        out_dir=out,
        suffix="_x2.npy",
        options={"crash_marker": str(tmp_path / "crashed")},
        n_workers=2,
        progress=False,
    )
    assert (tmp_path / "crashed").exists(), "the crash was never triggered"
    assert not report.failed
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST_NAME,
        "t0_x2.npy",
        "t1_x2.npy",
        "t2_x2.npy",
        "t3_x2.npy",
    ]
    for i in range(4):
        np.testing.assert_array_equal(np.load(out / f"t{i}_x2.npy"), 2 * i)
    manifest = json.loads((out / MANIFEST_NAME).read_text())["files"]
    assert len(manifest) == 4

    # Other options rerun every file (the manifest is keyed on them); the same options again
    # skip everything; touching one input reprocesses only that one.
    plain = {"out_dir": out, "suffix": "_x2.npy", "n_workers": 1, "progress": False}
    rerun = run_batch(double_volume, [str(inputs / "*.npy")], **plain)
    assert len(rerun.done) == 4 and not rerun.skipped
    again = run_batch(double_volume, [str(inputs / "*.npy")], **plain)
    assert len(again.skipped) == 4 and not again.done
    np.save(inputs / "t2.npy", np.full((4, 4), 7, np.float32))
    third = run_batch(double_volume, [str(inputs / "*.npy")], **plain)
    assert [Path(r["input"]).name for r in third.done] == ["t2.npy"]
    np.testing.assert_array_equal(np.load(out / "t2_x2.npy"), 14)


@pytest.mark.slow
def test_without_overwrite_only_outputs_recorded_in_the_manifest_are_replaced(inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "t1_x2.npy").write_bytes(b"edited by hand")
    batch = {"out_dir": out, "suffix": "_x2.npy", "n_workers": 1, "progress": False}
    with pytest.raises(CryomlError, match="no earlier run recorded"):
        run_batch(double_volume, [str(inputs / "*.npy")], overwrite=False, **batch)
    assert (out / "t1_x2.npy").read_bytes() == b"edited by hand"
    assert not (out / MANIFEST_NAME).exists()

    (out / "t1_x2.npy").unlink()
    first = run_batch(double_volume, [str(inputs / "*.npy")], overwrite=False, **batch)
    assert len(first.done) == 4
    # Outputs this folder's manifest records are ours to replace, e.g. with resume=False; the
    # records of the other files are kept, so a normal run afterwards skips all four.
    again = run_batch(
        double_volume, [str(inputs / "t1.npy")], resume=False, overwrite=False, **batch
    )
    assert len(again.done) == 1
    np.testing.assert_array_equal(np.load(out / "t1_x2.npy"), 2)
    last = run_batch(double_volume, [str(inputs / "*.npy")], overwrite=False, **batch)
    assert len(last.skipped) == 4 and not last.done


def test_inputs_of_one_name_in_two_folders_are_refused_before_anything_runs(inputs, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "t0.npy", np.zeros((4, 4), np.float32))
    out = tmp_path / "out"
    with pytest.raises(CryomlError, match=r"t0\.npy and .*t0\.npy would both be written"):
        run_batch(double_volume, [str(inputs / "t0.npy"), str(other / "t0.npy")],
                  out_dir=out, suffix="_x2.npy", progress=False)
    assert not out.exists()
