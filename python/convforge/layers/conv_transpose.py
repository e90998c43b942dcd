"""Conv2DTranspose: the transposed convolution, on the conv2d kernels."""

from __future__ import annotations

import numbers

import numpy as np

from .. import _params
from .. import functional as F
from .base import Layer, resolve_data_format, set_weight_options, weight_options_config, weight_options_from_config

__all__ = ["Conv2DTranspose"]


class Conv2DTranspose(Layer):
    """Transposed 2-D convolution ("deconvolution"), Keras's ``Conv2DTranspose``.

    Its forward pass is the data gradient of a convolution and its data
    gradient a convolution, so it runs on the conv2d kernels: forward is
    ``functional.conv2d_backward`` (the input-gradient half; this version of
    ``functional`` computes the discarded weight-gradient half too), backward
    is ``functional.conv2d`` plus the weight-gradient half of
    ``conv2d_backward``.

    Output size: ``(h - 1) * stride + max(kernel, stride)`` for ``'valid'``
    (a stride larger than the kernel leaves ``stride - kernel`` rows after the
    last window that no input reaches: they hold the bias alone), ``h * stride``
    for ``'same'``, as Keras. With ``output_padding`` (an int or a pair, each
    less than the stride, as Keras requires), Keras's
    ``(h - 1) * stride + kernel - 2 * pad + output_padding``, where ``pad`` is
    0 for ``'valid'`` and ``kernel // 2`` for ``'same'``, the rows split
    between top and bottom as Keras splits them. ``dilation_rate > 1`` is not
    supported.

    Weights
    -------
    ``kernel`` stored as ``(in_channels, filters, kh, kw)`` and ``bias``
    ``(filters,)``; ``get_weights()``/``set_weights()`` use Keras's
    ``(kh, kw, filters, in_channels)``. Parameter counts equal Keras's.
    """

    _expects_images = True
    _cache_attrs = ("_x",)
    # Stored (in, filters, kh, kw); get_weights/set_weights use Keras's (kh, kw, filters, in).
    _keras_layouts = {"kernel": (lambda k: k.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1))}

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=(1, 1),
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
        if _params.pair(dilation_rate, "dilation_rate") != (1, 1):
            raise ValueError("convforge does not support Conv2DTranspose dilation_rate > 1")
        # numbers.Integral, not int: filters computed with NumPy (np.int64(2) ** i) are ints too.
        if isinstance(filters, (bool, np.bool_)) or not isinstance(filters, numbers.Integral) or filters < 1:
            raise ValueError(f"{type(self).__name__} filters must be a positive int; got {filters!r}")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"{type(self).__name__} padding must be 'valid' or 'same'; got {padding!r}")
        self.filters = int(filters)
        self.kernel_size = _params.pair(kernel_size, "kernel_size")
        self.strides = _params.pair(strides, "strides")
        self.padding = padding.lower()
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = _params.pair(output_padding, "output_padding", minimum=0)
            for axis, (op, stride) in enumerate(zip(self.output_padding, self.strides)):
                if op >= stride:
                    raise ValueError(
                        f"{type(self).__name__} output_padding must be less than strides on every axis (Keras's rule); "
                        f"got output_padding={self.output_padding}, strides={self.strides} (axis {axis})"
                    )
        self.data_format = resolve_data_format(data_format)
        set_weight_options(self, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                           bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer, activation_in_place=False)
        self._x = None

    def _check(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"Conv2DTranspose expects images (batch, height, width, channels); got {self._show(input_shape)}"
            )

    def build(self, input_shape):
        self._check(input_shape)
        kh, kw = self.kernel_size
        # Stored as the weight of the convolution this layer transposes: (in_channels, filters, kh, kw).
        # Read as OIHW its fans are Keras's for (kh, kw, filters, in): fan_in = kh*kw*filters.
        shape = (input_shape[0], self.filters, kh, kw)
        self.add_weight("kernel", shape, self.kernel_initializer, regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer)

    def _out_hw(self, h, w):
        if self.output_padding is not None:
            pad = (k // 2 if self.padding == "same" else 0 for k in self.kernel_size)
            return tuple((n - 1) * s + k - 2 * p + op for n, s, k, p, op in
                         zip((h, w), self.strides, self.kernel_size, pad, self.output_padding))
        if self.padding == "same":
            return h * self.strides[0], w * self.strides[1]
        # Keras's h * s + max(k - s, 0): the convolution this layer transposes reads h windows from
        # that many rows whichever of k and s is larger (its trailing s - k rows are skipped).
        (sh, sw), (kh, kw) = self.strides, self.kernel_size
        return (h - 1) * sh + max(kh, sh), (w - 1) * sw + max(kw, sw)

    def _compute_internal_output_shape(self, input_shape):
        self._check(input_shape)
        out_hw = self._out_hw(*input_shape[1:])
        if min(out_hw) < 1:
            raise ValueError(
                f"Conv2DTranspose: input {self._show(input_shape)} gives an empty output {out_hw} "
                f"(kernel_size={self.kernel_size}, padding={self.padding!r}, output_padding={self.output_padding})"
            )
        return (self.filters, *out_hw)

    def _pads(self, out_hw):
        """The padding of the convolution from the output (size out_hw) back to the input."""
        if self.output_padding is None:
            return self.padding  # 'valid' or 'same': conv2d's own rule on the output size gives Keras's split
        # Keras's split (keras/src/backend/common/backend_utils.py, its JAX and TensorFlow rule): of
        # the full transposed output ((h - 1) * s + k rows), k - 1 - left rows are cut at the top and
        # k - 1 - right at the bottom, where left + right = pad_len; the convolution back to the input
        # pads its input by those cuts. A negative bottom cut is rows no window reads (fewer than a
        # stride: the window count stays the input's), so that convolution pads 0 there.
        pads = []
        for k, op in zip(self.kernel_size, self.output_padding):
            if self.padding == "same":
                pad_len = k + k % 2 - 2 + op
                left = min(pad_len // 2 + pad_len % 2, k - 1)
            else:
                pad_len, left = 2 * (k - 1) + op, k - 1
            pads.append((k - 1 - left, max(k - 1 - (pad_len - left), 0)))
        return tuple(pads)

    def forward(self, x, training=False):
        n, _, h, w = x.shape
        out_hw = self._out_hw(h, w)
        kernel = self.params["kernel"]
        ghost = np.zeros((n, self.filters, *out_hw), dtype=x.dtype)  # bwd-data uses only its shape
        y, _, _ = F.conv2d_backward(
            x, ghost, kernel, self.strides, self._pads(out_hw), 1, need_input_grad=True, need_bias_grad=False
        )
        if self.use_bias:
            y += self.params["bias"].reshape(1, -1, 1, 1)
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._x = x
        return y if self.activation is None else self.activation.forward(y, training)

    def backward(self, dy):
        if self._x is None:
            raise self._missing_cache()
        if self.activation is not None:
            dy = self.activation.backward(dy)
        x, kernel = self._x, self.params["kernel"]
        pads = self._pads(dy.shape[2:])
        dy = np.ascontiguousarray(dy)
        # dL/dkernel: the weight gradient of the convolution dy -> x.
        _, dw, _ = F.conv2d_backward(x, dy, kernel, self.strides, pads, 1, need_input_grad=False, need_bias_grad=False)
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = dy.sum(axis=(0, 2, 3))
        if not self.input_grad_needed:
            return None
        return F.conv2d(dy, kernel, None, self.strides, pads, 1)

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
            "padding": self.padding,
            "output_padding": None if self.output_padding is None else list(self.output_padding),
            "data_format": self.data_format,
            **weight_options_config(self),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**weight_options_from_config(config))
