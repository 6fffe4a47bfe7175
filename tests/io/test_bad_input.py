"""Every kind of bad input gets a CryomlError naming the file and what to do."""

import warnings

import mrcfile
import numpy as np
import pytest

from cryoml import CryomlError, CryomlWarning, io


def _good_mrc(tmp_path, name="good.mrc", shape=(8, 16, 16)):
    return io.write_mrc(tmp_path / name, np.ones(shape, np.float32), voxel_size=4.0)


def test_truncated_mrc_is_refused_with_its_name(tmp_path):
    path = _good_mrc(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.mrc"
    truncated.write_bytes(data[: len(data) - 700])
    with pytest.raises(CryomlError, match=r"truncated\.mrc.*truncated"):
        io.read_mrc(truncated)


def test_file_that_is_not_mrc_is_refused(tmp_path):
    path = tmp_path / "notes.mrc"
    path.write_bytes(b"this is a text file, not a map\n" * 100)
    with pytest.raises(CryomlError, match=r"notes\.mrc.*cannot read as MRC"):
        io.read_mrc(path)


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.mrc"
    path.touch()
    with pytest.raises(CryomlError, match=r"empty\.mrc is empty"):
        io.read_mrc(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CryomlError, match="no such file"):
        io.read_image(tmp_path / "nowhere.mrc")


def test_nan_and_inf_values_are_refused(tmp_path):
    data = np.ones((4, 4), np.float32)
    data[1, 2] = np.nan
    data[3, 3] = np.inf
    path = io.write_mrc(tmp_path / "nan.mrc", data, voxel_size=1.0)
    with pytest.raises(CryomlError, match=r"nan\.mrc.*2 NaN or infinite"):
        io.read_mrc(path)


def test_one_dimensional_data_is_refused(tmp_path):
    path = tmp_path / "line.mrc"
    with mrcfile.new(path) as handle:
        handle.set_data(np.ones((1, 1, 7), np.float32))
    with mrcfile.open(path, mode="r+") as handle:
        handle.header.ny = 1
    with pytest.raises(CryomlError):
        io.write_mrc(tmp_path / "x.mrc", np.ones(7, np.float32))


def test_missing_voxel_size_warns_and_is_not_guessed(tmp_path):
    path = tmp_path / "nosize.mrc"
    with mrcfile.new(path) as handle:
        handle.set_data(np.ones((4, 4), np.float32))
        handle.voxel_size = 0.0
    with pytest.warns(CryomlWarning, match="no voxel size"):
        image = io.read_mrc(path)
    assert image.voxel_size is None


def test_unknown_coordinate_columns_are_refused(tmp_path):
    path = tmp_path / "picks.csv"
    path.write_text("col,row,confidence\n1,2,0.5\n")
    with pytest.raises(CryomlError, match=r"picks\.csv.*unknown.*Rename"):
        io.read_coordinates(path)


def test_negative_box_size_in_box_file_is_refused(tmp_path):
    path = tmp_path / "neg.box"
    path.write_text("10 10 -32 -32\n")
    with pytest.raises(CryomlError, match=r"neg\.box.*negative size"):
        io.read_coordinates(path)


def test_malformed_box_line_is_refused_with_line_number(tmp_path):
    path = tmp_path / "bad.box"
    path.write_text("10 10 32 32\n10 ten 32 32\n")
    with pytest.raises(CryomlError, match="line 2"):
        io.read_coordinates(path)


def test_boxes_off_the_image_are_refused():
    with pytest.raises(CryomlError, match="reach outside"):
        io.check_boxes_inside(io.Particles([[2.0, 2.0]], box_size=16), (100, 100))


def test_unwritable_output_folder_is_refused_before_any_work(tmp_path):
    import os

    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # running as root: permissions do not bind
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(CryomlError, match="not writable"):
            io.write_mrc(folder / "out.mrc", np.zeros((4, 4), np.float32))
    finally:
        folder.chmod(0o700)


def test_output_inside_a_file_instead_of_a_folder_is_refused(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(CryomlError, match="cannot create the folder"):
        io.write_mrc(blocker / "out.mrc", np.zeros((4, 4), np.float32))


def test_unknown_image_suffix_is_refused(tmp_path):
    path = tmp_path / "picture.jpg"
    path.write_bytes(b"\xff\xd8")
    with pytest.raises(CryomlError, match="unknown image format"):
        io.read_image(path)


def test_voxel_size_mismatch_is_refused_unless_overridden():
    with pytest.raises(CryomlError, match=r"expects 10 Å/voxel but tomo\.mrc has 20"):
        io.check_voxel_size_match(10.0, 20.0, what="network 'membrane'", source="tomo.mrc")
    io.check_voxel_size_match(10.0, 20.0, what="network", override=True)


def test_damaged_header_can_be_read_permissively(tmp_path):
    path = _good_mrc(tmp_path, "stamp.mrc", shape=(4, 4))
    with mrcfile.open(path, mode="r+") as handle:
        handle.header.map = b"XXXX"
    with pytest.raises(CryomlError, match="permissive=True"):
        io.read_mrc(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        image = io.read_mrc(path, permissive=True)
    assert image.shape == (4, 4)
