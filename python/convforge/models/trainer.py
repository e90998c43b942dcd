"""The training half of a model: compile / fit / evaluate / predict, as Keras's ``Trainer``.

:class:`Trainer` is a base class: the model classes (``Sequential``, ``Functional``,
through :class:`~convforge.models.functional.Model`) inherit it and provide the
structure it runs on: ``layers``, ``_build_from_data(x)``, ``_plan_backward()``
(sets ``_trainable_plan``), ``_resolve_loss_path()``, ``_forward(xb, training)``,
``_forward_loss(xb, yb, training, need_grad, sample_weight=None)``, ``_backward(dhead)``, ``_trace(xb)``,
``_data_format()`` and ``_entry`` (how user arrays become batches, see
:mod:`convforge.models.batches`). The data hooks (``_batches``, ``_check_x``,
``_convert_x``, ``_prepare``, ``_to_user``, ``_empty_outputs``) and metric hooks
(``_reset_metrics``, ``_update_metrics``, ``_log_metrics``) here serve one input and
one output; a model with several overrides them and passes lists through the loops
unchanged.

How ``fit``, ``evaluate`` and ``predict`` split and reduce their work -- one process, or
the ranks of a data-parallel MPI job -- is asked of a strategy object
(:func:`convforge.distributed.strategy`) at a few points: the shuffle order, each
rank's shard of a batch, one reduction per step (gradients, loss and metric sums, the
"not finite" flag), the stop decision, and the blocks of ``evaluate``/``predict``.

Session attributes
------------------
Set in ``__init__``, updated by ``compile`` and ``fit``; callbacks and
``convforge.models.state`` (model files) read them, and only the trainer writes them (except
``stop_training``, which a callback sets to stop ``fit``):

``optimizer``, ``loss``, ``compiled_metrics``
    From ``compile`` (None, None, [] before).
``history``
    The :class:`~convforge.callbacks.History` of the latest ``fit``.
``stop_training``
    Set True (by a callback) to end ``fit`` after the current batch.
``epochs_completed``
    Epochs trained so far (saved in checkpoints; ``fit(resume_from=)``).
``current_epoch``, ``last_batch``, ``fit_callbacks`` (read-only)
    While ``fit`` runs: the epoch index, the latest training batch
    ``(x, y)`` in the internal layout (None outside ``fit``), and the
    user's callbacks (``[]`` outside ``fit``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
import threading
import warnings
import weakref

import numpy as np

from .. import _unsupported
from .._warnings import user_stacklevel
from .. import callbacks as callbacks_module
from .. import distributed
from .. import functional as F
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from ..optimizers import _positive_int
from ..layers.augmentation import augments_by_default, training_unset
from ..layers.base import check_no_hidden_weights, display_shape
from ..layers.symbolic import KerasTensor
from ..progress import ProgressBar
from .. import threads as threads_module
from . import diagnostics
from . import state as state_module
from .batches import _Batches, one_array


def prepare_targets(loss, y, internal_shape: tuple, data_format: str) -> np.ndarray:
    """Targets checked by ``loss`` against the output shape as the user sees it, and kept in that
    layout: the loss and the metrics read an image output as the user sees it, ``(N, H, W, C)``
    (Functional._forward_loss), as Keras's do. (They read NCHW outputs against targets transposed
    to NCHW until 2026-12-06: a custom loss saw NCHW, and the cross-entropy of a class per pixel
    could not be taken over the classes.)"""
    if isinstance(loss, losses_module._Crossentropy) and len(internal_shape) == 3 and data_format == "channels_first":
        # Keras's cross-entropy runs over the last axis: of a channels-first image, the width.
        raise NotImplementedError(
            f"{loss.name} of an image output of a channels-first model: Keras computes it over the last axis (the "
            "width there); use a channels-last model, whose image outputs' last axis is the classes")
    return loss.prepare_targets(y, display_shape(internal_shape, data_format))


class _BatchSource:
    """Batches from a generator/iterator or a Sequence-like object, in the model's layout (``fit(x=gen)``).

    A Sequence is read as Keras 3.15.1's fit reads a ``PyDataset``: with ``carry_over`` (fit's
    training data) and ``steps`` fewer than its batches, an epoch goes on where the last one
    stopped, starting again at batch 0 once all were read (each epoch began at batch 0: the later
    batches were never trained on); an epoch stops at its last batch even if ``steps`` asks for
    more (a warning says so); its ``on_epoch_end()``, if it has one, is called after every epoch
    (where a Sequence reshuffles)."""

    def __init__(self, model, source, steps, argument, steps_argument, carry_over=False):
        # steps_argument: the name ``steps`` has for the caller (steps_per_epoch, validation_steps,
        # evaluate's steps), for the messages; evaluate's was called steps_per_epoch there.
        if steps is not None:
            steps = _positive_int(steps, steps_argument)
        source = _indexable(source, argument)
        self.model, self.source, self.argument = model, source, argument
        self.steps_argument = steps_argument
        self.indexed = not hasattr(source, "__next__")
        self._iterator = None if self.indexed else source
        if self.indexed and len(source) == 0:
            # Was a bare IndexError from its first item (fit, evaluate) or, as validation_data, a
            # val_loss of NaN every epoch.
            raise ValueError(f"the Sequence given as {argument} has no batches (its len() is 0)")
        if steps is None and self.indexed:
            steps = len(source)
        self.steps = steps
        self._peeked = None
        self._carry_over = carry_over
        self._cursor = _PassCursor(steps) if self.indexed else None  # where the next epoch starts

    def _next(self):
        if self._peeked is not None:
            item, self._peeked = self._peeked, None
            return item
        return next(self._iterator)

    def first_x(self):
        """The first batch's x, to build the model from (kept for the first epoch)."""
        if self.indexed:
            try:
                return _unpack_batch(self.source[0], self.argument)[0]
            except _PassEnded:
                raise ValueError(f"the iterable given as {self.argument} yields no batch") from None
        try:
            self._peeked = next(self._iterator)
        except StopIteration:
            raise ValueError(f"the generator given as {self.argument} yields no batch") from None
        return _unpack_batch(self._peeked, self.argument)[0]

    def epoch(self):
        """``(x, y, sample_weight)`` batches of one epoch: internal layout, checked targets."""
        items = self._indexed_items() if self.indexed else self._generated_items()
        for item in items:
            yield self._batch(item)
        if self.indexed and callable(getattr(self.source, "on_epoch_end", None)):
            self.source.on_epoch_end()

    def _batch(self, item):
        model = self.model
        x, y, w = _unpack_batch(item, self.argument)
        x, y = model._prepare(x, y, argument=f"a batch of {self.argument}")
        w = _check_sample_weight(w, _count(x), f"the sample weights of a batch of {self.argument}",
                                 model._weight_positions())
        return model._convert_x(x), y, w

    def _indexed_items(self):
        """A Sequence's items of one epoch (see the class)."""
        n = len(self.source)
        if not self._carry_over:
            self._cursor.position = 0
        first, end = self._cursor.next_epoch(n)
        for index in range(first, end):
            try:
                item = self.source[index]
            except _PassEnded:  # a DataLoader's len() over-counted: the pass ends here
                warnings.warn(f"{self.argument} ({type(self.source.source).__name__}) ran out of batches after {index} "
                              f"of the {n} its len() gives; the next epoch starts a new pass", RuntimeWarning,
                              stacklevel=user_stacklevel())
                self._cursor.position = 0
                return
            yield item
        if end - first < self.steps:
            warnings.warn(
                f"the Sequence given as {self.argument} ran out of batches (it has {n}): {end - first} read of "
                f"{self.steps_argument}={self.steps}"
                + ("; the next epoch starts again at batch 0" if self._carry_over else ""),
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def skip_epochs(self, epochs: int) -> None:
        """Start where a Sequence's next epoch would after ``epochs`` epochs (a resumed fit's
        first epoch: it starts where the uninterrupted run's did, as ``resume_from`` promises)."""
        if self.indexed and self._carry_over:
            n = len(self.source)
            for _ in range(epochs):
                self._cursor.next_epoch(n)

    def _generated_items(self):
        """A generator's items of one epoch: ``steps`` of them, or until it is exhausted."""
        count = 0
        while self.steps is None or count < self.steps:
            try:
                item = self._next()
            except StopIteration:
                if count == 0 or self.steps is not None:
                    raise ValueError(
                        f"the generator given as {self.argument} ran out of batches"
                        + (f" after {count} of {self.steps_argument}={self.steps}" if self.steps is not None else "")
                        + f": give a generator that loops forever (and {self.steps_argument}), or a Sequence"
                    ) from None
                return
            yield item
            count += 1


from .blas import single_threaded_blas

__all__ = ["Trainer"]

# Guards the "which thread runs fit" check-and-set of every model.
_FIT_LOCK = threading.Lock()
# The models a thread holds now (fit, train_on_batch, evaluate, test_on_batch), for the fork
# handler below.
_HELD: "weakref.WeakSet" = weakref.WeakSet()
# The thread whose fit (train_on_batch) trains each layer now: a layer shared by two models keeps
# one forward's caches for its backward, which another thread's fit of the other model replaced
# (a wrong shape error, "backward() needs a forward first", or with equal batches silently the
# other batch's gradients).
_TRAINING_LAYERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _model_layers(model) -> list:
    """The layers of ``model``, those of nested models included."""
    found, stack = [], list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        found.append(layer)
        stack.extend(getattr(layer, "layers", None) or [])
    return found


def _after_fork_in_child() -> None:
    """In a child process made by ``fork``, only the forking thread lives on: a fit that another
    thread of the parent was running is not running here, so its model is not held any more
    (it was: the child's evaluate and fit raised "fit runs in another thread" forever); the same
    for an evaluate. A call of the forking thread itself (a fork from a callback) goes on in the
    child and keeps its model. The lock is made anew: another thread may have held it at the fork."""
    global _FIT_LOCK
    _FIT_LOCK = threading.Lock()
    me = threading.get_ident()
    for layer, thread in list(_TRAINING_LAYERS.items()):
        if thread != me:
            del _TRAINING_LAYERS[layer]
    for model in list(_HELD):
        if model._fit_thread is not None and model._fit_thread != me:
            model._fit_thread = None
        if getattr(model, "_metrics_thread", None) not in (None, me):
            model._metrics_thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _state_copy(value):
    """A metric's state value as it is now: arrays and containers copied (a metric adds to them in
    place), anything else kept as the object it is (numbers, names, functions, and whatever else
    a user's metric refers to, a model, say, which must stay that object)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, dict, set)):
        try:
            return copy.deepcopy(value)
        except Exception:  # noqa: BLE001 - holds something that cannot be copied: kept as it is
            return value
    return value


# Why a data-parallel batch was skipped on a rank whose own shard was finite.
_NOT_FINITE_ELSEWHERE = "its loss or a gradient is NaN or Inf on another rank"


def _verbosity(verbose) -> int:
    if type(verbose) is int and 0 <= verbose <= 2:  # the common case first (a one-image predict counts)
        return verbose
    if verbose == "auto":
        return 1
    if isinstance(verbose, (bool, np.bool_)):  # Keras accepts verbose=True/False
        return int(verbose)
    if verbose in (0, 1, 2):
        return int(verbose)
    raise ValueError(f"verbose must be 0, 1, 2, True, False or 'auto'; got {verbose!r}")


# compile() arguments of Keras that change nothing here (convforge always runs eagerly, in NumPy).
_IGNORED_COMPILE_ARGUMENTS = {"run_eagerly", "jit_compile", "steps_per_execution", "auto_scale_loss"}
_UNSUPPORTED_COMPILE_ARGUMENTS = {
    "loss_weights": "a Sequential model has one output: scale the loss with a custom Loss (a functional Model takes loss_weights)",
    "weighted_metrics": "metrics are unweighted; pass sample_weight to fit for the loss",
}


def check_compile_arguments(kwargs: dict) -> None:
    """Keras compile() arguments beyond convforge's: accepted if they change nothing here, else refused."""
    for key in kwargs:
        if key in _UNSUPPORTED_COMPILE_ARGUMENTS:
            raise TypeError(f"convforge does not support compile({key}=...); {_UNSUPPORTED_COMPILE_ARGUMENTS[key]}")
        if key not in _IGNORED_COMPILE_ARGUMENTS:
            raise TypeError(
                f"compile() got an unexpected argument {key!r}; convforge's are optimizer, loss, metrics"
                " (and loss_weights for a functional Model)"
            )


def _is_batch_source(x) -> bool:
    """A generator/iterator of batches, a keras.utils.Sequence-like object (len + getitem of
    batches), or a re-iterable of batches with a length (a torch DataLoader)."""
    if isinstance(x, (np.ndarray, list, tuple, dict)) or x is None:
        return False
    return hasattr(x, "__next__") or (hasattr(x, "__len__") and not hasattr(x, "shape") and (
        hasattr(x, "__getitem__") or hasattr(x, "__iter__")))


class _Passes:
    """A re-iterable of batches with a length (a torch ``DataLoader``, which Keras 3's fit takes)
    as a Sequence read in order: item 0 starts a pass (a new iterator: a shuffling loader
    reshuffles), each next item is the pass's next batch. Was "x must hold real numbers; got an
    array of dtype object" (NumPy's reading of the loader)."""

    def __init__(self, source):
        self.source = source
        self._iterator, self._at = None, 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        try:
            if self._iterator is None or index != self._at:
                self._iterator, self._at = iter(self.source), 0
                for _ in range(index):  # (the batches are read in order; this only serves a jump)
                    next(self._iterator)
                    self._at += 1
            self._at += 1
            return next(self._iterator)
        except StopIteration:  # fewer batches than its len() said
            self._iterator = None
            raise _PassEnded(index) from None


class _PassEnded(Exception):
    """A _Passes source ended before its len() (a DataLoader whose length over-counts): the
    epoch ends there, as Keras's ends with "Your input ran out of data"."""


def _until_pass_ends(items):
    """``items`` (batches read by index) up to a _Passes source's early end."""
    try:
        yield from items
    except _PassEnded:
        return


def _indexable(source, argument: str = "x"):
    """``source`` as _BatchSource and predict read it: a re-iterable without getitem as _Passes."""
    if not hasattr(source, "__next__") and not hasattr(source, "__getitem__"):
        try:
            len(source)
        except TypeError:  # a DataLoader over an IterableDataset: its __len__ raises
            raise TypeError(
                f"{argument} is an iterable of batches without a length ({type(source).__name__}: len() fails); "
                "convforge reads such a source a pass an epoch and needs its len(): give it one, or pass a "
                "generator that yields batches without end and steps_per_epoch"
            ) from None
        return _Passes(source)
    return source


class _PassCursor:
    """Where an epoch of ``steps`` batches starts in a pass over the data, for fit's arrays with
    ``steps_per_epoch`` and a Sequence's epochs (Keras 3.15.1's rule for both): each epoch takes
    the next ``steps`` batches and ends early at the pass's last one (4 batches and 3 steps give
    epochs of 3, 1, 3, 1, ... batches); the next pass starts at batch 0 (arrays reshuffled)."""

    def __init__(self, steps: int):
        self.steps = steps
        self.position = 0
        self.order = None  # the pass's permutation of the arrays (shuffle), or None

    def next_epoch(self, batches: int) -> tuple[int, int]:
        """``(first, end)`` batch indices of the next epoch over ``batches``; the cursor moves past them."""
        first = self.position if self.position < batches else 0  # (a Sequence may have shrunk)
        end = min(first + self.steps, batches)
        self.position = 0 if end >= batches else end
        return first, end


def _unpack_batch(item, where: str):
    """``(x, y)`` or ``(x, y, sample_weight)`` from a generator item."""
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ValueError(
            f"{where} must yield tuples (x, y) or (x, y, sample_weight); got {type(item).__name__}"
            + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
        )
    return item[0], item[1], (item[2] if len(item) == 3 else None)


def _per_output_weights(sample_weight, n: int, argument: str) -> NotImplementedError:
    # Keras weighs each output's loss by its own array; here one weight per sample weighs the
    # total loss.
    return NotImplementedError(
        f"{argument}: one array per output (a {type(sample_weight).__name__}) is not supported; give one "
        f"array of shape ({n},), which weighs each sample's total loss"
    )


def _check_sample_weight(sample_weight, n: int, argument: str = "sample_weight", positions=None):
    """One weight per sample, ``(n,)`` (or ``(n, 1)``); with ``positions`` (a cross-entropy of a
    class per position, Trainer._weight_positions), a weight per position ``(n, *positions)`` too,
    as Keras takes for a segmentation net's pixels."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, dict):
        raise _per_output_weights(sample_weight, n, argument)
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{argument} must be an array of numbers, one weight per sample; got "
                        f"{type(sample_weight).__name__}") from None
    if isinstance(sample_weight, (list, tuple)) and w.ndim == 2 and w.shape[1] == n and 1 < w.shape[0] != n:
        raise _per_output_weights(sample_weight, n, argument)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if positions is not None and w.shape == (n, *positions):
        pass  # a weight per pixel or step
    elif w.shape != (n,):
        also = (f" or ({n}, {', '.join(map(str, positions))}), one per position" if positions is not None else
                "" if w.ndim < 2 else "; a weight per position is for an output with positions (pixels, steps) under a built-in loss")
        raise ValueError(f"{argument} must have shape ({n},), one weight per sample{also}; got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{argument} must hold finite weights >= 0")
    return w


def _class_weights(class_weight, y: np.ndarray) -> np.ndarray:
    """Per-sample weights from ``{class: weight}`` and the prepared targets (labels, one-hot or 0/1)."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class index: weight}}; got {type(class_weight).__name__}")
    if y.ndim == 2 and y.shape[1] > 1:
        labels = y.argmax(axis=1)
    else:
        labels = np.rint(y.reshape(len(y), -1)[:, 0]).astype(np.int64)
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
            raise ValueError(f"class_weight keys must be class indices (ints >= 0); got {k!r}")
        # As sample_weight's: a NaN weight made every batch with that class NaN (skipped, never
        # trained on), a negative one trained away from the labels.
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise ValueError(f"class_weight[{k!r}] must be a finite number >= 0; got {v!r}")
    # A negative label (regression targets, -1/1 labels) indexed the table from its end: the
    # weight of the last class, silently.
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"class_weight weighs class indices >= 0, but the targets hold {int(labels.min())}: class_weight is "
            "for class labels (0, 1, ...), not for regression targets; give sample_weight instead"
        )
    # One weight per class the targets hold (classes not listed weigh 1). A key beyond them weighs
    # no sample: a table sized by the keys took 800 MB for {10**8: 1.0}, and 2**40 a MemoryError.
    table = np.ones(int(labels.max(initial=0)) + 1)
    for k, v in class_weight.items():
        if k < len(table):
            table[int(k)] = float(v)
    return table[labels]



class _OneBatch:
    """``train_on_batch``'s tally: the batch's loss, and the batch's metrics in the compiled
    metrics (reset before the call, see ``_metrics_set_aside(fresh=True)``)."""

    def __init__(self, model):
        self.model, self.loss = model, float("nan")

    def add(self, loss: float, y, out) -> None:
        self.loss = loss
        if out is not None:
            self.model._update_metrics(y, out)


class Trainer:
    """compile / fit / evaluate / predict for a model class that inherits it (see the module docstring)."""

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.compiled_metrics: list = []
        self._metric_names: list = []  # the compiled metrics' names in the logs (metrics.log_names)
        self._metric_specs: list = []  # compile's metrics argument, for get_compile_config
        self.stop_training = False
        self.history = None
        #: Epochs trained so far (by fit; saved in checkpoints).
        self.epochs_completed = 0
        self._fused = False
        self._fit_callbacks: list = []
        self._last_batch = None
        self._current_epoch = 0
        # The thread running fit (None outside fit): evaluate or fit from another thread would
        # share its metrics and optimizer, and are refused; predict is safe (inference leaves
        # the layers' training state alone).
        self._fit_thread: int | None = None
        # The thread running evaluate, train_on_batch or test_on_batch (None outside them): they
        # tally into the compiled metrics, which another thread's such call or fit would share.
        self._metrics_thread: int | None = None
        self._governor = None  # the thread-count governor of the running fit (convforge/threads.py)
        self._thread_governors: dict = {}  # this model's governors by loop kind, kept between calls
        # Batches not applied in the current epoch (non-finite loss or gradient), and whether
        # this fit has warned about one yet.
        self._skipped_batches = 0
        self._warned_skip = False
        self._terminate_on_nan = False  # a TerminateOnNaN among the running fit's callbacks
        # How fit splits and reduces its work: one process, or data-parallel ranks (convforge.distributed).
        self._strategy = distributed.strategy_for_one_process()

    # ================================================================== session (read-only)

    @property
    def current_epoch(self) -> int:
        """The epoch ``fit`` is running (0-based); the last one it ran once it has returned."""
        return self._current_epoch

    @property
    def last_batch(self):
        """``(x, y)`` of the latest training batch while ``fit`` runs, else None: ``x`` in the layout
        inside (images NCHW), ``y`` as the loss reads it (an image target as the user gives it, NHWC)."""
        return self._last_batch

    @property
    def fit_callbacks(self) -> list:
        """The user's callbacks of the ``fit`` in progress (``[]`` outside ``fit``); saved with checkpoints."""
        return self._fit_callbacks

    # ================================================================== compile

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs) -> None:
        """Choose the optimizer, the loss and the metrics to report.

        Parameters
        ----------
        optimizer : 'sgd', 'adam', 'adamw', 'rmsprop', 'adagrad', 'nadam' or an Optimizer
        loss : a name of :mod:`convforge.losses` ('sparse_categorical_crossentropy',
            'categorical_crossentropy', 'binary_crossentropy', 'mse', 'mae', 'huber') or a Loss
            A final softmax followed by a cross-entropy is trained from the
            logits (see :mod:`convforge.losses`). A probability loss after a
            last layer without softmax/sigmoid gets a warning (once) that
            ``from_logits=True`` is probably meant.
        metrics : list, optional
            ``['accuracy']`` and/or ``'mse'``, ``'mae'``, ``'precision'``, ...
            (see :func:`convforge.metrics.get`), Metric objects or functions
            ``fn(y_true, y_pred) -> float``.
        run_eagerly, jit_compile, steps_per_execution
            Accepted and ignored (convforge always runs step by step in NumPy).
        """
        check_compile_arguments(kwargs)
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        if isinstance(metrics, (str, metrics_module.Metric)) or callable(metrics):
            metrics = [metrics]
        compiled = [metrics_module.get(m) for m in (metrics or [])]
        names = metrics_module.log_names([m.name for m in compiled])
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"metric names must be unique and not 'loss'; got {names}")
        self.compiled_metrics, self._metric_names = compiled, names
        self._metric_specs = list(metrics or [])
        self._warned_logits = False
        if getattr(self, "built", False):
            self._resolve_loss_path()  # the from_logits warning, at compile when the model is built

    @property
    def metrics_names(self) -> list[str]:
        """``'loss'`` then the names of what ``compile`` asked for, in the order ``evaluate`` returns them."""
        return ["loss", *self._metric_names]

    def _require_compiled(self, what: str) -> None:
        if self.loss is None:
            raise RuntimeError(
                f"You must compile the model before calling {what}(): model.compile(optimizer='adam', "
                "loss='sparse_categorical_crossentropy', metrics=['accuracy'])"
            )

    def get_compile_config(self) -> dict | None:
        """``compile``'s arguments, JSON-serialisable, as saved in a model file (Keras's name).

        ``{"optimizer", "loss", "metrics"}``; None before ``compile``. Metrics given as
        functions or objects of your own classes are left out (a file cannot rebuild them).
        """
        if self.loss is None:
            return None
        return {
            "optimizer": optimizers_module.serialize(self.optimizer),
            "loss": losses_module.serialize(self.loss),
            "metrics": saveable_metrics(self._metric_specs, self.compiled_metrics),
        }

    # ================================================================== the training step

    def _plan_training(self) -> None:
        """_plan_backward, for a training step, once no layer holds weights training would miss."""
        ids = {id(layer) for layer in self._flat_layers}
        for layer in self._flat_layers:
            check_no_hidden_weights(layer, "training", ids)
        self._plan_backward()

    def _gradients(self):
        """``[(key, weight, gradient)]`` for the optimizer, checking what custom layers returned."""
        items = []
        for layer, names in self._trainable_plan:
            params, grads = layer.params, layer.grads
            for name, key in names:
                p = params[name]
                g = grads.get(name)
                if g is None or g.shape != p.shape:
                    got = "nothing" if g is None else f"shape {g.shape}"
                    raise RuntimeError(
                        f"layer {layer.name!r} ({type(layer).__name__}): backward() must set grads[{name!r}] to an "
                        f"array of shape {p.shape} (the weight's shape); got {got}"
                    )
                items.append((key, p, g))
        return items

    def _train_step(self, xb, yb, tally, global_batch: int, sample_weight=None) -> str | None:
        """One training step on ``xb``: why the batch was not applied, or None.

        In a data-parallel run ``xb`` is this rank's shard (possibly empty) of a
        global batch of ``global_batch`` samples; the batch is applied on every
        rank or on none (:data:`_NOT_FINITE_ELSEWHERE` when another rank found
        the problem). ``sample_weight`` weighs this shard's samples in its loss.
        """
        loss, out, gradients, why = 0.0, None, None, None
        # What the forward pass itself updates (moving statistics): put back if the batch is skipped.
        state = forward_state(self._flat_layers)
        state_before = [p.copy() for p in state]
        # Overflow shows up as a NaN/Inf loss, which is reported (the loss in the logs,
        # TerminateOnNaN's diagnosis, a warning) rather than warned about by NumPy at every batch.
        with np.errstate(all="ignore"):
            if _count(xb):  # a rank's shard of a short last batch can be empty
                loss, out, dhead = self._forward_loss(
                    xb, yb, training=True, need_grad=True, sample_weight=sample_weight
                )
                # A non-finite loss or gradient would poison the weights: the batch is not applied.
                if not math.isfinite(loss):
                    why = f"its loss is {loss}"
                else:
                    self._backward(dhead)
                    gradients = self._gradients()
                    bad = F.first_non_finite([g for _, _, g in gradients])
                    if bad >= 0:
                        why, gradients = f"the gradient of {gradients[bad][0]!r} holds NaN or Inf", None
            tally.add(loss, yb, out)
            # One process: the gradients as they are. Data-parallel: the shards' gradients summed
            # (with the step's loss and metric sums) in one allreduce; None on every rank when the
            # batch was not finite on any rank.
            gradients = self._strategy.reduce_step(gradients, _count(xb), global_batch, tally, state_before)
            if gradients is None:
                # Not applied, nor what its forward pass moved: a NaN input had made BatchNormalization's
                # moving statistics NaN for good (every predict NaN, the model unsaveable).
                for p, before in zip(state, state_before):
                    p[...] = before
                return why or _NOT_FINITE_ELSEWHERE
            self.optimizer.apply_gradients(gradients)
            # Finite gradients can still overflow a weight (a huge learning rate): stop before
            # anything (a checkpoint, the next step) uses it. Every rank applied the same update,
            # so every rank stops here.
            bad = F.first_non_finite([p for _, p, _ in gradients])
            if bad >= 0:
                layer, _, weight = gradients[bad][0].rpartition("/")
                raise FloatingPointError(
                    f"epoch {self._current_epoch + 1}: weight {weight!r} of layer {layer!r} became NaN or Inf "
                    "in the update (is the learning rate too large?); training stopped, the model's weights are "
                    "not usable (checkpoints written before are kept)"
                )
        return None

    def _clear_caches(self) -> None:
        for layer in self._flat_layers:
            layer._clear_cache()

    # ================================================================== data

    def _prepare(self, x, y, argument="x", allow_empty: bool = False):
        """Checked user x and loss-checked targets y (the whole arrays, once per call)."""
        x = self._check_x(x, argument, allow_empty)
        if y is None:
            raise ValueError(f"y is required to go with {argument}")
        y = np.asarray(one_array(y))
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(
                f"{argument} holds {x.shape[0]} samples but its targets hold {y.shape[0] if y.ndim else 0}"
            )
        y = prepare_targets(self.loss, y, self._flat_layers[-1]._internal_output_shape, self._data_format())
        return x, y

    def _to_user(self, a: np.ndarray) -> np.ndarray:
        """An internal batch as the user sees it (NCHW -> NHWC unless channels-first)."""
        if a.ndim == 4 and self._data_format() == "channels_last":
            return a.transpose(0, 2, 3, 1)
        return a

    # ================================================================== data hooks
    # One input, one output; a model with several (Functional) overrides these.

    def _batches(self, x, y, batch_size: int) -> _Batches:
        """Checked data (from ``_prepare``/``_check_x``) cut into internal-layout batches."""
        return _Batches(self._entry, x, y, batch_size)

    def _check_x(self, x, argument="x", allow_empty: bool = False):
        return self._entry.check(one_array(x), argument, allow_empty)

    def _inference_may_use_blas(self) -> bool:
        """Can the inference pass call NumPy's BLAS (so that predict must hold it to one thread)?
        Not when all of it is a compiled plan (models/compiled.py): setting and restoring
        OpenBLAS's thread count took 3 of a one-image predict's ~30 microseconds."""
        return True

    def _empty_outputs(self):
        """What ``_forward`` gives for zero samples, without running any layer."""
        return np.zeros((0, *self._flat_layers[-1]._internal_output_shape), self.dtype)

    def _convert_x(self, x_checked):
        """A whole checked input as one internal-layout batch."""
        return self._entry.convert(x_checked)

    def _reset_metrics(self) -> None:
        for m in self._metric_objects():
            m.reset_state()

    def _update_metrics(self, yb, out) -> None:
        for m in self.compiled_metrics:
            m.update_state(yb, out)

    def _log_metrics(self) -> list:
        """``[(name in the logs, Metric)]`` after ``'loss'``, in the logs' order: what a
        :class:`~convforge.distributed.Tally` reports (and sums over ranks)."""
        return list(zip(self._metric_names, self.compiled_metrics))

    def loss_and_gradients(self, x, y, training: bool = True, need_grad: bool = True):
        """The loss of one batch and the gradient of every trainable weight: the training step
        without the update. Documented for :mod:`convforge.gradcheck` and for tests.

        Parameters
        ----------
        x, y : arrays
            One batch, in the form ``fit`` takes (the model is built from ``x`` if need be).
        training : bool
            Training-mode forward pass (dropout on). False: the inference function (what
            ``predict`` computes), and with ``need_grad`` its gradients, as a model called with
            ``training=False`` trains: BatchNormalization on its moving statistics, Dropout, the
            noise and the augmentation layers the identity (RandomCrop its resize; a layer of your
            own runs its training-mode forward, which its backward needs).
        need_grad : bool
            False: only the loss (no backward pass; the gradients come back as None).

        Returns
        -------
        (float, list)
            The loss and ``[(key, weight, gradient)]``, ``key`` being
            ``'<layer name>/<weight name>'``, in the optimizer's order. ``weight``
            is the model's own array (changing it changes the model);
            ``gradient`` is overwritten by the next call.
        """
        self._build_from_data(x)
        self._plan_training()
        self._resolve_loss_path()
        x_user, y_ready = self._prepare(x, y)
        xb = self._convert_x(x_user)
        if not training:  # the backward needs the training-mode forward: each node as at inference, and the
            with self._graph_as_in_inference():  # loss alone the same way (gradcheck compares the two)
                return self.loss_and_gradients(x, y, training=True, need_grad=need_grad)
        try:
            value, _, dhead = self._forward_loss(xb, y_ready, training, need_grad)
            if not need_grad:
                return value, [(key, layer.params[name], None) for layer, names in self._trainable_plan
                               for name, key in names]
            self._backward(dhead)
            return value, self._gradients()
        finally:
            self._clear_caches()

    # ================================================================== fit

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        resume_from=None,
    ):
        """Train for ``epochs`` epochs; returns a :class:`~convforge.callbacks.History`.

        The arguments come in Keras 3's order (``resume_from``, convforge's, last).

        Parameters
        ----------
        x : array, shape (N, height, width, channels), (N, height, width) or (N, features);
            or a generator / iterator of ``(x, y)`` or ``(x, y, sample_weight)`` batches, or
            a ``keras.utils.Sequence``-like object (``len`` and ``[i]`` giving batches); then
            ``y`` is None and ``batch_size`` unused.
        y : array
            Integer labels ``(N,)`` or one-hot ``(N, classes)``, per the loss.
        batch_size : int
            Default 32.
        epochs : int
            Index of the last epoch (with ``initial_epoch``), as in Keras.
        verbose : 'auto', 0, 1, 2, True or False
            1: progress bar (one line per epoch when stdout is not a
            terminal); 2: one line per epoch; 0: silent.
        callbacks : Callback or list of Callback
        validation_split : float
            Fraction of the data, taken from the end before shuffling, held out
            for validation; ``sample_weight``'s values for those samples weight
            the validation loss, as in Keras (``class_weight`` only the training).
        validation_data : (x_val, y_val) or (x_val, y_val, val_sample_weight), optional
            Overrides ``validation_split``.
        shuffle : bool
            Reshuffle the training data every epoch (convforge's generator). Arrays
            only: a generator's or Sequence's batches come in their own order (unlike
            Keras, which shuffles the order of a ``PyDataset``'s batches; shuffle in
            the Sequence's ``on_epoch_end``, which fit calls after each epoch).
        initial_epoch : int
            Epoch to start from.
        validation_batch_size : int, optional
            Default ``batch_size``.
        resume_from : str or os.PathLike, optional
            A file written by ``model.save`` or ``ModelCheckpoint`` (not
            ``save_weights_only``): restores the weights, the optimizer state,
            the random generator, the callbacks' state and the history, and
            continues at the epoch after the one saved; ``epochs`` is still the
            total. The run then ends with the same weights, bit for bit, as one
            that was never interrupted (same data, seed and thread count).
        sample_weight : array (N,), optional
            Weight of each sample in the loss: ``sum(w_i * loss_i) / batch``
            (Keras's rule); with several outputs, in each output's loss. Metrics
            stay unweighted.
        class_weight : dict, optional
            ``{class index: weight}``; multiplies each sample's weight by its
            class's (classes not listed weigh 1). Models with one output only;
            arrays only (Keras also takes it with a ``PyDataset``; here yield
            ``(x, y, sample_weight)`` batches instead). Keras refuses it together
            with ``sample_weight``; here the two multiply.
        steps_per_epoch : int, optional
            With a generator: batches per epoch (default: until it is exhausted).
            With a Sequence (default: ``len``) or arrays (default: all their
            batches): as Keras, fewer than its batches and the next epoch goes on
            where this one stopped; an epoch ends at the data's last batch (arrays
            are reshuffled, with ``shuffle``, when a pass over them begins). A
            Sequence's ``on_epoch_end()``, if any, runs after each epoch.
        validation_steps : int, optional
            Batches of the validation data to evaluate at each epoch's end (default:
            all of them): a generator's next ones, a Sequence's or arrays' first ones.

        Returns
        -------
        History
            ``history.history`` maps ``'loss'``, each metric, and
            ``'val_...'`` to per-epoch lists.

        Notes
        -----
        The loss and metrics in the logs are sample-weighted means over the
        epoch so far. A batch whose loss is NaN or Inf is not applied to the
        weights (add ``callbacks.TerminateOnNaN()`` to stop and be told where
        it came from). While ``fit``, ``evaluate`` and ``predict`` run,
        NumPy's OpenBLAS (custom layers' matrix products) is kept to one
        thread so that it does not compete with the kernels' threads; set
        ``$OPENBLAS_NUM_THREADS`` to decide otherwise. The kernels run at
        ``convforge.get_num_threads()``, or at half of it while ``fit``
        (``evaluate``, ``predict``) measures that to be faster (another process holding a core; see
        :func:`convforge.set_adaptive_threads`, which turns this off); the
        results are the same at any thread count.

        After :func:`convforge.distributed.init` in a job of N MPI ranks,
        ``batch_size`` is the global batch: each rank trains on its shard of
        every batch, the gradients are averaged, and the logs hold global
        values (see :mod:`convforge.distributed`).
        """
        # First of all, atomically: the checks of _fit already plan the backward pass and fuse layers.
        with self._owning_fit("fit"):
            return self._fit(
                x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data, shuffle,
                initial_epoch, validation_batch_size, resume_from, sample_weight, class_weight,
                steps_per_epoch, validation_steps,
            )

    @contextlib.contextmanager
    def _owning_fit(self, what: str):
        """Hold the model for a training call (``fit``, ``train_on_batch``): another thread's is refused."""
        me = threading.get_ident()
        with _FIT_LOCK:
            if self._fit_thread is not None and self._fit_thread != me:
                raise RuntimeError(
                    ("" if what == "fit" else f"{what} cannot run: ") + "fit is already running in another thread on this model"
                )
            if getattr(self, "_metrics_thread", None) not in (None, me):
                raise RuntimeError(
                    f"{what} cannot run while evaluate runs in another thread on this model (they share the "
                    f"compiled metrics); predict can, or {what} after evaluate returns"
                )
            if what == "fit" and self._fit_thread == me:
                # A fit from a callback of this model's fit: it replaced model.history, reset the
                # metrics the outer epoch was adding to and cleared the outer fit's callbacks and
                # settings when it returned, so the outer fit went on with a mixed-up state.
                raise RuntimeError(
                    "fit cannot run from inside this model's fit (a callback): the two would share the history, "
                    "the metrics and the training state; use train_on_batch there, or fit after this fit returns"
                )
            owner = self._fit_thread is None  # not a call from a callback of this fit
            taken = []
            if owner:
                layers = _model_layers(self)
                for layer in layers:
                    if _TRAINING_LAYERS.get(layer, me) != me:
                        raise RuntimeError(
                            f"{what} cannot run: layer {getattr(layer, 'name', layer)!r} of this model is being "
                            "trained by fit in another thread (a model sharing it): its forward and backward passes "
                            "would mix the two models' batches"
                        )
                for layer in layers:
                    if layer not in _TRAINING_LAYERS:
                        _TRAINING_LAYERS[layer] = me
                        taken.append(layer)
            self._fit_thread = me
            if owner:
                _HELD.add(self)
        try:
            yield
        finally:
            if owner:
                with _FIT_LOCK:
                    for layer in taken:
                        _TRAINING_LAYERS.pop(layer, None)
                self._fit_thread = None

    def _fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        initial_epoch=0,
        validation_batch_size=None,
        resume_from=None,
        sample_weight=None,
        class_weight=None,
        steps_per_epoch=None,
        validation_steps=None,
    ):
        """``fit`` once it owns the model (see ``fit``)."""
        self._require_compiled("fit")
        if x is None:
            raise ValueError("fit needs training data x (and y)")
        # A BackupAndRestore's backup from a run that did not finish: continue from it.
        backup = next((cb for cb in _checked_callbacks(callbacks) if isinstance(cb, callbacks_module.BackupAndRestore)),
                      None)
        if backup is not None and resume_from is not None:
            raise ValueError("fit: give resume_from or a BackupAndRestore callback, not both")
        if backup is not None:
            resume_from = _backup_to_resume_from(backup)
            if resume_from is not None:
                initial_epoch = 0  # the backup's epoch, as Keras's BackupAndRestore overrides initial_epoch
        source = None
        if _is_batch_source(x):
            if y is not None or sample_weight is not None or class_weight is not None:
                raise ValueError(
                    "with a generator as x, give y and sample weights in its batches: yield (x, y) or "
                    "(x, y, sample_weight); class_weight is not supported with generators"
                )
            source = _BatchSource(self, x, steps_per_epoch, "x", "steps_per_epoch", carry_over=True)
            x = source.first_x()
        elif steps_per_epoch is not None:
            # Arrays, as Keras 3.15.1 reads them (the callbacks guide's fit(x, y, steps_per_epoch=5)):
            # each epoch takes the next steps_per_epoch batches of a pass over the data.
            steps_per_epoch = _positive_int(steps_per_epoch, "steps_per_epoch")
            if resume_from is not None or backup is not None:
                raise NotImplementedError(
                    f"fit: {'resume_from' if backup is None else 'BackupAndRestore'} with arrays and steps_per_epoch "
                    "is not supported (the checkpoint does not keep where in its pass over the data the run stood); "
                    "leave steps_per_epoch out, or pass a Sequence")
        self._build_from_data(x)
        self._plan_training()
        self._resolve_loss_path()
        batch_size = 32 if batch_size is None else _positive_int(batch_size, "batch_size")
        val_batch_size = (
            batch_size
            if validation_batch_size is None
            else _positive_int(validation_batch_size, "validation_batch_size")
        )
        epochs = int(epochs) if isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) else epochs
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative int; got {epochs!r}")
        verbose = _verbosity(verbose)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False; got {shuffle!r}")
        strategy = distributed.strategy()
        if isinstance(callbacks, callbacks_module.Callback):  # Keras accepts one callback alone
            callbacks = [callbacks]
        if strategy.size > 1 and (source is not None or _is_batch_source(validation_data)):
            raise NotImplementedError(
                "convforge.distributed: fit from a generator or Sequence is not supported in a data-parallel run "
                "(each rank would draw its own batches); pass arrays, which every rank shards the same way"
            )
        # Before the data checks, which could fail on some ranks only: every rank must get the same.
        strategy.check_fit(
            self, x=x, y=y, validation_data=validation_data, batch_size=batch_size, val_batch_size=val_batch_size,
            epochs=epochs, initial_epoch=initial_epoch, shuffle=bool(shuffle), validation_split=validation_split,
            resume=resume_from is not None, callbacks=[type(cb).__name__ for cb in callbacks or []],
            # Whether stop_training is agreed after every step: a callback of one class with batch
            # hooks on one rank and without on another made the ranks' collectives part (a hang).
            stop_agreed_each_step=strategy.each_step_agreement(_checked_callbacks(callbacks)),
            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
            sample_weight=None if sample_weight is None else distributed.checksum(sample_weight),
            class_weight=None if class_weight is None else repr(
                sorted(class_weight.items()) if isinstance(class_weight, dict) else class_weight),
        )
        if not strategy.primary:
            verbose = 0
        weights = None
        if source is None:
            x, y = self._prepare(x, y)
            # Data-parallel: every rank holds all the weights and takes its shard's, as of x.
            weights = self._sample_weights(sample_weight, class_weight, x, y)

        x_val = y_val = val_weights = None
        val_source = None
        if validation_data is not None and _is_batch_source(validation_data):
            val_source = _BatchSource(self, validation_data, validation_steps, "validation_data", "validation_steps")
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight)")
            x_val, y_val = self._prepare(*validation_data[:2], argument="validation_data[0]")
            if len(validation_data) == 3:
                val_weights = _check_sample_weight(validation_data[2], _count(x_val), "validation_data[2]",
                                                   self._weight_positions())
        elif validation_split:
            if source is not None:
                raise ValueError("validation_split cannot split a generator; give validation_data")
            if not isinstance(validation_split, numbers.Real) or not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be a number in [0, 1); got {validation_split!r}")
            n = _count(x)
            split_at = int(n * (1 - validation_split))
            if split_at < 1 or split_at >= n:
                raise ValueError(
                    f"validation_split={validation_split} leaves no training or no validation sample "
                    f"out of {n}"
                )
            x, x_val = _rows(x, 0, split_at), _rows(x, split_at, None)
            y, y_val = _rows(y, 0, split_at), _rows(y, split_at, None)
            if weights is not None:
                weights = weights[:split_at]
            if sample_weight is not None:  # the held-out samples' own weights, not class_weight's (Keras)
                val_weights = _check_sample_weight(sample_weight, n, positions=self._weight_positions())[split_at:]
        if x_val is not None and validation_steps is not None:
            # As Keras (and evaluate's steps): the first validation_steps batches of the arrays. It
            # was ignored, so the whole validation set was evaluated, silently.
            end = _positive_int(validation_steps, "validation_steps") * val_batch_size
            x_val, y_val = _rows(x_val, 0, end), _rows(y_val, 0, end)
            val_weights = None if val_weights is None else val_weights[:end]

        user_callbacks = _checked_callbacks(callbacks)
        # As Keras: a History or ProgbarLogger among the callbacks is the one fit uses, not one
        # more (two progress lines were printed per epoch, and fit returned a History other than
        # the one given).
        given_history = [cb for cb in user_callbacks if isinstance(cb, callbacks_module.History)]
        history = given_history[0] if given_history else callbacks_module.History()
        if resume_from is not None:
            if not (isinstance(initial_epoch, numbers.Integral) and initial_epoch == 0):
                raise ValueError(f"fit: resume_from continues at the epoch the checkpoint was saved at; leave "
                                 f"initial_epoch out (got initial_epoch={initial_epoch!r})")
            state = state_module.restore_training_state(self, resume_from, user_callbacks)
            initial_epoch = state["epoch"]
            if source is not None:
                source.skip_epochs(initial_epoch)
            history.history = {k: [np.array(x) if isinstance(x, list) else x for x in v]
                               for k, v in state["history"].items()}
            history.epoch = list(state["history_epochs"])
            history.skipped_batches = [int(n) for n in state["history_skipped"]]
            if backup is not None and getattr(backup, "_stopped_at_backup", False) \
                    and getattr(backup, "_backup_epochs", None) == epochs:
                initial_epoch = epochs  # the run had stopped there (EarlyStopping): on to its end
            if backup is not None:
                backup._stopped_at_backup = False
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) or initial_epoch < 0:
            raise ValueError(f"initial_epoch must be a non-negative int; got {initial_epoch!r}")
        initial_epoch = int(initial_epoch)
        strategy.start_fit(self, initial_epoch)

        batches = self._batches(x, y, batch_size) if source is None else None
        cursor = None
        if source is None and steps_per_epoch is not None:
            cursor = _PassCursor(steps_per_epoch)
            if steps_per_epoch > batches.steps:
                warnings.warn(
                    f"fit: steps_per_epoch={steps_per_epoch} is more than the {batches.steps} batches of x: each "
                    f"epoch ends at the data's last batch ({batches.steps} steps), as Keras's",
                    RuntimeWarning, stacklevel=user_stacklevel())
        cbs = [*([] if given_history else [history]), *user_callbacks]
        if verbose and not any(isinstance(cb, callbacks_module.ProgbarLogger) for cb in user_callbacks):
            cbs.insert(0, callbacks_module.ProgbarLogger(verbose))
        steps = (batches.steps if cursor is None else steps_per_epoch) if source is None else source.steps
        callback_list = callbacks_module.CallbackList(
            cbs, self, {"verbose": verbose, "epochs": epochs, "steps": steps}
        )
        self._fit_callbacks = user_callbacks
        self.history = history
        self.stop_training = False
        # TerminateOnNaN reports (and stops at) the first non-finite loss itself (see _skip_batch).
        self._terminate_on_nan = any(isinstance(cb, callbacks_module.TerminateOnNaN) for cb in user_callbacks)
        self._warned_skip = False
        self._strategy = strategy
        logs: dict = {}
        blas = single_threaded_blas()
        governing = threads_module.governed("fit", self._thread_governors, strategy)
        self._governor = governing.__enter__()
        try:
            blas.__enter__()
            callback_list.on_train_begin()
            for epoch in range(initial_epoch, epochs):
                self._current_epoch = epoch
                callback_list.on_epoch_begin(epoch)
                if source is None:
                    logs = self._train_epoch(batches, shuffle, callback_list, weights, cursor)
                else:
                    logs = self._train_epoch_from(source, callback_list)
                if x_val is not None:
                    val_logs = self._evaluate(x_val, y_val, val_batch_size, weights=val_weights,
                                              callback_list=callback_list)
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                elif val_source is not None:
                    val_logs = self._evaluate_source(val_source, callback_list)
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                history.skipped_batches.append(self._skipped_batches)
                self.epochs_completed = epoch + 1
                callback_list.on_epoch_end(epoch, logs)
                if strategy.agree_stop(self.stop_training):
                    self.stop_training = True
                    break
            callback_list.on_train_end(logs)
        finally:
            blas.__exit__()
            self._governor = None
            governing.__exit__(None, None, None)
            self._strategy = distributed.strategy_for_one_process()
            self._fit_callbacks = []
            self._last_batch = None
            self._clear_caches()
        return history

    def _train_epoch(self, batches: _Batches, shuffle: bool, callback_list, weights=None, cursor=None) -> dict:
        """One epoch over arrays cut into batches (reshuffled first if ``shuffle``); data-parallel,
        each rank trains on its shard of every global batch. With a ``cursor`` (steps_per_epoch), the
        epoch is the next batches of the cursor's pass over the data."""
        strategy = self._strategy
        if cursor is None:
            order, first_step, last_step = strategy.permutation(batches.n) if shuffle else None, 0, batches.steps
        else:
            if cursor.position == 0:  # a pass begins
                cursor.order = strategy.permutation(batches.n) if shuffle else None
            order, (first_step, last_step) = cursor.order, cursor.next_epoch(batches.steps)
        bs, n = batches.batch_size, batches.n

        def epoch():
            for step in range(first_step, last_step):
                first, end = step * bs, min(step * bs + bs, n)
                lo, hi = strategy.shard(first, end)  # this rank's part of the global batch
                rows = order[lo:hi] if order is not None else slice(lo, hi)
                xb, yb = batches.take(rows) if order is not None else batches.slice(lo, hi)
                yield xb, yb, None if weights is None else weights[rows], end - first

        return self._train_batches(epoch(), callback_list)

    def _train_epoch_from(self, source, callback_list) -> dict:
        """One epoch over a generator's batches (see ``fit``; one process only)."""
        return self._train_batches(((xb, yb, wb, _count(xb)) for xb, yb, wb in source.epoch()), callback_list)

    def _train_batches(self, batches, callback_list) -> dict:
        """Train on ``(x, y, sample_weight, global batch size)`` batches (one epoch): the logs at its end."""
        strategy = self._strategy
        tally = strategy.tally(self)
        report = callback_list.wants_batch_end
        agree_each_step = strategy.each_step_agreement(callback_list.callbacks)
        if strategy.size > 1 and not agree_each_step:
            # A stop set before the epoch's first batch (on_train_begin, on_epoch_begin: a time
            # budget) on some ranks only: agreed once here, so that every rank breaks after the
            # same batch; rank 0 broke alone after one and rank 1 waited in the next step's
            # allreduce for good. Without batch hooks nothing else sets it within the epoch.
            self.stop_training = strategy.agree_stop(self.stop_training)
        self._skipped_batches = 0
        for step, (xb, yb, wb, global_batch) in enumerate(batches):
            callback_list.on_train_batch_begin(step)
            # timed, at the thread count the governor picks (convforge/threads.py)
            skipped = threads_module.run_batch(
                self._governor, lambda: self._train_step(xb, yb, tally, global_batch, wb), _count(xb)
            )
            if skipped is not None:
                self._skip_batch(step, skipped, tally)
            if _count(xb):
                self._last_batch = (xb, yb)
            if report:
                callback_list.on_train_batch_end(step, tally.logs())
            if agree_each_step:
                self.stop_training = strategy.agree_stop(self.stop_training)
            if self.stop_training:
                break
        return tally.logs()

    def _skip_batch(self, step: int, why: str, tally) -> None:
        """Count a batch that was not applied; warn about the first of a fit.

        TerminateOnNaN reports a non-finite loss itself, and stops: no warning then. A
        non-finite gradient behind a finite loss it never sees, so that one is warned about.
        Data-parallel: every rank skips (and counts) the same batches, and decides on the global
        loss; the ranks' reasons are gathered at the first one and the primary warns, naming
        the rank that found it.
        """
        self._skipped_batches += 1
        if self._warned_skip:
            return
        if self._terminate_on_nan and not math.isfinite(tally.logs()["loss"]):
            return
        self._warned_skip = True
        strategy = self._strategy
        if strategy.size > 1:
            found = [(r, text) for r, text in enumerate(strategy.gather_text(why)) if text != _NOT_FINITE_ELSEWHERE]
            why = f"on rank {found[0][0]}, {found[0][1]}" if found else why
            if not strategy.primary:
                return
        warnings.warn(
            f"epoch {self._current_epoch + 1}, batch {step + 1}: {why}; the batch was not applied. Further "
            "such batches are skipped without a warning and counted per epoch in "
            "history.skipped_batches (add callbacks.TerminateOnNaN() to stop and find the cause).",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )

    def _evaluate_source(self, source, callback_list=None, verbose: int = 0) -> dict:
        """Loss and metrics over a generator's batches (one process only); ``callback_list``'s
        evaluation hooks, if given; a progress bar if ``verbose`` (as ``evaluate`` of arrays:
        evaluate(generator, verbose=1) printed nothing)."""
        tally = distributed.Tally(self)
        hooks = _TestHooks(callback_list)
        bar = ProgressBar(source.steps, verbose=verbose) if verbose else None
        step = -1
        with threads_module.governed("evaluate", self._thread_governors, distributed.strategy()) as governor:
            for step, (xb, yb, wb) in enumerate(source.epoch()):
                hooks.batch_begin(step)
                self._evaluate_batch(governor, xb, yb, wb, tally)
                hooks.batch_end(step, tally)
                if bar is not None:
                    bar.update(step + 1, tally.logs(), finalize=False)
        logs = tally.logs()
        if bar is not None:
            bar.update(step + 1, logs, finalize=True)
        return hooks.end(logs)

    def _evaluate_batch(self, governor, xb, yb, wb, tally) -> None:
        """Loss and outputs of one evaluation batch into ``tally``, timed by ``governor`` (or None)."""
        with np.errstate(all="ignore"):
            loss, out, _ = threads_module.run_batch(
                governor, lambda: self._forward_loss(xb, yb, training=False, need_grad=False, sample_weight=wb),
                _count(xb),
            )
        tally.add(loss, yb, out)

    def _callback_list(self, callbacks, params):
        """evaluate's and predict's ``callbacks`` (one, a list, or None) as a CallbackList, or None."""
        if callbacks is None:
            return None
        return callbacks_module.CallbackList(_checked_callbacks(callbacks), self, params)

    def _weight_positions(self):
        """The positions ``(height, width)`` or ``(steps,)`` of a model whose one output has positions
        under a built-in loss (a class per pixel, a denoised image), whose sample weights may then be
        one per position; else None."""
        losses = self._head_losses() if hasattr(self, "_head_losses") else [self.loss]
        if len(losses) != 1 or not getattr(losses[0], "_position_weights", False):
            return None
        shape = tuple(self.outputs[0].shape[1:])
        return shape[:-1] if len(shape) > 1 else None

    def _sample_weights(self, sample_weight, class_weight, x, y):
        """fit's per-sample loss weights (None: all 1) from ``sample_weight`` and ``class_weight``,
        for checked data ``x`` and prepared targets ``y``."""
        weights = _check_sample_weight(sample_weight, _count(x), positions=self._weight_positions())
        if class_weight is not None:
            if isinstance(y, list):
                if len(y) != 1:
                    raise ValueError(
                        f"class_weight is for a model with one output; this one has {len(y)} "
                        f"{getattr(self, 'output_names', '')}: give sample_weight instead"
                    )
                y = y[0]
            sample_shape = tuple(self.outputs[0].shape[1:])
            if len(sample_shape) > 1:
                # A class per pixel or per step: a sample's weight would be its first position's
                # class's (it was, silently); Keras 3.15.1 fails on it.
                raise NotImplementedError(
                    f"class_weight with an output of shape (batch, {', '.join(map(str, sample_shape))}), a class per "
                    "position: convforge weighs samples, not positions; give sample_weight (one weight per sample)")
            per_class = _class_weights(class_weight, y)
            weights = per_class if weights is None else weights * per_class
        return weights

    # ================================================================== one batch (Keras's *_on_batch)

    def _one_batch(self, x, y, sample_weight, class_weight, what):
        self._require_compiled(what)
        self._build_from_data(x)
        self._plan_training()
        if what == "train_on_batch":
            self._resolve_loss_path()
        x, y = self._prepare(x, y)
        w = self._sample_weights(sample_weight, class_weight, x, y)
        return self._convert_x(x), y, w

    def _batch_result(self, loss, return_dict):
        logs = {"loss": loss, **{name: m.result() for name, m in self._log_metrics()}}
        if return_dict:
            return logs
        values = [logs[k] for k in self.metrics_names]
        return values[0] if len(values) == 1 else values

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One gradient update on one batch; Keras's ``train_on_batch``.

        Returns the batch's loss (a float) without metrics, else ``[loss, metric, ...]``
        (a dict with ``return_dict=True``), all of this batch alone: the metrics (and, with
        several outputs, the per-output losses) are reset first, as in Keras 3. A batch whose
        loss or gradient is NaN or Inf is not applied (a ``RuntimeWarning`` says so), as in
        ``fit``.
        """
        if distributed.strategy().size > 1:
            raise NotImplementedError(
                "convforge.distributed: train_on_batch is not supported in a data-parallel run (each rank would "
                "update its own copy of the weights); use fit, which averages the ranks' gradients"
            )
        with self._metrics_set_aside("train_on_batch", fresh=True), self._owning_fit("train_on_batch"):
            xb, yb, wb = self._one_batch(x, y, sample_weight, class_weight, "train_on_batch")
            tally = _OneBatch(self)
            try:
                with single_threaded_blas():
                    skipped = self._train_step(xb, yb, tally, _count(xb), wb)
                if skipped is not None:
                    warnings.warn(f"train_on_batch: {skipped}; the batch was not applied", RuntimeWarning, stacklevel=2)
            finally:
                self._clear_caches()
            return self._batch_result(tally.loss, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss and metrics of one batch in inference mode, no update; Keras's ``test_on_batch``
        (the metrics are reset first: this batch's alone; data-parallel: this rank's batch, no
        reduction)."""
        with self._metrics_set_aside("test_on_batch", fresh=True):
            xb, yb, wb = self._one_batch(x, y, sample_weight, None, "test_on_batch")
            with np.errstate(all="ignore"), single_threaded_blas():
                loss, out, _ = self._forward_loss(xb, yb, training=False, need_grad=False, sample_weight=wb)
            self._update_metrics(yb, out)
            return self._batch_result(loss, return_dict)

    def predict_on_batch(self, x) -> np.ndarray:
        """Outputs for one batch in inference mode; Keras's ``predict_on_batch``."""
        return self(x, training=False)

    def reset_metrics(self) -> None:
        """Reset the compiled metrics (what the latest ``evaluate``, ``train_on_batch`` or
        ``test_on_batch`` left in them)."""
        self._reset_metrics()

    @property
    def metrics(self) -> list:
        """The metric objects ``compile`` made, one by one (with several outputs, then each
        output's loss mean), holding what the latest ``fit``, ``evaluate`` or ``*_on_batch`` left
        in them; empty before ``compile``. Keras 3 lists a ``Mean`` of the loss and one
        ``CompileMetrics`` object that holds the compiled ones; convforge keeps the loss's running
        mean inside ``fit``/``evaluate`` and lists the compiled metrics themselves (``m.name``,
        ``m.result()``, ``m.reset_state()`` as in Keras)."""
        return self._metric_objects() if self.loss is not None else []

    # ================================================================== evaluate / predict

    def _evaluate(self, x, y, batch_size: int, verbose: int = 0, weights=None, callback_list=None) -> dict:
        """Loss and metrics over checked ``(x, y)`` (``weights``: per-sample loss weights or None);
        data-parallel: each rank takes a block of the samples and the sums are global.
        ``callback_list``'s evaluation hooks, if given (batch logs: this rank's so far)."""
        strategy = distributed.strategy()
        first, end = strategy.block(_count(x))
        batches = self._batches(_rows(x, first, end), _rows(y, first, end), strategy.local_batch_size(batch_size))
        weights = None if weights is None else weights[first:end]
        bar = ProgressBar(batches.steps, verbose=verbose) if verbose else None
        tally = distributed.Tally(self)
        hooks = _TestHooks(callback_list)
        with threads_module.governed("evaluate", self._thread_governors, strategy) as governor:
            for step in range(batches.steps):
                lo, hi = step * batches.batch_size, min((step + 1) * batches.batch_size, batches.n)
                xb, yb = batches.slice(lo, hi)
                wb = None if weights is None else weights[lo:hi]
                hooks.batch_begin(step)
                self._evaluate_batch(governor, xb, yb, wb, tally)
                hooks.batch_end(step, tally)
                if bar is not None:
                    bar.update(step + 1, tally.logs())
        return hooks.end(strategy.reduce_logs(tally))

    def evaluate(
        self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None, callbacks=None,
        return_dict=False,
    ):
        """Loss and metrics on ``(x, y)`` in inference mode.

        ``x`` may be a generator of ``(x, y)`` batches as in :meth:`fit`
        (``steps`` batches, default until exhausted); with arrays, ``steps``
        evaluates the first ``steps`` batches, as in Keras. ``sample_weight``
        weights the loss, as in ``fit``. ``callbacks``: their ``on_test_*`` hooks.

        Returns the loss (a float) if no metrics were compiled, else
        ``[loss, metric, ...]`` in :attr:`metrics_names` order; a dict with
        ``return_dict=True``. Data-parallel (:mod:`convforge.distributed`): each
        rank evaluates a block of the samples; every rank gets the global values.

        The forward pass is the model's compiled inference plan, as ``predict``'s
        (the softmax a cross-entropy takes from the logits left out), so the
        values agree with a layer-by-layer pass within the convolution
        algorithms' error bounds, not always bit for bit
        (``CONVFORGE_COMPILED_INFERENCE=0``: the layers one by one).
        """
        self._require_compiled("evaluate")
        with self._metrics_set_aside("evaluate"):
            return self._evaluate_call(x, y, batch_size, verbose, sample_weight, steps, return_dict, callbacks)

    def _metric_objects(self) -> list:
        """Every metric object a Tally of this model resets and adds to (see distributed.Tally)."""
        return list(self.compiled_metrics)

    @contextlib.contextmanager
    def _metrics_set_aside(self, what: str, fresh: bool = False):
        """Hold the compiled metrics for ``what`` (``evaluate``, ``train_on_batch``,
        ``test_on_batch``) on this thread, and keep their running state across such a call made
        from inside this thread's ``fit`` or ``evaluate`` (a callback's hook).

        They all tally into the same metric objects: a call from another thread while fit or
        evaluate runs is refused (two evaluates at once each reported accuracies mixed with the
        other's samples: 0.139 for 0.094), and a nested call reset them and added its own
        batches, so the outer call's logs (history, EarlyStopping) mixed the two. ``fresh``: the
        call starts from reset metrics, nested or not (the one-batch calls report their batch alone,
        as Keras 3's, which reset the metrics first; they added to what earlier calls had left).
        Outside a nested call the metrics hold what the call left (Keras's rule)."""
        me = threading.get_ident()
        with _FIT_LOCK:
            if self._fit_thread is not None and self._fit_thread != me:
                raise RuntimeError(
                    f"{what} cannot run while fit runs in another thread on this model (they share the compiled "
                    f"metrics); predict can, or {what} after fit returns"
                )
            holder = getattr(self, "_metrics_thread", None)
            if holder is not None and holder != me:
                raise RuntimeError(
                    f"{what} cannot run while evaluate runs in another thread on this model (they share the "
                    f"compiled metrics); predict can, or {what} after evaluate returns"
                )
            owner = holder is None
            if owner:
                self._metrics_thread = me
                _HELD.add(self)
        try:
            nested = not owner or self._fit_thread == me
            saved = []
            if nested:
                # A metric's variables (Metric.add_variable) are kept as the objects they are, which its
                # attributes and its list of them share, and get their values back in place.
                saved = [(m, {k: _state_copy(v) for k, v in vars(m).items()},
                          [(v, v.numpy()) for v in getattr(m, "variables", ())])
                         for m in self._metric_objects()]
            if fresh:
                self._reset_metrics()
            try:
                yield
            finally:
                for m, state, values in saved:
                    vars(m).clear()
                    vars(m).update(state)
                    for variable, value in values:
                        variable._value[...] = value
        finally:
            if owner:
                self._metrics_thread = None

    def _evaluate_call(self, x, y, batch_size, verbose, sample_weight, steps, return_dict, callbacks):
        """``evaluate`` once its checks passed (see ``evaluate``)."""
        verbose = _verbosity(verbose) if distributed.is_primary() else 0
        if _is_batch_source(x):
            if y is not None or sample_weight is not None:
                raise ValueError("with a generator as x, give y and sample weights in its batches")
            if distributed.strategy().size > 1:
                raise NotImplementedError(
                    "convforge.distributed: evaluate from a generator or Sequence is not supported in a "
                    "data-parallel run; pass arrays (each rank then evaluates a block of them)"
                )
            source = _BatchSource(self, x, steps, "x", "steps")
            self._build_from_data(source.first_x())
            self._resolve_loss_path()
            callback_list = self._callback_list(callbacks, {"verbose": verbose, "epochs": 1, "steps": source.steps})
            with single_threaded_blas():
                logs = self._evaluate_source(source, callback_list, verbose)
        else:
            self._build_from_data(x)
            self._resolve_loss_path()
            batch_size = 32 if batch_size is None else _positive_int(batch_size, "batch_size")
            # Zero samples: the loss and metrics are means over nothing, NaN (as NumPy's mean).
            x, y = self._prepare(x, y, allow_empty=True)
            w = _check_sample_weight(sample_weight, _count(x), positions=self._weight_positions())
            if steps is not None:  # Keras: the first `steps` batches (all of them if there are fewer)
                end = _positive_int(steps, "steps") * batch_size
                x, y, w = _rows(x, 0, end), _rows(y, 0, end), None if w is None else w[:end]
            distributed.strategy().check_data(x, y, "x", sample_weight=w, model=self)
            if distributed.strategy().size > 1:
                distributed.refuse_per_class_metrics(self)
            callback_list = self._callback_list(
                callbacks, {"verbose": verbose, "epochs": 1, "steps": -(-_count(x) // batch_size)})
            with single_threaded_blas():
                logs = self._evaluate(x, y, batch_size, verbose, w, callback_list)
        if return_dict:
            return logs
        values = [logs[k] for k in self.metrics_names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None) -> np.ndarray:
        """Model outputs for ``x``, batch by batch, in inference mode (no dropout, nothing kept).

        Image outputs come back channels-last, like the input. Data-parallel
        (:mod:`convforge.distributed`): each rank predicts a block of the
        samples; every rank gets them all. ``steps``: the first ``steps`` batches
        only (all of them if there are fewer), as in Keras. ``callbacks``: their
        ``on_predict_*`` hooks (``on_predict_batch_end``'s logs: ``{"outputs": the batch's}``).

        ``x`` may be a generator / iterator or a ``keras.utils.Sequence``-like object, as in
        :meth:`fit`, yielding ``x`` batches or ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``
        tuples (only ``x`` is used): the outputs of its batches, in order, one process only
        (``steps`` batches at most; a generator's until it is exhausted).
        """
        if callbacks is not None or steps is not None:
            return self._predict_with_options(x, batch_size, verbose, callbacks, steps)
        if type(x) is np.ndarray and (verbose is False or (type(verbose) is int and verbose == 0)):
            out = self._predict_ready(x, batch_size)
            if out is not None:
                return out
        if _is_batch_source(x):
            return self._predict_source(x, batch_size, verbose, None, None)
        return self._predict_batches(x, batch_size, verbose)

    def _predict_source(self, source, batch_size, verbose, callbacks, steps):
        """predict of a generator or Sequence: its batches' outputs, concatenated (Keras's predict
        takes them; here they became object arrays: a "must hold real numbers" TypeError, or a
        Sequence whose out-of-range items are empty slices read until memory ran out)."""
        if distributed.strategy().size > 1:
            raise NotImplementedError(
                "convforge.distributed: predict from a generator or Sequence is not supported in a data-parallel "
                "run; pass arrays (each rank then predicts a block of them)"
            )
        steps = None if steps is None else _positive_int(steps, "steps")
        verbose = _verbosity(verbose)
        source = _indexable(source)
        if hasattr(source, "__next__"):
            items = source if steps is None else (item for _, item in zip(range(steps), source))
        else:
            steps = len(source) if steps is None else min(steps, len(source))
            items = _until_pass_ends(source[i] for i in range(steps))
        hooks = self._callback_list(callbacks, {"verbose": verbose, "epochs": 1, "steps": steps})
        bar = ProgressBar(steps, verbose=verbose) if verbose else None
        if hooks is not None:
            hooks.call("on_predict_begin", None)
        outs = []
        for step, item in enumerate(items):
            # Keras's rule: a tuple (or list) of 1 to 3 is (x, y, sample_weight), else the item is x.
            xb = item[0] if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3 else item
            if hooks is not None:
                hooks.call("on_predict_batch_begin", step, None)
            out = self._predict_batches(xb, batch_size, 0)
            if hooks is not None:
                hooks.call("on_predict_batch_end", step, {"outputs": out})
            outs.append(out)
            if bar is not None:
                bar.update(step + 1, finalize=False)
        if not outs:
            raise ValueError("predict: the generator or Sequence given as x yields no batch"
                             + ("" if hasattr(source, "__next__") else " (its len() is 0)"))
        if bar is not None:
            bar.update(len(outs), finalize=True)
        if hooks is not None:
            hooks.call("on_predict_end", None)
        if isinstance(outs[0], list):  # several outputs: each concatenated
            return [np.concatenate(parts) for parts in zip(*outs)]
        return np.concatenate(outs)

    def _predict_with_options(self, x, batch_size, verbose, callbacks, steps):
        """predict with ``callbacks`` (or None) and ``steps`` (or None)."""
        if _is_batch_source(x):
            return self._predict_source(x, batch_size, verbose, callbacks, steps)
        self._build_from_data(x)
        size = 32 if batch_size is None else _positive_int(batch_size, "batch_size")
        steps = None if steps is None else _positive_int(steps, "steps")
        if callbacks is None:
            return self._predict_batches(x, batch_size, verbose, None, steps)
        batches = -(-_count(self._check_x(x, allow_empty=True)) // size)
        callback_list = self._callback_list(
            callbacks, {"verbose": verbose, "epochs": 1, "steps": batches if steps is None else min(steps, batches)})
        callback_list.call("on_predict_begin", None)
        out = self._predict_batches(x, batch_size, verbose, callback_list, steps)
        callback_list.call("on_predict_end", None)
        return out

    def _predict_batches(self, x, batch_size, verbose, hooks=None, steps=None):
        """predict's general path: batch by batch (``hooks``: a CallbackList whose predict batch
        hooks run around each batch; ``steps``: that many batches at most)."""
        self._build_from_data(x)
        batch_size = 32 if batch_size is None else _positive_int(batch_size, "batch_size")
        verbose = _verbosity(verbose) if distributed.is_primary() else 0
        x = self._check_x(x, allow_empty=True)
        if steps is not None:
            x = _rows(x, 0, steps * batch_size)
        strategy = distributed.strategy()
        strategy.check_data(x, None, "x", model=self)
        n = _count(x)
        if 0 < n <= batch_size and not verbose and strategy.size == 1 and hooks is None:
            out = self._predict_at_once(x, n, strategy)
            if out is not None:
                return out
        empty = self._empty_outputs()
        # Zero samples: an empty result of the right shape (as NumPy and PyTorch give).
        if n == 0:
            return self._to_user(empty)
        first, end = strategy.block(n)
        batch_size = strategy.local_batch_size(batch_size)
        batches = self._batches(_rows(x, first, end), None, batch_size)
        several = isinstance(empty, list)  # a list of outputs (a Functional model)
        results = None  # one array per output, all n rows, allocated at the first batch
        bar = ProgressBar(batches.steps, verbose=verbose) if verbose else None
        blas = single_threaded_blas() if self._inference_may_use_blas() else contextlib.nullcontext()
        with blas, threads_module.governed("predict", self._thread_governors, strategy) as governor:
            for step in range(batches.steps):
                lo, hi = step * batch_size, min((step + 1) * batch_size, batches.n)
                xb, _ = batches.slice(lo, hi)
                if hooks is not None:
                    hooks.call("on_predict_batch_begin", step, None)
                out = threads_module.run_batch(governor, lambda: self._forward(xb, training=False), hi - lo)
                outs = out if several else [out]
                if hooks is not None:
                    hooks.call("on_predict_batch_end", step, {"outputs": self._to_user(out)})
                if results is None:
                    results = [np.empty((n, *o.shape[1:]), dtype=self.dtype) for o in outs]
                for result, o in zip(results, outs):
                    result[first + lo : first + hi] = o
                if bar is not None:
                    bar.update(step + 1)
        if results is None:  # data-parallel, fewer samples than ranks: this rank's block is empty
            results = [np.empty((n, *e.shape[1:]), dtype=self.dtype) for e in (empty if several else [empty])]
        results = [strategy.gather_rows(result) for result in results]
        return self._to_user(results if several else results[0])

    def _predict_ready(self, x: np.ndarray, batch_size):
        """``predict(x, batch_size, verbose=0)`` as one call of the compiled plan where ``x`` is
        one array that the general path below would take as it is (a built model of one input,
        a per-sample shape it accepts, at most one batch, one process); else None, and the
        general path runs, with its checks and its messages.

        The general path's steps around that call (argument checks, the data-parallel hooks,
        the plan's checks) took ~9 us of a one-image ResNet predict whose plan runs ~88 us on
        two threads; here they take a few attribute reads, and after one such predict the plan's
        ``ready`` (models/compiled.py) makes them in C++ in one call with the run, for arrays of
        the plan's dtype that a reshape makes its input: ~3.5 us in all (bench/BEFORE_AFTER.md).
        Under the adaptive thread count (on by default) the governor times that call as one batch
        (threads.govern_one); it took the general path until the eighteenth stop, ~13 us more
        than ``ready`` alone in a one-image ResNet predict on two threads."""
        strategy = distributed.strategy()
        if strategy.size != 1:
            return None
        compiled = self._ready_plan()
        if compiled is not None:
            ready, n = compiled.ready, x.shape[0] if x.ndim else 0
            # The adaptive thread count times the call (govern_one: where it governs), unless the
            # batch runs on one thread at any count (serial_samples: a one-image LeNet-5, whose
            # 13.5 us the timing made 16.3).
            if n > compiled.serial_samples:
                out = threads_module.govern_one("predict", self._thread_governors, strategy,
                                                lambda: ready(x, batch_size), n)
            else:
                out = ready(x, batch_size)
            if out is not None:
                return out
        if not getattr(self, "built", False) or x.ndim < 2:
            return None
        n = x.shape[0]
        if batch_size is None:
            batch_size = 32
        elif type(batch_size) is not int:
            return None
        if not 0 < n <= batch_size:
            return None
        entries = self._input_entries()
        if len(entries) != 1:
            return None
        plan = self._whole_plan()
        if plan is None:
            return None
        xb = entries[0].convert_if_accepted(x)
        if xb is None or not plan.accepts([xb]):
            return None
        out = self._run_whole_plan(plan, [xb], n, strategy)
        if plan.ready is None:
            plan.make_ready(entries[0], out)
        return out

    def _compiled_plan(self):
        """The compiled inference pass as made so far (models/compiled.py): a CompiledInference,
        or None / False (not made yet / none). Unchecked: see _whole_plan."""
        return None

    def _ready_plan(self):
        """The compiled plan where it has its one-call path (``CompiledInference.ready``: checks
        and run in one C++ call, None for what it declines), else None."""
        compiled = self._compiled_plan()
        return compiled if compiled and compiled.ready is not None else None

    def _predict_at_once(self, x, n: int, strategy):
        """``predict`` of checked ``x`` as one batch through the compiled plan, or None where the
        plan does not compute every output itself (the batch loop below then runs).

        Without batching, result buffers and the forward's wrappers, a one-image LeNet-5 predict
        took ~23 us instead of ~33 (the plan itself ~15): the loop's bookkeeping was a third of it."""
        plan = self._whole_plan()
        if plan is None:
            return None
        xbs = self._convert_x(x)
        if not isinstance(xbs, list):
            xbs = [xbs]
        if not plan.accepts(xbs):
            return None
        return self._run_whole_plan(plan, xbs, n, strategy)

    def _run_whole_plan(self, plan, xbs: list, n: int, strategy):
        """The model's outputs for internal-layout inputs ``xbs`` (``n`` samples) from ``plan``,
        as ``predict`` returns them, under the adaptive thread count where it governs."""
        if n > plan.serial_samples and threads_module.may_govern(strategy):
            with threads_module.governed("predict", self._thread_governors, strategy) as governor:
                outs = threads_module.run_batch(governor, lambda: plan.run(xbs), n)
        else:  # nothing to govern (or a batch on one thread at any count): the plain call
            outs = plan.run(xbs)
        return self._plan_outputs_to_user(outs)

    def _plan_outputs_to_user(self, outs: list):
        """A compiled plan's outputs (a list, internal layout) as ``predict`` returns them."""
        return self._to_user(outs[0])

    def _whole_plan(self):
        """The compiled inference pass (models/compiled.py) when it computes every output in one
        call, each its own array; else None."""
        return None

    def __call__(self, x, training: bool | None = None) -> np.ndarray:
        """Outputs for one batch (``predict`` without batching). ``training`` None (not given) is
        False but for the augmentation layers (RandomFlip, RandomRotation, ...), which augment then,
        as Keras's do (their own default is ``training=True``: ``augment(images)`` shows augmented
        images; ``model(x)`` of a model that starts with them is random, as in Keras: give
        ``training=False``, or use ``predict``); the other layers run in inference mode (Keras 3
        passes the augmentation layers' True on to the layers after them, a BatchNormalization
        there moving its statistics). On symbolic tensors, the model's layers in the
        graph being built (``_call_symbolic``), where None (not given) and False differ."""
        if type(x) is not np.ndarray and _symbolic(x):  # an array (the one-call path below) never is
            return self._call_symbolic(x, training)
        if training is None and not getattr(self, "built", False):
            self._build_from_data(x)  # a first call: are there layers that augment?
        augment = training is None and self._augments_by_default()  # (the layers run with training=False)
        if not training and not augment and type(x) is np.ndarray and x.ndim:
            # predict's one-call path (CompiledInference.ready), the whole batch at once: None
            # where it declines x, and the path below answers.
            compiled = self._ready_plan()
            out = compiled.ready(x, x.shape[0]) if compiled is not None else None
            if out is not None:
                return out
        self._build_from_data(x)
        x = self._check_x(x, allow_empty=True)
        if self._batches(x, None, 1).n == 0:  # no samples: layers (custom ones too) are not asked to handle it
            return self._to_user(self._empty_outputs())
        with training_unset() if augment else contextlib.nullcontext():
            out = self._forward(self._convert_x(x), training=bool(training))
        if training:
            self._clear_caches()
        return self._to_user(out)

    @contextlib.contextmanager
    def _graph_as_in_inference(self):
        """The (built) graph's nodes train as they run at inference (_Step.as_in_inference), then
        are put back as they were."""
        graph = getattr(self, "_graph", self)
        steps = list(graph._steps)
        try:
            for step in steps:
                step.as_in_inference(True)
            yield
        finally:
            for step in steps:  # as the graph made them: frozen where a training=False call made the node
                step.as_in_inference(bool(getattr(step.node, "inference", False)))

    def _augments_by_default(self) -> bool:
        """Does the (built) model hold a layer that transforms its input when ``training`` is not
        given (augmentation_layers.augments_by_default)? Kept per graph of layers."""
        graph = getattr(self, "_graph", self)  # a Sequential's executor, or the functional model itself
        calls = getattr(graph, "_calls", None) if graph is not None else None
        if not calls:
            return False
        known = getattr(graph, "_augments_by_default_of", None)
        if known is None or known[0] is not calls:
            found = any(augments_by_default(c) for cs in calls.values() for c in cs)
            known = graph._augments_by_default_of = (calls, found)
        return known[1]

    # ================================================================== non-finite diagnosis

    def _diagnose_non_finite(self, xb, yb) -> str:
        """Where a batch first produces NaN/Inf: input, weights, a layer's output, the loss or a gradient."""
        return diagnostics.locate_non_finite(self, xb, yb)


class _TestHooks:
    """The evaluation hooks of a CallbackList (or none): on_test_begin now, on_test_batch_begin/end
    around each batch (their logs only made where a callback overrides them), on_test_end."""

    def __init__(self, callback_list):
        self.callbacks = callback_list
        self.begin = callback_list is not None and callback_list.wants("on_test_batch_begin")
        self.end_batch = callback_list is not None and callback_list.wants("on_test_batch_end")
        if callback_list is not None:
            callback_list.call("on_test_begin", None)

    def batch_begin(self, step: int) -> None:
        if self.begin:
            self.callbacks.call("on_test_batch_begin", step, None)

    def batch_end(self, step: int, tally) -> None:
        if self.end_batch:
            self.callbacks.call("on_test_batch_end", step, tally.logs())

    def end(self, logs: dict) -> dict:
        if self.callbacks is not None:
            self.callbacks.call("on_test_end", logs)
        return logs


def _backup_to_resume_from(backup):
    """The backup a BackupAndRestore left (the latest one that reads), or None: a first run."""
    from ..saving import ModelFileError, read

    found = backup._backups()
    for i, path in enumerate(found):
        try:
            read(path)
        except (ModelFileError, OSError) as err:
            if i + 1 == len(found):
                raise ModelFileError(path, f"BackupAndRestore cannot continue from this backup ({err}); delete "
                                           f"{backup.backup_dir} to start afresh") from err
            warnings.warn(f"BackupAndRestore: the backup {path} cannot be read ({err}); continuing from the one "
                          f"before it, {found[i + 1]}", RuntimeWarning, stacklevel=user_stacklevel())
            continue
        return path
    return None


def _checked_callbacks(callbacks) -> list:
    """``callbacks`` of fit, evaluate or predict (one, a list, or None) as a list of Callbacks."""
    if isinstance(callbacks, callbacks_module.Callback):  # Keras accepts one callback alone
        callbacks = [callbacks]
    checked = list(callbacks or [])
    for cb in checked:
        if not isinstance(cb, callbacks_module.Callback):
            raise TypeError(f"callbacks must be convforge.callbacks.Callback instances; got {cb!r}")
    return checked


def _symbolic(x) -> bool:
    """Is x a symbolic tensor of a graph, or a list, tuple or dict holding one?"""
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        return any(isinstance(t, KerasTensor) for t in x)
    return isinstance(x, KerasTensor)


def _count(data) -> int:
    """Samples in an input: an array, or a list of arrays (one per model input)."""
    return (data[0] if isinstance(data, list) else data).shape[0]


def _rows(data, lo, hi):
    """Samples ``lo:hi`` of an array, or of each array of a list (None entries stay None)."""
    if isinstance(data, list):
        return [None if d is None else d[lo:hi] for d in data]
    return data[lo:hi]


def saveable_metrics(specs, metrics) -> list:
    """The compiled metrics that a model file can hold (and ``compile`` rebuild): names given as
    strings, Keras's metric functions (by name), and built-in metric objects with their settings
    (``metrics.serialize``); functions of one's own and custom classes are left out."""
    saved = []
    for spec, metric in zip(specs, metrics):
        if isinstance(spec, str):
            saved.append(spec)
        elif callable(spec) and getattr(metrics_module, getattr(spec, "__name__", ""), None) is spec:
            saved.append(spec.__name__)  # Keras's function (metrics.categorical_accuracy): by its name
        elif metrics_module.serialize(metric) is not None:
            saved.append(metrics_module.serialize(metric))
    return saved


def forward_state(layers) -> list[np.ndarray]:
    """The weights a training forward pass updates by itself: the non-trainable weights of trainable
    layers (BatchNormalization's moving statistics), in layer order."""
    return [
        layer.params[name]
        for layer in layers
        if layer.trainable
        for name in layer.params
        if name not in layer.trainable_param_names()
    ]


def trainable_plan(layers, frozen=frozenset()) -> list:
    """``[(layer, [(weight name, optimizer key)])]`` for the layers with trainable weights, in order,
    but those whose id is in ``frozen`` (of a frozen model); the key is ``'<layer name>/<weight name>'``."""
    return [
        (layer, [(name, f"{layer.name}/{name}") for name in layer.trainable_param_names()])
        for layer in layers
        if id(layer) not in frozen and layer.trainable_param_names()
    ]


# A Keras argument fit or evaluate lacks (validation_freq, ...) gets a TypeError naming it and
# what to do instead. (Not predict: its one-image path is a few microseconds, the check ~0.4.)
for _method in ("fit", "evaluate"):
    _unsupported.check_arguments(Trainer, method=_method)
