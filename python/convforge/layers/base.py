"""The :class:`Layer` base class, and the shape conventions every layer follows.

Layouts
-------
At the API, images are channels-last like Keras: data ``(batch, height, width,
channels)``, ``input_shape=(28, 28, 1)``, and ``summary()`` shows
``(None, 26, 26, 64)``. Inside a model they are NCHW, the kernels' layout:
``Sequential`` converts the input once at its entry and every layer's
``forward``/``backward`` sees ``(batch, channels, height, width)`` arrays. Only
the shapes *reported* to the user are channels-last: ``layer.output_shape``,
``layer.input_shape`` and ``layer.compute_output_shape((None, 28, 28, 1))``
answer as Keras does, batch axis first.

The shapes passed to :meth:`Layer.build` (and to the layers' internal
``_compute_internal_output_shape``) are per-sample *internal* shapes, without
the batch axis: ``(channels, height, width)`` for images, ``(features,)``
for flat data. A 3-D per-sample shape is always an image.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import inspect
import math
import numbers
import re
import weakref

import warnings

import numpy as np

from .. import functional as F
from .._warnings import user_stacklevel
from .._unsupported import _is_neutral, ignored_keras_call
from . import initializers


# Why reused buffers: a LeNet-5 training step at batch 64 produces about 6 MB of outputs, indices
# and gradients; allocated afresh each step, glibc hands such blocks back to the operating system
# and the next step faults the pages in again (with TLB shootdowns across the OpenMP threads):
# about 1 ms of a 2.5 ms step on 2 cores. So the layers' training-mode calls pass functional's
# out= arrays from here.
class Buffers:
    """Arrays a layer reuses from one training step to the next, by name and shape.

    An array handed out stays the layer's: it is overwritten by the layer's
    next training-mode call. Two shapes per name are typical (full batches
    and the last, smaller one).
    """

    __slots__ = ("_arrays",)

    def __init__(self):
        self._arrays: dict = {}

    def __call__(self, name: str, shape: tuple, dtype) -> np.ndarray:
        key = (name, shape, np.dtype(dtype))  # np.float32 and np.dtype('float32') hash differently
        a = self._arrays.get(key)
        if a is None:
            a = self._arrays[key] = np.empty(shape, dtype=dtype)
        return a

    def clear(self) -> None:
        self._arrays.clear()


# Every change of a layer's attributes (Layer.__setattr__, __delattr__) or of its weights dict
# (WeightDict) is counted, after it is made (functional.note_layer_change): predict's one-call path
# (models/compiled.py) checks that the layers still hold what its plan was made from only when
# that count moved, not on every call. What bypasses these (object.__setattr__, vars(layer),
# dict.__setitem__ on params) is not counted, and such a change can go unseen by that path.
_note_change = F.note_layer_change

# The call copies of each layer called more than once in a model (call_copy): original -> weak
# references to its copies. A setting changed on the layer (``relu.max_value = 6``,
# ``dropout.rate = 0.3``, ``layer.trainable = False``) is made on its copies too, so that every
# call of a shared layer runs with it, as Keras's one object does. Weakly held both ways: a
# model that goes takes its copies with it.
_call_copies: "weakref.WeakKeyDictionary[Layer, list]" = weakref.WeakKeyDictionary()
# Public attributes that are each call's own, never passed on to the copies.
_PER_CALL_ATTRIBUTES = frozenset({"grads", "input_grad_needed"})


def call_copy(layer: "Layer") -> "Layer":
    """A copy of ``layer`` for another call of it in one model: the same weights (``params`` is
    shared), its own gradients, training buffers and caches -- and so for the layers it holds
    (an activation inside Conv2D/Dense). The public settings later set on ``layer`` are set on
    the copy too (Layer.__setattr__)."""
    twin = copy.copy(layer)
    twin.grads = {}
    twin._buffers = type(layer._buffers)()  # empty, of the layer's own buffer class
    for attr, value in vars(layer).items():
        if isinstance(value, Layer):
            setattr(twin, attr, call_copy(value))
    copies = _call_copies.setdefault(layer, [])
    copies[:] = [ref for ref in copies if ref() is not None]  # (eager calls make one a call)
    copies.append(weakref.ref(twin))
    return twin


def _pass_to_call_copies(layer: "Layer", name: str, value) -> None:
    refs = _call_copies.get(layer)
    if not refs:
        return
    live = [ref for ref in refs if ref() is not None]
    refs[:] = live
    for ref in live:
        # A layer set as a setting (a new activation) gets a copy of its own for each call.
        setattr(ref(), name, call_copy(value) if isinstance(value, Layer) else value)


class WeightDict(dict):
    """A layer's weights by name (``layer.params``): a dict that counts its changes.

    Replacing, adding or removing an entry is seen by a compiled model's next
    ``predict``; a weight edited in place (``layer.params["kernel"][0] = 1``)
    always is, whatever holds it.
    """

    __slots__ = ()

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        _note_change()

    def __delitem__(self, key):
        super().__delitem__(key)
        _note_change()

    def __ior__(self, other):
        super().__ior__(other)
        _note_change()
        return self

    def pop(self, *args):
        try:
            return super().pop(*args)
        finally:
            _note_change()

    def popitem(self):
        try:
            return super().popitem()
        finally:
            _note_change()

    def setdefault(self, key, default=None):
        try:
            return super().setdefault(key, default)
        finally:
            _note_change()

    def update(self, *args, **kwargs):
        try:
            super().update(*args, **kwargs)
        finally:
            _note_change()

    def clear(self):
        super().clear()
        _note_change()


__all__ = ["Layer", "display_shape"]

# Built-in and user layer classes by class name, for rebuilding a model from its JSON
# description (convforge.load_model). Filled by Layer.__init_subclass__.
_REGISTRY: dict[str, list[type]] = {}

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Keras layer arguments convforge does not implement, with what to do instead.
_UNSUPPORTED_ARGUMENTS = {
    "activity_regularizer": "put the penalty in a custom Loss, or use kernel_regularizer",
    "kernel_constraint": "clip the weights in a Callback's on_train_batch_end",
    "bias_constraint": "clip the weights in a Callback's on_train_batch_end",
    "dtype": "give the model's dtype: Sequential(..., dtype='float64')",
    "groups": "Conv2D takes groups; for this layer, split the channels into several layers",
    "lora_rank": "train the full kernel",
    "seed": "seed every layer at once with convforge.seed(n)",
    "autocast": "leave it out (convforge computes in the model's dtype)",
}


# Of those, the values that switch the feature off (Keras's defaults): taken, as convforge's
# behaviour, so that Keras code spelling out a default runs (Conv2D(8, 3, groups=1)).
_NEUTRAL_ARGUMENTS = {"activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None,
                      "dtype": None, "groups": 1, "lora_rank": None, "seed": None, "autocast": True,
                      # Keras's defaults that its get_config writes out (a .keras file's layers).
                      "lora_alpha": None, "quantization_config": None, "noise_shape": None,
                      "depthwise_constraint": None, "pointwise_constraint": None, "embeddings_constraint": None,
                      "beta_constraint": None, "gamma_constraint": None, "beta_regularizer": None,
                      "gamma_regularizer": None, "renorm_clipping": None, "renorm_momentum": 0.99,
                      "max_value": None, "negative_slope": 0.0, "threshold": 0.0, "data_format": "channels_last"}


def _neutral(name: str, value) -> bool:
    return _is_neutral(name, value, _NEUTRAL_ARGUMENTS)


def _unsupported(cls, unknown: list[str]) -> TypeError:
    name = unknown[0]
    hint = _UNSUPPORTED_ARGUMENTS.get(name)
    text = f"convforge does not support the argument {name!r} of {cls.__name__}"
    if hint is None:
        params = inspect.signature(cls.__init__).parameters.values()
        accepted = [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if any(p.kind is p.VAR_KEYWORD for p in params):  # a subclass passing **kwargs up to Layer
            accepted += [n for n in ("name", "input_shape", "trainable") if n not in accepted]
        hint = f"its arguments are {accepted}"
    return TypeError(f"{text}; {hint}")


def _same_dtype(value, dtype) -> bool:
    try:
        return np.dtype(value) == dtype
    except TypeError:
        return False


def _check_input_dim(dim, layer_type: str) -> None:
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral) or dim <= 0:
        raise ValueError(f"{layer_type}: input_dim must be a positive int (the number of input features); got {dim!r}")


def _check_arguments(cls, init):
    """Wrap a layer's ``__init__`` so that a Keras argument it lacks gets a message naming it."""
    try:
        params = inspect.signature(init).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return init
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return init
    names = set(params)

    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        if "input_dim" in kwargs and "input_dim" not in names and "input_shape" in names:
            # Keras 3 takes input_dim=n on every layer, as input_shape=(n,) (Keras 2 tutorials'
            # first Dense); None gives no shape.
            dim = kwargs.pop("input_dim")
            if dim is not None:
                _check_input_dim(dim, type(self).__name__)
                if kwargs.get("input_shape") is not None:
                    raise ValueError(f"{type(self).__name__}: give input_shape or input_dim, not both")
                kwargs["input_shape"] = (dim,)
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            if all(_neutral(k, kwargs[k]) for k in unknown):
                kwargs = {k: v for k, v in kwargs.items() if k in names}
            else:
                raise _unsupported(type(self), [k for k in unknown if not _neutral(k, kwargs[k])])
        return init(self, *args, **kwargs)

    return checked


class WeightBudgetExceeded(MemoryError):
    """Building would allocate more weight memory than the active :func:`weight_budget` allows."""


# Bytes of weights that layers built in this context may still allocate (None: no limit).
# convforge.load_model sets it to what the file holds, so that a forged description
# (one edited number) cannot make a few-KB file allocate gigabytes before it is checked.
# Set while some layer's build runs (Layer._build): a built-in layer built from inside it (a layer
# of one's own building the layers it holds) gets that build's per-sample shape (_keras_build).
_building: contextvars.ContextVar[bool] = contextvars.ContextVar("convforge_building", default=False)
_weight_budget: contextvars.ContextVar[list | None] = contextvars.ContextVar("convforge_weight_budget", default=None)


@contextlib.contextmanager
def weight_budget(nbytes: int):
    """Within the block, layers may allocate at most ``nbytes`` of weights (WeightBudgetExceeded)."""
    token = _weight_budget.set([int(nbytes)])
    try:
        yield
    finally:
        _weight_budget.reset(token)


# A temporary sample (a layer's default _compute_internal_output_shape runs forward on one) may use
# this much even when the weights left are fewer: a real image needs it, and it is freed.
_SAMPLE_FLOOR = 256 * 2**20


def _charge(nbytes: int, what: str, keep: bool = True) -> None:
    """Take ``nbytes`` from the budget (``keep``) or only check a temporary of that size."""
    budget = _weight_budget.get()
    if budget is None:
        return
    allowed = budget[0] if keep else max(budget[0], _SAMPLE_FLOOR)
    if nbytes > allowed:
        raise WeightBudgetExceeded(f"{what} needs {nbytes} bytes, more than the {allowed} bytes allowed")
    if keep:
        budget[0] -= nbytes


# The __init__ calls running, innermost last: (the layer being made, the class whose __init__
# runs). A layer made by a built-in class's own code (a Conv1D's Conv2D, a Dense's ReLU
# activation, a subclass's too) is a part of it, not a layer of a model, and takes no name
# (Keras's Conv1D or Dense makes none: the next ReLU() is 're_lu'); one made by a user's class
# (the sublayers of a Layer of one's own) is named, as Keras names it.
_CONSTRUCTING: contextvars.ContextVar = contextvars.ContextVar("convforge_layer_constructing", default=())


def _constructing(cls, init):
    """Wrap ``cls.__init__`` so that :data:`_CONSTRUCTING` says whose code makes a layer."""

    @functools.wraps(init)
    def constructing(self, *args, **kwargs):
        token = _CONSTRUCTING.set(_CONSTRUCTING.get() + ((self, cls),))
        try:
            return init(self, *args, **kwargs)
        finally:
            _CONSTRUCTING.reset(token)

    return constructing


def _made_by_convforge(layer) -> bool:
    """Whether ``layer`` is being made by a built-in layer class's own ``__init__``."""
    for obj, cls in reversed(_CONSTRUCTING.get()):
        if obj is not layer:
            return cls.__module__.startswith("convforge.")
    return False


# Set while a builder makes layers it names itself (an ONNX file's, after its nodes): Layer()
# then leaves the name None instead of taking a number from the process's counters.
_NAMES_GIVEN_LATER: contextvars.ContextVar = contextvars.ContextVar("convforge_names_given_later", default=False)


@contextlib.contextmanager
def layers_named_later():
    """Within it, layers made without a name stay unnamed (None) until their builder names them."""
    token = _NAMES_GIVEN_LATER.set(True)
    try:
        yield
    finally:
        _NAMES_GIVEN_LATER.reset(token)


def snake_case(name: str) -> str:
    """Keras's default layer names: ``Conv2D`` -> ``conv2d``, ``MaxPooling2D`` -> ``max_pooling2d``."""
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def resolve_data_format(data_format) -> str | None:
    """``None``, ``'channels_last'`` or ``'channels_first'`` (checked)."""
    if data_format is None:
        return None
    if not isinstance(data_format, str) or data_format.lower() not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last', 'channels_first' or None; got {data_format!r}")
    return data_format.lower()


def display_shape(internal_shape, data_format: str = "channels_last") -> tuple:
    """The per-sample shape as the user sees it: ``(C, H, W)`` -> ``(H, W, C)`` when channels-last."""
    shape = tuple(internal_shape)
    if len(shape) == 3 and data_format != "channels_first":
        return (shape[1], shape[2], shape[0])
    return shape


def internal_axis(axis: int, rank: int, data_format: str = "channels_last") -> int:
    """The axis of the arrays inside a model (batch first, images NCHW) that ``axis`` names on
    the tensor the user sees (Keras's count: 0 the batch axis, ``rank`` axes with it): a
    channels-last image's (batch, h, w, c) axes are (0, 2, 3, 1) inside."""
    if rank == 4 and data_format != "channels_first":
        return (0, 2, 3, 1)[axis]
    return axis


def shown_axis(axis: int, rank: int, data_format: str = "channels_last") -> int:
    """The inverse of :func:`internal_axis`: the axis of the user's tensor that the arrays'
    ``axis`` is (NCHW's 1, 2, 3 are a channels-last image's 3, 1, 2)."""
    if rank == 4 and data_format != "channels_first":
        return (0, 3, 1, 2)[axis]
    return axis


def internal_shape(shown_shape, data_format: str = "channels_last") -> tuple:
    """The inverse of :func:`display_shape`: ``(H, W, C)`` -> ``(C, H, W)`` when channels-last."""
    shape = tuple(shown_shape)
    if len(shape) == 3 and data_format != "channels_first":
        return (shape[2], shape[0], shape[1])
    return shape


def _split_batch(shape, layer, method: str = "compute_output_shape") -> tuple:
    """``(batch, internal per-sample shape)`` of a Keras shape such as ``(None, 28, 28, 1)``."""
    name = f"{type(layer).__name__}.{method}"
    if not isinstance(shape, (tuple, list)) or len(shape) < 2:
        raise ValueError(
            f"{name}: input_shape must be a tuple with the batch axis first, e.g. (None, 28, 28, 1); got {shape!r}"
        )
    batch, *rest = shape
    if batch is not None and not (isinstance(batch, numbers.Integral) and not isinstance(batch, bool) and batch >= 0):
        raise ValueError(f"{name}: the batch size in input_shape must be None or an int >= 0; got {shape!r}")
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in rest):
        raise ValueError(f"{name}: input_shape needs positive ints after the batch axis; got {shape!r}")
    return batch, internal_shape(tuple(int(d) for d in rest), layer._data_format)


def _keras_build(build):
    """A built-in layer's ``build``: convforge calls it (Layer._build) with the per-sample input
    shape in the layout inside; a user calls it as Keras's, ``layer.build((None, 4))``, with the
    batch axis and channels-last images -- then the layer is built for that shape as a model
    would build it (``built`` True, its weights made once). Called by hand, the internal build
    took ``(None, 4)`` for a sample's shape and left the layer unbuilt, whose next build then
    failed ('already has a weight named 'kernel'')."""

    @functools.wraps(build)
    def checked(self, input_shape):
        if self.__dict__.get("_in_build"):
            return build(self, input_shape)
        if _building.get():  # from another layer's build, whose shapes are per-sample: built as it says
            self._build(tuple(input_shape), self.dtype)
            return None
        _, internal = _split_batch(input_shape, self, "build")
        if self.built:
            if self._internal_input_shape is not None and tuple(internal) != self._internal_input_shape:
                label = type(self).__name__ + (f" {self.name!r}" if self.name else "")
                raise ValueError(f"{label} was built for input {self._show(self._internal_input_shape)}; build got "
                                 f"{tuple(input_shape)}")
            return None
        if getattr(self, "data_format", None) == "channels_first" and not getattr(self, "_sequence_data_format", False):
            self._data_format = "channels_first"
            _, internal = _split_batch(input_shape, self, "build")
        self._build(internal, self.dtype)
        return None

    checked.keras_build = True
    return checked


def check_no_hidden_weights(layer, doing: str, model_layers: set) -> None:
    """NotImplementedError where a layer of one's own holds layers whose weights neither its own
    ``params`` list nor the model's layers (``model_layers``: their ids) have
    (``self.d1 = layers.Dense(8)``, Keras's composed layers): convforge trains, counts and saves
    a layer's ``params`` only, so ``doing`` (training, saving) would leave those weights
    untrained or lose them, with no error (Keras tracks them). A layer of the model held for
    its weights (tied weights) is fine: the model trains and saves it."""
    if type(layer).__module__.startswith("convforge."):
        return
    own = {id(p) for p in layer.params.values()}

    def held_layers(value, seen):
        """The layers in ``value``: itself, a model's, or in (nested) lists, tuples, sets and dicts."""
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, Layer):
            yield value
            if not type(value).__module__.startswith("convforge."):  # a layer of one's own: what it holds
                for item in vars(value).values():
                    yield from held_layers(item, seen)
        elif isinstance(getattr(value, "layers", None), list) and hasattr(value, "get_weights"):  # a model
            for item in value._flat_layers:
                yield from held_layers(item, seen)
        elif isinstance(value, (list, tuple, set, frozenset, dict)):
            for item in (value.values() if isinstance(value, dict) else value):
                yield from held_layers(item, seen)

    seen: set = {id(layer)}
    for attr, value in vars(layer).items():
        for item in held_layers(value, seen):
            if id(item) not in model_layers and any(id(p) not in own for p in item.params.values()):
                raise NotImplementedError(
                    f"layer {layer.name!r} ({type(layer).__name__}) holds a layer with weights in self.{attr} "
                    f"({type(item).__name__}): convforge trains, counts and saves only the weights a layer makes "
                    f"with self.add_weight (its params), so {doing} would leave that layer's weights out. Call such "
                    "layers in the model instead (a functional model, or a Sequential), or make the weights in your "
                    "layer with self.add_weight"
                )


def set_weight_options(layer, *, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                       bias_regularizer, kernel: str = "kernel", activation_in_place: bool = True) -> None:
    """Check and set the activation, bias and weight options of a layer with a kernel (the
    constructor's half of :func:`weight_options_config`); ``kernel`` names the weight
    (``depthwise`` for DepthwiseConv2D). ``activation_in_place``: the layer's output is a fresh
    array of its own, which the activation may overwrite."""
    from .. import regularizers
    from . import activations

    layer.activation = activations.get(activation)
    if layer.activation is not None and activation_in_place:
        layer.activation._inplace = True
    if not isinstance(use_bias, (bool, np.bool_)):
        raise TypeError(f"{type(layer).__name__} use_bias must be True or False; got {use_bias!r}")
    layer.use_bias = bool(use_bias)
    setattr(layer, f"{kernel}_initializer", initializers.get(kernel_initializer, f"{kernel}_initializer"))
    layer.bias_initializer = initializers.get(bias_initializer, "bias_initializer")
    setattr(layer, f"{kernel}_regularizer", regularizers.get(kernel_regularizer, f"{kernel}_regularizer"))
    layer.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer")


def weight_options_config(layer) -> dict:
    """The activation, bias and weight options of a layer with a kernel, for its ``get_config``."""
    from .. import regularizers
    from . import activations

    return {
        "activation": activations.serialize(layer.activation),
        "use_bias": layer.use_bias,
        "kernel_initializer": initializers.serialize(layer.kernel_initializer),
        "bias_initializer": initializers.serialize(layer.bias_initializer),
        "kernel_regularizer": regularizers.serialize(layer.kernel_regularizer),
        "bias_regularizer": regularizers.serialize(layer.bias_regularizer),
    }


def weight_options_from_config(config: dict) -> dict:
    """A saved layer config with its initializers and regularizers rebuilt (``from_config``'s shared step)."""
    from .. import regularizers

    config = initializers.deserialize_config(config)
    for key in ("kernel_regularizer", "bias_regularizer"):
        if key in config:
            config[key] = regularizers.get(config[key], key)
    return config


def check_input_shape(input_shape, argument: str = "input_shape") -> tuple[int, ...] | None:
    """A user-given per-sample shape such as ``(28, 28, 1)``, checked; None passes through."""
    if input_shape is None:
        return None
    if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) == 0:
        raise TypeError(f"{argument} must be a tuple of positive ints such as (28, 28, 1); got {input_shape!r}")
    out = []
    for d in input_shape:
        if d is None:  # Keras's variable size (Input(shape=(None, None, 3))): plans are made per shape here
            raise ValueError(
                f"{argument} {tuple(input_shape)!r} has a None (variable) size: convforge builds every model for "
                "fixed sizes; give the size the data has, e.g. (224, 224, 3), and build another model for another size"
            )
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral) or d < 1:
            raise ValueError(
                f"{argument} must be a tuple of positive ints such as (28, 28, 1), without the batch size; "
                f"got {tuple(input_shape)!r}"
            )
        out.append(int(d))
    return tuple(out)


class Layer:
    """Base class of every layer; subclass it to write your own in NumPy.

    A layer turns a batch into a batch (:meth:`forward`) and a gradient into
    a gradient (:meth:`backward`). Built-in and user layers mix freely in a
    :class:`~convforge.Sequential`.

    Parameters
    ----------
    name : str, optional
        Unique within a model; by default the snake-cased class name, with
        ``_1``, ``_2`` ... appended as in Keras (``conv2d``, ``conv2d_1``).
    input_shape : tuple of int, optional
        Per-sample shape of the model's input, Keras style, given to the first
        layer: ``(28, 28, 1)`` (height, width, channels) or ``(784,)``.
    trainable : bool
        ``False`` freezes the layer's weights, as in Keras: the optimizer skips them, and
        Conv2D and Dense compute no weight gradient (their backward costs dx alone).

    Writing a layer
    ---------------
    Implement :meth:`forward` and :meth:`backward`; create weights in
    :meth:`build` with :meth:`add_weight`. Inside a model image batches are
    NCHW ``(batch, channels, height, width)``; see :mod:`convforge.layers.base`.
    ``forward`` must keep what ``backward`` needs only when ``training`` is
    true (``predict`` passes ``training=False`` and expects nothing to be kept);
    ``backward`` gets ``dL/d(output)``, stores ``dL/d(weight)`` in
    ``self.grads[name]`` for every weight, and returns ``dL/d(input)``;
    it must not write into ``dy`` (in a graph one array can be the gradient
    of several layers' outputs, e.g. both inputs of an ``Add``).
    Unless :meth:`compute_output_shape` is overridden (with Keras's meaning:
    channels-last shapes, batch axis first), the output shape is found by
    running ``forward`` once on a batch of one zero sample.

    >>> import numpy as np, convforge
    >>> from convforge.layers import Layer
    >>> class Scale(Layer):
    ...     '''y = x * alpha, one learnable alpha per feature.'''
    ...     def build(self, input_shape):
    ...         self.add_weight("alpha", input_shape, initializer="ones")
    ...     def forward(self, x, training=False):
    ...         if training:
    ...             self.x = x                      # backward needs it
    ...         return x * self.params["alpha"]
    ...     def backward(self, dy):
    ...         self.grads["alpha"] = (dy * self.x).sum(axis=0)
    ...         return dy * self.params["alpha"]
    >>> model = convforge.Sequential([
    ...     convforge.layers.Dense(8, activation="relu", input_shape=(4,)),
    ...     Scale(),
    ...     convforge.layers.Dense(3, activation="softmax"),
    ... ])
    >>> model.count_params()
    75

    Check a new layer's ``backward`` with
    :func:`convforge.gradcheck.check_model_gradients`. To save a model that
    uses it, give the layer a ``get_config()`` returning its constructor
    arguments (merged with ``super().get_config()``).

    Training-mode arrays
    --------------------
    To keep a training step free of large allocations, the built-in layers
    write training-mode results (``forward(x, training=True)``, ``backward``
    and ``grads``) into arrays they reuse at their next training-mode call:
    such an array is valid until then. Copy it to keep it. Inference
    (``training=False``: ``predict``, ``evaluate``, ``activations``) always
    returns new arrays.
    """

    # Layers that take images (batch, height, width, channels) at the API; a model whose
    # first such layer receives (batch, height, width) adds the channel axis itself.
    _expects_images = False
    # Attributes holding what forward keeps for backward (cleared after training).
    _cache_attrs: tuple[str, ...] = ()
    # Merge layers (Add, Concatenate, ...) take a list of tensors: forward gets a list of
    # arrays, backward returns one gradient per input.
    _takes_list = False
    # Weights whose shapes are the user's axes, whatever the layout inside (Normalization's
    # statistics): a Sequential may build such a layer again for another internal shape of the
    # same shown one (adapted on channels-first data before the model said it was), and the
    # layer checks the weights against it (_compute_internal_output_shape).
    _weights_in_shown_axes = False
    # The built-in class whose forward a subclass that defines call() would run instead (__init_subclass__).
    _ignored_call: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY.setdefault(cls.__name__, []).append(cls)
        if "__init__" in cls.__dict__:
            cls.__init__ = _constructing(cls, _check_arguments(cls, cls.__dict__["__init__"]))
        # Built-in layers' builds, and the builds of subclasses of them (whose super().build is one):
        # called by hand, they take Keras's shape (_keras_build).
        if "build" in cls.__dict__ and (cls.__module__.startswith("convforge.") or any(
                getattr(base.__dict__.get("build"), "keras_build", False) for base in cls.__mro__[1:])):
            cls.build = _keras_build(cls.__dict__["build"])
        # Keras's call() over a built-in forward: refused when such a layer is made (Layer.__init__).
        cls._ignored_call = ignored_keras_call(cls, "forward", Layer)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name[0] != "_" and name not in _PER_CALL_ATTRIBUTES and _call_copies:
            _pass_to_call_copies(self, name, value)
        _note_change()  # after the change: see WeightDict

    def __delattr__(self, name):
        object.__delattr__(self, name)
        _note_change()

    def __init__(self, *, name=None, input_shape=None, trainable=True):
        if type(self)._ignored_call is not None:
            raise NotImplementedError(
                f"{type(self).__name__} overrides call(), Keras's method, of {type(self)._ignored_call}: convforge "
                f"runs {type(self)._ignored_call}'s forward and would ignore it. convforge has no automatic "
                "differentiation: implement forward(x, training=False) and backward(dy) in NumPy instead (images "
                "arrive NCHW; see help(convforge.layers.Layer))"
            )
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"name must be a non-empty string without '/'; got {name!r}")
        if not isinstance(trainable, (bool, np.bool_)):
            raise TypeError(f"trainable must be True or False; got {trainable!r}")
        if name is None and not _NAMES_GIVEN_LATER.get() and not _made_by_convforge(self):
            # Named when made, as Keras names a layer (Dense(4) then Dense(5): 'dense', 'dense_1',
            # in whatever order a model then takes them), from the process's counters.
            from .symbolic import unique_name

            name = unique_name(snake_case(type(self).__name__))
        self.name: str | None = name
        self.trainable = bool(trainable)
        self.input_shape_arg = check_input_shape(input_shape)
        #: float32 or float64; set by the model before build.
        self.dtype = np.dtype(np.float32)
        #: Whether backward must return dL/dx. The model sets it to False on the first
        #: layer with weights (nothing before it needs a gradient), saving its dx work.
        self.input_grad_needed = True
        #: Weights by name (insertion order is the get_weights() order) and their gradients.
        self.params: dict[str, np.ndarray] = WeightDict()
        self.grads: dict[str, np.ndarray] = {}
        self._non_trainable: set[str] = set()
        #: Penalties on weights (kernel_regularizer=...), by weight name.
        self.regularizers: dict = {}
        self.built = False
        #: Per-sample internal input/output shapes, known once built.
        self._internal_input_shape: tuple | None = None
        self._internal_output_shape: tuple | None = None
        #: How shapes are shown to the user (the model sets it).
        self._data_format = "channels_last"
        #: Arrays reused from one training step to the next (see "Training-mode arrays").
        self._buffers = Buffers()
        #: The calls of this layer on symbolic tensors (convforge.layers.symbolic.Node), in order.
        self._inbound_nodes: list = []

    # ------------------------------------------------------------------ to override

    def build(self, input_shape: tuple) -> None:
        """Create the weights, knowing the per-sample input shape (internal layout)."""

    def compute_output_shape(self, input_shape) -> tuple:
        """The output shape for an input shape, as Keras: channels-last, batch axis first.

        >>> from convforge import layers
        >>> layers.Conv2D(32, 3).compute_output_shape((None, 28, 28, 1))
        (None, 26, 26, 32)

        A merge layer takes a list of shapes. A layer whose output shape can only be
        found by running it (a custom layer without this method) is built first, as in Keras.
        Override it in a custom layer with the same meaning (Keras's), or override nothing.
        """
        if isinstance(input_shape, list) and input_shape and all(isinstance(s, (tuple, list)) for s in input_shape):
            split = [_split_batch(s, self) for s in input_shape]
            batch, internal = split[0][0], [shape for _, shape in split]
        else:
            batch, internal = _split_batch(input_shape, self)
        if not self.built and type(self)._compute_internal_output_shape is Layer._compute_internal_output_shape:
            self._build(internal, self.dtype)
        out = self._compute_internal_output_shape(internal)
        return (batch, *display_shape(out, self._data_format))

    def _compute_internal_output_shape(self, input_shape: tuple) -> tuple:
        """Per-sample output shape for a per-sample input shape, both in the internal layout.

        convforge's layers override this one. A custom layer may instead override Keras's
        :meth:`compute_output_shape` (channels-last, batch axis first); then it is used.
        """
        if type(self).compute_output_shape is not Layer.compute_output_shape:
            keras_shape = self.compute_output_shape((None, *display_shape(input_shape, self._data_format)))
            return internal_shape(tuple(keras_shape)[1:], self._data_format)
        _charge(math.prod(input_shape) * self.dtype.itemsize, f"a sample of shape {tuple(input_shape)}", keep=False)
        x = np.zeros((1, *input_shape), dtype=self.dtype)
        y = self.forward(x, training=False)
        if not isinstance(y, np.ndarray) or y.ndim < 1 or y.shape[0] != 1:
            raise TypeError(
                f"{type(self).__name__}.forward must return an ndarray with the batch axis first; "
                f"for a batch of one it returned {type(y).__name__} {getattr(y, 'shape', '')}"
            )
        return tuple(y.shape[1:])

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Output batch for the input batch ``x``; keep what backward needs if ``training``."""
        if callable(getattr(type(self), "call", None)):
            raise NotImplementedError(
                f"{type(self).__name__} defines call(), Keras's method: convforge has no automatic "
                "differentiation, so a layer of your own implements forward(x, training=False) and backward(dy) "
                "in NumPy instead (images arrive NCHW; see help(convforge.layers.Layer))"
            )
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, training)")

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        """``dL/dx`` for ``dy = dL/dy``; also fill ``self.grads`` for every weight."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward(dy)")

    def get_config(self) -> dict:
        """Constructor arguments, JSON-serialisable (for saving and :meth:`from_config`)."""
        config = {"name": self.name, "trainable": self.trainable}
        if self.input_shape_arg is not None:
            config["input_shape"] = list(self.input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        return cls(**config)

    # ------------------------------------------------------------------ functional API

    def __call__(self, inputs, *args, **kwargs):
        """Apply the layer to a symbolic tensor (Keras's functional API): ``y = Dense(10)(x)``.

        ``inputs`` is a tensor from ``convforge.Input(...)`` or another layer's output (a list of
        them for merge layers). The layer is built for its shape on the first call; calling it
        again shares its weights (the gradients of all calls add up). Returns the output
        tensor; see :mod:`convforge.layers.symbolic`.

        On NumPy arrays (a batch, or a list of them for merge layers), Keras's eager call:
        ``layer(x)`` or ``layer(x, training=True)`` returns the output array (images
        channels-last), the layer built for that shape if it was not. ``training`` not given is the
        layer's own default, as in Keras: augmentation layers augment, Dropout and
        BatchNormalization run as at inference. It runs a one-layer model each time (~0.4 ms of
        overhead): for many batches, build a model and ``predict``.
        """
        from .symbolic import call_layer

        return call_layer(self, inputs, args, kwargs)

    def _node_tensors(self, attribute: str):
        nodes = getattr(self, "_inbound_nodes", [])
        if not nodes:
            raise ValueError(
                # An unnamed layer (named when a model takes it) is called by its class.
                f"The layer {self.name or type(self).__name__} has never been called and thus has no defined "
                f"{attribute}."
            )
        values = getattr(nodes[0], "inputs" if attribute == "input" else "outputs")
        return values[0] if len(values) == 1 else list(values)

    @property
    def input(self):
        """The input tensor of the layer's first call (a list for merge layers), as Keras."""
        return self._node_tensors("input")

    @property
    def output(self):
        """The output tensor of the layer's first call, as Keras (``Model(m.inputs, [l.output ...])``)."""
        return self._node_tensors("output")

    def random_generators(self) -> list:
        """The NumPy generators this layer draws from besides convforge's own (an augmentation
        layer given ``seed=``): what :func:`convforge.gradcheck.check_model_gradients` replays so
        that every evaluation sees the same draws. A layer of your own with one returns it."""
        return []

    # ------------------------------------------------------------------ weights

    def add_weight(self, *args, shape=None, initializer=None, trainable: bool = True, regularizer=None, name=None,
                   **keras_options) -> np.ndarray:
        """Create the weight ``self.params[name]`` in the layer's dtype and return it (the array
        itself: keep it, ``self.w = self.add_weight(...)``, and read it in ``forward``; a change of
        the model's dtype gives the attribute the converted array too). ``build`` gets the internal
        per-sample shape: an image's is ``(channels, height, width)``, so a weight per channel of
        an image is ``input_shape[0]``, where Keras code reads ``input_shape[-1]``.

        Keras 3's form, ``add_weight(shape=(3,), initializer="ones", name="w")`` (or the shape
        first: ``add_weight((3,))``; a weight without a name is ``variable``, ``variable_1``, ...,
        as Keras names it), and convforge's (Keras 2's), ``add_weight("w", (3,), "ones")``, both work.
        ``initializer`` is a name (``'zeros'``, ``'he_normal'``, ...; default ``'glorot_uniform'``),
        an initialiser object or a callable ``f(shape, dtype)``; ``regularizer`` a
        :mod:`convforge.regularizers` penalty (added to the training loss). Keras's ``dtype``,
        ``autocast``, ``constraint`` and ``aggregation`` are taken at their defaults only (the
        model's dtype is the weights' dtype).
        """
        name, shape, initializer, trainable, regularizer = self._add_weight_arguments(
            args, shape, initializer, trainable, regularizer, name, keras_options)
        if initializer is None:
            initializer = "glorot_uniform"
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"weight name must be a non-empty string without '/'; got {name!r}")
        if name in self.params:
            raise ValueError(f"layer {self.name!r} already has a weight named {name!r}")
        shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        nbytes = math.prod(shape) * self.dtype.itemsize
        _charge(nbytes, f"weight {name!r} of layer {self.name!r} {shape}")
        init = initializers.get(initializer, f"initializer of weight {name!r}")
        too_large = (
            f"layer {self.name!r} ({type(self).__name__}): weight {name!r} of shape {shape} would take "
            f"{nbytes / 2**30:.3g} GiB; is the model's input_shape (or the layer size) what you meant?"
        )
        if nbytes > 2**50 or any(d > 2**62 for d in shape):  # beyond any machine, and NumPy's index range
            raise ValueError(too_large)
        try:
            value = init(shape, self.dtype)
        except MemoryError as err:
            raise MemoryError(too_large) from err
        value = np.ascontiguousarray(value, dtype=self.dtype).reshape(shape)  # (a 0-d weight stays 0-d)
        self.params[name] = value
        if not trainable:
            self._non_trainable.add(name)
        if regularizer is not None:
            from .. import regularizers

            self.regularizers[name] = regularizers.get(regularizer, f"regularizer of weight {name!r}")
        return value

    def _add_weight_arguments(self, args, shape, initializer, trainable, regularizer, name, keras_options):
        """add_weight's arguments in either form: ``(name, shape, initializer, trainable, regularizer)``
        (convforge's, Keras 2's) or Keras 3's ``(shape, initializer)`` then keywords."""
        if args and isinstance(args[0], str):  # convforge's order
            if len(args) > 5:
                raise TypeError(f"add_weight takes at most 5 positional arguments (name, shape, initializer, "
                                f"trainable, regularizer); got {len(args)}")
            given = dict(zip(("name", "shape", "initializer", "trainable", "regularizer"), args))
        else:  # Keras 3's order
            if len(args) > 2:
                raise TypeError("add_weight takes the shape and the initializer as positional arguments (Keras 3's "
                                f"order), the rest by keyword; got {len(args)} positional arguments")
            given = dict(zip(("shape", "initializer"), args))
        for key, value in (("name", name), ("shape", shape), ("initializer", initializer)):
            if key in given and value is not None:
                raise TypeError(f"add_weight got {key} both by position and by keyword")
        name = given.get("name", name)
        shape = given.get("shape", shape)
        initializer = given.get("initializer", initializer)
        trainable = given.get("trainable", trainable)
        regularizer = given.get("regularizer", regularizer)
        for key, value in keras_options.items():
            neutral = {"dtype": (None, self.dtype.name, self.dtype), "autocast": (True,), "constraint": (None,),
                       "aggregation": ("none", "mean", "sum", "only_first_replica"),
                       "overwrite_with_gradient": (False,)}.get(key)
            if neutral is None:
                raise TypeError(f"add_weight got an unexpected argument {key!r}; it takes shape, initializer, "
                                "trainable, regularizer and name (and Keras's dtype, autocast, constraint, aggregation "
                                "at their defaults)")
            if not any(value is v or (type(value) is type(v) and value == v) for v in neutral) and not (
                    key == "dtype" and _same_dtype(value, self.dtype)):
                why = {"dtype": f"a weight takes the model's dtype ({self.dtype.name}; Sequential(..., dtype=...))",
                       "constraint": "constraints are not applied (none is: give None)"}.get(key, f"only {neutral[0]!r}")
                raise TypeError(f"convforge does not support add_weight's {key}={value!r}: {why}")
        if shape is None:
            raise TypeError("add_weight needs the weight's shape, e.g. add_weight(shape=(units,), initializer='zeros')")
        if name is None:  # Keras 3's names of unnamed weights
            name = next(n for n in ("variable", *(f"variable_{k}" for k in range(1, len(self.params) + 2)))
                        if n not in self.params)
        if not isinstance(trainable, (bool, np.bool_)):
            raise TypeError(f"add_weight trainable must be True or False; got {trainable!r}")
        return name, shape, initializer, trainable, regularizer

    @property
    def losses(self) -> list[float]:
        """Keras's ``layer.losses``: the penalty of each regularized trained weight, in order (the
        terms the training loss adds). convforge has no ``add_loss``."""
        names = self.trainable_param_names()
        return [float(reg.penalty(self.params[n])) for n, reg in self.regularizers.items() if n in names]

    def add_loss(self, loss) -> None:
        """Keras's ``add_loss``, refused: a term added in ``forward`` needs its gradient, which
        convforge (no automatic differentiation) cannot find."""
        raise NotImplementedError(
            f"layer {self.name!r} ({type(self).__name__}): convforge does not support add_loss: a loss term "
            "needs its gradient, which convforge cannot derive; add the term's gradient to dy in your layer's "
            "backward (and its value to the model's loss with a custom convforge.losses.Loss), or use "
            "kernel_regularizer"
        )

    def add_metric(self, *args, **kwargs) -> None:
        """Keras 2's ``add_metric``, refused as Keras 3 has none."""
        raise NotImplementedError(
            f"layer {self.name!r} ({type(self).__name__}): convforge does not support add_metric (Keras 3 has none "
            "either): pass the metric to model.compile(metrics=[...]), or subclass convforge.metrics.Metric"
        )

    def regularization_penalty(self) -> float:
        """Sum of the weight penalties (0.0 without regularizers); trained weights only."""
        names = self.trainable_param_names()
        return sum(reg.penalty(self.params[n]) for n, reg in self.regularizers.items() if n in names)

    def _add_regularization_gradients(self) -> None:
        """Add each penalty's gradient to ``self.grads`` (after :meth:`backward`)."""
        for n, reg in self.regularizers.items():
            if n in self.grads and n in self.trainable_param_names():
                reg.add_gradient(self.params[n], self.grads[n])

    @property
    def kernel(self) -> np.ndarray:
        """The ``kernel`` weight (Keras's ``layer.kernel``), the array itself."""
        return self._named_weight("kernel")

    @property
    def bias(self) -> np.ndarray | None:
        """The ``bias`` weight, or None for ``use_bias=False`` (Keras's ``layer.bias``)."""
        if "bias" not in self.params and "kernel" in self.params:
            return None
        return self._named_weight("bias")

    def _named_weight(self, name):
        if not self.built:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) is not built yet: it has no {name}")
        if name not in self.params:
            raise AttributeError(f"layer {self.name!r} ({type(self).__name__}) has no weight {name!r}; it has {list(self.params)}")
        return self.params[name]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        """The weights the optimizer updates (none when ``trainable`` is False)."""
        return [self.params[n] for n in self.trainable_param_names()]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        names = set(self.trainable_param_names())
        return [p for n, p in self.params.items() if n not in names]

    @property
    def weights(self) -> list[np.ndarray]:
        """The weight arrays themselves (not copies), in creation order."""
        return list(self.params.values())

    def trainable_param_names(self) -> list[str]:
        """Names of the weights the optimizer updates."""
        if not self.trainable:
            return []
        return [n for n in self.params if n not in self._non_trainable]

    # Layers whose stored layout differs from Keras's give (to_keras, from_keras) per weight name;
    # get_weights/set_weights then speak Keras's layout while params stay in the kernels' layout.
    _keras_layouts: dict = {}

    #: True for layers without weights that pass each feature through on its own (activations,
    #: Dropout, noise): the order a Flatten gave the features reaches the Dense after them.
    _keeps_feature_order = False
    #: How the layer reads a Flatten's features such that no weight order can make it compute as
    #: Keras's (the models warn: core.warn_flatten_order), or None.
    _loses_flatten_order: str | None = None

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights, in creation order (e.g. ``[kernel, bias]``), in Keras's layouts
        (a Conv2D kernel as ``(kh, kw, in, filters)``); ``layer.params`` holds them as stored."""
        out = []
        for name, p in self.params.items():
            layout = self._keras_layouts.get(name)
            out.append(np.ascontiguousarray(layout[0](p)) if layout else p.copy())
        return out

    def set_weights(self, weights) -> None:
        """Replace the weights, in :meth:`get_weights` order and layouts (Keras's); shapes must match.
        Every array is checked (shape, real numbers, finite) before any weight changes."""
        self._assign_weights(weights, keras_layouts=True)

    def _assign_weights(self, weights, keras_layouts: bool) -> None:
        """``set_weights``, from Keras's layouts or (``keras_layouts=False``, for importers that
        hold the kernels' own layout, as ONNX does) from the stored ones."""
        self._store_weights(self._checked_weights(weights, keras_layouts))

    def _checked_weights(self, weights, keras_layouts: bool = True) -> list[np.ndarray]:
        """``weights`` as the stored arrays will hold them (layouts and dtypes), each checked; no
        weight changes here (a model's set_weights checks every layer's before storing any)."""
        weights = list(weights)
        if len(weights) != len(self.params):
            names = list(self.params)
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}) has {len(names)} weights {names}; "
                f"set_weights got {len(weights)} arrays"
            )
        stored = []
        for (pname, current), new in zip(self.params.items(), weights):
            new = np.asarray(new)
            layout = self._keras_layouts.get(pname) if keras_layouts else None
            expected = layout[0](current).shape if layout else current.shape
            if new.shape != expected:
                raise ValueError(
                    f"layer {self.name!r} ({type(self).__name__}) weight {pname!r} has shape {expected}"
                    f"{' (Keras layout)' if layout else ''}; set_weights got shape {new.shape}"
                )
            what = f"layer {self.name!r} ({type(self).__name__}) weight {pname!r}"
            if new.dtype.kind not in "biuf":
                raise TypeError(f"{what} takes real numbers; set_weights got an array of dtype {new.dtype}")
            new = np.asarray(layout[1](new) if layout else new, dtype=current.dtype)
            if not np.isfinite(new).all():
                raise ValueError(f"{what}: set_weights got NaN or infinite values (the model files refuse them too)")
            stored.append(new)
        return stored

    def _store_weights(self, stored: list[np.ndarray]) -> None:
        for current, new in zip(self.params.values(), stored):
            # In place: the arrays stay the same objects (an optimizer may hold them).
            current[...] = new

    def count_params(self) -> int:
        """Number of scalars in all weights."""
        return int(sum(p.size for p in self.params.values()))

    def count_trainable_params(self) -> int:
        return int(sum(self.params[n].size for n in self.trainable_param_names()))

    @property
    def input_shape(self):
        """The input shape as Keras 2 reported it: channels-last, ``None`` for the batch
        (``(None, 28, 28, 1)``); a list of shapes for a merge layer. Known once the layer is built.
        (Keras 3 dropped it for ``layer.input.shape``, which convforge has too.)"""
        return self._shown_shape(self._internal_input_shape, "input")

    @property
    def output_shape(self):
        """The output shape as Keras 2 reported it: channels-last, ``None`` for the batch
        (``(None, 26, 26, 32)``). Known once the layer is built."""
        return self._shown_shape(self._internal_output_shape, "output")

    def _shown_shape(self, shape, which: str):
        if shape is None:
            raise AttributeError(
                f"layer {self.name or type(self).__name__!r} has no {which} shape yet: it is known once the layer is built "
                "(in a model, or called on convforge.Input(...))"
            )
        if isinstance(shape, list):
            return [(None, *display_shape(s, self._data_format)) for s in shape]
        return (None, *display_shape(shape, self._data_format))

    # ------------------------------------------------------------------ used by the model

    def _build(self, input_shape: tuple, dtype) -> tuple:
        """Build for an internal per-sample input shape; return the output shape."""
        self.dtype = np.dtype(dtype)
        input_shape = tuple(int(d) for d in input_shape)
        activation = getattr(self, "activation", None)
        if isinstance(activation, Layer):
            # activation='softmax' counts its axis (-1) on the tensor the user sees, as this layer does.
            activation._data_format = self._data_format
        if not self.built:
            self._in_build = True  # build() of a built-in layer: the per-sample shape (_keras_build)
            building = _building.set(True)
            try:
                self.build(input_shape)
            finally:
                _building.reset(building)
                self._in_build = False
            self.built = True
        self._internal_input_shape = input_shape
        self._internal_output_shape = tuple(int(d) for d in self._compute_internal_output_shape(input_shape))
        return self._internal_output_shape

    def _astype(self, dtype) -> None:
        dtype = np.dtype(dtype)
        self.dtype = dtype
        replaced = {}
        for pname, p in self.params.items():
            if p.dtype != dtype:
                self.params[pname] = replaced[id(p)] = p.astype(dtype)
        if replaced:  # a layer of one's own may keep its weights (self.w = self.add_weight(...)): follow them
            for attr, value in list(vars(self).items()):
                if isinstance(value, np.ndarray) and id(value) in replaced and attr not in ("params", "grads"):
                    setattr(self, attr, replaced[id(value)])
        self.grads.clear()
        self._clear_cache()

    def _clear_cache(self) -> None:
        for attr in self._cache_attrs:
            setattr(self, attr, None)
        self._buffers.clear()

    def _ends_in_softmax(self) -> bool:
        """True if the output is a softmax that the model may fuse into cross-entropy."""
        return False

    def _show(self, internal_shape) -> str:
        """A shape for messages, as the user sees it: ``(batch, 26, 26, 64)``."""
        return str(("batch", *display_shape(internal_shape, self._data_format))).replace("'", "")

    def _missing_cache(self) -> RuntimeError:
        return RuntimeError(
            f"layer {self.name!r} ({type(self).__name__}): backward() needs a forward(x, training=True) "
            "first (predict and evaluate run with training=False and keep nothing for backward)"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


def _take_rows(order, weight):
    return weight[order]


#: The calls of a FeatureOrdered layer disagree on the order of the features a Flatten gave them.
_DISAGREE = object()


def same_flatten_orders(orders: list) -> bool:
    """Whether ``orders`` (each None, the stored order, or a permutation) are all one."""
    return all((o is None) == (orders[0] is None) and (o is None or np.array_equal(o, orders[0])) for o in orders)


class FeatureOrdered:
    """A layer whose weights index the features a Flatten of images gave it, along their first
    axis: a Dense's kernel rows, a BatchNormalization's, LayerNormalization's or PReLU's vectors
    on flattened maps. convforge's Flatten orders the values (channels, height, width) and
    Keras's (height, width, channels), so the models tell each such layer the order it sits
    after (:func:`convforge.layers.core.keras_flatten_order`), and its get_weights/set_weights (and .keras files)
    speak Keras's order while the stored weights follow convforge's."""

    #: The weights whose first axis is the features (taken where their length is the features').
    _feature_weights: tuple = ()
    #: The layouts of the layer's other weights (Layer._keras_layouts' role).
    _other_keras_layouts: dict = {}

    def _take_flatten_order(self, model, orders: list) -> None:
        """``model`` found, before each of its calls of this layer that tells (not one reading the
        model's input), a Flatten of images (an order, from :func:`keras_flatten_order`) or none
        (None). While every such call in every live model holding the layer agrees,
        get_weights/set_weights speak Keras's order after such a Flatten; where two disagree
        (a Dense after a Flatten in one model and after another Dense in another) no order is
        right for both, so they keep the stored one, with a warning."""
        held = self.__dict__.setdefault("_flatten_orders", {})  # id(model) -> (weak model, its orders)
        held[id(model)] = (weakref.ref(model), list(orders))
        if self._flatten_order() is _DISAGREE:
            warnings.warn(
                f"layer {self.name!r} ({type(self).__name__}) follows a Flatten of images in one call and not in "
                "another (or after another order): convforge's Flatten orders (channels, height, width), Keras's "
                "(height, width, channels), so its weights cannot be Keras's for both; get_weights()/set_weights() "
                "keep the stored order", stacklevel=user_stacklevel())

    def _forget_flatten_order(self, model) -> None:
        """``model`` holds this layer no more (a Sequential's ``pop``)."""
        self.__dict__.get("_flatten_orders", {}).pop(id(model), None)

    def _flatten_order(self):
        """The order the live models holding the layer agree on (None: none, the stored one is
        Keras's), or ``_DISAGREE``."""
        held = self.__dict__.get("_flatten_orders")
        if not held:
            return None
        for key in [key for key, (ref, _) in held.items() if ref() is None]:  # models gone
            del held[key]
        live = [o for _, orders in held.values() for o in orders]
        if not live:
            return None
        return live[0] if same_flatten_orders(live) else _DISAGREE

    @property
    def _keras_layouts(self) -> dict:
        """Keras's order after a Flatten of images, worked out when asked from the models that
        hold the layer now (one that went away or popped it no longer counts)."""
        order = self._flatten_order()
        if order is None or order is _DISAGREE:
            return self._other_keras_layouts
        layouts = dict(self._other_keras_layouts)
        for name in self._feature_weights:
            value = self.params.get(name)
            if value is not None and value.shape[:1] == order.shape:
                layouts[name] = (functools.partial(_take_rows, order), functools.partial(_take_rows, np.argsort(order)))
        return layouts

    def __getstate__(self) -> dict:
        # The models holding the layer are not part of it (weak references do not pickle); the
        # next model built on it tells it the order again.
        state = dict(self.__dict__)
        state.pop("_flatten_orders", None)
        return state


# Layer's own __init__ checked as a subclass's is: a layer that has none of its own (Identity, a
# user's subclass, one whose __init__ passes **kwargs up) takes input_dim= and Keras's neutral
# arguments, and names an unknown one, as the built-in layers do.
Layer.__init__ = _check_arguments(Layer, Layer.__init__)
