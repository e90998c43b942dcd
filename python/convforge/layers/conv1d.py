"""1-D layers for sequences: Conv1D, MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D.

A sequence is ``(batch, steps, channels)`` at the API, as in Keras, and stays
so inside the model (a 2-D per-sample shape, never taken for an image), so
``summary()`` shows Keras's shapes and ``Flatten`` flattens in Keras's order.
Each layer runs on the 2-D kernels: a 1-D convolution or pooling is the 2-D
one on images of height 1. The layer transposes its input to
``(batch, channels, 1, steps)``, runs an inner :class:`Conv2D` /
:class:`MaxPooling2D` / :class:`AveragePooling2D` (so padding rules, fused
ReLU, initialisers and regularisers are theirs), and transposes back.
"""

from __future__ import annotations

import numbers

import numpy as np

from .base import Layer, weight_options_config, weight_options_from_config
from .conv import Conv2D
from .pooling import AveragePooling2D, MaxPooling2D

__all__ = ["AveragePooling1D", "Conv1D", "GlobalAveragePooling1D", "MaxPooling1D"]


def _single(value, name: str, layer: str) -> int:
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{layer} {name} must be a positive int (or a 1-tuple); got {value!r}")
    return int(value)


def _to_images(x: np.ndarray) -> np.ndarray:
    """(N, L, C) -> (N, C, 1, L), contiguous (the kernels' layout)."""
    n, steps, channels = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(n, channels, 1, steps)


def _to_sequences(y: np.ndarray) -> np.ndarray:
    """(N, C, 1, L) -> (N, L, C), contiguous."""
    n, channels, _, steps = y.shape
    return np.ascontiguousarray(y.reshape(n, channels, steps).transpose(0, 2, 1))


class _Sequence2D(Layer):
    """A 1-D layer computed by an inner 2-D layer on height-1 images (see the module docstring)."""

    _inner: Layer

    def _check(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (batch, steps, channels); got {self._show(input_shape)}"
            )

    def _window(self) -> str:  # pragma: no cover - each subclass says
        """The layer's window in its own (1-D) arguments, for errors."""
        raise NotImplementedError

    def _link(self):
        # The inner layer's weights, gradients and penalties are this layer's (same dicts).
        self.params, self.grads, self.regularizers = self._inner.params, self._inner.grads, self._inner.regularizers

    def build(self, input_shape):
        self._compute_internal_output_shape(input_shape)  # the checks, in the 1-D layer's words
        steps, channels = input_shape
        self._inner.name = self.name
        self._inner._build((channels, 1, steps), self.dtype)
        self._link()

    def _compute_internal_output_shape(self, input_shape):
        self._check(input_shape)
        try:
            channels, _, steps = self._inner._compute_internal_output_shape((input_shape[1], 1, input_shape[0]))
        except ValueError as err:
            # The inner layer's message speaks of a 2-D layer on (batch, 1, steps, channels) images.
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}): {self._window()} does not fit in the input "
                f"{self._show(input_shape)} ({input_shape[0]} steps) with padding={self.padding!r}"
            ) from err
        return (steps, channels)

    def forward(self, x, training=False):
        self._inner.input_grad_needed = self.input_grad_needed
        return _to_sequences(self._inner.forward(_to_images(x), training))

    def backward(self, dy):
        dx = self._inner.backward(_to_images(dy))
        return None if dx is None else _to_sequences(dx)

    def _astype(self, dtype):
        self._inner._astype(dtype)
        super()._astype(dtype)
        self._link()

    def _clear_cache(self):
        super()._clear_cache()
        self._inner._clear_cache()


class Conv1D(_Sequence2D):
    """1-D convolution over ``(batch, steps, channels)``, Keras's ``Conv1D``.

    Parameters
    ----------
    filters : int
    kernel_size, strides, dilation_rate : int
    padding : 'valid', 'same' or 'causal'
        ``'causal'`` pads ``dilation_rate * (kernel_size - 1)`` zeros on the
        left only (output step t sees inputs up to t), as Keras.
    activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        As :class:`Conv2D`.

    Weights
    -------
    ``kernel`` stored as ``(filters, channels, 1, kernel_size)`` and ``bias``
    ``(filters,)``; ``get_weights()``/``set_weights()`` use Keras's
    ``(kernel_size, channels, filters)``. Parameter counts equal Keras's.
    """

    _cache_attrs = ()
    # Stored (filters, channels, 1, k); get_weights/set_weights use Keras's (k, channels, filters).
    _keras_layouts = {
        "kernel": (lambda k: k[:, :, 0, :].transpose(2, 1, 0), lambda k: k.transpose(2, 1, 0)[:, :, None, :])
    }

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        *,
        input_shape=None,
        name=None,
        trainable=True,
    ):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"convforge does not support Conv1D data_format={data_format!r}; use channels_last")
        self.kernel_size = _single(kernel_size, "kernel_size", "Conv1D")
        self.strides = _single(strides, "strides", "Conv1D")
        self.dilation_rate = _single(dilation_rate, "dilation_rate", "Conv1D")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same", "causal"):
            raise ValueError(f"Conv1D padding must be 'valid', 'same' or 'causal'; got {padding!r}")
        self.padding = padding.lower()
        inner_padding = self.padding
        if self.padding == "causal":
            inner_padding = ((0, 0), (self.dilation_rate * (self.kernel_size - 1), 0))
        self._inner = Conv2D(
            filters,
            (1, self.kernel_size),
            strides=(1, self.strides),
            padding=inner_padding,
            dilation_rate=(1, self.dilation_rate),
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
        )
        self.filters = self._inner.filters

    def _window(self):
        if self.dilation_rate == 1:
            return f"kernel_size={self.kernel_size}"
        span = self.dilation_rate * (self.kernel_size - 1) + 1
        return f"kernel_size={self.kernel_size} with dilation_rate={self.dilation_rate} ({span} steps)"

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            **weight_options_config(self._inner),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**weight_options_from_config(config))


class _Pooling1D(_Sequence2D):
    _inner_class: type = MaxPooling2D
    _cache_attrs = ()

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, *, name=None, input_shape=None,
                 trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        kind = type(self).__name__
        if data_format not in (None, "channels_last"):
            raise ValueError(f"convforge does not support {kind} data_format={data_format!r}; use channels_last")
        self.pool_size = _single(pool_size, "pool_size", kind)
        self.strides = None if strides is None else _single(strides, "strides", kind)
        self.padding = padding
        self._inner = self._inner_class(
            (1, self.pool_size), None if strides is None else (1, self.strides), padding=padding
        )

    def _window(self):
        return f"pool_size={self.pool_size}"

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}


class MaxPooling1D(_Pooling1D):
    """Max pooling over steps, Keras's ``MaxPooling1D`` (default ``pool_size=2``, ``strides=pool_size``)."""

    _inner_class = MaxPooling2D


class AveragePooling1D(_Pooling1D):
    """Average pooling over steps, Keras's ``AveragePooling1D`` ('same' averages only real steps, as Keras)."""

    _inner_class = AveragePooling2D


class GlobalAveragePooling1D(Layer):
    """Mean over the steps: ``(batch, steps, channels)`` -> ``(batch, channels)``, Keras's layer.

    ``keepdims=True`` keeps a steps axis of length 1.
    """

    _cache_attrs = ("_steps",)

    def __init__(self, data_format=None, keepdims=False, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if data_format not in (None, "channels_last"):
            raise ValueError(
                f"convforge does not support GlobalAveragePooling1D data_format={data_format!r}; use channels_last"
            )
        if not isinstance(keepdims, (bool, np.bool_)):  # bool() took keepdims="no" as True
            raise TypeError(f"GlobalAveragePooling1D keepdims must be True or False; got {keepdims!r}")
        self.keepdims = bool(keepdims)
        self._steps = None

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"GlobalAveragePooling1D expects input of shape (batch, steps, channels); got {self._show(input_shape)}"
            )
        return (1, input_shape[1]) if self.keepdims else (input_shape[1],)

    def forward(self, x, training=False):
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._steps = x.shape[1]
        return x.mean(axis=1, keepdims=self.keepdims)

    def backward(self, dy):
        if self._steps is None:
            raise self._missing_cache()
        n, channels = dy.shape[0], dy.shape[-1]
        return np.broadcast_to((dy / self._steps).reshape(n, 1, channels), (n, self._steps, channels)).copy()

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}
