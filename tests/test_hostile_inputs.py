"""Hostile inputs and faults (issue 17): each bad input gets a clear refusal and writes nothing.

Every case builds its bad input in a fresh folder and returns what to run, the words the message
must contain (the file or the option) and the outputs that must not appear. The verdict is:

* ``clear``: CryomlError (exit status 2 from the CLI), naming what it must, nothing written;
* ``vague``: refused, but the message does not name the file or option;
* ``late``: refused, but an output was written first;
* ``traceback``: another exception;
* ``silent``: no error at all (a silently wrong result).

``python tests/test_hostile_inputs.py`` prints the verdict of each case and the counts.
"""

from __future__ import annotations

import contextlib
import errno
import io as stdio
import json
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cryoml import CryomlError, io

CASES: dict[str, Callable] = {}


def case(function: Callable) -> Callable:
    CASES[function.__name__.removeprefix("case_")] = function
    return function


def cli(*argv: str) -> int:
    """Run ``cryoml ARGV`` in-process; exit status 2 becomes a CryomlError with stderr."""
    from cryoml.cli import main

    err = stdio.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdio.StringIO()):
        status = main(["-q", *map(str, argv)])
    if status == 2:
        raise CryomlError(err.getvalue())
    if status not in (0, None):
        raise RuntimeError(f"exit status {status}: {err.getvalue()}")
    return status


def verdict(run: Callable, mention: list, outputs: list) -> tuple[str, str]:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run()
    except CryomlError as error:
        text = str(error)
        written = [str(p) for p in outputs if Path(p).exists()]
        if written:
            return "late", f"wrote {written}: {text}"
        missing = [str(m) for m in mention if str(m) not in text]
        if missing:
            return "vague", f"does not name {missing}: {text}"
        return "clear", text
    except SystemExit as error:  # argparse
        return ("clear" if error.code == 2 else "traceback"), f"argparse exit {error.code}"
    except Exception as error:
        return "traceback", f"{type(error).__name__}: {error}"
    return "silent", "no error"


# --- fixtures -------------------------------------------------------------------------------


def _mrc(path: Path, shape=(4, 16, 16), voxel=4.0, dtype=np.float32) -> Path:
    rng = np.random.default_rng(0)
    return io.write_mrc(path, rng.normal(size=shape).astype(dtype), voxel_size=voxel)


def _patch_header(path: Path, offset: int, value, dtype="<i4", name=None) -> Path:
    data = bytearray(path.read_bytes())
    raw = np.array([value], dtype=dtype).tobytes()
    data[offset : offset + len(raw)] = raw
    target = path.with_name(name) if name else path
    target.write_bytes(bytes(data))
    return target


def _zip_metadata(model_path: Path, name: str, meta: dict) -> None:
    with zipfile.ZipFile(model_path, "a") as archive:
        archive.writestr(name, json.dumps(meta))


def _tomoseg_meta(feature="membrane") -> dict:
    return {"feature": feature, "amplitude": 1.0, "voxel_size": 10.0, "n_neighbours": 0,
            "params": {"n_filters": 2, "kernel_size": 3}}


def _tiny_tomoseg(path: Path, feature="membrane") -> Path:
    from cryoml.tomoseg.models import build_tomoseg_cnn

    model = build_tomoseg_cnn((None, None), n_filters=2, kernel_size=3)
    model.save(path)
    _zip_metadata(path, "cryoml_tomoseg.json", _tomoseg_meta(feature))
    return path


def _subtomo_set(path: Path, labels, names, nan=False) -> Path:
    from cryoml.simulate import SubtomogramSet

    labels = np.asarray(labels)
    data = np.random.default_rng(0).normal(size=(len(labels), 8, 8, 8)).astype(np.float32)
    if nan:
        data[1, 2, 3, 4] = np.nan
    subtomos = SubtomogramSet(
        data=data, labels=labels, rotations=np.zeros((len(labels), 3)),
        shifts=np.zeros((len(labels), 3)), class_names=list(names),
        params={"voxel_size": 9.2},
    )
    return subtomos.save(path)


def _micrograph(path: Path, shape=(128, 128)) -> Path:
    return _mrc(path, shape=shape, voxel=3.0)


def _picks(path: Path, centres, box=32, name=None) -> Path:
    particles = io.Particles(np.asarray(centres, float), box_size=box,
                             scores=np.linspace(1, 0.5, len(centres)))
    return io.write_coordinates(path, particles, micrograph_name=name)


# --- MRC --------------------------------------------------------------------------------------


@case
def case_mrc_mode_disagrees_with_file_size(tmp):
    path = _patch_header(_mrc(tmp / "a.mrc"), 12, 1, name="mode.mrc")  # int16 in a float file
    return lambda: io.read_mrc(path), ["mode.mrc", "mode"], []


@case
def case_mrc_negative_dimension(tmp):
    path = _patch_header(_mrc(tmp / "a.mrc"), 0, -8, name="neg.mrc")
    return lambda: io.read_mrc(path), ["neg.mrc", "negative"], []


@case
def case_mrc_unknown_mode(tmp):
    path = _patch_header(_mrc(tmp / "a.mrc"), 12, 9, name="m9.mrc")
    return lambda: io.read_mrc(path), ["m9.mrc", "mode"], []


@case
def case_mrc_huge_dimension(tmp):
    path = _patch_header(_mrc(tmp / "a.mrc"), 0, 2**31 - 1, name="huge.mrc")
    return lambda: io.read_mrc(path, mmap=True), ["huge.mrc"], []


@case
def case_mrc_nan_voxel_size(tmp):
    path = _patch_header(_mrc(tmp / "a.mrc"), 40, np.nan, dtype="<f4", name="nanvox.mrc")
    return lambda: io.read_mrc(path), ["nanvox.mrc", "voxel size"], []


@case
def case_mrc_negative_voxel_size(tmp):
    path = _patch_header(_mrc(tmp / "a.mrc"), 40, -40.0, dtype="<f4", name="negvox.mrc")
    return lambda: io.read_mrc(path), ["negvox.mrc", "voxel size"], []


@case
def case_write_mrc_nan_voxel_size(tmp):
    out = tmp / "out.mrc"
    return lambda: io.write_mrc(out, np.zeros((4, 4), np.float32), voxel_size=np.nan), [
        "out.mrc", "voxel_size"], [out]


@case
def case_write_mrc_png_suffix(tmp):
    out = tmp / "out.png"
    return lambda: io.write_mrc(out, np.zeros((4, 4), np.float32)), ["out.png"], [out]


@case
def case_mrc_tiny_file(tmp):
    path = tmp / "tiny.mrc"
    path.write_bytes(b"\x01" * 10)
    return lambda: io.read_mrc(path), ["tiny.mrc"], []


@case
def case_mrc_is_a_folder(tmp):
    path = tmp / "folder.mrc"
    path.mkdir()
    return lambda: io.read_image(path), ["folder.mrc", "folder"], []


@case
def case_cli_truncated_mrc(tmp):
    good = _mrc(tmp / "a.mrc").read_bytes()
    path = tmp / "cut.mrc"
    path.write_bytes(good[:-300])
    out = tmp / "out.mrc"
    return lambda: cli("preprocess", path, out), ["cut.mrc", "truncated"], [out]


@case
def case_cli_empty_mrc(tmp):
    (tmp / "empty.mrc").touch()
    out = tmp / "out.mrc"
    return lambda: cli("preprocess", tmp / "empty.mrc", out), ["empty.mrc"], [out]


@case
def case_cli_nan_voxels(tmp):
    data = np.ones((4, 8, 8), np.float32)
    data[1, 1, 1] = np.nan
    io.write_mrc(tmp / "nan.mrc", data, voxel_size=4.0)
    out = tmp / "out.mrc"
    return lambda: cli("preprocess", tmp / "nan.mrc", out), ["nan.mrc", "NaN"], [out]


@case
def case_cli_complex_mrc(tmp):
    io.write_mrc(tmp / "c.mrc", np.ones((8, 8), np.complex64), voxel_size=4.0)
    out = tmp / "out.mrc"
    return lambda: cli("preprocess", tmp / "c.mrc", out), ["c.mrc", "complex"], [out]


@case
def case_cli_preprocess_png_output(tmp):
    src = _mrc(tmp / "a.mrc")
    out = tmp / "out.png"
    return lambda: cli("preprocess", src, out), ["out.png"], [out]


@case
def case_cli_preprocess_bin_zero(tmp):
    src, out = _mrc(tmp / "a.mrc"), tmp / "out.mrc"
    return lambda: cli("preprocess", src, out, "--bin", "0"), ["--bin"], [out]


@case
def case_cli_preprocess_bin_too_large(tmp):
    src, out = _mrc(tmp / "a.mrc"), tmp / "out.mrc"
    return lambda: cli("preprocess", src, out, "--bin", "64"), ["a.mrc"], [out]


@case
def case_cli_preprocess_negative_clamp(tmp):
    src, out = _mrc(tmp / "a.mrc"), tmp / "out.mrc"
    return lambda: cli("preprocess", src, out, "--clamp", "-1"), ["--clamp"], [out]


@case
def case_cli_preprocess_negative_lowpass(tmp):
    src, out = _mrc(tmp / "a.mrc"), tmp / "out.mrc"
    return lambda: cli("preprocess", src, out, "--lowpass", "-5"), ["--lowpass"], [out]


@case
def case_cli_preprocess_nan_voxel_size_option(tmp):
    src, out = _mrc(tmp / "a.mrc"), tmp / "out.mrc"
    return lambda: cli("preprocess", src, out, "--voxel-size", "nan"), ["--voxel-size"], [out]


@case
def case_cli_lowpass_without_voxel_size(tmp):
    import mrcfile

    path = tmp / "nosize.mrc"
    with mrcfile.new(path) as handle:
        handle.set_data(np.ones((8, 8), np.float32))
    out = tmp / "out.mrc"
    return lambda: cli("preprocess", path, out, "--lowpass", "20"), [
        "nosize.mrc", "--voxel-size"], [out]


@case
def case_cli_output_is_a_folder_with_overwrite(tmp):
    src = _mrc(tmp / "a.mrc")
    (tmp / "outdir.mrc").mkdir()
    return lambda: cli("preprocess", src, tmp / "outdir.mrc", "--overwrite"), [
        "outdir.mrc", "folder"], []


@case
def case_cli_output_exists(tmp):
    src = _mrc(tmp / "a.mrc")
    (tmp / "out.mrc").write_text("mine")
    return lambda: cli("preprocess", src, tmp / "out.mrc"), ["out.mrc", "--overwrite"], [
        tmp / "out.mrc.json"]


@case
def case_cli_output_inside_a_file(tmp):
    src = _mrc(tmp / "a.mrc")
    (tmp / "blocker").write_text("x")
    return lambda: cli("preprocess", src, tmp / "blocker" / "out.mrc"), ["blocker"], []


@case
def case_cli_missing_input(tmp):
    out = tmp / "out.mrc"
    return lambda: cli("preprocess", tmp / "nowhere.mrc", out), ["nowhere.mrc"], [out]


@case
def case_disk_too_small_before_writing(tmp, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**6, 10**6 - 100, 100))
    out = tmp / "big.mrc"
    return lambda: io.write_mrc(out, np.zeros((64, 64, 64), np.float32)), [
        "big.mrc", "MiB", "free"], [out]


@case
def case_disk_full_during_write(tmp, monkeypatch):
    import mrcfile

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mrcfile, "new", full)
    out = tmp / "full.mrc"
    return lambda: io.write_mrc(out, np.zeros((8, 8), np.float32)), ["full.mrc", "disk"], [out]


# --- TIFF -------------------------------------------------------------------------------------


@case
def case_rgb_tiff(tmp):
    import tifffile

    tifffile.imwrite(tmp / "rgb.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    return lambda: io.read_image(tmp / "rgb.tif"), ["rgb.tif", "grey"], []


@case
def case_complex_tiff(tmp):
    import tifffile

    tifffile.imwrite(tmp / "c.tif", np.ones((8, 8), np.complex64))
    return lambda: io.read_image(tmp / "c.tif"), ["c.tif", "complex"], []


@case
def case_text_as_tiff(tmp):
    (tmp / "t.tif").write_text("not an image\n" * 20)
    return lambda: io.read_image(tmp / "t.tif"), ["t.tif"], []


# --- coordinates ------------------------------------------------------------------------------


@case
def case_binary_box(tmp):
    (tmp / "bin.box").write_bytes(bytes(range(256)) * 4)
    return lambda: io.read_coordinates(tmp / "bin.box"), ["bin.box"], []


@case
def case_box_nan_line(tmp):
    (tmp / "n.box").write_text("1 2 32 32\nnan 2 32 32\n")
    return lambda: io.read_coordinates(tmp / "n.box"), ["n.box", "line 2"], []


@case
def case_box_zero_size_line(tmp):
    (tmp / "z.box").write_text("1 2 32 32\n1 2 32 32\n5 5 0 0\n")
    return lambda: io.read_coordinates(tmp / "z.box"), ["z.box", "line 3"], []


@case
def case_box_short_line(tmp):
    (tmp / "s.box").write_text("1 2 32 32\n1 2\n")
    return lambda: io.read_coordinates(tmp / "s.box"), ["s.box", "line 2"], []


@case
def case_csv_empty_coordinate(tmp):
    (tmp / "e.csv").write_text("x,y\n1,2\n,3\n")
    return lambda: io.read_coordinates(tmp / "e.csv"), ["e.csv", "row 3"], []


@case
def case_csv_text_box_size(tmp):
    (tmp / "b.csv").write_text("x,y,box_size\n1,2,abc\n")
    return lambda: io.read_coordinates(tmp / "b.csv"), ["b.csv"], []


@case
def case_csv_unknown_columns(tmp):
    (tmp / "u.csv").write_text("col,row\n1,2\n")
    return lambda: io.read_coordinates(tmp / "u.csv"), ["u.csv"], []


@case
def case_star_garbage(tmp):
    (tmp / "g.star").write_bytes(b"data_\nloop_\n_rlnCoordinateX #1\n\x00\xff\xfe\n")
    return lambda: io.read_coordinates(tmp / "g.star"), ["g.star"], []


@case
def case_star_without_coordinates(tmp):
    (tmp / "n.star").write_text("data_\nloop_\n_rlnAngleRot #1\n1.0\n")
    return lambda: io.read_coordinates(tmp / "n.star"), ["n.star"], []


@case
def case_star_nan_coordinate(tmp):
    (tmp / "nan.star").write_text(
        "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2\nnan 4\n")
    return lambda: io.read_coordinates(tmp / "nan.star"), ["nan.star", "row 2"], []


@case
def case_json_invalid(tmp):
    (tmp / "i.json").write_text("{boxes: [")
    return lambda: io.read_coordinates(tmp / "i.json"), ["i.json"], []


@case
def case_json_top_level_list(tmp):
    (tmp / "l.json").write_text("[1, 2, 3]")
    return lambda: io.read_coordinates(tmp / "l.json"), ["l.json"], []


@case
def case_json_bad_class_list(tmp):
    (tmp / "c.json").write_text('{"boxes": [[1, 2]], "class_list": {"a": {"boxsize": "x"}}}')
    return lambda: io.read_coordinates(tmp / "c.json"), ["c.json"], []


@case
def case_json_boxes_not_lists(tmp):
    (tmp / "b.json").write_text('{"boxes": [1, 2]}')
    return lambda: io.read_coordinates(tmp / "b.json"), ["b.json"], []


@case
def case_coordinates_folder(tmp):
    (tmp / "picks.box").mkdir()
    return lambda: io.read_coordinates(tmp / "picks.box"), ["picks.box"], []


# --- training sets, subtomogram sets, features ------------------------------------------------


@case
def case_empty_trainset_npz(tmp):
    (tmp / "set.npz").touch()
    out = tmp / "net.keras"
    return lambda: cli("tomoseg", "train", tmp / "set.npz", "-o", out), ["set.npz"], [out]


@case
def case_truncated_trainset_npz(tmp):
    from cryoml.tomoseg import TrainingSet

    trainset = TrainingSet(tiles=np.zeros((4, 8, 8, 1), np.float32),
                           labels=np.zeros((4, 4, 4), np.float32),
                           is_positive=np.array([1, 0, 0, 0], bool), feature="x")
    good = trainset.save(tmp / "good.npz").read_bytes()
    (tmp / "cut.npz").write_bytes(good[: len(good) // 2])
    out = tmp / "net.keras"
    return lambda: cli("tomoseg", "train", tmp / "cut.npz", "-o", out), ["cut.npz"], [out]


@case
def case_truncated_subtomogram_set(tmp):
    good = _subtomo_set(tmp / "good.npz", [0, 1, 0, 1], ["a", "b"]).read_bytes()
    (tmp / "cut.npz").write_bytes(good[: len(good) // 2])
    out = tmp / "net.keras"
    return lambda: cli("subtomo", "train", tmp / "cut.npz", out), ["cut.npz"], [out]


@case
def case_garbage_h5_set(tmp):
    (tmp / "set.h5").write_text("not hdf5")
    from cryoml.subtomo._data import open_subtomograms

    return lambda: open_subtomograms(tmp / "set.h5"), ["set.h5"], []


@case
def case_subtomo_label_beyond_class_names(tmp):
    path = _subtomo_set(tmp / "set.npz", [0, 1, 2, 3], ["a", "b"])
    from cryoml.subtomo import SubtomoClassifier

    return lambda: SubtomoClassifier(epochs=1, progress=False).fit(path), ["set.npz", "label"], []


@case
def case_subtomo_one_class(tmp):
    path = _subtomo_set(tmp / "one.npz", [0, 0, 0, 0], ["a", "b"])
    from cryoml.subtomo import SubtomoClassifier

    return lambda: SubtomoClassifier(epochs=1, progress=False).fit(path), ["one.npz", "two"], []


@case
def case_subtomo_nan_voxels(tmp):
    path = _subtomo_set(tmp / "nan.npz", [0, 1, 0, 1], ["a", "b"], nan=True)
    from cryoml.subtomo import SubtomoClassifier

    return lambda: SubtomoClassifier(epochs=1, progress=False).fit(path), ["nan.npz", "NaN"], []


@case
def case_subtomo_evaluate_more_classes_than_network(tmp):
    import keras

    from cryoml.subtomo import SubtomoClassifier

    clf = SubtomoClassifier(progress=False)
    inputs = keras.Input((8, 8, 8, 1))
    clf.model_ = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="softmax")(
        keras.layers.Flatten()(inputs)))
    clf.input_shape_, clf.n_classes_, clf.class_names_ = (8, 8, 8), 3, ["a", "b", "c"]
    path = _subtomo_set(tmp / "four.npz", [0, 1, 2, 3], ["a", "b", "c", "d"])
    return lambda: clf.evaluate(path), ["four.npz", "3"], []


@case
def case_object_npy_features(tmp):
    np.save(tmp / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    out = tmp / "clusters.json"
    return lambda: cli("subtomo", "subdivide", tmp / "obj.npy", out, "--k", "2"), [
        "obj.npy"], [out]


@case
def case_one_dimensional_features(tmp):
    np.save(tmp / "flat.npy", np.arange(10.0))
    out = tmp / "clusters.json"
    return lambda: cli("subtomo", "subdivide", tmp / "flat.npy", out, "--k", "2"), [
        "flat.npy"], [out]


@case
def case_object_npy_subtomograms(tmp):
    np.save(tmp / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    from cryoml.subtomo._data import open_subtomograms

    return lambda: open_subtomograms(tmp / "obj.npy"), ["obj.npy", "Python objects"], []


# --- networks ---------------------------------------------------------------------------------


@case
def case_plain_keras_model_with_tomoseg_metadata(tmp):
    import keras

    path = tmp / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(path)
    _zip_metadata(path, "cryoml_tomoseg.json", _tomoseg_meta())
    from cryoml.tomoseg import TomoSegmenter

    return lambda: TomoSegmenter.load(path, progress=False), ["plain.keras"], []


@case
def case_lambda_model_refused_by_safe_mode(tmp):
    import keras

    path = tmp / "lambda.keras"
    inputs = keras.Input((None, None, 1))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(path)
    _zip_metadata(path, "cryoml_tomoseg.json", _tomoseg_meta())
    from cryoml.tomoseg import TomoSegmenter

    return lambda: TomoSegmenter.load(path, progress=False), ["lambda.keras", "safety"], []


@case
def case_plain_keras_model_with_subtomo_metadata(tmp):
    import keras

    path = tmp / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    _zip_metadata(path, "cryoml_subtomo.json", {
        "model": "dsrf3d", "recipe": "paper", "normalize": True, "settings": {},
        "input_shape": [8, 8, 8], "n_classes": 2, "class_names": ["a", "b"], "history": {}})
    from cryoml.subtomo import SubtomoClassifier

    return lambda: SubtomoClassifier.load(path, progress=False), ["plain.keras"], []


@case
def case_tomoseg_metadata_without_amplitude(tmp):
    path = tmp / "noamp.keras"
    from cryoml.tomoseg.models import build_tomoseg_cnn

    build_tomoseg_cnn((None, None), n_filters=2, kernel_size=3).save(path)
    _zip_metadata(path, "cryoml_tomoseg.json", {"feature": "x"})
    from cryoml.tomoseg import TomoSegmenter

    return lambda: TomoSegmenter.load(path, progress=False), ["noamp.keras"], []


@case
def case_picker_sidecar_not_json(tmp):
    (tmp / "p.keras").write_bytes(b"PK")
    (tmp / "p.keras.json").write_text("{not json")
    from cryoml.picking import ParticlePicker

    return lambda: ParticlePicker.load(tmp / "p.keras"), ["p.keras.json"], []


# --- batch and outputs checked before any work ------------------------------------------------


@case
def case_apply_out_dir_is_a_file(tmp):
    tomo = _mrc(tmp / "t.mrc")
    net = _tiny_tomoseg(tmp / "net.keras")
    (tmp / "seg").write_text("a file")
    return lambda: cli("tomoseg", "apply", tomo, net, "--out-dir", tmp / "seg"), [
        "seg", "--out-dir"], []


@case
def case_pick_extract_out_dir_is_a_file(tmp):
    mic = _micrograph(tmp / "m.mrc")
    (tmp / "p.keras").write_bytes(b"PK")
    (tmp / "p.keras.json").write_text("{}")
    (tmp / "picks").write_text("a file")
    return lambda: cli("pick", "extract", tmp / "p.keras", mic, "--out-dir", tmp / "picks"), [
        "picks", "--out-dir"], []


@case
def case_tomoseg_train_h5_output(tmp):
    out = tmp / "x.h5"
    return lambda: cli("tomoseg", "train", tmp / "missing.npz", "-o", out), ["x.h5", ".keras"], [
        out]


@case
def case_subtomo_train_h5_output(tmp):
    out = tmp / "x.h5"
    return lambda: cli("subtomo", "train", tmp / "missing.npz", out), ["x.h5", ".keras"], [out]


@case
def case_subtomo_train_h5_checkpoint(tmp):
    out = tmp / "net.keras"
    return lambda: cli("subtomo", "train", tmp / "missing.npz", out, "--checkpoint",
                       tmp / "c.h5"), ["c.h5", "--checkpoint"], [out]


@case
def case_pick_train_h5_output(tmp):
    out = tmp / "x.h5"
    return lambda: cli("pick", "train", tmp / "m.mrc", "--coords", tmp / "m.box", "--box", "32",
                       "--out", out), ["x.h5", ".keras"], [out]


@case
def case_buildset_label_volume_as_masks(tmp):
    tomo = _mrc(tmp / "t.mrc", shape=(8, 64, 64))
    labels = np.zeros((8, 64, 64), np.int8)
    labels[:, 20:30, 20:30] = 6
    labels[:, 40:50, 40:50] = 3
    io.write_mrc(tmp / "labels.mrc", labels, voxel_size=4.0)
    io.write_coordinates(tmp / "pos.csv", io.Particles([[4.0, 25, 25]]))
    out = tmp / "set.npz"
    return lambda: cli("tomoseg", "buildset", tomo, "--positives", tmp / "pos.csv", "--masks",
                       tmp / "labels.mrc", "--tile", "16", "-o", out), [
        "labels.mrc", "--masks"], [out]


@case
def case_buildset_masks_of_another_shape(tmp):
    tomo = _mrc(tmp / "t.mrc", shape=(8, 64, 64))
    io.write_mrc(tmp / "m.mrc", np.zeros((8, 32, 32), np.int8), voxel_size=4.0)
    io.write_coordinates(tmp / "pos.csv", io.Particles([[4.0, 25, 25]]))
    out = tmp / "set.npz"
    return lambda: cli("tomoseg", "buildset", tomo, "--positives", tmp / "pos.csv", "--masks",
                       tmp / "m.mrc", "--tile", "16", "-o", out), ["m.mrc", "t.mrc"], [out]


@case
def case_extract_average_without_tomogram(tmp):
    seg = np.zeros((16, 32, 32), np.float32)
    seg[8, 16, 16] = 5
    io.write_mrc(tmp / "seg.mrc", seg, voxel_size=4.0)
    out = tmp / "picks.star"
    return lambda: cli("tomoseg", "extract", tmp / "seg.mrc", "--box", "8", "--min-mass", "0",
                       "-o", out, "--average", tmp / "avg.mrc"), ["--tomogram"], [out]


@case
def case_extract_average_png(tmp):
    seg = np.zeros((16, 32, 32), np.float32)
    io.write_mrc(tmp / "seg.mrc", seg, voxel_size=4.0)
    out = tmp / "picks.star"
    return lambda: cli("tomoseg", "extract", tmp / "seg.mrc", "--box", "8", "-o", out,
                       "--average", tmp / "avg.png", "--tomogram", tmp / "seg.mrc"), [
        "avg.png"], [out]


@case
def case_simulate_micrographs_too_small_for_the_particle(tmp):
    out = tmp / "mics"
    return lambda: cli("simulate", "micrographs", out, "--shape", "256", "256"), [
        "--shape", "klh"], [out / "mic_000.mrc"]


@case
def case_simulate_tomogram_larger_than_memory(tmp):
    out = tmp / "cell.mrc"
    return lambda: cli("simulate", "tomogram", out, "--shape", "100000", "100000", "100000"), [
        "--shape", "GiB"], [out]


@case
def case_simulate_micrographs_larger_than_memory(tmp):
    out = tmp / "mics"
    return lambda: cli("simulate", "micrographs", out, "-n", "100000", "--shape", "8192",
                       "8192"), ["-n", "GiB"], [out / "mic_000.mrc"]


@case
def case_simulate_subtomograms_larger_than_memory(tmp):
    out = tmp / "set.npz"
    return lambda: cli("simulate", "subtomograms", out, "--classes", "a,b", "-n", "100000000",
                       "--box", "64"), ["--n-per-class", "GiB"], [out]


# --- picks and truth paired by micrograph -----------------------------------------------------


@case
def case_evaluate_picks_of_another_micrograph(tmp):
    picks = _picks(tmp / "mic04.box", [[40, 40], [80, 80]])
    truth = _picks(tmp / "truth" / "mic05.box", [[20, 90]])
    return lambda: cli("pick", "evaluate", picks, "--truth", truth, "--radius", "10"), [
        "mic04.box", "mic05.box"], []


@case
def case_evaluate_swapped_pairs(tmp):
    a = _picks(tmp / "a_picks.star", [[40, 40]], name="alpha.mrc")
    b = _picks(tmp / "b_picks.star", [[80, 80]], name="beta.mrc")
    ta = _picks(tmp / "alpha.box", [[40, 40]])
    tb = _picks(tmp / "beta.box", [[80, 80]])
    return lambda: cli("pick", "evaluate", a, b, "--truth", tb, ta, "--radius", "10"), [
        "a_picks.star", "beta.box"], []


@case
def case_evaluate_star_names_another_micrograph(tmp):
    picks = _picks(tmp / "run1.star", [[40, 40]], name="grid3_0001.mrc")
    truth = _picks(tmp / "manual.star", [[40, 40]], name="grid3_0002.mrc")
    return lambda: cli("pick", "evaluate", picks, "--truth", truth, "--radius", "10"), [
        "run1.star", "manual.star"], []


@case
def case_pick_train_swapped_coords(tmp):
    m1, m2 = _micrograph(tmp / "mic1.mrc"), _micrograph(tmp / "mic2.mrc")
    c1, c2 = _picks(tmp / "mic1.box", [[40, 40]]), _picks(tmp / "mic2.box", [[60, 60]])
    out = tmp / "p.keras"
    return lambda: cli("pick", "train", m1, m2, "--coords", c2, c1, "--box", "32", "--epochs",
                       "1", "--out", out), ["mic1.mrc", "mic2.box", "--coords"], [out]


@case
def case_pick_train_every_box_off_the_micrograph(tmp):
    mic = _micrograph(tmp / "mic1.mrc", shape=(64, 64))
    coords = _picks(tmp / "mic1.box", [[2, 2], [62, 62], [3, 60]], box=48)
    out = tmp / "p.keras"
    return lambda: cli("pick", "train", mic, "--coords", coords, "--box", "48", "--epochs", "1",
                       "--out", out), ["mic1.mrc", "off"], [out]


# --- annotation stores ------------------------------------------------------------------------


@case
def case_mask_painter_path_is_a_folder(tmp):
    from cryoml.widgets import MaskPainterState

    (tmp / "masks.npz").mkdir()
    return lambda: MaskPainterState(np.zeros((1, 8, 8)), path=tmp / "masks.npz"), [
        "masks.npz"], []


@case
def case_mask_painter_overwrites_saved_masks(tmp):
    """Data loss: a fresh painter with resume=False replaced saved masks at its first stroke."""
    from cryoml.widgets import MaskPainterState

    path = tmp / "masks.npz"
    first = MaskPainterState(np.zeros((1, 32, 32)), path=path, pen_size=9)
    first.stroke([(16, 2), (16, 28)])
    saved = path.read_bytes()

    def paint_again():
        again = MaskPainterState(np.zeros((1, 32, 32)), path=path, resume=False, pen_size=1)
        again.stroke([(1, 1)])

    def run():
        try:
            paint_again()
        finally:
            if path.read_bytes() != saved:
                raise AssertionError("LOST: the saved masks were replaced")

    return run, ["masks.npz", "resume=True"], []


# --- the cases as tests -----------------------------------------------------------------------


def _run_case(name, tmp_path, monkeypatch):
    function = CASES[name]
    arguments = [tmp_path]
    if "monkeypatch" in function.__code__.co_varnames[: function.__code__.co_argcount]:
        arguments.append(monkeypatch)
    action, mention, outputs = function(*arguments)
    result, detail = verdict(action, mention, outputs)
    if result == "traceback" and detail.startswith("AssertionError: LOST"):
        result = "lost"
    return result, detail


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_clearly_and_writes_nothing(name, tmp_path, monkeypatch):
    result, detail = _run_case(name, tmp_path, monkeypatch)
    assert result == "clear", f"{name}: {result}: {detail}"


def test_there_are_at_least_sixty_distinct_cases():
    assert len(CASES) >= 60


# --- faults that need more than one step -------------------------------------------------------

_KILLED_WRITER = """
import os, signal, sys
from cryoml.io import atomic_path
with atomic_path(sys.argv[1], overwrite=True) as tmp:
    tmp.write_bytes(b"x" * 100000)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_single_file_run_leaves_no_temporary_after_the_next_write(tmp_path):
    target = tmp_path / "out.mrc"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.mrc.")]
    assert left, "the killed writer left no temporary file, so this test cannot tell"
    assert not target.exists()
    io.write_mrc(target, np.zeros((4, 4), np.float32), voxel_size=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mrc"]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    from cryoml.io._atomic import _HOST, _TMP_TAG

    live = tmp_path / f".out.mrc{_TMP_TAG}{_HOST}-{os.getppid()}-abc.tmp.mrc"
    live.write_bytes(b"writing")
    io.write_mrc(tmp_path / "out.mrc", np.zeros((4, 4), np.float32), voxel_size=1.0)
    assert live.exists()


def _stale_case(tmp_path, monkeypatch):
    """Run a batch once, then report which reruns would skip every file."""
    import dask.distributed

    sys.path.insert(0, str(Path(__file__).parent / "batch"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent / "batch") + os.pathsep
                       + os.environ.get("PYTHONPATH", ""))
    from _tasks import double_volume

    from cryoml.batch import run_batch

    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(2):
        np.save(inputs / f"t{index}.npy", np.full((2, 2), index, np.float32))
    network = tmp_path / "net.keras"
    network.write_bytes(b"weights v1")
    out = tmp_path / "out"
    options = {"crash_marker": None, "network_file": str(network), "threshold": 0.5}

    def run(**changes):
        return run_batch(_with_network, [str(inputs / "*.npy")], out_dir=out, suffix="_x2.npy",
                         options={**options, **changes}, n_workers=1, progress=False)

    _TASK["function"] = double_volume
    first = run()
    assert len(first.done) == 2

    class WouldRun(Exception):
        pass

    def refuse(*args, **kwargs):
        raise WouldRun

    monkeypatch.setattr(dask.distributed, "LocalCluster", refuse)
    results = {}
    for label, change in (("same", {}), ("threshold", {"threshold": 0.7}),
                          ("engine", {"engine": "fft"})):
        try:
            results[label] = len(run(**change).skipped)
        except WouldRun:
            results[label] = "reruns"
    network.write_bytes(b"weights v2, retrained")
    try:
        results["retrained"] = len(run().skipped)
    except WouldRun:
        results["retrained"] = "reruns"
    return results


_TASK: dict = {}


def _with_network(input_path, output_path, *, network_file, threshold, engine="auto",
                  crash_marker=None):
    from _tasks import double_volume

    return double_volume(input_path, output_path, crash_marker=crash_marker)


@pytest.mark.slow
def test_batch_resume_reruns_when_the_network_or_an_option_changed(tmp_path, monkeypatch):
    results = _stale_case(tmp_path, monkeypatch)
    assert results == {"same": 2, "threshold": "reruns", "engine": "reruns",
                       "retrained": "reruns"}


@pytest.mark.filterwarnings("ignore:network 'ribosome' gives nearly the same output")
def test_continued_network_takes_the_training_sets_feature_name(tmp_path):
    from cryoml.tomoseg import TomoSegmenter, TrainingSet

    rng = np.random.default_rng(0)
    tiles = rng.normal(size=(8, 16, 16, 1)).astype(np.float32)
    labels = np.zeros((8, 8, 8), np.float32)
    labels[:4, 2:6, 2:6] = 1
    TrainingSet(tiles=tiles, labels=labels, is_positive=np.arange(8) < 4,
                feature="ribosome").save(tmp_path / "ribosome.npz")
    old = _tiny_tomoseg(tmp_path / "membrane.keras", feature="membrane")
    new = tmp_path / "continued.keras"
    cli("tomoseg", "train", tmp_path / "ribosome.npz", "-o", new, "--continue", old,
        "--epochs", "1", "--batch", "8")
    assert TomoSegmenter.load(new, progress=False).feature == "ribosome"


# --- fuzzing of the readers -------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# A generous deadline: a hang, not a slow shared CI box, is what it must catch.
_FUZZ = settings(max_examples=1000, deadline=30000, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _good_header() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = io.write_mrc(Path(folder) / "g.mrc", np.ones((2, 4, 4), np.float32),
                            voxel_size=2.0)
        return path.read_bytes()


_GOOD_MRC = _good_header()
_HEADER_FIELDS = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 52, 56, 60, 92, 208, 212, 216]


@st.composite
def _mrc_bytes(draw) -> bytes:
    data = bytearray(_GOOD_MRC)
    for _ in range(draw(st.integers(1, 4))):
        offset = draw(st.sampled_from(_HEADER_FIELDS))
        if draw(st.booleans()):
            value = np.array([draw(st.integers(-(2**31), 2**31 - 1))], "<i4").tobytes()
        else:
            value = np.array([draw(st.floats(width=32, allow_nan=True))], "<f4").tobytes()
        data[offset : offset + 4] = value
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return bytes(data if cut is None else data[:cut]) + draw(st.binary(max_size=64))


def _read_quietly(reader, path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reader(path)
        except CryomlError:
            pass


@pytest.mark.slow
@_FUZZ
@given(content=_mrc_bytes(), mmap=st.booleans())
def test_fuzzed_mrc_files_raise_only_cryoml_errors(tmp_path_factory, content, mmap):
    path = tmp_path_factory.getbasetemp() / "fuzz.mrc"
    path.write_bytes(content)
    _read_quietly(lambda p: io.read_mrc(p, mmap=mmap), path)


_NUMBER = st.one_of(st.integers(-(10**6), 10**6).map(str), st.sampled_from(
    ["nan", "inf", "-inf", "", "1e400", "x", "0", "-0", "1.5", "NaN"]))
_LINE = st.lists(_NUMBER, min_size=0, max_size=6).map(" ".join)


@st.composite
def _coordinate_file(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".box", ".csv", ".star", ".json"]))
    if draw(st.integers(0, 9)) == 0:
        return suffix, draw(st.binary(max_size=200))
    lines = draw(st.lists(_LINE, max_size=6))
    if suffix == ".csv":
        header = draw(st.sampled_from(["x,y", "x,y,z", "x,y,score,class,box_size", "y", "a,b"]))
        text = header + "\n" + "\n".join(line.replace(" ", ",") for line in lines)
    elif suffix == ".star":
        columns = draw(st.lists(st.sampled_from(
            ["_rlnCoordinateX", "_rlnCoordinateY", "_rlnCoordinateZ", "_rlnClassNumber",
             "_rlnAutopickFigureOfMerit", "_rlnMicrographName"]), min_size=0, max_size=5))
        text = "data_\nloop_\n" + "".join(f"{c} #{i + 1}\n" for i, c in enumerate(columns))
        text += "\n".join(lines)
    elif suffix == ".json":
        rows = draw(st.lists(st.lists(st.one_of(
            st.integers(-1000, 1000), st.floats(allow_nan=True), st.text(max_size=3),
            st.none()), max_size=6), max_size=4))
        key = draw(st.sampled_from(["boxes", "boxes_3d", "other"]))
        payload = {key: rows}
        if draw(st.booleans()):
            payload["class_list"] = draw(st.dictionaries(
                st.text(max_size=3), st.dictionaries(st.sampled_from(["name", "boxsize"]),
                                                     st.one_of(st.integers(), st.text(max_size=3))),
                max_size=2))
        text = json.dumps(payload) if draw(st.integers(0, 5)) else json.dumps(rows)
    else:
        text = "\n".join(lines)
    return suffix, text.encode()


@pytest.mark.slow
@_FUZZ
@given(content=_coordinate_file())
def test_fuzzed_coordinate_files_raise_only_cryoml_errors(tmp_path_factory, content):
    suffix, data = content
    path = tmp_path_factory.getbasetemp() / f"fuzz{suffix}"
    path.write_bytes(data)
    _read_quietly(io.read_coordinates, path)


# --- verdict counts ---------------------------------------------------------------------------


def main() -> None:
    """Print each case's verdict and the counts (run with the tree to measure on PYTHONPATH)."""
    import tempfile
    from collections import Counter

    class StillWorking(BaseException):
        pass

    def give_up(*_):
        raise StillWorking

    counts: Counter = Counter()
    signal.signal(signal.SIGALRM, give_up)
    for name in sorted(CASES):
        with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
            signal.alarm(60)
            try:
                result, detail = _run_case(name, Path(folder), patch)
            except StillWorking:  # no refusal within a minute: it went on with the work
                result, detail = "silent", "still working after 60 s (no refusal up front)"
            except Exception as error:  # the case could not even be set up on this tree
                result, detail = "traceback", f"setup: {type(error).__name__}: {error}"
            finally:
                signal.alarm(0)
        counts[result] += 1
        print(f"{result:9s} {name}: {detail[:160]!s}".replace("\n", " "))
    print(dict(counts), "of", len(CASES))


if __name__ == "__main__":
    main()
