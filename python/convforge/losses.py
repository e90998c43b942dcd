"""Loss functions: cross-entropy (integer labels, one-hot rows, binary), mean squared and absolute error, Huber.

``model.compile(loss='sparse_categorical_crossentropy')`` (integer labels) or
``'categorical_crossentropy'`` (one-hot labels) or ``'mse'``; or an instance,
e.g. ``losses.SparseCategoricalCrossentropy(from_logits=True)`` for a model
whose last layer has no activation. Every loss is the mean over the batch.

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

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Huber",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
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

    def __init__(self, name: str | None = None):
        # Keras's signature: a subclass of one's own calls super().__init__(name=name).
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a string; got {name!r}")
            self.name = name

    def __call__(self, y_true, y_pred, sample_weight=None) -> float:
        y_pred = np.asarray(y_pred)
        if y_pred.dtype.kind != "f":
            y_pred = y_pred.astype(np.float64)
        y_true = self.prepare_targets(y_true, y_pred.shape[1:])
        if sample_weight is None:
            return self.value_and_grad(y_pred, y_true, need_grad=False)[0]
        weights = np.asarray(sample_weight, dtype=y_pred.dtype)
        if isinstance(self, _Crossentropy) and y_pred.ndim > 2 and weights.shape == y_pred.shape[:-1]:
            # a weight per pixel or step, as Keras takes them for a class per position
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
        y = np.asarray(y_true)
        # (batch, classes), or one-hot rows per position of an output (batch, ..., classes).
        if y.shape[1:] != tuple(output_shape):
            shown = ", ".join(map(str, output_shape))
            hint = ""
            if y.shape[1:] in (tuple(output_shape[:-1]), (*output_shape[:-1], 1)):
                hint = " For integer class labels use loss='sparse_categorical_crossentropy'."
            raise ValueError(
                f"{self.name} expects one-hot labels of shape (batch, {shown}); got shape {y.shape}.{hint}"
            )
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: labels must be numbers; got dtype {y.dtype}")
        bad = ~np.isfinite(y) if y.dtype.kind == "f" else np.zeros(y.shape, bool)
        bad |= y < 0
        if bad.any():
            at = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), y.shape))
            raise ValueError(
                f"{self.name}: labels must be finite and >= 0 (one-hot rows); got {y[at].item()!r} at index {at}"
            )
        return y.astype(np.float64) if y.dtype.kind != "f" else y

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

    def value_and_grad(self, y_pred, y_true, need_grad=True, sample_weight=None):
        diff = y_pred - y_true.astype(y_pred.dtype, copy=False)
        loss = _weighted_mean(self._elementwise(diff).reshape(len(diff), -1).mean(axis=1), sample_weight)
        if not need_grad:
            return loss, None
        return loss, _weight_rows(self._derivative(diff) * (1.0 / diff.size), sample_weight)

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
        y = y_true.astype(y_pred.dtype, copy=False)
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        size = y_pred.size
        if self.from_logits:
            z = y_pred
            per = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
            grad = None
            if need_grad:
                e = np.exp(-np.abs(z))
                sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
                grad = (sig - y) / size
        else:
            p = np.clip(y_pred, EPSILON, 1 - EPSILON)
            per = -(y * np.log(p) + (1 - y) * np.log(1 - p))
            grad = None
            if need_grad:
                inside = (y_pred > EPSILON) & (y_pred < 1 - EPSILON)
                grad = np.where(inside, (p - y) / (p * (1 - p)), 0) / size
        loss = _weighted_mean(per.reshape(len(per), -1).mean(axis=1), sample_weight)
        if grad is not None:
            grad = _weight_rows(grad.astype(y_pred.dtype, copy=False), sample_weight)
        return loss, grad


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
}
# Keras's class names work as strings too: loss="BinaryCrossentropy".
_BY_NAME.update({cls.__name__.lower(): cls for cls in set(_BY_NAME.values())})


def get(identifier) -> Loss:
    """A loss from a name, an instance, or a ``{'class_name', 'config'}`` dict (:func:`serialize`'s,
    or Keras's, e.g. ``{'class_name': 'MeanSquaredError', 'config': {...}}``)."""
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, Loss):
        if type(identifier).value_and_grad is Loss.value_and_grad:  # a Keras-style subclass with call()
            raise TypeError(
                f"loss {type(identifier).__name__} does not implement value_and_grad: convforge has no automatic "
                "differentiation, so a custom loss must implement value_and_grad(y_pred, y_true) (the loss and its "
                "gradient), not Keras's call(y_true, y_pred)"
            )
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
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


from . import _unsupported  # noqa: E402

__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())

# A Keras argument a class here lacks (clipnorm, reduction, class_id, ...) gets a TypeError
# naming it and what to do instead, not Python's bare "unexpected keyword argument".
for _cls in [v for v in list(globals().values()) if isinstance(v, type) and issubclass(v, Loss)]:
    _unsupported.check_arguments(_cls)
