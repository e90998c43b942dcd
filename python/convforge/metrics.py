"""Classification metrics, and the metric objects ``compile(metrics=[...])`` uses.

Functions (NumPy in, NumPy or float out)::

    accuracy(y_true, y_pred)
    confusion_matrix(y_true, y_pred, num_classes=None)
    precision_recall_f1(y_true, y_pred, num_classes=None)
    classification_report(y_true, y_pred, target_names=None, digits=2)

``y_true`` is integer labels ``(N,)`` or one-hot ``(N, C)``; ``y_pred`` is
integer labels ``(N,)`` or scores/probabilities ``(N, C)`` (the argmax is
taken), e.g. straight from ``model.predict(x)``. Conventions follow
scikit-learn: confusion-matrix rows are true classes and columns predicted
classes; a precision or recall whose denominator is 0 is reported as 0.

Metric objects (Keras 3's names, arguments and values; ``update_state``,
``result``, ``reset_state``, ``get_config``), for ``compile(metrics=[...])``
or by hand: ``Accuracy``, ``BinaryAccuracy``, ``CategoricalAccuracy``,
``SparseCategoricalAccuracy``, ``TopKCategoricalAccuracy``, ``TruePositives``,
``FalsePositives``, ``TrueNegatives``, ``FalseNegatives``, ``PrecisionAtRecall``,
``RecallAtPrecision``, ``SensitivityAtSpecificity``, ``SpecificityAtSensitivity``,
``SparseTopKCategoricalAccuracy``, ``Precision`` and ``Recall``
(``thresholds``, ``top_k``, ``class_id``), ``F1Score`` and ``FBetaScore``
(``average``, ``threshold``), ``AUC``, ``Mean``, ``Sum``; for regression
``MeanSquaredError``, ``RootMeanSquaredError``, ``MeanAbsoluteError``,
``MeanAbsolutePercentageError``, ``MeanSquaredLogarithmicError``,
``LogCoshError``, ``R2Score``, ``CosineSimilarity``; and the value of a loss
beside another: ``BinaryCrossentropy``, ``CategoricalCrossentropy``,
``SparseCategoricalCrossentropy``, ``KLDivergence``, ``Poisson``, ``Hinge``,
``SquaredHinge``, ``CategoricalHinge``; for segmentation ``MeanIoU``, ``IoU``,
``BinaryIoU``, ``OneHotIoU``, ``OneHotMeanIoU``. A metric with one value per
threshold, class or output returns a float64 array, as Keras's does.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import warnings

import numpy as np

from ._warnings import user_stacklevel
from . import losses as _losses
from .losses import check_sparse_labels

__all__ = [
    "AUC",
    "Accuracy",
    "BinaryAccuracy",
    "BinaryCrossentropy",
    "BinaryIoU",
    "CategoricalAccuracy",
    "CategoricalCrossentropy",
    "CategoricalHinge",
    "CosineSimilarity",
    "F1Score",
    "FBetaScore",
    "FalseNegatives",
    "FalsePositives",
    "Hinge",
    "IoU",
    "KLDivergence",
    "LogCoshError",
    "Poisson",
    "Precision",
    "PrecisionAtRecall",
    "R2Score",
    "Recall",
    "RecallAtPrecision",
    "RootMeanSquaredError",
    "SensitivityAtSpecificity",
    "SparseCategoricalAccuracy",
    "SparseCategoricalCrossentropy",
    "SparseTopKCategoricalAccuracy",
    "SpecificityAtSensitivity",
    "SquaredHinge",
    "Sum",
    "TopKCategoricalAccuracy",
    "TrueNegatives",
    "TruePositives",
    "Mean",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanIoU",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "OneHotIoU",
    "OneHotMeanIoU",
    "Metric",
    "accuracy",
    "classification_report",
    "confusion_matrix",
    "get",
    "precision_recall_f1",
    "serialize",
]


def _ratio(a, b) -> np.ndarray:
    """``a / b`` elementwise in float64, 0 where ``b`` is 0 (Keras's divide_no_nan)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros(a.shape), where=b > 0)


def _sample_weights(sample_weight, n: int, who: str) -> np.ndarray:
    """``update_state``'s ``sample_weight`` as float64 ``(n,)``: a number (every sample) or one
    finite weight >= 0 per sample, ``(n,)`` or ``(n, 1)``; else a ValueError naming the metric."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim > 1 or (w.ndim == 1 and w.shape[0] != n):
        raise ValueError(f"{who}: sample_weight must be a number or have shape ({n},) for a batch of {n} samples; "
                         f"got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{who}: sample_weight must be finite and >= 0; got {w.reshape(-1)[:8].tolist()}")
    return np.broadcast_to(w, (n,))


def _as_numbers(values, who: str) -> np.ndarray:
    """``update_state``'s values (a number or an array of numbers) as float64."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: update_state takes numbers or an array of numbers; got {values!r}") from None


def _broadcast_weights(sample_weight, shape, who: str) -> np.ndarray:
    """Weights for values of ``shape``, as Keras broadcasts them: a number, the values' shape, or
    its leading dimensions (``(N,)`` weights for ``(N, C)`` values weigh each row)."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if 0 < w.ndim < len(shape) and w.shape == tuple(shape[: w.ndim]):
        w = w.reshape(w.shape + (1,) * (len(shape) - w.ndim))
    try:
        w = np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(f"{who}: sample_weight of shape {np.shape(sample_weight)} does not fit values of "
                         f"shape {tuple(shape)}") from None
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{who}: sample_weight must be finite and >= 0")
    return w


def _threshold(value, name: str) -> float:
    """A decision threshold: a number in [0, 1] (Keras's rule for Precision and Recall)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1]; got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1]; got {value!r}")
    return float(value)


def _top_k(value, name: str = "k") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1 (how many of the highest scores count); got {value!r}")
    return int(value)


def _labels(y, name: str) -> np.ndarray:
    """Class labels from labels, one-hot rows or scores (argmax)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be labels (N,) or scores (N, classes); got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.floor(y)):
            raise ValueError(f"{name} holds non-integer labels; pass integer labels or (N, classes) scores")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integer labels; got dtype {y.dtype}")
    if y.size and y.min() < 0:
        i = int(np.argmax(y < 0))
        raise ValueError(f"{name} holds a negative label {y[i]} at index {i}")
    return y.astype(np.int64, copy=False)


def _pair(y_true, y_pred):
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred hold {t.shape[0]} and {p.shape[0]} samples; they must match")
    return t, p


def accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose predicted class is the true class.

    A single-column or 1-D float ``y_pred`` is a binary probability,
    thresholded at 0.5 (Keras's binary accuracy).
    """
    y_pred_a = np.asarray(y_pred)
    if y_pred_a.dtype.kind == "f" and (y_pred_a.ndim == 1 or (y_pred_a.ndim == 2 and y_pred_a.shape[1] == 1)):
        t = np.asarray(y_true).reshape(-1)
        p = (y_pred_a.reshape(-1) > 0.5).astype(t.dtype)
        if t.shape != p.shape:
            raise ValueError(f"y_true and y_pred hold {t.shape[0]} and {p.shape[0]} samples; they must match")
        return float(np.mean(t == p)) if t.size else 0.0
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else 0.0


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted as ``j``; int64 ``(K, K)``.

    ``K`` is ``num_classes``, else the number of score columns, else one
    more than the largest label seen.
    """
    t, p = _pair(y_true, y_pred)
    if num_classes is None:
        widths = [np.shape(y)[1] for y in (y_true, y_pred) if np.ndim(y) == 2 and np.shape(y)[1] > 1]
        num_classes = max(widths + [int(t.max(initial=-1)) + 1, int(p.max(initial=-1)) + 1])
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
    high = max(int(t.max(initial=-1)), int(p.max(initial=-1)))
    if high >= num_classes:
        raise ValueError(f"label {high} does not fit num_classes={num_classes}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def precision_recall_f1(y_true, y_pred, num_classes: int | None = None):
    """Per-class precision, recall, F1 and support.

    Returns
    -------
    precision, recall, f1 : ndarray of float64, shape (K,)
        ``tp / (tp + fp)``, ``tp / (tp + fn)``, ``2 p r / (p + r)``; 0 where the
        denominator is 0.
    support : ndarray of int64, shape (K,)
        True samples of each class.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return precision, recall, f1, support


def classification_report(y_true, y_pred, target_names=None, digits: int = 2, num_classes: int | None = None) -> str:
    """A text table of per-class precision, recall, F1 and support, scikit-learn's layout.

    >>> print(classification_report([0, 1, 1, 2], [0, 1, 2, 2], target_names=["cat", "dog", "emu"]))
                  precision    recall  f1-score   support
    <BLANKLINE>
             cat       1.00      1.00      1.00         1
             dog       1.00      0.50      0.67         2
             emu       0.50      1.00      0.67         1
    <BLANKLINE>
        accuracy                           0.75         4
       macro avg       0.83      0.83      0.78         4
    weighted avg       0.88      0.75      0.75         4
    """
    if num_classes is None and target_names is not None:
        num_classes = len(target_names)
    precision, recall, f1, support = precision_recall_f1(y_true, y_pred, num_classes)
    k = len(support)
    names = [str(n) for n in target_names] if target_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"target_names has {len(names)} names for {k} classes")
    total = int(support.sum())
    acc = float(np.diag(confusion_matrix(y_true, y_pred, k)).sum() / total) if total else 0.0
    weights = support / total if total else np.zeros(k)
    width = max(len("weighted avg"), *(len(n) for n in names))
    head = ["precision", "recall", "f1-score", "support"]
    lines = [" " * width + " " + "".join(f"{h:>10}" for h in head), ""]

    def row(name, values, count):
        return f"{name:>{width}} " + "".join(f"{v:>10.{digits}f}" for v in values) + f"{count:>10}"

    for i in range(k):
        lines.append(row(names[i], (precision[i], recall[i], f1[i]), int(support[i])))
    lines.append("")
    lines.append(f"{'accuracy':>{width}} " + " " * 20 + f"{acc:>10.{digits}f}{total:>10}")
    lines.append(row("macro avg", (precision.mean(), recall.mean(), f1.mean()), total))
    lines.append(row("weighted avg", (weights @ precision, weights @ recall, weights @ f1), total))
    return "\n".join(lines)


# --------------------------------------------------------------------------- metric objects


class MetricVariable:
    """A metric's state (Keras 3's ``Metric.add_variable``), kept in a NumPy array: ``assign``,
    ``assign_add``, ``assign_sub``, ``numpy()`` and ``value`` as Keras's variables, and it reads as
    its number or array (``float(v)``, ``np.asarray(v)``, ``v / 2``). A ``result()`` returning it
    gives the logs its value."""

    def __init__(self, value: np.ndarray, name: str):
        self._value = value
        self.name = name

    @property
    def shape(self) -> tuple:
        return self._value.shape

    @property
    def dtype(self):
        return self._value.dtype

    @property
    def value(self) -> np.ndarray:
        return self._value.copy()

    def numpy(self) -> np.ndarray:
        return self._value.copy()

    def _checked(self, value, what: str) -> np.ndarray:
        if isinstance(value, MetricVariable):
            value = value._value
        given = np.asarray(value)
        if given.dtype.kind not in "biuf" or not np.can_cast(given.dtype, self._value.dtype, casting="same_kind"):
            raise ValueError(f"{what}: metric variable {self.name!r} holds {self._value.dtype} numbers; got "
                             f"{type(value).__name__} {value!r:.80}")
        array = given.astype(self._value.dtype, copy=False)
        try:
            fits = np.broadcast_shapes(array.shape, self._value.shape) == self._value.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"{what}: metric variable {self.name!r} has shape {self._value.shape}; got a value of "
                             f"shape {array.shape}")
        return array

    def assign(self, value) -> "MetricVariable":
        self._value[...] = self._checked(value, "assign")
        return self

    def assign_add(self, value) -> "MetricVariable":
        self._value += self._checked(value, "assign_add")
        return self

    def assign_sub(self, value) -> "MetricVariable":
        self._value -= self._checked(value, "assign_sub")
        return self

    def __array__(self, dtype=None, copy=None):
        return np.array(self._value, dtype=dtype)

    def __float__(self) -> float:
        return float(self._value)

    def __bool__(self):
        # As Keras's: `if self.count:` would read a value that may be an array; say what to write.
        raise TypeError(f"metric variable {self.name!r} cannot be used as a boolean: compare its value, "
                        "e.g. float(v) > 0, or np.asarray(v).any()")

    def __getitem__(self, index):
        return self._value[index].copy()

    def __len__(self) -> int:
        return len(self._value)

    __hash__ = object.__hash__  # one object, whatever its value (comparisons are elementwise)

    def __int__(self) -> int:
        return int(self._value)

    def __repr__(self) -> str:
        return f"<MetricVariable {self.name!r} shape={self._value.shape} value={self._value!r}>"

    def _plain(self):
        """The value for the logs: a float for a scalar, else a copy of the array."""
        return float(self._value) if self._value.ndim == 0 else self._value.copy()


def _arithmetic(op):
    def method(self, other):
        other = np.asarray(other) if isinstance(other, MetricVariable) else other
        return op(self._value.copy(), other)
    return method


for _name, _op in {
    "__add__": lambda a, b: a + b, "__radd__": lambda a, b: b + a, "__sub__": lambda a, b: a - b,
    "__rsub__": lambda a, b: b - a, "__mul__": lambda a, b: a * b, "__rmul__": lambda a, b: b * a,
    "__truediv__": lambda a, b: a / b, "__rtruediv__": lambda a, b: b / a, "__lt__": lambda a, b: a < b,
    "__le__": lambda a, b: a <= b, "__gt__": lambda a, b: a > b, "__ge__": lambda a, b: a >= b,
    "__eq__": lambda a, b: a == b, "__ne__": lambda a, b: a != b, "__pow__": lambda a, b: a ** b,
    "__rpow__": lambda a, b: b ** a, "__floordiv__": lambda a, b: a // b, "__rfloordiv__": lambda a, b: b // a,
    "__mod__": lambda a, b: a % b, "__rmod__": lambda a, b: b % a,
}.items():
    setattr(MetricVariable, _name, _arithmetic(_op))
MetricVariable.__neg__ = lambda self: -self._value.copy()
MetricVariable.__pos__ = lambda self: self._value.copy()
MetricVariable.__abs__ = lambda self: np.abs(self._value)


# How many metrics of each default name this process has made without a name (clear_session
# resets it): Keras 3 names them so, from its per-process counters.
_AUTO_NAME_COUNTS: dict[str, int] = {}


def auto_name(base: str) -> str:
    """The name of a metric made without one: ``base`` the first time in the process, then
    ``base_1``, ``base_2``, ... as Keras 3 names them (``AUC()`` then ``AUC()``: 'auc', 'auc_1';
    after ``compile(metrics=['auc'])`` the next ``AUC()`` is 'auc_1' too, as there)."""
    count = _AUTO_NAME_COUNTS.get(base, 0)
    _AUTO_NAME_COUNTS[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def log_names(names: list[str]) -> list[str]:
    """The names a model's logs give its metrics: Keras 3's, each name as it is the first time and
    ``name_1``, ``name_2``, ... after (``metrics=[Precision(), 'precision']`` logs 'precision'
    and 'precision_1'). A name that is still repeated (a metric named 'precision_1' by hand
    beside two 'precision') is left so, for compile to refuse: Keras would drop one of the two."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name not in seen:
            seen[name] = 1
            out.append(name)
        else:
            out.append(f"{name}_{seen[name]}")
            seen[name] += 1
    return out


class Metric:
    """A running value over batches: ``update_state`` per batch, ``result`` at the end.

    A metric of one's own keeps its state in attributes, or in variables made by
    :meth:`add_variable` (Keras 3's way: ``self.tp = self.add_variable(shape=(),
    initializer='zeros', name='tp')``, then ``self.tp.assign_add(...)``), which the default
    :meth:`reset_state` sets back to their initial values. ``update_state`` gets NumPy arrays.
    """

    name = "metric"
    # Made without a name, named auto_name(_default_name) as in Keras (whose signature has
    # name=None for these), and a name string given to compile uses up that name too.
    _auto_named = False
    _default_name = ""
    #: Which way is better, as Keras 3's metrics say it: ``'up'``, ``'down'`` or None (not known).
    #: Callbacks with ``mode='auto'`` (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau) follow it.
    direction: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "result" in cls.__dict__ and not cls.__module__.startswith("convforge."):
            result = cls.__dict__["result"]

            def plain_result(self):  # a variable returned (Keras's `return self.tp`): its value
                value = result(self)
                return value._plain() if isinstance(value, MetricVariable) else value

            plain_result.__doc__, plain_result.__name__ = result.__doc__, result.__name__
            cls.result = plain_result

    def __init__(self, name: str | None = None):
        # Keras's signature: a subclass of one's own calls super().__init__(name=name).
        if name is not None:
            self.name = name

    def add_variable(self, shape, initializer, dtype=None, aggregation="sum", name=None) -> MetricVariable:
        """A state variable of this metric, as Keras 3's: ``shape`` (``()`` for a number), an
        initializer (``'zeros'``, a convforge initializer or ``f(shape, dtype)``), ``dtype``
        (float32 by default). ``aggregation`` is accepted for Keras's code: a data-parallel run
        combines a metric of one's own by its results, weighted by the samples of each rank."""
        from .layers import initializers

        if aggregation not in ("sum", "mean", "none", "only_first_replica", None):
            raise ValueError(f"add_variable aggregation must be 'sum', 'mean', 'none' or 'only_first_replica'; "
                             f"got {aggregation!r}")
        dims = (shape,) if isinstance(shape, numbers.Integral) else shape
        if (not isinstance(dims, (tuple, list))
                or any(isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral) or d < 0 for d in dims)):
            raise ValueError(f"add_variable shape must be a tuple of non-negative ints such as () or (3,); got "
                             f"{shape!r}")
        shape = tuple(int(d) for d in dims)
        given_dtype = dtype
        try:
            dtype = np.dtype("float32" if dtype is None else dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "biuf":
            raise ValueError(f"add_variable dtype must be a number type such as 'float32' or 'int32'; got "
                             f"{given_dtype!r}")
        init = initializers.get(initializer, "add_variable initializer")
        value = np.array(init(shape, dtype), dtype=dtype).reshape(shape)
        # A tuple: the state a nested evaluate sets aside keeps it as it is (trainer._state_copy).
        variables = self.__dict__.get("_variables", ())
        variable = MetricVariable(value, name if name is not None else f"variable_{len(variables)}")
        self._variables = (*variables, (variable, value.copy()))
        return variable

    def add_weight(self, shape=(), initializer="zeros", dtype=None, name=None) -> MetricVariable:
        """Keras 3's older name of :meth:`add_variable` for metrics. The initializer defaults to
        ``'zeros'``: Keras's default, None, fails in Keras 3.15.1's own code ("Invalid dtype")."""
        return self.add_variable(shape, initializer, dtype=dtype, name=name)

    @property
    def variables(self) -> list:
        """The variables :meth:`add_variable` made, in order."""
        return [variable for variable, _ in self.__dict__.get("_variables", ())]

    def reset_state(self) -> None:
        """Sets the variables of :meth:`add_variable` back to their initial values (Keras's
        default); a metric keeping its state otherwise overrides it."""
        variables = self.__dict__.get("_variables")
        if not variables:
            raise NotImplementedError(f"{type(self).__name__} must implement reset_state() (or keep its state in "
                                      "variables made by self.add_variable, which the default reset_state resets)")
        for variable, initial in variables:
            variable.assign(initial)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        raise NotImplementedError

    def result(self) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor's arguments (a built-in metric's; model files keep them, see :func:`serialize`)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict):
        """A new metric from :meth:`get_config`'s dict, as Keras's ``from_config``."""
        return cls(**config)


class Mean(Metric):
    """The running mean of values (Keras's ``Mean``), or of a function of each batch.

    ``Mean()`` / ``Mean(name='loss')`` is Keras's ``keras.metrics.Mean``:
    ``update_state(values, sample_weight=None)`` adds numbers or arrays, ``result()`` is
    ``sum(w * values) / sum(w)`` over everything added (weights broadcast to the values).

    ``Mean(fn)`` is the sample-weighted mean of ``fn(y_true, y_pred)`` over batches (Keras's
    ``MeanMetricWrapper``): ``fn`` may return the batch's mean or one value per sample;
    ``update_state(y_true, y_pred, sample_weight)`` weights the samples as Keras does,
    ``sum(w_i v_i) / sum(w_i)``; a function that returns one number gives it to every sample of
    the batch. The built-in metrics give ``per_sample`` (one value per sample) for that.

    Unlike Keras (0.0), ``result()`` is NaN while nothing has been added.
    """

    def __init__(self, fn=None, name: str | None = None, per_sample=None):
        if isinstance(fn, str) and name is None:  # Keras's Mean(name) given positionally
            fn, name = None, fn
        self.fn = fn
        self.per_sample = per_sample
        self.name = name or getattr(fn, "__name__", "mean")
        self.reset_state()

    def reset_state(self):
        self._total = 0.0
        self._count = 0

    def update_state(self, y_true, y_pred=None, sample_weight=None):
        if self.fn is None:
            # Keras's Mean.update_state(values, sample_weight=None): a second positional
            # argument is the weights there.
            if y_pred is not None and sample_weight is not None:
                raise TypeError(f"{self.name}: Mean() takes update_state(values, sample_weight=None); "
                                "for the mean of a function of (y_true, y_pred) use Mean(fn)")
            self._add_values(y_true, y_pred if sample_weight is None else sample_weight)
            return
        n = len(y_pred)
        if sample_weight is not None:
            self._add_weighted(y_true, y_pred, _sample_weights(sample_weight, n, self.name))
            return
        # A function may return the batch's mean or, as Keras's metric functions do, one value
        # per sample: both are averaged over the samples.
        value = self.fn(y_true, y_pred)
        if not isinstance(value, float):  # the built-in metrics' floats skip NumPy
            value = float(np.mean(value))
        self._total += value * n
        self._count += n

    def _add_values(self, values, sample_weight) -> None:
        values = _as_numbers(values, self.name)
        if sample_weight is None:
            self._total += float(values.sum())
            self._count += values.size
            return
        w = _broadcast_weights(sample_weight, values.shape, self.name)
        self._total += float((values * w).sum())
        self._count += float(w.sum())

    def _add_weighted(self, y_true, y_pred, w: np.ndarray) -> None:
        values = np.asarray((self.per_sample or self.fn)(y_true, y_pred), dtype=np.float64)
        n = len(w)
        if values.ndim == 0:  # the batch's mean: every sample's value
            values = np.broadcast_to(values, (n,))
        elif values.size % n or values.shape[0] != n:
            raise ValueError(f"{self.name}: its function returned {values.shape} values for a batch of {n} "
                             "samples; sample_weight needs one value per sample (or one number)")
        else:
            values = values.reshape(n, -1).mean(axis=1)
        self._total += float(values @ w)
        self._count += float(w.sum())

    def add(self, value: float, n: int) -> None:
        """Add a batch mean ``value`` over ``n`` samples."""
        self._total += value * n
        self._count += n

    def result(self) -> float:
        # A Python float, as Keras's logs hold: a function's NumPy scalar (accuracy's np.float64)
        # made history.history print as [np.float64(0.6), ...] and evaluate return them.
        return float(self._total / self._count) if self._count else float("nan")


class Sum(Metric):
    """The running sum of values, Keras's ``Sum``: ``update_state(values, sample_weight=None)``
    adds ``sum(w * values)``; ``result()`` is the total (0.0 at first)."""

    def __init__(self, name: str = "sum"):
        super().__init__(name)
        self.reset_state()

    def reset_state(self):
        self._sum = 0.0

    def update_state(self, values, sample_weight=None):
        values = _as_numbers(values, self.name)
        if sample_weight is not None:
            values = values * _broadcast_weights(sample_weight, values.shape, self.name)
        self._sum += float(values.sum())

    def result(self):
        return self._sum


def _position_hits(y_true: np.ndarray, y_pred: np.ndarray):
    """Hits ``(batch, ...)`` of an output with positions ``(batch, ..., classes)`` (a class per
    pixel or per step), as Keras's accuracies take them over the last axis: the argmax against a
    label per position (``(batch, ...)`` or ``(batch, ..., 1)``) or one-hot rows; a single float
    column thresholded at 0.5 against 0/1 targets. None for an output without positions."""
    if y_pred.ndim <= 2:
        return None
    positions = y_pred.shape[:-1]
    if y_pred.shape[-1] == 1 and y_pred.dtype.kind == "f" and y_true.shape in (y_pred.shape, positions):
        return (y_pred.reshape(positions) > 0.5) == (y_true.reshape(positions) > 0.5)
    if y_true.shape == y_pred.shape:
        return y_pred.argmax(axis=-1) == y_true.argmax(axis=-1)
    if y_true.shape in (positions, (*positions, 1)):
        return y_pred.argmax(axis=-1) == y_true.reshape(positions)
    raise ValueError(f"accuracy: targets of shape {y_true.shape} do not go with outputs of shape {y_pred.shape}: "
                     f"give a label per position {positions} or one-hot rows {y_pred.shape}")


def _fast_accuracy(y_true, y_pred) -> float:
    """accuracy() without input checks, for targets already checked by the loss."""
    # fit passes arrays; a user's update_state may pass lists (asarray returns an array as is).
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    hits = _position_hits(y_true, y_pred)
    if hits is not None:
        return int(np.count_nonzero(hits)) / hits.size if hits.size else 0.0
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        predicted = y_pred.argmax(axis=1)
        if y_true.ndim == 2:
            hits = np.count_nonzero(predicted == y_true.argmax(axis=1))
        else:
            hits = np.count_nonzero(predicted == y_true)
        # int(): NumPy 2's count_nonzero gives an np.intp, whose quotient put np.float64(...) in the logs
        return int(hits) / len(predicted)
    return accuracy(y_true, y_pred)


def _accuracy_per_sample(y_true, y_pred) -> np.ndarray:
    """Accuracy's hits, one per sample (for sample weights): _fast_accuracy's rules."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    hits = _position_hits(y_true, y_pred)
    if hits is not None:  # a sample's hit rate over its positions
        return hits.reshape(len(hits), -1).mean(axis=1)
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return y_pred.argmax(axis=1) == (y_true.argmax(axis=1) if y_true.ndim == 2 else y_true.reshape(-1))
    t = y_true.reshape(-1)
    if y_pred.dtype.kind == "f":
        return (y_pred.reshape(-1) > 0.5) == (t > 0.5)
    return _labels(y_pred, "y_pred") == _labels(t, "y_true")


class Accuracy(Mean):
    """Accuracy for labels, one-hot rows or binary (0.5-thresholded) outputs.

    This is what Keras's ``compile(metrics=['accuracy'])`` computes (it picks sparse categorical,
    categorical or binary accuracy from the shapes), not ``keras.metrics.Accuracy()``: that class
    counts exact equality ``y_true == y_pred`` element by element, so Keras gives about 0 for
    scores ``(N, classes)`` against labels, and ``2/3`` for targets ``[1, 2, 3]`` against
    predictions ``[1.0, 2.0, 3.5]``, where convforge gives the argmax's accuracy and, for a float
    column, the 0.5-thresholded one (``1/3`` there). Here:

    * scores ``(N, C)``, ``C > 1``: the argmax against integer labels ``(N,)`` or one-hot rows;
    * a float column ``(N,)`` or ``(N, 1)``: ``y_pred > 0.5`` against 0/1 targets;
    * integer predictions: equality with the integer labels.
    """

    direction = "up"

    def __init__(self, name: str = "accuracy"):
        super().__init__(_fast_accuracy, name, per_sample=_accuracy_per_sample)


def _mse(y_true, y_pred):
    """Per sample: the mean over its outputs (Keras's mean_squared_error)."""
    y_pred = np.asarray(y_pred)
    d = y_pred - np.asarray(y_true).reshape(y_pred.shape)
    return (d * d).reshape(len(d), -1).mean(axis=1)


def _mae(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    return np.abs(y_pred - np.asarray(y_true).reshape(y_pred.shape)).reshape(len(y_pred), -1).mean(axis=1)


# Keras's default names (history keys 'mean_squared_error', ...); compile(metrics=['mse']) passes
# its string as the name, so that one logs 'mse', as in Keras.
class MeanSquaredError(Mean):
    direction = "down"

    def __init__(self, name: str = "mean_squared_error", dtype=None):
        _unsupported.refuse_unless_default("MeanSquaredError", "dtype", dtype)
        super().__init__(_mse, name)


class MeanAbsoluteError(Mean):
    direction = "down"

    def __init__(self, name: str = "mean_absolute_error", dtype=None):
        _unsupported.refuse_unless_default("MeanAbsoluteError", "dtype", dtype)
        super().__init__(_mae, name)


def _binary_pair(y_true, y_pred, who: str):
    """``(y_true, y_pred)`` as float arrays of one shape: element-wise (multi-label) comparison, as Keras.

    Integer labels ``(N,)`` against scores ``(N, C)`` with ``C > 1`` become one-hot rows.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] > 1 and t.ndim == 1:
        # Checked first: label 5 of 2 classes was an IndexError, -1 the last class, 1.5 class 1.
        t = np.eye(p.shape[1])[check_sparse_labels(t, p.shape[1], who)]
    t = t.reshape(p.shape) if t.size == p.size else t
    if t.shape != p.shape:
        raise ValueError(f"{who}: y_true of shape {np.shape(y_true)} does not match y_pred of shape {p.shape}")
    return t.astype(np.float64, copy=False), p


class _Counting(Metric):
    """A metric from counts accumulated over batches (not a mean of batch values).

    Its counts (the attributes named in ``_count_names``, ints or int arrays; sums of weights,
    floats, once ``update_state`` was given a ``sample_weight``) add up over the
    ranks of a data-parallel run: :mod:`convforge.distributed` sums :meth:`counts` and asks
    :meth:`with_counts` for the result, since a mean of the ranks' precisions or AUCs is not
    the precision or AUC of all the samples.
    """

    _count_names: tuple[str, ...] = ()

    def __init__(self, name):
        self.name = name
        self.reset_state()

    def counts(self) -> np.ndarray:
        """The counts as one float64 vector (summable over ranks)."""
        return np.concatenate([np.ravel(getattr(self, n)) for n in self._count_names]).astype(np.float64)

    def with_counts(self, counts: np.ndarray) -> _Counting:
        """A copy of this metric holding ``counts`` (laid out as :meth:`counts` gives them)."""
        other = copy.copy(self)
        offset = 0
        for n in self._count_names:
            mine = getattr(self, n)
            size = np.size(mine)
            part = counts[offset : offset + size]
            if np.asarray(mine).dtype.kind in "iu":  # counts, not sums of weights: whole numbers
                part = np.rint(part).astype(np.int64)
            setattr(other, n, part.reshape(np.shape(mine)) if np.ndim(mine) else part[0].item())
            offset += size
        return other


class BinaryAccuracy(Mean):
    """Fraction of outputs on the right side of ``threshold`` (0.5), element-wise; Keras's ``BinaryAccuracy``."""

    direction = "up"

    def __init__(self, name: str = "binary_accuracy", threshold: float = 0.5):
        self.threshold = _threshold(threshold, "threshold")

        def binary_accuracy(y_true, y_pred):
            t, p = _binary_pair(y_true, y_pred, name)
            return ((p > self.threshold) == (t > 0.5)).reshape(len(p), -1).mean(axis=1)

        super().__init__(binary_accuracy, name)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(Mean):
    """Argmax of the output equals argmax of the one-hot target; Keras's ``CategoricalAccuracy``."""

    direction = "up"

    def __init__(self, name: str = "categorical_accuracy"):
        def categorical_accuracy(y_true, y_pred):
            t, y_pred = np.asarray(y_true), np.asarray(y_pred)
            if y_pred.ndim > 2 and t.shape == y_pred.shape:  # one-hot rows per position (a class per pixel)
                return np.argmax(y_pred, axis=-1) == np.argmax(t, axis=-1)
            if t.ndim != 2:
                raise ValueError(f"{name} expects one-hot targets (N, classes); got shape {t.shape}")
            return np.argmax(y_pred, axis=1) == np.argmax(t, axis=1)

        super().__init__(categorical_accuracy, name)


class SparseCategoricalAccuracy(Mean):
    """Argmax of the output equals the integer label; Keras's ``SparseCategoricalAccuracy``."""

    direction = "up"

    def __init__(self, name: str = "sparse_categorical_accuracy"):
        def sparse_categorical_accuracy(y_true, y_pred):
            y_pred = np.asarray(y_pred)
            if y_pred.ndim > 2:  # a label per position (a class per pixel)
                labels = check_sparse_labels(y_true, y_pred.shape[-1], name, y_pred.shape[1:-1])
                return np.argmax(y_pred, axis=-1) == labels
            return np.argmax(y_pred, axis=1) == _sparse_labels(y_true, y_pred, name)

        super().__init__(sparse_categorical_accuracy, name)


def _sparse_labels(y_true, y_pred: np.ndarray, who: str) -> np.ndarray:
    """Integer labels ``(N,)`` or ``(N, 1)`` checked against the score columns: a label outside
    ``[0, classes)`` is a ValueError naming it, not a miss (Keras) or another column's score."""
    if y_pred.ndim != 2:
        raise ValueError(f"{who} expects scores of shape (batch, classes); got shape {y_pred.shape}")
    return check_sparse_labels(y_true, y_pred.shape[1], who)


def _top_k_hits(labels: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """True where the label's score is among the ``k`` largest (ties counted in the label's favour)."""
    scores = np.asarray(y_pred)
    own = scores[np.arange(len(labels)), labels]
    return (scores > own[:, None]).sum(axis=1) < k


class TopKCategoricalAccuracy(Mean):
    """The one-hot target's class is among the ``k`` (5) highest scores; Keras's ``TopKCategoricalAccuracy``."""

    direction = "up"

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy"):
        self.k = _top_k(k)

        def top_k(y_true, y_pred):
            return _top_k_hits(np.argmax(np.asarray(y_true), axis=1), y_pred, self.k)

        super().__init__(top_k, name)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(Mean):
    """The integer label is among the ``k`` (5) highest scores; Keras's ``SparseTopKCategoricalAccuracy``."""

    direction = "up"

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy"):
        self.k = _top_k(k)

        def top_k(y_true, y_pred):
            y_pred = np.asarray(y_pred)
            return _top_k_hits(_sparse_labels(y_true, y_pred, name), y_pred, self.k)

        super().__init__(top_k, name)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


# Keras's stand-in for "no threshold" when only top_k decides (metrics_utils.NEG_INF): scores
# outside the top k are set to it, so that every threshold in [0, 1] rejects them.
_NEG_INF = -1e10


def _metric_dtype(dtype, who: str) -> np.dtype:
    """The dtype Keras's metrics compare and count in: float32 by default (``dtype=None``, what
    its get_config reports as 'float32'), or float64."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in (np.float32, np.float64):
        raise ValueError(f"{who}: dtype must be None, 'float32' or 'float64' (convforge's metrics compute in "
                         f"one of those); got {dtype!r}")
    return resolved


def _class_id(value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"class_id must be None or an int >= 0 (a column of y_pred); got {value!r}")
    return int(value)


def _thresholds(value, default: float) -> list[float]:
    """Precision's and Recall's ``thresholds``: a number or a list of numbers in [0, 1] (one
    result per threshold, as Keras), ``default`` when None."""
    if value is None:
        return [default]
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) == 0:
            raise ValueError("thresholds must be a number or a non-empty list of numbers in [0, 1]; got []")
        return [_threshold(v, f"thresholds[{i}]") for i, v in enumerate(value)]
    return [_threshold(value, "thresholds")]


def _evenly_spaced(thresholds) -> bool:
    """Keras's is_evenly_distributed_thresholds: 0, 1/(n-1), ..., 1 for n >= 3 thresholds."""
    n = len(thresholds)
    return n >= 3 and bool(np.allclose(thresholds, np.arange(n, dtype=np.float32) / (n - 1), atol=1e-7))


class Precision(_Counting):
    """``tp / (tp + fp)``, Keras's ``Precision(thresholds=None, top_k=None, class_id=None, name=None, dtype=None)``.

    As Keras 3, element-wise over all outputs: every column of a softmax
    output counts, against one-hot (or, a convforge extension, integer)
    targets. A target counts as positive when it is non-zero (Keras casts it
    to bool), a prediction when it is above the threshold.

    * ``thresholds``: a number or a list of numbers in [0, 1] (0.5 by default;
      0 for logits). A list gives one result per threshold (an array).
    * ``top_k``: only the ``k`` highest scores of each row (the last axis) can
      be positive; with no ``thresholds`` all of them are. Ties are broken
      towards the lower column, as Keras documents it (its torch backend does
      not promise an order).
    * ``class_id``: only that column of ``y_true`` and ``y_pred`` (after
      ``top_k``), e.g. the precision of class 2 in a softmax output;
      ``top_k=1, class_id=c`` is "predicted class c" (the argmax).

    ``sample_weight``: a number, one weight per sample, one per output (of
    ``y_pred``'s shape) or per row of outputs (``(batch, steps)`` for
    ``(batch, steps, classes)`` scores). ``result()`` is 0 when nothing was predicted positive.
    ``dtype``: scores and thresholds are compared in float32 (Keras's default)
    or float64; counts are kept in float64.

    Where convforge differs from Keras: ``result()`` is a Python float or a
    float64 array (Keras: float32 tensors); a negative ``class_id`` is refused
    (Keras documents ``[0, classes)`` but indexes -1 as the last column); with
    ``class_id``, weights of ``y_pred``'s shape weigh that column (Keras fails).
    """

    _count_names = ("tp", "fp", "fn", "tn")
    direction = "up"
    _default_name = "precision"
    _auto_named = True

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        self.top_k = None if top_k is None else _top_k(top_k, "top_k")
        self.class_id = _class_id(class_id)
        # Keras: with top_k alone, every score in the top k is positive.
        self.thresholds = _thresholds(thresholds, 0.5 if self.top_k is None else _NEG_INF)
        # get_config gives thresholds as they were given (None, a number or a list), as Keras.
        self.init_thresholds = None if thresholds is None else (
            list(self.thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else self.thresholds[0])
        self._dtype = _metric_dtype(dtype, type(self).__name__)
        self._evenly_spaced = _evenly_spaced(self.thresholds)
        super().__init__(auto_name(self._default_name) if name is None else name)

    @property
    def dtype(self) -> str:
        return self._dtype.name

    def reset_state(self):
        self.tp, self.fp, self.fn, self.tn = (np.zeros(len(self.thresholds)) for _ in range(4))

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = _binary_pair(y_true, y_pred, self.name)
        actual = t != 0  # Keras casts the targets to bool
        p = p.astype(self._dtype)
        w = np.ones(p.shape) if sample_weight is None else self._weights(sample_weight, p.shape)
        if self.top_k is not None:
            p = self._keep_top_k(p)
        if self.class_id is not None:
            if p.ndim < 2:
                raise ValueError(f"{self.name}: with class_id, y_pred must have shape (batch, classes); "
                                 f"got shape {p.shape}")
            if self.class_id >= p.shape[-1]:
                raise ValueError(f"{self.name}: class_id={self.class_id} is out of range for y_pred with "
                                 f"{p.shape[-1]} classes (columns 0 to {p.shape[-1] - 1})")
            actual, p, w = actual[..., self.class_id], p[..., self.class_id], w[..., self.class_id]
        actual, p, w = actual.reshape(-1), p.reshape(-1), w.reshape(-1)
        positive = self._positive(p).astype(np.float64)  # (thresholds, outputs)
        hit, miss = np.where(actual, w, 0.0), np.where(actual, 0.0, w)
        self.tp = self.tp + positive @ hit
        self.fp = self.fp + positive @ miss
        self.fn = self.fn + (1.0 - positive) @ hit
        self.tn = self.tn + (1.0 - positive) @ miss

    def _weights(self, sample_weight, shape) -> np.ndarray:
        """Weights of ``y_pred``'s shape, as Keras broadcasts them: one per output (that shape),
        one per row of outputs (the shape less its last axis, e.g. per step of a sequence, with
        or without a last axis of 1), or else a number or one per sample."""
        w = np.asarray(sample_weight, dtype=np.float64)
        shape = tuple(shape)
        if w.ndim and w.shape in (shape, shape[:-1], shape[:-1] + (1,)):
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(f"{self.name}: sample_weight must be finite and >= 0")
            return np.broadcast_to(w if w.shape == shape else w.reshape(shape[:-1] + (1,)), shape)
        # One per sample for outputs of any rank (Keras fails on (N,) weights of (N, steps, C) outputs).
        w = _sample_weights(sample_weight, shape[0], self.name)
        return np.broadcast_to(w.reshape(-1, *([1] * (len(shape) - 1))), shape)

    def _keep_top_k(self, p: np.ndarray) -> np.ndarray:
        """``p`` with every score outside the ``top_k`` largest of its row set to -1e10 (Keras)."""
        if self.top_k > p.shape[-1]:
            raise ValueError(f"{self.name}: top_k={self.top_k} is more than the {p.shape[-1]} scores along "
                             f"y_pred's last axis (shape {p.shape})")
        # A stable sort of the negated scores: of equal scores the lower column comes first.
        order = np.argsort(-p, axis=-1, kind="stable")[..., : self.top_k]
        keep = np.zeros(p.shape, dtype=bool)
        np.put_along_axis(keep, order, True, axis=-1)
        return np.where(keep, p, p.dtype.type(_NEG_INF))

    def _positive(self, p: np.ndarray) -> np.ndarray:
        """``(thresholds, outputs)``: which outputs count as predicted positive at each threshold."""
        thresholds = np.asarray(self.thresholds, dtype=self._dtype)
        if not self._evenly_spaced:
            return p[None, :] > thresholds[:, None]
        # Keras takes another path for thresholds 0, 1/(n-1), ..., 1: scores clipped to [0, 1]
        # and put in buckets ceil(p (n-1)) - 1, positive at every threshold up to their bucket.
        # The same as p > t except for scores above 1 (not above the threshold 1 there) and
        # rounding at the thresholds themselves, where this matches Keras to the last bit.
        n = len(thresholds)
        with np.errstate(invalid="ignore"):  # NaN: in no bucket, positive nowhere
            bucket = np.ceil(np.clip(p, 0, 1) * p.dtype.type(n - 1)) - 1
            return bucket[None, :] >= np.arange(n, dtype=p.dtype)[:, None]

    def _value(self, denominator) -> float | np.ndarray:
        values = _ratio(self.tp, denominator)
        return float(values[0]) if len(self.thresholds) == 1 else values

    def result(self) -> float | np.ndarray:
        """A float, or one per threshold (a float64 array) when ``thresholds`` is a list."""
        return self._value(self.tp + self.fp)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Recall(Precision):
    """``tp / (tp + fn)``, Keras's ``Recall(thresholds=None, top_k=None, class_id=None, name=None, dtype=None)``:
    the fraction of positive targets predicted positive; arguments as :class:`Precision`'s."""

    _default_name = "recall"

    def result(self) -> float | np.ndarray:
        return self._value(self.tp + self.fn)


class _ConditionCount(Precision):
    """Keras's ``TruePositives``, ``FalsePositives``, ``TrueNegatives``, ``FalseNegatives``: the
    (sample-weighted) count of outputs in one cell of the confusion matrix, element-wise as
    :class:`Precision` counts them: a target counts as positive when it is non-zero, an output
    when it is above ``thresholds`` (0.5; a list gives one count per threshold, an array).

    Which way is better is known here: more true positives and negatives, fewer false ones, so
    ``EarlyStopping(monitor='val_true_positives')`` with ``mode='auto'`` maximises, where Keras
    3.15.1 raises and asks for a ``mode``."""

    _cell = "tp"

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(thresholds=thresholds, name=name, dtype=dtype)

    def result(self) -> float | np.ndarray:
        counts = np.asarray(getattr(self, self._cell), dtype=np.float64)
        return float(counts[0]) if len(self.thresholds) == 1 else counts

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "thresholds": self.init_thresholds}


class TruePositives(_ConditionCount):
    """Keras's ``TruePositives``: outputs above the threshold whose target is positive."""

    direction = "up"
    _default_name = "true_positives"
    _cell = "tp"


class FalsePositives(_ConditionCount):
    """Keras's ``FalsePositives``: outputs above the threshold whose target is 0 (false alarms)."""

    direction = "down"
    _default_name = "false_positives"
    _cell = "fp"


class TrueNegatives(_ConditionCount):
    """Keras's ``TrueNegatives``: outputs at or below the threshold whose target is 0."""

    direction = "up"
    _default_name = "true_negatives"
    _cell = "tn"


class FalseNegatives(_ConditionCount):
    """Keras's ``FalseNegatives``: outputs at or below the threshold whose target is positive
    (the frauds a fraud detector missed)."""

    direction = "down"
    _default_name = "false_negatives"
    _cell = "fn"


class _AtConstraint(Precision):
    """The best of one rate among the thresholds where another reaches ``value``: Keras's
    ``PrecisionAtRecall``, ``RecallAtPrecision``, ``SensitivityAtSpecificity`` and
    ``SpecificityAtSensitivity``. Counts at ``num_thresholds`` thresholds evenly spaced over
    [0, 1] (one at 0.5 for ``num_thresholds=1``), as :class:`Precision` counts them (element-wise,
    ``class_id`` one column); 0 where no threshold reaches ``value``."""

    direction = "up"
    _value_name = ""

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        who = type(self).__name__
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            raise ValueError(f"{who} {self._value_name} must be a number in [0, 1]; got {value!r}")
        if isinstance(num_thresholds, (bool, np.bool_)) or not isinstance(num_thresholds, numbers.Integral) \
                or not 1 <= num_thresholds <= MAX_THRESHOLDS:
            raise ValueError(f"{who} num_thresholds must be an int in [1, 2**24]; got {num_thresholds!r}")
        self.value = float(value)
        self.num_thresholds = int(num_thresholds)
        n = self.num_thresholds
        thresholds = [0.5] if n == 1 else [i / (n - 1) for i in range(n)]  # Keras's: 0, 1/(n-1), ..., 1
        super().__init__(thresholds=thresholds, class_id=class_id, name=name, dtype=dtype)
        self._evenly_spaced = n > 1  # Keras's bucketed path for these thresholds, two of them included

    def _best(self, constrained, dependent) -> float:
        feasible = constrained >= self.value
        return float(np.max(np.where(feasible, dependent, 0.0), initial=0.0))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "class_id": self.class_id,
                "num_thresholds": self.num_thresholds, self._value_name: self.value}


class PrecisionAtRecall(_AtConstraint):
    """Keras's ``PrecisionAtRecall(recall)``: the best precision at a threshold whose recall is at
    least ``recall`` (how precise a detector can be that finds 90% of the frauds)."""

    _default_name = "precision_at_recall"
    _value_name = "recall"

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds, class_id, name, dtype)

    def result(self) -> float:
        return self._best(_ratio(self.tp, self.tp + self.fn), _ratio(self.tp, self.tp + self.fp))


class RecallAtPrecision(_AtConstraint):
    """Keras's ``RecallAtPrecision(precision)``: the best recall at a threshold whose precision is
    at least ``precision``."""

    _default_name = "recall_at_precision"
    _value_name = "precision"

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds, class_id, name, dtype)

    def result(self) -> float:
        return self._best(_ratio(self.tp, self.tp + self.fp), _ratio(self.tp, self.tp + self.fn))


class SensitivityAtSpecificity(_AtConstraint):
    """Keras's ``SensitivityAtSpecificity(specificity)``: the best sensitivity (recall) at a
    threshold whose specificity (true negative rate) is at least ``specificity``."""

    _default_name = "sensitivity_at_specificity"
    _value_name = "specificity"

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(specificity, num_thresholds, class_id, name, dtype)

    def result(self) -> float:
        return self._best(_ratio(self.tn, self.tn + self.fp), _ratio(self.tp, self.tp + self.fn))


class SpecificityAtSensitivity(_AtConstraint):
    """Keras's ``SpecificityAtSensitivity(sensitivity)``: the best specificity at a threshold
    whose sensitivity (recall) is at least ``sensitivity``."""

    _default_name = "specificity_at_sensitivity"
    _value_name = "sensitivity"

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)

    def result(self) -> float:
        return self._best(_ratio(self.tp, self.tp + self.fn), _ratio(self.tn, self.tn + self.fp))


_EPSILON = 1e-7  # Keras's backend.epsilon(), which FBetaScore adds to its denominators


class FBetaScore(_Counting):
    """Keras's ``FBetaScore(average=None, beta=1.0, threshold=None, name='fbeta_score', dtype=None)``.

    ``(1 + beta**2) * precision * recall / (beta**2 * precision + recall)``
    per class, from counts accumulated over batches, as Keras 3:

    * ``y_true`` and ``y_pred`` of one shape ``(batch, classes)``: one-hot or
      multi-hot targets (as Keras, integer labels are refused: one-hot encode
      them, ``np.eye(classes)[labels]``).
    * ``threshold=None``: each row's largest score is the prediction (ties:
      all of them; a score of 0 never); else scores above ``threshold``
      (``0 < threshold <= 1``) are, several per row possibly (multi-label).
    * ``average=None``: one value per class (a float64 array of shape
      ``(classes,)``); ``'micro'``: from the counts of all classes together;
      ``'macro'``: the mean of the classes' values; ``'weighted'``: their
      mean weighted by each class's (weighted) count of positive targets.
    * ``sample_weight``: a number or one weight per sample.

    Keras's ``epsilon`` (1e-7) in the denominators is kept, so a class never
    predicted nor present gives 0. The number of classes is fixed by the first
    batch (``reset_state`` keeps it, as Keras).

    Where convforge differs from Keras: ``beta`` and ``threshold`` may be ints
    (Keras wants Python floats); ``result()`` before any batch is 0.0, or an
    empty array for ``average=None`` (Keras raises); ``(batch, 1)`` targets
    against ``(batch, classes)`` scores are refused (Keras broadcasts them into
    a wrong score); ``(batch, 1)`` weights are taken (Keras fails); results are
    Python floats or float64 arrays; not available in ``convforge.distributed``
    runs (compute it after training).
    """

    _count_names = ("tp", "fp", "fn", "intermediate_weights")
    direction = "up"

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(f"average must be None, 'micro', 'macro' or 'weighted'; got {average!r}")
        if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, numbers.Real) or not np.isfinite(beta) \
                or beta <= 0:
            raise ValueError(f"beta must be a number > 0 (how many times recall counts as much as precision); "
                             f"got {beta!r}")
        if threshold is not None:
            if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real) \
                    or not 0 < threshold <= 1:
                raise ValueError(f"threshold must be None (each row's largest score) or a number with "
                                 f"0 < threshold <= 1; got {threshold!r}")
            threshold = float(threshold)
        self.average = average
        self.beta = float(beta)
        self.threshold = threshold
        self._dtype = _metric_dtype(dtype, type(self).__name__)
        self._classes = None  # fixed by the first batch, as Keras builds its variables
        super().__init__(name)

    dtype = Precision.dtype

    def reset_state(self):
        shape = (0,) if self._classes is None else (() if self.average == "micro" else (self._classes,))
        self.tp, self.fp, self.fn, self.intermediate_weights = (np.zeros(shape) for _ in range(4))

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = np.asarray(y_true), np.asarray(y_pred)
        if t.ndim != 2 or p.ndim != 2 or t.shape != p.shape:
            hint = ""
            if t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1 and p.ndim == 2 and p.shape[1] > 1):
                hint = "; for integer labels pass one-hot targets, np.eye(classes)[labels]"
            raise ValueError(f"{self.name}: y_true and y_pred must both have shape (batch, classes) (one-hot or "
                             f"multi-hot targets, as Keras); got y_true {t.shape} and y_pred {p.shape}{hint}")
        if self._classes is None:
            self._classes = p.shape[1]
            self.reset_state()
        elif p.shape[1] != self._classes:
            raise ValueError(f"{self.name}: its first batch had {self._classes} classes, this one "
                             f"{p.shape[1]}; make a new metric for another number of classes")
        try:
            p = p.astype(self._dtype)
            t = t.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{self.name}: y_true and y_pred must hold numbers; got dtypes {t.dtype}, {p.dtype}") \
                from None
        if self.threshold is None:  # Keras: the row's maximum, if it is not 0
            predicted = (p >= p.max(axis=-1, keepdims=True)) & (np.abs(p) > 1e-9)
        else:
            predicted = p > p.dtype.type(self.threshold)
        predicted = predicted.astype(np.float64)
        w = None if sample_weight is None else _sample_weights(sample_weight, len(p), self.name)[:, None]
        axis = None if self.average == "micro" else 0

        def total(values):
            return (values if w is None else values * w).sum(axis=axis)

        self.tp = self.tp + total(predicted * t)
        self.fp = self.fp + total(predicted * (1 - t))
        self.fn = self.fn + total((1 - predicted) * t)
        self.intermediate_weights = self.intermediate_weights + total(t)

    def result(self) -> float | np.ndarray:
        """A float for an ``average``, else one float64 value per class."""
        if self._classes is None:
            return np.zeros(0) if self.average is None else 0.0
        precision = self.tp / (self.tp + self.fp + _EPSILON)
        recall = self.tp / (self.tp + self.fn + _EPSILON)
        b2 = self.beta**2
        score = (1 + b2) * precision * recall / (b2 * precision + recall + _EPSILON)
        if self.average == "weighted":
            weights = self.intermediate_weights / (self.intermediate_weights.sum() + _EPSILON)
            return float(np.sum(score * weights))
        if self.average is not None:
            return float(np.mean(score))
        return score

    def counts(self) -> np.ndarray:
        if self._classes is None:
            raise ValueError(f"{self.name}: its number of classes is not known before its first batch")
        return super().counts()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    """Keras's ``F1Score(average=None, threshold=None, name='f1_score', dtype=None)``: :class:`FBetaScore`
    with ``beta=1``, the harmonic mean of precision and recall."""

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["beta"]
        return config


class AUC(_Counting):
    """Area under the ROC or precision-recall curve, Keras's ``AUC`` (``num_thresholds=200``).

    As Keras: the curve is sampled at ``num_thresholds`` evenly spaced
    thresholds (plus one just below 0 and one just above 1), counts are
    accumulated over batches, and outputs are compared element-wise.
    ``curve='ROC'`` sums trapezoids; ``curve='PR'`` interpolates precision
    between thresholds as Davis & Goadrich (2006) do (Keras's
    ``summation_method='interpolation'``, the default). Other summation
    methods, ``'PRGAIN'``, ``multi_label`` and label weights are not supported.
    ``from_logits=True`` takes logits (a sigmoid is applied to them first), as Keras's.
    """

    _count_names = ("tp", "fp", "tn", "fn")
    direction = "up"
    _auto_named = True
    _default_name = "auc"

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC", name: str | None = None, from_logits: bool = False):
        curve = str(curve).upper()
        if curve not in ("ROC", "PR"):
            raise ValueError(f"convforge does not support AUC curve={curve!r}; only curve='ROC' or 'PR'")
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral) \
                or not 2 <= num_thresholds <= MAX_THRESHOLDS:
            raise ValueError(f"num_thresholds must be an int in [2, 2**24]; got {num_thresholds!r}")
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits must be True or False; got {from_logits!r}")
        self.curve = curve
        self.from_logits = bool(from_logits)
        self.num_thresholds = int(num_thresholds)
        inner = [(i + 1) / (self.num_thresholds - 1) for i in range(self.num_thresholds - 2)]
        self.thresholds = np.array([-1e-7, *inner, 1 + 1e-7])
        self._warned_range = False
        super().__init__(auto_name(self._default_name) if name is None else name)

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
                "from_logits": self.from_logits}

    def reset_state(self):
        k = self.num_thresholds
        self.tp, self.fp, self.tn, self.fn = (np.zeros(k, np.int64) for _ in range(4))

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = _binary_pair(y_true, y_pred, self.name)
        w = None
        if sample_weight is not None:  # each sample's weight on each of its outputs, as Keras
            w = _sample_weights(sample_weight, len(p), self.name).reshape(-1, *([1] * (p.ndim - 1)))
            w = np.broadcast_to(w, p.shape).reshape(-1)
            if self.tp.dtype.kind != "f":  # from now on sums of weights
                for name in self._count_names:
                    setattr(self, name, getattr(self, name).astype(np.float64))
        t, p = t.reshape(-1) > 0.5, p.reshape(-1)
        if self.from_logits:  # the sigmoid, without overflow for large negative logits
            p = np.exp(-np.logaddexp(0.0, -p))
        elif not self._warned_range and (np.any(p < 0) or np.any(p > 1)):  # (NaN is neither)
            self._warned_range = True
            warnings.warn(f"{type(self).__name__} {self.name!r} got predictions outside [0, 1] (logits?): they are "
                          "clipped into it, as Keras does; give it from_logits=True for a model whose output has no "
                          "sigmoid", stacklevel=user_stacklevel())
        # Into [0, 1] as Keras's (evenly spaced thresholds): a score past either end counts at that end.
        # Unclipped, scores above 1 + 1e-7 were above every threshold, the curve never reached its
        # corners and the area of a logit model's curve came out near 0.1 where Keras's is 0.7.
        p = np.clip(p, 0.0, 1.0)
        # Predictions above each threshold: count (or weigh) through the sorted scores. NaN sorts
        # last; it is above no threshold (NaN > t is false, Keras's and Precision's rule), so only
        # the first `valid` scores can count as above.
        for actual, above, below in ((t, self.tp, self.fn), (~t, self.fp, self.tn)):
            order = np.argsort(p[actual], kind="stable")
            scores = p[actual][order]
            valid = len(scores) - int(np.count_nonzero(np.isnan(scores)))
            at = np.searchsorted(scores[:valid], self.thresholds, side="right")
            if w is None:
                n_above = valid - at
                total = len(scores)
            else:  # cumulative weight of the scores up to each threshold
                cumulative = np.concatenate([[0.0], np.cumsum(w[actual][order])])
                total = cumulative[-1]
                n_above = cumulative[valid] - cumulative[at]
            above += n_above
            below += total - n_above

    def result(self):
        if self.curve == "PR":
            return self._interpolated_pr_area()
        recall = _ratio(self.tp, self.tp + self.fn)
        fp_rate = _ratio(self.fp, self.fp + self.tn)
        heights = (recall[:-1] + recall[1:]) / 2
        return float(np.sum((fp_rate[:-1] - fp_rate[1:]) * heights))

    def _interpolated_pr_area(self) -> float:
        """Between two thresholds, TP and the predicted positives P = TP + FP move linearly, so
        precision TP / P is a ratio of two lines; integrating it over recall gives, per interval,
        ``slope * (dTP + intercept * log(P_lo / P_hi)) / positives`` (slope = dTP / dP,
        intercept = TP_hi - slope * P_hi)."""
        tp, predicted = self.tp.astype(np.float64), (self.tp + self.fp).astype(np.float64)
        d_tp, d_p = tp[:-1] - tp[1:], predicted[:-1] - predicted[1:]
        slope = _ratio(d_tp, np.maximum(d_p, 0))
        intercept = tp[1:] - slope * predicted[1:]
        both = (predicted[:-1] > 0) & (predicted[1:] > 0)
        log_ratio = np.zeros_like(d_tp)
        log_ratio[both] = np.log(predicted[:-1][both] / predicted[1:][both])
        positives = (self.tp[1:] + self.fn[1:]).astype(np.float64)
        return float(np.sum(_ratio(slope * (d_tp + intercept * log_ratio), positives)))


_CLASS_AXIS = "the classes' axis is the last one here"  # a metric's axis=-1, Keras's default


class _LossMean(Mean):
    """The running sample-weighted mean of a loss's per-sample values: Keras's metric of the same
    name (a ``MeanMetricWrapper`` of its loss function), e.g. ``metrics=['mape']`` beside
    ``loss='mse'``. The targets are checked as the loss checks them."""

    direction = "down"
    _loss_class: type | None = None
    _default_name = ""
    _sign = 1.0  # CosineSimilarity: the similarity, not the loss's negative of it

    def __init__(self, name: str | None = None, dtype=None):
        self._start(name, dtype)

    def _start(self, name: str | None, dtype, **loss_arguments) -> None:
        """The loss (with the arguments of a cross-entropy's metric) and the running mean.
        ``dtype``: Keras's second argument; its default (None) only, as the other metrics take it."""
        _unsupported.refuse_unless_default(type(self).__name__, "dtype", dtype)
        self._loss = self._loss_class(**loss_arguments)
        super().__init__(self._batch_mean, name if name is not None else self._default_name, per_sample=self._values)

    def update_state(self, y_true, y_pred=None, sample_weight=None):
        y_pred = _as_numbers(y_pred, self.name)
        if y_pred.ndim == 0:
            raise ValueError(f"{self.name}: y_pred must be an array of outputs (batch, ...); got the number {y_pred}")
        if y_pred.ndim == 1:
            # One vector, as Keras reduces the last axis: the batch's one value (a regression's
            # Dense(1) gives (batch, 1), one value per sample).
            y_pred, y_true = y_pred[None], np.asarray(y_true).reshape(1, -1)
        if len(y_pred) == 0:  # an empty batch adds nothing
            return
        super().update_state(y_true, y_pred, sample_weight)

    def _values(self, y_true, y_pred) -> np.ndarray:
        y_true = self._loss.prepare_targets(y_true, y_pred.shape[1:])
        return self._sign * self._loss._per_sample(y_pred, y_true)

    def _batch_mean(self, y_true, y_pred) -> float:
        return float(self._values(y_true, y_pred).mean())

    def get_config(self) -> dict:
        config = self._loss.get_config()
        config["name"] = self.name
        return config


class MeanAbsolutePercentageError(_LossMean):
    """Keras's ``MeanAbsolutePercentageError`` (``'mape'``): ``100 * |y - p| / max(|y|, 1e-7)``."""

    _default_name = "mean_absolute_percentage_error"
    _loss_class = _losses.MeanAbsolutePercentageError


class MeanSquaredLogarithmicError(_LossMean):
    """Keras's ``MeanSquaredLogarithmicError`` (``'msle'``)."""

    _default_name = "mean_squared_logarithmic_error"
    _loss_class = _losses.MeanSquaredLogarithmicError


class LogCoshError(_LossMean):
    """Keras's ``LogCoshError``: the mean ``log(cosh(y_pred - y_true))`` (logged as ``logcosh``)."""

    _default_name = "logcosh"
    _loss_class = _losses.LogCosh


class Hinge(_LossMean):
    """Keras's ``Hinge`` metric: the mean ``max(1 - y * p, 0)`` (0/1 targets taken as -1/1)."""

    _default_name = "hinge"
    _loss_class = _losses.Hinge


class SquaredHinge(_LossMean):
    """Keras's ``SquaredHinge`` metric."""

    _default_name = "squared_hinge"
    _loss_class = _losses.SquaredHinge


class CategoricalHinge(_LossMean):
    """Keras's ``CategoricalHinge`` metric (one-hot targets)."""

    _default_name = "categorical_hinge"
    _loss_class = _losses.CategoricalHinge


class Poisson(_LossMean):
    """Keras's ``Poisson`` metric: the mean ``p - y * log(p + 1e-7)``."""

    _default_name = "poisson"
    _loss_class = _losses.Poisson


class KLDivergence(_LossMean):
    """Keras's ``KLDivergence`` metric: ``sum(y * log(y / p))`` over the last axis, averaged."""

    _default_name = "kl_divergence"
    _loss_class = _losses.KLDivergence


class CosineSimilarity(_LossMean):
    """Keras's ``CosineSimilarity`` metric: the mean cosine of the angle between ``y_true`` and
    ``y_pred`` over the last axis (1 the same direction; the loss of that name is its negative)."""

    direction = "up"

    def __init__(self, name: str | None = None, dtype=None, axis=-1):
        _unsupported.refuse_unless_default("CosineSimilarity", "axis", axis, _CLASS_AXIS)
        self._start(name, dtype)
    _default_name = "cosine_similarity"
    _loss_class = _losses.CosineSimilarity
    _sign = -1.0


class BinaryCrossentropy(_LossMean):
    """Keras's ``BinaryCrossentropy`` metric: the loss's value, reported beside another loss."""

    _default_name = "binary_crossentropy"
    _loss_class = _losses.BinaryCrossentropy

    def __init__(self, name: str = "binary_crossentropy", dtype=None, from_logits: bool = False,
                 label_smoothing: float = 0.0):
        self._start(name, dtype, from_logits=from_logits, label_smoothing=label_smoothing)


class CategoricalCrossentropy(_LossMean):
    """Keras's ``CategoricalCrossentropy`` metric (one-hot targets), from the outputs as they are:
    clipped probabilities, as Keras's metric takes them."""

    _default_name = "categorical_crossentropy"
    _loss_class = _losses.CategoricalCrossentropy

    def __init__(self, name: str = "categorical_crossentropy", dtype=None, from_logits: bool = False,
                 label_smoothing: float = 0.0, axis=-1):
        _unsupported.refuse_unless_default("CategoricalCrossentropy", "axis", axis, _CLASS_AXIS)
        self._start(name, dtype, from_logits=from_logits, label_smoothing=label_smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": -1}  # Keras's key: the classes' axis, the last one here


class SparseCategoricalCrossentropy(_LossMean):
    """Keras's ``SparseCategoricalCrossentropy`` metric (integer labels)."""

    _default_name = "sparse_categorical_crossentropy"
    _loss_class = _losses.SparseCategoricalCrossentropy

    def __init__(self, name: str = "sparse_categorical_crossentropy", dtype=None, from_logits: bool = False,
                 ignore_class=None, axis=-1):
        _unsupported.refuse_unless_default("SparseCategoricalCrossentropy", "ignore_class", ignore_class)
        _unsupported.refuse_unless_default("SparseCategoricalCrossentropy", "axis", axis, _CLASS_AXIS)
        self._start(name, dtype, from_logits=from_logits)

    def get_config(self) -> dict:
        return {**super().get_config(), "ignore_class": None, "axis": -1}  # Keras's keys, at their defaults


def _regression_pair(y_true, y_pred, who: str):
    """Targets and outputs as float64 arrays of one shape ``(batch, ...)``: a number is a batch of
    one, and a column ``(batch, 1)`` goes with ``(batch,)`` (Keras's squeeze_or_expand)."""
    t, p = np.atleast_1d(_as_numbers(y_true, who)), np.atleast_1d(_as_numbers(y_pred, who))
    if t.ndim == p.ndim - 1 and p.shape[-1] == 1:
        t = t[..., None]
    elif p.ndim == t.ndim - 1 and t.shape[-1] == 1:
        p = p[..., None]
    if t.shape != p.shape:
        raise ValueError(f"{who}: y_true of shape {np.shape(y_true)} does not match y_pred of shape {np.shape(y_pred)}")
    return t, p


class RootMeanSquaredError(_Counting):
    """Keras's ``RootMeanSquaredError``: ``sqrt`` of the sample-weighted mean squared error over
    everything seen (not a mean of the batches' roots)."""

    direction = "down"
    _count_names = ("_total", "_count")

    def __init__(self, name: str = "root_mean_squared_error", dtype=None):
        _unsupported.refuse_unless_default("RootMeanSquaredError", "dtype", dtype)
        super().__init__(name if name is not None else "root_mean_squared_error")

    def reset_state(self):
        self._total = 0.0
        self._count = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = _regression_pair(y_true, y_pred, self.name)
        n = len(p)
        if n == 0:
            return
        values = ((p - t) ** 2).reshape(n, -1).mean(axis=1)
        w = np.ones(n) if sample_weight is None else _sample_weights(sample_weight, n, self.name)
        self._total += float(values @ w)
        self._count += float(w.sum())

    def result(self) -> float:
        return math.sqrt(self._total / self._count) if self._count else float("nan")


class R2Score(Metric):
    """Keras's ``R2Score``, the coefficient of determination of each output over everything
    seen: ``1 - sum((y - p)**2) / sum((y - mean(y))**2)``, with Keras's ``class_aggregation``
    (``'uniform_average'``, ``'variance_weighted_average'`` or None for one value per output)
    and ``num_regressors`` (the adjusted R², whose sample count is Keras's: every target value,
    ``batch * outputs``). Targets and outputs ``(batch, outputs)``; a column ``(batch,)`` is taken
    as one output. Not in a data-parallel run (its sums are sized by the first batch)."""

    direction = "up"

    def __init__(self, class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
                 name: str = "r2_score"):
        super().__init__(name if name is not None else "r2_score")
        if class_aggregation not in (None, "uniform_average", "variance_weighted_average"):
            raise ValueError(f"R2Score class_aggregation must be 'uniform_average', 'variance_weighted_average' or "
                             f"None; got {class_aggregation!r}")
        if isinstance(num_regressors, (bool, np.bool_)) or not isinstance(num_regressors, numbers.Integral) \
                or num_regressors < 0:
            raise ValueError(f"R2Score num_regressors must be an int >= 0; got {num_regressors!r}")
        self.class_aggregation = class_aggregation
        self.num_regressors = int(num_regressors)
        self.reset_state()

    def reset_state(self):
        self._sums = None  # (4, outputs): sum w*y, sum w*y^2, sum w*(y - p)^2, sum w; from the first batch
        self._values_seen = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        y = _as_numbers(y_true, self.name)
        p = _as_numbers(y_pred, self.name)
        y, p = (y[:, None] if y.ndim == 1 else y), (p[:, None] if p.ndim == 1 else p)
        if y.ndim != 2 or y.shape != p.shape:
            raise ValueError(f"{self.name}: R2Score takes targets and outputs of one shape (batch, outputs); got "
                             f"y_true {np.shape(y_true)} and y_pred {np.shape(y_pred)}")
        if self._sums is not None and self._sums.shape[1] != y.shape[1]:
            raise ValueError(f"{self.name}: this batch has {y.shape[1]} outputs, the earlier ones "
                             f"{self._sums.shape[1]}")
        w = np.ones(len(y)) if sample_weight is None else _sample_weights(sample_weight, len(y), self.name)
        w = w[:, None]
        batch = np.stack([(w * y).sum(axis=0), (w * y * y).sum(axis=0), (w * (y - p) ** 2).sum(axis=0),
                          np.broadcast_to(w, y.shape).sum(axis=0)])
        self._sums = batch if self._sums is None else self._sums + batch
        self._values_seen += y.size

    def result(self):
        if self._sums is None:
            return float("nan")
        total_y, total_y2, residual, count = self._sums
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = total_y2 - total_y * (total_y / count)
            scores = 1 - residual / spread
        scores = np.where(np.isinf(scores), 0.0, scores)  # a constant target: Keras's 0
        if self.class_aggregation == "uniform_average":
            score = float(scores.mean())
        elif self.class_aggregation == "variance_weighted_average":
            score = float((spread * scores).sum() / spread.sum())
        else:
            score = scores.astype(np.float64)  # one per output, each adjusted below as Keras does
        n, k = self._values_seen, self.num_regressors
        if k:
            if k >= n - 1:
                warnings.warn(f"{self.name}: {k} regressors for {n} values: the adjusted R2 is undefined; "
                              "this is the plain R2, as Keras gives it", stacklevel=user_stacklevel())
            else:
                score = 1 - (1 - score) * (n - 1) / (n - k - 1)
        return score

    def get_config(self):
        return {"name": self.name, "class_aggregation": self.class_aggregation, "num_regressors": self.num_regressors}


# Classes of an IoU metric at most: its (classes, classes) confusion matrix stays under 2**31
# values (16 GiB); MeanIoU(2**40) was a bare MemoryError.
MAX_IOU_CLASSES = 46340
# Thresholds of a curve metric at most (AUC, PrecisionAtRecall, ...): four counts each, 512 MiB.
MAX_THRESHOLDS = 2**24


def _class_count(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    if value > MAX_IOU_CLASSES:
        raise ValueError(f"{name} must be at most {MAX_IOU_CLASSES} (its confusion matrix holds classes**2 "
                         f"counts); got {value!r}")
    return int(value)


def _class_ids(values, num_classes: int, who: str) -> list[int]:
    ids = list(values) if isinstance(values, (list, tuple, np.ndarray, range)) else None
    if not ids or any(isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral) for i in ids):
        raise ValueError(f"{who}: target_class_ids must be a non-empty list of class ids (ints); got {values!r}")
    if min(ids) < 0 or max(ids) >= num_classes:
        raise ValueError(f"{who}: target class id {max(ids) if max(ids) >= num_classes else min(ids)} is out of "
                         f"range: class ids are in [0, {num_classes})")
    return [int(i) for i in ids]


class IoU(_Counting):
    """Keras's ``IoU``: the intersection over union ``TP / (TP + FP + FN)`` of each class in
    ``target_class_ids``, averaged over those classes that occur (in the targets or the
    predictions), from a confusion matrix accumulated over batches, for segmentation (a class
    per pixel) and classification alike.

    Targets are class ids (``sparse_y_true=True``) or one-hot rows; predictions class ids
    (``sparse_y_pred=True``, Keras's default) or scores whose argmax over the last axis is taken
    (``sparse_y_pred=False``: what ``model.predict`` gives). Ids outside ``[0, num_classes)``
    and targets equal to ``ignore_class`` are left out, as in Keras. Differs from Keras in
    two places, both silent wrong answers there: predictions that are not whole numbers with
    ``sparse_y_pred=True`` (probabilities, say) raise a ValueError instead of being truncated to
    class ids, and fractional sample weights count as given instead of truncated to ints.
    """

    _default_name = "io_u"
    _auto_named = True

    direction = "up"
    _count_names = ("_matrix",)

    def __init__(self, num_classes: int, target_class_ids, name: str | None = None, ignore_class: int | None = None,
                 sparse_y_true: bool = True, sparse_y_pred: bool = True):
        self.num_classes = _class_count(num_classes, f"{type(self).__name__} num_classes")
        self.target_class_ids = _class_ids(target_class_ids, self.num_classes, type(self).__name__)
        if ignore_class is not None and (isinstance(ignore_class, (bool, np.bool_))
                                         or not isinstance(ignore_class, numbers.Integral)):
            raise ValueError(f"{type(self).__name__} ignore_class must be a class id (an int) or None; got "
                             f"{ignore_class!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.sparse_y_true = _losses._check_flag(sparse_y_true, "sparse_y_true")
        self.sparse_y_pred = _losses._check_flag(sparse_y_pred, "sparse_y_pred")
        super().__init__(auto_name(self._default_name) if name is None else name)

    def reset_state(self):
        self._matrix = np.zeros((self.num_classes, self.num_classes))  # rows: true class, columns: predicted

    def _ids(self, values, sparse: bool, what: str) -> np.ndarray:
        values = np.asarray(values)
        if not sparse:
            if values.ndim < 2:
                raise ValueError(f"{self.name}: {what} with sparse_{what}=False are rows of scores or one-hot "
                                 f"(batch, ..., {self.num_classes}); got shape {values.shape}")
            values = values.argmax(axis=-1)
        if values.dtype.kind == "f":
            whole = np.isfinite(values) & (values == np.round(values))
            if not whole.all():
                bad = values.reshape(-1)[int(np.argmax(~whole.reshape(-1)))].item()
                hint = (" For scores (batch, ..., classes), as model.predict gives them, pass sparse_y_pred=False."
                        if what == "y_pred" else "")
                raise ValueError(f"{self.name}: {what} must be class ids (whole numbers); got {bad!r}.{hint}")
        elif values.dtype.kind not in "iub":
            raise TypeError(f"{self.name}: {what} must be numbers; got dtype {values.dtype}")
        return values.astype(np.int64)

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = self._ids(y_true, self.sparse_y_true, "y_true")
        p = self._ids(y_pred, self.sparse_y_pred, "y_pred")
        if t.size != p.size:
            hint = (" For scores (batch, ..., classes), as model.predict gives them, pass sparse_y_pred=False."
                    if self.sparse_y_pred and p.size == t.size * self.num_classes else "")
            raise ValueError(f"{self.name}: {t.size} targets {t.shape} against {p.size} predictions {p.shape}: one "
                             f"class id each.{hint}")
        if sample_weight is None:
            w = np.ones(t.size)
        else:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.ndim == 1 and t.ndim > 1 and w.shape[0] == t.shape[0]:  # one per sample: on each of its positions
                w = w.reshape(-1, *[1] * (t.ndim - 1))
            try:
                w = np.broadcast_to(w, t.shape).reshape(-1)
            except ValueError:
                raise ValueError(f"{self.name}: sample_weight of shape {np.shape(sample_weight)} does not fit targets "
                                 f"of shape {t.shape}") from None
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(f"{self.name}: sample_weight must be finite and >= 0")
        t, p = t.reshape(-1), p.reshape(-1)
        keep = (t >= 0) & (t < self.num_classes) & (p >= 0) & (p < self.num_classes)
        if self.ignore_class is not None:
            keep &= t != self.ignore_class
        cells = t[keep] * self.num_classes + p[keep]
        self._matrix += np.bincount(cells, weights=w[keep], minlength=self.num_classes ** 2).reshape(self._matrix.shape)

    def result(self) -> float:
        m = self._matrix
        true_positives = np.diag(m)
        union = (m.sum(axis=0) + m.sum(axis=1) - true_positives)[self.target_class_ids]
        valid = union > 1e-9  # a class in neither the targets nor the predictions: left out
        iou = np.where(valid, true_positives[self.target_class_ids] / (union + _EPSILON), 0.0)
        return float(iou.sum() / (np.count_nonzero(valid) + _EPSILON))  # Keras's epsilons, both

    def get_config(self) -> dict:
        return {"name": self.name, "num_classes": self.num_classes, "target_class_ids": self.target_class_ids,
                "ignore_class": self.ignore_class, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred, "axis": -1}


class MeanIoU(IoU):
    """Keras's ``MeanIoU``: :class:`IoU` over every class, the usual segmentation score. Pass
    ``sparse_y_pred=False`` for a model's softmax outputs (Keras's default takes class ids)."""

    _default_name = "mean_io_u"

    def __init__(self, num_classes: int, name: str | None = None, ignore_class: int | None = None,
                 sparse_y_true: bool = True, sparse_y_pred: bool = True):
        count = _class_count(num_classes, "MeanIoU num_classes")
        super().__init__(count, list(range(count)), name, ignore_class, sparse_y_true, sparse_y_pred)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["target_class_ids"]
        return config


class OneHotIoU(IoU):
    """Keras's ``OneHotIoU``: :class:`IoU` with one-hot targets and (by default) score outputs."""

    _default_name = "one_hot_io_u"

    def __init__(self, num_classes: int, target_class_ids, name: str | None = None,
                 ignore_class: int | None = None, sparse_y_pred: bool = False):
        super().__init__(num_classes, target_class_ids, name, ignore_class, False, sparse_y_pred)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["sparse_y_true"]
        return config


class OneHotMeanIoU(MeanIoU):
    """Keras's ``OneHotMeanIoU``: :class:`MeanIoU` with one-hot targets and score outputs."""

    _default_name = "one_hot_mean_io_u"

    def __init__(self, num_classes: int, name: str | None = None, ignore_class: int | None = None,
                 sparse_y_pred: bool = False):
        super().__init__(num_classes, name, ignore_class, False, sparse_y_pred)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["sparse_y_true"]
        return config


class BinaryIoU(IoU):
    """Keras's ``BinaryIoU``: :class:`IoU` of a binary output, the prediction 1 where the output
    is >= ``threshold``; ``target_class_ids`` (0, 1) averages both classes, [1] scores the
    foreground alone (a mask's usual score)."""

    _default_name = "binary_io_u"

    def __init__(self, target_class_ids=(0, 1), threshold: float = 0.5, name: str | None = None):
        super().__init__(2, target_class_ids, name)
        self.threshold = _threshold(threshold, "threshold")

    def update_state(self, y_true, y_pred, sample_weight=None):
        scores = _as_numbers(y_pred, self.name)
        super().update_state(y_true, (scores >= self.threshold).astype(np.int64), sample_weight)

    def get_config(self) -> dict:
        return {"target_class_ids": self.target_class_ids, "threshold": self.threshold, "name": self.name}


_BY_NAME = {
    "accuracy": Accuracy,
    "acc": Accuracy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "precision": Precision,
    "recall": Recall,
    "auc": AUC,
    "f1_score": F1Score,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mape": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "msle": MeanSquaredLogarithmicError,
    "root_mean_squared_error": RootMeanSquaredError,
    "r2_score": R2Score,
    "hinge": Hinge,
    "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge,
    "poisson": Poisson,
    "kl_divergence": KLDivergence,
    "cosine_similarity": CosineSimilarity,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "bce": BinaryCrossentropy,
    "log_cosh_error": LogCoshError,
    "log_cosh": LogCoshError,  # Keras's function of that name, as a metric
    "true_positives": TruePositives,
    "false_positives": FalsePositives,
    "true_negatives": TrueNegatives,
    "false_negatives": FalseNegatives,
}

# Keras's get('fbeta_score') fails (there is no such function): FBetaScore is known by its class
# name only, 'FBetaScore' or a serialize() dict.
_BUILT_IN = (*_BY_NAME.values(), FBetaScore, PrecisionAtRecall, RecallAtPrecision, SensitivityAtSpecificity,
             SpecificityAtSensitivity, IoU, MeanIoU, OneHotIoU, OneHotMeanIoU, BinaryIoU)
_CLASS_NAMES = {cls.__name__.lower(): cls for cls in _BUILT_IN}


def serialize(metric: Metric) -> dict | None:
    """``{"class_name", "config"}`` for a built-in metric object (:func:`get` rebuilds it), or None
    for a function or a class of your own (which a model file cannot rebuild)."""
    if type(metric) not in _BUILT_IN:
        return None
    return {"class_name": type(metric).__name__, "config": metric.get_config()}


def get(identifier) -> Metric:
    """A fresh metric from a name (``'accuracy'``, ``'acc'``, ``'mse'``, ``'mae'``, ``'precision'``,
    ``'sparse_categorical_accuracy'``, ... or a class name such as ``'AUC'``), :func:`serialize`'s
    dict, a Metric, or a function ``fn(y_true, y_pred) -> float`` (averaged over samples, named
    after the function)."""
    if isinstance(identifier, Metric):
        if isinstance(identifier, Sum) or (type(identifier) is Mean and identifier.fn is None):
            # compile's metrics get update_state(y_true, y_pred): these would take y_pred for weights.
            raise TypeError(
                f"{type(identifier).__name__}() sums or averages the values given to update_state(values), so it "
                "cannot be one of compile's metrics, which are given (y_true, y_pred): use Mean(fn) with a "
                "function fn(y_true, y_pred), or a metric such as 'mae'"
            )
        return identifier
    if isinstance(identifier, dict):
        classes = {cls.__name__: cls for cls in _BUILT_IN}
        if not isinstance(identifier.get("class_name"), str) or identifier["class_name"] not in classes:
            raise ValueError(f"unknown metric description {identifier!r}")
        return classes[identifier["class_name"]](**identifier.get("config", {}))
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME and key in _CLASS_NAMES:  # 'AUC', 'RootMeanSquaredError': logged so, as in Keras
            cls = _CLASS_NAMES[key]
            needed = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                      if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"]
            if needed:
                raise ValueError(f"metric {identifier!r} needs {', '.join(needed)}: pass the object, e.g. "
                                 f"metrics.{cls.__name__}({needed[0]}=...)")
            metric = cls(name=identifier)
        elif key not in _BY_NAME:
            raise ValueError(f"metric must be one of {sorted(_BY_NAME)}, a Metric or a function; got {identifier!r}")
        else:
            metric = _BY_NAME[key](name=identifier)
        if metric._auto_named:  # Keras makes it without a name, then names it after the string
            auto_name(metric._default_name)
        return metric
    if callable(identifier):
        refuse = getattr(identifier, "_refuse_ignored_call", None)  # a Loss used as a metric: its checks now
        if refuse is not None:
            refuse()
        return Mean(identifier)
    raise TypeError(f"metric must be a name such as 'accuracy', a Metric or a function; got {identifier!r}")


def _accuracy_function(name: str, make, doc: str):
    def function(y_true, y_pred, **arguments):
        return np.asarray(make(**arguments).fn(y_true, y_pred), dtype=np.float32)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"Keras's ``{name}(y_true, y_pred)``: {doc}, one value per sample (1.0 or 0.0)."
    return function


# Keras's metric functions: each sample's value, for direct calls and for compile(metrics=[...])
# (averaged over the samples there, under the function's name, as Keras's wrapper does).


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Keras's ``binary_accuracy(y_true, y_pred, threshold=0.5)``: 1.0 for each output on the right
    side of ``threshold``, else 0.0, of ``y_pred``'s shape (Keras's too: not reduced per sample)."""
    t, p = _binary_pair(y_true, y_pred, "binary_accuracy")
    return ((p > _threshold(threshold, "threshold")) == (t > 0.5)).astype(np.float32)


categorical_accuracy = _accuracy_function(
    "categorical_accuracy", CategoricalAccuracy, "whether the highest score is the one-hot target's class")
sparse_categorical_accuracy = _accuracy_function(
    "sparse_categorical_accuracy", SparseCategoricalAccuracy, "whether the highest score is the integer label's")
top_k_categorical_accuracy = _accuracy_function(
    "top_k_categorical_accuracy", lambda k=5: TopKCategoricalAccuracy(k=k),
    "whether the one-hot target's class is among the ``k`` (5) highest scores")
sparse_top_k_categorical_accuracy = _accuracy_function(
    "sparse_top_k_categorical_accuracy", lambda k=5: SparseTopKCategoricalAccuracy(k=k),
    "whether the integer label is among the ``k`` (5) highest scores")
# The loss functions, as keras.metrics has them too (keras.metrics.mean_squared_error).
for _name in _losses._KERAS_FUNCTIONS:
    if _name != "cosine_similarity":  # keras.metrics has none: its CosineSimilarity is the similarity
        globals()[_name] = getattr(_losses, _name)
del _name

from . import _unsupported  # noqa: E402

__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())

# A Keras argument a class here lacks (multi_label, label_weights, ...) gets a TypeError
# naming it and what to do instead, not Python's bare "unexpected keyword argument".
for _cls in [v for v in list(globals().values()) if isinstance(v, type) and issubclass(v, Metric)]:
    _unsupported.check_arguments(_cls)
