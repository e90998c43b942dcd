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

import warnings

import numpy as np

from .. import losses as losses_module
from ..layers.activations import Activation, ReLU, _ActivationLayer
from ..layers.base import FLOAT_DTYPES, Layer, check_input_shape, display_shape, snake_case
from ..layers.core import Dropout, InputLayer
from ..layers.pooling import MaxPooling2D
from . import state
from .batches import _Batches, _Entry
from .summary import print_summary
from .trainer import Trainer

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


class Sequential(Trainer):
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
        super().__init__()
        self.name = name or "sequential"
        self.dtype = _check_dtype(dtype)
        self.layers: list[Layer] = []
        self._declared_input: tuple | None = None
        self._entry: _Entry | None = None
        self.built = False
        self._first_trainable = 0
        self._trainable_plan: list = []
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
        print_summary(self, line_length, print_fn)

    # ================================================================== the passes

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

    def _forward(self, xb, training: bool) -> np.ndarray:
        """The model's output for a batch in the internal layout."""
        out = xb
        for layer in self.layers:
            out = layer.forward(out, training=training)
        return out

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

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "Sequential":
        """A new, built model from :meth:`get_config`'s description (fresh weights).

        ``custom_objects``: ``{'MyLayer': MyLayer}`` for layer classes of your own.
        """
        model = cls(name=config.get("name"), dtype=config.get("dtype", "float32"))
        layers = [state.layer_from_config(i, entry, custom_objects) for i, entry in enumerate(config["layers"])]
        # Add all layers before building: the input spec then applies to the whole stack.
        for layer in layers:
            if layer is layers[0]:
                layer.input_shape_arg = None
            model.add(layer)
        if config.get("input_shape"):
            model._declared_input = tuple(config["input_shape"])
        model.build()
        return model

    def save(self, filepath) -> None:
        """Save architecture, weights, compile settings, optimizer state and training progress
        (epoch, random state, history) to an ``.npz`` file; see :mod:`convforge.saving`."""
        state.save_model(self, filepath)

    def save_weights(self, filepath) -> None:
        """Save the weights (and the architecture, to check on load) to an ``.npz`` file."""
        state.save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        """Load weights saved by ``save_weights`` or ``save`` into this model (same architecture)."""
        state.load_weights(self, filepath)

    def __repr__(self) -> str:
        return f"<Sequential name={self.name!r} layers={len(self.layers)} built={self.built}>"
