from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cryoml import CryomlError, io
from cryoml.outofcore import MrcSlabReader, process_in_slabs, slab_depth_for_memory


def test_slab_processing_with_halo_equals_whole_volume_processing(tmp_path):
    volume = np.random.default_rng(0).normal(size=(23, 16, 20)).astype(np.float32)
    io.write_mrc(tmp_path / "in.mrc", volume, voxel_size=7.0)

    def smooth(block):
        return ndimage.uniform_filter(block, size=5, mode="nearest")

    report = process_in_slabs(
        tmp_path / "in.mrc", tmp_path / "out.mrc", smooth, halo=2, slab_depth=4, progress=False
    )
    assert report["n_slabs"] == 6
    out = io.read_mrc(tmp_path / "out.mrc")
    np.testing.assert_allclose(out.data, smooth(volume), atol=1e-5)
    assert out.voxel_size == pytest.approx(7.0)
    assert out.data.mean() == pytest.approx(report["mean"], rel=1e-4)


def test_reader_returns_exact_slabs_and_refuses_truncation(tmp_path):
    volume = np.arange(5 * 3 * 4, dtype=np.int16).reshape(5, 3, 4)
    path = io.write_mrc(tmp_path / "v.mrc", volume, voxel_size=1.0)
    reader = MrcSlabReader(path)
    np.testing.assert_array_equal(reader.read(1, 3), volume[1:3])
    np.testing.assert_array_equal(reader.read(-2, 99), volume)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CryomlError):
        MrcSlabReader(path).read(0, 5)


def test_slab_depth_follows_the_memory_budget():
    assert slab_depth_for_memory((1000, 1024, 1024), 120, halo=0) == 10
    with pytest.raises(CryomlError, match="cannot hold one slice"):
        slab_depth_for_memory((10, 4096, 4096), 10)


def test_a_function_that_changes_the_shape_is_refused_and_no_output_remains(tmp_path):
    io.write_mrc(tmp_path / "in.mrc", np.zeros((4, 8, 8), np.float32), voxel_size=1.0)
    with pytest.raises(CryomlError, match="keep the shape"):
        process_in_slabs(
            tmp_path / "in.mrc", tmp_path / "out.mrc", lambda b: b[:, :4], progress=False
        )
    assert not (tmp_path / "out.mrc").exists()


def _resident_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_opening_a_memory_mapped_volume_does_not_leave_it_resident(tmp_path):
    # The NaN check reads every voxel; a 256 MB volume must not stay in this process's memory.
    import mrcfile

    path = tmp_path / "big.mrc"
    with mrcfile.new_mmap(path, shape=(64, 1024, 1024), mrc_mode=2) as handle:
        for z in range(64):
            handle.data[z] = z
        handle.voxel_size = 10.0
    before = _resident_mb()
    image = io.read_mrc(path, mmap=True)
    assert image.data.shape == (64, 1024, 1024)
    assert _resident_mb() - before < 120
