"""Activation functions by Keras's names: ``convforge.activations.relu(x)``, ``activation=activations.gelu``.

Each is a NumPy function of an array (any layout; ``softmax`` works on the
last axis, as Keras's default). Passed as ``activation=`` to a layer it
selects the layer's built-in activation of the same name (with its analytic
backward), so only the defaults of the extra arguments are used there; for
other settings use the layer (``layers.LeakyReLU(negative_slope=0.1)``).
"""

from __future__ import annotations

import numpy as np

from .layers import activations as _layers

__all__ = [
    "celu",
    "elu",
    "exponential",
    "gelu",
    "get",
    "hard_shrink",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "linear",
    "log_sigmoid",
    "log_softmax",
    "mish",
    "relu",
    "relu6",
    "selu",
    "serialize",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "soft_shrink",
    "softsign",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "swish",
    "tanh",
    "tanh_shrink",
]


def _named(name):
    def mark(fn):
        fn._convforge_activation = name
        return fn

    return mark


def _run(layer, x):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    return layer.forward(x, training=False)


@_named("relu")
def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """``max(x, 0)``; Keras's ``negative_slope``, ``max_value`` and ``threshold`` as
    :class:`convforge.layers.ReLU` takes them."""
    return _run(_layers.ReLU(max_value, negative_slope, threshold), x)


@_named("relu6")
def relu6(x):
    """``min(max(x, 0), 6)``."""
    return _run(_layers.ReLU(6.0), x)


@_named("leaky_relu")
def leaky_relu(x, negative_slope=0.2):
    """``x`` for ``x > 0``, else ``negative_slope * x``."""
    return _run(_layers.LeakyReLU(negative_slope), x)


@_named("elu")
def elu(x, alpha=1.0):
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    return _run(_layers.ELU(alpha), x)


@_named("gelu")
def gelu(x, approximate=False):
    """``x * Phi(x)`` (exact erf form unless ``approximate``)."""
    return _run(_layers.GELU(approximate), x)


@_named("swish")
def swish(x):
    """``x * sigmoid(x)``."""
    return _run(_layers.Swish(), x)


@_named("silu")
def silu(x):
    """Same as :func:`swish`."""
    return swish(x)


@_named("softplus")
def softplus(x):
    """``log(1 + exp(x))``."""
    return _run(_layers.Softplus(), x)


@_named("sigmoid")
def sigmoid(x):
    """``1 / (1 + exp(-x))``."""
    return _run(_layers.Sigmoid(), x)


@_named("tanh")
def tanh(x):
    """Hyperbolic tangent."""
    return np.tanh(x)


@_named("softmax")
def softmax(x, axis=-1):
    """Softmax along ``axis`` (default the last, as Keras)."""
    x = np.asarray(x, dtype=np.result_type(np.asarray(x).dtype, np.float32))
    y = np.exp(x - x.max(axis=axis, keepdims=True))
    return y / y.sum(axis=axis, keepdims=True)


@_named("log_softmax")
def log_softmax(x, axis=-1):
    """``log(softmax(x))`` along ``axis`` (default the last, as Keras), without overflow."""
    x = np.asarray(x, dtype=np.result_type(np.asarray(x).dtype, np.float32))
    y = x - x.max(axis=axis, keepdims=True)
    return y - np.log(np.exp(y).sum(axis=axis, keepdims=True))


@_named("selu")
def selu(x):
    """SELU: ``scale * elu(x, alpha)`` with Keras's constants."""
    return _run(_layers.SELU(), x)


@_named("hard_sigmoid")
def hard_sigmoid(x):
    """``relu6(x + 3) / 6`` (Keras 3's)."""
    return _run(_layers.HardSigmoid(), x)


@_named("hard_silu")
def hard_silu(x):
    """``x * relu6(x + 3) / 6``."""
    return _run(_layers.HardSiLU(), x)


@_named("hard_swish")
def hard_swish(x):
    """Same as :func:`hard_silu`."""
    return hard_silu(x)


@_named("mish")
def mish(x):
    """``x * tanh(softplus(x))``."""
    return _run(_layers.Mish(), x)


@_named("softsign")
def softsign(x):
    """``x / (1 + |x|)``."""
    return _run(_layers.Softsign(), x)


@_named("exponential")
def exponential(x):
    """``exp(x)``."""
    return _run(_layers.Exponential(), x)


@_named("celu")
def celu(x, alpha=1.0):
    """``x`` for ``x > 0``, ``alpha * (exp(x / alpha) - 1)`` elsewhere."""
    return _run(_layers.CELU(alpha), x)


@_named("hard_tanh")
def hard_tanh(x):
    """``clip(x, -1, 1)``."""
    return _run(_layers.HardTanh(), x)


@_named("hard_shrink")
def hard_shrink(x, threshold=0.5):
    """``x`` where ``|x| > threshold``, else 0."""
    return _run(_layers.HardShrink(threshold), x)


@_named("soft_shrink")
def soft_shrink(x, threshold=0.5):
    """``x`` moved ``threshold`` towards 0, and 0 within ``threshold`` of it."""
    return _run(_layers.SoftShrink(threshold), x)


@_named("tanh_shrink")
def tanh_shrink(x):
    """``x - tanh(x)``."""
    return _run(_layers.TanhShrink(), x)


@_named("log_sigmoid")
def log_sigmoid(x):
    """``log(sigmoid(x))``, without overflow."""
    return _run(_layers.LogSigmoid(), x)


@_named("squareplus")
def squareplus(x, b=4):
    """``(x + sqrt(x**2 + b)) / 2``."""
    return _run(_layers.Squareplus(b), x)


@_named("sparse_plus")
def sparse_plus(x):
    """0 up to -1, ``(x + 1)**2 / 4`` between -1 and 1, ``x`` from 1."""
    return _run(_layers.SparsePlus(), x)


@_named("sparse_sigmoid")
def sparse_sigmoid(x):
    """0 up to -1, ``(x + 1) / 2`` between, 1 from 1."""
    return _run(_layers.SparseSigmoid(), x)


@_named("linear")
def linear(x):
    """The identity."""
    return np.asarray(x)


def get(identifier):
    """The function for a name (``'relu'``) or a function of this module; None gives ``linear``."""
    if identifier is None:
        return linear
    if callable(identifier) and hasattr(identifier, "_convforge_activation"):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _FUNCTIONS:
        return _FUNCTIONS[identifier.lower()]
    raise ValueError(f"unknown activation {identifier!r}; convforge has {sorted(_FUNCTIONS)}")


def serialize(fn) -> str:
    """The name of an activation function of this module."""
    return get(fn)._convforge_activation


_FUNCTIONS = {
    fn._convforge_activation: fn
    for fn in (relu, leaky_relu, elu, gelu, swish, silu, softplus, sigmoid, tanh, softmax, log_softmax, selu,
               hard_sigmoid, hard_silu, hard_swish, mish, softsign, exponential, celu, hard_tanh, hard_shrink, soft_shrink,
               tanh_shrink, log_sigmoid, squareplus, sparse_plus, sparse_sigmoid, linear)
}


from . import _unsupported  # noqa: E402

# A Keras name this module lacks says so, and what to use (Keras's other namespaces do too).
__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())
