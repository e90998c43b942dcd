"""DepthwiseConv2D and SeparableConv2D (MobileNet's blocks), Keras semantics, on the compiled
depthwise kernel (and conv2d for the pointwise step)."""

from __future__ import annotations

import numbers

import numpy as np

from .. import _params, regularizers
from .. import functional as F
from . import activations, initializers
from .base import Layer, resolve_data_format, set_weight_options
from .conv import _json_padding, check_padding
from .normalization import refuse_unsupported

__all__ = ["DepthwiseConv2D", "SeparableConv2D"]


def _positive_int(value, layer: str, argument: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{layer} {argument} must be a positive int; got {value!r}")
    return int(value)


def _depthwise_initializer(init, channels: int, multiplier: int, kernel_size):
    """Keras draws ``depthwise_kernel`` of shape (kh, kw, C, M) with fan_in = C*kh*kw and
    fan_out = M*kh*kw; drawn here as (M, C, kh, kw), whose OIHW fans are the same, then laid
    out as (C*M, 1, kh, kw)."""

    def draw(shape, dtype):
        w = init((multiplier, channels, *kernel_size), dtype)
        return np.ascontiguousarray(np.asarray(w).transpose(1, 0, 2, 3)).reshape(shape)

    return draw


class DepthwiseConv2D(Layer):
    """Depthwise 2-D convolution, Keras's ``DepthwiseConv2D``: each input channel convolved with
    its own ``depth_multiplier`` filters, no mixing between channels.

    Parameters
    ----------
    kernel_size, strides, padding, dilation_rate, data_format, activation, use_bias
        As :class:`~convforge.layers.Conv2D`.
    depth_multiplier : int
        Filters per input channel: ``channels * depth_multiplier`` outputs.
    depthwise_initializer, bias_initializer
        Defaults ``'glorot_uniform'`` (with Keras's fans) and ``'zeros'``.

    Weights
    -------
    ``kernel`` stored as ``(channels * depth_multiplier, 1, kh, kw)``
    (PyTorch's groups layout; ``layer.kernel``/``layer.params``) and ``bias``
    ``(channels * depth_multiplier,)``; ``get_weights()``/``set_weights()`` use
    Keras's ``(kh, kw, channels, depth_multiplier)``. Output channel
    ``c * depth_multiplier + m`` comes from input channel ``c``, as in Keras.

    ``depthwise_regularizer``/``bias_regularizer`` (and SeparableConv2D's
    ``pointwise_regularizer``) add their penalties to the training loss, as
    Conv2D's; constraints and ``activity_regularizer`` are not supported
    (NotImplementedError).
    """

    _expects_images = True
    _cache_attrs = ("_x",)
    # Keras 3 names the weight "kernel" here and "depthwise_kernel" in SeparableConv2D.
    _kernel_name = "kernel"

    def __init__(
        self,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=(1, 1),
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
        kind = type(self).__name__
        refuse_unsupported(
            kind,
            activity_regularizer=activity_regularizer,
            depthwise_constraint=depthwise_constraint,
            bias_constraint=bias_constraint,
        )
        self.kernel_size = _params.pair(kernel_size, "kernel_size")
        self.strides = _params.pair(strides, "strides")
        self.dilation_rate = _params.pair(dilation_rate, "dilation_rate")
        self.padding = check_padding(padding, kind)
        self.depth_multiplier = _positive_int(depth_multiplier, kind, "depth_multiplier")
        self.data_format = resolve_data_format(data_format)
        set_weight_options(self, activation=activation, use_bias=use_bias, kernel_initializer=depthwise_initializer,
                           bias_initializer=bias_initializer, kernel_regularizer=depthwise_regularizer,
                           bias_regularizer=bias_regularizer, kernel="depthwise")
        self._x = None

    def _check_images(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (batch, height, width, channels); "
                f"got {self._show(input_shape)}"
            )

    def _build_depthwise(self, input_shape):
        self._check_images(input_shape)
        c, m = input_shape[0], self.depth_multiplier
        init = _depthwise_initializer(self.depthwise_initializer, c, m, self.kernel_size)
        self.add_weight(self._kernel_name, (c * m, 1, *self.kernel_size), init, regularizer=self.depthwise_regularizer)
        # get_weights/set_weights speak Keras's (kh, kw, channels, depth_multiplier); stored as above.
        kh, kw = self.kernel_size
        self._keras_layouts = {
            **type(self)._keras_layouts,
            self._kernel_name: (
                lambda k: k.reshape(-1, m, kh, kw).transpose(2, 3, 0, 1),
                lambda k: k.transpose(2, 3, 0, 1).reshape(-1, 1, kh, kw),
            ),
        }

    def build(self, input_shape):
        self._build_depthwise(input_shape)
        if self.use_bias:
            self.add_weight("bias", (input_shape[0] * self.depth_multiplier,), self.bias_initializer,
                            regularizer=self.bias_regularizer)

    def _out_hw(self, input_hw, channels):
        try:
            return _params.conv_params(input_hw, self.kernel_size, self.strides, self.padding, self.dilation_rate)[3]
        except ValueError as err:
            # The input as the user sees it, as Conv2D says it (it said "on input (3, 3)").
            shown = self._show((channels, *input_hw))
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) on input {shown}: {err}") from None

    def _compute_internal_output_shape(self, input_shape):
        self._check_images(input_shape)
        return (input_shape[0] * self.depth_multiplier, *self._out_hw(input_shape[1:], input_shape[0]))

    def _depthwise(self, x, bias, training):
        w = self.params[self._kernel_name]
        out = None
        if training and x.ndim == 4:
            out = self._buffers("dw_y", (x.shape[0], w.shape[0], *self._out_hw(x.shape[2:], x.shape[1])), x.dtype)
        return F.depthwise_conv2d(x, w, bias, self.strides, self.padding, self.dilation_rate, out=out)

    def _depthwise_backward(self, dy, x, need_bias):
        w, b = self.params[self._kernel_name], self._buffers
        dx, dw, db = F.depthwise_conv2d_backward(
            dy, x, w, self.strides, self.padding, self.dilation_rate, self.input_grad_needed, need_bias,
            out=b("dx", x.shape, x.dtype) if self.input_grad_needed else None,
            out_w=b("dw", w.shape, w.dtype), out_b=b("db", (w.shape[0],), w.dtype) if need_bias else None,
        )
        self.grads[self._kernel_name] = dw
        return dx, db

    def forward(self, x, training=False):
        y = self._depthwise(x, self.params.get("bias"), training)
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._x = x
        return y if self.activation is None else self.activation.forward(y, training)

    def backward(self, dy):
        if self._x is None:
            raise self._missing_cache()
        if self.activation is not None:
            dy = self.activation.backward(dy)
        dx, db = self._depthwise_backward(dy, self._x, self.use_bias)
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def _clear_cache(self):
        super()._clear_cache()
        if self.activation is not None:
            self.activation._clear_cache()

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": _json_padding(self.padding),
            "depth_multiplier": self.depth_multiplier,
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**initializers.deserialize_config(config, ("depthwise_initializer", "bias_initializer")))


class SeparableConv2D(DepthwiseConv2D):
    """Depthwise then pointwise (1x1) convolution, Keras's ``SeparableConv2D``.

    Parameters
    ----------
    filters : int
        Output channels of the pointwise step.
    kernel_size, strides, padding, dilation_rate, depth_multiplier
        Of the depthwise step.
    pointwise_initializer : str or callable
        Default ``'glorot_uniform'``.

    Weights
    -------
    ``depthwise_kernel`` ``(channels * depth_multiplier, 1, kh, kw)``,
    ``pointwise_kernel`` ``(filters, channels * depth_multiplier, 1, 1)``
    (OIHW; Keras: ``(1, 1, channels * depth_multiplier, filters)``) and
    ``bias`` ``(filters,)``, Keras's order, as stored; ``get_weights()``/``set_weights()``
    use Keras's layouts of both kernels.
    """

    # The pointwise kernel is stored (filters, channels * depth_multiplier, 1, 1); Keras's is HWIO.
    _keras_layouts = {"pointwise_kernel": (lambda k: k.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1))}

    _cache_attrs = ("_x", "_t")
    _kernel_name = "depthwise_kernel"

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
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
        refuse_unsupported("SeparableConv2D", pointwise_constraint=pointwise_constraint)
        super().__init__(
            kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias,
            depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer, activity_regularizer,
            depthwise_constraint, bias_constraint, input_shape=input_shape, name=name, trainable=trainable,
        )
        self.filters = _positive_int(filters, "SeparableConv2D", "filters")
        self.pointwise_initializer = initializers.get(pointwise_initializer, "pointwise_initializer")
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer, "pointwise_regularizer")
        self._t = None

    def build(self, input_shape):
        self._build_depthwise(input_shape)
        self.add_weight("pointwise_kernel", (self.filters, input_shape[0] * self.depth_multiplier, 1, 1),
                        self.pointwise_initializer, regularizer=self.pointwise_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer)

    def _compute_internal_output_shape(self, input_shape):
        self._check_images(input_shape)
        return (self.filters, *self._out_hw(input_shape[1:], input_shape[0]))

    def forward(self, x, training=False):
        t = self._depthwise(x, None, training)
        y = F.conv2d(t, self.params["pointwise_kernel"], self.params.get("bias"))
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._x, self._t = x, t
        return y if self.activation is None else self.activation.forward(y, training)

    def backward(self, dy):
        if self._x is None:
            raise self._missing_cache()
        if self.activation is not None:
            dy = self.activation.backward(dy)
        dt, dpw, db = F.conv2d_backward(dy, self._t, self.params["pointwise_kernel"], need_bias_grad=self.use_bias)
        self.grads["pointwise_kernel"] = dpw
        if self.use_bias:
            self.grads["bias"] = db
        dx, _ = self._depthwise_backward(dt, self._x, False)
        return dx

    def get_config(self):
        config = super().get_config()
        config["filters"] = self.filters
        config["pointwise_initializer"] = initializers.serialize(self.pointwise_initializer)
        config["pointwise_regularizer"] = regularizers.serialize(self.pointwise_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        keys = ("depthwise_initializer", "pointwise_initializer", "bias_initializer")
        return cls(**initializers.deserialize_config(config, keys))
