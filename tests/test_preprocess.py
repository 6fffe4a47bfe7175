import numpy as np
import pytest

from cryoml import CryomlError
from cryoml.preprocess import PreprocessRecord, bandpass, bin_image, clamp, normalize, preprocess


def _radial_power(image, voxel_size):
    """Mean power per spatial-frequency band (Å⁻¹) of a 2-D image."""
    power = np.abs(np.fft.rfft2(image)) ** 2
    fy = np.fft.fftfreq(image.shape[0], voxel_size)[:, None]
    fx = np.fft.rfftfreq(image.shape[1], voxel_size)[None, :]
    return np.sqrt(fy**2 + fx**2), power


def test_lowpass_removes_power_finer_than_the_cutoff_and_keeps_coarse_power():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(128, 128)).astype(np.float32)
    filtered = bandpass(image, voxel_size=2.0, lowpass=20.0)
    f, before = _radial_power(image, 2.0)
    _, after = _radial_power(filtered, 2.0)
    fine = f > 3 / 20.0  # three times the cut-off: power transfer exp(-9) ≈ 1e-4
    coarse = (f > 0) & (f < 0.2 / 20.0)
    assert after[fine].sum() / before[fine].sum() < 1e-3
    assert after[coarse].sum() / before[coarse].sum() > 0.95
    assert filtered.dtype == np.float32


def test_highpass_removes_a_slow_gradient_and_keeps_fine_detail():
    _yy, xx = np.mgrid[:128, :128].astype(np.float32)
    gradient = xx / 128 * 10
    detail = np.random.default_rng(1).normal(size=(128, 128)).astype(np.float32)
    filtered = bandpass(gradient + detail, voxel_size=10.0, highpass=400.0)
    f, before = _radial_power(gradient + detail, 10.0)
    _, after = _radial_power(filtered, 10.0)
    lowest = (f > 0) & (f <= 1 / 1280.0)
    fine = f > 1 / 100.0
    assert after[lowest].sum() / before[lowest].sum() < 0.1
    assert after[fine].sum() / before[fine].sum() > 0.95


def test_transfer_at_the_lowpass_cutoff_is_exp_minus_half():
    n = 64
    _yy, xx = np.mgrid[:n, :n]
    frequency = 1 / 40.0  # cycles per Å, with 10 Å pixels: period 4 px
    wave = np.cos(2 * np.pi * frequency * xx * 10.0).astype(np.float64)
    filtered = bandpass(wave, voxel_size=10.0, lowpass=40.0)
    assert filtered.std() / wave.std() == pytest.approx(np.exp(-0.5), rel=1e-6)


@pytest.mark.parametrize("method", ["fourier", "mean"])
def test_binning_halves_each_axis_and_keeps_the_mean(method):
    volume = np.random.default_rng(2).normal(5, 1, size=(8, 16, 18)).astype(np.float32)
    binned = bin_image(volume, 2, method=method)
    assert binned.shape == (4, 8, 9)
    assert binned.mean() == pytest.approx(volume.mean(), rel=1e-4)


def test_fourier_binning_keeps_a_band_limited_signal_exactly():
    xx = np.arange(64)
    wave = np.cos(2 * np.pi * xx * 3 / 64)[None, :] * np.ones((64, 1))
    binned = bin_image(wave, 2, method="fourier")
    expected = np.cos(2 * np.pi * np.arange(32) * 3 / 32)[None, :] * np.ones((32, 1))
    np.testing.assert_allclose(binned, expected, atol=1e-5)


def test_normalise_and_clamp_give_unit_statistics_and_bounded_values():
    data = np.random.default_rng(3).standard_t(2, size=(64, 64)).astype(np.float32) * 7 + 3
    normalised = normalize(data)
    assert normalised.mean() == pytest.approx(0, abs=1e-5)
    assert normalised.std() == pytest.approx(1, abs=1e-5)
    clamped = clamp(normalised, 3)
    assert clamped.max() <= 3 + 1e-5 and clamped.min() >= -3 - 1e-5


def test_preprocess_record_round_trips_and_tracks_voxel_size(tmp_path):
    volume = np.random.default_rng(4).normal(size=(8, 32, 32)).astype(np.float32)
    out, record = preprocess(volume, voxel_size=10.0, lowpass=40.0, highpass=2000.0, bin_factor=2)
    assert out.shape == (4, 16, 16) and record.voxel_size == 20.0
    assert np.abs(out).max() <= 3.0 + 1e-5
    record.save(tmp_path / "r.json")
    assert PreprocessRecord.load(tmp_path / "r.json") == record


def test_filter_settings_that_make_no_sense_are_refused():
    data = np.zeros((16, 16), np.float32)
    with pytest.raises(CryomlError, match="finer than Nyquist"):
        bandpass(data, voxel_size=10.0, lowpass=15.0)
    with pytest.raises(CryomlError, match="coarser than lowpass"):
        bandpass(data, voxel_size=10.0, lowpass=40.0, highpass=30.0)
    with pytest.raises(CryomlError, match="voxel size"):
        preprocess(data, voxel_size=None, lowpass=40.0)
    with pytest.raises(CryomlError, match="factor"):
        bin_image(data, 0)
