"""Activation layers: ReLU, Tanh, Sigmoid, Softmax, and ``Activation(name)``.

They are layers in their own right (``layers.ReLU()``) and also what the
``activation='relu'`` argument of Conv2D and Dense creates. In that second
role they work in place on the freshly computed pre-activation, which no one
else holds, so ``Conv2D(..., activation='relu')`` costs no extra array.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .base import Layer

__all__ = ["Activation", "ReLU", "Sigmoid", "Softmax", "Tanh", "get", "serialize"]


class _ActivationLayer(Layer):
    """An elementwise (or per-row) function without weights."""

    # Name used by the activation='...' argument and in saved configs.
    activation_name = ""
    _cache_attrs = ("_y",)

    def __init__(self, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        # In place only when embedded in Conv2D/Dense (see module docstring): a standalone
        # activation layer must not overwrite its input, which the layer before may keep.
        self._inplace = False
        self._y = None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _output(self, y, training=False):
        """Return ``y`` as this activation's output, kept for the backward when training. Conv2D
        calls it with a ``y`` its kernel already applied the ReLU to (the fused output store).
        Inference leaves the kept output alone: fit may be running in another thread."""
        if training:
            self._y = y
        return y

    def _output_of(self, x, y, training=False):
        """As ``_output``, for a ``y`` computed aside: in place, it is written back into ``x``."""
        if self._inplace:
            x[...] = y
            y = x
        return self._output(y, training)

    def backward(self, dy):
        if self._y is None:
            raise self._missing_cache()
        return self._grad(dy, self._y)


class ReLU(_ActivationLayer):
    """``max(x, 0)``, on the compiled kernel (in place inside Conv2D/Dense)."""

    activation_name = "relu"

    def forward(self, x, training=False):
        if self._inplace and training and x.flags.c_contiguous:
            y = F.relu(x, out=x)  # the Conv2D/Dense output it belongs to
        else:
            y = F.relu(x, out=x) if self._inplace else F.relu(x)
        return self._output(y, training)

    # Set by Sequential when the next layer is a MaxPooling2D that applies this gradient
    # itself (see MaxPooling2D._gates_relu): dy arrives already masked.
    _masked_by_next = False

    def _grad(self, dy, y):
        if self._masked_by_next:
            return dy
        # y > 0 exactly where x > 0, so the output serves for the mask.
        if dy.dtype != y.dtype or dy.shape != y.shape:
            return F.relu_backward(dy, y)  # its error messages
        return F.relu_backward(dy, y, out=self._buffers("dx", y.shape, y.dtype))


class Tanh(_ActivationLayer):
    """Hyperbolic tangent."""

    activation_name = "tanh"

    def forward(self, x, training=False):
        return self._output(np.tanh(x, out=x) if self._inplace else np.tanh(x), training)

    def _grad(self, dy, y):
        return dy * (1 - y * y)


class Sigmoid(_ActivationLayer):
    """Logistic function ``1 / (1 + exp(-x))``, without overflow for large ``|x|``."""

    activation_name = "sigmoid"

    def forward(self, x, training=False):
        # exp(-|x|) is in (0, 1]: no overflow warning for x = -1000.
        z = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)
        return self._output_of(x, y, training)

    def _grad(self, dy, y):
        return dy * y * (1 - y)


class Softmax(_ActivationLayer):
    """Softmax over the class axis: each row of a ``(batch, classes)`` output sums to 1.

    Followed by ``loss='sparse_categorical_crossentropy'`` or
    ``'categorical_crossentropy'``, a model trains on the logits instead
    (log-sum-exp cross-entropy, gradient ``(p - y) / N``), which stays finite
    for any logits. ``predict`` still returns probabilities.

    Parameters
    ----------
    axis : int
        Only ``-1`` (the last axis, channels for images at the API).
    """

    activation_name = "softmax"

    def __init__(self, axis=-1, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if axis != -1:
            raise ValueError(f"Softmax supports only axis=-1 (the class/channel axis); got axis={axis!r}")
        self.axis = -1

    def forward(self, x, training=False):
        # Channels are axis 1 of NCHW images, the last axis of (batch, classes).
        axis = 1 if x.ndim == 4 else -1
        y = x - x.max(axis=axis, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        return self._output_of(x, y, training)

    def _grad(self, dy, y):
        axis = 1 if y.ndim == 4 else -1
        return y * (dy - (dy * y).sum(axis=axis, keepdims=True))

    def _ends_in_softmax(self):
        return True

    # The fused path: the model asks for logits and sends back dL/dlogits.
    def _forward_logits(self, x, training=False):
        return x

    def _backward_logits(self, dz):
        return dz

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


_BY_NAME = {cls.activation_name: cls for cls in (ReLU, Tanh, Sigmoid, Softmax)}
_NAMES = ("relu", "tanh", "sigmoid", "softmax", "linear", None)


def get(identifier, argument: str = "activation") -> _ActivationLayer | None:
    """A fresh activation for ``activation=...``: a name, an activation layer, or None/'linear'."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        key = identifier.lower()
        if key == "linear":
            return None
        if key in _BY_NAME:
            return _BY_NAME[key]()
        raise ValueError(f"{argument} must be one of {list(_NAMES)}; got {identifier!r}")
    if isinstance(identifier, _ActivationLayer):
        return type(identifier)()
    raise TypeError(
        f"{argument} must be one of {list(_NAMES)} or an activation layer such as layers.ReLU(); "
        f"got {type(identifier).__name__} {identifier!r}"
    )


def serialize(activation) -> str | None:
    return None if activation is None else activation.activation_name


class Activation(Layer):
    """Applies an activation by name: ``Activation('relu')``, as in Keras."""

    _cache_attrs = ()

    def __init__(self, activation, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.activation = get(activation)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        return x if self.activation is None else self.activation.forward(x, training)

    def backward(self, dy):
        return dy if self.activation is None else self.activation.backward(dy)

    def _clear_cache(self):
        if self.activation is not None:
            self.activation._clear_cache()

    def _ends_in_softmax(self):
        return isinstance(self.activation, Softmax)

    def _forward_logits(self, x, training=False):
        return x

    def _backward_logits(self, dz):
        return dz

    def get_config(self):
        return {**super().get_config(), "activation": serialize(self.activation) or "linear"}
