"""Smoothing the slice-by-slice output along Z (``smooth_along_z``, ``apply_network``)."""

from __future__ import annotations

import logging

import mrcfile
import numpy as np
import pytest

from cryoml._errors import CryomlError
from cryoml.tomoseg import (
    TomoSegmenter,
    apply_network,
    smooth_along_z,
)
from cryoml.tomoseg._smooth import smooth_in_place


def test_smoothing_joins_a_flickering_line_and_keeps_the_slice_plane_sharp():
    volume = np.zeros((30, 16, 16), np.float32)
    volume[::3, 8, :] = 3.0  # a line found in every third slice only
    smoothed = smooth_along_z(volume, 30.0, voxel_size=10.0)
    line = smoothed[6:-6, 8, :]
    assert line.min() > 0.9 and np.ptp(line) < 0.1  # now in every slice, nearly evenly
    # Nothing leaks into the next row: the slice plane is not blurred.
    assert np.all(smoothed[:, 7, :] == 0) and np.all(smoothed[:, 9, :] == 0)
    # The total along each column is kept (no loss of signal, edges handled by 'nearest').
    assert abs(smoothed[:, 8, 0].sum() - volume[:, 8, 0].sum()) < 0.15 * volume[:, 8, 0].sum()
    np.testing.assert_array_equal(smooth_along_z(volume, 0.0), volume)


def test_smoothing_in_blocks_of_rows_equals_one_pass(monkeypatch):
    import scipy.ndimage as ndi

    import cryoml.tomoseg._smooth as module

    rng = np.random.default_rng(0)
    volume = rng.random((9, 23, 7)).astype(np.float32)
    monkeypatch.setattr(module, "_BLOCK_BYTES", 4 * 9 * 7 * 5)  # blocks of 5 rows, last of 3
    blocked = volume.copy()
    lo, hi, total, squares = smooth_in_place(blocked, 1.5)
    expected = ndi.gaussian_filter1d(volume, 1.5, axis=0, mode="nearest")
    np.testing.assert_allclose(blocked, expected, rtol=1e-6)
    assert lo == pytest.approx(expected.min()) and hi == pytest.approx(expected.max())
    assert total == pytest.approx(expected.sum(dtype=np.float64), rel=1e-6)
    assert squares == pytest.approx(np.sum(expected.astype(np.float64) ** 2), rel=1e-5)
    codes = (volume * 255).round().astype(np.uint8)
    smooth_in_place(codes, 1.5)
    assert codes.dtype == np.uint8
    assert np.abs(codes.astype(float) - expected * 255).max() <= 1.0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "wide"])
def test_a_bad_sigma_is_refused_with_its_value(bad):
    with pytest.raises(CryomlError, match="smooth_z"):
        smooth_along_z(np.zeros((3, 4, 4)), bad)
    with pytest.raises(CryomlError, match="smooth_z"):
        TomoSegmenter(architecture="unet", smooth_z=bad)


def test_the_unet_output_is_smoothed_by_default_and_the_paper_output_is_not(tmp_path,
                                                                             untrained):
    rng = np.random.default_rng(0)
    volume = rng.standard_normal((10, 40, 40)).astype(np.float32)
    unet = untrained("unet")
    assert unet.smooth_z_angstrom == 40.0 and untrained("paper").smooth_z_angstrom == 0.0
    raw = apply_network(volume, unet, voxel_size=10.0, smooth_z=0, progress=False)
    default = apply_network(volume, unet, voxel_size=10.0, progress=False)
    np.testing.assert_allclose(default, smooth_along_z(raw, 40.0, voxel_size=10.0), atol=1e-6)
    assert not np.allclose(default, raw)
    # Å, not slices: at 5 Å per voxel the same 40 Å is 8 slices.
    fine = apply_network(volume, unet, voxel_size=5.0, override_voxel_size=True, progress=False)
    np.testing.assert_allclose(fine, smooth_along_z(raw, 8.0), atol=1e-6)
    # A file is smoothed in place before it gets its name, and its header follows.
    path = apply_network(volume, unet, voxel_size=10.0, output=tmp_path / "x.mrc",
                         progress=False)
    np.testing.assert_allclose(np.asarray(path), default, atol=1e-6)
    with mrcfile.open(tmp_path / "x.mrc") as handle:
        assert handle.header.dmax == pytest.approx(default.max(), rel=1e-5)
        assert handle.header.dmean == pytest.approx(default.mean(), rel=1e-4)
    paper = untrained("paper")
    np.testing.assert_array_equal(
        apply_network(volume, paper, voxel_size=10.0, engine="keras", progress=False),
        apply_network(volume, paper, voxel_size=10.0, engine="keras", smooth_z=0,
                      progress=False))


def test_the_network_keeps_its_smoothing_when_saved(tmp_path, untrained):
    unet = untrained("unet", smooth_z=25.0)
    loaded = TomoSegmenter.load(unet.save(tmp_path / "u.keras"), progress=False)
    assert loaded.smooth_z == 25.0 and loaded.smooth_z_angstrom == 25.0


def test_without_any_voxel_size_the_smoothing_is_skipped_with_a_warning(caplog, untrained):
    unet = untrained("unet")
    unet.voxel_size_ = None
    volume = np.random.default_rng(1).standard_normal((6, 32, 32)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="cryoml"):
        out = apply_network(volume, unet, progress=False)
    assert "smoothing along Z is skipped" in caplog.text
    np.testing.assert_array_equal(out, apply_network(volume, unet, smooth_z=0, progress=False))
