"""1-D layers for sequences: Conv1D, DepthwiseConv1D, SeparableConv1D, Conv1DTranspose,
MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D, and the steps'
reshaping: ZeroPadding1D, Cropping1D, UpSampling1D.

A sequence is ``(batch, steps, channels)`` at the API, as in Keras, and stays
so inside the model (a 2-D per-sample shape, never taken for an image), so
``summary()`` shows Keras's shapes and ``Flatten`` flattens in Keras's order.
``data_format='channels_first'`` takes ``(batch, channels, steps)`` instead, as
Keras's layers do (and as PyTorch's ``Conv1d`` reads its input).
Each layer runs on the 2-D kernels: a 1-D convolution or pooling is the 2-D
one on images of height 1. The layer views its input as
``(batch, channels, 1, steps)`` (a transpose for channels-last sequences, a
reshape for channels-first ones), runs an inner :class:`Conv2D` /
:class:`DepthwiseConv2D` / :class:`SeparableConv2D` / :class:`Conv2DTranspose` /
:class:`MaxPooling2D` / :class:`AveragePooling2D` (so padding rules, fused
ReLU, initialisers and regularisers are theirs), and views the result back.
ZeroPadding1D, Cropping1D and UpSampling1D only move data along the steps
axis: NumPy copies on the sequences as they are.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _params
from . import initializers
from .base import Layer, resolve_data_format, weight_options_from_config
from .conv import Conv2D
from .conv_transpose import Conv2DTranspose
from .depthwise import DepthwiseConv2D, SeparableConv2D, _positive_int
from .normalization import refuse_unsupported
from .pooling import AveragePooling2D, MaxPooling2D

__all__ = [
    "AveragePooling1D",
    "Conv1D",
    "Conv1DTranspose",
    "Cropping1D",
    "DepthwiseConv1D",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "MaxPooling1D",
    "SeparableConv1D",
    "UpSampling1D",
    "ZeroPadding1D",
]


def _single(value, name: str, layer: str, minimum: int = 1) -> int:
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{layer} {name} must be {what} (or a 1-tuple); got {value!r}")
    return int(value)


def _conv1d_padding(padding, layer: str = "Conv1D"):
    """'valid', 'same', 'causal', an int >= 0 or a (left, right) pair of ints >= 0."""
    def zero_steps(p) -> bool:
        return isinstance(p, numbers.Integral) and not isinstance(p, (bool, np.bool_)) and 0 <= p <= _params.MAX_PARAM

    if isinstance(padding, str) and padding.lower() in ("valid", "same", "causal"):
        return padding.lower()
    if zero_steps(padding):
        return int(padding)
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(zero_steps(p) for p in padding):
        return (int(padding[0]), int(padding[1]))
    raise ValueError(f"{layer} padding must be 'valid', 'same' or 'causal', or zero steps as an int or a (left, right) "
                     f"pair of ints >= 0; got {padding!r}")


def _steps_padding(padding, kernel_size: int, dilation_rate: int):
    """The inner 2-D layer's padding of a checked 1-D padding: 'valid' and 'same' as they are
    (on a height of 1 they pad the steps alone); 'causal' as ``dilation_rate * (kernel_size - 1)``
    zero steps on the left; zero steps (p, or (left, right)) on the steps axis only."""
    if padding == "causal":
        return ((0, 0), (dilation_rate * (kernel_size - 1), 0))
    if isinstance(padding, str):
        return padding
    left, right = (padding, padding) if isinstance(padding, int) else padding  # as PyTorch's Conv1d pads
    return ((0, 0), (left, right))


def _sequence_format(data_format) -> str:
    """Keras's data_format of a 1-D layer: None is 'channels_last' (Keras's default)."""
    return resolve_data_format(data_format) or "channels_last"


class _SequenceLayout:
    """Where a 1-D layer's steps and channels are in its per-sample shape: ``(steps, channels)``
    channels-last, ``(channels, steps)`` channels-first."""

    data_format: str
    # This data_format is the layer's own (its sequences), not the model's layout of images
    # (Sequential._data_format, the functional API's channels-last rule).
    _sequence_data_format = True

    @property
    def _channels_first(self) -> bool:
        return self.data_format == "channels_first"

    def _layout_words(self) -> str:
        return "(batch, channels, steps)" if self._channels_first else "(batch, steps, channels)"

    def _steps_channels(self, shape) -> tuple[int, int]:
        return (shape[1], shape[0]) if self._channels_first else (shape[0], shape[1])

    def _sequence_shape(self, steps, channels) -> tuple:
        return (channels, steps) if self._channels_first else (steps, channels)

    def _to_images(self, x: np.ndarray) -> np.ndarray:
        """The sequences as (N, C, 1, L), contiguous (the kernels' layout)."""
        if self._channels_first:
            n, channels, steps = x.shape
            return np.ascontiguousarray(x).reshape(n, channels, 1, steps)
        n, steps, channels = x.shape
        return np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(n, channels, 1, steps)

    def _to_sequences(self, y: np.ndarray) -> np.ndarray:
        """(N, C, 1, L) back to the layer's sequences, contiguous."""
        n, channels, _, steps = y.shape
        if self._channels_first:
            return y.reshape(n, channels, steps)
        return np.ascontiguousarray(y.reshape(n, channels, steps).transpose(0, 2, 1))


class _Sequence2D(_SequenceLayout, Layer):
    """A 1-D layer computed by an inner 2-D layer on height-1 images (see the module docstring)."""

    _inner: Layer
    # What a window that the input cannot take does, for errors (a transposed convolution's
    # output is what comes out empty).
    _misfit = "does not fit in"

    def _check(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects input of shape {self._layout_words()}; got {self._show(input_shape)}"
            )

    def _window(self) -> str:  # pragma: no cover - each subclass says
        """The layer's window in its own (1-D) arguments, for errors."""
        raise NotImplementedError

    def _link(self):
        # The inner layer's weights, gradients and penalties are this layer's (same dicts).
        self.params, self.grads, self.regularizers = self._inner.params, self._inner.grads, self._inner.regularizers

    def build(self, input_shape):
        self._compute_internal_output_shape(input_shape)  # the checks, in the 1-D layer's words
        steps, channels = self._steps_channels(input_shape)
        self._inner.name = self.name
        # Keras's activation='softmax' runs over the last axis: the channels of channels-last
        # sequences, the steps of channels-first ones (the inner images' width).
        self._inner._data_format = self.data_format
        self._inner._build((channels, 1, steps), self.dtype)
        self._link()

    def _compute_internal_output_shape(self, input_shape):
        self._check(input_shape)
        steps, channels = self._steps_channels(input_shape)
        try:
            channels, _, steps = self._inner._compute_internal_output_shape((channels, 1, steps))
        except ValueError as err:
            # The inner layer's message speaks of a 2-D layer on (batch, 1, steps, channels) images.
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}): {self._window()} {self._misfit} the input "
                f"{self._show(input_shape)} ({steps} steps) with padding={self.padding!r}"
            ) from err
        return self._sequence_shape(steps, channels)

    def forward(self, x, training=False):
        self._inner.input_grad_needed = self.input_grad_needed
        return self._to_sequences(self._inner.forward(self._to_images(x), training))

    def backward(self, dy):
        dx = self._inner.backward(self._to_images(dy))
        return None if dx is None else self._to_sequences(dx)

    def _astype(self, dtype):
        self._inner._astype(dtype)
        super()._astype(dtype)
        self._link()

    def _clear_cache(self):
        super()._clear_cache()
        self._inner._clear_cache()


class _Convolution1D(_Sequence2D):
    """Shared by the 1-D convolutions: their kernel_size, strides, padding, dilation_rate and
    data_format, checked in the 1-D layer's words, and their config."""

    _cache_attrs = ()

    def _make_inner(self, cls, *args, **kwargs):
        """The 2-D layer this one runs on, whose argument errors name this layer (a Conv1D's
        filters='64' said "Conv2D filters must be a positive int")."""
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError) as err:
            raise type(err)(str(err).replace(cls.__name__, type(self).__name__)) from None

    def _options(self, kernel_size, strides, padding, dilation_rate, data_format, use_bias):
        """Check and set the options over steps; the inner 2-D layer's padding."""
        kind = type(self).__name__
        self.data_format = _sequence_format(data_format)
        self.kernel_size = _single(kernel_size, "kernel_size", kind)
        self.strides = _single(strides, "strides", kind)
        self.dilation_rate = _single(dilation_rate, "dilation_rate", kind)
        self.padding = _conv1d_padding(padding, kind)
        # Checked here too: the inner layer's message would name the 2-D layer.
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"{kind} use_bias must be True or False; got {use_bias!r}")
        return _steps_padding(self.padding, self.kernel_size, self.dilation_rate)

    def _window(self):
        if self.dilation_rate == 1:
            return f"kernel_size={self.kernel_size}"
        span = self.dilation_rate * (self.kernel_size - 1) + 1
        return f"kernel_size={self.kernel_size} with dilation_rate={self.dilation_rate} ({span} steps)"

    def get_config(self):
        # The inner 2-D layer's options (activation, use_bias, initialisers, regularisers, filters,
        # depth_multiplier: Keras's names), with the 1-D layer's own name and options over steps.
        options = self._inner.get_config()
        for key in Layer.get_config(self._inner):
            options.pop(key)
        return {
            **super().get_config(),
            **options,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": list(self.padding) if isinstance(self.padding, tuple) else self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
        }


class Conv1D(_Convolution1D):
    """1-D convolution over ``(batch, steps, channels)``, Keras's ``Conv1D``.

    Parameters
    ----------
    filters : int
    kernel_size, strides, dilation_rate : int
    padding : 'valid', 'same' or 'causal'
        ``'causal'`` pads ``dilation_rate * (kernel_size - 1)`` zeros on the
        left only (output step t sees inputs up to t), as Keras. An int ``p``
        (``p`` zero steps on each side, PyTorch's ``Conv1d(padding=p)``) or a
        ``(left, right)`` pair is accepted too (not in Keras; as
        :class:`Conv2D`'s ints).
    data_format : 'channels_last' (default) or 'channels_first'
        ``(batch, steps, channels)`` or ``(batch, channels, steps)`` (PyTorch's
        ``Conv1d`` layout; with it, ``activation='softmax'`` runs over the
        steps, the last axis, as in Keras).
    activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        As :class:`Conv2D`.

    Weights
    -------
    ``kernel`` stored as ``(filters, channels, 1, kernel_size)`` and ``bias``
    ``(filters,)``; ``get_weights()``/``set_weights()`` use Keras's
    ``(kernel_size, channels, filters)``. Parameter counts equal Keras's.
    """

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
        inner_padding = self._options(kernel_size, strides, padding, dilation_rate, data_format, use_bias)
        self._inner = self._make_inner(
            Conv2D,
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

    @classmethod
    def from_config(cls, config):
        return cls(**weight_options_from_config(config))


class _Depthwise1D(_Convolution1D):
    """Shared by DepthwiseConv1D and SeparableConv1D (an inner DepthwiseConv2D / SeparableConv2D)."""

    _kernel_name = "kernel"

    def _depthwise_options(self, kernel_size, strides, padding, depth_multiplier, dilation_rate, data_format,
                           use_bias, activity_regularizer, bias_constraint, **constraints):
        kind = type(self).__name__
        refuse_unsupported(kind, activity_regularizer=activity_regularizer, **constraints,
                           bias_constraint=bias_constraint)
        inner_padding = self._options(kernel_size, strides, padding, dilation_rate, data_format, use_bias)
        self.depth_multiplier = multiplier = _positive_int(depth_multiplier, kind, "depth_multiplier")
        # Stored (channels * multiplier, 1, 1, k), output channel c * multiplier + m from input channel
        # c (the inner DepthwiseConv2D's); get_weights/set_weights use Keras's (k, channels, multiplier).
        self._keras_layouts = {
            **type(self)._keras_layouts,
            self._kernel_name: (
                lambda w: w[:, 0, 0, :].reshape(-1, multiplier, w.shape[-1]).transpose(2, 0, 1),
                lambda w: w.transpose(1, 2, 0).reshape(-1, 1, 1, w.shape[0]),
            ),
        }
        return inner_padding

    @classmethod
    def from_config(cls, config):
        keys = ("depthwise_initializer", "pointwise_initializer", "bias_initializer")
        return cls(**initializers.deserialize_config(config, keys))


class DepthwiseConv1D(_Depthwise1D):
    """Depthwise 1-D convolution over ``(batch, steps, channels)``, Keras's ``DepthwiseConv1D``:
    each channel convolved with its own ``depth_multiplier`` filters, no mixing between channels
    (the layer runs a :class:`DepthwiseConv2D` on height-1 images).

    Parameters
    ----------
    kernel_size, strides, dilation_rate, data_format
        As :class:`Conv1D`.
    padding : 'valid' or 'same'
        As Keras. convforge also takes :class:`Conv1D`'s ``'causal'`` (not in
        Keras, whose Conv1D and, in Keras 2, SeparableConv1D take it) and zero
        steps (an int or a ``(left, right)`` pair, PyTorch's
        ``Conv1d(groups=channels, padding=p)``).
    depth_multiplier : int
        Filters per input channel: ``channels * depth_multiplier`` outputs.
    activation, use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer
        As :class:`DepthwiseConv2D`; constraints and ``activity_regularizer``
        are not supported (NotImplementedError).

    Weights
    -------
    ``kernel`` stored as ``(channels * depth_multiplier, 1, 1, kernel_size)``
    and ``bias`` ``(channels * depth_multiplier,)``; ``get_weights()``/
    ``set_weights()`` use Keras's ``(kernel_size, channels, depth_multiplier)``.
    Output channel ``c * depth_multiplier + m`` comes from input channel ``c``,
    as in Keras.
    """

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        bias_constraint=None,
        *,
        input_shape=None,
        name=None,
        trainable=True,
    ):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        inner_padding = self._depthwise_options(
            kernel_size, strides, padding, depth_multiplier, dilation_rate, data_format, use_bias,
            activity_regularizer, bias_constraint, depthwise_constraint=depthwise_constraint,
        )
        self._inner = self._make_inner(
            DepthwiseConv2D,
            (1, self.kernel_size), (1, self.strides), inner_padding, self.depth_multiplier,
            dilation_rate=(1, self.dilation_rate), activation=activation, use_bias=use_bias,
            depthwise_initializer=depthwise_initializer, bias_initializer=bias_initializer,
            depthwise_regularizer=depthwise_regularizer, bias_regularizer=bias_regularizer,
        )


class SeparableConv1D(_Depthwise1D):
    """Depthwise then pointwise (kernel size 1) 1-D convolution over ``(batch, steps, channels)``,
    Keras's ``SeparableConv1D`` (the layer runs a :class:`SeparableConv2D` on height-1 images).

    Parameters
    ----------
    filters : int
        Output channels of the pointwise step.
    kernel_size, strides, padding, dilation_rate, depth_multiplier
        Of the depthwise step, as :class:`DepthwiseConv1D` (``'causal'`` and
        zero steps too, not in Keras 3; Keras 2's SeparableConv1D took
        ``'causal'``).
    data_format, activation, use_bias
        As :class:`Conv1D`.
    depthwise_initializer, pointwise_initializer, bias_initializer,
    depthwise_regularizer, pointwise_regularizer, bias_regularizer
        As :class:`SeparableConv2D`; constraints and ``activity_regularizer``
        are not supported (NotImplementedError).

    Weights
    -------
    ``depthwise_kernel`` stored as ``(channels * depth_multiplier, 1, 1,
    kernel_size)``, ``pointwise_kernel`` ``(filters, channels * depth_multiplier,
    1, 1)`` and ``bias`` ``(filters,)``, Keras's order; ``get_weights()``/
    ``set_weights()`` use Keras's ``(kernel_size, channels, depth_multiplier)``
    and ``(1, channels * depth_multiplier, filters)``.
    """

    _kernel_name = "depthwise_kernel"
    # Stored (filters, channels * multiplier, 1, 1); Keras's is (1, channels * multiplier, filters).
    _keras_layouts = {"pointwise_kernel": (lambda w: w[:, :, 0, 0].T[None], lambda w: w[0].T[:, :, None, None])}

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        depth_multiplier=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        pointwise_constraint=None,
        bias_constraint=None,
        *,
        input_shape=None,
        name=None,
        trainable=True,
    ):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        inner_padding = self._depthwise_options(
            kernel_size, strides, padding, depth_multiplier, dilation_rate, data_format, use_bias,
            activity_regularizer, bias_constraint, depthwise_constraint=depthwise_constraint,
            pointwise_constraint=pointwise_constraint,
        )
        self.filters = _positive_int(filters, "SeparableConv1D", "filters")
        self._inner = self._make_inner(
            SeparableConv2D,
            self.filters, (1, self.kernel_size), (1, self.strides), inner_padding,
            dilation_rate=(1, self.dilation_rate), depth_multiplier=self.depth_multiplier, activation=activation,
            use_bias=use_bias, depthwise_initializer=depthwise_initializer,
            pointwise_initializer=pointwise_initializer, bias_initializer=bias_initializer,
            depthwise_regularizer=depthwise_regularizer, pointwise_regularizer=pointwise_regularizer,
            bias_regularizer=bias_regularizer,
        )


class Conv1DTranspose(_Convolution1D):
    """Transposed 1-D convolution over ``(batch, steps, channels)``, Keras's ``Conv1DTranspose``
    (the layer runs a :class:`Conv2DTranspose` on height-1 images).

    Parameters
    ----------
    filters : int
    kernel_size, strides : int
    padding : 'valid' or 'same'
    output_padding : None or an int less than ``strides`` (Keras's rule)
        Output steps as :class:`Conv2DTranspose`'s rows: ``(steps - 1) * strides
        + max(kernel_size, strides)`` for ``'valid'``, ``steps * strides`` for
        ``'same'``; with ``output_padding``, ``(steps - 1) * strides +
        kernel_size - 2 * pad + output_padding`` (``pad`` 0 for ``'valid'``,
        ``kernel_size // 2`` for ``'same'``).
    data_format : 'channels_last' (default) or 'channels_first'
        As :class:`Conv1D`.
    dilation_rate : 1
        ``dilation_rate > 1`` is not supported (as :class:`Conv2DTranspose`).
    activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        As :class:`Conv2DTranspose`.

    Weights
    -------
    ``kernel`` stored as ``(channels, filters, 1, kernel_size)`` and ``bias``
    ``(filters,)``; ``get_weights()``/``set_weights()`` use Keras's
    ``(kernel_size, filters, channels)``. Parameter counts equal Keras's.
    """

    # Stored (channels, filters, 1, k); Keras's (k, filters, channels): Conv1D's map of its axes.
    _keras_layouts = Conv1D._keras_layouts
    _misfit = "gives an empty output from"

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        output_padding=None,
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
        kind = "Conv1DTranspose"
        if _single(dilation_rate, "dilation_rate", kind) != 1:
            raise ValueError("convforge does not support Conv1DTranspose dilation_rate > 1")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"Conv1DTranspose padding must be 'valid' or 'same'; got {padding!r}")
        self._options(kernel_size, strides, padding, 1, data_format, use_bias)
        self.filters = _positive_int(filters, kind, "filters")
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = _single(output_padding, "output_padding", kind, minimum=0)
            if self.output_padding >= self.strides:
                raise ValueError(
                    f"Conv1DTranspose output_padding must be less than strides (Keras's rule); got "
                    f"output_padding={self.output_padding}, strides={self.strides}"
                )
        self._inner = self._make_inner(
            Conv2DTranspose,
            self.filters, (1, self.kernel_size), (1, self.strides), self.padding,
            None if self.output_padding is None else (0, self.output_padding), activation=activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
        )

    def _window(self):
        if self.output_padding is None:
            return f"kernel_size={self.kernel_size}"
        return f"kernel_size={self.kernel_size} with output_padding={self.output_padding}"

    def get_config(self):
        return {**super().get_config(), "output_padding": self.output_padding}

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
        self.data_format = _sequence_format(data_format)
        self.pool_size = _single(pool_size, "pool_size", kind)
        self.strides = None if strides is None else _single(strides, "strides", kind)
        explicit = self._inner_class is MaxPooling2D and isinstance(padding, (int, np.integer)) and \
            not isinstance(padding, (bool, np.bool_))
        if explicit:  # MaxPooling2D's extension over steps: PyTorch's MaxPool1d(padding=p)
            if not 0 <= padding <= self.pool_size // 2:
                raise ValueError(f"{kind} padding must be at most half the window (pool_size={self.pool_size}) and "
                                 f">= 0; got padding={padding!r}")
            self.padding = int(padding)
            inner_padding = (0, self.padding)
        else:
            if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
                # Checked here: the inner 2-D pooling's message named it ("MaxPooling2D padding ...").
                allowed = "'valid', 'same' or an int" if self._inner_class is MaxPooling2D else "'valid' or 'same'"
                raise ValueError(f"{kind} padding must be {allowed}; got {padding!r}")
            self.padding = inner_padding = padding.lower()
        self._inner = self._inner_class(
            (1, self.pool_size), None if strides is None else (1, self.strides), padding=inner_padding
        )

    def _window(self):
        return f"pool_size={self.pool_size}"

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding,
                "data_format": self.data_format}


class MaxPooling1D(_Pooling1D):
    """Max pooling over steps, Keras's ``MaxPooling1D`` (default ``pool_size=2``, ``strides=pool_size``).

    ``padding`` may also be an int (convforge's extension, as MaxPooling2D's): that many steps
    of -inf at each end, PyTorch's ``MaxPool1d(padding=...)`` (at most half the window)."""

    _inner_class = MaxPooling2D


class AveragePooling1D(_Pooling1D):
    """Average pooling over steps, Keras's ``AveragePooling1D`` ('same' averages only real steps, as Keras)."""

    _inner_class = AveragePooling2D


class _GlobalPooling1D(_SequenceLayout, Layer):
    """Shared by the global poolings over steps: ``(batch, steps, channels)`` -> ``(batch, channels)``."""

    def __init__(self, data_format=None, keepdims=False, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.data_format = _sequence_format(data_format)
        if not isinstance(keepdims, (bool, np.bool_)):  # bool() took keepdims="no" as True
            raise TypeError(f"{type(self).__name__} keepdims must be True or False; got {keepdims!r}")
        self.keepdims = bool(keepdims)

    @property
    def _steps_axis(self) -> int:
        return 2 if self._channels_first else 1

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects input of shape {self._layout_words()}; got {self._show(input_shape)}"
            )
        _, channels = self._steps_channels(input_shape)
        return self._sequence_shape(1, channels) if self.keepdims else (channels,)

    def _dy_with_steps(self, dy):
        """dy as (batch, 1, channels) or (batch, channels, 1): broadcastable against the input."""
        return np.expand_dims(dy.reshape(dy.shape[0], -1), self._steps_axis)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the steps: ``(batch, steps, channels)`` -> ``(batch, channels)``, Keras's layer.

    ``keepdims=True`` keeps a steps axis of length 1; ``data_format='channels_first'`` takes
    ``(batch, channels, steps)``.
    """

    _cache_attrs = ("_in_shape",)

    def __init__(self, data_format=None, keepdims=False, *, name=None, input_shape=None, trainable=True):
        super().__init__(data_format, keepdims, name=name, input_shape=input_shape, trainable=trainable)
        self._in_shape = None

    def forward(self, x, training=False):
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._in_shape = x.shape
        return x.mean(axis=self._steps_axis, keepdims=self.keepdims)

    def backward(self, dy):
        if self._in_shape is None:
            raise self._missing_cache()
        steps = self._in_shape[self._steps_axis]
        return np.broadcast_to(self._dy_with_steps(dy) / steps, self._in_shape).copy()


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Maximum over the steps: ``(batch, steps, channels)`` -> ``(batch, channels)``, Keras's
    layer (alias ``GlobalMaxPool1D``).

    ``keepdims=True`` keeps a steps axis of length 1; ``data_format='channels_first'`` takes
    ``(batch, channels, steps)``. The gradient of a channel is split equally between the steps
    that hold its maximum, as Keras's (``GlobalMaxPooling2D`` gives it to the first maximum);
    a channel holding a NaN has NaN as its maximum, and its gradient goes to its NaN steps
    (unlike Keras's on torch, which makes the gradient of every step of that channel NaN).
    """

    _cache_attrs = ("_share",)

    def __init__(self, data_format=None, keepdims=False, *, name=None, input_shape=None, trainable=True):
        super().__init__(data_format, keepdims, name=name, input_shape=input_shape, trainable=trainable)
        self._share = None

    def forward(self, x, training=False):
        y = x.max(axis=self._steps_axis, keepdims=True)
        if training:  # inference leaves the training cache alone (predict may run during fit)
            nan = np.isnan(y)
            at_max = (x == y) | (nan & np.isnan(x))
            self._share = at_max / at_max.sum(axis=self._steps_axis, keepdims=True).astype(x.dtype)
        return y if self.keepdims else y.reshape(y.shape[0], -1)

    def backward(self, dy):
        if self._share is None:
            raise self._missing_cache()
        return self._share * self._dy_with_steps(dy)




def _steps_count(value, argument: str, layer: str, minimum: int) -> int:
    """One count of steps, an int >= minimum (Python's or NumPy's; not a bool, not a float)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{layer} {argument} must be an int; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{layer} {argument} must be an int >= {minimum}; got {value!r}")
    if value > _params.MAX_PARAM:
        raise ValueError(f"{layer} {argument} must be at most 2**31 - 1; got {value!r}")
    return int(value)


def _left_right(value, argument: str, layer: str) -> tuple[int, int]:
    """Keras's ``n`` (both ends) or ``(left, right)`` steps, ints >= 0."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{layer} {argument} must be an int or a (left, right) pair of ints >= 0; got {value!r}")
        return (_steps_count(value[0], argument, layer, 0), _steps_count(value[1], argument, layer, 0))
    n = _steps_count(value, argument, layer, 0)
    return (n, n)


class _Steps1D(_SequenceLayout, Layer):
    """Shared by the layers that move the steps of a sequence and leave its channels alone:
    ``_steps_out`` gives the new length of the steps axis."""

    _cache_attrs = ("_in_shape",)

    def __init__(self, data_format, *, name, input_shape, trainable):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.data_format = _sequence_format(data_format)
        self._in_shape = None

    @property
    def _steps_axis(self) -> int:
        """The steps axis of a batch of sequences."""
        return 2 if self._channels_first else 1

    def _steps_out(self, steps: int, input_shape) -> int:  # pragma: no cover - each subclass says
        raise NotImplementedError

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects input of shape {self._layout_words()}; got {self._show(input_shape)}"
            )
        steps, channels = self._steps_channels(input_shape)
        out = self._steps_out(steps, input_shape)
        if out > _params.MAX_PARAM:  # a forged config must not allocate gigabytes before failing
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}): {out} steps out of the input {self._show(input_shape)}, "
                f"more than 2**31 - 1"
            )
        return self._sequence_shape(out, channels)

    def _steps(self, start, stop) -> tuple:
        """An index of a batch of sequences: the steps start:stop, everything else whole."""
        return (slice(None),) * self._steps_axis + (slice(start, stop),)

    def forward(self, x, training=False):
        self._compute_internal_output_shape(x.shape[1:])  # a crop that leaves nothing raises, naming the shapes
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._in_shape = x.shape
        return self._move(x)

    def backward(self, dy):
        if self._in_shape is None:
            raise self._missing_cache()
        if not self.input_grad_needed:
            return None
        return self._move_back(dy)

    def _data_format_config(self) -> dict:
        """Keras's Cropping1D and UpSampling1D take no data_format (they read (batch, steps,
        channels)): a channels-last layer's config is Keras's own; a channels-first one names it."""
        return {"data_format": self.data_format} if self._channels_first else {}


class ZeroPadding1D(_Steps1D):
    """Adds zero steps at both ends of each sequence, Keras's ``ZeroPadding1D``.

    Parameters
    ----------
    padding : int or (left, right)
        Zero steps before and after (an int: as many at both ends). Default 1.
    data_format : 'channels_last' (default) or 'channels_first'
        ``(batch, steps, channels)`` or ``(batch, channels, steps)``.

    The gradient of the input is the output's gradient without the padded steps.
    """

    def __init__(self, padding=1, data_format=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(data_format, name=name, input_shape=input_shape, trainable=trainable)
        self.padding = _left_right(padding, "padding", "ZeroPadding1D")

    def _steps_out(self, steps, input_shape):
        return steps + self.padding[0] + self.padding[1]

    def _move(self, x):
        left, right = self.padding
        shape = list(x.shape)
        shape[self._steps_axis] += left + right
        y = np.zeros(shape, x.dtype)
        y[self._steps(left, left + x.shape[self._steps_axis])] = x
        return y

    def _move_back(self, dy):
        left = self.padding[0]
        return np.ascontiguousarray(dy[self._steps(left, left + self._in_shape[self._steps_axis])])

    def get_config(self):
        return {**super().get_config(), "padding": list(self.padding), "data_format": self.data_format}


class Cropping1D(_Steps1D):
    """Removes steps at both ends of each sequence, Keras's ``Cropping1D``.

    Parameters
    ----------
    cropping : int or (left, right)
        Steps removed at the start and at the end (an int: as many at both ends). Default
        ``(1, 1)``. A crop must leave at least one step.
    data_format : 'channels_last' (default) or 'channels_first', keyword only
        Not in Keras, whose ``Cropping1D`` reads ``(batch, steps, channels)`` only; with
        ``'channels_first'`` it crops the steps of ``(batch, channels, steps)`` (the layout of
        the other 1-D layers with that data_format, and of PyTorch's ``Conv1d``).

    The gradient of the input is the output's gradient with zeros at the cropped steps.
    """

    def __init__(self, cropping=(1, 1), *, data_format=None, name=None, input_shape=None, trainable=True):
        super().__init__(data_format, name=name, input_shape=input_shape, trainable=trainable)
        self.cropping = _left_right(cropping, "cropping", "Cropping1D")

    def _steps_out(self, steps, input_shape):
        left, right = self.cropping
        if left + right >= steps:
            raise ValueError(
                f"layer {self.name!r} (Cropping1D): cropping {self.cropping} leaves nothing of the input "
                f"{self._show(input_shape)} ({steps} steps)"
            )
        return steps - left - right

    def _move(self, x):
        left, right = self.cropping
        return np.ascontiguousarray(x[self._steps(left, x.shape[self._steps_axis] - right)])

    def _move_back(self, dy):
        left = self.cropping[0]
        dx = np.zeros(self._in_shape, dy.dtype)
        dx[self._steps(left, left + dy.shape[self._steps_axis])] = dy
        return dx

    def get_config(self):
        return {**super().get_config(), "cropping": list(self.cropping), **self._data_format_config()}


class UpSampling1D(_Steps1D):
    """Repeats each step ``size`` times, Keras's ``UpSampling1D``:
    ``(batch, steps, channels)`` -> ``(batch, steps * size, channels)``.

    Parameters
    ----------
    size : int >= 1
        How many times each step is repeated (``np.repeat`` along the steps). Default 2.
    data_format : 'channels_last' (default) or 'channels_first', keyword only
        Not in Keras, whose ``UpSampling1D`` reads ``(batch, steps, channels)`` only; with
        ``'channels_first'`` it repeats the steps of ``(batch, channels, steps)``.

    The gradient of a step is the sum of its copies' gradients.
    """

    def __init__(self, size=2, *, data_format=None, name=None, input_shape=None, trainable=True):
        super().__init__(data_format, name=name, input_shape=input_shape, trainable=trainable)
        self.size = _steps_count(size, "size", "UpSampling1D", 1)

    def _steps_out(self, steps, input_shape):
        return steps * self.size

    def _move(self, x):
        return np.repeat(x, self.size, axis=self._steps_axis)

    def _move_back(self, dy):
        axis = self._steps_axis
        # (..., steps * size, ...) -> (..., steps, size, ...): each step's copies on their own axis.
        shape = (*dy.shape[:axis], dy.shape[axis] // self.size, self.size, *dy.shape[axis + 1 :])
        return dy.reshape(shape).sum(axis=axis + 1)

    def get_config(self):
        return {**super().get_config(), "size": self.size, **self._data_format_config()}
