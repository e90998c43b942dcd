"""Numerical gradient check of a whole model: does every layer's ``backward`` match its ``forward``?

>>> report = check_model_gradients(model, x[:4], y[:4])      # doctest: +SKIP
>>> print(report)                                             # doctest: +SKIP
weight                          shape            max abs err   max rel err  ok
conv2d/kernel                   (6, 1, 5, 5)        3.1e-11       2.4e-09   yes
...
>>> assert report.passed, report                              # doctest: +SKIP

For a sample of coordinates of every trained weight, the gradient from
backpropagation is compared with the central difference
``(L(w + eps) - L(w - eps)) / (2 eps)`` of the model's loss. The check runs
in float64 (a float32 model is converted for the duration and converted
back exactly), in training mode, with the same dropout masks for every
evaluation (convforge's random state is replayed, then restored, so the
check leaves training reproducibility untouched). Use it to test a custom
layer: put it in a small model and check.

Kinks
-----
ReLU, max-pooling and friends are not differentiable everywhere, and real
data lands on their kinks: a Fashion-MNIST background patch is exactly 0, so
with a zero bias the convolution's output there is exactly 0, ReLU's kink,
and moving the bias by ``+eps`` or ``-eps`` changes the loss by different
amounts. The central difference is then the mean of two one-sided
derivatives, which no backward pass computes. So where the central
difference disagrees, the check also measures the two one-sided derivatives
(second-order one-sided differences); if they differ from each other, the
coordinate sits on a kink, and it passes when the backpropagated value
equals one of them (the subgradient every framework uses, e.g. ReLU'(0) = 0).
A wrong backward still fails: it matches neither side. Such coordinates are
counted in ``kinks`` and shown in the report.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import losses as losses_module
from . import random as _random
from .models import Model

__all__ = ["GradCheckReport", "GradCheckResult", "check_model_gradients"]


@dataclass
class GradCheckResult:
    """The comparison for one weight."""

    key: str
    shape: tuple
    coords: list
    analytic: np.ndarray
    numeric: np.ndarray
    max_abs_error: float
    max_rel_error: float
    passed: bool
    #: Coordinates on a kink that matched a one-sided derivative (see "Kinks").
    kinks: int = 0


class GradCheckReport:
    """All weights' results; ``report.passed`` is True when every sampled coordinate agrees."""

    def __init__(self, results: list[GradCheckResult], rtol: float, atol: float):
        self.results = results
        self.rtol, self.atol = rtol, atol

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GradCheckResult]:
        return [r for r in self.results if not r.passed]

    def __str__(self) -> str:
        width = max([len("weight"), *(len(r.key) for r in self.results)]) + 2
        lines = [f"{'weight':<{width}}{'shape':<18}{'max abs err':>12}{'max rel err':>14}  ok"]
        for r in self.results:
            kinks = f" ({r.kinks} of {len(r.coords)} at a kink, one-sided)" if r.kinks else ""
            lines.append(
                f"{r.key:<{width}}{str(r.shape):<18}{r.max_abs_error:>12.2e}{r.max_rel_error:>14.2e}  "
                f"{'yes' if r.passed else 'NO'}{kinks}"
            )
        verdict = "passed" if self.passed else f"FAILED for {', '.join(r.key for r in self.failures)}"
        lines.append(
            f"gradient check {verdict} (|analytic - numeric| <= {self.atol:g} + {self.rtol:g} * max(|a|, |n|))"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<GradCheckReport passed={self.passed} weights={len(self.results)}>"


def _layers_of(model) -> list:
    """Every layer of ``model``, those of the models nested in it (one entry of ``model.layers``
    each) included."""
    return [layer for entry in model.layers
            for layer in (_layers_of(entry) if isinstance(entry, Model) else [entry])]


def check_model_gradients(
    model,
    x,
    y,
    *,
    loss=None,
    num_coords: int = 10,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    seed: int = 0,
    training: bool = True,
) -> GradCheckReport:
    """Compare backpropagated and central-difference gradients of the model's loss.

    Parameters
    ----------
    model : Sequential or a functional Model
        Compiled (its loss is used, with its loss weights for several outputs), or pass ``loss``
        (then used for every output).
    x, y : arrays
        A small batch, in the same form ``fit`` takes (lists or dicts for several inputs/outputs).
    loss : str or Loss, optional
        Overrides the compiled loss.
    num_coords : int
        Coordinates sampled per weight (all of them for smaller weights).
    eps : float
        Finite-difference step.
    rtol, atol : float
        A coordinate passes if ``|a - n| <= atol + rtol * max(|a|, |n|)``.
    seed : int
        Chooses the coordinates (a private generator; convforge's is untouched).
    training : bool
        True: the training-mode function (dropout on, BatchNormalization on the batch's
        statistics). False: the inference one, the function ``predict`` computes (BatchNormalization
        on its moving statistics; Dropout, the noise and the augmentation layers the identity), as
        a model called with ``training=False`` trains (Keras's fine-tuning recipe; RandomCrop its
        resize). A layer of your own runs ``forward(x, training=True)`` either way (its backward
        needs what that keeps).

    Returns
    -------
    GradCheckReport
    """
    if not callable(getattr(model, "loss_and_gradients", None)):
        raise TypeError(f"check_model_gradients checks a convforge model (Sequential or Model); got {model!r}")
    if isinstance(num_coords, (bool, np.bool_)) or not isinstance(num_coords, numbers.Integral) or num_coords < 1:
        raise ValueError(f"num_coords must be a positive int (coordinates checked per weight); got {num_coords!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False; got {training!r}")
    for name, value, low in (("eps", eps, "> 0"), ("rtol", rtol, ">= 0"), ("atol", atol, ">= 0")):
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or (value <= 0 if low == "> 0" else value < 0)
        ):
            raise ValueError(f"{name} must be a finite number {low}; got {value!r}")
    saved_loss = model.loss
    if loss is not None:
        model.loss = losses_module.get(loss)
    if model.loss is None:
        raise ValueError("check_model_gradients needs a loss: compile the model or pass loss=")
    if not model.built and np.ndim(x) >= 2:
        model.build((None, *np.shape(x)[1:]))  # initialised in the model's own dtype, then copied to float64
    original_dtype = model.dtype
    outer_state = _random.get_state()
    # Layers drawing from generators of their own (an augmentation layer given seed=) replay them
    # too: every evaluation must see the same draws.
    own = [g for layer in _layers_of(model) for g in layer.random_generators()]
    outer_own = [g.bit_generator.state for g in own]
    # Training-mode passes move BatchNormalization's moving statistics (hundreds of them here):
    # every weight, the non-trainable ones included, is put back as it was.
    saved_weights = [np.array(w, copy=True) for w in model.get_weights()] if model.built else None
    model.astype("float64")
    try:
        state = _random.get_state()

        def run(need_grad: bool):
            _random.set_state(state)  # identical dropout masks at every evaluation
            for g, g_state in zip(own, outer_own):
                g.bit_generator.state = g_state
            return model.loss_and_gradients(x, y, training=training, need_grad=need_grad)

        _, gradients = run(True)
        analytic = {key: g.copy() for key, _, g in gradients}
        pick = np.random.default_rng(seed)
        results = []
        for key, w, _ in gradients:
            count = min(int(num_coords), w.size)
            flat = np.sort(pick.choice(w.size, size=count, replace=False))
            numeric = np.empty(count)
            a = analytic[key].reshape(-1)[flat]
            kinks = 0

            def loss_at(i, value, w=w):
                old = w[i]
                w[i] = value
                try:
                    return run(False)[0]
                finally:
                    w[i] = old

            def agrees(x, y):
                return abs(x - y) <= atol + rtol * max(abs(x), abs(y))

            for j, f in enumerate(flat):
                i = np.unravel_index(f, w.shape)
                old = float(w[i])
                plus, minus = loss_at(i, old + eps), loss_at(i, old - eps)
                numeric[j] = (plus - minus) / (2 * eps)
                if agrees(a[j], numeric[j]):
                    continue
                # A kink? Second-order one-sided derivatives from each side.
                center = loss_at(i, old)
                right = (-3 * center + 4 * plus - loss_at(i, old + 2 * eps)) / (2 * eps)
                left = (3 * center - 4 * minus + loss_at(i, old - 2 * eps)) / (2 * eps)
                if not agrees(left, right):
                    for side in (left, right):
                        if agrees(a[j], side):
                            numeric[j] = side
                            kinks += 1
                            break
            err = np.abs(a - numeric)
            scale = np.maximum(np.abs(a), np.abs(numeric))
            results.append(
                GradCheckResult(
                    key=key,
                    shape=w.shape,
                    coords=[tuple(int(c) for c in np.unravel_index(f, w.shape)) for f in flat],
                    analytic=a,
                    numeric=numeric,
                    max_abs_error=float(err.max()),
                    max_rel_error=float((err / np.maximum(scale, 1e-300)).max()),
                    passed=bool(np.all(err <= atol + rtol * scale)),
                    kinks=kinks,
                )
            )
    finally:
        model.loss = saved_loss
        model.astype(original_dtype)  # float32 -> float64 -> float32 is exact
        if saved_weights is not None:
            model.set_weights(saved_weights)
        _random.set_state(outer_state)
        for g, g_state in zip(own, outer_own):
            g.bit_generator.state = g_state
    return GradCheckReport(results, rtol, atol)
