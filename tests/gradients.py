"""Numerical gradients for the tests (float64 central differences)."""

from __future__ import annotations

import numpy as np


def numerical_grad(f, a, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every element of ``a``.

    ``a`` is perturbed in place and restored. To check a backward pass against an upstream
    gradient ``g``, contract first: ``numerical_grad(lambda: np.sum(forward() * g), a)``.
    """
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        f_plus = f()
        a[i] = old - eps
        f_minus = f()
        a[i] = old
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad
