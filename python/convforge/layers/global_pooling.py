"""GlobalAveragePooling2D and GlobalMaxPooling2D (compiled kernels), Keras semantics."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .base import Layer, resolve_data_format

__all__ = ["GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D", "GlobalMaxPooling2D"]


class _GlobalPooling2D(Layer):
    """Shared shape logic: ``(batch, height, width, channels)`` -> ``(batch, channels)``."""

    _expects_images = True
    _cache_attrs = ("_in_shape", "_indices")

    def __init__(self, data_format=None, keepdims=False, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.data_format = resolve_data_format(data_format)
        if not isinstance(keepdims, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__} keepdims must be True or False; got {keepdims!r}")
        self.keepdims = bool(keepdims)
        self._in_shape = self._indices = None

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (batch, height, width, channels); "
                f"got {self._show(input_shape)}"
            )
        return (input_shape[0], 1, 1) if self.keepdims else (input_shape[0],)

    def _shaped(self, y):
        return y.reshape(*y.shape, 1, 1) if self.keepdims else y

    def _flat_dy(self, dy):
        return dy.reshape(dy.shape[0], dy.shape[1]) if self.keepdims else dy

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean of each feature map, Keras's ``GlobalAveragePooling2D`` (alias ``GlobalAvgPool2D``).

    ``(batch, height, width, channels)`` -> ``(batch, channels)``, or
    ``(batch, 1, 1, channels)`` with ``keepdims=True``. Sums in double.
    """

    def forward(self, x, training=False):
        if not training:  # the training cache stays: predict may run during fit (docs/RELIABILITY.md 10)
            return self._shaped(F.global_avg_pool2d(x))
        self._in_shape = x.shape
        return self._shaped(F.global_avg_pool2d(x, out=self._buffers("y", x.shape[:2], x.dtype)))

    def backward(self, dy):
        if self._in_shape is None:
            raise self._missing_cache()
        if not self.input_grad_needed:
            return None
        return F.global_avg_pool2d_backward(
            self._flat_dy(dy), self._in_shape, out=self._buffers("dx", self._in_shape, dy.dtype)
        )


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Maximum of each feature map, Keras's ``GlobalMaxPooling2D`` (alias ``GlobalMaxPool2D``).

    The gradient goes to the first maximum of each map (TensorFlow splits it
    between tied maxima; with real-valued activations ties are rare). A map
    holding a NaN has NaN as its maximum.
    """

    def forward(self, x, training=False):
        if not training:  # the training cache stays: predict may run during fit (docs/RELIABILITY.md 10)
            return self._shaped(F.global_max_pool2d(x))
        b = self._buffers
        y, self._indices = F.global_max_pool2d(
            x, True, out=b("y", x.shape[:2], x.dtype), out_indices=b("indices", x.shape[:2], np.int64)
        )
        self._in_shape = x.shape
        return self._shaped(y)

    def backward(self, dy):
        if self._in_shape is None:
            raise self._missing_cache()
        if not self.input_grad_needed:
            return None
        return F.global_max_pool2d_backward(
            self._flat_dy(dy), self._indices, self._in_shape, out=self._buffers("dx", self._in_shape, dy.dtype)
        )


GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
