"""Conv2D: 2-D convolution on the compiled kernels."""

from __future__ import annotations

import numbers

import numpy as np

from .. import _params
from .. import functional as F
from . import activations
from .base import Layer, resolve_data_format, set_weight_options, weight_options_config, weight_options_from_config

__all__ = ["Conv2D", "check_padding"]


def check_padding(padding, layer: str):
    """Keras's ``'valid'``/``'same'`` (any case), or the kernels' int / pair forms."""
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(f"{layer} padding must be 'valid' or 'same'; got {padding!r}")
        return padding.lower()
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        _params.pair(padding, "padding", minimum=0)
        return int(padding)
    if isinstance(padding, (tuple, list)):
        _params.conv_padding(padding, (1, 1), (1, 1), (1, 1), (1, 1))  # validates the form
        return tuple(tuple(p) if isinstance(p, (tuple, list)) else int(p) for p in padding)
    raise TypeError(f"{layer} padding must be 'valid' or 'same'; got {type(padding).__name__} {padding!r}")


def _json_padding(padding):
    if isinstance(padding, tuple):
        return [list(p) if isinstance(p, tuple) else p for p in padding]
    return padding


class Conv2D(Layer):
    """2-D convolution layer, Keras's ``Conv2D``.

    Parameters
    ----------
    filters : int
        Number of output channels.
    kernel_size : int or (int, int)
    strides : int or (int, int)
    padding : 'valid' or 'same'
        ``'same'`` keeps ``ceil(size / stride)`` rows and columns (Keras/TF
        rule; an odd extra padding row/column goes at the bottom/right). An
        int or ``(ph, pw)`` of zero padding is accepted too.
    data_format : 'channels_last' (default) or 'channels_first'
        Layout of the *model's* input and of the shapes it reports. Inside
        the model image batches are always ``(batch, channels, height,
        width)``.
    dilation_rate : int or (int, int)
    groups : int
        Keras's grouped convolution (ResNeXt's blocks, AlexNet's two halves): the input channels
        and the filters split into ``groups`` groups, filter group g seeing channel group g only
        (the kernel has ``channels // groups`` input channels). Both counts must divide by it.
        Runs one convolution per group on the kernels (no compiled-plan op: predict runs it
        between plans).
    activation : 'relu', 'tanh', 'sigmoid', 'softmax', 'linear' or None
        Applied in place on the convolution's output (``relu`` on the
        compiled kernel).
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        Defaults ``'glorot_uniform'`` and ``'zeros'``, as in Keras.
    kernel_regularizer, bias_regularizer : Regularizer, optional
        E.g. ``regularizers.l2(1e-4)``: added to the training loss.
    input_shape : tuple, optional
        ``(height, width, channels)`` of the model input, on the first layer.

    Weights
    -------
    ``kernel`` stored as ``(filters, channels // groups, kh, kw)`` (OIHW, the kernels'
    layout: ``layer.kernel``, ``layer.params``) and ``bias`` ``(filters,)``.
    ``get_weights()``/``set_weights()`` use Keras's layout
    ``(kh, kw, channels // groups, filters)``, so Keras weights and filter-plotting
    code work unchanged.

    Input / output
    --------------
    At the API ``(batch, height, width, channels)`` ->
    ``(batch, out_height, out_width, filters)``; in ``forward``/``backward``
    ``(batch, channels, height, width)`` -> ``(batch, filters, out_height, out_width)``.
    """

    _expects_images = True
    _cache_attrs = ("_x", "_plan_used")
    # Stored OIHW (the kernels' layout); get_weights/set_weights use Keras's HWIO.
    _keras_layouts = {"kernel": (lambda k: k.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1))}

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        groups=1,
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
        if isinstance(filters, (bool, np.bool_)) or not isinstance(filters, numbers.Integral) or filters < 1:
            raise ValueError(f"{type(self).__name__} filters must be a positive int; got {filters!r}")
        self.filters = int(filters)
        if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral) or groups < 1:
            raise ValueError(f"{type(self).__name__} groups must be a positive int; got {groups!r}")
        if filters % groups:
            raise ValueError(f"{type(self).__name__} filters must be divisible by groups (Keras's rule); got filters={filters}, "
                             f"groups={groups}")
        self.groups = int(groups)
        self.kernel_size = _params.pair(kernel_size, "kernel_size")
        self.strides = _params.pair(strides, "strides")
        self.dilation_rate = _params.pair(dilation_rate, "dilation_rate")
        self.padding = check_padding(padding, "Conv2D")
        self.data_format = resolve_data_format(data_format)
        set_weight_options(self, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                           bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer)
        self._x = None
        self._plans = {}  # image size -> ConvPlan

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"Conv2D expects input of shape (batch, height, width, channels); got {self._show(input_shape)}"
            )
        channels = input_shape[0]
        self._check_groups(channels)
        self.add_weight(
            "kernel",
            (self.filters, channels // self.groups, *self.kernel_size),
            self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer)

    def _check_groups(self, channels: int) -> None:
        if channels % self.groups:
            raise ValueError(
                f"layer {self.name!r} (Conv2D): the number of input channels must be divisible by groups (Keras's "
                f"rule); got groups={self.groups} for an input of {channels} channels"
            )

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"Conv2D expects input of shape (batch, height, width, channels); got {self._show(input_shape)}"
            )
        self._check_groups(input_shape[0])
        try:
            plan = _params.conv_params(
                input_shape[1:], self.kernel_size, self.strides, self.padding, self.dilation_rate
            )
        except ValueError as err:
            raise ValueError(f"layer {self.name!r} (Conv2D) on input {self._show(input_shape)}: {err}") from None
        return (self.filters, *plan.out_hw)

    def _plan_for(self, hw):
        """The conv plan for images of ``hw``, built once per image size (normally one)."""
        plan = self._plans.get(hw)
        if plan is None:
            plan = _params.conv_params(hw, self.kernel_size, self.strides, self.padding, self.dilation_rate)
            if len(self._plans) > 8:  # a model fed many image sizes: keep the cache small
                self._plans.clear()
            self._plans[hw] = plan
        return plan

    def _group_slices(self, channels: int):
        """(input channels, filters) of each group, as slices."""
        cg, fg = channels // self.groups, self.filters // self.groups
        return [(slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)) for g in range(self.groups)]

    def forward(self, x, training=False):
        w, b = self.params["kernel"], self.params.get("bias")
        args = (self.strides, self.padding, self.dilation_rate)
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1] != w.shape[1] * self.groups:
            if self.groups == 1 or not isinstance(x, np.ndarray) or x.ndim != 4:
                F.conv2d(x, w, b, *args)  # raises, naming what is wrong with x
            raise ValueError(f"layer {self.name!r} (Conv2D): x must have {w.shape[1] * self.groups} channels "
                             f"({self.groups} groups of {w.shape[1]}); got {x.shape[1]}")
        plan = self._plan_for(x.shape[2:])  # 'same' padding depends on the image size
        if self.groups > 1:
            return self._forward_grouped(x, w, b, args, plan, training)
        # ReLU runs inside the kernel, on each block of output while it is still in cache,
        # instead of as another pass over the whole output.
        fused_relu = isinstance(self.activation, activations.ReLU) and self.activation.plain
        if not training:  # a fresh output: leaves the training state alone (fit may be running in another thread)
            y = F.conv2d(x, w, b, *args, relu=fused_relu, _plan=plan)
            if fused_relu or self.activation is None:
                return y
            return self.activation.forward(y, False)
        y = F.conv2d(x, w, b, *args, relu=fused_relu, _plan=plan,
                     out=self._buffers("y", (x.shape[0], w.shape[0], *plan.out_hw), x.dtype))
        self._x, self._plan_used = x, plan
        if fused_relu:
            return self.activation._output(y, True)
        return y if self.activation is None else self.activation.forward(y, True)

    def _forward_grouped(self, x, w, b, args, plan, training):
        fused_relu = isinstance(self.activation, activations.ReLU) and self.activation.plain
        shape = (x.shape[0], w.shape[0], *plan.out_hw)
        y = self._buffers("y", shape, x.dtype) if training else np.empty(shape, x.dtype)
        for cs, fs in self._group_slices(x.shape[1]):  # filter group g from channel group g
            y[:, fs] = F.conv2d(np.ascontiguousarray(x[:, cs]), w[fs], None if b is None else b[fs], *args,
                                relu=fused_relu, _plan=plan)
        if training:
            self._x, self._plan_used = x, plan
        if fused_relu:
            return self.activation._output(y, training)
        return y if self.activation is None else self.activation.forward(y, training)

    def _backward_grouped(self, dy, x, w, args, plan):
        buffers = self._buffers
        dx = None
        if self.input_grad_needed:
            dx = buffers("dx", x.shape, x.dtype)
            for cs, fs in self._group_slices(x.shape[1]):
                dx[:, cs] = F.conv2d_backward_data(np.ascontiguousarray(dy[:, fs]), w[fs], (x.shape[0], cs.stop - cs.start,
                                                   *x.shape[2:]), *args, _plan=plan)
        if not self.trainable:
            self.grads.clear()
            return dx
        dw = buffers("dw", w.shape, w.dtype)
        db = buffers("db", (w.shape[0],), w.dtype) if self.use_bias else None
        for cs, fs in self._group_slices(x.shape[1]):
            dwg, dbg = F.conv2d_backward_weights(np.ascontiguousarray(dy[:, fs]), np.ascontiguousarray(x[:, cs]),
                                                 w[fs].shape, *args, need_bias_grad=self.use_bias, _plan=plan)
            dw[fs] = dwg
            if self.use_bias:
                db[fs] = dbg
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def backward(self, dy):
        if self._x is None:
            raise self._missing_cache()
        if self.activation is not None:
            dy = self.activation.backward(dy)
        x, w = self._x, self.params["kernel"]
        if self.groups > 1:
            if dy.dtype != x.dtype or dy.ndim != 4 or dy.shape[1] != w.shape[0]:
                raise ValueError(f"layer {self.name!r} (Conv2D): dy must be a {x.dtype} array of {w.shape[0]} "
                                 f"channels; got {dy.dtype} {dy.shape}")
            return self._backward_grouped(dy, x, w, (self.strides, self.padding, self.dilation_rate), self._plan_used)
        if dy.dtype != x.dtype or dy.ndim != 4:
            # Let functional explain what is wrong with dy.
            F.conv2d_backward(dy, x, w, self.strides, self.padding, self.dilation_rate)
        plan, buffers, args = self._plan_used, self._buffers, (self.strides, self.padding, self.dilation_rate)
        dx = None
        if self.input_grad_needed:
            dx = F.conv2d_backward_data(dy, w, x.shape, *args, _plan=plan, out=buffers("dx", x.shape, x.dtype))
        if not self.trainable:  # frozen (Keras's trainable=False): dx alone, no weight gradient
            self.grads.clear()
            return dx
        dw, db = F.conv2d_backward_weights(
            dy, x, w.shape, *args, need_bias_grad=self.use_bias, _plan=plan,
            out_w=buffers("dw", w.shape, w.dtype),
            out_b=buffers("db", (w.shape[0],), w.dtype) if self.use_bias else None,
        )
        self.grads["kernel"] = dw
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
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": _json_padding(self.padding),
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
            "groups": self.groups,
            **weight_options_config(self),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**weight_options_from_config(config))
