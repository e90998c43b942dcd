"""Callbacks for ``fit``: History, EarlyStopping, ModelCheckpoint, TerminateOnNaN, LearningRateScheduler,
ReduceLROnPlateau, CSVLogger, LambdaCallback, BackupAndRestore.

Same hooks and names as Keras. A callback sees the model as ``self.model``
and may stop training with ``self.model.stop_training = True``. ``logs`` at
the end of a batch hold the running epoch averages (``loss``, metrics); at
the end of an epoch they also hold ``val_loss`` and ``val_<metric>``.

Epochs are counted from 0 in the hooks, as in Keras (the progress bar and
checkpoint file names show ``epoch + 1``).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import os
import shutil
import string
import warnings

import numpy as np

from . import distributed, progress
from ._warnings import user_stacklevel

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]


class Callback:
    """Base class: override the hooks you need."""

    def __init__(self):
        self.model = None
        # Set by fit, evaluate and predict (set_params): {'verbose', 'epochs', 'steps'}, Keras's keys
        # (evaluate's and predict's 'epochs' 1); None before, as Keras's.
        self.params: dict | None = None

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...

    # As in Keras, the training batch hooks call on_batch_begin / on_batch_end (their old names).
    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    # Evaluation: evaluate(callbacks=...) and fit's validation at the end of each epoch.
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...

    # predict(callbacks=...): on_predict_batch_end's logs hold the batch's {"outputs": ...}.
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...

    # Checkpoints store a callback's state so that fit(resume_from=...) continues it.
    def get_state(self) -> tuple[dict, dict] | None:
        """``(JSON-able dict, {name: ndarray})`` to put in a training checkpoint, or None."""
        return None

    def set_state(self, state: dict, arrays: dict) -> None:
        """Restore what :meth:`get_state` returned."""


def _overrides(cb: Callback, hook: str) -> bool:
    if hook in _ALIASES and _overrides(cb, _ALIASES[hook]):
        return True
    # A hook set on the instance (cb.on_train_batch_end = f, as Keras's LambdaCallback does) counts:
    # it was never called, the class's being the base's no-op.
    return getattr(type(cb), hook, None) is not getattr(Callback, hook) or hook in getattr(cb, "__dict__", {})


_ALIASES = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


_HOOKS = tuple(name for name in vars(Callback) if name.startswith("on_"))


class LambdaCallback(Callback):
    """Keras's ``LambdaCallback``: a callback made of functions, for a print or a plot without a
    class, e.g. ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))``.

    ``on_epoch_begin``/``on_epoch_end`` take ``(epoch, logs)``, ``on_train_begin``/``on_train_end``
    take ``(logs)``, ``on_train_batch_begin``/``on_train_batch_end`` ``(batch, logs)``; any other
    hook of :class:`Callback` may be given by name (``on_test_end=...``), as in Keras. Unlike
    Keras, a name that is no hook (``on_epoch_ends``) or a value that is not callable raises a
    TypeError instead of being kept and never called.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        unknown = [name for name in kwargs if name not in _HOOKS]
        if unknown:
            raise TypeError(f"LambdaCallback got {unknown[0]!r}, which is no callback hook; the hooks are "
                            f"{', '.join(_HOOKS)}")
        given = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end, "on_train_begin": on_train_begin,
                 "on_train_end": on_train_end, "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end, **kwargs}
        for name, function in given.items():
            if function is None:
                continue
            if not callable(function):
                raise TypeError(f"LambdaCallback {name} must be a function; got {function!r}")
            setattr(self, name, function)  # on the instance, as Keras: CallbackList calls it


class CallbackList:
    """Dispatches the hooks; batch hooks only to callbacks that define them (they run every batch)."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
        self._batch_begin = [cb for cb in self.callbacks if _overrides(cb, "on_train_batch_begin")]
        self._batch_end = [cb for cb in self.callbacks if _overrides(cb, "on_train_batch_end")]
        # At the end of an epoch History (and the progress line) record the logs after the other
        # callbacks have added to them, and checkpoint writers run last so that the file holds the
        # epoch's final state (History included). Stable sort: user order otherwise.
        self._epoch_end = sorted(self.callbacks, key=lambda cb: getattr(cb, "_epoch_end_order", 0))

    @property
    def wants_batch_end(self) -> bool:
        return bool(self._batch_end)

    # As Keras's CallbackList, every hook gets a dict (a hook without logs an empty one): a
    # callback written for Keras that reads or adds to the logs of on_epoch_begin,
    # on_train_batch_begin, on_test_begin, ... failed on None (TypeError, AttributeError).

    def on_train_begin(self, logs=None):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        for cb in self._epoch_end:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        if self._batch_begin:
            logs = {} if logs is None else logs
        for cb in self._batch_begin:
            cb.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        logs = {} if logs is None else logs
        for cb in self._batch_end:
            cb.on_train_batch_end(batch, logs)

    def wants(self, hook: str) -> bool:
        """Does a callback override ``hook`` (a batch hook: else its logs need not be made)?"""
        return any(_overrides(cb, hook) for cb in self.callbacks)

    def call(self, hook: str, *args) -> None:
        """``hook(*args)`` on every callback (the evaluation and prediction hooks); the last of
        ``args`` is the logs, None for an empty dict."""
        if args[-1] is None:
            args = (*args[:-1], {})
        for cb in self.callbacks:
            getattr(cb, hook)(*args)


class History(Callback):
    """Records the epoch logs: ``history.history == {'loss': [...], 'accuracy': [...], ...}``.

    ``fit`` returns it. After ``fit(resume_from=...)`` it also holds the
    epochs recorded in the checkpoint, so curves cover the whole run.
    ``skipped_batches`` counts, per epoch, the batches not applied because their
    loss or a gradient was NaN or Inf (convforge's; not in Keras); after a resume
    it holds the checkpoint's epochs too (none for a file from before 2026-12-05).
    """

    _epoch_end_order = 1

    def __init__(self):
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.skipped_batches: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class ProgbarLogger(Callback):
    """Prints ``Epoch i/N`` and a progress bar (see :mod:`convforge.progress`); fit adds it when verbose."""

    # The epoch's line is written after the user's callbacks have added to the logs, as Keras's
    # (its progress bar comes last): the learning_rate of ReduceLROnPlateau, a val_f1 of one's own.
    _epoch_end_order = 1

    def __init__(self, verbose: int = 1):
        super().__init__()
        self.verbose = verbose
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        progress.write_line(f"Epoch {epoch + 1}/{self.params['epochs']}")
        # steps is None for a generator without steps_per_epoch: the bar counts up to "Unknown".
        self._bar = progress.ProgressBar(self.params["steps"], verbose=self.verbose)
        self._seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self._bar.update(batch + 1, logs, finalize=False)

    def on_epoch_end(self, epoch, logs=None):
        self._bar.update(self.params["steps"] or self._seen, logs, finalize=True)


def _monitor_mode(monitor: str, mode: str) -> str:
    """The mode before the model is known: as given, or for 'auto' by the monitor's name
    (refined by :func:`_auto_mode` when training begins)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode != "auto":
        return mode
    # Keras 3 maximises the metrics whose direction is "up": accuracies, AUC, precision, recall, F1
    up = ("acc", "auc", "precision", "recall", "f1", "fmeasure")
    return "max" if any(word in monitor for word in up) else "min"


def _auto_mode(monitor: str, model) -> str:
    """Keras 3's mode='auto': the direction of the model's metric logged under ``monitor`` (AUC,
    precision and recall go up, under whatever name they were given; errors go down), 'min' for a
    loss, else the name rule of :func:`_monitor_mode`."""
    name = monitor[len("val_"):] if monitor.startswith("val_") else monitor
    if name == "loss" or name.endswith("_loss"):
        return "min"
    log_metrics = getattr(model, "_log_metrics", None)
    for logged, metric in (log_metrics() if log_metrics is not None else []):
        if logged == name and getattr(metric, "direction", None) in ("up", "down"):
            return "max" if metric.direction == "up" else "min"
    return _monitor_mode(monitor, "auto")


def _monitored(callback, value):
    """The monitored log value, refused (a ValueError naming it) when it is one value per class or
    threshold: F1Score() or Precision(thresholds=[...]) cannot be compared to a best (in Keras an
    array's truth value error)."""
    if np.ndim(value) > 0:
        raise ValueError(
            f"{type(callback).__name__} monitors '{callback.monitor}', which holds {np.size(value)} values (one per "
            "class or threshold); monitor one number, e.g. F1Score(average='macro'), Precision(class_id=...) "
            "or Precision with one threshold"
        )
    return value


def _json_float(value):
    return None if value is None else float(value)


# The arguments of the callbacks, checked when the callback is made: a negative patience or
# cooldown, a string baseline or min_lr, a monitor that is not a name were taken as they came
# (int(1.5) made a patience of 1) and failed, if at all, at the end of the first epoch.

def _count_argument(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner} {name} must be an int >= 0; got {value!r}")
    return int(value)


def _number_argument(owner: str, name: str, value, minimum=None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or (
        minimum is not None and value < minimum
    ):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{owner} {name} must be a finite number{bound}; got {value!r}")
    return float(value)


def _monitor_argument(owner: str, monitor) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{owner} monitor must be the name of a log, e.g. 'val_loss'; got {monitor!r}")
    return monitor


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving (Keras's rules).

    Parameters
    ----------
    monitor : str
        Key of the epoch logs, default ``'val_loss'``.
    min_delta : float
        Smaller changes do not count as improvement.
    patience : int
        Epochs without improvement before stopping.
    mode : 'auto', 'min' or 'max'
        ``'auto'`` follows the monitored metric, as Keras 3: accuracies, AUC,
        precision and recall are maximised, losses and errors minimised (a
        name the model does not log: names containing ``acc``, ``auc``,
        ``precision``, ``recall`` or ``f1`` are maximised).
    baseline : float, optional
        Stop unless this value is beaten within ``patience`` epochs.
    restore_best_weights : bool
        At the end of training, put back the weights of the best epoch.
    start_from_epoch : int
        Epochs of warm-up during which no improvement is required.
    verbose : int
    """

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0.0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        super().__init__()
        self.monitor = _monitor_argument("EarlyStopping", monitor)
        self.min_delta = abs(_number_argument("EarlyStopping", "min_delta", min_delta))
        self.patience = _count_argument("EarlyStopping", "patience", patience)
        self.verbose = verbose
        self._mode_argument = mode
        self.mode = _monitor_mode(monitor, mode)
        self.baseline = None if baseline is None else _number_argument("EarlyStopping", "baseline", baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _count_argument("EarlyStopping", "start_from_epoch", start_from_epoch)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        if self._mode_argument == "auto":
            self.mode = _auto_mode(self.monitor, self.model)
        if not getattr(self, "_restored", False):
            self._reset()
        self._restored = False

    def _improved(self, current, reference) -> bool:
        if reference is None:
            return True
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(self, (logs or {}).get(self.monitor))
        if current is None:
            warnings.warn(
                f"EarlyStopping is conditioned on '{self.monitor}', which is not available; available: "
                f"{sorted(logs or {})}",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._improved(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            progress.write_line(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                progress.write_line(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_state(self):
        state = {
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best": _json_float(self.best),
            "best_epoch": self.best_epoch,
        }
        arrays = {}
        if self.best_weights is not None:
            arrays = {f"best_weights/{i}": w for i, w in enumerate(self.best_weights)}
        return state, arrays

    def set_state(self, state, arrays):
        self.wait = int(state["wait"])
        self.stopped_epoch = int(state["stopped_epoch"])
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        if arrays:
            best = [arrays[f"best_weights/{i}"] for i in range(len(arrays))]
            # They go into the model when training ends: checked now, with the rest of the file,
            # rather than failing after the whole run or leaving a NaN model behind.
            if self.model is not None:
                shapes = [w.shape for w in best]
                expected = [w.shape for w in self.model.get_weights()]
                if shapes != expected:
                    raise ValueError(f"the best weights do not fit this model: shapes {shapes}, the model's {expected}")
            if not all(np.isfinite(w).all() for w in best):
                raise ValueError("the best weights hold NaN or infinite values")
            self.best_weights = best
        self._restored = True


class _AnyLog(dict):
    """Stands for an epoch's logs when a filepath pattern is tried before training."""

    def __missing__(self, key):
        return 0.5


def _check_filepath_pattern(filepath) -> None:
    """ModelCheckpoint's filepath: its ``str.format`` fields are named (``{epoch}``, a log key), and
    their format specs fit an int epoch and float logs. Checked at construction rather than
    after the first epoch has trained."""
    if not isinstance(filepath, str):
        raise TypeError(f"ModelCheckpoint filepath must be a str or os.PathLike of str; got {filepath!r}")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(filepath) if name is not None]
        for name in fields:
            if not name or name.split(".")[0].split("[")[0].isdigit():
                raise ValueError(f"field {{{name}}} is positional: name it, e.g. {{epoch}} or {{val_loss}}")
        filepath.format_map(_AnyLog(epoch=1))
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as err:
        raise ValueError(
            f"ModelCheckpoint filepath {filepath!r} is not a valid pattern: {err}. Fields are str.format fields "
            "named {epoch} (1-based) or a log key, e.g. 'ckpt-{epoch:02d}-{val_loss:.3f}.npz'"
        ) from None


class ModelCheckpoint(Callback):
    """Save the model at the end of every epoch, or only when it is the best so far.

    Parameters
    ----------
    filepath : str or os.PathLike
        May hold ``str.format`` fields: ``{epoch}`` (1-based) and any log key,
        e.g. ``'ckpt-{epoch:02d}-{val_loss:.3f}.npz'``.
    monitor : str
        Log key deciding "best"; default ``'val_loss'``.
    save_best_only : bool
        Write only when ``monitor`` improves (as Keras: at every epoch, with a
        warning, while the logs lack ``monitor``).
    save_weights_only : bool
        ``model.save_weights`` (weights and architecture) instead of
        ``model.save``. Only the full file can resume training: it also
        holds the optimizer state, the epoch, the random generator's state,
        the history and the other callbacks' state (see ``fit(resume_from=)``).
    mode : 'auto', 'min' or 'max'
    verbose : int

    Files are written atomically: a crash never leaves a half-written file
    in place of a good one; their directory is created if it does not exist.
    This callback runs after the other callbacks at the end of an epoch, so
    the checkpoint includes their state for that epoch.
    """

    _epoch_end_order = 2

    def __init__(
        self,
        filepath,
        monitor="val_loss",
        verbose=0,
        save_best_only=False,
        save_weights_only=False,
        mode="auto",
        save_freq="epoch",
    ):
        super().__init__()
        if save_freq != "epoch":
            raise ValueError(f"ModelCheckpoint supports save_freq='epoch' only; got {save_freq!r}")
        from .saving import check_file_name

        self.filepath = os.fspath(filepath)
        _check_filepath_pattern(self.filepath)
        # At once, not after the first epoch. Keras 3's names are Keras's rule: a whole model to
        # .keras, weights alone to .weights.h5.
        from .models.keras_file import is_keras_file, is_keras_weights_file

        keras_weights, keras_model = is_keras_weights_file(self.filepath), is_keras_file(self.filepath)
        if keras_weights and not save_weights_only:
            raise ValueError(f"ModelCheckpoint: {self.filepath!r} is a weights file name (.weights.h5): pass "
                             "save_weights_only=True, or name a .keras (or .npz) file for the whole model")
        if keras_model and save_weights_only:
            raise ValueError(f"ModelCheckpoint: with save_weights_only=True the file name must end in .weights.h5 "
                             f"(or .npz); got {self.filepath!r}")
        if not (keras_weights or keras_model):
            check_file_name(self.filepath, "checkpoint")
        self.monitor = _monitor_argument("ModelCheckpoint", monitor)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self._mode_argument = mode
        self.mode = _monitor_mode(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_saved: str | None = None

    def on_train_begin(self, logs=None):
        # The best value lasts across fit calls (as in Keras); a mode='auto' that the model's
        # metric turns around starts it again, unless a resumed checkpoint restored it.
        mode = _auto_mode(self.monitor, self.model) if self._mode_argument == "auto" else self.mode
        if mode != self.mode:
            self.mode = mode
            if not getattr(self, "_restored", False):
                self.best = math.inf if mode == "min" else -math.inf
        self._restored = False

    def _path(self, epoch, logs) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **(logs or {}))
        except KeyError as err:
            raise ValueError(
                f"ModelCheckpoint filepath {self.filepath!r} names {err.args[0]!r}, which is not in the logs "
                f"{sorted(logs or {})}"
            ) from None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        current = _monitored(self, logs.get(self.monitor)) if self.save_best_only else None
        if self.save_best_only and current is None:
            # Keras's rule: saved all the same (a run without validation data that skipped ended,
            # hours later, without a single checkpoint).
            warnings.warn(
                f"ModelCheckpoint can save the best model only with '{self.monitor}' available; available: "
                f"{sorted(logs)}; saving this epoch's model instead",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
        elif self.save_best_only:
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                if self.verbose > 0:
                    progress.write_line(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                progress.write_line(
                    f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                    f"saving model to {self._path(epoch, logs)}"
                )
            self.best = current
        path = self._path(epoch, logs)
        # As Keras: the directory is made if need be (else the first epoch's training ended in
        # FileNotFoundError). Only the primary rank writes files (convforge.distributed).
        directory = os.path.dirname(path)
        if directory and distributed.is_primary():
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        self.last_saved = path
        if self.verbose > 0 and not self.save_best_only:
            progress.write_line(f"Epoch {epoch + 1}: saving model to {path}")

    def get_state(self):
        return {"best": _json_float(self.best)}, {}

    def set_state(self, state, arrays):
        self.best = float(state["best"])
        self._restored = True


class BackupAndRestore(Callback):
    """Keras's ``BackupAndRestore``: fault tolerance for a long ``fit``. After every epoch the
    whole training state is written to ``backup_dir/latest.npz`` (atomically: a crash never
    leaves half a file); when ``fit`` starts with this callback and finds that file (the run
    before was killed), it continues from it, as ``fit(resume_from=...)`` does: weights,
    optimizer state, random generator, history and the other callbacks' state, at the epoch
    after the one saved, so the run ends as one that was never interrupted. A run that ends
    normally (or is stopped by a callback) deletes the backup, with ``delete_checkpoint=True``.

    ``double_checkpoint=True`` also keeps the backup before the last one
    (``latest.npz.bkp``), read if the latest cannot be. Where convforge differs from Keras:
    ``save_freq`` is ``'epoch'`` only (a run resumes at an epoch boundary; Keras 3.15 also
    resumes at the epoch, whatever it saved mid-epoch); the backup is convforge's training
    state, not Keras's ``latest.weights.h5`` and ``training_metadata.json`` (Keras's restores the
    weights and the epoch only); the end of the run deletes the files it wrote and then the
    directory if it is empty, not the whole directory (Keras's ``rmtree``).
    """

    # After every other callback, ModelCheckpoint included: the backup holds their state of this
    # epoch (before it, a restart restored ModelCheckpoint's best of the epoch before).
    _epoch_end_order = 3

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__()
        if isinstance(backup_dir, bytes) or not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise ValueError(f"BackupAndRestore backup_dir must be a directory name; got {backup_dir!r}")
        if save_freq != "epoch":
            raise ValueError(f"BackupAndRestore supports save_freq='epoch' only (a run resumes at an epoch boundary); "
                             f"got {save_freq!r}")
        for name, value in (("double_checkpoint", double_checkpoint), ("delete_checkpoint", delete_checkpoint)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"BackupAndRestore {name} must be True or False; got {value!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._path = os.path.join(self.backup_dir, "latest.npz")
        self._previous_path = self._path + ".bkp"

    def _backups(self) -> list[str]:
        """The backups fit may continue from, the latest first."""
        return [p for p in (self._path, self._previous_path) if os.path.isfile(p)]

    def on_epoch_end(self, epoch, logs=None):
        if not distributed.is_primary():  # as ModelCheckpoint: one rank writes
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.isfile(self._path):
            partial = self._previous_path + ".partial"
            shutil.copyfile(self._path, partial)
            os.replace(partial, self._previous_path)
        self.model.save(self._path)

    # The backup says whether the run stopped at its epoch (EarlyStopping): a process killed
    # between that and the end of the run then resumes straight to the end, training nothing more
    # and logging nothing twice, as the run would have ended.
    def get_state(self):
        epochs = (self.params or {}).get("epochs")
        return {"stopped": bool(getattr(self.model, "stop_training", False)), "epochs": epochs}, {}

    def set_state(self, state, arrays):
        # Only the same run started again (its epochs): a later fit with this directory and
        # delete_checkpoint=False goes on from the backup's epoch, as Keras's does.
        self._stopped_at_backup = bool(state.get("stopped", False))
        self._backup_epochs = state.get("epochs")

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint or not distributed.is_primary():
            return
        for path in (self._path, self._previous_path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        with contextlib.suppress(OSError):  # not empty (files of one's own), or gone
            os.rmdir(self.backup_dir)


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or Inf, and say where it started.

    Checking is free while the loss is finite. On the first non-finite loss
    the batch is run again, layer by layer, to find the first NaN/Inf: in the
    input, in a layer's weights, in a layer's output, in the loss, or in a
    layer's gradients. The message names that layer; it is printed and kept
    in :attr:`message`. (A batch whose loss is not finite is never applied to
    the weights, so the model keeps its last good weights.)
    """

    def __init__(self):
        super().__init__()
        self.message: str | None = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        x, y = self.model.last_batch
        where = self.model._diagnose_non_finite(x, y)
        # Data-parallel: every rank sees the same global loss and gets here; the NaN may be in
        # another rank's shard, so the ranks' diagnoses are gathered and the first finding shown.
        strategy = self.model._strategy
        if strategy.size > 1:
            found = [(r, text) for r, text in enumerate(strategy.gather_text(where)) if not text.startswith("No NaN")]
            if found:
                where = f"On rank {found[0][0]}: {found[0][1]}"
        epoch = self.model.current_epoch
        self.message = f"Epoch {epoch + 1}, batch {batch + 1}: invalid loss {loss}, terminating training. {where}"
        progress.write_line(self.message)
        self.model.stop_training = True


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch: ``schedule(epoch)`` or ``schedule(epoch, lr)``.

    As Keras, ``schedule(epoch, lr)`` (the current rate) whenever the schedule can take two
    positional arguments, a second one with a default included (``lambda epoch, base=0.1: ...``
    gets the current rate as ``base``), else ``schedule(epoch)``.

    ``epoch`` counts from 0. Any of :mod:`convforge.optimizers`' schedules
    works (e.g. ``StepDecay(0.1, step_size=10)`` for a tenfold drop every 10
    epochs). The learning rate used is logged as ``learning_rate``.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule must be a callable epoch -> learning rate; got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        # Keras 3 calls schedule(epoch, lr) whenever that call works (its TypeError falls back to
        # schedule(epoch)): ``def f(epoch, lr=0.01)`` and ``def f(*args)`` get the current rate too
        # (they got only the epoch, so lr stayed at its default). Decided from the signature, so
        # that a TypeError raised inside the schedule is not taken for "one argument".
        try:
            inspect.signature(schedule).bind(0, 0.1)
            self._two_args = True
        except TypeError:
            self._two_args = False
        except ValueError:  # no signature to read (some builtins): the epoch alone
            self._two_args = False

    def on_epoch_begin(self, epoch, logs=None):
        from .optimizers import check_learning_rate

        optimizer = self.model.optimizer
        if optimizer.schedule is not None:
            raise ValueError(
                "LearningRateScheduler cannot drive an optimizer whose learning_rate is itself a schedule; "
                "give the optimizer a float learning rate"
            )
        lr = self.schedule(epoch, optimizer.learning_rate) if self._two_args else self.schedule(epoch)
        try:
            lr = check_learning_rate(lr, "learning rate")
        except (TypeError, ValueError) as err:
            raise ValueError(f"LearningRateScheduler schedule returned {lr!r} for epoch {epoch}: {err}") from None
        optimizer.learning_rate = lr
        if self.verbose > 0:
            progress.write_line(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving; Keras's rule and defaults.

    After ``patience`` epochs without an improvement larger than
    ``min_delta`` the rate becomes ``max(lr * factor, min_lr)``; then
    ``cooldown`` epochs pass before counting again. The rate used is logged
    as ``learning_rate``.
    """

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
    ):
        super().__init__()
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not 0 <= factor < 1:
            raise ValueError(f"ReduceLROnPlateau factor must be a number in [0, 1); got {factor!r}")
        self.monitor = _monitor_argument("ReduceLROnPlateau", monitor)
        self.factor = float(factor)
        self.patience = _count_argument("ReduceLROnPlateau", "patience", patience)
        self.verbose = verbose
        self._mode_argument = mode
        self.mode = _monitor_mode(monitor, mode)
        self.min_delta = abs(_number_argument("ReduceLROnPlateau", "min_delta", min_delta))
        self.cooldown = _count_argument("ReduceLROnPlateau", "cooldown", cooldown)
        self.min_lr = _number_argument("ReduceLROnPlateau", "min_lr", min_lr, minimum=0)
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        if self._mode_argument == "auto":
            self.mode = _auto_mode(self.monitor, self.model)
        if not getattr(self, "_restored", False):
            self._reset()
        self._restored = False

    def _improved(self, current) -> bool:
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        if optimizer.schedule is not None:
            raise ValueError(
                "ReduceLROnPlateau cannot change an optimizer whose learning_rate is a schedule; "
                "give the optimizer a float learning rate"
            )
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = _monitored(self, logs.get(self.monitor))
        if current is None:
            warnings.warn(
                f"ReduceLROnPlateau is conditioned on '{self.monitor}', which is not available; available: "
                f"{sorted(logs)}",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(optimizer.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    optimizer.learning_rate = new
                    if self.verbose > 0:
                        progress.write_line(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def get_state(self):
        return {"best": _json_float(self.best), "wait": self.wait, "cooldown_counter": self.cooldown_counter}, {}

    def set_state(self, state, arrays):
        self.best = float(state["best"])
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self._restored = True


def _csv_cell(value):
    """A log value for CSVLogger: an array (a value per class or threshold) as a list's text, one
    line (NumPy's str() wraps long arrays over several lines and drops the commas)."""
    if isinstance(value, np.ndarray) and value.ndim:
        return "[" + ", ".join(repr(float(v)) for v in value.ravel()) + "]"
    return value


class CSVLogger(Callback):
    """Write each epoch's logs to a CSV file: ``epoch`` then the log keys in sorted order, as Keras.

    Each row is flushed when written, so the file is useful while training
    runs (and after a crash). ``append=True`` continues an existing file
    without writing the header again. In a data-parallel run only the primary
    rank writes (the logs are global, the same on every rank). A metric with
    one value per class or threshold (``F1Score()``, ``Precision(thresholds=[...])``)
    is written as ``[0.5, 0.25, 1.0]``, one cell (Keras writes it with its
    quote marks inside the cell: ``"[0.5, 0.25, 1.0]"``).
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger separator must be one character, e.g. ','; got {separator!r}")
        self.separator = separator
        self.append = bool(append)
        self._file = None
        self._keys = None

    def on_train_begin(self, logs=None):
        # Every rank would otherwise open the same file: with append=True each row (and a second
        # header) came twice, and without it the ranks truncated and overwrote each other's rows.
        if not distributed.is_primary():
            return
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._keys = None
        if exists:
            with open(self.filename, encoding="utf-8") as f:
                header = f.readline().rstrip("\r\n")
            self._keys = header.split(self.separator)[1:] if header else None

    def on_epoch_end(self, epoch, logs=None):
        import csv

        if self._file is None:  # not the primary rank
            return
        logs = logs or {}
        writer = csv.writer(self._file, delimiter=self.separator, lineterminator="\n")
        if self._keys is None:
            self._keys = sorted(logs)
            writer.writerow(["epoch", *self._keys])
        writer.writerow([epoch, *(_csv_cell(logs.get(k, "NA")) for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


from . import _unsupported  # noqa: E402

__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())

# A Keras argument a class here lacks (clipnorm, reduction, class_id, ...) gets a TypeError
# naming it and what to do instead, not Python's bare "unexpected keyword argument".
for _cls in [v for v in list(globals().values()) if isinstance(v, type) and issubclass(v, Callback)]:
    _unsupported.check_arguments(_cls)
