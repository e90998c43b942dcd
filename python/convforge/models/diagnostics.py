"""Where a training batch first produces NaN or Inf (used by ``callbacks.TerminateOnNaN``)."""

from __future__ import annotations

import math

import numpy as np

from .. import random as _random

__all__ = ["locate_non_finite"]


def locate_non_finite(model, xb, yb) -> str:
    """Where the batch ``(xb, yb)`` (internal layout) first produces NaN/Inf: the input, a weight,
    a layer's output, the loss or a gradient; one sentence for the user."""
    with np.errstate(all="ignore"):
        return _locate(model, xb, yb)


def _locate(model, xb, yb) -> str:
        def bad(a):
            return not np.isfinite(a).all()

        if bad(xb):
            sample = int(np.argmax(~np.isfinite(xb).reshape(xb.shape[0], -1).all(axis=1)))
            return f"The input batch holds NaN or Inf (sample {sample} of the batch): check the training data."
        out = xb
        for layer in model.layers:
            for pname, p in layer.params.items():
                if bad(p):
                    return (
                        f"Weight {pname!r} of layer {layer.name!r} ({type(layer).__name__}) holds NaN or Inf: an "
                        "earlier update overflowed (its gradients were too large); lower the learning rate."
                    )
            new = layer.forward(out, training=False)
            if bad(new):
                peak = float(np.max(np.abs(out))) if out.size else 0.0
                return (
                    f"Layer {layer.name!r} ({type(layer).__name__}) output holds NaN or Inf although its input "
                    f"(largest |value| {peak:.3g}) and weights are finite."
                )
            out = new
        loss, _, _ = model._forward_loss(xb, yb, training=False, need_grad=False)
        if not math.isfinite(loss):
            return f"The loss ({model.loss.name}) is {loss} although the model output is finite: check the targets y."
        # The forward pass is finite in inference mode: look at training mode and the
        # gradients, without disturbing the random stream (dropout masks).
        state = _random.get_state()
        try:
            loss, _, dhead = model._forward_loss(xb, yb, training=True, need_grad=True)
            if not math.isfinite(loss):
                return f"The loss ({model.loss.name}) is {loss} only in training mode (dropout?)."
            model._backward(dhead)
            for layer, names in reversed(model._trainable_plan):
                for name, _ in names:
                    g = layer.grads.get(name)
                    if g is not None and bad(g):
                        return (
                            f"The gradient of weight {name!r} of layer {layer.name!r} ({type(layer).__name__}) "
                            "holds NaN or Inf."
                        )
        finally:
            _random.set_state(state)
            model._clear_caches()
        return "No NaN or Inf found when the batch was run again."

