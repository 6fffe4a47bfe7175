"""TomoSeg networks as functional Keras builders: the paper's CNN and a small U-Net.

``paper`` (Chen et al. 2017): conv 40@15×15 + ReLU → 2×2 max-pool → conv 40@15×15 + ReLU →
conv 1@15×15 (linear), all with 'same' padding, so the network is fully convolutional and its
output has half the input's sampling (32×32 for a 64×64 tile).

``unet``: a small 2-D U-Net (Ronneberger et al. 2015) — two 3×3 convolutions with ReLU per
level (no batch normalisation: batches of a few tiles give poor statistics), 2×2 max-pooling
down, transposed convolutions up with skip connections, a sigmoid output at full resolution —
trained on its logits with :func:`dice_bce_from_logits` so thin, sparse labels (membranes a
few voxels wide) do not collapse to "everything background".

The 2.5D variants are the same networks with 2k+1 input channels (the slice and k neighbours
above and below).
"""

from __future__ import annotations

from cryoml._errors import CryomlError

__all__ = [
    "ARCHITECTURES",
    "build_tomoseg_cnn",
    "build_tomoseg_unet",
    "dice_bce",
    "dice_bce_from_logits",
    "logits_model",
    "min1_log_mse",
    "unet_with_logits",
]

ARCHITECTURES = ("paper", "unet")


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


def build_tomoseg_unet(
    input_shape: tuple[int | None, int | None] = (None, None),
    *,
    n_channels: int = 1,
    base_filters: int = 32,
    depth: int = 3,
    name: str = "tomoseg_unet",
):
    """Build the (uncompiled) small 2-D U-Net of ``architecture="unet"``.

    Parameters
    ----------
    input_shape : (H, W) tuple of int or None, default (None, None)
        Tile size; None for any size. H and W must be multiples of ``2 ** (depth - 1)``.
    n_channels : int, default 1
        Input channels: 1 for 2D, 2k+1 for the 2.5D variant.
    base_filters : int, default 32
        Filters of the first level; doubled at each level down.
    depth : int, default 3
        Levels, counting the bottom one (3: full, 1/2 and 1/4 sampling).
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Input (batch, H, W, n_channels) → probability (batch, H, W, 1) in [0, 1].

    Examples
    --------
    >>> model = build_tomoseg_unet((64, 64), base_filters=4)
    >>> tuple(model.output.shape)
    (None, 64, 64, 1)
    """
    if int(n_channels) < 1 or int(base_filters) < 1:
        raise CryomlError(
            f"'n_channels' and 'base_filters' must be >= 1; got {n_channels}, {base_filters}."
        )
    if int(depth) < 1:
        raise CryomlError(f"'depth' must be >= 1; got {depth}.")
    import keras

    def block(x, filters, prefix):
        for i in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                    kernel_initializer="he_normal", name=f"{prefix}_conv{i}")(x)
        return x

    inputs = keras.Input((*tuple(input_shape), int(n_channels)), name="slices")
    skips = []
    x = inputs
    for level in range(int(depth) - 1):
        x = block(x, int(base_filters) * 2**level, f"down{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = block(x, int(base_filters) * 2 ** (int(depth) - 1), "bottom")
    for level in reversed(range(int(depth) - 1)):
        filters = int(base_filters) * 2**level
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level}_transpose")(x)
        x = keras.layers.Concatenate(name=f"up{level}_skip")([x, skips[level]])
        x = block(x, filters, f"up{level}")
    # Logits as a layer of their own: training reads them (see dice_bce_from_logits), so the
    # cross-entropy keeps its gradient where the sigmoid saturates.
    logits = keras.layers.Conv2D(1, 1, dtype="float32", name="logits")(x)
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name="probability")(logits)
    return keras.Model(inputs, outputs, name=name)


def unet_with_logits(model):
    """The U-Net ``model`` with its output convolution as a separate ``logits`` layer.

    Networks saved before the ``logits`` layer existed end in one sigmoid convolution named
    ``probability``; this rebuilds them in today's form with the same weights (the same outputs
    to float precision). Models that have the layer are returned as they are.
    """
    names = {layer.name for layer in model.layers}
    if "logits" in names:
        return model
    if "probability" not in names:
        raise CryomlError(f"{model.name!r} is not a cryoml TomoSeg U-Net (no 'probability' layer).")
    depth = sum(name.startswith("pool") for name in names) + 1
    first = "down0_conv1" if depth > 1 else "bottom_conv1"
    rebuilt = build_tomoseg_unet(
        tuple(model.input_shape[1:3]),
        n_channels=int(model.input_shape[-1]),
        base_filters=int(model.get_layer(first).filters),
        depth=depth,
        name=model.name,
    )
    for layer in rebuilt.layers:
        source = "probability" if layer.name == "logits" else layer.name
        if layer.weights:
            layer.set_weights(model.get_layer(source).get_weights())
    return rebuilt


def logits_model(model):
    """A model sharing ``model``'s layers that outputs the U-Net's logits (for training)."""
    import keras

    model = unet_with_logits(model)
    return keras.Model(model.inputs, model.get_layer("logits").output, name=f"{model.name}_logits")


def dice_bce_from_logits(y_true, logits):
    """:func:`dice_bce` computed from the logits, as U-Nets are trained.

    The cross-entropy is ``softplus(z) - y z``, exact for any logit z, so a voxel the network
    calls background with great confidence still gets the full gradient ``sigmoid(z) - y``.
    From clipped probabilities that gradient is zero below the clip: a ribosome network whose
    outputs fell under it on every voxel stayed at "background" for good (demo phantom: loss
    flat at 1.06 from epoch 5, Dice 0).
    """
    from keras import ops

    logits = ops.cast(logits, "float32")
    y_true = ops.reshape(ops.cast(y_true, logits.dtype), ops.shape(logits))
    bce = ops.mean(ops.softplus(logits) - y_true * logits)
    p = ops.sigmoid(logits)
    overlap = ops.sum(y_true * p)
    dice = (2.0 * overlap + 1.0) / (ops.sum(y_true) + ops.sum(p) + 1.0)
    return bce + (1.0 - dice)


def dice_bce(y_true, y_pred):
    """Soft Dice loss plus binary cross-entropy, over the batch.

    Cross-entropy alone lets a network that says "background" everywhere score well on
    labels that cover a few per cent of a tile; the Dice term weighs the few positive voxels
    as much as all the rest, and the cross-entropy term keeps gradients useful on tiles with
    no positives (negatives).
    """
    from keras import ops

    y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))
    p = ops.clip(y_pred, 1e-6, 1.0 - 1e-6)
    bce = -ops.mean(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
    overlap = ops.sum(y_true * y_pred)
    dice = (2.0 * overlap + 1.0) / (ops.sum(y_true) + ops.sum(y_pred) + 1.0)
    return bce + (1.0 - dice)
