"""The TomoSeg network as overlap-save FFT convolutions on the device (JAX).

The paper network (conv 15×15 + ReLU → 2×2 max-pool → conv 15×15 + ReLU → conv 15×15) spends
almost all of its multiply-adds in convolutions with large kernels over 40 channels: 360,000
per pixel for conv2 done directly, a poor shape for tensor cores. In Fourier space each
convolution is, per frequency, a (tiles × C_in) by (C_in × C_out) complex product: about a
hundred times fewer operations. This engine runs the whole network that way on the device:

* the kernel spectra are computed once per network (per FFT size), conjugated so that the
  product is Keras's correlation, and kept on the device;
* each convolution cuts its (batch of) images into overlapping ``n × n`` tiles stepping by
  ``n − k + 1`` (overlap-save), transforms all tiles at once, mixes channels per frequency,
  transforms back and keeps each tile's valid ``step × step`` corner;
* bias, ReLU, max-pooling, the ×2 bilinear upsampling to the input grid, the final ReLU and
  the division by the network's amplitude run between and after them as the network defines
  them, in one compiled function, so only the finished slices (in the output type, with
  their header statistics) come back to the host.

It is keyed on the paper architecture (:func:`paper_layers`); any other network returns
``None`` there and the caller uses a direct engine. JAX is needed (not the JAX *Keras backend*:
the weights are taken as NumPy arrays, so the engine also runs beside a TensorFlow Keras).
"""

from __future__ import annotations

import numpy as np

from cryoml._errors import CryomlError

__all__ = ["DeviceFFTForward", "encode_output", "paper_layers"]

OUTPUT_DTYPES = ("float32", "float16", "uint8")


def paper_layers(model):
    """(conv1, pool, conv2, conv3) when ``model`` is the paper chain, else None.

    The chain: Conv2D (ReLU) → MaxPooling2D → Conv2D (ReLU) → Conv2D (linear), 'same'
    padding, stride 1, no dilation, square odd kernels of one size, with biases,
    channels-last; the pooling square with stride = size and 'valid' padding.
    """
    try:
        import keras
    except ImportError:  # pragma: no cover - keras is a dependency
        return None
    layers = [lay for lay in model.layers if not isinstance(lay, keras.layers.InputLayer)]
    if len(layers) != 4:
        return None
    conv1, pool, conv2, conv3 = layers
    convs = (conv1, conv2, conv3)
    if not all(type(c) is keras.layers.Conv2D for c in convs):
        return None
    if type(pool) is not keras.layers.MaxPooling2D:
        return None
    size = conv1.kernel_size
    for conv, activation in zip(convs, ("relu", "relu", "linear"), strict=True):
        config = conv.get_config()
        if (
            tuple(conv.kernel_size) != tuple(size)
            or size[0] != size[1]
            or size[0] % 2 == 0
            or config.get("padding") != "same"
            or tuple(config.get("strides", (1, 1))) != (1, 1)
            or tuple(config.get("dilation_rate", (1, 1))) != (1, 1)
            or config.get("groups", 1) != 1
            or not config.get("use_bias", True)
            or config.get("data_format", "channels_last") != "channels_last"
            or config.get("activation") != activation
        ):
            return None
    pool_config = pool.get_config()
    p = tuple(pool_config["pool_size"])
    strides = tuple(pool_config.get("strides") or p)
    if (
        p[0] != p[1]
        or strides != p
        or pool_config.get("padding") != "valid"
        or pool_config.get("data_format", "channels_last") != "channels_last"
    ):
        return None
    return conv1, pool, conv2, conv3


def encode_output(full: np.ndarray, dtype: str) -> np.ndarray:
    """Scaled output (≥ 0, 1 = threshold) in the output type, on the host.

    ``float16``: the values (saturating at 65504). ``uint8``: a probability-like code,
    ``round(min(value, 1) × 255)`` (the training loss clips the output at 1, so values above
    1 carry no meaning).
    """
    if dtype == "float32":
        return full
    if dtype == "float16":
        return np.minimum(full, np.float32(65504.0)).astype(np.float16)
    if dtype == "uint8":
        return np.rint(np.clip(full, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    raise CryomlError(f"'output_dtype' must be one of {OUTPUT_DTYPES}; got {dtype!r}.")


def _good_size(n: int) -> int:
    """Smallest size ≥ n of the form 2^a·3^b (fast FFT lengths)."""
    best = 1 << max(0, int(n - 1).bit_length())
    power3 = 1
    while power3 < 2 * n:
        power2 = power3
        while power2 < n:
            power2 *= 2
        best = min(best, power2)
        power3 *= 3
    return best


class DeviceFFTForward:
    """The paper TomoSeg network, upsampling, ReLU and scaling as one jitted JAX function.

    Parameters
    ----------
    model : keras.Model
        A paper-architecture network (see :func:`paper_layers`).
    amplitude : float
        The network's amplitude (output divided by it).
    fft_size : int, default 256
        Overlap-save tile edge (each tile yields ``fft_size − k + 1`` valid pixels per axis);
        images smaller than a tile use the smallest fast size that holds them.
    output_dtype : {"float32", "float16", "uint8"}
        Type of the returned slices (see :func:`encode_output`), converted on the device.

    Calling it on a (B, H, W, C) float32 batch returns ``(slices, stats)``: (B, H, W) in the
    output type and float64 ``[min, max, sum, sum of squares]`` of the returned values.
    """

    def __init__(
        self, model, amplitude: float, *, fft_size: int = 256, output_dtype: str = "float32"
    ):
        import jax
        import jax.numpy as jnp

        layers = paper_layers(model)
        if layers is None:
            raise CryomlError(
                "the FFT engines need the paper TomoSeg network (conv–pool–conv–conv); use "
                "engine='fused' or 'keras' for this network."
            )
        if output_dtype not in OUTPUT_DTYPES:
            raise CryomlError(
                f"'output_dtype' must be one of {OUTPUT_DTYPES}; got {output_dtype!r}."
            )
        conv1, pool, conv2, conv3 = layers
        self.k = int(conv1.kernel_size[0])
        self.pool = int(pool.get_config()["pool_size"][0])
        if int(fft_size) < 2 * self.k:
            raise CryomlError(f"'fft_size' must be >= {2 * self.k}; got {fft_size}.")
        self.fft_size = int(fft_size)
        self.output_dtype = output_dtype
        self.amplitude = float(amplitude)
        # (k, k, C_in, C_out) kernels and (C_out,) biases, float32, kept on the device.
        self.kernels = []
        self.biases = []
        for conv in (conv1, conv2, conv3):
            kernel, bias = (np.asarray(w, np.float32) for w in conv.get_weights())
            self.kernels.append(kernel)
            self.biases.append(jnp.asarray(bias))
        self._spectra: dict[int, list] = {}
        self._jax, self._jnp = jax, jnp
        self._compiled = jax.jit(self._forward)

    # --- pieces --------------------------------------------------------------------------

    def tile_size(self, h: int, w: int) -> int:
        """The FFT size used for an (h, w) image."""
        whole = _good_size(max(h, w) + self.k - 1)
        return max(2 * self.k, min(self.fft_size, whole))

    def spectra(self, n: int) -> list:
        """Conjugated kernel spectra (C_in, C_out, n, n//2+1) for FFT size ``n`` (cached)."""
        if n not in self._spectra:
            jnp = self._jnp
            spectra = []
            for kernel in self.kernels:
                padded = np.zeros((kernel.shape[2], kernel.shape[3], n, n), np.float32)
                padded[:, :, : self.k, : self.k] = np.transpose(kernel, (2, 3, 0, 1))
                spectra.append(jnp.conj(jnp.fft.rfft2(jnp.asarray(padded))))
            self._spectra[n] = spectra
        return self._spectra[n]

    def _conv(self, x, spectrum, bias, n: int):
        """'same' correlation of (B, C_in, H, W) with the kernels → (B, C_out, H, W)."""
        jnp = self._jnp
        b, c_in, h, w = x.shape
        k, step = self.k, n - self.k + 1
        half = k // 2
        nby, nbx = -(-h // step), -(-w // step)
        bottom, right = (nby + 1) * step - h - half, (nbx + 1) * step - w - half
        x = jnp.pad(x, ((0, 0), (0, 0), (half, bottom), (half, right)))
        # Overlapping tiles by reshape: tile i = block i + the first k−1 rows of block i+1.
        x = x.reshape(b, c_in, nby + 1, step, (nbx + 1) * step)
        x = jnp.concatenate([x[:, :, :-1], x[:, :, 1:, : k - 1]], axis=3)  # (B,C,nby,n,W)
        x = x.reshape(b, c_in, nby, n, nbx + 1, step)
        x = jnp.concatenate([x[..., :-1, :], x[..., 1:, : k - 1]], axis=5)  # (...,nbx,n)
        x = x.transpose(0, 2, 4, 1, 3, 5)  # (B, nby, nbx, C_in, n, n)
        f = jnp.fft.rfft2(x)
        c_out = spectrum.shape[1]
        if c_in == 1:
            product = f * spectrum[0]
        elif c_out == 1:
            product = jnp.sum(f * spectrum[:, 0], axis=3, keepdims=True)
        else:
            # Full float32 products (no TF32): this contraction is a small part of the work.
            product = jnp.einsum(
                "bstcyx,cdyx->bstdyx", f, spectrum, precision=self._jax.lax.Precision.HIGHEST
            )
        y = jnp.fft.irfft2(product, s=(n, n))[..., :step, :step]  # (B,nby,nbx,C_out,step,step)
        y = y.transpose(0, 3, 1, 4, 2, 5).reshape(b, c_out, nby * step, nbx * step)
        return y[:, :, :h, :w] + bias[None, :, None, None]

    def _upsample(self, x, shape):
        """Bilinear ×2 of (B, h, w) to (B, *shape), pixel centres aligned, edges clamped."""
        jnp = self._jnp
        for axis, size in ((1, shape[0]), (2, shape[1])):
            n = x.shape[axis]
            before = jnp.take(x, np.clip(np.arange(n) - 1, 0, n - 1), axis=axis)
            after = jnp.take(x, np.clip(np.arange(n) + 1, 0, n - 1), axis=axis)
            even = 0.75 * x + 0.25 * before
            odd = 0.75 * x + 0.25 * after
            stacked = jnp.stack([even, odd], axis=axis + 1)
            new_shape = list(x.shape)
            new_shape[axis] = 2 * n
            x = stacked.reshape(new_shape)
            x = jnp.take(x, np.arange(size), axis=axis)
        return x

    def _forward(self, batch, spectra):
        jnp = self._jnp
        b, h, w, _ = batch.shape
        x = jnp.transpose(batch.astype(jnp.float32), (0, 3, 1, 2))
        n1 = self.tile_size(h, w)
        x = jnp.maximum(self._conv(x, spectra[0][0], self.biases[0], n1), 0)
        p = self.pool
        hp, wp = h // p, w // p
        x = x[:, :, : hp * p, : wp * p].reshape(b, x.shape[1], hp, p, wp, p).max(axis=(3, 5))
        n2 = self.tile_size(hp, wp)
        x = jnp.maximum(self._conv(x, spectra[1][1], self.biases[1], n2), 0)
        x = self._conv(x, spectra[1][2], self.biases[2], n2)[:, 0]
        if p == 2:
            x = self._upsample(x, (h, w))
        else:  # same as Keras UpSampling2D(bilinear) for other factors
            x = self._jax.image.resize(x, (b, hp * p, wp * p), "bilinear")
            x = jnp.pad(x, ((0, 0), (0, h - hp * p), (0, w - wp * p)), mode="edge")
        x = jnp.maximum(x, 0) / self.amplitude
        if self.output_dtype == "float16":
            x = jnp.minimum(x, 65504.0).astype(jnp.float16)
        elif self.output_dtype == "uint8":
            x = jnp.rint(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)
        values = x.astype(jnp.float32)
        stats = jnp.stack(
            [values.min(), values.max(), values.sum(), jnp.vdot(values.ravel(), values.ravel())]
        )
        return x, stats

    # --- calls ---------------------------------------------------------------------------

    def device_call(self, batch):
        """Dispatch one batch (host or device array); returns device arrays, not waited for."""
        _, h, w, _ = batch.shape
        n1 = self.tile_size(h, w)
        n2 = self.tile_size(h // self.pool, w // self.pool)
        spectra = (self.spectra(n1), self.spectra(n2))
        return self._compiled(batch, spectra)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        slices, stats = self.device_call(batch)
        return np.asarray(slices), np.asarray(stats, np.float64)
