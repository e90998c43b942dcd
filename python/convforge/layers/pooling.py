"""MaxPooling2D (compiled kernel) and AveragePooling2D (NumPy), Keras semantics."""

from __future__ import annotations

import numpy as np

from .. import _params
from .. import functional as F
from .base import Layer, resolve_data_format

__all__ = ["AveragePooling2D", "AvgPool2D", "MaxPool2D", "MaxPooling2D"]


class _Pooling2D(Layer):
    """Shared shape logic: Keras's 'valid' and 'same' windows over NCHW images."""

    _expects_images = True

    def __init__(
        self,
        pool_size=(2, 2),
        strides=None,
        padding="valid",
        data_format=None,
        *,
        name=None,
        input_shape=None,
        trainable=True,
    ):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        kind = type(self).__name__
        self.pool_size = _params.pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _params.pair(strides, "strides")
        self._strides_arg = None if strides is None else self.strides
        self.padding = self._check_padding(padding)
        self.data_format = resolve_data_format(data_format)

    def _check_padding(self, padding):
        kind = type(self).__name__
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"{kind} padding must be 'valid' or 'same'; got {padding!r}")
        return padding.lower()

    def _explicit_padding(self):
        """``(ph, pw)`` of an explicit padding (MaxPooling2D's extension), else None."""
        return None if isinstance(self.padding, str) else _params.pair(self.padding, "padding", minimum=0)

    def _window_plan(self, input_shape):
        """Output size and Keras padding ``(top, bottom, left, right)`` for a (C, H, W) input."""
        kind = type(self).__name__
        if len(input_shape) != 3:
            raise ValueError(
                f"{kind} expects input of shape (batch, height, width, channels); got {self._show(input_shape)}"
            )
        out, pads = [], []
        explicit = self._explicit_padding()
        for axis, (size, k, s) in enumerate(zip(input_shape[1:], self.pool_size, self.strides)):
            if explicit is not None:
                before = after = explicit[axis]
                n = (size + 2 * before - k) // s + 1 if size + 2 * before >= k else 0
            elif self.padding == "valid":
                n = (size - k) // s + 1 if size >= k else 0
                before = after = 0
            else:
                n = -(-size // s)
                total = max((n - 1) * s + k - size, 0)
                before, after = total // 2, total - total // 2
            if n < 1:
                raise ValueError(
                    f"layer {self.name!r} ({kind}): pool_size {self.pool_size} does not fit in the input "
                    f"{self._show(input_shape)} with padding={self.padding!r}"
                )
            out.append(n)
            pads.extend((before, after))
        return tuple(out), tuple(pads)

    def _compute_internal_output_shape(self, input_shape):
        out_hw, _ = self._window_plan(input_shape)
        return (input_shape[0], *out_hw)

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": None if self._strides_arg is None else list(self._strides_arg),
            "padding": self.padding if isinstance(self.padding, str) else list(self._explicit_padding()),
            "data_format": self.data_format,
        }


class MaxPooling2D(_Pooling2D):
    """Max pooling, Keras's ``MaxPooling2D`` (alias ``MaxPool2D``).

    Parameters
    ----------
    pool_size : int or (int, int)
        Window size; default 2x2.
    strides : int or (int, int), optional
        Defaults to ``pool_size``.
    padding : 'valid', 'same', int or (int, int)
        ``'same'`` pads with -inf so that the output has ``ceil(size / stride)``
        rows and columns (extra odd padding at the bottom/right); a padded
        cell is never the maximum of a window holding a finite value.
        An int or ``(ph, pw)`` (convforge's extension; Keras takes only the
        two names) pads ``ph`` rows at the top and at the bottom and ``pw``
        columns at each side with -inf, as PyTorch's ``MaxPool2d(padding=...)``
        (at most half the window; ResNet's stem ``MaxPool2d(3, 2, padding=1)``
        is ``MaxPooling2D(3, 2, padding=1)``, which 'same' is not on even sizes).

    Runs on the compiled kernel, keeping each window's argmax for backward
    during training. ``'same'`` too: Keras's asymmetric padding is expressed
    as the kernel's symmetric padding plus ceil mode; where that cannot give
    Keras's windows (stride 1 with an even window, whose odd padding cannot
    be split) the input is first padded with -inf in NumPy, a copy.
    """

    _cache_attrs = ("_indices", "_in_shape", "_gate")

    # Set by Sequential when the layer before ends in a ReLU: backward then also applies that
    # ReLU's gradient (dx only where the input, the ReLU's output, is > 0) in its scatter, and
    # the ReLU passes its gradient through untouched.
    _gates_relu = False
    _gate = None

    def _check_padding(self, padding):
        if isinstance(padding, str):
            return super()._check_padding(padding)
        kind = type(self).__name__
        if isinstance(padding, (bool, np.bool_)) or not isinstance(padding, (int, np.integer, tuple, list)):
            raise ValueError(f"{kind} padding must be 'valid', 'same', an int or (int, int); got {padding!r}")
        pad = _params.pair(padding, "padding", minimum=0)
        if pad[0] > self.pool_size[0] // 2 or pad[1] > self.pool_size[1] // 2:
            raise ValueError(
                f"{kind} padding must be at most half the window (pool_size={self.pool_size}); got padding={padding!r}"
            )
        return int(padding) if isinstance(padding, (int, np.integer)) else pad

    def build(self, input_shape):
        out_hw, (top, bottom, left, right) = self._window_plan(input_shape)
        self._prepad = None
        self._kernel_pad, self._ceil = (0, 0), False
        if self._explicit_padding() is not None:
            self._kernel_pad = (top, left)  # symmetric: the kernel's own padding
        elif self.padding == "same" and (top, bottom, left, right) != (0, 0, 0, 0):
            try:
                *_, kernel_out = _params.pool_params(input_shape[1:], self.pool_size, self.strides, (top, left), True)
            except ValueError:
                kernel_out = None
            if kernel_out == out_hw:
                self._kernel_pad, self._ceil = (top, left), True
            else:
                self._prepad = (top, bottom, left, right)
        self._indices = self._in_shape = None

    def _build(self, input_shape, dtype):
        shape = super()._build(input_shape, dtype)
        if self._prepad is None:
            # Normalised once: the training path calls the kernel with these directly.
            self._pool_plan = _params.pool_params(
                input_shape[1:], self.pool_size, self.strides, self._kernel_pad, self._ceil
            )
        return shape

    def forward(self, x, training=False):
        if training and self._prepad is None and x.ndim == 4 and x.shape[1:] == self._internal_input_shape:
            kernel, stride, pad, out_hw = self._pool_plan
            shape = (x.shape[0], x.shape[1], *out_hw)
            y, self._indices = F.max_pool2d(
                x,
                kernel,
                stride,
                pad,
                return_indices=True,
                out=self._buffers("y", shape, x.dtype),
                out_indices=self._buffers("indices", shape, np.int64),
                _plan=self._pool_plan,
            )
            self._in_shape = x.shape
            self._gate = x if self._gates_relu else None
            return y
        if self._prepad is not None:
            top, bottom, left, right = self._prepad
            n, c, h, w = x.shape
            padded = np.full((n, c, h + top + bottom, w + left + right), -np.inf, dtype=x.dtype)
            padded[:, :, top : top + h, left : left + w] = x
            x_in = padded
        else:
            x_in = x
        if not training:  # leaves the training state alone: fit may be running in another thread
            if (self._prepad is None and isinstance(x, np.ndarray) and x.ndim == 4
                    and x.shape[1:] == self._internal_input_shape):
                return F.max_pool2d(x, *self._pool_plan[:3], _plan=self._pool_plan)  # parsed once, at build
            return F.max_pool2d(x_in, self.pool_size, self.strides, self._kernel_pad, self._ceil)
        self._gate = x if self._gates_relu else None
        if self._prepad is not None:
            self._orig_shape = x.shape
        y, self._indices = F.max_pool2d(
            x_in, self.pool_size, self.strides, self._kernel_pad, self._ceil, return_indices=True
        )
        self._in_shape = x_in.shape
        return y

    def backward(self, dy):
        if self._indices is None:
            raise self._missing_cache()
        gate, gated = self._gate, False
        if gate is not None and (gate.shape != self._in_shape or gate.dtype != dy.dtype or not gate.flags.c_contiguous):
            gate = None  # not what the kernel can take (a prepadded input): masked below instead
        if dy.dtype in (np.float32, np.float64) and dy.shape == self._indices.shape:
            dx = F.max_pool2d_backward(
                dy, self._indices, self._in_shape, out=self._buffers("dx", self._in_shape, dy.dtype), gate=gate
            )
            gated = gate is not None
        else:
            dx = F.max_pool2d_backward(dy, self._indices, self._in_shape)  # its error messages
        if self._prepad is not None:
            top, _, left, _ = self._prepad
            h, w = self._orig_shape[2:]
            dx = np.ascontiguousarray(dx[:, :, top : top + h, left : left + w])
        if self._gate is not None and not gated:
            dx = np.where(self._gate > 0, dx, dx.dtype.type(0))
        return dx


class AveragePooling2D(_Pooling2D):
    """Average pooling, Keras's ``AveragePooling2D`` (alias ``AvgPool2D``).

    With ``padding='same'`` each window averages only the real input cells it
    covers, as in Keras (padding is not counted). NumPy implementation: one
    strided add per window offset.
    """

    _cache_attrs = ("_in_shape",)

    def build(self, input_shape):
        out_hw, self._pads = self._window_plan(input_shape)
        top, bottom, left, right = self._pads
        h, w = input_shape[1:]
        # Real cells under each window: pool the all-ones image.
        ones = np.zeros((h + top + bottom, w + left + right))
        ones[top : top + h, left : left + w] = 1
        count = np.zeros(out_hw)
        for i, j in np.ndindex(*self.pool_size):
            count += ones[self._window(i, j, out_hw)]
        self._inv_count = 1.0 / count
        self._out_hw = out_hw
        self._in_shape = None

    def _window(self, i, j, out_hw):
        """Slices picking, for every output cell, the input cell at offset (i, j) of its window."""
        (sh, sw), (oh, ow) = self.strides, out_hw
        return slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)

    def _inv(self, dtype):
        return self._inv_count.astype(dtype, copy=False)

    def forward(self, x, training=False):
        top, bottom, left, right = self._pads
        n, c, h, w = x.shape
        if top or bottom or left or right:
            xp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=x.dtype)
            xp[:, :, top : top + h, left : left + w] = x
        else:
            xp = x
        y = np.zeros((n, c, *self._out_hw), dtype=x.dtype)
        for i, j in np.ndindex(*self.pool_size):
            y += xp[(..., *self._window(i, j, self._out_hw))]
        y *= self._inv(x.dtype)
        if training:
            self._in_shape = x.shape
        return y

    def backward(self, dy):
        if self._in_shape is None:
            raise self._missing_cache()
        top, bottom, left, right = self._pads
        n, c, h, w = self._in_shape
        g = dy * self._inv(dy.dtype)
        dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=dy.dtype)
        for i, j in np.ndindex(*self.pool_size):
            dxp[(..., *self._window(i, j, self._out_hw))] += g
        return np.ascontiguousarray(dxp[:, :, top : top + h, left : left + w])


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
