"""The layers' training-mode calls to the compiled kernels, writing into arrays reused from batch to batch.

Why not ``convforge.functional``: it allocates every result. A LeNet-5
training step at batch 64 produces about 6 MB of outputs, indices and
gradients and frees them again; glibc hands such blocks back to the
operating system, and the next step faults the pages in again (with TLB
shootdowns across the OpenMP threads). That was about 1 ms of a 2.5 ms step
on 2 cores. The bindings under ``functional`` (``convforge._core``) take
``out=`` arrays and check them (dtype, shape, contiguity, alignment), so the
layers keep one set of buffers per batch shape and pass them in.

Hyper-parameters are normalised once, when a layer is built, by
``convforge._params`` -- the same code ``functional`` uses -- so both paths
accept and compute exactly the same things. Inference (``training=False``)
goes through ``functional`` and returns fresh arrays.

This is the one place in the layers that knows the private ``_core``
signatures; if ``functional`` grows ``out=`` arguments these wrappers should
call it instead.
"""

from __future__ import annotations

import numpy as np

from .. import _core

__all__ = [
    "Buffers",
    "conv2d",
    "conv2d_backward_data",
    "conv2d_backward_weights",
    "dense",
    "dense_backward_data",
    "dense_backward_weights",
    "max_pool2d",
    "max_pool2d_backward",
    "relu_backward",
    "relu_inplace",
]


class Buffers:
    """Arrays a layer reuses from one training step to the next, by name and shape.

    An array handed out stays the layer's: it is overwritten by the layer's
    next training-mode call. Two shapes per name are typical (full batches
    and the last, smaller one).
    """

    __slots__ = ("_arrays",)

    def __init__(self):
        self._arrays: dict = {}

    def __call__(self, name: str, shape: tuple, dtype) -> np.ndarray:
        key = (name, shape, np.dtype(dtype))  # np.float32 and np.dtype('float32') hash differently
        a = self._arrays.get(key)
        if a is None:
            a = self._arrays[key] = np.empty(shape, dtype=dtype)
        return a

    def clear(self) -> None:
        self._arrays.clear()


def _c(a: np.ndarray) -> np.ndarray:
    # Arrays from convforge's own layers are contiguous already (no copy); a custom layer's
    # output may be a strided view.
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def conv2d(x, w, b, stride, pads, dilation, out, relu=False):
    """``conv2d`` into ``out``, then ``max(y, 0)`` in the same pass if ``relu``; ``pads`` is
    ``(top, bottom, left, right)``."""
    return _core.conv2d_fwd(_c(x), w, b, stride, pads, dilation, out, relu)


def conv2d_backward_data(dy, w, x_shape, stride, pads, dilation, out):
    return _core.conv2d_bwd_data(_c(dy), w, x_shape, stride, pads, dilation, out)


def conv2d_backward_weights(dy, x, w_shape, stride, pads, dilation, need_bias, out_w, out_b):
    return _core.conv2d_bwd_weights(_c(dy), _c(x), w_shape, stride, pads, dilation, need_bias, out_w, out_b)


def dense(x, w, b, out):
    """``x @ w + b`` into ``out``."""
    return _core.dense_fwd(_c(x), _c(w), None if b is None else _c(b), out)


def dense_backward_data(dy, w, out):
    return _core.dense_bwd_data(_c(dy), _c(w), out)


def dense_backward_weights(dy, x, need_bias, out_w, out_b):
    return _core.dense_bwd_weights(_c(dy), _c(x), need_bias, out_w, out_b)


def max_pool2d(x, kernel, stride, pad, out_hw, out, out_indices):
    """Max-pooling with argmax into ``out`` / ``out_indices`` (int64)."""
    return _core.maxpool2d_fwd(_c(x), kernel, stride, pad, out_hw, True, out, out_indices)


def max_pool2d_backward(dy, indices, x_shape, out, gate=None):
    """With ``gate`` (the pool's input, a ReLU's output): only where ``gate > 0``, i.e. that
    ReLU's backward in the same pass."""
    return _core.maxpool2d_bwd(_c(dy), indices, x_shape, out, gate)


def relu_inplace(x):
    """``max(x, 0)`` in place, for an array the caller owns (contiguous)."""
    return _core.relu_fwd(x, x)


def relu_backward(dy, y, out):
    """``dy`` where ``y > 0``, else 0, into ``out``."""
    return _core.relu_bwd(_c(dy), y, out)
