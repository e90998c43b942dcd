"""Normalisation and validation of the hyper-parameters shared by every op.

One place turns what a user may write (``stride=2``, ``padding='same'``,
``padding=((0, 1), (0, 1))``, ``kernel_size=(2, 2)``) into plain integers and
checks them, so that ``convforge.functional``, ``convforge.reference`` and the
layers all accept exactly the same things and fail with the same messages.

The result is a frozen plan (:class:`ConvPlan`, :class:`PoolPlan`), built once
per problem and passed down: a layer builds it when it is built, ``functional``
takes it as ``_plan=`` instead of normalising again, and the output size in it
is the one the output array is allocated with. The C++ bindings still check
every argument on their own (``_core`` must be safe alone); a test holds their
output size to the plan's.

The four vocabularies of one convolution, mapped once:

==========================  ============================  =========================
Keras ``Conv2D``            ``functional.conv2d``         C++ ``ConvShape`` (oneDNN)
==========================  ============================  =========================
``filters``                 ``w.shape[0]`` (K)            ``oc``
``kernel_size``             ``w.shape[2:]`` (R, S)        ``kh, kw``
``strides``                 ``stride``                    ``sh, sw``
``padding`` 'valid'/'same'  ``padding`` (any form)        ``pt, pb, pl, pr``
``dilation_rate``           ``dilation``                  ``dh, dw``
(input shape)               ``x.shape`` (N, C, H, W)      ``mb, ic, ih, iw``
(output shape)              ``ConvPlan.out_hw``           ``oh, ow``
``activation='relu'``       ``relu=True`` (fused)         ``relu``
==========================  ============================  =========================
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

# Larger values cannot describe a real tensor dimension and would overflow the
# 64-bit index arithmetic of the kernels once multiplied together.
MAX_PARAM = 2**31 - 1
# Most elements one array (input, output or the implicit im2col matrix) may have; the same
# bound as the kernels' (kMaxElements in csrc/common/shapes.cpp).
MAX_ELEMENTS = 2**50


def _check_int(value, name: str, minimum: int) -> int:
    # A plain int skips the numbers.Integral test (an ABC check: a third of a small conv2d
    # call's Python time); bool is an int subclass, but `type(True) is int` is False.
    if type(value) is not int:
        # bool is an int subclass; `stride=True` is a bug, not a stride of 1.
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > MAX_PARAM:
        raise ValueError(f"{name} must be <= {MAX_PARAM}, got {value}")
    return value


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """``int`` or ``(h, w)`` -> ``(h, w)`` of checked ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        return (_check_int(value[0], f"{name}[0]", minimum), _check_int(value[1], f"{name}[1]", minimum))
    return (_check_int(value, name, minimum),) * 2


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, pad_before: int, pad_after: int) -> int:
    """Output length of a convolution along one axis (may be < 1: the caller checks)."""
    span = dilation * (kernel - 1) + 1
    return (size + pad_before + pad_after - span) // stride + 1


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow/Keras 'same': out = ceil(size / stride), odd extra padding after."""
    out = -(-size // stride)
    span = dilation * (kernel - 1) + 1
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def conv_padding(padding, in_hw, kernel_hw, stride, dilation) -> tuple[int, int, int, int]:
    """Normalise a conv2d ``padding`` argument to ``(top, bottom, left, right)``.

    Accepted forms: ``int``, ``(ph, pw)``, ``((top, bottom), (left, right))``,
    ``'valid'`` and ``'same'`` (TensorFlow's rule, also for stride > 1).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            top, bottom = same_padding(in_hw[0], kernel_hw[0], stride[0], dilation[0])
            left, right = same_padding(in_hw[1], kernel_hw[1], stride[1], dilation[1])
            if max(top, bottom, left, right) > MAX_PARAM:
                raise ValueError(
                    f"padding='same' would need (top, bottom, left, right)={(top, bottom, left, right)}, more than "
                    f"{MAX_PARAM} on a side: the dilated kernel (dilation={dilation}) is far larger than the input"
                )
            return (top, bottom, left, right)
        raise ValueError(f"padding must be 'valid', 'same', an int or pairs of ints, got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
        (top, bottom), (left, right) = (pair(p, "padding", minimum=0) for p in padding)
        return (top, bottom, left, right)
    ph, pw = pair(padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


class ConvPlan(NamedTuple):
    """conv2d's normalised hyper-parameters and output size, for one input size."""

    stride: tuple  # (sh, sw)
    pads: tuple  # (top, bottom, left, right)
    dilation: tuple  # (dh, dw)
    out_hw: tuple  # (OH, OW)


class PoolPlan(NamedTuple):
    """max_pool2d's normalised hyper-parameters and output size, for one input size."""

    kernel: tuple
    stride: tuple
    pad: tuple  # (ph, pw), each side
    out_hw: tuple


def pool_output_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """PyTorch's max-pool output length, including its ceil_mode rule."""
    num = size + 2 * pad - kernel
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    # In ceil mode the last window must start inside the input or the left
    # padding, never entirely in the right padding.
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def pool_params(input_hw, kernel_size, stride, padding, ceil_mode):
    """Checked :class:`PoolPlan` ``(kernel, stride, pad, out_hw)`` for max_pool2d, PyTorch's rules."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    pad = pair(padding, "padding", minimum=0)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {type(ceil_mode).__name__}")
    for axis in range(2):
        if pad[axis] > kernel[axis] // 2:
            raise ValueError(
                f"padding must be at most half the kernel size (kernel_size={kernel}), got padding={pad}"
            )
    out_hw = tuple(pool_output_size(input_hw[a], kernel[a], stride[a], pad[a], bool(ceil_mode)) for a in range(2))
    if min(out_hw) < 1:
        raise ValueError(
            f"max_pool2d output would be {out_hw[0]}x{out_hw[1]} for an input of "
            f"{input_hw[0]}x{input_hw[1]} with kernel_size={kernel}, stride={stride}, padding={pad}; "
            "the input is too small for this window"
        )
    return PoolPlan(kernel, stride, pad, out_hw)


def conv_params(input_hw, kernel_hw, stride, padding, dilation):
    """Checked :class:`ConvPlan` ``(stride, (top, bottom, left, right), dilation, out_hw)`` for conv2d."""
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    pads = conv_padding(padding, input_hw, kernel_hw, stride, dilation)
    out_hw = (
        conv_output_size(input_hw[0], kernel_hw[0], stride[0], dilation[0], pads[0], pads[1]),
        conv_output_size(input_hw[1], kernel_hw[1], stride[1], dilation[1], pads[2], pads[3]),
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"conv2d output would be {out_hw[0]}x{out_hw[1]}: the kernel {kernel_hw[0]}x{kernel_hw[1]} "
            f"(dilation {dilation}) does not fit in the padded input {input_hw[0]}x{input_hw[1]} "
            f"with padding (top, bottom, left, right)={pads}"
        )
    return ConvPlan(stride, pads, dilation, out_hw)


def flops_conv2d(n: int, c: int, k: int, out_hw, kernel_hw) -> int:
    """Multiply-adds x 2 of one conv2d forward pass (the same for each backward pass)."""
    return 2 * n * k * c * kernel_hw[0] * kernel_hw[1] * math.prod(out_hw)
