import json
import subprocess
import sys

import numpy as np
import pytest

from cryoml import io
from cryoml.cli import build_parser, main


def test_import_and_help_do_not_load_a_network_backend():
    code = (
        "import sys, contextlib, io as _io\n"
        "import cryoml, cryoml.io, cryoml.preprocess, cryoml.metrics\n"
        "from cryoml.cli import main\n"
        "with contextlib.redirect_stdout(_io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"info", "preprocess", "demo"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_info_reports_shape_voxel_size_and_statistics(tmp_path, capsys):
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    io.write_mrc(tmp_path / "v.mrc", data, voxel_size=9.2)
    assert main(["info", "--json", str(tmp_path / "v.mrc")]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["shape"] == [2, 3, 4]
    assert facts["voxel_size"] == pytest.approx(9.2)
    assert facts["mean"] == pytest.approx(data.mean())
    assert facts["sd"] == pytest.approx(data.std(), rel=1e-5)


def test_info_counts_coordinates(tmp_path, capsys):
    io.write_coordinates(tmp_path / "p.star", io.Particles(np.ones((7, 3))))
    assert main(["info", str(tmp_path / "p.star")]) == 0
    assert "count       7" in capsys.readouterr().out


def test_info_on_the_real_micrograph_prints_size_and_pixel(reference_data, capsys):
    assert main(["info", str(reference_data / "micrographs" / "epu2.9_example.mrc")]) == 0
    out = capsys.readouterr().out
    assert "4096 × 4096" in out and "0.667 Å/px" in out


def test_info_on_the_real_tiff_prints_its_voxel_size(reference_data, capsys):
    assert main(["info", str(reference_data / "tomograms" / "13pf_MT.tif")]) == 0
    assert "10.52 Å/voxel" in capsys.readouterr().out


def test_preprocess_writes_binned_volume_and_record(tmp_path):
    data = np.random.default_rng(0).normal(size=(8, 32, 32)).astype(np.float32)
    io.write_mrc(tmp_path / "in.mrc", data, voxel_size=10.0)
    args = [
        "preprocess",
        str(tmp_path / "in.mrc"),
        str(tmp_path / "out.mrc"),
        "--lowpass",
        "40",
        "--highpass",
        "4000",
        "--bin",
        "2",
        "--clamp",
        "3",
    ]
    assert main(args) == 0
    out = io.read_mrc(tmp_path / "out.mrc")
    assert out.shape == (4, 16, 16) and out.voxel_size == pytest.approx(20.0)
    record = json.loads((tmp_path / "out.mrc.json").read_text())
    assert record["lowpass"] == 40.0 and record["bin_factor"] == 2
    # A second run must not silently replace the outputs.
    assert main(args) == 2


def test_bad_input_gives_exit_status_2_and_a_message(tmp_path, capsys):
    (tmp_path / "junk.mrc").write_bytes(b"not a map" * 200)
    assert main(["info", str(tmp_path / "junk.mrc")]) == 2
    assert "junk.mrc" in capsys.readouterr().err


def test_demo_runs_the_io_workflow_and_writes_a_summary(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--only", "io"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["io"]["preprocessed_shape"] == [16, 64, 64]
    assert (tmp_path / "io" / "blobs.star").exists()


def test_commands_that_load_keras_quiet_tensorflow_first(tmp_path, monkeypatch):
    import cryoml._quiet

    calls = []
    monkeypatch.setattr(cryoml._quiet, "quiet_tensorflow", lambda: calls.append(1))
    missing = ["tomoseg", "extract", str(tmp_path / "missing.mrc"), "--box", "12", "-o",
               str(tmp_path / "x.star")]
    assert main(missing) == 2 and calls == [1]  # before the command runs (and fails)
    assert main(["--verbose", *missing]) == 2 and calls == [1]  # verbose: everything shows
    small = io.write_mrc(tmp_path / "small.mrc", np.zeros((4, 8, 8), np.float32), voxel_size=10.0)
    assert main(["info", str(small)]) == 0 and calls == [1]  # no network: no backend
