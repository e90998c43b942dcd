"""Activation layers: ReLU, Tanh, Sigmoid, Softmax, LeakyReLU, ELU, Softplus, Swish (SiLU), GELU, and ``Activation(name)``.

They are layers in their own right (``layers.ReLU()``) and also what the
``activation='relu'`` argument of Conv2D and Dense creates. In that second
role they work in place on the freshly computed pre-activation, which no one
else holds, so ``Conv2D(..., activation='relu')`` costs no extra array.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import functional as F
from .. import regularizers
from . import initializers
from .base import FeatureOrdered, Layer, display_shape, internal_axis, snake_case
from .normalization import refuse_unsupported

__all__ = [
    "ELU",
    "GELU",
    "Activation",
    "LeakyReLU",
    "PReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Swish",
    "Tanh",
    "get",
    "serialize",
]


class _ActivationLayer(Layer):
    """An elementwise (or per-row) function without weights."""

    _keeps_feature_order = True

    # Name used by the activation='...' argument and in saved configs.
    activation_name = ""
    _cache_attrs = ("_y",)

    def __init__(self, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        # In place only when embedded in Conv2D/Dense (see module docstring): a standalone
        # activation layer must not overwrite its input, which the layer before may keep.
        self._inplace = False
        self._y = None

    @property
    def __name__(self) -> str:
        """The function's name, as Keras's ``layer.activation.__name__`` gives it (``'relu'``):
        code that prints a model's activations reads it (the class keeps its own ``__name__``)."""
        if type(self) is Swish:  # Keras 3's swish is its silu function
            return "silu"
        if type(self) is ReLU and (self.max_value, self.negative_slope, self.threshold) == (6.0, 0.0, 0.0):
            return "relu6"
        return self.activation_name or snake_case(type(self).__name__)

    def _compute_internal_output_shape(self, input_shape):
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


# Changes of a ReLU's max_value, negative_slope or threshold after it was made: a model that fused
# it as a plain max(x, 0) (into the BatchNormalization, Add or conv before it, or an inference
# plan) plans again when this moves (models/functional.py, Functional._check_relu_settings).
_relu_settings_generation = 0


def relu_settings_generation() -> int:
    return _relu_settings_generation


class ReLU(_ActivationLayer):
    """``max(x, 0)``, on the compiled kernel (in place inside Conv2D/Dense); Keras's ``ReLU``.

    Keras's arguments: ``max_value`` clips the output (``ReLU(6.0)``: MobileNet's ReLU6),
    ``threshold`` replaces 0 as the point below which the input is cut, ``negative_slope``
    keeps ``negative_slope * (x - threshold)`` there; Keras's formula, the same values. With any
    of them the layer runs in NumPy (not fused into a Conv2D, Dense or BatchNormalization
    before it, nor into a compiled inference plan) and keeps its input for the backward.
    """

    activation_name = "relu"
    _cache_attrs = ("_y", "_x")

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, *, name=None, input_shape=None,
                 trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        for arg, value in (("negative_slope", negative_slope), ("threshold", threshold)) + (
                (("max_value", max_value),) if max_value is not None else ()):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"ReLU {arg} must be a number; got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"ReLU {arg} must be finite; got {value!r}")
        if max_value is not None and max_value < 0:
            raise ValueError(f"ReLU max_value must be >= 0 (Keras's rule); got {max_value!r}")
        if negative_slope < 0:
            raise ValueError(f"ReLU negative_slope must be >= 0 (Keras's rule); got {negative_slope!r}")
        if threshold < 0:
            raise ValueError(f"ReLU threshold must be >= 0 (Keras's rule); got {threshold!r}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)
        self._x = None

    # Properties, not a __setattr__ of its own: Layer.__setattr__ counts every change for the
    # compiled plans' ready path, which trusts only layers that keep it.
    def _set_setting(self, name: str, value) -> None:
        if name in self.__dict__:  # set again after construction
            global _relu_settings_generation
            _relu_settings_generation += 1
        self.__dict__[name] = value

    max_value = property(lambda self: self.__dict__["_max_value"],
                         lambda self, value: self._set_setting("_max_value", value))
    negative_slope = property(lambda self: self.__dict__["_negative_slope"],
                              lambda self, value: self._set_setting("_negative_slope", value))
    threshold = property(lambda self: self.__dict__["_threshold"],
                         lambda self, value: self._set_setting("_threshold", value))

    @property
    def plain(self) -> bool:
        """``max(x, 0)`` exactly (no max_value, negative_slope or threshold): what kernels fuse."""
        return self.max_value is None and self.negative_slope == 0.0 and self.threshold == 0.0

    def forward(self, x, training=False):
        if not self.plain:
            return self._forward_keras(x, training)
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

    def _pre_clip(self, x):
        """Keras's first step: x where x > threshold else 0 (max(x, 0) at threshold 0)."""
        if self.threshold != 0.0:
            return np.where(x > x.dtype.type(self.threshold), x, x.dtype.type(0))
        return np.maximum(x, x.dtype.type(0))

    def _forward_keras(self, x, training):
        """Keras 3's relu(x, negative_slope, max_value, threshold), step by step."""
        t = x.dtype.type
        if training:
            self._x = x.copy()  # the input: the output alone does not tell the regions apart
        if self.threshold == 0.0 and self.negative_slope == 0.0:
            # max_value alone (relu6): the relu kernel, then the bound. Keras's values; the bits
            # the compiled inference plan computes (its relu and clip_max ops).
            # + 0.0: a bound of -0.0 is +0.0, as the plan's clip_max takes it (np.minimum(+0, -0)
            # would give -0, where its comparison keeps +0).
            y = F.relu(x, out=x) if self._inplace else F.relu(x)
            return np.minimum(y, t(self.max_value + 0.0), out=y)
        y = self._pre_clip(x)
        if self.max_value is not None:
            y = np.clip(y, t(0), t(self.max_value))
        if self.negative_slope != 0.0:
            y = y - t(self.negative_slope) * np.maximum(t(self.threshold) - x, t(0))
        y = y.astype(x.dtype, copy=False)
        if self._inplace:
            x[...] = y
            y = x
        return y  # not kept: the backward reads the input's copy alone

    def backward(self, dy):
        if self.plain:
            return super().backward(dy)
        x = self._x
        if x is None:
            raise self._missing_cache()
        t = x.dtype.type
        if self.max_value is None and self.threshold == 0.0:  # Keras's leaky_relu: the slope at 0 too
            return np.where(x > 0, dy, dy * t(self.negative_slope)).astype(dy.dtype, copy=False)
        pre = self._pre_clip(x)
        passes = x > t(self.threshold)  # Keras's strict comparison
        if self.max_value is not None:
            # Keras's relu6 (threshold 0, max_value 6) passes the open interval, its clip the
            # closed one: at x == max_value the gradient is 0 and 1 (Keras on torch).
            relu6 = self.threshold == 0.0 and self.max_value == 6.0
            passes &= pre < t(self.max_value) if relu6 else pre <= t(self.max_value)
        g = passes.astype(x.dtype)
        if self.negative_slope != 0.0:
            g += t(self.negative_slope) * (x < t(self.threshold))
        return (dy * g).astype(dy.dtype, copy=False)

    def get_config(self):
        config = super().get_config()
        if not self.plain:  # a plain ReLU's config stays {name, trainable}: it serialises as 'relu'
            config.update(max_value=self.max_value, negative_slope=self.negative_slope, threshold=self.threshold)
        return config


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
        return self._output_of(x, _sigmoid(x), training)

    def _grad(self, dy, y):
        return dy * y * (1 - y)


class _AxisActivation(_ActivationLayer):
    """An activation over one axis of the tensor the user sees (Softmax, log_softmax)."""

    def __init__(self, axis=-1, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"{type(self).__name__} axis must be an int such as -1; got {axis!r}")
        self.axis = int(axis)

    def _internal_axis(self, ndim: int) -> int:
        """The axis of the arrays inside the model (``ndim`` of them, batch first) that ``axis``
        names on the tensor the user sees: images are NCHW inside, whatever the data format."""
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= axis < ndim:
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}): axis={self.axis} is out of range for inputs of rank "
                f"{ndim} (with the batch axis), or is the batch axis"
            )
        return internal_axis(axis, ndim, self._data_format)

    def _compute_internal_output_shape(self, input_shape):
        self._internal_axis(len(input_shape) + 1)  # checked when built
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Softmax(_AxisActivation):
    """Softmax over ``axis``: each row of a ``(batch, classes)`` output sums to 1.

    Followed by ``loss='sparse_categorical_crossentropy'`` or
    ``'categorical_crossentropy'``, a model trains on the logits instead
    (log-sum-exp cross-entropy, gradient ``(p - y) / N``), which stays finite
    for any logits. ``predict`` still returns probabilities.

    Parameters
    ----------
    axis : int
        As in Keras, an axis of the tensor the user sees, batch first: ``-1``
        (default) is the last one -- the classes of ``(batch, classes)``, the
        channels of channels-last images, the width of channels-first ones
        (Keras's ``activation='softmax'`` too); ``Softmax(axis=1)`` is the
        channels of channels-first images. The batch axis cannot be one.
    """

    activation_name = "softmax"

    def forward(self, x, training=False):
        axis = self._internal_axis(x.ndim)
        if x.ndim == 2 and x.dtype in (np.float32, np.float64):
            # (batch, classes): the compiled kernel, which the inference plan runs too (same bits).
            return self._output_of(x, F.softmax(x), training)
        y = x - x.max(axis=axis, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        return self._output_of(x, y, training)

    def _grad(self, dy, y):
        axis = self._internal_axis(y.ndim)
        return y * (dy - (dy * y).sum(axis=axis, keepdims=True))

    def _ends_in_softmax(self):
        return True

    # The fused path: the model asks for logits and sends back dL/dlogits.
    def _forward_logits(self, x, training=False):
        return x

    def _backward_logits(self, dz):
        return dz


class LogSoftmax(_AxisActivation):
    """``log(softmax(x))`` over ``axis``, as ``x - max - log(sum(exp(x - max)))``: finite for any
    finite logits. Keras's ``'log_softmax'`` activation (Keras has no layer class of that name:
    use ``Activation('log_softmax')`` or ``activation='log_softmax'``); PyTorch's
    ``F.log_softmax`` heads import as it. Not a softmax for the losses: a cross-entropy after it
    takes its output as probabilities, as in Keras."""

    activation_name = "log_softmax"

    def forward(self, x, training=False):
        axis = self._internal_axis(x.ndim)
        y = x - x.max(axis=axis, keepdims=True)
        with np.errstate(divide="ignore"):  # a row of -inf: log(0), as Keras gives
            y -= np.log(np.exp(y).sum(axis=axis, keepdims=True))
        return self._output_of(x, y, training)

    def _grad(self, dy, y):
        axis = self._internal_axis(y.ndim)
        return dy - np.exp(y) * dy.sum(axis=axis, keepdims=True)


class _InputActivation(_ActivationLayer):
    """An activation whose gradient needs its input ``x`` (not only its output): keeps ``x``."""

    _cache_attrs = ("_y", "_x")

    def _output_of(self, x, y, training=False):
        # Embedded in Conv2D/Dense (in place) x is about to be overwritten by y: keep a copy.
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._x = x.copy() if self._inplace else x
        return super()._output_of(x, y, training)

    def backward(self, dy):
        if self._x is None:
            raise self._missing_cache()
        return self._grad(dy, self._x)


class LeakyReLU(_ActivationLayer):
    """``x`` where ``x > 0``, ``negative_slope * x`` elsewhere; Keras's ``LeakyReLU``.

    The layer's default ``negative_slope`` is 0.3, as in Keras; the string
    ``activation='leaky_relu'`` uses 0.2, as Keras's ``activations.leaky_relu``.
    """

    activation_name = "leaky_relu"

    def __init__(self, negative_slope=0.3, *, alpha=None, name=None, input_shape=None, trainable=True):
        if alpha is not None:  # Keras 2's name, which Keras 3 still takes (and prefers)
            negative_slope = alpha
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float, np.floating)):
            raise TypeError(f"LeakyReLU negative_slope must be a number; got {negative_slope!r}")
        if not negative_slope >= 0:
            raise ValueError(f"LeakyReLU negative_slope must be >= 0; got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x, training=False):
        y = np.where(x > 0, x, x * x.dtype.type(self.negative_slope)).astype(x.dtype, copy=False)
        return self._output_of(x, y, training)

    def _grad(self, dy, y):
        # y > 0 exactly where x > 0 (the slope is >= 0).
        return np.where(y > 0, dy, dy * dy.dtype.type(self.negative_slope)).astype(dy.dtype, copy=False)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_ActivationLayer):
    """``x`` where ``x > 0``, ``alpha * (exp(x) - 1)`` elsewhere; Keras's ``ELU`` / ``'elu'``."""

    activation_name = "elu"

    def __init__(self, alpha=1.0, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        # As LeakyReLU's negative_slope: float() alone let "1" and True through, and gave
        # "could not convert string to float" for alpha="a", naming no argument.
        if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.integer, np.floating)):
            raise TypeError(f"ELU alpha must be a number; got {alpha!r}")
        if not np.isfinite(alpha):
            raise ValueError(f"ELU alpha must be finite; got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, x, training=False):
        with np.errstate(over="ignore"):
            y = np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)
        return self._output_of(x, y, training)

    def _grad(self, dy, y):
        # For x <= 0: d/dx alpha (e^x - 1) = alpha e^x = y + alpha.
        return np.where(y > 0, dy, dy * (y + self.alpha)).astype(dy.dtype, copy=False)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


def _sigmoid(x):
    # exp(-|x|) is in (0, 1]: no overflow warning for x = -1000.
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


class Softplus(_ActivationLayer):
    """``log(1 + exp(x))``, computed without overflow; Keras's ``'softplus'``."""

    activation_name = "softplus"

    def forward(self, x, training=False):
        y = (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)
        return self._output_of(x, y, training)

    def _grad(self, dy, y):
        # sigmoid(x) = 1 - exp(-softplus(x)).
        return dy * -np.expm1(-y)


class Swish(_InputActivation):
    """``x * sigmoid(x)``; Keras's ``'swish'``, also called ``'silu'``."""

    activation_name = "swish"

    def forward(self, x, training=False):
        return self._output_of(x, x * _sigmoid(x), training)

    def _grad(self, dy, x):
        s = _sigmoid(x)
        return dy * (s * (1 + x * (1 - s)))


SiLU = Swish


class SELU(_ActivationLayer):
    """``scale * x`` where ``x > 0``, ``scale * alpha * (exp(x) - 1)`` elsewhere, with Keras's (and
    PyTorch's) constants; Keras's ``'selu'`` activation (Keras has no layer class of that name)."""

    activation_name = "selu"
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def forward(self, x, training=False):
        t = x.dtype.type
        with np.errstate(over="ignore"):
            y = np.where(x > 0, t(self.scale) * x, t(self.scale * self.alpha) * np.expm1(np.minimum(x, 0)))
        return self._output_of(x, y.astype(x.dtype, copy=False), training)

    def _grad(self, dy, y):
        # For x <= 0: d/dx scale alpha (e^x - 1) = scale alpha e^x = y + scale alpha.
        return np.where(y > 0, dy * self.scale, dy * (y + self.scale * self.alpha)).astype(dy.dtype, copy=False)


class HardSigmoid(_InputActivation):
    """``relu6(x + 3) / 6``: 0 below -3, 1 above 3, linear between; Keras 3's ``'hard_sigmoid'``
    (PyTorch's ``nn.Hardsigmoid``; Keras 2's had slope 0.2)."""

    activation_name = "hard_sigmoid"

    def forward(self, x, training=False):
        t = x.dtype.type
        y = np.minimum(np.maximum(x + t(3), t(0)), t(6)) / t(6)
        return self._output_of(x, y.astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        return (dy * ((x > -3) & (x < 3)) / 6).astype(dy.dtype, copy=False)


class HardSiLU(_InputActivation):
    """``x * relu6(x + 3) / 6``; Keras's ``'hard_silu'`` (also ``'hard_swish'``), PyTorch's
    ``nn.Hardswish``: MobileNetV3's activation."""

    activation_name = "hard_silu"

    def forward(self, x, training=False):
        t = x.dtype.type
        y = x * np.minimum(np.maximum(x + t(3), t(0)), t(6)) / t(6)
        return self._output_of(x, y.astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        # PyTorch's rule (Keras's on torch): 0 up to -3 included, 1 from 3, the slope between;
        # at the kinks it is not (2x + 3) / 6 (-0.5 and 1.5).
        d = np.where(x <= -3, 0.0, np.where(x < 3, (2 * x + 3) / 6, 1.0))
        return (dy * d).astype(dy.dtype, copy=False)


class Mish(_InputActivation):
    """``x * tanh(softplus(x))``; Keras's ``'mish'``."""

    activation_name = "mish"

    def forward(self, x, training=False):
        softplus = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
        return self._output_of(x, (x * np.tanh(softplus)).astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        t = np.tanh(np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))
        return (dy * (t + x * (1 - t * t) * _sigmoid(x))).astype(dy.dtype, copy=False)


class Softsign(_InputActivation):
    """``x / (1 + |x|)``; Keras's ``'softsign'``."""

    activation_name = "softsign"

    def forward(self, x, training=False):
        t = x.dtype.type
        return self._output_of(x, (x / (t(1) + np.abs(x))).astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        d = 1 + np.abs(x)
        return (dy / (d * d)).astype(dy.dtype, copy=False)



class GELU(_InputActivation):
    """Gaussian error linear unit ``x * Phi(x)``; Keras's ``'gelu'``.

    ``approximate=False`` (Keras's default) uses the exact normal CDF: on
    float32, a SIMD kernel evaluating it in double (within 0.51 ulp of the exact
    value, forward and gradient); on float64, the C library's erf (``math.erf``'s).
    ``approximate=True`` the tanh form, in NumPy.
    """

    activation_name = "gelu"

    def __init__(self, approximate=False, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        # Not bool(): PyTorch's spelling approximate="none" (its exact GELU) would be True, the tanh form.
        if not isinstance(approximate, (bool, np.bool_)):
            raise TypeError(f"GELU approximate must be True or False; got {approximate!r}")
        self.approximate = bool(approximate)

    _C = math.sqrt(2 / math.pi)

    def forward(self, x, training=False):
        if self.approximate:
            y = 0.5 * x * (1 + np.tanh(self._C * (x + 0.044715 * x**3)))
        else:
            y = F.gelu(x)
        return self._output_of(x, y.astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        if self.approximate:
            inner = self._C * (x + 0.044715 * x**3)
            t = np.tanh(inner)
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * self._C * (1 + 3 * 0.044715 * x * x)
        else:
            return F.gelu_backward(dy, x)
        return (dy * d).astype(dy.dtype, copy=False)

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


def _positive_number(value, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a number; got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a finite number > 0; got {value!r}")
    return float(value)


def _threshold_number(value, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a number; got {value!r}")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be a finite number >= 0; got {value!r}")
    return float(value)


class Exponential(_ActivationLayer):
    """``exp(x)``; Keras's ``'exponential'``: a positive output, e.g. the rate of a Poisson
    regression (``loss='poisson'``). Overflows to ``inf`` above ~88 (float32), as Keras's."""

    activation_name = "exponential"

    def forward(self, x, training=False):
        with np.errstate(over="ignore"):
            return self._output_of(x, np.exp(x).astype(x.dtype, copy=False), training)

    def _grad(self, dy, y):
        return dy * y


class CELU(_InputActivation):
    """``x`` where ``x > 0``, ``alpha * (exp(x / alpha) - 1)`` elsewhere; Keras's ``'celu'``
    (``alpha=1.0``; ``activations.celu(x, alpha)`` for another)."""

    activation_name = "celu"

    def __init__(self, alpha=1.0, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.alpha = _positive_number(alpha, "celu alpha")

    def forward(self, x, training=False):
        t = x.dtype.type
        with np.errstate(over="ignore"):
            y = np.where(x > 0, x, t(self.alpha) * np.expm1(np.minimum(x, 0) / t(self.alpha)))
        return self._output_of(x, y.astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        # For x <= 0: d/dx alpha (e^(x/alpha) - 1) = e^(x/alpha), from x: y / alpha + 1 lost its
        # digits in the tail (0 from x = -21 in float32, where PyTorch's is 7.6e-10).
        t = x.dtype.type
        return np.where(x > 0, dy, dy * np.exp(np.minimum(x, t(0)) / t(self.alpha))).astype(dy.dtype, copy=False)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class HardTanh(_InputActivation):
    """``clip(x, -1, 1)``; Keras's ``'hard_tanh'`` (gradient 0 at -1 and 1, as PyTorch's)."""

    activation_name = "hard_tanh"

    def forward(self, x, training=False):
        t = x.dtype.type
        return self._output_of(x, np.clip(x, t(-1), t(1)), training)

    def _grad(self, dy, x):
        return (dy * ~((x <= -1) | (x >= 1))).astype(dy.dtype, copy=False)  # NaN passes dy on, as PyTorch's


class HardShrink(_ActivationLayer):
    """``x`` where ``|x| > threshold``, 0 elsewhere; Keras's ``'hard_shrink'`` (``threshold=0.5``)."""

    activation_name = "hard_shrink"

    def __init__(self, threshold=0.5, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.threshold = _threshold_number(threshold, "hard_shrink threshold")

    def forward(self, x, training=False):
        # 0 within the threshold; NaN stays NaN (as PyTorch's), where |x| > t would have made it 0
        y = np.where(np.abs(x) <= x.dtype.type(self.threshold), x.dtype.type(0), x)
        return self._output_of(x, y.astype(x.dtype, copy=False), training)

    def _grad(self, dy, y):
        return (dy * (y != 0)).astype(dy.dtype, copy=False)  # y != 0 exactly where |x| > threshold

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class SoftShrink(_ActivationLayer):
    """``x - threshold`` above ``threshold``, ``x + threshold`` below ``-threshold``, 0 between;
    Keras's ``'soft_shrink'`` (``threshold=0.5``)."""

    activation_name = "soft_shrink"

    def __init__(self, threshold=0.5, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.threshold = _threshold_number(threshold, "soft_shrink threshold")

    def forward(self, x, training=False):
        t = x.dtype.type(self.threshold)
        y = np.where(np.abs(x) <= t, x.dtype.type(0), x - np.sign(x) * t)  # NaN stays NaN, as PyTorch's
        return self._output_of(x, y.astype(x.dtype, copy=False), training)

    def _grad(self, dy, y):
        return (dy * (y != 0)).astype(dy.dtype, copy=False)  # y != 0 exactly where |x| > threshold

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class TanhShrink(_InputActivation):
    """``x - tanh(x)``; Keras's ``'tanh_shrink'``."""

    activation_name = "tanh_shrink"

    def forward(self, x, training=False):
        return self._output_of(x, (x - np.tanh(x)).astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        t = np.tanh(x)
        return (dy * (t * t)).astype(dy.dtype, copy=False)


class LogSigmoid(_ActivationLayer):
    """``log(sigmoid(x)) = -softplus(-x)``, without overflow; Keras's ``'log_sigmoid'``."""

    activation_name = "log_sigmoid"

    def forward(self, x, training=False):
        y = -(np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x))))
        return self._output_of(x, y.astype(x.dtype, copy=False), training)

    def _grad(self, dy, y):
        return (dy * -np.expm1(y)).astype(dy.dtype, copy=False)  # 1 - sigmoid(x), sigmoid(x) = e^y


class Squareplus(_InputActivation):
    """``(x + sqrt(x**2 + b)) / 2``, a smooth ReLU; Keras's ``'squareplus'`` (``b=4``)."""

    activation_name = "squareplus"

    def __init__(self, b=4, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.b = _threshold_number(b, "squareplus b")

    def forward(self, x, training=False):
        t = x.dtype.type
        return self._output_of(x, ((x + np.sqrt(x * x + t(self.b))) / t(2)).astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        root = np.sqrt(x * x + x.dtype.type(self.b))
        with np.errstate(invalid="ignore", divide="ignore"):  # b = 0 at x = 0: ReLU's kink, gradient 1/2
            d = np.where(root > 0, (1 + x / root) / 2, 0.5)
        return (dy * d).astype(dy.dtype, copy=False)

    def get_config(self):
        return {**super().get_config(), "b": self.b}


class SparsePlus(_InputActivation):
    """0 up to -1, ``(x + 1)**2 / 4`` between -1 and 1, ``x`` from 1; Keras's ``'sparse_plus'``."""

    activation_name = "sparse_plus"

    def forward(self, x, training=False):
        t = x.dtype.type
        y = np.where(x <= -1, t(0), np.where(x < 1, (x + t(1)) ** 2 / t(4), x))
        return self._output_of(x, y.astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        d = np.where(x <= -1, 0.0, np.where(x < 1, (x + 1) / 2, 1.0))
        return (dy * d).astype(dy.dtype, copy=False)


class SparseSigmoid(_InputActivation):
    """0 up to -1, ``(x + 1) / 2`` between, 1 from 1; Keras's ``'sparse_sigmoid'``."""

    activation_name = "sparse_sigmoid"

    def forward(self, x, training=False):
        t = x.dtype.type
        return self._output_of(x, np.clip((x + t(1)) / t(2), t(0), t(1)).astype(x.dtype, copy=False), training)

    def _grad(self, dy, x):
        return (dy * (((x > -1) & (x < 1)) * 0.5)).astype(dy.dtype, copy=False)


_BY_NAME = {
    cls.activation_name: cls
    for cls in (ReLU, Tanh, Sigmoid, Softmax, LogSoftmax, LeakyReLU, ELU, Softplus, Swish, GELU, SELU, HardSigmoid,
                HardSiLU, Mish, Softsign, Exponential, CELU, HardTanh, HardShrink, SoftShrink, TanhShrink, LogSigmoid,
                Squareplus, SparsePlus, SparseSigmoid)
}
_BY_NAME["silu"] = Swish
_BY_NAME["hard_swish"] = HardSiLU
_BY_NAME["relu6"] = ReLU
_NAMES = (*_BY_NAME, "linear", None)
# activation='leaky_relu' takes Keras's function default (0.2), not the layer's (0.3).
_STRING_CONFIG = {"leaky_relu": {"negative_slope": 0.2}, "relu6": {"max_value": 6.0}, "celu": {"alpha": 1.0},
                  "hard_shrink": {"threshold": 0.5}, "soft_shrink": {"threshold": 0.5}, "squareplus": {"b": 4.0}}


def get(identifier, argument: str = "activation") -> _ActivationLayer | None:
    """A fresh activation for ``activation=...``: a name, an activation layer or function of
    :mod:`convforge.activations`, a ``{'class_name', 'config'}`` dict, or None/'linear'."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        key = identifier.lower()
        if key == "linear":
            return None
        if key in _BY_NAME:
            return _BY_NAME[key](**_STRING_CONFIG.get(key, {}))
        raise ValueError(f"{argument} must be one of {list(_NAMES)}; got {identifier!r}")
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_NAME:
        return _BY_NAME[identifier["class_name"]](**identifier.get("config", {}))
    if isinstance(identifier, _ActivationLayer):
        config = identifier.get_config()
        for key in ("name", "trainable", "input_shape"):
            config.pop(key, None)
        return type(identifier)(**config)
    name = getattr(identifier, "_convforge_activation", None)  # a convforge.activations function
    if name is not None:
        return get(name, argument)
    raise TypeError(
        f"{argument} must be one of {list(_NAMES)}, a function of convforge.activations or an activation "
        f"layer such as layers.ReLU(); got {type(identifier).__name__} {identifier!r}"
    )


def serialize(activation):
    """The name, or ``{'class_name', 'config'}`` when the activation has non-default settings."""
    if activation is None:
        return None
    config = {k: v for k, v in activation.get_config().items() if k not in ("name", "trainable", "input_shape")}
    if config and config != _STRING_CONFIG.get(activation.activation_name, {}):
        return {"class_name": activation.activation_name, "config": config}
    return activation.activation_name


class Activation(Layer):
    """Applies an activation by name: ``Activation('relu')``, as in Keras."""

    _keeps_feature_order = True

    _cache_attrs = ()

    def __init__(self, activation, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.activation = get(activation)

    def _compute_internal_output_shape(self, input_shape):
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


class PReLU(FeatureOrdered, Layer):
    """Parametric ReLU, Keras's ``PReLU``: ``x`` where ``x > 0``, ``alpha * x`` elsewhere, with
    ``alpha`` learned (He et al., 2015).

    ``alpha`` has the input's shape without the batch axis, one slope per value, or size 1
    along each axis of ``shared_axes`` (counted as in Keras, the batch axis 0): on images
    ``PReLU(shared_axes=[1, 2])`` learns one slope per channel, as PyTorch's
    ``nn.PReLU(channels)``. It starts at ``alpha_initializer`` (Keras's default: zeros, a plain
    ReLU). The weight is kept in Keras's layout (images channels-last), so ``get_weights`` and
    ``set_weights`` exchange it with Keras as it is; the parameter count is Keras's.
    Keras's formula ``relu(x) - alpha * relu(-x)``: its gradient at ``x == 0`` is 0.

    Differences from Keras: ``alpha_constraint`` is not supported (NotImplementedError).
    """

    _cache_attrs = ("_x",)
    _feature_weights = ("alpha",)  # on flattened maps: one slope per value, in the Flatten's order

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None, *,
                 name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        refuse_unsupported("PReLU", alpha_constraint=alpha_constraint)
        self.alpha_initializer = initializers.get(alpha_initializer, "alpha_initializer")
        self.alpha_regularizer = regularizers.get(alpha_regularizer, "alpha_regularizer")
        if shared_axes is None:
            axes = None
        else:
            given = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            for a in given:
                if isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral) or a < 1:
                    raise ValueError(
                        f"PReLU shared_axes must be input axes >= 1 (0 is the batch axis), e.g. [1, 2] on images; "
                        f"got {shared_axes!r}"
                    )
            axes = sorted({int(a) for a in given})
        self.shared_axes = axes
        self._x = None

    def _compute_internal_output_shape(self, input_shape):
        return tuple(input_shape)

    def build(self, input_shape):
        shown = display_shape(input_shape, self._data_format)
        for a in self.shared_axes or ():
            if a > len(shown):
                raise ValueError(
                    f"layer {self.name!r} (PReLU): shared_axes {self.shared_axes} name axis {a}, but its input "
                    f"{self._show(input_shape)} has axes 1..{len(shown)}"
                )
        shape = tuple(1 if axis in (self.shared_axes or ()) else d for axis, d in enumerate(shown, start=1))
        self.add_weight("alpha", shape, self.alpha_initializer, regularizer=self.alpha_regularizer)

    def _transposed(self, ndim: int) -> bool:
        """Is alpha (Keras's layout) the transpose of the internal one? Images channels-last:
        (H, W, C) outside, (C, H, W) inside."""
        return ndim == 3 and self._data_format != "channels_first"

    def _alpha(self, dtype):
        a = self.params["alpha"]
        if self._transposed(a.ndim):
            a = a.transpose(2, 0, 1)
        return a.astype(dtype, copy=False)

    def forward(self, x, training=False):
        y = np.where(x > 0, x, x * self._alpha(x.dtype)).astype(x.dtype, copy=False)
        if training:
            self._x = x
        return y

    def backward(self, dy):
        if self._x is None:
            raise self._missing_cache()
        x, a = self._x, self._alpha(dy.dtype)
        if self.trainable:
            # d/dalpha of -alpha * relu(-x): min(x, 0), summed over the batch and the shared axes.
            part = dy * np.minimum(x, 0)
            axes = (0, *(1 + i for i, d in enumerate(a.shape) if d == 1))
            g = part.sum(axis=axes, dtype=np.float64, keepdims=True)[0].astype(dy.dtype)
            self.grads["alpha"] = np.ascontiguousarray(g.transpose(1, 2, 0) if self._transposed(g.ndim) else g)
        if not self.input_grad_needed:
            return None
        return np.where(x > 0, dy, np.where(x < 0, dy * a, 0)).astype(dy.dtype, copy=False)

    def get_config(self):
        return {
            **super().get_config(),
            "alpha_initializer": initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": None,
            "shared_axes": self.shared_axes,
        }

    @classmethod
    def from_config(cls, config):
        config = initializers.deserialize_config(config, ("alpha_initializer",))
        if "alpha_regularizer" in config:
            config["alpha_regularizer"] = regularizers.get(config["alpha_regularizer"], "alpha_regularizer")
        return cls(**config)
