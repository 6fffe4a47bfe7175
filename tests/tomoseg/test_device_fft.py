"""The device FFT engine (JAX overlap-save) against the direct engines; output types."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from cryoml import io
from cryoml._errors import CryomlError
from cryoml.tomoseg import TomoSegmenter, apply_network
from cryoml.tomoseg.models import build_tomoseg_cnn

pytest.importorskip("jax", reason="the device FFT engine needs JAX")


def _segmenter(n_channels: int = 1, *, model=None, kernel_size: int = 7) -> TomoSegmenter:
    import keras

    keras.utils.set_random_seed(3)
    segmenter = TomoSegmenter(feature="x", n_filters=6, progress=False)
    segmenter.model_ = model or build_tomoseg_cnn(
        n_channels=n_channels, n_filters=6, kernel_size=kernel_size
    )
    rng = np.random.default_rng(1)
    for weight in segmenter.model_.weights:  # biases ≠ 0, so the ReLUs cut somewhere
        if "bias" in weight.path:
            weight.assign(rng.normal(0, 0.05, weight.shape).astype(np.float32))
    segmenter.amplitude_, segmenter.voxel_size_ = 0.3, 10.0
    segmenter.n_neighbours_ = (n_channels - 1) // 2
    segmenter.preprocess_, segmenter.history_ = {}, {"loss": [], "val_loss": []}
    return segmenter


@pytest.fixture(scope="module")
def volume():
    return np.random.default_rng(0).normal(size=(5, 70, 93)).astype(np.float32)


@pytest.mark.parametrize(("n_channels", "kernel_size"), [(1, 15), (3, 7)])
def test_device_fft_matches_the_direct_engine(volume, n_channels, kernel_size):
    segmenter = _segmenter(n_channels, kernel_size=kernel_size)
    options = {"voxel_size": 10.0, "progress": False, "batch_size": 2}
    direct = apply_network(volume, segmenter, engine="keras", **options)
    fft = apply_network(volume, segmenter, engine="device_fft", **options)
    assert direct.max() > 0.5 and (direct == 0).mean() > 0.05  # ReLU active, output non-trivial
    np.testing.assert_allclose(fft, direct, atol=2e-5 * float(direct.max()))


def test_overlap_save_tiles_of_any_size_give_the_same_network():
    from cryoml.tomoseg._apply import _FusedForward
    from cryoml.tomoseg._fft_device import DeviceFFTForward

    segmenter = _segmenter()
    batch = np.random.default_rng(2).normal(size=(2, 100, 130, 1)).astype(np.float32)
    reference = _FusedForward(segmenter.model_, 0.3)(batch)
    for fft_size in (16, 256):  # 12 tiles per image, one tile per image
        engine = DeviceFFTForward(segmenter.model_, 0.3, fft_size=fft_size)
        out, stats = engine(batch)
        np.testing.assert_allclose(out, reference, atol=2e-5 * float(reference.max()))
        assert stats[1] == pytest.approx(float(reference.max()), rel=1e-5)
        assert stats[2] == pytest.approx(float(reference.sum(dtype=np.float64)), rel=1e-4)
    assert DeviceFFTForward(segmenter.model_, 0.3, fft_size=16).tile_size(100, 130) == 16
    with pytest.raises(CryomlError, match="fft_size"):
        DeviceFFTForward(segmenter.model_, 0.3, fft_size=13)


@pytest.mark.parametrize("output_dtype", ["float16", "uint8"])
def test_output_types_through_files_keep_slices_and_header(volume, tmp_path, output_dtype):
    segmenter = _segmenter()
    source = io.write_mrc(tmp_path / "t.mrc", volume, voxel_size=10.0)
    reference = apply_network(volume, segmenter, voxel_size=10.0, engine="keras", progress=False)
    if output_dtype == "uint8":
        expected = np.rint(np.clip(reference, 0, 1) * 255)
        atol = 1.0  # a code may round the other way
    else:
        expected = reference
        atol = 2e-3 * float(reference.max())
    for engine, batch_size in (("keras", 5), ("device_fft", 2)):  # 2 + 2 + 1: uneven end
        target = tmp_path / f"o_{engine}_{batch_size}.mrc"
        returned = apply_network(source, segmenter, output=target, engine=engine,
                                 output_dtype=output_dtype, batch_size=batch_size,
                                 progress=False)
        back = io.read_mrc(target).data
        assert back.dtype == np.dtype(output_dtype) and returned.dtype == back.dtype
        np.testing.assert_allclose(back.astype(np.float64), expected, atol=atol)
        with mrcfile.open(target) as handle:
            assert int(handle.header.mode) == (12 if output_dtype == "float16" else 0)
            values = back.astype(np.float64)
            assert float(handle.header.dmax) == pytest.approx(values.max(), rel=1e-5)
            assert float(handle.header.dmean) == pytest.approx(values.mean(), rel=1e-4)
            assert float(handle.header.rms) == pytest.approx(values.std(), rel=1e-3)
    with pytest.raises(CryomlError, match="output_dtype"):
        apply_network(volume, segmenter, voxel_size=10.0, output_dtype="int32", progress=False)


def test_other_architectures_fall_back_to_a_direct_engine(volume):
    import keras

    from cryoml.tomoseg._fft_device import paper_layers

    inputs = keras.Input((None, None, 1))
    hidden = keras.layers.Conv2D(4, 5, padding="same", activation="relu", name="conv1")(inputs)
    hidden = keras.layers.MaxPooling2D(2, name="pool1")(hidden)
    hidden = keras.layers.Conv2D(4, 5, padding="same", activation="tanh", name="conv2")(hidden)
    outputs = keras.layers.Conv2D(1, 5, padding="same", name="conv3")(hidden)
    other = keras.Model(inputs, outputs)
    assert paper_layers(other) is None and paper_layers(build_tomoseg_cnn()) is not None
    segmenter = _segmenter(model=other)
    options = {"voxel_size": 10.0, "progress": False}
    direct = apply_network(volume[:2], segmenter, engine="keras", **options)
    for engine in ("device_fft", "fft"):
        out = apply_network(volume[:2], segmenter, engine=engine, **options)
        np.testing.assert_allclose(out, direct, atol=1e-4)


def test_auto_on_a_cpu_keeps_the_numpy_fft_engine(monkeypatch):
    from cryoml.tomoseg import _apply

    model = build_tomoseg_cnn(n_filters=2, kernel_size=5)
    assert _apply._choose_engine("auto", model, gpu=False) == "fft"
    monkeypatch.setattr("keras.backend.backend", lambda: "jax")
    assert _apply._choose_engine("auto", model, gpu=True) == "device_fft"
    monkeypatch.setattr("keras.backend.backend", lambda: "tensorflow")
    assert _apply._choose_engine("auto", model, gpu=True) == "fused"


def test_default_gpu_batch_shrinks_to_the_free_device_memory():
    from cryoml.tomoseg._apply import default_gpu_pixels

    # A large, idle GPU keeps the engines' defaults.
    assert default_gpu_pixels("device_fft", False, 100 << 30) == 72 << 20
    assert default_gpu_pixels("fused", False, None) == 16 << 20
    assert default_gpu_pixels("keras", True, 100 << 30) == 2 << 20
    # 12 GB left (a process capped at 12 GB on a shared H200 ran out of memory at 32 Mi
    # pixels, which took 7.5 GiB): a quarter of it at ~256 bytes per pixel.
    pixels = default_gpu_pixels("device_fft", False, 12 << 30)
    assert pixels * 256 <= 3 << 30
    assert pixels < 32 << 20
    # Never down to nothing.
    assert default_gpu_pixels("keras", True, 0) == 1 << 18


@pytest.mark.parametrize(
    ("shape", "k", "edge", "even", "rows"),
    [
        ((5, 37, 29), 0, 6, (50, 42), 3),  # odd sizes, unequal far-side widths
        ((5, 37, 29), 2, 6, (50, 42), 4),  # 2.5D channels, repeated end slices, zero filler
        ((3, 16, 16), 0, 0, (16, 16), 3),  # nothing to pad
        ((3, 8, 40), 0, 10, (28, 60), 3),  # reflection wider than the slice: numpy's path
        ((2, 1, 12), 0, 2, (6, 16), 2),  # a single row: numpy's symmetric path
    ],
)
def test_read_padded_matches_numpy_pad(shape, k, edge, even, rows):
    from cryoml.tomoseg._apply import read_padded
    from cryoml.tomoseg._trainset import slice_channels

    volume = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    zs = range(shape[0] - 2, shape[0]) if rows > 2 else range(shape[0])
    got = read_padded(volume, zs, k, rows, even, edge)
    widths = ((0, 0), (edge, even[0] - shape[1] - edge), (edge, even[1] - shape[2] - edge),
              (0, 0))
    mode = "symmetric" if min(shape[1:]) < 2 else "reflect"
    expected = np.pad(np.stack([slice_channels(volume, z, k) for z in zs]), widths, mode=mode)
    assert got.shape == (rows, *even, 2 * k + 1)
    np.testing.assert_array_equal(got[: len(zs)], expected)
    assert not got[len(zs):].any()
