"""The TomoSeg network (Chen et al. 2017), as a functional Keras builder.

conv 40@15×15 + ReLU → 2×2 max-pool → conv 40@15×15 + ReLU → conv 1@15×15 (linear), all with
'same' padding, so the network is fully convolutional and its output has half the input's
sampling (32×32 for a 64×64 tile). The 2.5D variant is the same network with 2k+1 input
channels (the slice and k neighbours above and below).
"""

from __future__ import annotations

from cryoml._errors import CryomlError

__all__ = ["build_tomoseg_cnn", "min1_log_mse"]


def build_tomoseg_cnn(
    input_shape: tuple[int | None, int | None] = (None, None),
    *,
    n_channels: int = 1,
    n_filters: int = 40,
    kernel_size: int = 15,
    pool_size: int = 2,
    l1: float = 0.0,
    kernel_initializer: str = "glorot_uniform",
    name: str = "tomoseg_cnn",
):
    """Build the (uncompiled) TomoSeg CNN.

    Parameters
    ----------
    input_shape : (H, W) tuple of int or None, default (None, None)
        Tile size; None for any size (the net is fully convolutional).
    n_channels : int, default 1
        Input channels: 1 for the paper's 2D net, 2k+1 for the 2.5D variant.
    n_filters : int, default 40
        Filters of the first two layers (paper: 40).
    kernel_size : int, default 15
        Kernel edge of every layer (paper: 15).
    pool_size : int, default 2
        Max-pool factor after the first layer (paper: 2).
    l1 : float, default 0
        L1 penalty on the kernels (paper 1e-5; EMAN2's current code: none).
    kernel_initializer : str, default "glorot_uniform"
        Keras initializer name. EMAN2's Theano code draws uniformly in ±sqrt(6/(fan_in +
        fan_out)), i.e. Glorot-uniform: small ("near-zero") weights.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Input (batch, H, W, n_channels) → output (batch, H/2, W/2, 1).

    Examples
    --------
    >>> model = build_tomoseg_cnn((64, 64), n_filters=4, kernel_size=5)
    >>> tuple(model.output.shape)
    (None, 32, 32, 1)
    """
    for value, label in ((n_channels, "n_channels"), (n_filters, "n_filters")):
        if int(value) < 1:
            raise CryomlError(f"'{label}' must be >= 1; got {value}.")
    if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
        raise CryomlError(f"'kernel_size' must be a positive odd number; got {kernel_size}.")
    if int(pool_size) < 1:
        raise CryomlError(f"'pool_size' must be >= 1; got {pool_size}.")
    if float(l1) < 0:
        raise CryomlError(f"'l1' must be >= 0; got {l1}.")
    import keras

    regularizer = keras.regularizers.L1(float(l1)) if l1 else None

    def conv(filters, activation, layer_name):
        return keras.layers.Conv2D(
            filters,
            int(kernel_size),
            padding="same",
            activation=activation,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=regularizer,
            name=layer_name,
        )

    inputs = keras.Input((*tuple(input_shape), int(n_channels)), name="slices")
    hidden = conv(int(n_filters), "relu", "conv1")(inputs)
    hidden = keras.layers.MaxPooling2D(int(pool_size), name="pool1")(hidden)
    hidden = conv(int(n_filters), "relu", "conv2")(hidden)
    outputs = conv(1, None, "conv3")(hidden)
    return keras.Model(inputs, outputs, name=name)


def min1_log_mse(y_true, y_pred):
    """TomoSeg loss: log of the batch mean squared error between the label and min(output, 1).

    Clipping the output at 1 means that saying "very sure" costs nothing; the log makes the
    gradient scale-free as the error falls. A tiny floor keeps the log finite.
    """
    from keras import ops

    y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))
    error = ops.mean(ops.square(y_true - ops.minimum(y_pred, 1.0)))
    return ops.log(error + 1e-8)
