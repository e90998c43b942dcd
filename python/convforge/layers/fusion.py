"""Which adjacent layers a model fuses, and the flags and objects that say so.

Training: a ReLU right before a MaxPooling2D -- the pool's backward applies
the ReLU's gradient in its scatter (its input is the ReLU's output), saving a
pass over the feature maps (:func:`fuse_relu_into_pool`). A ReLU right after a
BatchNormalization runs in the normalisation's kernels, forward (``max(y, 0)``
as it writes y) and backward (dy masked where the normalised value, recomputed
from x, was <= 0): the ReLU's own two passes are gone (:func:`bn_relu_fusable`;
the model marks the pair on its own steps, since the forward changes and a layer
may belong to several models). A ReLU right after an Add (a residual block's
tail) likewise: the sum is rectified as it is written and the Add's backward
applies the mask, one pass of the ReLU's forward saved.

Inference: a BatchNormalization right after a linear Conv2D is folded into the
conv's weights, ``w' = w * gamma / sqrt(var + eps)``, ``b' = (b - mean) *
gamma / sqrt(var + eps) + beta``, and a ReLU right after that runs inside the
conv kernel (:class:`FoldedConvBatchNorm`): one pass over the feature maps
instead of three, as inference engines do. A ReLU whose input nothing else
reads (the one after a residual Add) runs in place (:class:`InPlaceReLU`):
no new array, half the memory traffic.

Every fusion is valid only when each fused layer's output has no other
consumer -- the models decide that (fan-out 1 in the graph, not a model
output) and build the fused objects.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .activations import Activation, ReLU
from .conv import Conv2D
from .core import Dense
from .merging import Add, Average, Concatenate, Multiply, Subtract
from .normalization import BatchNormalization
from .pooling import MaxPooling2D

__all__ = [
    "FoldedConvBatchNorm",
    "InPlaceReLU",
    "ending_relu",
    "foldable",
    "bn_relu_fusable",
    "fuse_relu_into_pool",
    "reset_fusion",
]


def ending_relu(layer):
    """The ReLU a layer's output comes from (the layer itself, or its activation), or None."""
    relu = layer if isinstance(layer, ReLU) else getattr(layer, "activation", None)
    return relu if isinstance(relu, ReLU) and relu.plain else None


def reset_fusion(layer) -> None:
    """Undo any fusion decision on ``layer`` (done before a model plans its backward pass)."""
    if isinstance(layer, MaxPooling2D):
        layer._gates_relu = False
    relu = ending_relu(layer)
    if relu is not None:
        relu._masked_by_next = False


def fuse_relu_into_pool(before, pool) -> bool:
    """Fuse if ``before`` ends in a ReLU and ``pool`` is a MaxPooling2D that computes its input
    gradient; the caller guarantees that ``pool`` is the only consumer of ``before``'s output."""
    relu = ending_relu(before)
    if relu is None or type(pool) is not MaxPooling2D or not pool.input_grad_needed:
        return False
    pool._gates_relu = True
    relu._masked_by_next = True
    return True


def bn_relu_fusable(bn, relu) -> bool:
    """May ``bn`` -> ``relu`` train as one (``bn._forward_relu``, the ReLU passing x and dy
    through)? ``bn`` a BatchNormalization or an Add (a residual block's tail) and ``relu`` a plain
    ReLU layer, exact classes only (a subclass may compute something else); the caller
    guarantees that ``relu`` is the only consumer of ``bn``'s output."""
    return type(bn) in (BatchNormalization, Add) and is_plain_relu(relu)


def foldable(conv, bn, relu=None) -> bool:
    """May ``conv`` -> ``bn`` (-> ``relu``) run as one :class:`FoldedConvBatchNorm` at inference?
    Only the exact built-in classes: a subclass may compute something else."""
    if type(conv) is not Conv2D or conv.activation is not None or type(bn) is not BatchNormalization:
        return False
    if conv.groups != 1:  # the folded conv is one ungrouped convolution
        return False
    return relu is None or is_plain_relu(relu)


def is_plain_relu(layer) -> bool:
    """A ``ReLU()`` layer or an ``Activation('relu')``: ``max(x, 0)``, nothing else."""
    if type(layer) is Activation:
        layer = layer.activation
    return type(layer) is ReLU and layer.plain


class FoldedConvBatchNorm:
    """A Conv2D, the BatchNormalization after it and optionally a ReLU, as one conv at inference.

    The folded weights are computed at each call from the layers' current weights (a pass over
    the kernel, not the feature maps), so they are never stale after training or
    ``set_weights``. The per-channel scale and shift in float64, rounded once to the data's
    dtype, then the weights times the scale in that dtype: the compiled inference plan
    (csrc/plan/inference_plan.cpp, ``fold_batchnorm``) computes the same bits. The result
    agrees with the unfolded layers to rounding.
    """

    def __init__(self, conv, bn, relu=None):
        self.conv, self.bn, self.relu = conv, bn, relu

    def folded_weights(self, dtype):
        conv, p = self.conv, self.bn.params
        scale = 1.0 / np.sqrt(p["moving_variance"].astype(np.float64) + self.bn.epsilon)
        if "gamma" in p:
            scale = scale * p["gamma"]
        shift = -p["moving_mean"] * scale
        if "beta" in p:
            shift = shift + p["beta"]
        bias = conv.params.get("bias")
        if bias is not None:
            shift = shift + bias * scale
        kernel = conv.params["kernel"]
        w = kernel.astype(dtype, copy=False) * scale.astype(dtype).reshape(-1, 1, 1, 1)
        return w, shift.astype(dtype)

    def forward(self, x, training=False):
        if training:
            raise RuntimeError("a folded Conv2D + BatchNormalization runs at inference only")
        if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
            return self._unfolded(x)  # the layers' own checks and messages
        w, b = self.folded_weights(x.dtype)
        conv = self.conv
        return F.conv2d(x, w, b, conv.strides, conv.padding, conv.dilation_rate, relu=self.relu is not None)

    def _unfolded(self, x):
        y = self.bn.forward(self.conv.forward(x, False), False)
        return y if self.relu is None else self.relu.forward(y, False)


def returns_new_array(layer, n_inputs: int) -> bool:
    """Does ``layer`` at inference return an array of its own (never a view or one of its inputs, as
    Dropout, Flatten, Reshape or a one-input Add do)? Only these may have their output overwritten."""
    if type(layer) in (Conv2D, Dense, BatchNormalization):
        return True
    return type(layer) in (Add, Subtract, Multiply, Average, Concatenate) and n_inputs > 1


class InPlaceReLU:
    """A plain ReLU at inference, writing over its input (which nothing else reads: the model decides)."""

    def __init__(self, relu):
        self.relu = relu
        self.name = relu.name

    def forward(self, x, training=False):
        if training:
            raise RuntimeError("an in-place ReLU runs at inference only")
        if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous \
                or not x.flags.writeable:
            return self.relu.forward(x, False)
        return F.relu(x, out=x)
