"""Weight penalties, Keras's ``keras.regularizers``: ``Dense(64, kernel_regularizer=regularizers.l2(1e-4))``.

A regulariser adds ``penalty(w)`` to the training loss (the ``loss`` that
``fit`` reports includes it, as in Keras; ``evaluate`` too) and its gradient
to the weight's gradient. Formulas are Keras's::

    L1(l1)      l1 * sum(|w|)              gradient l1 * sign(w)   (0 at w = 0)
    L2(l2)      l2 * sum(w ** 2)           gradient 2 * l2 * w
    L1L2(l1, l2) the sum of both

Note Keras's ``l2`` has no factor 1/2: ``l2(0.01)`` is ``0.01 * sum(w**2)``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["L1", "L1L2", "L2", "Regularizer", "get", "l1", "l1_l2", "l2", "serialize"]


def _factor(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    return value


class Regularizer:
    """Base class: ``penalty(w) -> float`` and ``gradient(w) -> array``; ``reg(w)`` is the penalty."""

    def __call__(self, w) -> float:
        return self.penalty(np.asarray(w))

    def penalty(self, w: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def add_gradient(self, w: np.ndarray, grad: np.ndarray) -> None:
        """``grad += d penalty / d w``, in place."""
        raise NotImplementedError  # pragma: no cover - abstract

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w ** 2)``; Keras's defaults are 0.0 for both."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def penalty(self, w):
        total = 0.0
        if self.l1:
            total += self.l1 * float(np.abs(w).sum())
        if self.l2:
            total += self.l2 * float(np.square(w).sum())
        return total

    def add_gradient(self, w, grad):
        if self.l1:
            grad += (self.l1 * np.sign(w)).astype(grad.dtype, copy=False)
        if self.l2:
            grad += (2 * self.l2 * w).astype(grad.dtype, copy=False)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """``l1 * sum(|w|)``; Keras's default ``l1=0.01``."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """``l2 * sum(w ** 2)``; Keras's default ``l2=0.01``."""

    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


def l1(l1=0.01) -> L1:  # noqa: E741 - Keras's name
    """Keras's ``regularizers.l1``."""
    return L1(l1)


def l2(l2=0.01) -> L2:
    """Keras's ``regularizers.l2``."""
    return L2(l2)


def l1_l2(l1=0.01, l2=0.01) -> L1L2:  # noqa: E741
    """Keras's ``regularizers.l1_l2`` (both default 0.01, unlike the ``L1L2`` class)."""
    return L1L2(l1, l2)


_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier, argument: str = "regularizer") -> Regularizer | None:
    """None, a Regularizer, a name (``'l2'``: default factor) or a ``{'class_name', 'config'}`` dict."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_NAME:
        return _BY_NAME[identifier["class_name"]].from_config(identifier.get("config", {}))
    kind = type(identifier)
    if kind.__module__.split(".")[0] == "keras":
        same = f"convforge.regularizers.{kind.__name__}" if kind.__name__ in _BY_NAME else "convforge.regularizers.L2"
        raise TypeError(
            f"{argument} {identifier!r} is Keras's {kind.__name__}, not a convforge regularizer: use {same}(...) "
            "(convforge computes its gradient itself)"
        )
    if callable(identifier):
        raise TypeError(
            f"{argument} {identifier!r} is a plain function: convforge has no automatic differentiation, so a "
            "custom regularizer must subclass convforge.regularizers.Regularizer (penalty and add_gradient)"
        )
    raise ValueError(f"{argument} must be None, 'l1', 'l2', 'l1_l2' or a Regularizer such as l2(1e-4); got {identifier!r}")


def serialize(regularizer) -> dict | None:
    if regularizer is None:
        return None
    if type(regularizer) in (L1, L2, L1L2):
        return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}
    return None  # a user class cannot be rebuilt from a file: saved as none, as user initialisers


from . import _unsupported  # noqa: E402

# A Keras name this module lacks says so, and what to use (Keras's other namespaces do too).
__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())
