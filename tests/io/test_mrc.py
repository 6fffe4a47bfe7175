import mrcfile
import numpy as np
import pytest

from cryoml import CryomlError, io


@pytest.mark.parametrize(
    ("shape", "is_stack"),
    [((12, 16), False), ((3, 12, 16), True), ((5, 12, 16), False)],
    ids=["image", "stack", "volume"],
)
def test_mrc_round_trip_keeps_data_voxel_size_and_kind(tmp_path, shape, is_stack):
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    path = io.write_mrc(tmp_path / "a.mrc", data, voxel_size=2.5, is_stack=is_stack)
    image = io.read_mrc(path)
    np.testing.assert_array_equal(image.data, data)
    assert image.voxel_size == pytest.approx(2.5)
    assert image.is_stack is is_stack
    assert image.shape == shape


def test_memory_mapped_read_gives_the_same_values_without_loading(tmp_path):
    data = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    io.write_mrc(tmp_path / "v.mrc", data, voxel_size=1.0)
    image = io.read_mrc(tmp_path / "v.mrc", mmap=True)
    assert isinstance(image.data, np.memmap)
    np.testing.assert_array_equal(np.asarray(image.data), data)


def test_types_mrc_cannot_hold_are_written_as_float32(tmp_path):
    data = np.arange(16, dtype=np.float64).reshape(4, 4)
    io.write_mrc(tmp_path / "d.mrc", data, voxel_size=1.0)
    image = io.read_mrc(tmp_path / "d.mrc")
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image.data, data.astype(np.float32))


def test_writing_never_overwrites_without_permission(tmp_path):
    path = io.write_mrc(tmp_path / "a.mrc", np.zeros((4, 4), np.float32), voxel_size=1.0)
    with pytest.raises(CryomlError, match="already exists"):
        io.write_mrc(path, np.ones((4, 4), np.float32), voxel_size=1.0)
    np.testing.assert_array_equal(io.read_mrc(path).data, 0)
    io.write_mrc(path, np.ones((4, 4), np.float32), voxel_size=1.0, overwrite=True)
    np.testing.assert_array_equal(io.read_mrc(path).data, 1)


def test_failed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.mrc"
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_real_micrograph_header_gives_size_and_pixel(reference_data):
    image = io.read_mrc(reference_data / "micrographs" / "epu2.9_example.mrc", mmap=True)
    assert image.shape == (4096, 4096)
    assert image.voxel_size == pytest.approx(0.667, abs=1e-3)


def test_imagej_tiff_spacing_and_unit_give_angstrom(reference_data):
    image = io.read_image(reference_data / "tomograms" / "13pf_MT.tif")
    assert image.shape == (36, 206, 94)
    assert image.voxel_size == pytest.approx(10.52, abs=1e-3)


def test_tiff_written_by_tifffile_in_nm_reads_back_in_angstrom(tmp_path):
    import tifffile

    data = np.zeros((3, 8, 8), np.uint8)
    tifffile.imwrite(
        tmp_path / "v.tif",
        data,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"unit": "nm", "spacing": 0.5, "axes": "ZYX"},
    )
    assert io.read_tiff(tmp_path / "v.tif").voxel_size == pytest.approx(5.0)


def test_mrc_voxel_size_survives_a_plain_mrcfile_reader(tmp_path):
    io.write_mrc(tmp_path / "a.mrc", np.zeros((2, 4, 4), np.float32), voxel_size=9.2)
    with mrcfile.open(tmp_path / "a.mrc") as handle:
        assert float(handle.voxel_size.x) == pytest.approx(9.2, rel=1e-6)


def test_written_files_get_ordinary_permissions_not_private_ones(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = io.write_mrc(tmp_path / "p.mrc", np.zeros((4, 4), np.float32), voxel_size=1.0)
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
