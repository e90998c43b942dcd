"""Symbolic tensors and nodes: what calling a layer on ``convforge.Input(...)`` records.

Keras's functional API in one page. ``x = convforge.Input(shape=(28, 28, 1))``
is a :class:`KerasTensor`: a shape and a dtype, no data. Calling a layer on it,
``y = layers.Conv2D(8, 3)(x)``, builds the layer for that shape (or checks that
a built layer takes it), records a :class:`Node` (this layer, these input
tensors, these output tensors) and returns the output tensor.
``convforge.Model(inputs, outputs)`` then walks the nodes back from the outputs
(see :mod:`convforge.models.functional`).

Shapes: ``tensor.shape`` is what Keras shows -- channels-last, ``None`` for the
batch: ``(None, 26, 26, 8)``. Inside, a 3-D per-sample shape is an image and is
kept NCHW (``(8, 26, 26)``) like everything else in a model (see
:mod:`convforge.layers.base`); merge layers' ``axis`` is mapped accordingly.
"""

from __future__ import annotations

import contextvars
import itertools

import numpy as np

from .base import display_shape

__all__ = ["KerasTensor", "Node", "call_layer"]

_TENSOR_IDS = itertools.count()
_NODE_IDS = itertools.count()
# Names handed out to unnamed layers called on symbolic tensors: unique in the process, as
# Keras does (conv2d, conv2d_1, ...), because the model they will end up in is not known yet.
class _NameRegistry(set):
    """A set of names handed out that remembers, per base name, the suffix it last handed out: a
    process naming n layers of one kind did n^2 / 2 set lookups (re_lu_1, re_lu_2, ... each
    time), and an ONNX file of 50,000 Relu nodes did not load in 400 s (onnxruntime: 3.5 s)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.next_suffix: dict[str, int] = {}

    def clear(self) -> None:
        super().clear()
        self.next_suffix.clear()


_USED_NAMES: _NameRegistry = _NameRegistry()
# An eager call's one-layer model names its input and its copy of the layer apart from the
# process's registry (which would grow at every call): a registry of its own, per thread.
_EAGER_NAMES: contextvars.ContextVar = contextvars.ContextVar("convforge_eager_names", default=None)


def _names() -> set:
    scoped = _EAGER_NAMES.get()
    return _USED_NAMES if scoped is None else scoped


class KerasTensor:
    """A symbolic tensor: the shape, dtype and origin of a value in a graph under construction.

    Attributes
    ----------
    shape : tuple
        Keras's view: ``(None, height, width, channels)`` for images, ``(None, features)``.
    dtype : str
        ``'float32'`` or ``'float64'``.
    name : str
    """

    def __init__(self, internal_shape, dtype, node=None, index: int = 0, name: str | None = None):
        self._internal = tuple(int(d) for d in internal_shape)
        self._dtype = np.dtype(dtype)
        #: The Node that produced this tensor (an InputLayer's for model inputs).
        self._node = node
        #: Which of the node's outputs this is.
        self._index = index
        self.name = name or f"keras_tensor_{next(_TENSOR_IDS)}"
        #: The model whose call in a graph returned this tensor (``base(x)``): its layers are this
        #: graph's own, but Keras names an output made so after the model, not its last layer.
        self._from_model: str | None = None
        #: How an image is shown: channels-last, but in a Sequential that reads channels-first
        #: images (set by its graph), whose ``layer.output.shape`` is Keras's (batch, c, h, w).
        self._format = "channels_last"

    @property
    def shape(self) -> tuple:
        return (None, *display_shape(self._internal, self._format))

    @property
    def ndim(self) -> int:
        return len(self._internal) + 1

    @property
    def dtype(self) -> str:
        return self._dtype.name

    @property
    def _keras_history(self):
        """``(layer, node_index, tensor_index)``, Keras's spelling of where a tensor comes from."""
        node = self._node
        return node.layer, node.call_index, self._index

    def _arithmetic(self, *_):
        raise TypeError(
            "arithmetic on symbolic tensors (Keras's operators and keras.ops on KerasTensors) is not supported by "
            "convforge: use the merge layers (layers.Add()([a, b]), Subtract, Multiply, Average) and "
            "layers.Rescaling for a constant factor or offset"
        )

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _arithmetic
    __truediv__ = __rtruediv__ = __matmul__ = __rmatmul__ = __pow__ = __neg__ = _arithmetic

    def __getitem__(self, index):
        # Keras's x[:, :2] on a KerasTensor (the Functional API guide's slicing): Python's bare
        # "'KerasTensor' object is not subscriptable" before.
        raise TypeError(
            f"slicing a symbolic tensor ({self.name}[{index!r}]) is not supported by convforge: crop steps or "
            "pixels with layers.Cropping1D / Cropping2D, choose channels with a 1x1 Conv or Dense layer, or slice "
            "in a layers.Lambda (no gradient through it)"
        )

    def __iter__(self):  # without it, Python would try __getitem__(0), (1), ... to unpack the tensor
        raise TypeError(f"a symbolic tensor ({self.name}) cannot be unpacked or iterated: it holds no data")

    def __array__(self, *args, **kwargs):
        raise TypeError(
            f"{self!r} is symbolic (it holds no data): build a model with convforge.Model(inputs, outputs) and "
            "call model.predict(x) to get values"
        )

    def __repr__(self) -> str:
        shape = "(" + ", ".join("None" if d is None else str(d) for d in self.shape) + ")"
        return f"<KerasTensor shape={shape}, dtype={self.dtype}, name={self.name}>"


class Node:
    """One call of a layer in a graph: ``outputs = layer(inputs)``.

    ``many`` is True when the layer was called on a list (merge layers), so its
    ``forward`` takes a list of arrays and its ``backward`` returns one.
    """

    def __init__(self, layer, inputs: list, many: bool):
        self.layer = layer
        self.inputs = list(inputs)
        self.many = many
        self.call_index = len(layer._inbound_nodes)
        #: Creation order over all nodes: a topological order of any graph (a call needs its inputs).
        self.seq = next(_NODE_IDS)
        self.outputs: list[KerasTensor] = []
        #: Made by a model called with training=False (Keras's ``base(x, training=False)``): run in
        #: inference mode for good, as Keras's guide describes (Keras 3's fit overrides it; see
        #: models/functional.py); models refuse to train it otherwise.
        self.inference = False
        #: The model whose call in a graph made this node (``base(x)``), else None; the model made of
        #: this graph sets its ``trainable`` with its own.
        self.nested_model = None
        #: That call of the model (a :class:`NestedCall`: the tensors it took and returned), else None.
        self.nested_call = None
        layer._inbound_nodes.append(self)

    @property
    def nested_in(self) -> str | None:
        """The name of the model whose call made this node, else None."""
        return None if self.nested_model is None else self.nested_model.name

    def __repr__(self) -> str:
        return f"<Node {self.layer.name}[{self.call_index}]>"


class NestedCall:
    """One call of a model inside a graph (``base(x)``): the model, the graph's tensors it was
    called on and those it returned. Its layers' nodes point here, so that the graph can list the
    model as one entry (``model.layers``, ``summary()``) as Keras does."""

    def __init__(self, model, inputs: list, outputs: list, inference: bool = False):
        self.model = model
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        #: Called with training=False (Keras's ``base(x, training=False)``).
        self.inference = inference
        #: The nodes the call made, in call order (a graph holding only some of them, a model cut
        #: from inside the call, lists their layers one by one).
        self.nodes: list = []


def unique_name(base: str, taken: set | None = None) -> str:
    """``base``, or ``base_1``, ``base_2``, ... whichever is not in ``taken`` (default: the names this
    process has handed out), and add it there."""
    taken = _names() if taken is None else taken
    suffixes = getattr(taken, "next_suffix", None)
    i = suffixes.get(base, 0) if suffixes is not None else 0
    name = base if i == 0 else f"{base}_{i}"
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    if suffixes is not None:
        suffixes[base] = i
    taken.add(name)
    return name


def common_dtype(tensors, what: str) -> np.dtype:
    """The one dtype of ``tensors``; TypeError naming ``what`` if they mix float32 and float64."""
    dtypes = {t._dtype for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"{what} mix dtypes {sorted(d.name for d in dtypes)}")
    return dtypes.pop()


def reserve_name(name: str) -> None:
    """Mark ``name`` as taken (a layer named by a Sequential model), so automatic names avoid it."""
    _names().add(name)


def record_chain(layers, start: KerasTensor) -> list:
    """Nodes for ``layers`` applied one after another to ``start``, for layers a model has already built
    (a Sequential stack): records what was built, checks nothing. Returns the nodes."""
    nodes, t = [], start
    for layer in layers:
        node = Node(layer, [t], many=False)
        t = KerasTensor(layer._internal_output_shape, t._dtype, node, 0, name=f"{layer.name}/output_{node.call_index}")
        node.outputs.append(t)
        nodes.append(node)
    return nodes


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"a NumPy array of shape {value.shape}"
    return f"{type(value).__name__} {value!r}"[:120]


def call_layer(layer, inputs, args: tuple, kwargs: dict):
    """``layer(inputs)`` on symbolic tensors (see the module docstring); returns the output tensor."""
    from .base import snake_case

    label = f"layer {layer.name!r} ({type(layer).__name__})" if layer.name else type(layer).__name__
    if not args and set(kwargs) <= {"training"} and _all_arrays(inputs):
        return call_eagerly(layer, inputs, kwargs.get("training"), label)
    if args or kwargs:
        given = [*(f"positional argument {i + 2}" for i in range(len(args))), *(repr(k) for k in kwargs)]
        raise NotImplementedError(
            f"{label} was called with {', '.join(given)}: convforge layers take only their input tensor(s), and "
            "training= on arrays (Keras's eager call; in a graph a layer's mode is decided by fit/predict, or by "
            "a model called with training=False); masks are not supported"
        )
    many = isinstance(inputs, (list, tuple))
    tensors = list(inputs) if many else [inputs]
    for i, t in enumerate(tensors):
        if not isinstance(t, KerasTensor):
            where = f"input {i} of " if many else "the input of "
            raise TypeError(
                f"{where}{label} is {_describe(t)}, not a symbolic tensor: a layer is called on tensors made by "
                "convforge.Input(shape=...) (or outputs of other layers) to build a model, or on NumPy arrays alone "
                "(Keras's eager call, layer(x) or layer(x, training=...)), not on a mix of them or other values"
            )
    if many != layer._takes_list:
        if layer._takes_list:
            raise ValueError(
                f"{label} merges several tensors: call it on a list of tensors, e.g. "
                f"{type(layer).__name__}()([a, b]); got one tensor of shape {tensors[0].shape}"
            )
        if len(tensors) != 1:
            raise ValueError(f"{label} takes one input tensor; got a list of {len(tensors)}")
        many, tensors = False, tensors[:1]
    if not tensors:
        raise ValueError(f"{label} merges a list of tensors: it needs at least one; got an empty list")
    if getattr(layer, "data_format", None) == "channels_first" and not getattr(layer, "_sequence_data_format", False):
        raise NotImplementedError(
            f"{label} has data_format='channels_first': functional models are channels-last (images "
            "(batch, height, width, channels) at the API); use a Sequential model for channels-first input"
        )
    dtype = common_dtype(tensors, f"{label}: the input tensors")
    held = {p.dtype for p in layer.params.values()} if layer.built else set()
    if held and held != {dtype}:
        # Keras casts the input to the layer's dtype; convforge runs a model in one dtype, and the
        # new model would convert these weights in place, under the model they came from.
        have = sorted(d.name for d in held)[0]
        raise TypeError(
            f"{label} holds {have} weights and cannot take the {dtype.name} tensor {tensors[0].name!r}: convforge "
            f"runs a model in one dtype (Keras would cast); make the input {have}, or convert the model this layer "
            f"belongs to first (model.astype({dtype.name!r}))"
        )
    shapes = [t._internal for t in tensors]
    if layer.name is None:
        layer.name = unique_name(snake_case(type(layer).__name__))
    shape_arg = shapes if many else shapes[0]
    if layer.built and layer.params and layer._internal_input_shape is not None and layer._internal_input_shape != shapes[0] and not many:
        raise ValueError(
            f"{label} was built for input {layer._show(layer._internal_input_shape)} and cannot take {tensors[0].shape} "
            f"(from {_producers(tensors)})"
        )
    if layer._inbound_nodes and layer.built:
        first = layer._inbound_nodes[0]
        before = [t._internal for t in first.inputs]
        if before != shapes:
            raise ValueError(
                f"{label} is reused with input shape {_shapes(tensors)} but was first called on "
                f"{_shapes(first.inputs)} (from {_producers(first.inputs)}): a shared layer must see the same "
                "shape at every call (convforge keeps one shape plan per layer)"
            )
    try:
        out_shape = layer._build(shape_arg, dtype)
    except (ValueError, TypeError) as err:
        raise type(err)(
            f"{label} cannot take input of shape {_shapes(tensors)} (from {_producers(tensors)}): {err}"
        ) from err
    layer._data_format = "channels_last"
    node = Node(layer, tensors, many)
    out = KerasTensor(out_shape, dtype, node, 0, name=f"{layer.name}/output_{node.call_index}")
    node.outputs.append(out)
    return out


def _all_arrays(inputs) -> bool:
    """Arrays (or a list of them), no symbolic tensor among them: Keras's eager call."""
    values = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return bool(values) and all(isinstance(v, np.ndarray) for v in values)


def call_eagerly(layer, inputs, training, label: str):
    """``layer(arrays)``: Keras's eager call, run as a model of this one layer (the model's checks,
    layouts and compiled plan), on a call copy of the layer (its weights, built for these shapes
    if it was not yet; nothing of a model it belongs to changes). ``training`` as Keras's: not
    given, the layer's own default (an augmentation layer augments, a Dropout is off)."""
    from ..models.functional import Model
    from .base import call_copy
    from .core import Flatten, Input

    if training is not None and not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{label}: training must be True, False or None; got {training!r}")
    many = isinstance(inputs, (list, tuple))
    arrays = list(inputs) if many else [inputs]
    if any(a.ndim < 2 for a in arrays):
        raise ValueError(f"{label}: an input is a batch, (samples, ...) with at least one axis per sample; got an "
                         f"array of shape {next(a.shape for a in arrays if a.ndim < 2)}")
    held = {p.dtype for p in layer.params.values()} if layer.built else set()
    dtype = sorted(d.name for d in held)[0] if held else "float32"  # Keras's float32 policy
    training = None if training is None else bool(training)
    if type(layer) is Flatten and not many and arrays[0].ndim == 4:
        # NumPy in, NumPy out: Keras's (height, width, channels) order, not a model's NCHW one
        # (Keras moves a channels-first image's channels last first).
        x = np.asarray(arrays[0], dtype=dtype)
        if layer.data_format == "channels_first":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x).reshape(x.shape[0], -1)
    image_format = getattr(layer, "data_format", None) if not getattr(layer, "_sequence_data_format", False) else None
    if image_format == "channels_first" or (layer.built and layer._data_format == "channels_first"):
        return _call_channels_first(layer, arrays, many, training, dtype, label)
    # The one-layer model's names (its input, the copy) are its own: the process's registry of
    # names would grow at every call, and each new name is searched through it.
    token = _EAGER_NAMES.set(_NameRegistry())
    try:
        tensors = [Input(a.shape[1:], dtype=dtype) for a in arrays]
        if not layer.built:  # built for these shapes, as Keras builds a layer at its first call
            shapes = [t._internal for t in tensors]
            layer._build(shapes if many else shapes[0], np.dtype(dtype))
            layer._data_format = "channels_last"
        twin = call_copy(layer)
        twin._inbound_nodes = []  # the copy's own calls, not the layer's
        model = Model(tensors if many else tensors[0], twin(tensors if many else tensors[0]))
    finally:
        _EAGER_NAMES.reset(token)
    return model(arrays if many else arrays[0], training=training)


def _call_channels_first(layer, arrays, many, training, dtype, label):
    """The eager call of a layer that reads channels-first images (given data_format=, or built in
    a Sequential that reads them): the arrays are in the layers' own layout, so its forward runs
    on them as they are (functional models, the other path, are channels-last)."""
    from .augmentation import training_unset
    from .base import call_copy

    xs = [np.ascontiguousarray(a, dtype=dtype) for a in arrays]
    shapes = [a.shape[1:] for a in xs]
    if not layer.built:
        layer._data_format = "channels_first"
        layer._build(shapes if many else shapes[0], np.dtype(dtype))
    elif not many and layer._internal_input_shape != shapes[0]:
        raise ValueError(f"{label} was built for input {layer._show(layer._internal_input_shape)} and cannot take "
                         f"{layer._show(shapes[0])}")
    if xs[0].shape[0] == 0:
        return np.zeros((0, *layer._internal_output_shape), dtype)
    twin = call_copy(layer)
    twin._inbound_nodes = []
    x = xs if many else xs[0]
    if training is None:  # the layer's own default: augmentation layers augment
        with training_unset():
            return twin.forward(x, training=False)
    return twin.forward(x, training=training)


def _shapes(tensors) -> str:
    return ", ".join(str(t.shape) for t in tensors)


def _producers(tensors) -> str:
    return ", ".join(repr(t._node.layer.name) if t._node is not None else "?" for t in tensors)
