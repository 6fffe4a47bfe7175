"""Inception3D and DSRF3D (Xu et al. 2017) as functional Keras 3 builders.

Both networks end in a *linear* ``Dense(n_classes)`` layer named ``"logits"`` followed by a
separate ``Softmax`` layer named ``"softmax"``, so the linear layer — the paper's structural
feature space — can be read out (:func:`cryoml.subtomo.linear_features`).

Inception3D (from DESIGN.md §2)::

    conv 32@5³ valid + ReLU → max-pool 2³
    → inception [1³:32 | 1³:32 → 3³:64 | 1³:16 → 5³:32 | max-pool 2³ stride 1 → 1³:32]
      (concatenated: 160 channels, 'same' padding, ReLU)
    → avg-pool 2³ stride 1 → flatten → dropout 0.7 → Dense(L) → softmax

DSRF3D::

    2 × conv 32@3³ + ReLU → max-pool 2³ → 2 × conv 64@3³ + ReLU → max-pool 2³
    → FC 512 + ReLU → FC 512 + ReLU → Dense(L) → softmax

DSRF3D's convolutions use 'same' padding; a dropout (default 0.5) follows each hidden fully
connected layer — a choice of ours, not stated in the paper, that can be set to 0.

The builders return uncompiled models; they work for any cube (or box) size that survives the
pooling and any class count. Input is ``(Z, Y, X, 1)`` channels-last.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryoml._errors import CryomlError

__all__ = ["MODELS", "build_dsrf3d", "build_inception3d", "build_model"]

MODELS = ("inception3d", "dsrf3d")


def _check_shape(input_shape: Sequence[int] | int, n_classes: int, minimum: int, name: str):
    if isinstance(input_shape, int):
        input_shape = (input_shape,) * 3
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4 and shape[-1] == 1:
        shape = shape[:3]
    if len(shape) != 3 or any(s < minimum for s in shape):
        raise CryomlError(
            f"{name}: 'input_shape' must be (Z, Y, X) with every edge >= {minimum} voxels; "
            f"got {tuple(input_shape)}."
        )
    if int(n_classes) != n_classes or n_classes < 2:
        raise CryomlError(f"{name}: 'n_classes' must be a whole number >= 2; got {n_classes!r}.")
    return shape


def build_inception3d(
    input_shape: Sequence[int] | int = (40, 40, 40),
    n_classes: int = 23,
    *,
    dropout: float = 0.7,
    name: str = "inception3d",
):
    """Build the (uncompiled) Inception3D network.

    Parameters
    ----------
    input_shape : (Z, Y, X) tuple of int, or int for a cube, default (40, 40, 40)
        Subtomogram size (each edge >= 8).
    n_classes : int, default 23
        Output classes (the paper: 22 complexes + empty).
    dropout : float, default 0.7
        Dropout rate before the linear layer (the paper: 70 %).
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Input ``(Z, Y, X, 1)``; output softmax probabilities ``(n_classes,)``. Layers
        ``"logits"`` (linear) and ``"softmax"`` are separate.

    Raises
    ------
    CryomlError
        For a box too small for the pooling or fewer than two classes.

    Examples
    --------
    >>> model = build_inception3d((16, 16, 16), 3)
    >>> model.get_layer("logits").output.shape
    (None, 3)
    """
    shape = _check_shape(input_shape, n_classes, 8, "build_inception3d")
    if not 0 <= dropout < 1:
        raise CryomlError(f"build_inception3d: 'dropout' must be in [0, 1); got {dropout}.")
    import keras
    from keras import layers

    inputs = keras.Input((*shape, 1), name="subtomogram")
    x = layers.Conv3D(32, 5, padding="valid", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling3D(2, name="pool1")(x)
    b1 = layers.Conv3D(32, 1, padding="same", activation="relu", name="inc_1x1")(x)
    b2 = layers.Conv3D(32, 1, padding="same", activation="relu", name="inc_3x3_reduce")(x)
    b2 = layers.Conv3D(64, 3, padding="same", activation="relu", name="inc_3x3")(b2)
    b3 = layers.Conv3D(16, 1, padding="same", activation="relu", name="inc_5x5_reduce")(x)
    b3 = layers.Conv3D(32, 5, padding="same", activation="relu", name="inc_5x5")(b3)
    b4 = layers.MaxPooling3D(2, strides=1, padding="same", name="inc_pool")(x)
    b4 = layers.Conv3D(32, 1, padding="same", activation="relu", name="inc_pool_proj")(b4)
    x = layers.Concatenate(name="inception")([b1, b2, b3, b4])
    x = layers.AveragePooling3D(2, strides=1, name="avg_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(int(n_classes), name="logits")(x)
    outputs = layers.Softmax(name="softmax")(logits)
    return keras.Model(inputs, outputs, name=name)


def build_dsrf3d(
    input_shape: Sequence[int] | int = (40, 40, 40),
    n_classes: int = 23,
    *,
    dropout: float = 0.5,
    n_dense: int = 512,
    name: str = "dsrf3d",
):
    """Build the (uncompiled) DSRF3D network (deep small receptive field).

    Parameters
    ----------
    input_shape : (Z, Y, X) tuple of int, or int for a cube, default (40, 40, 40)
        Subtomogram size (each edge >= 4).
    n_classes : int, default 23
        Output classes.
    dropout : float, default 0.5
        Dropout after each hidden fully connected layer (0 for none).
    n_dense : int, default 512
        Units of the two hidden fully connected layers (the paper: 512).
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Input ``(Z, Y, X, 1)``; output softmax probabilities; layers ``"fc1"``, ``"fc2"``,
        ``"logits"`` (linear) and ``"softmax"``.

    Raises
    ------
    CryomlError
        For a box too small or fewer than two classes.

    Examples
    --------
    >>> model = build_dsrf3d(24, 5)
    >>> [model.get_layer(n).output.shape[-1] for n in ("fc2", "logits", "softmax")]
    [512, 5, 5]
    """
    shape = _check_shape(input_shape, n_classes, 4, "build_dsrf3d")
    if not 0 <= dropout < 1:
        raise CryomlError(f"build_dsrf3d: 'dropout' must be in [0, 1); got {dropout}.")
    import keras
    from keras import layers

    inputs = keras.Input((*shape, 1), name="subtomogram")
    x = inputs
    for block, filters in enumerate((32, 64), start=1):
        for conv in (1, 2):
            x = layers.Conv3D(
                filters, 3, padding="same", activation="relu", name=f"conv{block}_{conv}"
            )(x)
        x = layers.MaxPooling3D(2, name=f"pool{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    for index in (1, 2):
        x = layers.Dense(int(n_dense), activation="relu", name=f"fc{index}")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    logits = layers.Dense(int(n_classes), name="logits")(x)
    outputs = layers.Softmax(name="softmax")(logits)
    return keras.Model(inputs, outputs, name=name)


def build_model(model: str, input_shape: Sequence[int] | int, n_classes: int, **options):
    """Build ``"inception3d"`` or ``"dsrf3d"`` by name (options go to the builder).

    Raises
    ------
    CryomlError
        For an unknown model name.
    """
    builders = {"inception3d": build_inception3d, "dsrf3d": build_dsrf3d}
    if model not in builders:
        raise CryomlError(f"unknown model {model!r}; choose one of {list(builders)}.")
    return builders[model](input_shape, n_classes, **options)
