"""Loss functions: cross-entropy (integer or one-hot labels) and mean squared error.

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

Custom losses subclass :class:`Loss` and implement ``value_and_grad``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CategoricalCrossentropy",
    "Loss",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "check_sparse_labels",
    "get",
    "softmax_cross_entropy",
]

EPSILON = 1e-7  # Keras's backend.epsilon(), used to clip probabilities


def check_sparse_labels(y, num_classes: int, who: str = "sparse_categorical_crossentropy") -> np.ndarray:
    """Integer class labels as int64 of shape (batch,), or ValueError naming the first bad label.

    Accepts integer arrays, and float arrays holding whole numbers (Keras
    users often have ``y.astype('float32')``); shape ``(batch,)`` or
    ``(batch, 1)``.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = ""
        if y.ndim == 2 and y.shape[1] == num_classes:
            hint = " These look like one-hot labels: use loss='categorical_crossentropy' for them."
        raise ValueError(f"{who} expects integer class labels of shape (batch,); got shape {y.shape}.{hint}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        bad[~bad] = y[~bad] != np.floor(y[~bad])
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{who}: labels must be integer class indices in [0, {num_classes}); got {y[i].item()!r} at index {i}"
            )
    elif y.dtype.kind not in "iub":
        raise TypeError(f"{who}: labels must be integers; got an array of dtype {y.dtype}")
    out_of_range = (y < 0) | (y >= num_classes)
    if out_of_range.any():
        i = int(np.argmax(out_of_range))
        value = y[i].item()
        raise ValueError(
            f"{who}: label {value!r} at index {i} is out of range: labels must be in [0, {num_classes}) "
            f"for a model with {num_classes} outputs"
        )
    return y.astype(np.int64)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, need_grad: bool = True):
    """Mean cross-entropy of ``softmax(logits)`` against labels, from the logits.

    Parameters
    ----------
    logits : ndarray, shape (N, C)
    labels : ndarray
        int64 class indices ``(N,)``, or target distributions ``(N, C)`` (one-hot).
    need_grad : bool
        Also return ``dL/dlogits``.

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
        loss = float((log_total[:, 0] - shifted[rows, labels]).sum()) / n
        if not need_grad:
            return loss, None, probs
        grad = probs.copy()
        grad[rows, labels] -= 1
    else:
        mass = labels.sum(axis=1, keepdims=True)
        loss = float(((log_total * mass)[:, 0] - (labels * shifted).sum(axis=1)).sum()) / n
        if not need_grad:
            return loss, None, probs
        grad = probs * mass - labels
    grad /= n
    return loss, grad, probs


class Loss:
    """Base class. Subclasses implement :meth:`value_and_grad` (and usually :meth:`prepare_targets`).

    ``loss(y_true, y_pred)`` returns the mean loss as a float, Keras style.
    """

    name = "loss"

    def __call__(self, y_true, y_pred) -> float:
        y_pred = np.asarray(y_pred)
        if y_pred.dtype.kind != "f":
            y_pred = y_pred.astype(np.float64)
        return self.value_and_grad(y_pred, self.prepare_targets(y_true, y_pred.shape[1:]), need_grad=False)[0]

    def prepare_targets(self, y_true, output_shape) -> np.ndarray:
        """Check ``y_true`` against the per-sample output shape once, before training."""
        return np.asarray(y_true)

    def value_and_grad(self, y_pred: np.ndarray, y_true: np.ndarray, need_grad: bool = True):
        """``(mean loss, dL/dy_pred or None)`` for a batch."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _Crossentropy(Loss):
    def __init__(self, from_logits: bool = False):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits must be True or False; got {from_logits!r}")
        self.from_logits = bool(from_logits)

    def get_config(self):
        return {"from_logits": self.from_logits}

    def _targets_matrix(self, y_true, shape):  # pragma: no cover - abstract
        raise NotImplementedError

    def logits_value_and_grad(self, logits, y_true, need_grad=True):
        """From logits: ``(loss, dL/dlogits or None, softmax probabilities)``."""
        return softmax_cross_entropy(logits, y_true, need_grad)

    def value_and_grad(self, y_pred, y_true, need_grad=True):
        if self.from_logits:
            loss, grad, _ = softmax_cross_entropy(y_pred, y_true, need_grad)
            return loss, grad
        # Probabilities, Keras's formula: renormalise rows, clip, -sum(y log q).
        n = y_pred.shape[0]
        target = self._targets_matrix(y_true, y_pred.shape).astype(y_pred.dtype, copy=False)
        total = y_pred.sum(axis=1, keepdims=True)
        q = y_pred / total
        clipped = np.clip(q, EPSILON, 1 - EPSILON)
        loss = float(np.mean(-(target * np.log(clipped)).sum(axis=1)))
        if not need_grad:
            return loss, None
        grad_q = np.where(clipped == q, -target / clipped, 0).astype(y_pred.dtype, copy=False) / n
        grad = (grad_q - (grad_q * q).sum(axis=1, keepdims=True)) / total
        return loss, grad


class SparseCategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with integer labels ``(batch,)`` in ``[0, classes)``.

    Parameters
    ----------
    from_logits : bool
        ``True`` if the model outputs raw scores (no softmax at the end).
    """

    name = "sparse_categorical_crossentropy"

    def prepare_targets(self, y_true, output_shape):
        if len(output_shape) != 1:
            raise ValueError(f"{self.name} needs a model output of shape (batch, classes); got (batch, {output_shape})")
        return check_sparse_labels(y_true, output_shape[0], self.name)

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
    """

    name = "categorical_crossentropy"

    def prepare_targets(self, y_true, output_shape):
        y = np.asarray(y_true)
        if len(output_shape) != 1:
            raise ValueError(f"{self.name} needs a model output of shape (batch, classes); got (batch, {output_shape})")
        classes = output_shape[0]
        if y.ndim != 2 or y.shape[1] != classes:
            hint = ""
            if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
                hint = " For integer class labels use loss='sparse_categorical_crossentropy'."
            raise ValueError(
                f"{self.name} expects one-hot labels of shape (batch, {classes}); got shape {y.shape}.{hint}"
            )
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: labels must be numbers; got dtype {y.dtype}")
        bad = ~np.isfinite(y) if y.dtype.kind == "f" else np.zeros(y.shape, bool)
        bad |= y < 0
        if bad.any():
            i, j = np.unravel_index(int(np.argmax(bad)), y.shape)
            raise ValueError(
                f"{self.name}: labels must be finite and >= 0 (one-hot rows); got {y[i, j].item()!r} "
                f"at index {(int(i), int(j))}"
            )
        return y.astype(np.float64) if y.dtype.kind != "f" else y

    def logits_value_and_grad(self, logits, y_true, need_grad=True):
        return softmax_cross_entropy(logits, y_true.astype(logits.dtype, copy=False), need_grad)

    def value_and_grad(self, y_pred, y_true, need_grad=True):
        return super().value_and_grad(y_pred, y_true.astype(y_pred.dtype, copy=False), need_grad)

    def _targets_matrix(self, y_true, shape):
        return y_true


class MeanSquaredError(Loss):
    """Mean of ``(y_pred - y_true) ** 2`` over all elements (Keras's ``'mse'``)."""

    name = "mean_squared_error"

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

    def value_and_grad(self, y_pred, y_true, need_grad=True):
        diff = y_pred - y_true.astype(y_pred.dtype, copy=False)
        loss = float(np.mean(diff * diff))
        return loss, (diff * (2.0 / diff.size) if need_grad else None)


_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(identifier) -> Loss:
    """A loss from a name or an instance."""
    if isinstance(identifier, Loss):
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
        if type(loss) is cls and name != "mse":
            return {"class_name": name, "config": loss.get_config()}
    return None


def deserialize(config: dict) -> Loss:
    if not isinstance(config, dict) or config.get("class_name") not in _BY_NAME:
        raise ValueError(f"unknown loss description {config!r}")
    return _BY_NAME[config["class_name"]](**config.get("config", {}))
