"""The DeepEM network (Zhu et al. 2017) and its per-dataset presets.

C1 → S2 → C3 → S4 → C5 → S6 → one sigmoid output: three "valid" convolutions, each followed by
a sigmoid, each followed by non-overlapping mean pooling, and a fully connected sigmoid unit.
Feature-map counts are 6, 12, 12 as in the paper's Table 1.

The presets reproduce Table 1's feature-map sizes exactly (box − kernel + 1, then ÷ pool):

============  ====  ==========  =====  ===========================================
preset        box   kernels     pools  C1 / S2 / C3 / S4 / C5 / S6
============  ====  ==========  =====  ===========================================
klh           272   51, 21, 10  3,2,2  222 / 74 / 54 / 27 / 18 / 9
19s           160   20, 10, 4   3,2,2  141 / 47 / 38 / 19 / 16 / 8
26s           150   31, 15, 10  2,2,2  120 / 60 / 46 / 23 / 14 / 7
inflammasome  112   15, 10, 7   2,2,2  98 / 49 / 40 / 20 / 14 / 7
============  ====  ==========  =====  ===========================================

KLH and 19S kernels and pools are those of the original Matlab code; 26S and inflammasome are
derived from Table 1's sizes. :func:`preset_for_box` makes a similar design for any box size.

:func:`build_wide_cnn` is a modern variant of the same design, not the paper's: the same
kernels and pools, wider maps (16, 32, 32), batch normalisation and ReLU in place of sigmoids,
and a 64-unit hidden layer before the output. It is fully convolutional, so
:func:`build_wide_dense` runs it over whole micrographs (for training on them and for dense
scoring) with the same weights.
"""

from __future__ import annotations

import dataclasses

from cryoml._errors import CryomlError

__all__ = [
    "PRESETS",
    "DeepEMArchitecture",
    "build_deepem_cnn",
    "build_deepem_dense",
    "build_wide_cnn",
    "build_wide_dense",
    "feature_map_sizes",
    "preset_for_box",
]


@dataclasses.dataclass(frozen=True)
class DeepEMArchitecture:
    """Box size, kernel sizes, pool sizes and feature-map counts of one DeepEM network."""

    box_size: int
    kernels: tuple[int, int, int]
    pools: tuple[int, int, int]
    maps: tuple[int, int, int] = (6, 12, 12)
    network: str = "paper"

    @property
    def stride(self) -> int:
        """Product of the pool sizes: the step of the dense score map in pixels."""
        return self.pools[0] * self.pools[1] * self.pools[2]

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "box_size": self.box_size,
            "kernels": list(self.kernels),
            "pools": list(self.pools),
            "maps": list(self.maps),
            "network": self.network,
        }


PRESETS: dict[str, DeepEMArchitecture] = {
    "klh": DeepEMArchitecture(272, (51, 21, 10), (3, 2, 2)),
    "19s": DeepEMArchitecture(160, (20, 10, 4), (3, 2, 2)),
    "26s": DeepEMArchitecture(150, (31, 15, 10), (2, 2, 2)),
    "inflammasome": DeepEMArchitecture(112, (15, 10, 7), (2, 2, 2)),
}


def feature_map_sizes(
    box_size: int, *, kernels: tuple[int, int, int], pools: tuple[int, int, int]
) -> list[int]:
    """Edge lengths of C1, S2, C3, S4, C5, S6 for a square input box.

    Raises
    ------
    CryomlError
        If a kernel or pool does not fit the map it is applied to.

    Examples
    --------
    >>> feature_map_sizes(272, kernels=(51, 21, 10), pools=(3, 2, 2))
    [222, 74, 54, 27, 18, 9]
    """
    _check_triple(kernels, "kernels")
    _check_triple(pools, "pools")
    sizes = []
    size = int(box_size)
    for layer, (kernel, pool) in enumerate(zip(kernels, pools, strict=True)):
        size = size - kernel + 1
        if size < pool:
            raise CryomlError(
                f"box {box_size}: kernel {kernel} of C{2 * layer + 1} leaves a {size}-px map, "
                f"too small for pooling by {pool}. Use smaller kernels or pools, or a bigger box "
                "(preset_for_box(box_size) picks sizes that fit)."
            )
        sizes.append(size)
        size = size // pool
        sizes.append(size)
    return sizes


def _check_triple(values, name: str) -> None:
    if len(values) != 3 or any(int(v) != v or int(v) < 1 for v in values):
        raise CryomlError(f"'{name}' must be three positive integers; got {values!r}.")


def preset_for_box(box_size: int) -> DeepEMArchitecture:
    """A DeepEM design for any box size, in the proportions of the paper's presets.

    The four paper box sizes return their presets. Otherwise the first pool is 3 for boxes of
    160 px or more and 2 below; C1's kernel is about 16 % of the box, C3's about 20 % of S2 and
    C5's about 35 % of S4 (+1), each nudged so that the map it leaves divides by the next pool.

    Raises
    ------
    CryomlError
        For boxes under 16 px.

    Examples
    --------
    >>> preset_for_box(272) == PRESETS["klh"]
    True
    >>> arch = preset_for_box(48)
    >>> feature_map_sizes(48, kernels=arch.kernels, pools=arch.pools)[-1] >= 2
    True
    """
    if int(box_size) != box_size or box_size < 16:
        raise CryomlError(f"DeepEM needs a whole box size of at least 16 px; got {box_size!r}.")
    box_size = int(box_size)
    for preset in PRESETS.values():
        if preset.box_size == box_size:
            return preset
    pools = (3, 2, 2) if box_size >= 160 else (2, 2, 2)

    def fitted(size: int, fraction: float, pool: int, offset: int = 0) -> int:
        kernel = max(2, round(fraction * size) + offset)
        # Nudge so that size - kernel + 1 divides by the pool, preferring a smaller kernel.
        for delta in range(pool):
            candidate = kernel - delta
            if candidate >= 2 and (size - candidate + 1) % pool == 0:
                return candidate
        return kernel

    k1 = fitted(box_size, 0.16, pools[0])
    s2 = (box_size - k1 + 1) // pools[0]
    k3 = fitted(s2, 0.2, pools[1])
    s4 = (s2 - k3 + 1) // pools[1]
    k5 = fitted(s4, 0.35, pools[2], offset=1)
    if s4 - k5 + 1 < pools[2]:
        k5 = max(1, s4 - pools[2] + 1)
    kernels = (k1, k3, k5)
    feature_map_sizes(box_size, kernels=kernels, pools=pools)
    return DeepEMArchitecture(box_size, kernels, pools)


#: Feature maps of C1, C3, C5 per network when none are given.
DEFAULT_MAPS = {"paper": (6, 12, 12), "wide": (16, 32, 32)}

#: Units of the wide network's hidden layer.
WIDE_HIDDEN_UNITS = 64


def _resolve(box_size, kernels, pools, maps, network: str = "paper") -> DeepEMArchitecture:
    if int(box_size) != box_size or box_size < 4:
        raise CryomlError(f"'box_size' must be a whole number of pixels >= 4; got {box_size!r}.")
    if network not in DEFAULT_MAPS:
        raise CryomlError(
            f"unknown architecture {network!r}; choose one of {sorted(DEFAULT_MAPS)}."
        )
    maps = DEFAULT_MAPS[network] if maps is None else maps
    _check_triple(maps, "maps")
    architecture = DeepEMArchitecture(
        int(box_size),
        tuple(int(k) for k in kernels),
        tuple(int(p) for p in pools),
        tuple(int(m) for m in maps),
        network,
    )
    feature_map_sizes(architecture.box_size, kernels=architecture.kernels, pools=architecture.pools)
    return architecture


def _layers(architecture: DeepEMArchitecture):
    import keras

    layers = []
    for index, (kernel, pool, n_maps) in enumerate(
        zip(architecture.kernels, architecture.pools, architecture.maps, strict=True)
    ):
        layers.append(
            keras.layers.Conv2D(n_maps, kernel, activation="sigmoid", name=f"C{2 * index + 1}")
        )
        layers.append(keras.layers.AveragePooling2D(pool, name=f"S{2 * index + 2}"))
    return layers


def build_deepem_cnn(
    box_size: int,
    *,
    kernels: tuple[int, int, int],
    pools: tuple[int, int, int],
    maps: tuple[int, int, int] = (6, 12, 12),
):
    """Build the (uncompiled) DeepEM classifier for square boxes.

    Parameters
    ----------
    box_size : int
        Edge of the input box in pixels.
    kernels : tuple of 3 int
        Kernel edges of C1, C3, C5.
    pools : tuple of 3 int
        Mean-pooling factors of S2, S4, S6.
    maps : tuple of 3 int, default (6, 12, 12)
        Feature maps of C1, C3, C5.

    Returns
    -------
    keras.Model
        Input (batch, box, box, 1); output (batch, 1), the sigmoid particle score.

    Raises
    ------
    CryomlError
        If the kernels and pools do not fit the box.
    """
    import keras

    architecture = _resolve(box_size, kernels, pools, maps)
    inputs = keras.Input((architecture.box_size, architecture.box_size, 1), name="box")
    x = inputs
    for layer in _layers(architecture):
        x = layer(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="output")(x)
    return keras.Model(inputs, outputs, name=f"deepem_{architecture.box_size}")


def build_deepem_dense(model):
    """The fully convolutional twin of a DeepEM classifier, sharing its weights.

    The fully connected output becomes a convolution whose kernel covers the whole S6 map, so
    the twin maps a (1, H, W, 1) micrograph to a (1, h, w, 1) score map whose pixel (i, j) is
    the classifier's score for the box whose top-left corner is (i · stride, j · stride),
    stride being the product of the pools.

    Parameters
    ----------
    model : keras.Model
        Built by :func:`build_deepem_cnn`.

    Returns
    -------
    keras.Model
        Input (batch, None, None, 1); output (batch, h, w, 1).
    """
    import keras

    try:
        dense = model.get_layer("output")
        s6 = model.get_layer("flatten").input.shape
    except ValueError:
        raise CryomlError(
            "build_deepem_dense needs a model made by build_deepem_cnn (layers C1…S6, flatten, "
            "output)."
        ) from None
    _, height, width, channels = s6
    inputs = keras.Input((None, None, 1), name="micrograph")
    x = inputs
    for name in ("C1", "S2", "C3", "S4", "C5", "S6"):
        x = model.get_layer(name)(x)
    head = keras.layers.Conv2D(1, (height, width), activation="sigmoid", name="output_conv")
    outputs = head(x)
    kernel, bias = dense.get_weights()
    head.set_weights([kernel.reshape(height, width, channels, 1), bias])
    return keras.Model(inputs, outputs, name=model.name + "_dense")


def _wide_layers(architecture: DeepEMArchitecture) -> list:
    import keras

    layers = []
    for index, (kernel, pool, n_maps) in enumerate(
        zip(architecture.kernels, architecture.pools, architecture.maps, strict=True)
    ):
        number = 2 * index + 1
        layers += [
            keras.layers.Conv2D(n_maps, kernel, use_bias=False, name=f"C{number}"),
            keras.layers.BatchNormalization(name=f"BN{number}"),
            keras.layers.ReLU(name=f"R{number}"),
            keras.layers.AveragePooling2D(pool, name=f"S{number + 1}"),
        ]
    sizes = feature_map_sizes(
        architecture.box_size, kernels=architecture.kernels, pools=architecture.pools
    )
    layers += [
        keras.layers.Conv2D(WIDE_HIDDEN_UNITS, sizes[-1], activation="relu", name="hidden"),
        keras.layers.Conv2D(1, 1, activation="sigmoid", name="output"),
    ]
    return layers


def build_wide_cnn(
    box_size: int,
    *,
    kernels: tuple[int, int, int],
    pools: tuple[int, int, int],
    maps: tuple[int, int, int] = DEFAULT_MAPS["wide"],
):
    """Build the (uncompiled) wide variant of the DeepEM classifier.

    Three "valid" convolutions with the given kernels, each followed by batch normalisation,
    ReLU and mean pooling, then a convolution over the whole last map into 64 ReLU units (a
    fully connected layer written as a convolution) and a 1 × 1 sigmoid output. Not the
    paper's network: on the simulated KLH set at SNR 0.01, trained on whole micrographs, it
    picked with AP 0.70 where the paper's network reached 0.59 (``benchmarks/RESULTS.md``).

    Parameters
    ----------
    box_size : int
        Edge of the input box in pixels.
    kernels, pools : tuple of 3 int
        As for :func:`build_deepem_cnn` (:func:`preset_for_box` gives a design for any box).
    maps : tuple of 3 int, default (16, 32, 32)

    Returns
    -------
    keras.Model
        Input (batch, box, box, 1); output (batch, 1), the sigmoid particle score.

    Raises
    ------
    CryomlError
        If the kernels and pools do not fit the box.
    """
    import keras

    architecture = _resolve(box_size, kernels, pools, maps, "wide")
    inputs = keras.Input((architecture.box_size, architecture.box_size, 1), name="box")
    x = inputs
    for layer in _wide_layers(architecture):
        x = layer(x)
    outputs = keras.layers.Reshape((1,), name="score")(x)
    return keras.Model(inputs, outputs, name=f"wide_{architecture.box_size}")


def build_wide_dense(model):
    """The fully convolutional form of a wide classifier, sharing its layers (and weights).

    Maps (batch, H, W, 1) micrographs to (batch, h, w, 1) score maps whose pixel (i, j) is
    the classifier's score for the box with top-left corner (i · stride, j · stride). Training
    it trains the classifier.

    Parameters
    ----------
    model : keras.Model
        Built by :func:`build_wide_cnn`.

    Returns
    -------
    keras.Model
    """
    import keras

    try:
        names = [layer.name for layer in model.layers]
        start, stop = names.index("C1"), names.index("output")
    except ValueError:
        raise CryomlError(
            "build_wide_dense needs a model made by build_wide_cnn (layers C1…S6, hidden, "
            "output)."
        ) from None
    inputs = keras.Input((None, None, 1), name="micrograph")
    x = inputs
    for layer in model.layers[start : stop + 1]:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name + "_dense")


def is_wide(model) -> bool:
    """Whether a classifier was built by :func:`build_wide_cnn`."""
    return any(layer.name == "hidden" for layer in model.layers)
