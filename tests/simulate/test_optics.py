import numpy as np
import pytest

from cryoml import CryomlError
from cryoml.simulate import CTFParams, ctf, ctf_2d, electron_wavelength, mtf


def test_wavelength_at_300_kv_is_0_0197_angstrom():
    assert electron_wavelength(300) == pytest.approx(0.019687, rel=1e-3)


def test_ctf_starts_at_minus_amplitude_contrast_and_first_zero_is_where_theory_says():
    params = CTFParams(voltage=300, cs=0.0, defocus=5.0, amplitude_contrast=0.0)
    assert ctf(np.array([0.0]), params)[0] == pytest.approx(0.0)
    params = CTFParams(amplitude_contrast=0.1)
    assert ctf(np.array([0.0]), params)[0] == pytest.approx(-0.1)
    # With Cs = 0 and A = 0 the first zero is at k = 1 / sqrt(λ Δf).
    k0 = 1 / np.sqrt(electron_wavelength(300) * 5e4)
    nocs = CTFParams(cs=0.0, amplitude_contrast=0.0)
    assert abs(ctf(np.array([k0]), nocs)[0]) < 1e-4
    assert ctf(np.array([0.5 * k0]), nocs)[0] < 0  # dense matter dark


def test_phase_flip_and_b_factor():
    k = np.linspace(0, 0.1, 200)
    flipped = ctf(k, CTFParams(phase_flip=True))
    assert np.all(flipped >= 0)
    damped = ctf(k, CTFParams(b_factor=200))
    assert np.abs(damped[-1]) <= np.abs(ctf(k, CTFParams())[-1]) * np.exp(-200 * 0.01 / 4) + 1e-6


def test_mtf_is_sinc_of_pi_omega_over_two():
    assert mtf(np.array([0.0]))[0] == pytest.approx(1.0)
    assert mtf(np.array([1.0]))[0] == pytest.approx(2 / np.pi, rel=1e-5)


def test_ctf_2d_has_rfft_shape_and_refuses_bad_settings():
    assert ctf_2d((32, 32), pixel_size=4.0).shape == (32, 17)
    with pytest.raises(CryomlError):
        CTFParams(amplitude_contrast=1.5)
    with pytest.raises(CryomlError):
        ctf_2d((32, 32), pixel_size=0)
