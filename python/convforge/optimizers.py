"""Optimizers (SGD with momentum/Nesterov, Adam, AdamW, RMSprop, Adagrad, Nadam, Adadelta, Adamax, Lion) and
learning-rate schedules.

The update rules are Keras's (``keras.optimizers``), written out in each
class's docstring. ``model.compile(optimizer='adam')`` uses the defaults;
pass an instance to choose the hyperparameters::

    model.compile(optimizer=optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True), ...)

Weight decay
------------
``weight_decay=wd`` is *decoupled* weight decay, as in Keras 3 and AdamW:
before each update every trained weight is shrunk, ``w -= lr * wd * w``
(not added to the gradient, so Adam does not rescale it).

Gradient clipping
-----------------
As in Keras, each optimizer takes at most one of ``clipvalue=v`` (every gradient
element clipped to ``[-v, v]``), ``clipnorm=c`` (each weight's gradient scaled
down to L2 norm ``c`` if larger) and ``global_clipnorm=c`` (all the gradients
scaled together so that their joint L2 norm is at most ``c``), applied to the
batch's gradient before the weight decay and the update.

Learning-rate schedules
-----------------------
``learning_rate`` may be a float, a schedule from this module, or any
callable ``step -> lr``; it is called with the number of updates done so far
(0 for the first batch), as Keras's ``LearningRateSchedule``. For a schedule
by epoch use :class:`convforge.callbacks.LearningRateScheduler`, which calls
``epoch -> lr`` at the start of each epoch. The schedules
(:class:`StepDecay`, :class:`ExponentialDecay`, :class:`InverseTimeDecay`,
:class:`CosineDecay`, :class:`PiecewiseConstantDecay`) are plain ``t -> lr`` functions and work
with either. They are also reachable as ``optimizers.schedules.X``.
"""

from __future__ import annotations

import math
import numbers
import sys
import types

import numpy as np

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "Nadam",
    "CosineDecay",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LearningRate",
    "LearningRateSchedule",
    "Optimizer",
    "PiecewiseConstantDecay",
    "RMSprop",
    "StepDecay",
    "get",
    "schedules",
]


def _real(value, name: str, *, low: float = 0.0, high: float | None = None, low_open=False, high_open=True) -> float:
    """A finite float in the given range, or TypeError/ValueError naming the argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if value < low or (low_open and value == low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}; got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}; got {value}")
    return value


def _flag(value, name: str) -> bool:
    """True or False; a string such as 'no' or a number is a TypeError, not bool()'s True."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _positive_int(value, name: str) -> int:
    if type(value) is int and value >= 1:  # the common case, without the ABC check (1.3 us a predict)
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- schedules


class LearningRateSchedule:
    """Base class of the schedules: ``schedule(t) -> learning rate``."""

    #: Keras's default name (its config's ``name``); the built-in schedules take ``name=``.
    name = None

    def _set_name(self, name) -> None:
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a string; got {name!r}")
            self.name = name

    def __call__(self, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class StepDecay(LearningRateSchedule):
    """``initial_learning_rate * gamma ** (t // step_size)`` (PyTorch's StepLR)."""

    def __init__(self, initial_learning_rate, step_size, gamma=0.1):
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate")
        self.step_size = _positive_int(step_size, "step_size")
        self.gamma = _real(gamma, "gamma")

    def __call__(self, step):
        return self.initial_learning_rate * self.gamma ** (int(step) // self.step_size)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "step_size": self.step_size, "gamma": self.gamma}


class _DecayBySteps(LearningRateSchedule):
    """Keras's schedules of ``(initial_learning_rate, decay_steps, decay_rate, staircase)``: each a
    function of the progress t / decay_steps, floored when ``staircase``."""

    _decay_rate_low_open = False  # ExponentialDecay's rate must be > 0

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        self._set_name(name)
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive_int(decay_steps, "decay_steps")
        self.decay_rate = _real(decay_rate, "decay_rate", low_open=self._decay_rate_low_open)
        self.staircase = _flag(staircase, "staircase")

    def _progress(self, step) -> float:
        p = int(step) / self.decay_steps
        return math.floor(p) if self.staircase else p

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class ExponentialDecay(_DecayBySteps):
    """``initial_learning_rate * decay_rate ** (t / decay_steps)``; integer division if ``staircase``."""

    name = "ExponentialDecay"
    _decay_rate_low_open = True

    def __call__(self, step):
        return self.initial_learning_rate * self.decay_rate ** self._progress(step)


class InverseTimeDecay(_DecayBySteps):
    """``initial_learning_rate / (1 + decay_rate * t / decay_steps)``; integer division if ``staircase``
    (Keras's formula)."""

    name = "InverseTimeDecay"

    def __call__(self, step):
        return self.initial_learning_rate / (1 + self.decay_rate * self._progress(step))


class CosineDecay(LearningRateSchedule):
    """Cosine from ``initial_learning_rate`` down to ``alpha * initial_learning_rate`` over ``decay_steps``
    (Keras's formula; constant afterwards).

    With ``warmup_target`` (Keras's warmup): the first ``warmup_steps`` steps rise linearly from
    ``initial_learning_rate`` to ``warmup_target``, then the cosine runs from ``warmup_target``
    down to ``alpha * warmup_target`` over the next ``decay_steps`` steps.
    """

    name = "CosineDecay"

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name=None, warmup_target=None, warmup_steps=0):
        self._set_name(name)
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive_int(decay_steps, "decay_steps")
        self.alpha = _real(alpha, "alpha", high=1.0, high_open=False)
        self.warmup_target = None if warmup_target is None else _real(warmup_target, "warmup_target")
        if isinstance(warmup_steps, (bool, np.bool_)) or not isinstance(warmup_steps, numbers.Integral) \
                or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0; got {warmup_steps!r}")
        self.warmup_steps = int(warmup_steps)
        if self.warmup_steps and self.warmup_target is None:
            # Keras ignores warmup_steps then: a warmup asked for and silently not done.
            raise ValueError(f"warmup_steps={self.warmup_steps} needs warmup_target, the learning rate the warmup "
                             "rises to (from initial_learning_rate)")

    def __call__(self, step):
        step = int(step)
        peak = self.initial_learning_rate
        if self.warmup_target is not None:
            if step < self.warmup_steps:
                return peak + (self.warmup_target - peak) * step / self.warmup_steps
            step -= self.warmup_steps
            peak = self.warmup_target
        t = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * t))
        return peak * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
            "name": self.name,
        }


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[i]`` while ``boundaries[i-1] < t <= boundaries[i]`` (Keras's rule)."""

    name = "PiecewiseConstant"

    def __init__(self, boundaries, values, name=None):
        self._set_name(name)
        boundaries, values = list(boundaries), list(values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"values must have one more entry than boundaries; got {len(values)} and {len(boundaries)}"
            )
        for i, b in enumerate(boundaries):
            if isinstance(b, (bool, np.bool_)) or not isinstance(b, numbers.Real) or not math.isfinite(b):
                raise TypeError(f"boundaries[{i}] must be a step number; got {b!r}")
        # Steps are whole numbers: step <= 2.5 is step <= 2 (floor, also below 0).
        self.boundaries = [math.floor(b) for b in boundaries]
        if self.boundaries != sorted(self.boundaries):
            raise ValueError(f"boundaries must be increasing; got {self.boundaries}")
        self.values = [_real(v, f"values[{i}]") for i, v in enumerate(values)]

    def __call__(self, step):
        step = int(step)
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


#: Keras's namespace ``optimizers.schedules``: a module (registered in ``sys.modules``), so that
#: ``from convforge.optimizers.schedules import ExponentialDecay`` works as with Keras, and a
#: Keras schedule convforge lacks says so (its ``__getattr__`` is set at the end of this file).
schedules = types.ModuleType(f"{__name__}.schedules", "Learning-rate schedules under Keras's names.")
for _cls in (LearningRateSchedule, StepDecay, ExponentialDecay, InverseTimeDecay, CosineDecay,
             PiecewiseConstantDecay):
    setattr(schedules, _cls.__name__, _cls)
sys.modules[schedules.__name__] = schedules
_SCHEDULES = {cls.__name__: cls for cls in (StepDecay, ExponentialDecay, InverseTimeDecay, CosineDecay,
                                            PiecewiseConstantDecay)}


def check_learning_rate(value, name="learning_rate") -> float:
    """A learning rate: finite and >= 0."""
    return _real(value, name)


# --------------------------------------------------------------------------- optimizers


class _OptimizerValue:
    """A number read off an optimizer with Keras 3's variable methods: ``numpy`` gives the plain
    number, ``assign`` sets the optimizer's attribute. It is the value when read, not a live view;
    copied or pickled (a callback's saved rate, an MPI broadcast of a state) it is the plain number."""

    _attribute = ""

    def __new__(cls, value, optimizer):
        number = super().__new__(cls, value)
        number._optimizer = optimizer
        return number

    def _plain(self):
        return type(self).__mro__[2](self)  # float or int: the class after this mixin

    def assign(self, value) -> None:
        setattr(self._optimizer, self._attribute, value)

    def numpy(self):
        return self._plain()

    def __reduce__(self):
        return type(self._plain()), (self._plain(),)


class LearningRate(_OptimizerValue, float):
    """An optimizer's float learning rate, for code that writes
    ``model.optimizer.learning_rate.assign(lr)`` in a callback (see :class:`_OptimizerValue`)."""

    _attribute = "learning_rate"


class Iterations(_OptimizerValue, int):
    """An optimizer's update count, for ``optimizer.iterations.numpy()`` in a callback;
    ``assign`` sets the count as a checkpoint's restore does (see :class:`_OptimizerValue`)."""

    _attribute = "iterations"


class Optimizer:
    """Base class. Subclasses implement ``_update(key, w, g, lr)`` updating ``w`` in place.

    Parameters
    ----------
    learning_rate : float, schedule or callable ``step -> lr``
    weight_decay : float, optional
        Decoupled weight decay (see the module docstring).
    clipnorm, clipvalue, global_clipnorm : float, optional
        Gradient clipping, Keras's (see the module docstring); at most one of them.
    name : str, optional
        Kept in the config, as Keras's (default: Keras's first one, e.g. ``'adam'``, ``'adam_w'``;
        convforge adds no ``_1`` suffix for a second optimizer).

    Attributes
    ----------
    iterations : int
        Updates applied so far.
    """

    _slot_names: tuple[str, ...] = ()

    #: Keras's default name of the optimizer (its config's ``name``); ``name=`` overrides it.
    name = "optimizer"

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None):
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a string; got {name!r}")
            self.name = name
        self.learning_rate = learning_rate
        self.weight_decay = 0.0 if weight_decay is None else _real(weight_decay, "weight_decay")
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        given = [arg for arg, value in clips.items() if value is not None]
        if len(given) > 1:
            raise ValueError(f"only one of clipnorm, clipvalue and global_clipnorm can be set (as in Keras); "
                             f"got {given}")
        for arg, value in clips.items():
            setattr(self, arg, None if value is None else _real(value, arg, low_open=True))
        self.iterations = 0
        # Per-variable state (momentum, moments), by variable key, then slot name.
        self._slots: dict[str, dict[str, np.ndarray]] = {}
        # Per-variable work arrays, so that an update allocates nothing (not state: not saved).
        self._work: dict[tuple, np.ndarray] = {}

    @property
    def iterations(self) -> Iterations:
        """Updates applied so far, an int with Keras's ``numpy()`` and ``assign()``."""
        return Iterations(self._iterations, self)

    @iterations.setter
    def iterations(self, value) -> None:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"optimizer iterations must be an int >= 0; got {value!r}")
        self._iterations = int(value)

    @property
    def variables(self) -> list[np.ndarray]:
        """Keras 3's ``optimizer.variables``: ``iterations`` and (unless it is a schedule) the
        learning rate as 0-d arrays (copies), then the per-weight state (momenta, moments; the
        arrays themselves, which the first update makes: none before it)."""
        head = [np.array(self._iterations, dtype=np.int64)]
        if self.schedule is None:
            head.append(np.array(float(self.learning_rate), dtype=np.float32))
        return head + [a for slots in self._slots.values() for a in slots.values()]

    @property
    def learning_rate(self):
        """The learning rate of the next update, as Keras 3 reads it (a schedule evaluated at
        ``iterations``; the schedule itself is :attr:`schedule`), as a :class:`LearningRate`: a
        float with Keras's ``assign`` and ``numpy``, ``optimizer.learning_rate.assign(1e-4)``
        being ``optimizer.learning_rate = 1e-4``. (It gave the schedule object until 2026-12-06,
        so ``float(optimizer.learning_rate)`` in a callback failed with a schedule.)"""
        return LearningRate(self.current_learning_rate(), self)

    @learning_rate.setter
    def learning_rate(self, value):
        if callable(value):
            self._learning_rate = value
            return
        if callable(self.__dict__.get("_learning_rate")):
            # As Keras: the schedule would be dropped without a word (`.learning_rate.assign(1e-3)` in
            # a callback), its later rates with it.
            raise TypeError(
                f"this optimizer's learning rate is a schedule ({type(self._learning_rate).__name__}), so it cannot be "
                f"set to {value!r}; give the optimizer a float learning_rate to set it, or a new schedule")
        self._learning_rate = check_learning_rate(value)

    @property
    def schedule(self):
        """The schedule (or function ``step -> lr``) the optimizer was given, None for a float."""
        lr = self._learning_rate
        return lr if callable(lr) else None

    def current_learning_rate(self) -> float:
        """The learning rate of the next update (a schedule called with ``iterations``)."""
        lr = self._learning_rate
        if not callable(lr):
            return lr
        value = lr(self._iterations)
        try:
            return check_learning_rate(value, "learning rate")
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"learning-rate schedule {lr!r} returned {value!r} at step {self._iterations}: {err}"
            ) from None

    def apply_gradients(self, grads_and_vars) -> None:
        """One update of every variable in place.

        Parameters
        ----------
        grads_and_vars : iterable of (key, variable, gradient)
            ``key`` is a stable name for the variable (``'conv2d/kernel'``) that
            identifies its state (momentum, moments) across steps and in
            checkpoints; ``variable`` is updated in place.
        """
        lr = self.current_learning_rate()
        decay = lr * self.weight_decay
        if self.clipnorm is not None or self.clipvalue is not None or self.global_clipnorm is not None:
            grads_and_vars = self._clipped(grads_and_vars)
        for key, w, g in grads_and_vars:
            if decay:
                w *= 1.0 - decay
            self._update(key, w, g, lr)
        self._iterations += 1

    def _clipped(self, grads_and_vars) -> list:
        """The gradients clipped as Keras clips them, new arrays (the caller's are left alone):
        ``clipvalue`` elementwise; ``clipnorm`` each gradient to that L2 norm; ``global_clipnorm``
        all of them together, ``g * c / max(c, sqrt(sum of all g**2))``."""
        items = list(grads_and_vars)
        if self.clipvalue is not None:
            return [(key, w, np.clip(g, -self.clipvalue, self.clipvalue)) for key, w, g in items]

        def norm(g):
            flat = g.reshape(-1)
            return float(np.dot(flat, flat))

        if self.clipnorm is not None:
            return [(key, w, g * (self.clipnorm / max(self.clipnorm, math.sqrt(norm(g))))) for key, w, g in items]
        total = math.sqrt(sum(norm(g) for _, _, g in items))
        scale = self.global_clipnorm / max(self.global_clipnorm, total)
        return [(key, w, g * scale) for key, w, g in items]

    def _slot(self, key: str, name: str, like: np.ndarray, initial: float = 0.0) -> np.ndarray:
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = {}
        s = slots.get(name)
        if s is None or s.shape != like.shape or s.dtype != like.dtype:
            s = slots[name] = np.full_like(like, initial)
        return s

    def _scratch(self, key: str, like: np.ndarray, i: int = 0) -> np.ndarray:
        s = self._work.get((key, i))
        if s is None or s.shape != like.shape or s.dtype != like.dtype:
            s = self._work[(key, i)] = np.empty_like(like)
        return s

    def _update(self, key, w, g, lr):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ state and config

    #: Scalars Keras keeps as optimizer variables beyond ``iterations`` and the learning rate
    #: (Nadam's running product of its momentum factors).
    _keras_scalars = 0

    def variables_size(self) -> tuple[int, int] | None:
        """``(values, bytes)`` of what Keras 3 counts as this optimizer's variables, once it has
        been applied (None before, as Keras's summary leaves them out of an unbuilt optimizer):
        its per-weight state (momenta, moments), then ``iterations`` and, unless it is a schedule,
        the learning rate, 4 bytes each as Keras's summary counts them. ``model.summary()``'s
        "Optimizer params" line."""
        if not self._slots and self._iterations == 0:
            return None
        arrays = [a for slots in self._slots.values() for a in slots.values()]
        scalars = 1 + (self.schedule is None) + self._keras_scalars
        return (sum(a.size for a in arrays) + scalars, sum(a.nbytes for a in arrays) + 4 * scalars)

    def get_state(self) -> tuple[int, dict[str, np.ndarray]]:
        """``(iterations, {'<key>/<slot>': array})``, for checkpoints."""
        arrays = {f"{key}/{name}": arr for key, slots in self._slots.items() for name, arr in slots.items()}
        return self._iterations, arrays

    def set_state(self, iterations: int, arrays: dict[str, np.ndarray]) -> None:
        self.iterations = int(iterations)
        self._slots = {}
        for full, arr in arrays.items():
            key, _, name = full.rpartition("/")
            self._slots.setdefault(key, {})[name] = np.array(arr)

    def _astype(self, dtype) -> None:
        for slots in self._slots.values():
            for name, arr in slots.items():
                slots[name] = arr.astype(dtype)
        self._work.clear()

    def get_config(self) -> dict:
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule) and type(lr).__name__ in _SCHEDULES:
            lr_config = {"class_name": type(lr).__name__, "config": lr.get_config()}
        elif callable(lr):
            lr_config = None  # a user function cannot be saved
        else:
            lr_config = lr
        return {"name": self.name, "learning_rate": lr_config, "weight_decay": self.weight_decay or None,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            if lr.get("class_name") not in _SCHEDULES or not isinstance(lr.get("config", {}), dict):
                raise ValueError(f"learning_rate: unknown schedule description {lr!r}; the schedules are "
                                 f"{sorted(_SCHEDULES)}, as {{'class_name': name, 'config': {{...}}}}")
            config["learning_rate"] = _SCHEDULES[lr["class_name"]](**lr.get("config", {}))
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    Keras's update, with velocity ``m`` (zero at start)::

        m = momentum * m - lr * g
        w = w + m                                   # plain momentum
        w = w + momentum * m - lr * g               # nesterov=True
        w = w - lr * g                              # momentum=0
    """

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.momentum = _real(momentum, "momentum", high=1.0)
        self.nesterov = _flag(nesterov, "nesterov")

    def _update(self, key, w, g, lr):
        step = np.multiply(g, lr, out=self._scratch(key, w))
        if self.momentum == 0:
            w -= step
            return
        m = self._slot(key, "momentum", w)
        m *= self.momentum
        m -= step
        if self.nesterov:
            w += np.multiply(m, self.momentum, out=self._scratch(key, w, 1))
            w -= step
        else:
            w += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


def _update_moments(opt, key, w, g):
    """Adam's and Nadam's moving averages, in place: ``m += (1 - beta_1) (g - m)``,
    ``v += (1 - beta_2) (g*g - v)``. Returns ``(m, v, scratch)``."""
    m = opt._slot(key, "m", w)
    v = opt._slot(key, "v", w)
    t = opt._scratch(key, w)
    np.subtract(g, m, out=t)
    t *= 1 - opt.beta_1
    m += t
    np.multiply(g, g, out=t)
    t -= v
    t *= 1 - opt.beta_2
    v += t
    return m, v, t


class _Betas(Optimizer):
    """The Adam family's hyper-parameters (Adam, Nadam, Adamax): ``beta_1``, ``beta_2``, ``epsilon``."""

    def __init__(self, learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue, global_clipnorm,
                 name):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_1 = _real(beta_1, "beta_1", high=1.0)
        self.beta_2 = _real(beta_2, "beta_2", high=1.0)
        self.epsilon = _real(epsilon, "epsilon", low_open=True)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Adam(_Betas):
    """Adam (Kingma & Ba), Keras's form, with moments ``m``, ``v`` and ``t = iterations + 1``::

    m = m + (1 - beta_1) * (g - m)
    v = v + (1 - beta_2) * (g * g - v)
    v_hat = max(v_hat, v)                       # amsgrad=True only (v_hat starts at 0); then v_hat for v
    w = w - lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)
    """

    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name)
        self.amsgrad = _flag(amsgrad, "amsgrad")

    def apply_gradients(self, grads_and_vars):
        t = self._iterations + 1
        # One bias correction per step, shared by all variables.
        self._correction = math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        super().apply_gradients(grads_and_vars)

    def _update(self, key, w, g, lr):
        m, v, t = _update_moments(self, key, w, g)
        if self.amsgrad:  # the largest second moment so far (a slot, so checkpoints keep it)
            v_hat = self._slot(key, "v_hat", w)
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        np.sqrt(v, out=t)
        t += self.epsilon
        np.divide(m, t, out=t)
        t *= lr * self._correction
        w -= t

    def get_config(self):
        return {**super().get_config(), "amsgrad": self.amsgrad}


class RMSprop(Optimizer):
    """RMSprop, Keras's form (the Keras default optimizer in ``compile``)::

    v = rho * v + (1 - rho) * g * g
    d = lr * g / sqrt(v + epsilon)               # centered: v - a * a, a = rho * a + (1 - rho) * g
    w = w - d                                   # or with momentum: m = momentum * m + d; w = w - m
    """

    name = "rm_sprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.rho = _real(rho, "rho", high=1.0)
        self.momentum = _real(momentum, "momentum", high=1.0)
        self.epsilon = _real(epsilon, "epsilon", low_open=True)
        self.centered = _flag(centered, "centered")

    def _update(self, key, w, g, lr):
        v = self._slot(key, "velocity", w)
        t = self._scratch(key, w)
        v *= self.rho
        np.multiply(g, g, out=t)
        t *= 1 - self.rho
        v += t
        if self.centered:
            a = self._slot(key, "average_gradient", w)
            a *= self.rho
            np.multiply(g, 1 - self.rho, out=t)
            a += t
            np.multiply(a, a, out=t)
            np.subtract(v, t, out=t)
        else:
            t[...] = v
        t += self.epsilon
        np.sqrt(t, out=t)
        np.divide(g, t, out=t)
        t *= lr
        if self.momentum > 0:
            m = self._slot(key, "momentum", w)
            m *= self.momentum
            m += t
            t = m
        w -= t

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay, Keras's ``AdamW`` (default ``weight_decay=0.004``).

    Each step first shrinks every trained weight, ``w -= lr * weight_decay * w``
    (the learning rate of that step, not bias-corrected), then applies the Adam
    update of :class:`Adam`. As in Keras, biases are decayed too.
    """

    name = "adam_w"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name)


class Adagrad(Optimizer):
    """Adagrad, Keras's form, with an accumulator ``a`` that starts at ``initial_accumulator_value``::

    a = a + g * g
    w = w - lr * g / sqrt(a + epsilon)
    """

    name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.initial_accumulator_value = _real(initial_accumulator_value, "initial_accumulator_value")
        self.epsilon = _real(epsilon, "epsilon", low_open=True)

    def _update(self, key, w, g, lr):
        a = self._slot(key, "accumulator", w, self.initial_accumulator_value)
        t = self._scratch(key, w)
        np.multiply(g, g, out=t)
        a += t
        np.add(a, self.epsilon, out=t)
        np.sqrt(t, out=t)
        np.divide(g, t, out=t)
        t *= lr
        w -= t

    def get_config(self):
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }


class Nadam(_Betas):
    """Adam with Nesterov momentum (Dozat), Keras's form, with ``t = iterations + 1``::

    u_t     = beta_1 * (1 - 0.5 * 0.96 ** t)        # momentum schedule
    U_t     = u_1 * u_2 * ... * u_t
    m = m + (1 - beta_1) * (g - m)
    v = v + (1 - beta_2) * (g * g - v)
    m_hat = u_{t+1} * m / (1 - U_t * u_{t+1}) + (1 - u_t) * g / (1 - U_t)
    v_hat = v / (1 - beta_2 ** t)
    w = w - lr * m_hat / (sqrt(v_hat) + epsilon)

    ``U_t`` follows from ``iterations``, so a checkpoint needs no extra state.
    """

    name = "nadam"
    _keras_scalars = 1  # Keras's u_product variable (here recomputed from iterations)

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name)
        self._u_product, self._u_product_step = 1.0, 0

    def _u(self, step: int) -> float:
        return self.beta_1 * (1.0 - 0.5 * 0.96**step)

    def apply_gradients(self, grads_and_vars):
        t = self._iterations + 1
        if self._u_product_step > t - 1:  # state restored to an earlier step: recompute
            self._u_product, self._u_product_step = 1.0, 0
        while self._u_product_step < t:
            self._u_product_step += 1
            self._u_product *= self._u(self._u_product_step)
        u_t, u_next = self._u(t), self._u(t + 1)
        self._coef_m = u_next / (1 - self._u_product * u_next)
        self._coef_g = (1 - u_t) / (1 - self._u_product)
        self._v_correction = 1 - self.beta_2**t
        super().apply_gradients(grads_and_vars)

    def _update(self, key, w, g, lr):
        m, v, t = _update_moments(self, key, w, g)
        u = self._scratch(key, w, 1)
        np.divide(v, self._v_correction, out=t)
        np.sqrt(t, out=t)
        t += self.epsilon
        np.multiply(m, self._coef_m, out=u)
        u += np.multiply(g, self._coef_g, out=self._scratch(key, w, 2))
        np.divide(u, t, out=t)
        t *= lr
        w -= t

class Adadelta(Optimizer):
    """Adadelta (Zeiler), Keras's form, with accumulators ``a`` (squared gradients) and ``d``
    (squared updates), both starting at 0 (Keras's default ``learning_rate=0.001``; the paper's
    and the classic Keras MNIST example's is 1.0)::

    a = rho * a + (1 - rho) * g * g
    delta = -sqrt(d + epsilon) / sqrt(a + epsilon) * g
    d = rho * d + (1 - rho) * delta * delta
    w = w + lr * delta
    """

    name = "adadelta"

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.rho = _real(rho, "rho", high=1.0)
        self.epsilon = _real(epsilon, "epsilon", low_open=True)

    def _update(self, key, w, g, lr):
        a = self._slot(key, "accumulated_grad", w)
        d = self._slot(key, "accumulated_delta_var", w)
        t, u = self._scratch(key, w), self._scratch(key, w, 1)
        a *= self.rho
        np.multiply(g, g, out=t)
        t *= 1 - self.rho
        a += t
        np.add(d, self.epsilon, out=t)  # t = -delta = sqrt(d + eps) * g / sqrt(a + eps)
        np.sqrt(t, out=t)
        t *= g
        np.add(a, self.epsilon, out=u)
        np.sqrt(u, out=u)
        t /= u
        d *= self.rho
        np.multiply(t, t, out=u)
        u *= 1 - self.rho
        d += u
        t *= lr
        w -= t

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adamax(_Betas):
    """Adamax (Kingma & Ba: Adam with the infinity norm), Keras's form, with ``t = iterations + 1``::

    m = m + (1 - beta_1) * (g - m)
    u = max(beta_2 * u, |g|)
    w = w - lr * m / ((1 - beta_1**t) * (u + epsilon))
    """

    name = "adamax"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name)

    def apply_gradients(self, grads_and_vars):
        self._correction = 1 - self.beta_1 ** (self._iterations + 1)  # one per step, shared by all variables
        super().apply_gradients(grads_and_vars)

    def _update(self, key, w, g, lr):
        m = self._slot(key, "momentum", w)
        u = self._slot(key, "norm", w)
        t = self._scratch(key, w)
        np.subtract(g, m, out=t)
        t *= 1 - self.beta_1
        m += t
        u *= self.beta_2
        np.maximum(u, np.abs(g, out=t), out=u)
        np.add(u, self.epsilon, out=t)
        t *= self._correction
        np.divide(m, t, out=t)
        t *= lr
        w -= t


class Lion(Optimizer):
    """Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms"), Keras's form: the sign
    of an interpolation of momentum and gradient, so every weight moves by ``lr`` a step (use a
    learning rate 3-10x smaller than Adam's)::

    w = w - lr * sign(beta_1 * m + (1 - beta_1) * g)
    m = beta_2 * m + (1 - beta_2) * g
    """

    name = "lion"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        # Keras's range: beta_1 = 0 makes it SignSGD.
        self.beta_1 = _real(beta_1, "beta_1", low_open=True, high=1.0, high_open=False)
        self.beta_2 = _real(beta_2, "beta_2", high=1.0)

    def _update(self, key, w, g, lr):
        m = self._slot(key, "momentum", w)
        t, u = self._scratch(key, w), self._scratch(key, w, 1)
        np.multiply(m, self.beta_1, out=t)
        np.multiply(g, 1 - self.beta_1, out=u)
        t += u
        np.sign(t, out=t)
        t *= lr
        w -= t
        m *= self.beta_2
        np.multiply(g, 1 - self.beta_2, out=u)
        m += u

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


_BY_NAME = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adamw": AdamW, "adagrad": Adagrad, "nadam": Nadam,
            "adadelta": Adadelta, "adamax": Adamax, "lion": Lion}


def get(identifier) -> Optimizer:
    """An optimizer from a name (``'sgd'``, ``'adam'``, ``'adamw'``, ``'rmsprop'``, ``'adagrad'``,
    ``'nadam'``, ``'adadelta'``, ``'adamax'``, ``'lion'``; defaults), an instance, or a ``{'class_name', 'config'}`` dict (:func:`serialize`'s
    or Keras's)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"optimizer must be one of {sorted(_BY_NAME)} or a convforge.optimizers.Optimizer; got {identifier!r}"
    )


def serialize(optimizer: Optimizer) -> dict | None:
    if type(optimizer) in _BY_NAME.values():
        return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
    return None


def deserialize(config: dict) -> Optimizer:
    classes = {cls.__name__: cls for cls in _BY_NAME.values()}
    name = config.get("class_name") if isinstance(config, dict) else None
    if not isinstance(name, str) or name not in classes or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"unknown optimizer description {config!r}")
    return classes[config["class_name"]].from_config(config.get("config", {}))


from . import _unsupported  # noqa: E402

__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())
schedules.__getattr__ = _unsupported.module_getattr(schedules.__name__, lambda: vars(schedules))

# A Keras argument a class here lacks (clipnorm, reduction, class_id, ...) gets a TypeError
# naming it and what to do instead, not Python's bare "unexpected keyword argument".
for _cls in [v for v in list(globals().values()) if isinstance(v, type) and issubclass(v, Optimizer)]:
    _unsupported.check_arguments(_cls)
# The schedules too (Keras's name=, CosineDecay's warmup_target=); not the base class, whose
# user subclasses take arguments of their own.
for _cls in (*_SCHEDULES.values(), _DecayBySteps):  # the last: ExponentialDecay's and InverseTimeDecay's __init__
    _unsupported.check_arguments(_cls)
