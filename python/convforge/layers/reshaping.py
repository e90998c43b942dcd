"""Reshaping layers with Keras semantics: ZeroPadding2D and Cropping2D (NumPy copies: no arithmetic
to speed up), UpSampling2D, Permute and Rescaling."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _params
from .base import Layer, display_shape, resolve_data_format

__all__ = ["Cropping2D", "Permute", "Rescaling", "UpSampling2D", "ZeroPadding2D"]


def _amounts(value, layer: str, argument: str) -> tuple[int, int, int, int]:
    """Keras's forms: ``n``, ``(rows, cols)`` or ``((top, bottom), (left, right))`` -> (top, bottom, left, right)."""

    def count(v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(
                f"{layer} {argument} must be an int >= 0, a pair of them or a pair of pairs; got {value!r}"
            )
        if v > _params.MAX_PARAM:  # as the 1-D layers: a shape no array could have
            raise ValueError(f"{layer} {argument} must be at most 2**31 - 1 on a side; got {value!r}")
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


def _bounded(layer, shape: tuple, input_shape: tuple) -> tuple:
    """``shape``, a layer's output, if no axis is longer than 2**31 - 1; else a ValueError naming
    the layer (a ZeroPadding2D(2**40) was built, and failed at predict in NumPy's words)."""
    if max(shape) > _params.MAX_PARAM:
        raise ValueError(
            f"layer {layer.name!r} ({type(layer).__name__}) would make {layer._show(input_shape)} into "
            f"{layer._show(shape)}: an axis longer than 2**31 - 1"
        )
    return shape


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

    def _compute_internal_output_shape(self, input_shape):
        self._check(input_shape)
        t, b, l, r = self._margins
        return _bounded(self, (input_shape[0], input_shape[1] + t + b, input_shape[2] + l + r), input_shape)

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
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._in_shape = x.shape
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

    def _compute_internal_output_shape(self, input_shape):
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
            self._compute_internal_output_shape(x.shape[1:])  # raises, naming the shapes
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._in_shape = x.shape
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


def bilinear_taps(size: int, factor: int, dtype):
    """``(low, high, weight)`` of a 1-D linear upsampling of ``size`` values by ``factor`` with
    half-pixel centres: output i is ``(1 - weight[i]) * x[low[i]] + weight[i] * x[high[i]]``,
    reading input (i + 0.5) / factor - 0.5 clamped to the edges (Keras 3's bilinear resize,
    PyTorch's ``interpolate(mode='bilinear', align_corners=False)``, ONNX's linear Resize with
    'half_pixel' coordinates). Two taps an output, as theirs: a NaN reaches only its neighbours."""
    source = np.clip((np.arange(size * factor) + 0.5) / factor - 0.5, 0, size - 1)
    low = np.floor(source).astype(np.int64)
    return low, np.minimum(low + 1, size - 1), (source - low).astype(dtype)


def _along(weight, ndim: int, axis: int):
    """``weight`` shaped to broadcast along ``axis`` of an ``ndim``-axis array."""
    shape = [1] * ndim
    shape[axis] = weight.size
    return weight.reshape(shape)


def _interpolate(a, axis: int, taps):
    low, high, weight = taps
    weight = _along(weight, a.ndim, axis)
    return np.take(a, low, axis=axis) * (1 - weight) + np.take(a, high, axis=axis) * weight


def _interpolate_backward(g, axis: int, taps, size: int):
    """The gradient of _interpolate along ``axis`` (``size`` inputs): each output's share added to
    its two taps."""
    low, high, weight = taps
    weight = _along(weight, g.ndim, axis)
    out = np.zeros((size, *np.delete(g.shape, axis)), g.dtype)
    np.add.at(out, low, np.moveaxis(g * (1 - weight), axis, 0))
    np.add.at(out, high, np.moveaxis(g * weight, axis, 0))
    return np.moveaxis(out, 0, axis)


class UpSampling2D(Layer):
    """Upsample rows and columns: ``(batch, h, w, c)`` -> ``(batch, h * sh, w * sw, c)``, Keras's layer.

    ``interpolation='nearest'`` (Keras's default) repeats each pixel; ``'bilinear'`` interpolates
    between the pixels' centres, clamped at the edges, as Keras 3 (and PyTorch's
    ``nn.Upsample(mode='bilinear')``, ``align_corners=False``): a U-Net decoder's or a segmentation
    head's upsampling. Keras's other interpolations (bicubic, lanczos) are not supported.
    """

    _expects_images = True
    _cache_attrs = ("_trained",)

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", *, name=None, input_shape=None,
                 trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(
                f"convforge does not support UpSampling2D interpolation={interpolation!r}; use 'nearest' or 'bilinear'"
            )
        self.size = _params.pair(size, "size")
        self.data_format = resolve_data_format(data_format)
        self.interpolation = interpolation
        self._trained = False

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"UpSampling2D expects images (batch, height, width, channels); got {self._show(input_shape)}")
        c, h, w = input_shape
        return _bounded(self, (c, h * self.size[0], w * self.size[1]), input_shape)

    def forward(self, x, training=False):
        self._trained = training
        if self.interpolation == "bilinear":
            rows = _interpolate(x, 2, bilinear_taps(x.shape[2], self.size[0], x.dtype))
            return np.ascontiguousarray(_interpolate(rows, 3, bilinear_taps(x.shape[3], self.size[1], x.dtype)))
        return np.repeat(np.repeat(x, self.size[0], axis=2), self.size[1], axis=3)

    def backward(self, dy):
        if not self._trained:
            raise self._missing_cache()
        n, c, oh, ow = dy.shape
        sh, sw = self.size
        if self.interpolation == "bilinear":
            h, w = oh // sh, ow // sw
            rows = _interpolate_backward(dy, 3, bilinear_taps(w, sw, dy.dtype), w)
            return np.ascontiguousarray(_interpolate_backward(rows, 2, bilinear_taps(h, sh, dy.dtype), h))
        return dy.reshape(n, c, oh // sh, sh, ow // sw, sw).sum(axis=(3, 5))

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "data_format": self.data_format,
                "interpolation": self.interpolation}


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

    def _compute_internal_output_shape(self, input_shape):
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
    _keeps_feature_order = True  # one scale and one offset for every value

    def __init__(self, scale, offset=0.0, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        for value, arg in ((scale, "scale"), (offset, "offset")):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"Rescaling {arg} must be a number; got {value!r}")
            if not math.isfinite(value):  # every output would be NaN or infinite
                raise ValueError(f"Rescaling {arg} must be finite; got {value!r}")
        self.scale, self.offset = float(scale), float(offset)

    def _compute_internal_output_shape(self, input_shape):
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
