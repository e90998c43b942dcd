"""UpSampling2D, Permute and Rescaling (Keras's layers of the same names)."""

from __future__ import annotations

import numbers

import numpy as np

from .. import _params
from .base import Layer, display_shape

__all__ = ["Permute", "Rescaling", "UpSampling2D"]


class UpSampling2D(Layer):
    """Repeat rows and columns: ``(batch, h, w, c)`` -> ``(batch, h * sh, w * sw, c)``, Keras's layer.

    Only ``interpolation='nearest'`` (Keras's default).
    """

    _expects_images = True
    _cache_attrs = ("_trained",)

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", *, name=None, input_shape=None,
                 trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if interpolation != "nearest":
            raise ValueError(
                f"convforge does not support UpSampling2D interpolation={interpolation!r}; use 'nearest'"
            )
        self.size = _params.pair(size, "size")
        self.data_format = data_format
        self._trained = False

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"UpSampling2D expects images (batch, height, width, channels); got {self._show(input_shape)}")
        c, h, w = input_shape
        return (c, h * self.size[0], w * self.size[1])

    def forward(self, x, training=False):
        self._trained = training
        return np.repeat(np.repeat(x, self.size[0], axis=2), self.size[1], axis=3)

    def backward(self, dy):
        if not self._trained:
            raise self._missing_cache()
        n, c, oh, ow = dy.shape
        sh, sw = self.size
        return dy.reshape(n, c, oh // sh, sh, ow // sw, sw).sum(axis=(3, 5))

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "data_format": self.data_format}


class Permute(Layer):
    """Permute the per-sample axes, Keras's ``Permute(dims)`` (1-based, batch axis excluded).

    ``dims`` refers to the axes as the user sees them (channels-last for
    images), and the result is exactly Keras's; for images that costs a
    transpose to and from the internal NCHW layout.
    """

    _cache_attrs = ()

    def __init__(self, dims, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else None
        if not dims or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Permute dims must be a permutation of 1..n, e.g. (2, 1); got {dims!r}")
        self.dims = tuple(int(d) for d in dims)

    def _image(self, shape) -> bool:
        return len(shape) == 3 and self._data_format != "channels_first"

    def compute_output_shape(self, input_shape):
        user = display_shape(input_shape, self._data_format)
        if len(user) != len(self.dims):
            raise ValueError(f"Permute dims {self.dims} do not fit the input {self._show(input_shape)}")
        out = tuple(user[d - 1] for d in self.dims)
        return (out[2], out[0], out[1]) if self._image(out) else out

    def _apply(self, x, perm_in, to_image):
        if x.ndim == 4 and self._data_format != "channels_first":
            x = x.transpose(0, 2, 3, 1)
        y = x.transpose(0, *perm_in)
        if to_image:
            y = y.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(y)

    def forward(self, x, training=False):
        self._in_ndim = x.ndim
        return self._apply(x, self.dims, x.ndim == 4 and self._data_format != "channels_first")

    def backward(self, dy):
        inverse = tuple(int(i) + 1 for i in np.argsort(self.dims))
        return self._apply(dy, inverse, self._in_ndim == 4 and self._data_format != "channels_first")

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}


class Rescaling(Layer):
    """``x * scale + offset``, Keras's ``Rescaling`` (e.g. ``Rescaling(1 / 255)`` as a first layer)."""

    _cache_attrs = ()

    def __init__(self, scale, offset=0.0, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        for value, arg in ((scale, "scale"), (offset, "offset")):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"Rescaling {arg} must be a number; got {value!r}")
        self.scale, self.offset = float(scale), float(offset)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        y = x * x.dtype.type(self.scale) if x.dtype.kind == "f" else x * self.scale
        if self.offset:
            y += self.offset
        return y

    def backward(self, dy):
        return dy * dy.dtype.type(self.scale)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
