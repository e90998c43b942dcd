"""Sequential: a stack of layers with Keras's compile / fit / evaluate / predict.

>>> import convforge
>>> from convforge import layers
>>> model = convforge.Sequential([
...     layers.Conv2D(64, (3, 3), activation="relu", input_shape=(28, 28, 1)),
...     layers.MaxPooling2D(2, 2),
...     layers.Flatten(),
...     layers.Dense(10, activation="softmax"),
... ])
>>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
>>> history = model.fit(x_train / 255.0, y_train, epochs=5, validation_split=0.1)  # doctest: +SKIP

Layouts: channels-last at the API, NCHW inside
----------------------------------------------
Image data is given channels-last, ``(N, height, width, channels)``, or
``(N, height, width)`` for one channel, and shapes are reported the same way
(``summary()``, ``model.output_shape``, ``predict``, ``activations``). The
kernels are NCHW; the model converts each batch once, at its entry (a
transpose for several channels, a free reshape for one), and every layer
then works on ``(batch, channels, height, width)`` arrays: there is no
transpose between layers. With ``data_format='channels_first'`` on the image
layers the input is taken as NCHW and nothing is converted.

Input data of any real dtype (uint8 images included) is converted to the
model's dtype, batch by batch, without scaling: divide by 255 yourself, as
in Keras.

dtype
-----
float32 by default (the fast kernels); ``Sequential(..., dtype='float64')``
or ``model.astype('float64')`` for gradient checks.
"""

from __future__ import annotations

import ctypes
import math
import numbers
import os
import sys
import warnings

import numpy as np

from . import callbacks as callbacks_module
from . import distributed
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .optimizers import _positive_int
from . import random as _random
from .layers.activations import Activation, ReLU, _ActivationLayer
from .layers.base import FLOAT_DTYPES, Layer, check_input_shape, display_shape, snake_case
from .layers.core import Dropout, InputLayer
from .layers.pooling import MaxPooling2D

__all__ = ["Sequential"]

_NOT_BUILT = (
    "This model has not yet been built. Build the model first by calling build() or by calling fit() with some "
    "data, or specify an input_shape argument in the first layer (e.g. input_shape=(28, 28, 1))."
)


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return dt



def _verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose in (0, 1, 2) and not isinstance(verbose, bool):
        return int(verbose)
    raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; got {verbose!r}")


def _shape_str(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _find_openblas():
    """``(get_num_threads, set_num_threads)`` of the OpenBLAS NumPy loaded, or None.

    Linux only (it reads /proc/self/maps); nothing is loaded that is not loaded already.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()})
    except OSError:
        return None
    for path in paths:
        if ".so" not in path:
            continue
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue
        # numpy's wheels: scipy_openblas_*64_; a system OpenBLAS: openblas_*.
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", ""), ("", "64_")):
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return get, put
    return None


class _SingleThreadedBLAS:
    """Runs NumPy's BLAS (OpenBLAS) on one thread inside ``with``, restoring it after.

    Why: NumPy products in a model (custom layers, Dense on inputs the compiled kernels
    do not take) run between kernel calls. OpenBLAS's own thread pool and the kernels'
    OpenMP threads both busy-wait for work, so with both active they fight for the
    cores: LeNet-5 training on 2 cores ran 7x slower when Dense used NumPy. An
    explicit ``$OPENBLAS_NUM_THREADS`` is respected; without OpenBLAS (or off Linux)
    this does nothing.
    """

    _controls = None  # found on first use: (get, set), or False

    def __init__(self):
        self._restore = None

    def __enter__(self):
        self._restore = None
        if "OPENBLAS_NUM_THREADS" in os.environ:
            return self
        if _SingleThreadedBLAS._controls is None:
            _SingleThreadedBLAS._controls = _find_openblas() or False
        if _SingleThreadedBLAS._controls:
            get, put = _SingleThreadedBLAS._controls
            current = get()
            if current > 1:
                put(1)
                self._restore = current
        return self

    def __exit__(self, *exc):
        if self._restore is not None:
            _SingleThreadedBLAS._controls[1](self._restore)
        return False


class _Entry:
    """How user arrays become the first layer's input: checks and a layout/dtype conversion.

    ``kind`` is ``'nhwc'`` (channels-last images: transpose to NCHW),
    ``'reshape'`` (only the channel axis moves or appears, free for one
    channel), or ``'none'``.
    """

    def __init__(self, spec, internal, kind, dtype):
        self.spec, self.internal, self.kind, self.dtype = spec, internal, kind, dtype
        # Per-sample shapes accepted besides spec: (H, W) for a one-channel image, and the
        # reverse, (H, W, 1) when the model was declared with (H, W).
        self.accepted = {tuple(spec)}
        if kind == "nhwc" and spec[2] == 1:
            self.accepted.add(tuple(spec[:2]))
        if kind == "reshape" and len(spec) == 2:
            self.accepted |= {(*spec, 1), (1, *spec)}
        if kind == "none" and len(spec) == 3 and spec[0] == 1:
            self.accepted.add(tuple(spec[1:]))

    def check(self, x, argument="x") -> np.ndarray:
        """The user's array, checked (not copied)."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{argument} must hold real numbers; got an array of dtype {x.dtype}")
        if x.ndim < 1 or tuple(x.shape[1:]) not in self.accepted:
            expected = " or ".join(_shape_str((None, *s)) for s in sorted(self.accepted, key=len, reverse=True))
            raise ValueError(
                f"Input {argument} is incompatible with the model: expected shape={expected}, "
                f"found shape={_shape_str(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{argument} is empty (shape {x.shape})")
        return x

    def identity(self, x: np.ndarray) -> bool:
        """True if the batch of x needs no conversion beyond a reshape."""
        if x.dtype != self.dtype:
            return False
        return self.kind != "nhwc" or self.internal[0] == 1

    def convert(self, xb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """A batch in the internal layout and dtype, written into ``out`` when given."""
        n = xb.shape[0]
        if self.kind == "nhwc":
            c, h, w = self.internal
            src = xb.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        else:
            src = xb.reshape(n, *self.internal)
        if out is None:
            return np.ascontiguousarray(src, dtype=self.dtype)
        np.copyto(out, src, casting="unsafe")
        return out


class _Batches:
    """Batches of (x, y) in the internal layout, written into buffers reused from batch to batch."""

    def __init__(self, entry: _Entry, x: np.ndarray, y, batch_size: int):
        self.entry, self.x, self.y, self.batch_size = entry, x, y, batch_size
        self.n = x.shape[0]
        self.steps = -(-self.n // batch_size)
        full = min(batch_size, self.n)
        self._identity = entry.identity(x)
        # Gathering shuffled samples: np.take(..., out=) into a buffer of the user's dtype,
        # then one conversion into the float NCHW buffer (skipped when it is a reshape).
        self._xbuf = np.empty((full, *x.shape[1:]), dtype=x.dtype)
        self._ibuf = None if self._identity else np.empty((full, *entry.internal), dtype=entry.dtype)
        self._ybuf = None if y is None else np.empty((full, *y.shape[1:]), dtype=y.dtype)

    def _finish(self, xb, m):
        if self._identity:
            return np.ascontiguousarray(xb.reshape(m, *self.entry.internal))
        return self.entry.convert(xb, self._ibuf[:m])

    def take(self, index: np.ndarray):
        m = index.shape[0]
        xb = np.take(self.x, index, axis=0, out=self._xbuf[:m], mode="clip")
        yb = None if self.y is None else np.take(self.y, index, axis=0, out=self._ybuf[:m], mode="clip")
        return self._finish(xb, m), yb

    def slice(self, lo: int, hi: int):
        xb = self.x[lo:hi]
        yb = None if self.y is None else self.y[lo:hi]
        return self._finish(xb, hi - lo), yb


class Sequential:
    """A linear stack of layers, Keras's ``Sequential``.

    Parameters
    ----------
    layers : list of Layer, optional
        May start with ``layers.Input(shape=...)``.
    name : str
        Shown by :meth:`summary`; default ``'sequential'``.
    dtype : 'float32' or 'float64'
        Of weights and activations; inputs are converted to it.
    """

    def __init__(self, layers=None, name: str | None = None, dtype="float32"):
        self.name = name or "sequential"
        self.dtype = _check_dtype(dtype)
        self.layers: list[Layer] = []
        self._declared_input: tuple | None = None
        self._entry: _Entry | None = None
        self.built = False
        self.optimizer = None
        self.loss = None
        self.compiled_metrics: list = []
        self.stop_training = False
        self.history = None
        #: Epochs trained so far (by fit; saved in checkpoints).
        self.epochs_completed = 0
        self._fused = False
        self._fit_callbacks: list = []
        self._last_batch = None
        # How fit splits and reduces its work: one process, or data-parallel ranks (convforge.distributed).
        self._strategy = distributed._LOCAL
        for layer in layers or []:
            self.add(layer)

    # ================================================================== building

    def add(self, layer) -> None:
        """Append a layer; the model is (re)built at once if its input shape is known."""
        if isinstance(layer, InputLayer):
            if self.layers:
                raise ValueError("Input(...) must be the first entry of a Sequential model")
            self._declared_input = layer.shape
            return
        if not isinstance(layer, Layer):
            hint = ""
            if type(layer).__module__.split(".")[0] in ("keras", "tensorflow", "tf_keras"):
                hint = f" Use convforge.layers.{type(layer).__name__} instead of the Keras layer."
            raise TypeError(f"Sequential.add expects a convforge layer; got {type(layer).__name__} {layer!r}.{hint}")
        if any(layer is other for other in self.layers):
            raise ValueError(f"layer {layer.name!r} is already in this model; create a new layer instead")
        if layer.name is None:
            base = snake_case(type(layer).__name__)
            names = {other.name for other in self.layers}
            layer.name, i = base, 0
            while layer.name in names:
                i += 1
                layer.name = f"{base}_{i}"
        elif any(layer.name == other.name for other in self.layers):
            raise ValueError(f"a layer named {layer.name!r} is already in this model; layer names must be unique")
        self.layers.append(layer)
        if self._input_spec() is not None:
            try:
                self.build()
            except Exception:
                self.layers.pop()
                raise

    def _input_spec(self):
        if self._declared_input is not None:
            return self._declared_input
        return self.layers[0].input_shape_arg if self.layers else None

    def _data_format(self) -> str:
        formats = {getattr(layer, "data_format", None) for layer in self.layers} - {None}
        if len(formats) > 1:
            raise ValueError(f"layers of one model must agree on data_format; got {sorted(formats)}")
        return formats.pop() if formats else "channels_last"

    def _takes_images(self) -> bool:
        """Does the first layer that cares (past Dropout/activations) take images?"""
        for layer in self.layers:
            if isinstance(layer, (Dropout, _ActivationLayer, Activation)):
                continue
            return layer._expects_images
        return False

    def build(self, input_shape=None) -> None:
        """Create every layer's weights for an input shape.

        Parameters
        ----------
        input_shape : tuple, optional
            *Including* the batch axis, as Keras: ``(None, 28, 28, 1)``.
            Not needed when the first layer has ``input_shape=``.
        """
        if input_shape is not None:
            shape = tuple(input_shape)
            if len(shape) < 2:
                raise ValueError(f"input_shape includes the batch axis, e.g. (None, 28, 28, 1); got {input_shape!r}")
            self._declared_input = check_input_shape(shape[1:])
        spec = self._input_spec()
        if spec is None:
            raise ValueError(_NOT_BUILT)
        if not self.layers:
            raise ValueError("cannot build a Sequential model without layers: add some first")
        fmt = self._data_format()
        if len(spec) == 3:
            internal, kind = ((spec[2], spec[0], spec[1]), "nhwc") if fmt == "channels_last" else (spec, "none")
        elif len(spec) == 2 and self._takes_images():
            internal, kind = (1, *spec), "reshape"
        else:
            internal, kind = spec, "none"
        shape = internal
        for layer in self.layers:
            layer._data_format = fmt
            if layer.built and layer.params and layer.input_shape is not None and layer.input_shape != tuple(shape):
                raise ValueError(
                    f"layer {layer.name!r} was built for input {layer._show(layer.input_shape)} and cannot take "
                    f"{layer._show(shape)}"
                )
            shape = layer._build(shape, self.dtype)
        self._entry = _Entry(spec, internal, kind, self.dtype)
        self.built = True
        self._plan_backward()

    def _build_from_data(self, x) -> None:
        if self.built:
            return
        if not self.layers:
            raise ValueError("cannot build a Sequential model without layers: add some first")
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"x must have a batch axis and at least one feature axis; got shape {x.shape}")
        self._declared_input = check_input_shape(x.shape[1:], "the per-sample shape of x")
        self.build()

    def _plan_backward(self) -> None:
        """Which layers backward visits and which must return dL/dx.

        Layers before the first one with trainable weights need no gradient at
        all: backward stops there, and that layer is told not to compute dx
        (for a first Conv2D this skips the whole data-gradient convolution).
        """
        trainable = [i for i, layer in enumerate(self.layers) if layer.trainable_param_names()]
        self._first_trainable = trainable[0] if trainable else len(self.layers)
        for i, layer in enumerate(self.layers):
            layer.input_grad_needed = i > self._first_trainable
        # A ReLU right before a MaxPooling2D: the pool's backward applies the ReLU's gradient
        # in its scatter (its input is the ReLU's output), saving a pass over the feature maps.
        def ending_relu(layer):  # the ReLU a layer's output comes from, if any
            return layer if isinstance(layer, ReLU) else getattr(layer, "activation", None)

        for layer in self.layers:
            if isinstance(layer, MaxPooling2D):
                layer._gates_relu = False
            if isinstance(ending_relu(layer), ReLU):
                ending_relu(layer)._masked_by_next = False
        for before, pool in zip(self.layers, self.layers[1:]):
            relu = ending_relu(before)
            if isinstance(relu, ReLU) and type(pool) is MaxPooling2D and pool.input_grad_needed:
                pool._gates_relu = True
                relu._masked_by_next = True
        self._trainable_plan = [
            (layer, [(name, f"{layer.name}/{name}") for name in layer.trainable_param_names()])
            for layer in self.layers
            if layer.trainable_param_names()
        ]

    @property
    def input_shape(self) -> tuple:
        """Keras style, with ``None`` for the batch: ``(None, 28, 28, 1)``."""
        if not self.built:
            raise ValueError(_NOT_BUILT)
        return (None, *self._entry.spec)

    @property
    def output_shape(self) -> tuple:
        if not self.built:
            raise ValueError(_NOT_BUILT)
        return (None, *display_shape(self.layers[-1].output_shape, self._data_format()))

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by index."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers are {[layer.name for layer in self.layers]}")

    # ================================================================== weights

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(_NOT_BUILT)
        return sum(layer.count_params() for layer in self.layers)

    def get_weights(self) -> list[np.ndarray]:
        """Copies of all weights, layer by layer (Keras's order)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        expected = sum(len(layer.params) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"this model has {expected} weight arrays; set_weights got {len(weights)}")
        i = 0
        for layer in self.layers:
            k = len(layer.params)
            layer.set_weights(weights[i : i + k])
            i += k

    def astype(self, dtype) -> "Sequential":
        """Convert weights (and optimizer state) to float32 or float64, in place; returns the model."""
        self.dtype = _check_dtype(dtype)
        for layer in self.layers:
            layer._astype(self.dtype)
        if self.optimizer is not None:
            self.optimizer._astype(self.dtype)
        if self._entry is not None:
            self._entry.dtype = self.dtype
        return self

    # ================================================================== summary

    def summary(self, line_length: int | None = None, print_fn=None) -> None:
        """Print a Keras-style table of layers, output shapes and parameter counts.

        ``print_fn`` receives the whole table as one string (default ``print``).
        """
        if not self.built:
            raise ValueError(_NOT_BUILT)
        fmt = self._data_format()
        rows = [
            (
                f"{layer.name} ({type(layer).__name__})",
                _shape_str((None, *display_shape(layer.output_shape, fmt))),
                f"{layer.count_params():,}",
            )
            for layer in self.layers
        ]
        line_length = line_length or 65
        # Keras's column stops for Sequential (0.45, 0.85, 1.0), widened rather than wrapped.
        name_w = max(int(line_length * 0.45), max(len(r[0]) for r in rows) + 1)
        shape_w = max(int(line_length * 0.40), max(len(r[1]) for r in rows) + 1)
        width = max(line_length, name_w + shape_w + 10)
        param_w = width - name_w - shape_w

        def line(a, b, c):
            return f"{a:<{name_w}}{b:<{shape_w}}{c:<{param_w}}".rstrip()

        total = self.count_params()
        trainable = sum(layer.count_trainable_params() for layer in self.layers)
        out = [f'Model: "{self.name}"', "_" * width, line("Layer (type)", "Output Shape", "Param #"), "=" * width]
        for i, row in enumerate(rows):
            out.append(line(*row))
            out.append("=" * width if i == len(rows) - 1 else "_" * width)
        out += [
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            "_" * width,
        ]
        (print_fn or print)("\n".join(out))

    # ================================================================== compile

    def compile(self, optimizer="rmsprop", loss=None, metrics=None) -> None:
        """Choose the optimizer, the loss and the metrics to report.

        Parameters
        ----------
        optimizer : 'sgd', 'adam', 'rmsprop' or an Optimizer
        loss : 'sparse_categorical_crossentropy', 'categorical_crossentropy', 'mse' or a Loss
            A final softmax followed by a cross-entropy is trained from the
            logits (see :mod:`convforge.losses`).
        metrics : list, optional
            ``['accuracy']`` and/or ``'mse'``, ``'mae'``, Metric objects or
            functions ``fn(y_true, y_pred) -> float``.
        """
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        if isinstance(metrics, (str, metrics_module.Metric)) or callable(metrics):
            metrics = [metrics]
        self.compiled_metrics = [metrics_module.get(m) for m in (metrics or [])]
        names = [m.name for m in self.compiled_metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"metric names must be unique and not 'loss'; got {names}")
        self._metric_specs = list(metrics or [])

    @property
    def metrics_names(self) -> list[str]:
        return ["loss", *(m.name for m in self.compiled_metrics)]

    def _require_compiled(self, what: str) -> None:
        if self.loss is None:
            raise RuntimeError(
                f"You must compile the model before calling {what}(): model.compile(optimizer='adam', "
                "loss='sparse_categorical_crossentropy', metrics=['accuracy'])"
            )

    def _resolve_loss_path(self) -> None:
        """Fuse a final softmax into a cross-entropy on probabilities (see convforge.losses)."""
        head = self.layers[-1]
        is_ce = isinstance(self.loss, losses_module._Crossentropy)
        self._fused = bool(is_ce and not self.loss.from_logits and head._ends_in_softmax())
        if is_ce and self.loss.from_logits and head._ends_in_softmax():
            warnings.warn(
                f"the loss has from_logits=True but the last layer {head.name!r} applies a softmax: the loss "
                "would treat probabilities as logits. Remove the softmax or use from_logits=False.",
                UserWarning,
                stacklevel=3,
            )

    # ================================================================== the passes

    def _forward_loss(self, xb, yb, training: bool, need_grad: bool):
        """Forward pass and loss: ``(loss, output as predict gives it, dL/d(head output) or None)``."""
        out = xb
        layers = self.layers
        for layer in layers[:-1]:
            out = layer.forward(out, training)
        head = layers[-1]
        if self._fused:
            z = head._forward_logits(out, training)
            loss, dz, probs = self.loss.logits_value_and_grad(z, yb, need_grad)
            return loss, probs, dz
        pred = head.forward(out, training)
        loss, dpred = self.loss.value_and_grad(pred, yb, need_grad)
        return loss, pred, dpred

    def _backward(self, dhead) -> None:
        layers = self.layers
        stop = self._first_trainable
        last = len(layers) - 1
        if stop > last:
            return
        for layer, _ in self._trainable_plan:
            layer.grads.clear()
        head = layers[last]
        d = head._backward_logits(dhead) if self._fused else head.backward(dhead)
        for i in range(last - 1, stop - 1, -1):
            d = layers[i].backward(d)

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

    def _train_step(self, xb, yb, tally, global_batch: int) -> tuple[float, np.ndarray]:
        """One step on ``xb`` (in a data-parallel run, this rank's shard of a global batch)."""
        loss, out, grads = 0.0, None, None
        # Overflow shows up as a NaN/Inf loss, which is reported (the loss in the logs,
        # TerminateOnNaN's diagnosis) rather than warned about at every batch.
        with np.errstate(all="ignore"):
            if xb.shape[0]:  # a rank's shard of a short last batch can be empty
                loss, out, dhead = self._forward_loss(xb, yb, training=True, need_grad=True)
                # A non-finite loss would poison every weight: the batch is not applied.
                if math.isfinite(loss):
                    self._backward(dhead)
                    grads = self._gradients()
            tally.add(loss, yb, out)
            grads = self._strategy.reduce_step(grads, xb.shape[0], global_batch, tally)
            if grads is not None:
                self.optimizer.apply_gradients(grads)
        return loss, out

    def _clear_caches(self) -> None:
        for layer in self.layers:
            layer._clear_cache()

    # ================================================================== data

    def _prepare(self, x, y, argument="x"):
        """Checked user x and loss-checked targets y (the whole arrays, once per call)."""
        x = self._entry.check(x, argument)
        if y is None:
            raise ValueError(f"y is required to go with {argument}")
        y = np.asarray(y)
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(
                f"{argument} holds {x.shape[0]} samples but its targets hold {y.shape[0] if y.ndim else 0}"
            )
        y = self.loss.prepare_targets(y, self.layers[-1].output_shape)
        return x, y

    def _to_user(self, a: np.ndarray) -> np.ndarray:
        """An internal batch as the user sees it (NCHW -> NHWC unless channels-first)."""
        if a.ndim == 4 and self._data_format() == "channels_last":
            return a.transpose(0, 2, 3, 1)
        return a

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
        initial_epoch=0,
        validation_batch_size=None,
        resume_from=None,
    ):
        """Train for ``epochs`` epochs; returns a :class:`~convforge.callbacks.History`.

        Parameters
        ----------
        x : array, shape (N, height, width, channels), (N, height, width) or (N, features)
        y : array
            Integer labels ``(N,)`` or one-hot ``(N, classes)``, per the loss.
        batch_size : int
            Default 32.
        epochs : int
            Index of the last epoch (with ``initial_epoch``), as in Keras.
        verbose : 'auto', 0, 1 or 2
            1: progress bar (one line per epoch when stdout is not a
            terminal); 2: one line per epoch; 0: silent.
        callbacks : list of Callback
        validation_split : float
            Fraction of the data, taken from the end before shuffling, held out
            for validation.
        validation_data : (x_val, y_val), optional
            Overrides ``validation_split``.
        shuffle : bool
            Reshuffle the training data every epoch (convforge's generator).
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
        ``$OPENBLAS_NUM_THREADS`` to decide otherwise.
        """
        self._require_compiled("fit")
        if x is None:
            raise ValueError("fit needs training data x (and y)")
        self._build_from_data(x)
        self._plan_backward()
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
        # Before the data checks, which could fail on some ranks only: every rank must get the same.
        strategy.check_fit(
            self, x=x, y=y, validation_data=validation_data, batch_size=batch_size, val_batch_size=val_batch_size,
            epochs=epochs, initial_epoch=initial_epoch, shuffle=bool(shuffle), validation_split=validation_split,
            resume=resume_from is not None, callbacks=[type(cb).__name__ for cb in callbacks or []],
        )
        if not strategy.primary:
            verbose = 0
        x, y = self._prepare(x, y)

        x_val = y_val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            x_val, y_val = self._prepare(*validation_data, argument="validation_data[0]")
        elif validation_split:
            if not isinstance(validation_split, numbers.Real) or not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be a number in [0, 1); got {validation_split!r}")
            split_at = int(x.shape[0] * (1 - validation_split))
            if split_at < 1 or split_at >= x.shape[0]:
                raise ValueError(
                    f"validation_split={validation_split} leaves no training or no validation sample "
                    f"out of {x.shape[0]}"
                )
            x, x_val = x[:split_at], x[split_at:]
            y, y_val = y[:split_at], y[split_at:]

        user_callbacks = list(callbacks or [])
        for cb in user_callbacks:
            if not isinstance(cb, callbacks_module.Callback):
                raise TypeError(f"callbacks must be convforge.callbacks.Callback instances; got {cb!r}")
        history = callbacks_module.History()
        if resume_from is not None:
            from . import saving

            state = saving.restore_training_state(self, resume_from, user_callbacks)
            initial_epoch = state["epoch"]
            history.history = {k: list(v) for k, v in state["history"].items()}
            history.epoch = list(state["history_epochs"])
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) or initial_epoch < 0:
            raise ValueError(f"initial_epoch must be a non-negative int; got {initial_epoch!r}")
        initial_epoch = int(initial_epoch)
        strategy.start_fit(self)

        batches = _Batches(self._entry, x, y, batch_size)
        cbs = [history, *user_callbacks]
        if verbose:
            cbs.insert(0, callbacks_module.ProgbarLogger(verbose))
        callback_list = callbacks_module.CallbackList(
            cbs, self, {"epochs": epochs, "steps": batches.steps, "verbose": verbose, "batch_size": batch_size}
        )
        self._fit_callbacks = user_callbacks
        self.history = history
        self.stop_training = False
        self._strategy = strategy
        logs: dict = {}
        blas = _SingleThreadedBLAS()
        try:
            blas.__enter__()
            callback_list.on_train_begin()
            for epoch in range(initial_epoch, epochs):
                self._current_epoch = epoch
                callback_list.on_epoch_begin(epoch)
                logs = self._train_epoch(batches, shuffle, callback_list)
                if x_val is not None:
                    val_logs = self._evaluate(x_val, y_val, val_batch_size)
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                self.epochs_completed = epoch + 1
                callback_list.on_epoch_end(epoch, logs)
                if strategy.agree_stop(self.stop_training):
                    self.stop_training = True
                    break
            callback_list.on_train_end(logs)
        finally:
            blas.__exit__()
            self._strategy = distributed._LOCAL
            self._fit_callbacks = []
            self._last_batch = None
            self._clear_caches()
        return history

    def _train_epoch(self, batches: _Batches, shuffle: bool, callback_list) -> dict:
        strategy = self._strategy
        tally = strategy.tally(self.compiled_metrics)
        order = strategy.permutation(batches.n) if shuffle else None
        bs, n = batches.batch_size, batches.n
        report = callback_list.wants_batch_end
        agree_each_step = strategy.each_step_agreement(callback_list.callbacks)
        for step in range(batches.steps):
            first, end = step * bs, min(step * bs + bs, n)
            lo, hi = strategy.shard(first, end)  # this rank's part of the global batch
            xb, yb = batches.take(order[lo:hi]) if order is not None else batches.slice(lo, hi)
            callback_list.on_train_batch_begin(step)
            self._train_step(xb, yb, tally, end - first)
            if hi > lo:
                self._last_batch = (xb, yb)
            if report:
                callback_list.on_train_batch_end(step, tally.logs())
            if agree_each_step:
                self.stop_training = strategy.agree_stop(self.stop_training)
            if self.stop_training:
                break
        return tally.logs()

    # ================================================================== evaluate / predict

    def _evaluate(self, x, y, batch_size: int, bar=None) -> dict:
        """Loss and metrics over (x, y); in a data-parallel run each rank takes a block, the sums are global."""
        strategy = distributed.strategy()
        lo, hi = strategy.block(x.shape[0])
        batches = _Batches(self._entry, x[lo:hi], y[lo:hi], strategy.local_batch_size(batch_size))
        tally = distributed.Tally(self.compiled_metrics)
        for step in range(batches.steps):
            lo, hi = step * batches.batch_size, min((step + 1) * batches.batch_size, batches.n)
            xb, yb = batches.slice(lo, hi)
            with np.errstate(all="ignore"):
                loss, out, _ = self._forward_loss(xb, yb, training=False, need_grad=False)
            tally.add(loss, yb, out)
            if bar is not None:
                bar.update(step + 1, tally.logs())
        return strategy.reduce_logs(tally)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False):
        """Loss and metrics on ``(x, y)`` in inference mode.

        Returns the loss (a float) if no metrics were compiled, else
        ``[loss, metric, ...]`` in :attr:`metrics_names` order; a dict with
        ``return_dict=True``.
        """
        from .progress import ProgressBar

        self._require_compiled("evaluate")
        self._build_from_data(x)
        self._resolve_loss_path()
        batch_size = 32 if batch_size is None else _positive_int(batch_size, "batch_size")
        verbose = _verbosity(verbose) if distributed.is_primary() else 0
        x, y = self._prepare(x, y)
        strategy = distributed.strategy()
        lo, hi = strategy.block(x.shape[0])
        steps = -(-(hi - lo) // strategy.local_batch_size(batch_size))
        bar = ProgressBar(steps, verbose=verbose) if verbose else None
        with _SingleThreadedBLAS():
            logs = self._evaluate(x, y, batch_size, bar)
        if return_dict:
            return logs
        values = [logs[k] for k in self.metrics_names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto") -> np.ndarray:
        """Model outputs for ``x``, batch by batch, in inference mode (no dropout, nothing kept).

        Image outputs come back channels-last, like the input.
        """
        from .progress import ProgressBar

        self._build_from_data(x)
        batch_size = 32 if batch_size is None else _positive_int(batch_size, "batch_size")
        verbose = _verbosity(verbose) if distributed.is_primary() else 0
        x = self._entry.check(x)
        # Data-parallel: each rank predicts a block of the samples; every rank gets them all.
        strategy = distributed.strategy()
        first, end = strategy.block(x.shape[0])
        batch_size = strategy.local_batch_size(batch_size)
        batches = _Batches(self._entry, x[first:end], None, batch_size)
        out_shape = self.layers[-1].output_shape
        result = np.empty((x.shape[0], *out_shape), dtype=self.dtype)
        bar = ProgressBar(batches.steps, verbose=verbose) if verbose else None
        with _SingleThreadedBLAS():
            for step in range(batches.steps):
                lo, hi = step * batch_size, min((step + 1) * batch_size, batches.n)
                out, _ = batches.slice(lo, hi)
                for layer in self.layers:
                    out = layer.forward(out, training=False)
                result[first + lo : first + hi] = out
                if bar is not None:
                    bar.update(step + 1)
        return self._to_user(strategy.gather_rows(result))

    def __call__(self, x, training: bool = False) -> np.ndarray:
        """Outputs for one batch (``predict`` without batching)."""
        self._build_from_data(x)
        out = self._entry.convert(self._entry.check(x))
        for layer in self.layers:
            out = layer.forward(out, training=training)
        if training:
            self._clear_caches()
        return self._to_user(out)

    def activations(self, x, batch_size=None) -> list[np.ndarray]:
        """Every layer's output for ``x`` (inference mode): the feature maps.

        Returns
        -------
        list of ndarray
            One per layer, in order, shaped as :meth:`summary` shows:
            ``(N, 26, 26, 64)`` for a Conv2D (channels-last views of the
            internal NCHW arrays).
        """
        self._build_from_data(x)
        batch_size = 32 if batch_size is None else _positive_int(batch_size, "batch_size")
        x = self._entry.check(x)
        batches = _Batches(self._entry, x, None, batch_size)
        outs = [np.empty((batches.n, *layer.output_shape), dtype=self.dtype) for layer in self.layers]
        for step in range(batches.steps):
            lo, hi = step * batch_size, min((step + 1) * batch_size, batches.n)
            out, _ = batches.slice(lo, hi)
            for layer, dest in zip(self.layers, outs):
                out = layer.forward(out, training=False)
                dest[lo:hi] = out
        return [self._to_user(o) for o in outs]

    # ================================================================== non-finite diagnosis

    def _diagnose_non_finite(self, xb, yb) -> str:
        """Where a batch first produces NaN/Inf: input, weights, a layer's output, the loss or a gradient."""
        with np.errstate(all="ignore"):
            return self._locate_non_finite(xb, yb)

    def _locate_non_finite(self, xb, yb) -> str:
        def bad(a):
            return not np.isfinite(a).all()

        if bad(xb):
            sample = int(np.argmax(~np.isfinite(xb).reshape(xb.shape[0], -1).all(axis=1)))
            return f"The input batch holds NaN or Inf (sample {sample} of the batch): check the training data."
        out = xb
        for layer in self.layers:
            for pname, p in layer.params.items():
                if bad(p):
                    return (
                        f"Weight {pname!r} of layer {layer.name!r} ({type(layer).__name__}) holds NaN or Inf: an "
                        "earlier update overflowed (its gradients were too large); lower the learning rate."
                    )
            new = layer.forward(out, training=False)
            if bad(new):
                peak = float(np.max(np.abs(out))) if out.size else 0.0
                return (
                    f"Layer {layer.name!r} ({type(layer).__name__}) output holds NaN or Inf although its input "
                    f"(largest |value| {peak:.3g}) and weights are finite."
                )
            out = new
        loss, _, _ = self._forward_loss(xb, yb, training=False, need_grad=False)
        if not math.isfinite(loss):
            return f"The loss ({self.loss.name}) is {loss} although the model output is finite: check the targets y."
        # The forward pass is finite in inference mode: look at training mode and the
        # gradients, without disturbing the random stream (dropout masks).
        state = _random.get_state()
        try:
            loss, _, dhead = self._forward_loss(xb, yb, training=True, need_grad=True)
            if not math.isfinite(loss):
                return f"The loss ({self.loss.name}) is {loss} only in training mode (dropout?)."
            self._backward(dhead)
            for layer, names in reversed(self._trainable_plan):
                for name, _ in names:
                    g = layer.grads.get(name)
                    if g is not None and bad(g):
                        return (
                            f"The gradient of weight {name!r} of layer {layer.name!r} ({type(layer).__name__}) "
                            "holds NaN or Inf."
                        )
        finally:
            _random.set_state(state)
            self._clear_caches()
        return "No NaN or Inf found when the batch was run again."

    # ================================================================== saving

    def get_config(self) -> dict:
        """The architecture, JSON-serialisable (saved with every model file)."""
        spec = self._input_spec()
        return {
            "name": self.name,
            "dtype": self.dtype.name,
            "input_shape": None if spec is None else list(spec),
            "layers": [
                {"class_name": type(layer).__name__, "module": type(layer).__module__, "config": layer.get_config()}
                for layer in self.layers
            ],
        }

    def save(self, filepath) -> None:
        """Save architecture, weights, compile settings, optimizer state and training progress
        (epoch, random state, history) to an ``.npz`` file; see :mod:`convforge.saving`."""
        from . import saving

        saving.save_model(self, filepath)

    def save_weights(self, filepath) -> None:
        """Save the weights (and the architecture, to check on load) to an ``.npz`` file."""
        from . import saving

        saving.save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        """Load weights saved by ``save_weights`` or ``save`` into this model (same architecture)."""
        from . import saving

        saving.load_weights(self, filepath)

    def __repr__(self) -> str:
        return f"<Sequential name={self.name!r} layers={len(self.layers)} built={self.built}>"
