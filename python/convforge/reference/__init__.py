"""Pure-NumPy reference implementations of every convforge op.

Two families with the same signatures as :mod:`convforge.functional`:

* :mod:`.direct` (``conv2d``, ``max_pool2d``, ...): float64 oracles written
  as close to the textbook formulas as vectorised NumPy allows. The test
  suite compares the C++ kernels against these.
* :mod:`.im2col` (``conv2d_im2col``, ...): the fast NumPy formulation
  (sliding windows + one matrix product), kept in the input's dtype; the
  NumPy baseline in the benchmarks.
"""

from .direct import (
    conv2d,
    conv2d_backward,
    dense,
    dense_backward,
    max_pool2d,
    max_pool2d_backward,
    relu,
    relu_backward,
)
from .channel_ops import (
    batch_norm,
    batch_norm_backward,
    batch_norm_inference,
    depthwise_conv2d,
    depthwise_conv2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    global_max_pool2d,
    global_max_pool2d_backward,
)
from .im2col import conv2d_backward_im2col, conv2d_im2col, max_pool2d_backward_im2col, max_pool2d_im2col

__all__ = [
    "conv2d",
    "conv2d_backward",
    "dense",
    "dense_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
    "conv2d_im2col",
    "conv2d_backward_im2col",
    "max_pool2d_im2col",
    "max_pool2d_backward_im2col",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_inference",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
    "depthwise_conv2d",
    "depthwise_conv2d_backward",
]
