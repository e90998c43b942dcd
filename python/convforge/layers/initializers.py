"""Weight initialisers, with Keras's names and formulas.

``kernel_initializer='glorot_uniform'`` (the Keras default) and friends. Every
initialiser draws from convforge's generator (:mod:`convforge.random`), in
float64, and then casts: a float32 model and a float64 model built after the
same ``convforge.seed(n)`` start from the same weights up to rounding.

Fans follow Keras: for a Dense kernel ``(in, units)`` fan_in is ``in`` and
fan_out is ``units``; for a conv kernel, stored here as OIHW
``(filters, channels, kh, kw)``, fan_in is ``channels * kh * kw`` and fan_out
``filters * kh * kw`` -- the same numbers Keras computes from its HWIO layout.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import random as _random

__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "compute_fans",
    "get",
]

# Standard deviation of a unit normal truncated to [-2, 2]; dividing by it keeps the
# variance of the truncated draws at the requested value (Keras does the same).
_TRUNCATED_STDDEV = 0.87962566103423978


def compute_fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of this shape (see the module docstring)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    # (out, in, *receptive field): the OIHW layout of conv kernels.
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _truncated_normal(rng: np.random.Generator, shape, stddev: float) -> np.ndarray:
    """Normal(0, stddev) draws, each redrawn until it lies within 2 standard deviations."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev


class Initializer:
    """Base class: ``init(shape, dtype) -> ndarray``.

    Any callable ``f(shape, dtype) -> ndarray`` may be used as an initialiser
    too; draw from ``convforge.random.get_generator()`` to stay reproducible.
    """

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        shape = tuple(int(d) for d in shape)
        return np.asarray(self._draw(shape), dtype=np.float64).astype(dtype, copy=False)

    def _draw(self, shape) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _Random(Initializer):
    """An initialiser that draws random numbers, with Keras's ``seed``: a seeded one draws the same
    values at every call (Keras 3's rule: ``HeNormal(seed=42)`` gives every layer it initialises the
    same start), an unseeded one draws from convforge's generator (:func:`convforge.seed`)."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):
            raise TypeError(f"{type(self).__name__} seed must be a non-negative int or None; got {seed!r}")
        self.seed = None if seed is None else int(seed)

    def _generator(self) -> np.random.Generator:
        return _random.get_generator() if self.seed is None else np.random.Generator(np.random.PCG64(self.seed))

    def get_config(self) -> dict:
        return {} if self.seed is None else {"seed": self.seed}


class Zeros(Initializer):
    def _draw(self, shape):
        return np.zeros(shape)


class Ones(Initializer):
    def _draw(self, shape):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def _draw(self, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(_Random):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def _draw(self, shape):
        return self.mean + self.stddev * self._generator().standard_normal(shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class RandomUniform(_Random):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def _draw(self, shape):
        return self._generator().uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class TruncatedNormal(_Random):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def _draw(self, shape):
        return self.mean + _truncated_normal(self._generator(), shape, self.stddev)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class _VarianceScaling(_Random):
    """Keras's VarianceScaling: variance ``scale / fan``; uniform or truncated normal."""

    scale = 1.0
    mode = "fan_in"
    distribution = "uniform"

    def _draw(self, shape):
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        rng = self._generator()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.standard_normal(shape) * math.sqrt(variance)
        return _truncated_normal(rng, shape, math.sqrt(variance) / _TRUNCATED_STDDEV)


class VarianceScaling(_VarianceScaling):
    """Keras's ``VarianceScaling``: draws of variance ``scale / fan``, ``fan`` the weight's
    ``fan_in``, ``fan_out`` or their mean (``mode``), from a ``'truncated_normal'`` (``'normal'``
    too, as in Keras), an ``'untruncated_normal'`` or a ``'uniform'`` distribution. Glorot, He
    and LeCun are its special cases."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real) or not (
                math.isfinite(scale) and scale > 0):
            raise ValueError(f"VarianceScaling scale must be a number > 0; got {scale!r}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling mode must be 'fan_in', 'fan_out' or 'fan_avg'; got {mode!r}")
        name = distribution.lower() if isinstance(distribution, str) else distribution
        name = "truncated_normal" if name == "normal" else name
        if name not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"VarianceScaling distribution must be 'truncated_normal', 'untruncated_normal' or "
                             f"'uniform'; got {distribution!r}")
        self.scale, self.mode = float(scale), mode
        self.distribution = "normal" if name == "truncated_normal" else name  # _VarianceScaling's spelling
        self._distribution_name = name

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self._distribution_name,
                **super().get_config()}


class Orthogonal(_Random):
    """Keras's ``Orthogonal``: a (semi-)orthogonal matrix times ``gain``, drawn as the Q of the QR
    decomposition of a normal matrix (signs fixed by R's diagonal, so that it is uniform over the
    orthogonal matrices). A kernel of more than two axes is orthogonal between its filters, each
    one flattened, as Keras's is between the columns of its ``(kh * kw * in, filters)`` reshape."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        if isinstance(gain, (bool, np.bool_)) or not isinstance(gain, numbers.Real) or not math.isfinite(gain):
            raise ValueError(f"Orthogonal gain must be a finite number; got {gain!r}")
        self.gain = float(gain)

    def _draw(self, shape):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal initializes weights of two axes or more; got shape {shape}")
        # Keras's matrix: rows the inputs, columns the outputs. A Dense kernel (in, units) is that
        # matrix; a conv kernel, OIHW here, is its transpose reshaped.
        rows, cols = (shape[0], shape[1]) if len(shape) == 2 else (math.prod(shape[1:]), shape[0])
        q, r = np.linalg.qr(self._generator().standard_normal((max(rows, cols), min(rows, cols))))
        q *= np.sign(np.diag(r))
        matrix = self.gain * (q.T if rows < cols else q)  # (rows, cols)
        return matrix if len(shape) == 2 else matrix.T.reshape(shape)

    def get_config(self):
        return {"gain": self.gain, **super().get_config()}


class Identity(Initializer):
    """Keras's ``Identity``: ``gain`` times the identity matrix (ones on the diagonal of a 2-D
    weight that need not be square), e.g. a Dense layer that starts as a copy of its input."""

    def __init__(self, gain=1.0):
        if isinstance(gain, (bool, np.bool_)) or not isinstance(gain, numbers.Real) or not math.isfinite(gain):
            raise ValueError(f"Identity gain must be a finite number; got {gain!r}")
        self.gain = float(gain)

    def _draw(self, shape):
        if len(shape) != 2:
            raise ValueError(f"Identity initializes 2-D weights (a Dense kernel) only, as Keras's; got shape {shape}")
        return self.gain * np.eye(*shape)

    def get_config(self):
        return {"gain": self.gain}


class GlorotUniform(_VarianceScaling):
    """U(-l, l) with ``l = sqrt(6 / (fan_in + fan_out))``: the Keras default for kernels."""

    mode, distribution = "fan_avg", "uniform"


class GlorotNormal(_VarianceScaling):
    mode, distribution = "fan_avg", "normal"


class HeUniform(_VarianceScaling):
    scale, mode, distribution = 2.0, "fan_in", "uniform"


class HeNormal(_VarianceScaling):
    """Truncated normal with ``stddev = sqrt(2 / fan_in)``: the usual choice before ReLU."""

    scale, mode, distribution = 2.0, "fan_in", "normal"


class LecunUniform(_VarianceScaling):
    mode, distribution = "fan_in", "uniform"


class LecunNormal(_VarianceScaling):
    mode, distribution = "fan_in", "normal"


_BY_NAME = {
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "truncated_normal": TruncatedNormal,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "lecun_uniform": LecunUniform,
    "lecun_normal": LecunNormal,
    "variance_scaling": VarianceScaling,
    "orthogonal": Orthogonal,
    "identity": Identity,
}
# Keras's short aliases (Embedding's default is 'uniform'); after the full names, which serialize() writes.
_BY_NAME.update({"uniform": RandomUniform, "normal": RandomNormal})


class _Callable(Initializer):
    """Wraps a user function ``f(shape, dtype)`` and checks what it returns."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, shape, dtype="float32"):
        shape = tuple(int(d) for d in shape)
        out = np.asarray(self.fn(shape, dtype))
        if out.shape != shape:
            raise ValueError(f"initializer {self.fn!r} returned an array of shape {out.shape}, expected {shape}")
        return out.astype(dtype, copy=False)

    def __repr__(self):
        return repr(self.fn)


# Keras's class names, which Keras takes as strings and writes in its configs: 'GlorotUniform'.
_BY_CLASS_NAME = {cls.__name__: cls for cls in _BY_NAME.values()}
_BY_CLASS_NAME.update({"IdentityInitializer": Identity, "OrthogonalInitializer": Orthogonal})  # Keras's aliases


def _lookup(name: str):
    """The class of a name: Keras's function name in any case ('he_normal'), or its class name."""
    return _BY_NAME.get(name.lower()) or _BY_CLASS_NAME.get(name)


def get(identifier, argument: str = "initializer") -> Initializer:
    """An initialiser from a name (``'he_normal'``, or Keras's class name ``'HeNormal'``), an
    instance, a ``{'class_name', 'config'}`` dict (Keras's too), or a callable ``f(shape, dtype)``."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        try:
            return deserialize(identifier)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{argument}: {err}") from None
    if isinstance(identifier, str):
        cls = _lookup(identifier)
        if cls is None:
            raise ValueError(
                f"{argument} must be one of {sorted(_BY_NAME)} (or Keras's class name, such as 'GlorotUniform'), a "
                f"{{'class_name', 'config'}} dict or a callable f(shape, dtype); got {identifier!r}"
            )
        return cls()
    if callable(identifier):
        return _Callable(identifier)
    raise TypeError(
        f"{argument} must be a name such as 'glorot_uniform' or a callable f(shape, dtype); got {identifier!r}"
    )


def serialize(initializer: Initializer):
    """A JSON-able description, or None for a user callable (which cannot be saved)."""
    for name, cls in _BY_NAME.items():
        if type(initializer) is cls:
            config = initializer.get_config()
            return name if not config else {"class_name": name, "config": config}
    return None


def deserialize(config) -> Initializer:
    """An initialiser from :func:`serialize`'s description or Keras's (``{'module', 'class_name':
    'Orthogonal', 'config': {...}, 'registered_name'}``)."""
    if isinstance(config, str):
        return get(config)
    cls = _lookup(config["class_name"]) if isinstance(config, dict) and isinstance(config.get("class_name"), str) \
        else None
    if cls is None or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"unknown initializer description {config!r}")
    return cls(**config.get("config", {}))


def deserialize_config(config: dict, keys=("kernel_initializer", "bias_initializer")) -> dict:
    """A layer config with its initializers rebuilt (``from_config``'s shared step).

    A user callable could not be saved (it is stored as None): that one falls back to the
    layer's default.
    """
    config = dict(config)
    for key in keys:
        if config.get(key) is None:
            config.pop(key, None)
        else:
            config[key] = deserialize(config[key])
    return config
