"""Applying TomoSeg networks to whole tomograms, slice by slice, in batches.

The network is fully convolutional, so it runs on whole slices (or, for slices too large for
memory, on overlapping windows whose seams are invisible because every window keeps a margin
wider than the network's receptive field). The input may be memory-mapped, and the output is
written slice by slice into an MRC memory map that is renamed onto its final name only when
complete, so a 4096×4096×1024 tomogram never has to fit in RAM. Reading the next batch of
slices and writing the previous one run in helper threads while the network works on the
current one.

Four engines compute the same function:

* ``"keras"``: ``model.predict_on_batch`` on float32 batches.
* ``"fused"``: the network, upsampling and scaling as one compiled Keras model (direct
  convolutions; float32 or bfloat16).
* ``"fft"``: Keras for conv1 + pool, then conv2 and conv3 as overlap-save FFT convolutions
  in NumPy/SciPy. A 15×15 kernel over 40→40 channels costs 360,000 multiply-adds per pixel
  directly, about 50× fewer in Fourier space: the choice on a CPU.
* ``"device_fft"``: the whole network as overlap-save FFT convolutions in one jitted JAX
  function on the device (:mod:`cryoml.tomoseg._fft_device`): the choice on a GPU under the
  JAX Keras backend for the paper network.

The FFT engines are keyed on the paper architecture; for other networks they fall back to
``fused`` (``device_fft``) or ``keras`` (``fft``).

These engines are for the paper architecture. The U-Net (``architecture="unet"``) runs
through ``"keras"`` on every device (its 3×3 convolutions suit both); its output already has
the input's sampling.

The paper network's output is upsampled ×2 (bilinear) to the input grid, negatives are set to
0, and every output is divided by the network's amplitude (mean output on its training
positives; 0.5 for the U-Net's probability), so 1 is the natural threshold.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cryoml._errors import CryomlError
from cryoml._pages import drop_pages as _drop_pages

__all__ = ["apply_file", "apply_network", "upsample2"]

logger = logging.getLogger(__name__)

_RECEPTIVE_MARGIN = 48  # > conv1 (7) + pool (1) + 2 × conv2/conv3 at half sampling (2 × 14)
_ENGINES = ("auto", "fused", "keras", "fft", "device_fft")


def upsample2(half: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear ×2 upsampling of (..., h, w) to (..., *shape) (pixel centres aligned)."""
    out = half
    for axis, size in ((-2, shape[0]), (-1, shape[1])):
        n = out.shape[axis]
        before = np.take(out, np.clip(np.arange(n) - 1, 0, n - 1), axis=axis)
        after = np.take(out, np.clip(np.arange(n) + 1, 0, n - 1), axis=axis)
        even = 0.75 * out + 0.25 * before
        odd = 0.75 * out + 0.25 * after
        stacked = np.stack([even, odd], axis=axis if axis == -1 else -2)
        if axis == -2:
            # (..., n, 2, w) → (..., 2n, w)
            stacked = stacked.reshape(*out.shape[:-2], 2 * n, out.shape[-1])
        else:
            stacked = stacked.reshape(*out.shape[:-1], 2 * n)
        out = np.take(stacked, np.arange(size), axis=axis)
    return out.astype(np.float32, copy=False)


def read_padded(volume, zs, n_neighbours: int, rows: int, shape: tuple[int, int],
                edge: int) -> np.ndarray:
    """Slices ``zs`` (with their neighbours as channels) extended by reflection to ``shape``.

    The same values as stacking :func:`slice_channels` and ``np.pad(..., mode="reflect")``
    with ``edge`` pixels before each axis and the rest after, but each slice is read from
    the (memory-mapped) volume straight into its place and only the borders are filled:
    one copy of a 4096² slice instead of three, which the file-to-file pipeline pays for
    in its reader thread. ``rows`` ≥ ``len(zs)``; the extra rows are zeros.
    """
    from cryoml.tomoseg._trainset import slice_channels

    n_y, n_x = volume.shape[1:]
    channels = 2 * n_neighbours + 1
    after_y, after_x = shape[0] - n_y - edge, shape[1] - n_x - edge
    if min(n_y, n_x) < 2 or max(edge, after_y) >= n_y - 1 or max(edge, after_x) >= n_x - 1:
        # Reflections wider than the slice itself: leave them to numpy.
        planes = np.stack([slice_channels(volume, z, n_neighbours) for z in zs])
        widths = ((0, 0), (edge, after_y), (edge, after_x), (0, 0))
        planes = np.pad(planes, widths, mode="symmetric" if min(n_y, n_x) < 2 else "reflect")
        if rows > len(planes):
            filler = np.zeros((rows - len(planes), *planes.shape[1:]), np.float32)
            planes = np.concatenate([planes, filler])
        return planes
    planes = np.zeros((rows, *shape, channels), np.float32)
    n = len(zs)
    for i, z in enumerate(zs):
        for c, source in enumerate(range(z - n_neighbours, z + n_neighbours + 1)):
            source = min(max(source, 0), volume.shape[0] - 1)
            planes[i, edge : edge + n_y, edge : edge + n_x, c] = volume[source]
    inner = planes[:n]
    # Rows first, then columns over the full height, as np.pad does axis by axis.
    if edge:
        inner[:, :edge] = inner[:, 2 * edge : edge : -1]
    if after_y:
        last = edge + n_y - 1
        inner[:, last + 1 :] = inner[:, last - 1 : last - 1 - after_y : -1]
    if edge:
        inner[:, :, :edge] = inner[:, :, 2 * edge : edge : -1]
    if after_x:
        last = edge + n_x - 1
        inner[:, :, last + 1 :] = inner[:, :, last - 1 : last - 1 - after_x : -1]
    return planes


def _device_crop(edge: int, n_y: int, n_x: int):
    """Jitted crop of device slices to (n_y, n_x) from ``edge``, with the header statistics.

    Cropping on the device copies only the slice itself back to the host and lets the device
    give the MRC header's min / max / sum / sum of squares, which the host otherwise computes
    on every slice: for float16 output numpy's reductions cost ~0.1 s per 4096² slice.
    """
    import jax
    import jax.numpy as jnp

    @jax.jit
    def crop(slices):
        cut = slices[:, edge : edge + n_y, edge : edge + n_x]
        values = cut.astype(jnp.float32).ravel()
        return cut, jnp.stack([values.min(), values.max(), values.sum(), jnp.vdot(values, values)])

    return crop


def _gpu_available() -> bool:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return any(d.platform != "cpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
        if backend == "tensorflow":
            import tensorflow as tf  # only to ask for devices

            return bool(tf.config.list_physical_devices("GPU"))
    except Exception:
        return False
    return False


# Device bytes per window pixel of one network call, measured on an H200 with JAX: the
# device FFT engine allocated 7.53 GiB for 32 Mi pixels (~240 B); the U-Net keeps 32-96
# full-size feature maps per pixel. Used only to shrink the default batch on a smaller or
# shared GPU.
_BYTES_PER_PIXEL = {"device_fft": 256, "fused": 256, "keras": 256, "unet": 1024}


def _device_free_bytes() -> int | None:
    """Bytes the JAX allocator of the first accelerator may still hand out (None if unknown)."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    try:
        import jax

        device = next(d for d in jax.devices() if d.platform != "cpu")
        stats = device.memory_stats() or {}
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # no accelerator, or a runtime without memory statistics
        return None


def default_gpu_pixels(engine: str, unet: bool, free_bytes: int | None) -> int:
    """Window pixels per network call on a GPU by default.

    As many as the engine uses well on a large GPU (72 Mi for the device FFT engine: four
    4096² slices with their margins, 0.0177 s per slice on an H200 against 0.0199 s one at a
    time; 16 Mi for the others, 2 Mi for the U-Net), but no more than a quarter of the device
    memory still free allows, so that a 12 GB card, or a GPU shared by several processes, does
    not run out of memory (measured: a JAX process capped at 12 GB failed on a 32 Mi default).
    """
    pixels = 2 << 20 if unet else (72 << 20 if engine == "device_fft" else 16 << 20)
    if free_bytes is not None:
        per_pixel = _BYTES_PER_PIXEL["unet" if unet else engine]
        pixels = min(pixels, max(1 << 18, free_bytes // 4 // per_pixel))
    return int(pixels)


class _KerasForward:
    """Raw half-sampled network output for (B, H, W, C) float32 batches."""

    def __init__(self, model):
        self.model = model

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(batch))[..., 0]


class _FusedForward:
    """Network, ×2 bilinear upsampling, ReLU and amplitude scaling as one compiled Keras model.

    Everything after the network runs on the device, so only the finished full-size slices
    come back to the host; with ``precision="bfloat16"`` the network's layers compute in
    bfloat16 (Keras mixed precision) and return float32. The choice on a GPU.
    """

    def __init__(self, model, amplitude: float, *, precision: str = "float32"):
        import keras

        if precision not in ("float32", "bfloat16"):
            raise CryomlError(f"'precision' must be 'float32' or 'bfloat16'; got {precision!r}.")
        inputs = keras.Input(model.inputs[0].shape[1:], name="slices")
        hidden = inputs
        # The TomoSeg net is a chain of layers: rebuild it layer by layer with the chosen policy.
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
            twin = layer.__class__.from_config({**layer.get_config(), "dtype": policy})
            hidden = twin(hidden)
            twin.set_weights(layer.get_weights())
        hidden = keras.layers.Activation("linear", dtype="float32")(hidden)
        hidden = keras.layers.UpSampling2D(2, interpolation="bilinear", dtype="float32")(hidden)
        hidden = keras.layers.ReLU(dtype="float32")(hidden)
        outputs = keras.layers.Rescaling(1.0 / float(amplitude), dtype="float32")(hidden)
        self.model = keras.Model(inputs, outputs)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(batch), np.float32)[..., 0]


class _FFTForward:
    """conv1 + pool through Keras, conv2 and conv3 by overlap-save FFT in NumPy."""

    def __init__(self, model, *, fft_size: int = 128, workers: int | None = None):
        import keras
        import scipy.fft

        self.fft = scipy.fft
        self.workers = workers or os.cpu_count() or 1
        self.front = keras.Model(model.inputs, model.get_layer("pool1").output)
        conv2, conv3 = model.get_layer("conv2"), model.get_layer("conv3")
        kernel2, self.bias2 = (np.asarray(w, np.float32) for w in conv2.get_weights())
        kernel3, self.bias3 = (np.asarray(w, np.float32) for w in conv3.get_weights())
        self.k = kernel2.shape[0]
        self.n = max(int(fft_size), 2 * self.k)
        self.step = self.n - self.k + 1
        self.kf2 = self._kernel_fft(kernel2)
        self.kf3 = self._kernel_fft(kernel3)

    def _kernel_fft(self, kernel: np.ndarray) -> np.ndarray:
        # Correlation = product with the conjugate transform; (F, C_in, C_out) complex64.
        k, _, c_in, c_out = kernel.shape
        padded = np.zeros((c_in, c_out, self.n, self.n), np.float32)
        padded[:, :, :k, :k] = np.transpose(kernel, (2, 3, 0, 1))
        spectrum = np.conj(self.fft.rfft2(padded, workers=self.workers)).astype(np.complex64)
        return np.ascontiguousarray(spectrum.reshape(c_in, c_out, -1).transpose(2, 0, 1))

    def _conv(self, x: np.ndarray, kf: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """'same' correlation of (B, C_in, H, W) with the kernels → (B, C_out, H, W)."""
        b, c_in, h, w = x.shape
        n, step, half = self.n, self.step, self.k // 2
        nby, nbx = -(-h // step), -(-w // step)
        padded = np.zeros((b, c_in, nby * step + n - step, nbx * step + n - step), np.float32)
        padded[:, :, half : half + h, half : half + w] = x
        windows = np.lib.stride_tricks.sliding_window_view(padded, (n, n), axis=(2, 3))
        windows = windows[:, :, ::step, ::step]
        c_out = kf.shape[2]
        out = np.empty((b, c_out, nby * step, nbx * step), np.float32)
        index = np.stack(np.meshgrid(np.arange(b), np.arange(nby), np.arange(nbx), indexing="ij"))
        index = index.reshape(3, -1)
        chunk = max(4, 1280 // max(c_in, 1))  # ~85 MB of spectra per chunk
        for start in range(0, index.shape[1], chunk):
            ib, iy, ix = index[:, start : start + chunk]
            blocks = windows[ib, :, iy, ix]  # (M, C_in, n, n)
            spectrum = self.fft.rfft2(blocks, workers=self.workers)
            m = spectrum.shape[0]
            spectrum = np.ascontiguousarray(spectrum.reshape(m, c_in, -1).transpose(2, 0, 1))
            product = np.matmul(spectrum, kf)  # (F, M, C_out)
            product = product.transpose(1, 2, 0).reshape(m, c_out, n, n // 2 + 1)
            result = self.fft.irfft2(product, s=(n, n), workers=self.workers)[..., :step, :step]
            for j in range(m):
                out[
                    ib[j], :, iy[j] * step : (iy[j] + 1) * step, ix[j] * step : (ix[j] + 1) * step
                ] = result[j]
        out = out[:, :, :h, :w]
        out += bias[None, :, None, None]
        return out

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        hidden = np.asarray(self.front.predict_on_batch(batch), np.float32)
        hidden = np.ascontiguousarray(hidden.transpose(0, 3, 1, 2))
        hidden = np.maximum(self._conv(hidden, self.kf2, self.bias2), 0)
        return self._conv(hidden, self.kf3, self.bias3)[:, 0]


def _jax_importable() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def _choose_engine(engine: str, model, gpu: bool) -> str:
    """The engine to run: ``auto`` resolved, FFT engines replaced for other networks."""
    import keras

    from cryoml.tomoseg._fft_device import paper_layers

    paper = paper_layers(model) is not None
    if engine == "auto":
        if gpu and paper and keras.backend.backend() == "jax":
            return "device_fft"
        return "fused" if gpu else "fft"
    if engine == "device_fft":
        if not _jax_importable():
            raise CryomlError(
                "engine 'device_fft' needs JAX (pip install jax, or jax[cuda12] for a GPU); "
                "use engine='fused' or 'fft'."
            )
        if not paper:
            logger.info("not the paper network: engine 'device_fft' falls back to 'fused'")
            return "fused"
    if engine == "fft" and not paper:
        logger.info("not the paper network: engine 'fft' falls back to 'keras'")
        return "keras"
    return engine


def _forward_for(
    segmenter, engine: str, precision: str, output_dtype: str = "float32", fft_size: int = 256
):
    """The engine for this network, built once and kept on it (keyed by a fingerprint of the
    weights, so that further training is noticed): compiled functions are then reused by
    every later call instead of being traced again."""
    from cryoml._model_cache import cached_on, weights_fingerprint

    def build():
        if engine == "fused":
            return _FusedForward(segmenter.model_, segmenter.amplitude_, precision=precision)
        if engine == "keras":
            return _KerasForward(segmenter.model_)
        if engine == "device_fft":
            from cryoml.tomoseg._fft_device import DeviceFFTForward

            return DeviceFFTForward(
                segmenter.model_,
                segmenter.amplitude_,
                output_dtype=output_dtype,
                fft_size=fft_size,
            )
        return _FFTForward(segmenter.model_)

    device_key = (output_dtype, fft_size) if engine == "device_fft" else None
    key = (
        engine,
        precision,
        device_key,
        float(segmenter.amplitude_),
        weights_fingerprint(segmenter.model_),
    )
    return cached_on(segmenter, "_cryoml_engines", key, build, keep=4)


def _windows(size: int, tile: int, margin: int) -> list[tuple[int, int, int]]:
    """(window start, core start, core stop) along one axis; all windows ``tile`` long."""
    if size <= tile:
        return [(0, 0, size)]
    core = tile - 2 * margin
    spans = []
    for core_start in range(0, size, core):
        core_stop = min(size, core_start + core)
        start = min(max(core_start - margin, 0), size - tile)
        spans.append((start, core_start, core_stop))
    return spans


def _resolve_network(network):
    from cryoml.tomoseg._training import TomoSegmenter

    if isinstance(network, (str, os.PathLike)):
        return TomoSegmenter.load(network, progress=False)
    if not isinstance(network, TomoSegmenter):
        raise CryomlError(
            f"'network' must be a TomoSegmenter or the path of a saved .keras network; got "
            f"{type(network).__name__}."
        )
    network._check_fitted()
    return network


def apply_network(
    tomogram,
    network,
    *,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    voxel_size: float | None = None,
    override_voxel_size: bool = False,
    engine: str = "auto",
    precision: str = "float32",
    output_dtype: str = "float32",
    batch_size: int | None = None,
    tile_size: int | None = None,
    overlap: int = _RECEPTIVE_MARGIN,
    smooth_z: float | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Segment a tomogram with a trained network, slice by slice.

    Parameters
    ----------
    tomogram : (Z, Y, X) array_like, Image, or path
        The tomogram, preprocessed as the training tomogram was (see the network's
        ``preprocess_``). A path is read memory-mapped (MRC) so the volume need not fit in RAM.
    network : TomoSegmenter or path
        A trained network or its ``.keras`` file.
    output : path, optional
        Write the result to this MRC, slice by slice through a memory map, renamed onto the
        name only when complete. Without it the result is returned in memory.
    overwrite : bool, default False
        Replace an existing ``output``.
    voxel_size : float, optional
        Å/voxel of the tomogram when it is a plain array (taken from an Image or file).
    override_voxel_size : bool, default False
        Apply even when the voxel size differs from the network's.
    engine : {"auto", "fused", "keras", "fft", "device_fft"}
        ``auto``: on a GPU ``device_fft`` (JAX Keras backend, paper network) or ``fused``;
        ``fft`` on a CPU. ``fused`` runs the network, the upsampling and the scaling on the
        device in one compiled model; it needs each slice in one window (falls back to
        ``keras`` for tiled slices). ``device_fft`` runs all of that as FFT convolutions in
        JAX on whole slices (needs JAX; any Keras backend). See the module notes.
    precision : {"float32", "bfloat16"}
        Arithmetic of the ``fused`` engine's network layers (bfloat16: Keras mixed precision,
        about twice as fast on tensor-core GPUs; outputs agree to about 1e-2 relative). The
        FFT engines always compute in float32.
    output_dtype : {"float32", "float16", "uint8"}
        Type of the output. ``float16`` halves the bytes written (values saturate at
        65504); ``uint8`` quarters them as a probability-like code ``round(min(v, 1) × 255)``
        (the training loss clips the output at 1), written as MRC mode 0 with IMOD's
        unsigned-byte flag (read back as uint8 by :func:`cryoml.io.read_mrc` and IMOD).
    batch_size : int, optional
        Windows per network call (default on a GPU: about 75 million pixels per call for
        ``device_fft`` — four 4096² slices —, 16 million for the other engines, 2 million
        for the U-Net, fewer where a quarter of the device memory still free would not hold
        them; 1 million on a CPU).
    tile_size : int, optional
        Largest window edge (default 4096 on a GPU, 1024 on a CPU, plus twice ``overlap``);
        larger slices are tiled. For ``device_fft``, which takes whole slices, the edge of its
        overlap-save FFT tiles (default 256).
    overlap : int, default 48
        Margin (pixels) each window keeps beyond its core; must exceed the receptive field.
    smooth_z : float, optional
        Gaussian σ in Å along Z applied to the output (:func:`smooth_along_z`; the slice
        plane stays sharp), which joins what the network finds in some slices and loses in
        the next. Default: the network's ``smooth_z_angstrom`` (40 Å for the U-Net, 0 for the
        paper network). 0 gives the network's raw slice-by-slice output. A file output is
        smoothed in place, block by block, before it is given its name: one more read and
        write of the output (a quarter of the bytes for ``uint8``).
    progress : bool, default True
        Show a tqdm bar over slices.

    Returns
    -------
    (Z, Y, X) float32 ndarray
        Scaled output (in memory, or the memory map of ``output`` opened read-only).

    Raises
    ------
    CryomlError
        For a voxel-size mismatch (unless overridden), a wrong engine, or an existing output.
    """
    from cryoml.io import Image, atomic_path, check_voxel_size_match, check_writable, read_image

    segmenter = _resolve_network(network)
    source = None
    if isinstance(tomogram, (str, os.PathLike)):
        source = str(tomogram)
        tomogram = read_image(tomogram, mmap=True)
    if isinstance(tomogram, Image):
        voxel_size = tomogram.voxel_size if voxel_size is None else voxel_size
        source = source or (str(tomogram.path) if tomogram.path else None)
        tomogram = tomogram.data
    volume = tomogram if isinstance(tomogram, np.memmap) else np.asarray(tomogram)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3 or volume.size == 0:
        raise CryomlError(f"tomogram must be a (Z, Y, X) volume; got shape {volume.shape}.")
    check_voxel_size_match(
        segmenter.voxel_size_,
        voxel_size,
        what=f"network {segmenter.feature!r}",
        source=source,
        override=override_voxel_size,
    )
    if engine not in _ENGINES:
        raise CryomlError(f"'engine' must be one of {', '.join(_ENGINES)}; got {engine!r}.")
    from cryoml.tomoseg._fft_device import OUTPUT_DTYPES, encode_output
    from cryoml.tomoseg._smooth import _check_sigma, smooth_in_place

    sigma_z = _smoothing_voxels(
        segmenter.smooth_z_angstrom if smooth_z is None else _check_sigma(smooth_z),
        voxel_size if voxel_size is not None else segmenter.voxel_size_,
        segmenter.feature,
    )

    if output_dtype not in OUTPUT_DTYPES:
        raise CryomlError(
            f"'output_dtype' must be one of {', '.join(OUTPUT_DTYPES)}; got {output_dtype!r}."
        )
    gpu = _gpu_available()
    stride = int(getattr(segmenter, "output_stride", 2))
    multiple = int(getattr(segmenter, "size_multiple", 2))
    engine = _choose_engine(engine, segmenter.model_, gpu)
    if stride == 1 and engine != "keras":
        logger.info("the %s architecture runs through the 'keras' engine", segmenter.architecture)
        engine = "keras"
    if int(overlap) < 0:
        raise CryomlError(f"'overlap' must be >= 0; got {overlap}.")
    margin = -(-int(overlap) // multiple) * multiple
    fft_size = int(tile_size) if tile_size else 256
    if engine == "device_fft":
        tile_size = None  # whole slices; the engine tiles them itself
    # The default keeps a whole 4096² slice (with its reflected margin) in one GPU window.
    tile = int(tile_size) if tile_size else (4096 if gpu else 1024) + 2 * margin
    tile = -(-tile // multiple) * multiple
    if tile <= 2 * margin:
        raise CryomlError(f"'tile_size' ({tile}) must exceed twice the overlap ({margin}).")
    if output is not None:
        check_writable(output, overwrite=overwrite)

    n_z, n_y, n_x = volume.shape
    # Each slice is extended by reflection on every side before the network sees it: with
    # 'same' zero padding at the slice's own edge the network met a dark frame it never saw in
    # training and answered with a bright one (measured on a random network: border mean
    # 0.20 vs interior 0.29, 0.4 s.d.). ``edge`` pixels are cut off again afterwards.
    edge = margin
    even_y = -(-(n_y + 2 * edge) // multiple) * multiple
    even_x = -(-(n_x + 2 * edge) // multiple) * multiple
    spans_y = _windows(even_y, tile, margin)
    spans_x = _windows(even_x, tile, margin)
    window_y = min(tile, even_y)
    window_x = min(tile, even_x)
    if engine == "device_fft":  # whole slices: the engine tiles them itself
        spans_y, spans_x = [(0, 0, even_y)], [(0, 0, even_x)]
        window_y, window_x = even_y, even_x
    if batch_size is None:
        pixels = (
            default_gpu_pixels(engine, stride == 1, _device_free_bytes()) if gpu else 1 << 20
        )
        batch_size = max(1, pixels // (window_y * window_x))
    batch_size = int(batch_size)
    if batch_size < 1:
        raise CryomlError(f"'batch_size' must be >= 1; got {batch_size}.")
    slices_per_step = max(1, batch_size // (len(spans_y) * len(spans_x)))
    if engine == "fused" and len(spans_y) * len(spans_x) > 1:
        logger.info("slices need tiling: the fused engine falls back to 'keras'")
        engine = "keras"
    forward = _forward_for(segmenter, engine, precision, output_dtype, fft_size)
    k = int(segmenter.n_neighbours_)
    amplitude = np.float32(segmenter.amplitude_)

    stats = {"min": np.inf, "max": -np.inf, "sum": 0.0, "sumsq": 0.0}
    on_device = engine == "device_fft"
    crop = None
    if on_device and (even_y, even_x) != (n_y, n_x):
        crop = _device_crop(edge, n_y, n_x)

    def _add_stats(values) -> None:
        lo, hi, total, squares = (float(v) for v in values)
        stats["min"] = min(stats["min"], lo)
        stats["max"] = max(stats["max"], hi)
        stats["sum"] += total
        stats["sumsq"] += squares

    def run(handle_data):
        from tqdm.auto import tqdm

        def _store(full: np.ndarray, z0: int, device_stats) -> None:
            handle_data[z0 : z0 + len(full)] = full
            if output is not None:  # header statistics are needed only for a file
                if device_stats is not None:
                    _add_stats(device_stats)
                else:
                    flat = full.reshape(-1)
                    # Reductions on the float32 copy: numpy's float16 ones are several times
                    # slower. BLAS dot: float32 accumulation is ample for an MRC header's r.m.s.
                    as_float = flat if flat.dtype == np.float32 else flat.astype(np.float32)
                    _add_stats(
                        (
                            as_float.min(),
                            as_float.max(),
                            as_float.sum(dtype=np.float64),
                            np.dot(as_float, as_float),
                        )
                    )
            # No-ops for arrays in memory; mrcfile's data are views whose base is the map.
            _drop_pages(volume)
            _drop_pages(handle_data)

        def _load(z0: int):
            zs = range(z0, min(n_z, z0 + slices_per_step))
            n = len(zs)
            # Same shape as the other batches on the device (no recompile); zero filler.
            rows = slices_per_step if on_device and n < slices_per_step < n_z else n
            planes = read_padded(volume, zs, k, rows, (even_y, even_x), edge)
            if on_device:
                import jax

                # Copied to the device here, in the reader thread, while the device computes.
                return jax.device_put(planes), n
            return planes, len(planes)

        def _compute(planes: np.ndarray) -> np.ndarray:
            if engine == "fused":
                n = len(planes)
                if n < slices_per_step < n_z:  # same shape as the other batches: no recompile
                    filler = np.zeros((slices_per_step - n, *planes.shape[1:]), np.float32)
                    planes = np.concatenate([planes, filler])
                return encode_output(
                    forward(planes)[:n, edge : edge + n_y, edge : edge + n_x], output_dtype
                )
            s = stride
            half = np.empty((len(planes), even_y // s, even_x // s), np.float32)
            jobs = [(b, sy, sx) for b in range(len(planes)) for sy in spans_y for sx in spans_x]
            for j0 in range(0, len(jobs), batch_size):
                group = jobs[j0 : j0 + batch_size]
                batch = np.stack(
                    [
                        planes[b, sy[0] : sy[0] + window_y, sx[0] : sx[0] + window_x]
                        for b, sy, sx in group
                    ]
                )
                if len(group) < batch_size and (len(jobs) > batch_size or n_z > slices_per_step):
                    filler = np.zeros((batch_size - len(group), *batch.shape[1:]), np.float32)
                    batch = np.concatenate([batch, filler])
                result = forward(batch)
                for i, (b, sy, sx) in enumerate(group):
                    (wy, cy0, cy1), (wx, cx0, cx1) = sy, sx
                    half[b, cy0 // s : cy1 // s, cx0 // s : cx1 // s] = result[
                        i, (cy0 - wy) // s : (cy1 - wy) // s, (cx0 - wx) // s : (cx1 - wx) // s
                    ]
            full = upsample2(half, (even_y, even_x)) if s == 2 else half
            full = np.ascontiguousarray(full[:, edge : edge + n_y, edge : edge + n_x])
            np.maximum(full, 0, out=full)
            full /= amplitude
            return encode_output(full, output_dtype)

        bar = tqdm(
            total=n_z, desc=f"applying {segmenter.feature}", unit="slice", disable=not progress
        )
        # Three stages in a pipeline: while the network works on batch i (this thread), a
        # helper thread reads and stacks batch i + 1 and another writes batch i − 1, so on a
        # GPU the device does not wait for the disk. Reads, copies and the device all release
        # the GIL. At most three batches are in memory at once. The device engine also copies
        # batch i + 1 to the device in the reader thread and dispatches batch i + 1 before it
        # waits for batch i, so that the device never waits for the host.
        starts = list(range(0, n_z, slices_per_step))
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cryoml-apply") as pool:
            loading = pool.submit(_load, starts[0])
            writing = None
            pending = None  # device engine: (device slices, device stats, n, z0) in flight

            def _write(full, z0, device_stats):
                nonlocal writing
                if writing is not None:
                    writing.result()
                    bar.update(slices_per_step)
                writing = pool.submit(_store, full, z0, device_stats)

            def _finish(item):
                slices, device_stats, n, z0 = item
                full = np.asarray(slices)[:n]  # cropped on the device
                values = np.asarray(device_stats, np.float64) if n == len(slices) else None
                _write(full, z0, values)

            try:
                for i, z0 in enumerate(starts):
                    planes, n = loading.result()
                    if i + 1 < len(starts):
                        loading = pool.submit(_load, starts[i + 1])
                    if on_device:
                        slices, device_stats = forward.device_call(planes)
                        if crop is not None:
                            slices, device_stats = crop(slices)
                        del planes
                        if pending is not None:
                            _finish(pending)
                        pending = (slices, device_stats, n, z0)
                        continue
                    full = _compute(planes)
                    del planes
                    _write(full, z0, None)
                if pending is not None:
                    _finish(pending)
                if writing is not None:
                    writing.result()
                    bar.update(n_z - starts[-1])
            finally:
                loading.cancel()
                bar.close()

    out_dtype = np.dtype(output_dtype)
    if output is None:
        result = np.empty(volume.shape, out_dtype)
        run(result)
        if sigma_z > 0:
            smooth_in_place(result, sigma_z)
        return result
    import mrcfile

    from cryoml.io._mrc import mark_unsigned_bytes

    mode = {"float32": 2, "float16": 12, "uint8": 0}[output_dtype]
    with atomic_path(output, overwrite=overwrite) as tmp:
        with mrcfile.new_mmap(tmp, shape=volume.shape, mrc_mode=mode, overwrite=True) as handle:
            run(handle.data.view(out_dtype))
            if sigma_z > 0:
                lo, hi, total, squares = smooth_in_place(handle.data.view(out_dtype), sigma_z)
                stats.update(min=lo, max=hi, sum=total, sumsq=squares)
            if voxel_size is not None:
                handle.voxel_size = float(voxel_size)
            count = float(volume.size)
            handle.header.dmin = stats["min"]
            handle.header.dmax = stats["max"]
            handle.header.dmean = stats["sum"] / count
            handle.header.rms = float(
                np.sqrt(max(stats["sumsq"] / count - (stats["sum"] / count) ** 2, 0.0))
            )
            if output_dtype == "uint8":
                mark_unsigned_bytes(handle.header)
    logger.info("wrote %s", output)
    return mrcfile.mmap(Path(output), mode="r").data.view(out_dtype)


def _smoothing_voxels(sigma_a: float, voxel_size: float | None, feature: str) -> float:
    """σ along Z in voxels; 0, with a warning, when no voxel size is known to convert Å."""
    if sigma_a <= 0:
        return 0.0
    if voxel_size is None or not float(voxel_size) > 0:
        logger.warning(
            "network %r: neither the tomogram nor the network has a voxel size, so the "
            "%.0f Å smoothing along Z is skipped; pass voxel_size= (Å/voxel) to apply it, or "
            "smooth_z=0 to silence this.",
            feature,
            sigma_a,
        )
        return 0.0
    return float(sigma_a) / float(voxel_size)


def apply_file(input_path, output_path, *, network, **options) -> dict:
    """Segment one tomogram file into ``output_path``; a task for :func:`cryoml.batch.run_batch`.

    ``network`` is the path of a saved ``.keras`` network (each worker loads it); ``options``
    are those of :func:`apply_network`.
    """
    result = apply_network(
        input_path, network, output=output_path, overwrite=True, progress=False, **options
    )
    return {"shape": list(result.shape)}
