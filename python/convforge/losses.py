"""Loss functions, Keras 3's: classification, regression and distributions.

``model.compile(loss='sparse_categorical_crossentropy')`` (integer labels) or
``'categorical_crossentropy'`` (one-hot labels) or ``'mse'``; or an instance,
e.g. ``losses.SparseCategoricalCrossentropy(from_logits=True)`` for a model
whose last layer has no activation. Every loss is the mean over the batch.

=====================================  =========================================  ======================
class                                  name in compile                            targets
=====================================  =========================================  ======================
SparseCategoricalCrossentropy          'sparse_categorical_crossentropy'          integer labels
CategoricalCrossentropy                'categorical_crossentropy'                 one-hot rows
CategoricalFocalCrossentropy           'categorical_focal_crossentropy'           one-hot rows
CategoricalHinge                       'categorical_hinge'                        one-hot rows
BinaryCrossentropy                     'binary_crossentropy', 'bce'               0/1 (or in [0, 1])
BinaryFocalCrossentropy                'binary_focal_crossentropy'                0/1 (or in [0, 1])
Hinge, SquaredHinge                    'hinge', 'squared_hinge'                   -1/1 (0/1 converted)
MeanSquaredError                       'mse', 'mean_squared_error'                numbers
MeanAbsoluteError                      'mae', 'mean_absolute_error'               numbers
MeanAbsolutePercentageError            'mape'                                     numbers (not near 0)
MeanSquaredLogarithmicError            'msle'                                     numbers >= 0
Huber, LogCosh                         'huber', 'log_cosh'                        numbers
Poisson                                'poisson'                                  counts
KLDivergence                           'kld', 'kl_divergence'                     distributions
CosineSimilarity                       'cosine_similarity'                        vectors
=====================================  =========================================  ======================

Each is Keras's formula, reduced as Keras reduces it: over the last axis first (its mean, or its
sum for KLDivergence, CosineSimilarity and the categorical ones), then the mean over any other
positions and the batch (Keras's ``reduction='sum_over_batch_size'``, the only one here).

Softmax + cross-entropy
-----------------------
When a model's last layer ends in ``softmax`` and the loss is a
cross-entropy on probabilities (``from_logits=False``, Keras's default), the
model does not differentiate through the softmax: it computes the loss from
the logits ``z`` with log-sum-exp,
``loss_i = log(sum_j exp(z_ij - max_i)) - (z_iy - max_i)``, whose gradient
is ``(softmax(z) - y) / N``. This is finite for any finite logits, however
large. Without that softmax (a custom last layer), probabilities are clipped
to ``[1e-7, 1 - 1e-7]`` as in Keras.

This is what Keras does on its TensorFlow backend (it takes the softmax's
logits too); Keras on PyTorch or JAX clips the softmax's probabilities
instead, so where a true class's probability falls below ``1e-7`` its
per-sample loss stops at ``-log(1e-7) = 16.1`` and its gradient is 0, while
convforge's keeps growing with the logit gap and still trains that sample.
A sigmoid before ``binary_crossentropy`` is not fused: its probabilities are
clipped, as in Keras on every backend.

Custom losses subclass :class:`Loss` and implement ``value_and_grad``.
"""

from __future__ import annotations

import math

import numpy as np

from . import _unsupported
from .layers.activations import _sigmoid  # sigmoid without overflow, in its input's dtype

__all__ = [
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CategoricalHinge",
    "CosineSimilarity",
    "Hinge",
    "Huber",
    "KLDivergence",
    "LogCosh",
    "Loss",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "Poisson",
    "SparseCategoricalCrossentropy",
    "SquaredHinge",
    "check_sparse_labels",
    "get",
    "softmax_cross_entropy",
]

EPSILON = 1e-7  # Keras's backend.epsilon(), used to clip probabilities


def check_sparse_labels(y, num_classes: int, who: str = "sparse_categorical_crossentropy",
                        positions: tuple | None = None) -> np.ndarray:
    """Integer class labels as int64 of shape (batch,), or ValueError naming the first bad label.

    Accepts integer arrays, and float arrays holding whole numbers (Keras
    users often have ``y.astype('float32')``); shape ``(batch,)`` or
    ``(batch, 1)``. With ``positions`` (an output with a class per pixel or
    step), a label per position: ``(batch, *positions)`` or with a trailing 1.
    """
    y = np.asarray(y)
    if positions is None:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            hint = ""
            if y.ndim == 2 and y.shape[1] == num_classes:
                hint = " These look like one-hot labels: use loss='categorical_crossentropy' for them."
            raise ValueError(f"{who} expects integer class labels of shape (batch,); got shape {y.shape}.{hint}")
    else:
        if y.ndim == len(positions) + 2 and y.shape[-1] == 1:
            y = y[..., 0]
        if y.shape[1:] != tuple(positions):
            shown = ", ".join(map(str, positions))
            hint = (" These look like one-hot labels: use loss='categorical_crossentropy' for them."
                    if y.shape[1:] == (*positions, num_classes) else "")
            raise ValueError(f"{who} expects integer labels of shape (batch, {shown}), one per position of the model "
                             f"output (batch, {shown}, {num_classes}); got shape {y.shape}.{hint}")

    def first(bad):  # the first bad label: its value and its index in y
        i = int(np.argmax(bad))
        at = i if y.ndim == 1 else tuple(int(j) for j in np.unravel_index(i, y.shape))
        return y.reshape(-1)[i].item(), at

    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        bad[~bad] = y[~bad] != np.floor(y[~bad])
        if bad.any():
            value, at = first(bad)
            raise ValueError(
                f"{who}: labels must be integer class indices in [0, {num_classes}); got {value!r} at index {at}"
            )
    elif y.dtype.kind not in "iub":
        raise TypeError(f"{who}: labels must be integers; got an array of dtype {y.dtype}")
    out_of_range = (y < 0) | (y >= num_classes)
    if out_of_range.any():
        value, at = first(out_of_range)
        raise ValueError(
            f"{who}: label {value!r} at index {at} is out of range: labels must be in [0, {num_classes}) "
            f"for a model with {num_classes} outputs"
        )
    return y.astype(np.int64)


def _weighted_mean(per_sample: np.ndarray, sample_weight) -> float:
    """Keras's ``sum_over_batch_size`` reduction: ``sum(w_i * loss_i) / N`` (plain mean without weights)."""
    if sample_weight is None:
        return float(per_sample.sum()) / per_sample.shape[0]
    return float((per_sample * sample_weight).sum()) / per_sample.shape[0]


def _weight_rows(grad: np.ndarray, sample_weight) -> np.ndarray:
    """Scale each sample's gradient row by its weight, in place."""
    if sample_weight is not None:
        grad *= sample_weight.reshape(-1, *([1] * (grad.ndim - 1))).astype(grad.dtype, copy=False)
    return grad


def _position_weights(sample_weight, shape) -> np.ndarray | None:
    """Weights of an output with positions ``(batch, *positions, last)`` given one per position,
    ``(batch, *positions)`` (a segmentation net's per-pixel weights), with a last axis of 1 to
    broadcast; None for weights per sample (or none)."""
    if sample_weight is None or len(shape) < 3:
        return None
    w = np.asarray(sample_weight)
    return w[..., None] if w.shape == tuple(shape[:-1]) else None


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, need_grad: bool = True, sample_weight=None):
    """Mean cross-entropy of ``softmax(logits)`` against labels, from the logits.

    Parameters
    ----------
    logits : ndarray, shape (N, C)
    labels : ndarray
        int64 class indices ``(N,)``, or target distributions ``(N, C)`` (one-hot).
    need_grad : bool
        Also return ``dL/dlogits``.
    sample_weight : ndarray (N,), optional
        Per-sample weights: the loss is ``sum(w_i * loss_i) / N`` (Keras's rule).

    Returns
    -------
    loss : float
    dlogits : ndarray (N, C) or None
        ``(softmax(logits) * sum(y) - y) / N``, i.e. ``(p - y) / N`` for one-hot y.
    probs : ndarray (N, C)
        ``softmax(logits)``.
    """
    n = logits.shape[0]
    # Infinite logits (an overflowed layer) give a NaN loss, which fit reports and skips
    # (see callbacks.TerminateOnNaN); NumPy's warnings about it would only be noise.
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    total = probs.sum(axis=1, keepdims=True)
    log_total = np.log(total)
    probs /= total
    if labels.ndim == 1:
        rows = np.arange(n)
        loss = _weighted_mean(log_total[:, 0] - shifted[rows, labels], sample_weight)
        if not need_grad:
            return loss, None, probs
        grad = probs.copy()
        grad[rows, labels] -= 1
    else:
        mass = labels.sum(axis=1, keepdims=True)
        loss = _weighted_mean((log_total * mass)[:, 0] - (labels * shifted).sum(axis=1), sample_weight)
        if not need_grad:
            return loss, None, probs
        grad = probs * mass - labels
    grad /= n
    return loss, _weight_rows(grad, sample_weight), probs


class Loss:
    """Base class. Subclasses implement :meth:`value_and_grad` (and usually :meth:`prepare_targets`).

    ``loss(y_true, y_pred, sample_weight=None)`` returns the mean loss as a float, Keras style
    (weighted: ``sum(w_i * loss_i) / batch``; a scalar weight scales every sample).
    """

    name = "loss"
    #: The built-in class whose value_and_grad a subclass defining call() would run (__init_subclass__).
    _ignored_call: str | None = None
    #: Whether :meth:`value_and_grad` takes a weight per position ``(batch, *positions)`` for an
    #: output with positions ``(batch, *positions, last)`` (the built-in losses do).
    _position_weights = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Keras's call() over a built-in value_and_grad: refused when such a loss is used
        # (_refuse_ignored_call).
        cls._ignored_call = _unsupported.ignored_keras_call(cls, "value_and_grad", Loss)

    def _refuse_ignored_call(self) -> None:
        if type(self)._ignored_call is not None:
            raise NotImplementedError(
                f"loss {type(self).__name__} overrides call(), Keras's method, of {type(self)._ignored_call}: "
                f"convforge computes the loss and its gradient in {type(self)._ignored_call}'s value_and_grad and "
                "would ignore it. convforge has no automatic differentiation: implement value_and_grad(y_pred, "
                "y_true) (the loss and its gradient) instead"
            )

    def __init__(self, name: str | None = None):
        # Keras's signature: a subclass of one's own calls super().__init__(name=name).
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a string; got {name!r}")
            self.name = name

    def __call__(self, y_true, y_pred, sample_weight=None) -> float:
        self._refuse_ignored_call()
        y_pred = np.asarray(y_pred)
        if y_pred.dtype.kind != "f":
            y_pred = y_pred.astype(np.float64)
        y_true = self.prepare_targets(y_true, y_pred.shape[1:])
        if sample_weight is None:
            return self.value_and_grad(y_pred, y_true, need_grad=False)[0]
        weights = np.asarray(sample_weight, dtype=y_pred.dtype)
        if self._position_weights and y_pred.ndim > 2 and weights.shape == y_pred.shape[:-1]:
            # a weight per pixel or step, as Keras takes them for an output with positions
            return self.value_and_grad(y_pred, y_true, need_grad=False, sample_weight=weights)[0]
        if weights.ndim == 2 and weights.shape[1] == 1:  # a column, as fit(sample_weight=) and Keras take it
            weights = weights[:, 0]
        if weights.ndim > 1 or (weights.ndim == 1 and weights.shape[0] != y_pred.shape[0]):
            n = y_pred.shape[0]
            raise ValueError(f"sample_weight must be a number or have shape ({n},) or ({n}, 1), got shape "
                             f"{np.shape(sample_weight)}")
        weights = np.broadcast_to(weights, (y_pred.shape[0],))
        return self.value_and_grad(y_pred, y_true, need_grad=False, sample_weight=weights)[0]

    def prepare_targets(self, y_true, output_shape) -> np.ndarray:
        """Check ``y_true`` against the per-sample output shape once, before training."""
        return np.asarray(y_true)

    def value_and_grad(self, y_pred: np.ndarray, y_true: np.ndarray, need_grad: bool = True, sample_weight=None):
        """``(mean loss, dL/dy_pred or None)`` for a batch.

        ``sample_weight`` (``(batch,)``, or None) weights each sample's loss:
        ``sum(w_i * loss_i) / batch``. The built-in losses support it; a custom
        loss that does not is refused by ``fit(sample_weight=...)``.
        """
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor's arguments; ``name`` as in Keras's configs."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict):
        """A new loss from :meth:`get_config`'s dict, as Keras's ``from_config``."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _check_smoothing(value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise ValueError(f"label_smoothing must be a number in [0, 1]; got {value!r}")
    return float(value)


class _Crossentropy(Loss):
    _position_weights = True

    def __init__(self, from_logits: bool = False, name: str | None = None):
        super().__init__(name)
        self.from_logits = _check_flag(from_logits, "from_logits")

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}

    def _targets_matrix(self, y_true, shape):  # pragma: no cover - abstract
        raise NotImplementedError

    def _smooth(self, y_true, shape, dtype):
        """The targets as given (labels or rows), or smoothed rows when label_smoothing is on."""
        return y_true

    def _per_position(self, method, y_pred, y_true, need_grad, sample_weight):
        """``method`` (value_and_grad or logits_value_and_grad) of an output with positions, ``(batch,
        ..., classes)``: a segmentation net's ``(batch, height, width, classes)``, a tagger's
        ``(batch, steps, classes)``. As Keras: one cross-entropy per position over the last axis,
        their mean over batch and positions (a sample's weight on each of its positions). Run as
        rows of classes, whose results come back in ``y_pred``'s shape."""
        shape = y_pred.shape
        rows = y_pred.reshape(-1, shape[-1])
        targets = y_true.reshape(-1) if y_true.ndim == len(shape) - 1 else y_true.reshape(-1, shape[-1])
        weights = None
        if sample_weight is not None:  # one per sample, on each of its positions, or one per position
            weights = np.asarray(sample_weight, dtype=rows.dtype)
            weights = weights.reshape(-1) if weights.ndim > 1 else np.repeat(weights, math.prod(shape[1:-1]))
        loss, grad, *probs = method(rows, targets, need_grad, sample_weight=weights)
        return (loss, None if grad is None else grad.reshape(shape), *(q.reshape(shape) for q in probs))

    def logits_value_and_grad(self, logits, y_true, need_grad=True, sample_weight=None):
        """From logits: ``(loss, dL/dlogits or None, softmax probabilities)``."""
        if logits.ndim > 2:
            return self._per_position(self.logits_value_and_grad, logits, y_true, need_grad, sample_weight)
        targets = self._smooth(y_true, logits.shape, logits.dtype)
        return softmax_cross_entropy(logits, targets, need_grad, sample_weight)

    def _per_sample(self, y_pred, y_true):
        """Each sample's cross-entropy ``(batch,)`` (the mean over its positions), from ``y_pred``
        as given: log-softmax of logits, or Keras's renormalised and clipped probabilities (as
        Keras's metrics take them; the loss of a softmax layer is taken from its logits)."""
        classes = y_pred.shape[-1]
        rows = y_pred.reshape(-1, classes)
        sparse = y_true.ndim == y_pred.ndim - 1
        labels = y_true.reshape(-1) if sparse else y_true.reshape(-1, classes)
        targets = self._targets_matrix(self._smooth(labels, rows.shape, rows.dtype), rows.shape)
        if self.from_logits:
            with np.errstate(invalid="ignore", over="ignore"):
                shifted = rows - rows.max(axis=1, keepdims=True)
            log_q = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        else:
            log_q = np.log(np.clip(rows / rows.sum(axis=1, keepdims=True), EPSILON, 1 - EPSILON))
        per_row = -(targets * log_q).sum(axis=1)
        return per_row.reshape(y_pred.shape[0], -1).mean(axis=1)

    def value_and_grad(self, y_pred, y_true, need_grad=True, sample_weight=None):
        if y_pred.ndim > 2:
            return self._per_position(self.value_and_grad, y_pred, y_true, need_grad, sample_weight)
        if self.from_logits:
            loss, grad, _ = self.logits_value_and_grad(y_pred, y_true, need_grad, sample_weight)
            return loss, grad
        # Probabilities, Keras's formula: renormalise rows, clip, -sum(y log q).
        n = y_pred.shape[0]
        target = self._smooth(y_true, y_pred.shape, y_pred.dtype)
        target = self._targets_matrix(target, y_pred.shape).astype(y_pred.dtype, copy=False)
        total = y_pred.sum(axis=1, keepdims=True)
        q = y_pred / total
        clipped = np.clip(q, EPSILON, 1 - EPSILON)
        loss = _weighted_mean(-(target * np.log(clipped)).sum(axis=1), sample_weight)
        if not need_grad:
            return loss, None
        grad_q = np.where(clipped == q, -target / clipped, 0).astype(y_pred.dtype, copy=False) / n
        grad = (grad_q - (grad_q * q).sum(axis=1, keepdims=True)) / total
        return loss, _weight_rows(grad, sample_weight)


class SparseCategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with integer labels ``(batch,)`` in ``[0, classes)``.

    Parameters
    ----------
    from_logits : bool
        ``True`` if the model outputs raw scores (no softmax at the end).
    """

    name = "sparse_categorical_crossentropy"

    def prepare_targets(self, y_true, output_shape):
        # An output with positions (batch, ..., classes): a label per position, as Keras takes them.
        positions = tuple(output_shape[:-1]) if len(output_shape) > 1 else None
        return check_sparse_labels(y_true, output_shape[-1], self.name, positions)

    def _targets_matrix(self, y_true, shape):
        target = np.zeros(shape)
        target[np.arange(shape[0]), y_true] = 1
        return target


def _onehot_targets(y_true, output_shape, who: str) -> np.ndarray:
    """One-hot (or soft) rows ``(batch, ..., classes)`` matching the output, checked: finite, >= 0."""
    y = np.asarray(y_true)
    # (batch, classes), or one-hot rows per position of an output (batch, ..., classes).
    if y.shape[1:] != tuple(output_shape):
        shown = ", ".join(map(str, output_shape))
        hint = ""
        if y.shape[1:] in (tuple(output_shape[:-1]), (*output_shape[:-1], 1)):
            hint = " For integer class labels use loss='sparse_categorical_crossentropy'."
        raise ValueError(f"{who} expects one-hot labels of shape (batch, {shown}); got shape {y.shape}.{hint}")
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{who}: labels must be numbers; got dtype {y.dtype}")
    bad = ~np.isfinite(y) if y.dtype.kind == "f" else np.zeros(y.shape, bool)
    bad |= y < 0
    if bad.any():
        at = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), y.shape))
        raise ValueError(f"{who}: labels must be finite and >= 0 (one-hot rows); got {y[at].item()!r} at index {at}")
    return y.astype(np.float64) if y.dtype.kind != "f" else y


class CategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with one-hot (or soft) labels of shape ``(batch, classes)``.

    Parameters
    ----------
    from_logits : bool
        ``True`` if the model outputs raw scores (no softmax at the end).
    label_smoothing : float in [0, 1]
        Targets become ``y * (1 - label_smoothing) + label_smoothing / classes``, as in Keras.
    """

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, name: str | None = None):
        super().__init__(from_logits, name)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}

    def _smooth(self, y_true, shape, dtype):
        y = y_true.astype(dtype, copy=False)
        if not self.label_smoothing:
            return y
        return y * (1 - self.label_smoothing) + self.label_smoothing / shape[1]

    def prepare_targets(self, y_true, output_shape):
        return _onehot_targets(y_true, output_shape, self.name)

    def _targets_matrix(self, y_true, shape):
        return y_true


class _ElementwiseLoss(Loss):
    """A loss averaged over every output element: targets shaped like the output (or ``(batch,)`` for one)."""

    def prepare_targets(self, y_true, output_shape):
        y = np.asarray(y_true)
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: targets must be numbers; got dtype {y.dtype}")
        if y.shape[1:] != tuple(output_shape):
            if tuple(output_shape) == (1,) and y.ndim == 1:
                return y.reshape(-1, 1)
            raise ValueError(
                f"{self.name}: targets of shape {y.shape} do not match the model output "
                f"(batch, {', '.join(map(str, output_shape))})"
            )
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            index = np.unravel_index(int(np.argmax(~np.isfinite(y))), y.shape)
            raise ValueError(
                f"{self.name}: targets must be finite; got {y[index].item()!r} at index "
                f"{tuple(int(i) for i in index)} (a NaN target would make every loss and update NaN)"
            )
        return y

    _position_weights = True

    def value_and_grad(self, y_pred, y_true, need_grad=True, sample_weight=None):
        if self._as_one_vector(y_pred):
            w = None if sample_weight is None else np.full(1, np.mean(sample_weight))
            loss, grad = self.value_and_grad(y_pred[None], np.asarray(y_true).reshape(1, -1), need_grad, w)
            return loss, None if grad is None else grad[0]
        values, derivative = self._terms(y_pred, y_true.astype(y_pred.dtype, copy=False), need_grad)
        scale = self._scale(y_pred)
        per_position = _position_weights(sample_weight, y_pred.shape)
        if per_position is not None:  # each position's loss (its last axis reduced) weighed, then the mean
            w = per_position.astype(y_pred.dtype, copy=False)
            loss = float((values * w).sum()) * scale / values.size
            return loss, (derivative * w * (scale / values.size) if need_grad else None)
        loss = _weighted_mean(values.reshape(len(values), -1).mean(axis=1) * scale, sample_weight)
        if not need_grad:
            return loss, None
        return loss, _weight_rows(derivative * (scale / values.size), sample_weight)

    def _per_sample(self, y_pred, y_true):
        """Each sample's loss ``(batch,)``, whose mean :meth:`value_and_grad` gives (the metrics' values)."""
        if self._as_one_vector(y_pred):
            y_pred, y_true = y_pred[None], np.asarray(y_true).reshape(1, -1)
        values, _ = self._terms(y_pred, y_true.astype(y_pred.dtype, copy=False), False)
        return values.reshape(len(values), -1).mean(axis=1) * self._scale(y_pred)

    def _scale(self, y_pred) -> int:
        # Keras reduces the last axis first: by its mean, or (KLDivergence) by its sum.
        return y_pred.shape[-1] if self._sums_last_axis and y_pred.ndim > 1 else 1

    def _as_one_vector(self, y_pred) -> bool:
        """A 1-D output under a loss that sums its last axis: one vector (Keras's reading)."""
        return self._sums_last_axis and y_pred.ndim == 1

    #: True where Keras sums the last axis (KLDivergence) rather than averaging it.
    _sums_last_axis = False

    def _terms(self, y_pred, y_true, need_grad):
        """Each element's loss, and (with ``need_grad``) its derivative by ``y_pred``; by default
        functions of the difference ``y_pred - y_true`` (:meth:`_elementwise`, :meth:`_derivative`)."""
        diff = y_pred - y_true
        return self._elementwise(diff), (self._derivative(diff) if need_grad else None)

    def _elementwise(self, diff):  # pragma: no cover - abstract
        raise NotImplementedError

    def _derivative(self, diff):  # pragma: no cover - abstract
        raise NotImplementedError


class MeanSquaredError(_ElementwiseLoss):
    """Mean of ``(y_pred - y_true) ** 2`` over all elements (Keras's ``'mse'``)."""

    name = "mean_squared_error"

    def _elementwise(self, diff):
        return diff * diff

    def _derivative(self, diff):
        return 2 * diff


class MeanAbsoluteError(_ElementwiseLoss):
    """Mean of ``|y_pred - y_true|`` (Keras's ``'mae'``); gradient ``sign(diff)`` (0 at 0)."""

    name = "mean_absolute_error"

    def _elementwise(self, diff):
        return np.abs(diff)

    def _derivative(self, diff):
        return np.sign(diff)


class Huber(_ElementwiseLoss):
    """Huber loss, Keras's ``Huber(delta=1.0)``: ``0.5 d**2`` for ``|d| <= delta``, else
    ``delta * (|d| - 0.5 * delta)``, averaged over all elements."""

    name = "huber"

    def __init__(self, delta: float = 1.0, name: str | None = None):
        super().__init__(name)
        if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating)) or not delta > 0:
            raise ValueError(f"Huber delta must be a number > 0; got {delta!r}")
        self.delta = float(delta)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}

    def _elementwise(self, diff):
        a = np.abs(diff)
        return np.where(a <= self.delta, 0.5 * diff * diff, self.delta * (a - 0.5 * self.delta))

    def _derivative(self, diff):
        return np.clip(diff, -self.delta, self.delta)


class BinaryCrossentropy(_ElementwiseLoss):
    """Binary cross-entropy for 0/1 targets, Keras's ``'binary_crossentropy'``; pair it with
    ``Dense(1, activation='sigmoid')`` (or ``from_logits=True`` and no activation).

    Per element ``-(y log p + (1 - y) log(1 - p))`` with ``p`` clipped to
    ``[1e-7, 1 - 1e-7]`` (Keras's rule), averaged over all outputs; targets
    of shape ``(batch,)`` fit an output ``(batch, 1)``. With
    ``from_logits=True`` the loss is computed from the logits ``z`` without
    overflow: ``max(z, 0) - z y + log(1 + exp(-|z|))``, gradient
    ``sigmoid(z) - y``. ``label_smoothing`` moves targets towards 0.5:
    ``y * (1 - s) + 0.5 * s``.
    """

    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, name: str | None = None):
        super().__init__(name)
        self.from_logits = _check_flag(from_logits, "from_logits")
        self.label_smoothing = _check_smoothing(label_smoothing)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}

    def prepare_targets(self, y_true, output_shape):
        y = super().prepare_targets(y_true, output_shape)
        bad = ~np.isfinite(y) if y.dtype.kind == "f" else np.zeros(y.shape, bool)
        bad |= (y < 0) | (y > 1)
        if bad.any():
            i = np.unravel_index(int(np.argmax(bad)), y.shape)
            where = tuple(int(k) for k in i)  # plain ints, not NumPy 2's np.int64(...) reprs
            raise ValueError(f"{self.name}: targets must be in [0, 1]; got {y[i].item()!r} at index {where}")
        return y

    def value_and_grad(self, y_pred, y_true, need_grad=True, sample_weight=None):
        per, grad = self._elements(y_pred, y_true, need_grad)
        per_position = _position_weights(sample_weight, y_pred.shape)
        if per_position is not None:
            w = per_position.astype(y_pred.dtype, copy=False)
            loss = float((per * w).sum()) / per.size
            return loss, (None if grad is None else (grad * w / per.size).astype(y_pred.dtype, copy=False))
        loss = _weighted_mean(per.reshape(len(per), -1).mean(axis=1), sample_weight)
        if grad is not None:
            grad = _weight_rows((grad / y_pred.size).astype(y_pred.dtype, copy=False), sample_weight)
        return loss, grad

    def _per_sample(self, y_pred, y_true):
        per, _ = self._elements(y_pred, y_true, False)
        return per.reshape(len(per), -1).mean(axis=1)

    def _elements(self, y_pred, y_true, need_grad):
        """Each output's loss, and (with ``need_grad``) its derivative by ``y_pred``."""
        y = y_true.astype(y_pred.dtype, copy=False)
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            z = y_pred
            per = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
            return per, (_sigmoid(z) - y if need_grad else None)
        p = np.clip(y_pred, EPSILON, 1 - EPSILON)
        per = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        if not need_grad:
            return per, None
        inside = (y_pred > EPSILON) & (y_pred < 1 - EPSILON)
        return per, np.where(inside, (p - y) / (p * (1 - p)), 0)


def _softplus(z):
    """``log(1 + exp(z))`` without overflow."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _check_number(value, name: str, low: float, high: float | None = None) -> float:
    """A real number in ``[low, high]`` (``high`` None: no upper bound), as a float."""
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))
    if ok and np.isfinite(value) and value >= low and (high is None or value <= high):
        return float(value)
    span = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
    raise ValueError(f"{name} must be a number {span}; got {value!r}")


class MeanAbsolutePercentageError(_ElementwiseLoss):
    """Keras's ``'mape'``: ``100 * |y_true - y_pred| / max(|y_true|, 1e-7)``, averaged over all
    outputs. Targets near 0 make it huge, as in Keras."""

    name = "mean_absolute_percentage_error"

    def _terms(self, y_pred, y_true, need_grad):
        scale = 100.0 / np.maximum(np.abs(y_true), EPSILON)
        diff = y_pred - y_true
        return np.abs(diff) * scale, (np.sign(diff) * scale if need_grad else None)


class MeanSquaredLogarithmicError(_ElementwiseLoss):
    """Keras's ``'msle'``: ``(log(1 + max(y_pred, 1e-7)) - log(1 + max(y_true, 1e-7))) ** 2``,
    averaged: relative errors of non-negative quantities (prices, counts). A prediction below
    1e-7 is taken as 1e-7, so its gradient is 0 there, as in Keras."""

    name = "mean_squared_logarithmic_error"

    def _terms(self, y_pred, y_true, need_grad):
        shifted = np.maximum(y_pred, EPSILON) + 1
        gap = np.log(shifted) - np.log(np.maximum(y_true, EPSILON) + 1)
        if not need_grad:
            return gap * gap, None
        eps = y_pred.dtype.type(EPSILON)  # compared in y_pred's dtype, as Keras's maximum does
        share = _tie_share(y_pred - eps)  # a tie: half, as PyTorch's
        return gap * gap, share * 2 * gap / shifted


class LogCosh(_ElementwiseLoss):
    """Keras's ``LogCosh``: ``log(cosh(y_pred - y_true))`` averaged; about ``d**2 / 2`` for small
    errors and ``|d| - log 2`` for large ones (a smooth Huber). Computed without overflow as
    ``d + softplus(-2 d) - log 2``; its gradient is ``tanh(d)``."""

    name = "log_cosh"

    def _elementwise(self, diff):
        return diff + _softplus(-2 * diff) - math.log(2.0)

    def _derivative(self, diff):
        return np.tanh(diff)


def _tie_share(margin):
    """The derivative of ``max(margin, 0)`` by ``margin``, in its dtype: 1 above 0, 0 below, and
    half at 0, as PyTorch's maximum (Keras on torch) shares a tie."""
    t = margin.dtype.type
    return np.where(margin > 0, t(1), np.where(margin == 0, t(0.5), t(0)))


def _hinge_targets(y):
    """Keras's rule for the hinge losses: targets that are all 0 or 1 (in this call) are taken
    as -1 and 1; any other targets (-1/1 already) as they are."""
    return 2 * y - 1 if np.all((y == 0) | (y == 1)) else y


class Hinge(_ElementwiseLoss):
    """Keras's ``'hinge'``: ``max(1 - y_true * y_pred, 0)`` averaged, for -1/1 targets (0/1
    targets are taken as -1/1, as in Keras) and a raw score output (no sigmoid)."""

    name = "hinge"

    def _terms(self, y_pred, y_true, need_grad):
        y = _hinge_targets(y_true)
        raw = 1 - y * y_pred
        margin = np.maximum(raw, 0)
        if not need_grad:
            return margin, None
        return margin, -y * _tie_share(raw)


class SquaredHinge(_ElementwiseLoss):
    """Keras's ``'squared_hinge'``: ``max(1 - y_true * y_pred, 0) ** 2`` averaged; targets as
    :class:`Hinge` takes them."""

    name = "squared_hinge"

    def _terms(self, y_pred, y_true, need_grad):
        y = _hinge_targets(y_true)
        margin = np.maximum(1 - y * y_pred, 0)
        return margin * margin, (-2 * y * margin if need_grad else None)


class Poisson(_ElementwiseLoss):
    """Keras's ``'poisson'``: ``y_pred - y_true * log(y_pred + 1e-7)`` averaged, for counts
    (pair it with an output that stays positive, e.g. ``activation='softplus'`` or
    ``'exponential'``). A negative prediction gives NaN, as in Keras, which fit reports."""

    name = "poisson"

    def _terms(self, y_pred, y_true, need_grad):
        shifted = y_pred + EPSILON
        with np.errstate(invalid="ignore", divide="ignore"):
            values = y_pred - y_true * np.log(shifted)
            return values, (1 - y_true / shifted if need_grad else None)


class KLDivergence(_ElementwiseLoss):
    """Keras's ``'kl_divergence'`` (``'kld'``): ``sum(y_true * log(y_true / y_pred))`` over the
    last axis, both clipped to ``[1e-7, 1]``, then averaged over the batch (and any positions).
    For distributions: soft targets, a teacher's probabilities in distillation. A prediction
    outside ``[1e-7, 1]`` gets no gradient, as in Keras."""

    name = "kl_divergence"
    _sums_last_axis = True

    def _terms(self, y_pred, y_true, need_grad):
        y = np.clip(y_true, EPSILON, 1)
        p = np.clip(y_pred, EPSILON, 1)
        values = y * np.log(y / p)
        if not need_grad:
            return values, None
        return values, np.where((y_pred >= EPSILON) & (y_pred <= 1), -y / p, 0)


class _RowLoss(_ElementwiseLoss):
    """A loss of each row of the output's last axis (Keras's reduction over ``axis=-1``), then
    averaged over the other positions and the batch. Subclasses implement :meth:`_rows`."""

    def value_and_grad(self, y_pred, y_true, need_grad=True, sample_weight=None):
        if y_pred.ndim == 1:
            # One vector, as Keras reduces the last axis (its weights: their mean, as Keras's sum over a batch of 1).
            w = None if sample_weight is None else np.full(1, np.mean(sample_weight))
            loss, grad = self.value_and_grad(y_pred[None], np.asarray(y_true).reshape(1, -1), need_grad, w)
            return loss, None if grad is None else grad[0]
        shape = y_pred.shape
        rows = y_pred.reshape(-1, shape[-1])
        values, grad = self._rows(rows, y_true.astype(y_pred.dtype, copy=False).reshape(rows.shape), need_grad)
        per_position = _position_weights(sample_weight, shape)
        if per_position is not None:  # one weight per row
            w = per_position.reshape(-1).astype(y_pred.dtype, copy=False)
            loss = float(values @ w) / len(values)
            return loss, (grad * (w[:, None] / len(values))).reshape(shape) if need_grad else None
        loss = _weighted_mean(values.reshape(shape[0], -1).mean(axis=1), sample_weight)
        if not need_grad:
            return loss, None
        return loss, _weight_rows(grad.reshape(shape) * (1.0 / len(values)), sample_weight)

    def _per_sample(self, y_pred, y_true):
        if y_pred.ndim == 1:  # one vector, as above
            y_pred, y_true = y_pred[None], np.asarray(y_true).reshape(1, -1)
        rows = y_pred.reshape(-1, y_pred.shape[-1])
        values, _ = self._rows(rows, y_true.astype(y_pred.dtype, copy=False).reshape(rows.shape), False)
        return values.reshape(y_pred.shape[0], -1).mean(axis=1)

    def _rows(self, y_pred, y_true, need_grad):  # pragma: no cover - abstract
        """``(loss of each row (R,), its gradient by the rows (R, C) or None)``."""
        raise NotImplementedError


class CosineSimilarity(_RowLoss):
    """Keras's ``CosineSimilarity`` loss: ``-sum(unit(y_true) * unit(y_pred))`` over the last
    axis, where ``unit(v) = v / max(|v|, 1e-7)``: -1 for the same direction, 0 for orthogonal
    vectors (or a zero vector), averaged over the batch."""

    name = "cosine_similarity"

    def _rows(self, y_pred, y_true, need_grad):
        inv_true = 1 / np.maximum(np.sqrt((y_true * y_true).sum(axis=1, keepdims=True)), EPSILON)
        norm = np.sqrt((y_pred * y_pred).sum(axis=1, keepdims=True))
        inv = 1 / np.maximum(norm, EPSILON)
        true_unit, unit = y_true * inv_true, y_pred * inv
        cosine = (true_unit * unit).sum(axis=1, keepdims=True)
        if not need_grad:
            return -cosine[:, 0], None
        # d(unit)/d(y_pred) is (I - unit unit^T) / |y_pred|, or I / 1e-7 for a vector shorter than that
        return -cosine[:, 0], -(true_unit - np.where(norm > EPSILON, cosine, 0) * unit) * inv


class CategoricalHinge(_RowLoss):
    """Keras's ``'categorical_hinge'``: ``max(neg - pos + 1, 0)`` per sample, where ``pos`` is
    the score of the true class (``sum(y_true * y_pred)``) and ``neg`` the highest score of the
    others (``max((1 - y_true) * y_pred)``); one-hot targets, raw score outputs. Where several
    scores tie for ``neg``, its gradient is shared among them, as in Keras (PyTorch's amax)."""

    name = "categorical_hinge"

    def prepare_targets(self, y_true, output_shape):
        return _onehot_targets(y_true, output_shape, self.name)

    def _rows(self, y_pred, y_true, need_grad):
        others = (1 - y_true) * y_pred
        neg = others.max(axis=1, keepdims=True)
        raw = neg[:, 0] - (y_true * y_pred).sum(axis=1) + 1
        values = np.maximum(raw, 0)
        if not need_grad:
            return values, None
        ties = (others == neg).astype(y_pred.dtype)
        grad = ties / ties.sum(axis=1, keepdims=True) * (1 - y_true) - y_true
        return values, grad * _tie_share(raw)[:, None]


class BinaryFocalCrossentropy(BinaryCrossentropy):
    """Keras's ``BinaryFocalCrossentropy``: binary cross-entropy scaled by ``(1 - p_t) ** gamma``
    (``p_t`` the probability given to the true value), so that easy samples weigh less (Lin et
    al., 2017); ``apply_class_balancing=True`` also weighs targets 1 by ``alpha`` and 0 by
    ``1 - alpha``. ``gamma=0`` without balancing is :class:`BinaryCrossentropy`. Targets in
    ``[0, 1]``; ``from_logits`` and ``label_smoothing`` as there (probabilities clipped to
    ``[1e-7, 1 - 1e-7]`` in the cross-entropy, as in Keras; no logits shortcut)."""

    name = "binary_focal_crossentropy"

    def __init__(self, apply_class_balancing: bool = False, alpha: float = 0.25, gamma: float = 2.0,
                 from_logits: bool = False, label_smoothing: float = 0.0, name: str | None = None):
        super().__init__(from_logits, label_smoothing, name)
        self.apply_class_balancing = _check_flag(apply_class_balancing, "apply_class_balancing")
        self.alpha = _check_number(alpha, "alpha", 0.0, 1.0)
        self.gamma = _check_number(gamma, "gamma", 0.0)

    def get_config(self):
        return {**super().get_config(), "apply_class_balancing": self.apply_class_balancing, "alpha": self.alpha,
                "gamma": self.gamma}

    def _elements(self, y_pred, y_true, need_grad):
        y = y_true.astype(y_pred.dtype, copy=False)
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        p = _sigmoid(y_pred) if self.from_logits else y_pred
        clipped = np.clip(p, EPSILON, 1 - EPSILON)
        bce = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
        distance = 1 - (y * p + (1 - y) * (1 - p))  # 1 - p_t
        focal = distance ** self.gamma
        balance = y * self.alpha + (1 - y) * (1 - self.alpha) if self.apply_class_balancing else 1
        per = focal * bce * balance
        if not need_grad:
            return per, None
        inside = (p >= EPSILON) & (p <= 1 - EPSILON)
        grad = focal * np.where(inside, (clipped - y) / (clipped * (1 - clipped)), 0)
        if self.gamma:  # d(1 - p_t)/dp = 1 - 2y
            with np.errstate(divide="ignore", invalid="ignore"):
                grad = grad + self.gamma * distance ** (self.gamma - 1) * (1 - 2 * y) * bce
        grad = grad * balance
        return per, (grad * p * (1 - p) if self.from_logits else grad)


class CategoricalFocalCrossentropy(_RowLoss):
    """Keras's ``CategoricalFocalCrossentropy``: ``sum(alpha * (1 - q) ** gamma * -y * log(q))``
    over the classes, ``q`` the predicted probabilities renormalised and clipped to ``[1e-7,
    1 - 1e-7]`` (a softmax of the outputs with ``from_logits=True``), for class imbalance without
    ``class_weight``. One-hot targets; ``alpha`` a number or one per class; ``label_smoothing``
    as in :class:`CategoricalCrossentropy`. Computed as Keras writes it, from the probabilities,
    not fused with the softmax as the plain cross-entropy is."""

    name = "categorical_focal_crossentropy"

    def __init__(self, alpha=0.25, gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0,
                 name: str | None = None):
        super().__init__(name)
        if isinstance(alpha, (list, tuple, np.ndarray)):
            if np.ndim(np.asarray(alpha, dtype=object)) != 1:
                raise ValueError(f"alpha must be a number or a flat list of one number per class; got {alpha!r}")
            self.alpha = [_check_number(a, "alpha", 0.0) for a in alpha]
            if not self.alpha:
                raise ValueError("alpha must be a number or one number per class; got an empty list")
        else:
            self.alpha = _check_number(alpha, "alpha", 0.0)
        self.gamma = _check_number(gamma, "gamma", 0.0)
        self.from_logits = _check_flag(from_logits, "from_logits")
        self.label_smoothing = _check_smoothing(label_smoothing)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}

    def prepare_targets(self, y_true, output_shape):
        if isinstance(self.alpha, list) and len(self.alpha) != output_shape[-1]:
            raise ValueError(f"{self.name}: alpha has {len(self.alpha)} values, but the output has "
                             f"{output_shape[-1]} classes: give one per class, or a number")
        return _onehot_targets(y_true, output_shape, self.name)

    def _rows(self, y_pred, y_true, need_grad):
        classes = y_pred.shape[1]
        y = y_true
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + self.label_smoothing / classes
        alpha = np.asarray(self.alpha, dtype=y_pred.dtype)
        if alpha.ndim and alpha.shape[0] != classes:
            raise ValueError(f"{self.name}: alpha has {alpha.shape[0]} values for outputs of {classes} classes")
        if self.from_logits:
            with np.errstate(invalid="ignore", over="ignore"):
                q = np.exp(y_pred - y_pred.max(axis=1, keepdims=True))
            q /= q.sum(axis=1, keepdims=True)
        else:
            q = y_pred
        total = q.sum(axis=1, keepdims=True)
        out = q / total
        clipped = np.clip(out, EPSILON, 1 - EPSILON)
        log_q = np.log(clipped)
        modulation = (1 - clipped) ** self.gamma
        values = (alpha * modulation * -y * log_q).sum(axis=1)
        if not need_grad:
            return values, None
        grad_clipped = -modulation * y / clipped
        if self.gamma:
            grad_clipped += self.gamma * (1 - clipped) ** (self.gamma - 1) * y * log_q
        grad_out = np.where((out >= EPSILON) & (out <= 1 - EPSILON), alpha * grad_clipped, 0)
        grad = (grad_out - (grad_out * out).sum(axis=1, keepdims=True)) / total  # through the renormalisation
        if self.from_logits:  # through the softmax
            grad = q * (grad - (grad * q).sum(axis=1, keepdims=True))
        return values, grad


_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,  # Keras's alias (and 'BCE': names are matched in any case)
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "huber": Huber,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mape": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "msle": MeanSquaredLogarithmicError,
    "log_cosh": LogCosh,
    "hinge": Hinge,
    "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge,
    "poisson": Poisson,
    "kl_divergence": KLDivergence,
    "kld": KLDivergence,
    "cosine_similarity": CosineSimilarity,
    "binary_focal_crossentropy": BinaryFocalCrossentropy,
    "categorical_focal_crossentropy": CategoricalFocalCrossentropy,
}
# Keras's class names work as strings too: loss="BinaryCrossentropy".
_BY_NAME.update({cls.__name__.lower(): cls for cls in set(_BY_NAME.values())})


def get(identifier) -> Loss:
    """A loss from a name, an instance, or a ``{'class_name', 'config'}`` dict (:func:`serialize`'s,
    or Keras's, e.g. ``{'class_name': 'MeanSquaredError', 'config': {...}}``)."""
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, Loss):
        identifier._refuse_ignored_call()
        if type(identifier).value_and_grad is Loss.value_and_grad:  # a Keras-style subclass with call()
            raise TypeError(
                f"loss {type(identifier).__name__} does not implement value_and_grad: convforge has no automatic "
                "differentiation, so a custom loss must implement value_and_grad(y_pred, y_true) (the loss and its "
                "gradient), not Keras's call(y_true, y_pred)"
            )
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if callable(identifier) and globals().get(getattr(identifier, "__name__", None)) is identifier \
            and hasattr(identifier, "_loss_class"):  # Keras's function of that loss (keras.losses.mse...)
        return identifier._loss_class()
    if isinstance(identifier, str):
        raise ValueError(f"loss must be one of {sorted(_BY_NAME)} or a convforge.losses.Loss; got {identifier!r}")
    if callable(identifier):
        raise TypeError(
            f"loss {identifier!r} is a plain function: convforge has no automatic differentiation, so a custom loss "
            "must subclass convforge.losses.Loss and implement value_and_grad(y_pred, y_true)"
        )
    raise TypeError(f"loss must be a name such as 'sparse_categorical_crossentropy' or a Loss; got {identifier!r}")


def serialize(loss: Loss) -> dict | None:
    for name, cls in _BY_NAME.items():
        if type(loss) is cls and name == cls.name:
            return {"class_name": name, "config": loss.get_config()}
    return None


def deserialize(config: dict) -> Loss:
    # Class names in any case ('MeanSquaredError' as Keras writes them, 'mean_squared_error' as serialize does).
    name = config.get("class_name") if isinstance(config, dict) else None
    if not isinstance(name, str) or name.lower() not in _BY_NAME or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"unknown loss description {config!r}")
    return _BY_NAME[name.lower()](**config.get("config", {}))


def _keras_function(name: str, cls: type):
    """Keras 3's function ``name(y_true, y_pred, **arguments)``: each sample's loss ``(batch,)``,
    and, given to ``compile(loss=...)`` (or as a metric), the built-in loss ``cls(**arguments)``
    is what trains (convforge differentiates its own losses, not functions)."""

    def function(y_true, y_pred, **arguments):
        loss = cls(**arguments)
        y_pred = np.asarray(y_pred)
        if y_pred.dtype.kind != "f":
            y_pred = y_pred.astype(np.float32)
        if y_pred.ndim == 0:
            raise ValueError(f"{name}: y_pred must be an array (batch, ...); got the number {y_pred}")
        one = y_pred.ndim == 1  # one vector, as Keras reduces the last axis: its one value
        if one:
            y_pred, y_true = y_pred[None], np.asarray(y_true).reshape(1, -1)
        values = loss._per_sample(y_pred, loss.prepare_targets(y_true, y_pred.shape[1:]))
        values = np.asarray(values, dtype=y_pred.dtype)  # float32 for float32 scores, as Keras's
        return values[0] if one else values

    function.__name__ = function.__qualname__ = name
    function.__doc__ = (
        f"Keras's ``{name}(y_true, y_pred)``: each sample's {cls.__name__} loss, shape ``(batch,)`` (Keras "
        f"gives an output with positions one value per position: here their mean). ``compile(loss={name})`` "
        f"trains with ``losses.{cls.__name__}()``; keyword arguments go to it."
    )
    function._loss_class = cls
    return function


# Keras's loss functions, for compile(loss=keras.losses.mean_squared_error) and direct calls.
_KERAS_FUNCTIONS = ("binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
                   "categorical_focal_crossentropy", "categorical_hinge", "cosine_similarity", "hinge", "huber",
                   "kl_divergence", "log_cosh", "mean_absolute_error", "mean_absolute_percentage_error",
                   "mean_squared_error", "mean_squared_logarithmic_error", "poisson",
                   "sparse_categorical_crossentropy", "squared_hinge")
for _name in _KERAS_FUNCTIONS:
    globals()[_name] = _keras_function(_name, _BY_NAME[_name])
del _name

__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())

# A Keras argument a class here lacks (clipnorm, reduction, class_id, ...) gets a TypeError
# naming it and what to do instead, not Python's bare "unexpected keyword argument".
for _cls in [v for v in list(globals().values()) if isinstance(v, type) and issubclass(v, Loss)]:
    _unsupported.check_arguments(_cls)
