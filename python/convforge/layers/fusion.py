"""Which adjacent layers a model fuses in the backward pass, and the flags that say so.

A ReLU right before a MaxPooling2D: the pool's backward applies the ReLU's
gradient in its scatter (its input is the ReLU's output), saving a pass over
the feature maps. Valid only when the pool is the only consumer of the ReLU's
output -- the models decide that (a chain in Sequential, fan-out 1 in a graph)
and call :func:`fuse_relu_into_pool`.
"""

from __future__ import annotations

from .activations import ReLU
from .pooling import MaxPooling2D

__all__ = ["ending_relu", "fuse_relu_into_pool", "reset_fusion"]


def ending_relu(layer):
    """The ReLU a layer's output comes from (the layer itself, or its activation), or None."""
    relu = layer if isinstance(layer, ReLU) else getattr(layer, "activation", None)
    return relu if isinstance(relu, ReLU) else None


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
