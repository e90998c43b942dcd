"""Keras's ``keras.utils`` helpers that tutorials use: ``to_categorical``, ``set_random_seed``."""

from __future__ import annotations

import numbers

import numpy as np

from . import random as _random

__all__ = ["plot_model", "set_random_seed", "to_categorical"]


def to_categorical(x, num_classes=None) -> np.ndarray:
    """One-hot rows for integer class labels, Keras's ``to_categorical``.

    ``x`` of shape ``(N,)`` (or ``(N, 1)``, squeezed as Keras does) gives
    float32 ``(N, num_classes)``; ``num_classes`` defaults to ``max(x) + 1``.
    Any other shape gets the class axis appended.
    """
    y = np.asarray(x)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.floor(y)):
            raise ValueError("to_categorical expects integer class labels; got non-integer values")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iub":
        raise TypeError(f"to_categorical expects integer class labels; got an array of dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: labels must be >= 0; got {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: label {int(y.max())} does not fit num_classes={num_classes}")
    out = np.zeros((*y.shape, int(num_classes)), dtype=np.float32)
    np.put_along_axis(out, y[..., None].astype(np.intp), 1.0, axis=-1)
    return out


def set_random_seed(seed: int) -> None:
    """Seed every generator a Keras script relies on, as Keras's ``set_random_seed`` does:
    convforge's (weights, shuffling, dropout, augmentation; :func:`convforge.seed`), Python's
    ``random`` and NumPy's global ``np.random`` (which convforge itself does not use, but a
    tutorial's own data generators do)."""
    import random

    _random.seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def plot_model(model, *args, **kwargs):
    """Not supported: convforge does not draw model graphs (Keras needs pydot and graphviz for it).

    Use ``model.summary()`` for the layers, shapes and parameter counts.
    """
    raise NotImplementedError(
        "convforge does not support plot_model (no graph drawing); use model.summary() for the layers, "
        "their output shapes and parameter counts"
    )
