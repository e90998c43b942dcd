"""ZeroPadding2D and Cropping2D, Keras semantics (NumPy copies: no arithmetic to speed up)."""

from __future__ import annotations

import numbers

import numpy as np

from .base import Layer, resolve_data_format

__all__ = ["Cropping2D", "ZeroPadding2D"]


def _amounts(value, layer: str, argument: str) -> tuple[int, int, int, int]:
    """Keras's forms: ``n``, ``(rows, cols)`` or ``((top, bottom), (left, right))`` -> (top, bottom, left, right)."""

    def count(v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(
                f"{layer} {argument} must be an int >= 0, a pair of them or a pair of pairs; got {value!r}"
            )
        return int(v)

    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        n = count(value)
        return n, n, n, n
    if isinstance(value, (tuple, list)) and len(value) == 2:
        if all(isinstance(v, (tuple, list)) for v in value):
            if any(len(v) != 2 for v in value):
                raise ValueError(f"{layer} {argument} must be ((top, bottom), (left, right)); got {value!r}")
            return count(value[0][0]), count(value[0][1]), count(value[1][0]), count(value[1][1])
        rows, cols = count(value[0]), count(value[1])
        return rows, rows, cols, cols
    raise ValueError(f"{layer} {argument} must be an int >= 0, a pair of them or a pair of pairs; got {value!r}")


class _Margins2D(Layer):
    _expects_images = True
    _cache_attrs = ("_in_shape",)
    _argument = ""

    def __init__(self, amounts, data_format=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self._margins = _amounts(amounts, type(self).__name__, self._argument)
        self.data_format = resolve_data_format(data_format)
        self._in_shape = None

    def _check(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (batch, height, width, channels); "
                f"got {self._show(input_shape)}"
            )

    def get_config(self):
        t, b, l, r = self._margins
        return {**super().get_config(), self._argument: [[t, b], [l, r]], "data_format": self.data_format}


class ZeroPadding2D(_Margins2D):
    """Adds rows and columns of zeros around each image, Keras's ``ZeroPadding2D``.

    ``padding``: ``n`` (all sides), ``(rows, cols)`` (symmetric) or
    ``((top, bottom), (left, right))``. Default ``(1, 1)``.
    """

    _argument = "padding"

    def __init__(self, padding=(1, 1), data_format=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(padding, data_format, name=name, input_shape=input_shape, trainable=trainable)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        t, b, l, r = self._margins
        return (input_shape[0], input_shape[1] + t + b, input_shape[2] + l + r)

    def forward(self, x, training=False):
        t, b, l, r = self._margins
        n, c, h, w = x.shape
        shape = (n, c, h + t + b, w + l + r)
        y = self._buffers("y", shape, x.dtype) if training else np.empty(shape, x.dtype)
        if t or b or l or r:  # only the margins need zeros; a reused buffer keeps them
            y[:, :, :t] = 0
            y[:, :, h + t :] = 0
            y[:, :, :, :l] = 0
            y[:, :, :, w + l :] = 0
        y[:, :, t : t + h, l : l + w] = x
        self._in_shape = x.shape if training else None
        return y

    def backward(self, dy):
        if self._in_shape is None:
            raise self._missing_cache()
        if not self.input_grad_needed:
            return None
        t, _, l, _ = self._margins
        _, _, h, w = self._in_shape
        return np.ascontiguousarray(dy[:, :, t : t + h, l : l + w])


class Cropping2D(_Margins2D):
    """Removes rows and columns at the edges of each image, Keras's ``Cropping2D``.

    ``cropping``: ``n``, ``(rows, cols)`` or ``((top, bottom), (left, right))``.
    Default ``((0, 0), (0, 0))``.
    """

    _argument = "cropping"

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(cropping, data_format, name=name, input_shape=input_shape, trainable=trainable)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        t, b, l, r = self._margins
        h, w = input_shape[1] - t - b, input_shape[2] - l - r
        if h < 1 or w < 1:
            raise ValueError(
                f"layer {self.name!r} (Cropping2D): cropping {((t, b), (l, r))} leaves nothing of the input "
                f"{self._show(input_shape)}"
            )
        return (input_shape[0], h, w)

    def forward(self, x, training=False):
        t, b, l, r = self._margins
        h, w = x.shape[2] - t - b, x.shape[3] - l - r
        if h < 1 or w < 1:
            self.compute_output_shape(x.shape[1:])  # raises, naming the shapes
        self._in_shape = x.shape if training else None
        return np.ascontiguousarray(x[:, :, t : t + h, l : l + w])

    def backward(self, dy):
        if self._in_shape is None:
            raise self._missing_cache()
        if not self.input_grad_needed:
            return None
        t, _, l, _ = self._margins
        dx = self._buffers("dx", self._in_shape, dy.dtype)
        dx[...] = 0
        dx[:, :, t : t + dy.shape[2], l : l + dy.shape[3]] = dy
        return dx
