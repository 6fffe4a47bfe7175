"""Objects derived from a Keras model (compiled scorers, application engines), built once and
kept on their owner, keyed by a fingerprint of the model's weights so that retraining is
noticed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

__all__ = ["cached_on", "weights_fingerprint"]


def weights_fingerprint(model) -> str:
    """A short hash of all the model's weights (changes whenever any weight does)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def cached_on(owner: Any, slot: str, key: Hashable, build: Callable[[], Any], *,
              keep: int) -> Any:
    """``build()`` once per ``key``, kept in ``owner.__dict__[slot]`` (the oldest of more than
    ``keep`` entries is dropped). Stored outside Keras' attribute tracking, so saving a model
    ignores it."""
    cache = owner.__dict__.setdefault(slot, {})
    if key not in cache:
        if len(cache) >= keep:
            cache.pop(next(iter(cache)))
        cache[key] = build()
    return cache[key]
