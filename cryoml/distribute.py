"""Data-parallel training over several accelerators with ``keras.distribution``.

Keras 3's distribution API splits each batch across devices and averages the gradients, so a
model trained under :func:`data_parallel` follows the same path as on one device with the same
global batch (to floating-point rounding). It works with the JAX backend; on other backends
:func:`data_parallel` raises a clear error, since Keras distributes only there.

Examples
--------
Train on every GPU of a host::

    with data_parallel():
        model = build_inception3d((40, 40, 40, 1), n_classes=23)
        model.compile(...)
        model.fit(x, y, batch_size=64 * n_devices)

On a CPU the same code can be tested with virtual devices:
``XLA_FLAGS=--xla_force_host_platform_device_count=4 KERAS_BACKEND=jax``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cryoml._errors import CryomlError

__all__ = ["batch_multiple", "data_parallel", "list_devices"]


def list_devices(device_type: str | None = None) -> list[str]:
    """Devices Keras can distribute over; default: the accelerators, else the CPU devices."""
    import keras

    return list(keras.distribution.list_devices(device_type))


def batch_multiple() -> int:
    """How many parts the active Keras distribution splits each batch into (1 without one).

    Every batch, the last one included, must hold a multiple of this many samples.
    """
    import sys

    if "keras" not in sys.modules:  # nothing can be distributed before Keras is loaded
        return 1
    import keras

    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    name = getattr(distribution, "batch_dim_name", None)
    if name in mesh.axis_names:
        return int(mesh.shape[mesh.axis_names.index(name)])
    return int(mesh.devices.size)


@contextlib.contextmanager
def data_parallel(devices: list[str] | None = None) -> Iterator[int]:
    """Distribute models built and trained inside the block over ``devices`` (data parallel).

    Parameters
    ----------
    devices : list of str, optional
        Devices to use; default: all GPUs, or all CPU devices where there is no GPU.

    Yields
    ------
    int
        The number of devices; scale the global batch size by it.

    Raises
    ------
    CryomlError
        If the backend is not JAX.
    """
    import keras

    if keras.backend.backend() != "jax":
        raise CryomlError(
            f"data-parallel training needs the JAX backend (KERAS_BACKEND=jax); this process "
            f"runs {keras.backend.backend()!r}."
        )
    if devices is None:
        devices = list_devices()  # GPUs (or TPUs) where present, else CPU devices
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    try:
        yield len(devices)
    finally:
        keras.distribution.set_distribution(previous)
