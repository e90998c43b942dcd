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

import re

import numpy as np

from .. import _unsupported
from ..layers import symbolic
from ..layers.symbolic import NestedCall
from ..layers.activations import Activation, _ActivationLayer
from ..layers.base import FeatureOrdered, Layer, check_input_shape, display_shape, snake_case
from ..layers.core import Dense, Dropout, Flatten, InputLayer, integer_dtype, keras_flatten_order, warn_flatten_order
from ..layers.noise import _NoiseLayer
from . import state
from .batches import _Batches, _Entry, one_array
from .functional import (MAX_NESTING, Functional, Model, check_dtype, check_model_name, nested_entry,
                         remade_nested_model)
from .summary import print_summary

__all__ = ["Sequential"]


def _chain_as_sequential(model: Functional) -> "Sequential":
    """A Sequential of the same layer objects as ``model``, a chain from one Input; else a
    NotImplementedError saying why it is none and what to write instead."""
    why = None
    nodes = sorted(model._nodes, key=lambda node: node.seq)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        why = f"it has {len(model.inputs)} inputs and {len(model.outputs)} outputs"
    elif not isinstance(model.inputs[0]._node.layer, InputLayer) or model._input_alias:
        why = "its input is another layer's output"
    else:
        previous = model._walk_inputs[0]
        for node in nodes:
            if node.many or len(node.inputs) != 1 or node.inputs[0] is not previous or node.inference:
                why = (f"layer {node.layer.name!r} is not called on the output of the layer before it alone"
                       if not node.inference else f"layer {node.layer.name!r} runs in inference mode (training=False)")
                break
            previous = node.outputs[0]
        if why is None and previous is not model.outputs[0]:
            why = "its output is not its last layer's"
        if why is None and len({id(node.layer) for node in nodes}) != len(nodes):
            why = "it calls a layer twice"
    if why is not None:
        raise NotImplementedError(
            f"Sequential cannot hold the functional model {model.name!r}: {why}, so it is no stack of layers. "
            f"Call it in a functional model instead: inputs = convforge.Input(shape={model.input_shape[1:]}); "
            f"outputs = ...({model.name}(inputs)); convforge.Model(inputs, outputs)"
        )
    inner = Sequential([model.inputs[0]._node.layer], name=model.name)
    for node in nodes:
        inner.add(node.layer)
    return inner


_NOT_BUILT = (
    "This model has not yet been built. Build the model first by calling build() or by calling fit() with some "
    "data, or specify an input_shape argument in the first layer (e.g. input_shape=(28, 28, 1))."
)


class _AddState:
    """The ids and names of the layers a Sequential's constructor has added so far."""

    def __init__(self):
        self.ids: set = set()
        self.names: set = set()


def image_layers(stack) -> list:
    """The layers of a stack whose data_format is a Sequential's layout of images (a 1-D layer's is
    its own, and a Flatten's says only in which order it flattens: Keras's files store
    'channels_last' for every Flatten, a channels-first CNN's too, and
    Flatten(data_format='channels_first') after a channels-last Conv2D is a channels-last model in
    Keras)."""
    return [layer for layer in stack if not getattr(layer, "_sequence_data_format", False) and type(layer) is not Flatten]


class Sequential(Model):
    """A linear stack of layers, Keras's ``Sequential``.

    Parameters
    ----------
    layers : list of Layer, optional
        May start with ``layers.Input(shape=...)``.
    name : str
        Shown by :meth:`summary`; default ``'sequential'``.
    dtype : 'float32' or 'float64'
        Of weights and activations; inputs are converted to it.
    trainable : bool
        False freezes the layers given (``model.trainable = False``).

    A ``Model`` (``isinstance(seq, convforge.Model)``): once built it has
    ``inputs`` and ``outputs``, and its layers ``input``/``output``, so
    ``convforge.Model(seq.inputs, [l.output for l in seq.layers])`` is a
    functional model giving every layer's output. It is run by the graph
    executor of :class:`~convforge.models.Functional` over that chain.
    """

    _keras_model_class = "Sequential"

    _runnable = True
    _not_built_message = _NOT_BUILT

    def __init__(self, layers=None, name: str | None = None, dtype="float32", trainable: bool = True):
        super().__init__()
        self.name = check_model_name(name, "sequential")
        self.dtype = check_dtype(dtype)
        self._flat_layers: list[Layer] = []
        self._declared_input: tuple | None = None
        self._entry: _Entry | None = None
        self.built = False
        self._trainable_plan: list = []
        self._graph: Functional | None = None  # the executor, made at build
        self._graph_input = None
        # The name of its input layer: the Input it was given, else one numbered when it is first
        # built, kept across rebuilds (each made an InputLayer of the next number: input_layer_2
        # where Keras, which keeps one input layer, shows input_layer_1).
        self._input_name: str | None = None
        self._input_given_dtype = None  # an integer Input's dtype (Keras's files keep it)
        self._graph_nodes: list = []
        self._nested: list = []  # the models added (add), whose trainable the setter sets with this one's
        # (layer, the model added that brought it): model.layers lists the model. Pairs, not a dict
        # by id, so that a copy of an unbuilt model pairs its own objects.
        self._owned: list = []
        # The list's layers are added first and the model built once, with the names and layers
        # taken so far in sets: built after each add, and each add scanning the layers before it,
        # a stack of n layers cost ~n^2 (an imported 2,000-node chain took 91 s, 20,000 minutes).
        self._adding = _AddState()
        try:
            for layer in layers or []:
                self.add(layer)
        finally:
            self._adding = None
        if self._flat_layers and self._input_spec() is not None:
            self.build()
        if trainable is not True:  # Keras's argument: model.trainable = False (checked there) for the layers given
            self.trainable = trainable

    # ================================================================== building

    def add(self, layer) -> None:
        """Append a layer; the model is (re)built at once if its input shape is known.

        A Sequential model may be added too (Keras's nested ``Sequential``, e.g. an
        augmentation block): it is one entry of ``model.layers`` and one row of
        ``summary()``, as in Keras, and this model runs its layers (the same objects:
        weights shared with the inner model) as its own. An inner layer whose automatic
        name is taken here gets the next free suffix (``dense_1`` -> ``dense_2``). A
        functional model that is a chain (one input, each layer called once on the one
        before) is added the same way; one with branches cannot be (Keras's
        ``Sequential([base_model, ...])``): call it in a functional model instead,
        ``Model(inputs, head(base_model(inputs)))``.
        """
        if isinstance(layer, (Sequential, Functional)):
            if layer is self:
                raise ValueError("a Sequential model cannot be added to itself")
            layer._check_nesting_depth()
            # A functional model's layers, or a NotImplementedError naming why it is not a chain.
            chain = layer if isinstance(layer, Sequential) else _chain_as_sequential(layer)
            before, declared, owned = len(self._flat_layers), self._declared_input, list(self._owned)
            names = [(inner, inner.name) for inner in chain._flat_layers]
            if not self._flat_layers and self._declared_input is None and chain._input_spec() is not None:
                self._declared_input = tuple(chain._input_spec())
            taken = {other.name for other in self._flat_layers}
            try:
                if {id(inner) for inner in chain._flat_layers} & {id(other) for other in self._flat_layers}:
                    raise ValueError(f"model {layer.name!r} is already in this model (or shares layers with it); "
                                     "a model's layers can be in a Sequential once")
                for inner in chain._flat_layers:
                    if inner.name in taken:
                        base, i = re.sub(r"_\d+$", "", inner.name), 0
                        while inner.name in taken:
                            i += 1
                            inner.name = f"{base}_{i}"
                    self.add(inner)
                    taken.add(inner.name)
                    self._owned.append((inner, layer))
            except Exception:
                # The model is left as it was: none of the nested model's layers, not some, and
                # theirs named as they were.
                del self._flat_layers[before:]
                self._owned = owned
                self._declared_input = declared
                for inner, name in names:
                    inner.name = name
                if self.__dict__.get("_adding") is None and self._flat_layers and self._input_spec() is not None:
                    self.build()
                raise
            self._nested.append(layer)  # model.trainable = ... sets its flag too, as Keras's setter does
            return
        if isinstance(layer, symbolic.KerasTensor) and isinstance(layer._keras_history[0], InputLayer):
            layer = layer._keras_history[0]  # Sequential([convforge.Input(shape=...), ...]), as Keras
        if isinstance(layer, InputLayer):
            if self._flat_layers:
                raise ValueError("Input(...) must be the first entry of a Sequential model")
            self._declared_input = layer.shape
            self._input_name = layer.name
            self._input_given_dtype = layer._given_dtype  # an integer Input's, for Keras's files
            return
        if not isinstance(layer, Layer):
            hint = ""
            if type(layer).__module__.split(".")[0] in ("keras", "tensorflow", "tf_keras"):
                hint = f" Use convforge.layers.{type(layer).__name__} instead of the Keras layer."
            raise TypeError(f"Sequential.add expects a convforge layer; got {type(layer).__name__} {layer!r}.{hint}")
        adding = self.__dict__.get("_adding")  # the constructor's sets, or None: scan the layers
        ids = adding.ids if adding is not None else {id(other) for other in self._flat_layers}
        names = adding.names if adding is not None else {other.name for other in self._flat_layers}
        if id(layer) in ids:
            raise ValueError(f"layer {layer.name!r} is already in this model; create a new layer instead")
        if layer.name is None:
            # Numbered in the process, as Keras numbers a layer when it is made (dense, dense_1,
            # ... across models): per model, a GAN's two Sequentials both had 'dense' and could
            # not be called in one functional model.
            base = snake_case(type(layer).__name__)
            name = symbolic.unique_name(base)
            while name in names:
                name = symbolic.unique_name(base)
            layer.name = name
        elif layer.name in names:
            raise ValueError(f"a layer named {layer.name!r} is already in this model; layer names must be unique")
        symbolic.reserve_name(layer.name)  # functional models built on this one name new layers apart
        self._flat_layers.append(layer)
        if adding is not None:
            adding.ids.add(id(layer))
            adding.names.add(layer.name)
        elif self._input_spec() is not None:
            try:
                self.build()
            except Exception:
                self._flat_layers.pop()
                raise

    def _layer_owners(self) -> dict:
        """``id(layer) -> the model added whole that brought it``; the other layers are this model's own."""
        return {id(layer): model for layer, model in self._owned}

    @property
    def layers(self) -> list:
        """Keras's ``model.layers``: as :attr:`Model.layers` says, a model added whole is one entry."""
        owners = self._layer_owners()
        entries = [owners.get(id(layer), layer) for layer in self._flat_layers]
        return [entry for i, entry in enumerate(entries) if i == 0 or entry is not entries[i - 1]]  # runs: one entry

    def _node_owner(self, node):
        return self._layer_owners().get(id(node.layer))

    def _input_spec(self):
        if self._declared_input is not None:
            return self._declared_input
        return self._flat_layers[0].input_shape_arg if self._flat_layers else None

    def _image_layers(self) -> list:
        return image_layers(self._flat_layers)

    def _data_format(self) -> str:
        formats = {getattr(layer, "data_format", None) for layer in self._image_layers()} - {None}
        if len(formats) > 1:
            raise ValueError(f"layers of one model must agree on data_format; got {sorted(formats)}")
        return formats.pop() if formats else "channels_last"

    def _data_format_note(self, fmt: str) -> str:
        """How the model came to read images as ``fmt`` (for error messages); "" for the default."""
        said = [layer.name for layer in self._image_layers() if getattr(layer, "data_format", None) == fmt]
        if fmt != "channels_first" or not said:
            return ""
        note = (
            f"the model reads images as data_format='channels_first' because layer {said[0]!r} says so: its input "
            "shape is (channels, height, width)"
        )
        unsaid = [layer.name for layer in self._flat_layers if layer._expects_images and getattr(layer, "data_format", 1) is None]
        if unsaid:
            note += (
                f", also for {', '.join(repr(n) for n in unsaid[:3])}, which give no data_format (convforge uses one "
                "layout per model: give the same data_format to every image layer)"
            )
        return note

    def _takes_images(self) -> bool:
        """Does the first layer that cares (past Dropout, noise, activations) take images?"""
        for layer in self._flat_layers:
            if isinstance(layer, (Dropout, _NoiseLayer, _ActivationLayer, Activation)) and not layer._expects_images:
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
        if not self._flat_layers:
            raise ValueError("cannot build a Sequential model without layers: add some first")
        fmt = self._data_format()
        if len(spec) == 3:
            internal, kind = ((spec[2], spec[0], spec[1]), "nhwc") if fmt == "channels_last" else (spec, "none")
        elif len(spec) == 2 and self._takes_images():
            internal, kind = (1, *spec), "reshape"
        else:
            internal, kind = spec, "none"
        shape = internal
        # What a failed build must not leave behind on layers that were built before it (a
        # Normalization adapted to other data, then offered to this model, stays as it was).
        before = [(layer, layer._data_format, layer._internal_input_shape, layer._internal_output_shape)
                  for layer in self._flat_layers]
        try:
            for layer in self._flat_layers:
                layer._data_format = fmt
                if layer.built and layer.params and layer._internal_input_shape is not None and layer._internal_input_shape != tuple(shape) \
                        and not layer._weights_in_shown_axes:
                    raise ValueError(
                        f"layer {layer.name!r} was built for input {layer._show(layer._internal_input_shape)} and cannot take "
                        f"{layer._show(shape)}"
                    )
                shape = layer._build(shape, self.dtype)
        except ValueError as err:
            for layer, data_format, shape_in, shape_out in before:
                if layer._data_format != data_format:
                    layer._data_format = data_format
                if layer.built:
                    layer._internal_input_shape, layer._internal_output_shape = shape_in, shape_out
            note = self._data_format_note(fmt)
            if note:
                raise ValueError(f"{err} ({note})") from err
            raise
        self._entry = _Entry(spec, internal, kind, self.dtype)
        self.built = True
        self._record_graph(internal)
        self._nested_take_dtype()
        self._note_flatten_orders(fmt)
        self._plan_backward()

    def _note_flatten_orders(self, fmt: str) -> None:
        """Tell each Dense layer, and each BatchNormalization, LayerNormalization or PReLU on the
        way to one (FeatureOrdered), whether a Flatten of images comes before it (through layers
        that keep the features' order): its get_weights/set_weights then speak Keras's order. A
        layer that reads the model's input tells nothing: a head made to sit after a Flatten
        elsewhere takes that model's order."""
        held = {id(layer) for layer in self._flat_layers}
        for layer in self.__dict__.get("_told_ordered", []):  # popped since: this model holds it no more
            if id(layer) not in held:
                layer._forget_flatten_order(self)
        self._told_ordered = [layer for layer in self._flat_layers if isinstance(layer, FeatureOrdered)]
        order, at_input = None, True  # at the input: the features are the caller's, in no known order
        for layer in self._flat_layers:
            if isinstance(layer, Flatten):
                order = keras_flatten_order(tuple(layer._internal_input_shape), fmt, layer.data_format)
                at_input = False
            elif isinstance(layer, FeatureOrdered):
                layer._take_flatten_order(self, [] if at_input else [order])
                if isinstance(layer, Dense) or len(layer._internal_input_shape) != 1:  # new features
                    order, at_input = None, False
            elif not layer._keeps_feature_order:
                if order is not None and layer._loses_flatten_order:  # no weight order puts it right
                    warn_flatten_order(layer, layer._loses_flatten_order)
                order, at_input = None, False

    def _record_graph(self, internal) -> None:
        """The symbolic graph of the stack (an InputLayer, then one node per layer), so that the model
        has ``inputs``/``outputs`` and each layer ``input``/``output``, as a built Keras Sequential."""
        for node in self._graph_nodes:
            node.layer._inbound_nodes.remove(node)
        if self._input_name is None:
            self._input_name = symbolic.unique_name("input_layer")
        given = self._input_given_dtype if self.dtype == np.float32 else None  # integer ids into a float32 model
        self._graph_input = InputLayer(shape=display_shape(internal), dtype=given or self.dtype,
                                       name=self._input_name).output
        self._graph_nodes = symbolic.record_chain(self._flat_layers, self._graph_input)
        self._graph = Functional(self._graph_input, self._graph_nodes[-1].outputs[0], name=self.name,
                                 _executor=True)
        fmt = self._data_format()  # the tensors show images as the model reads them
        self._graph._api_format = fmt  # and its loss and metrics read its outputs so
        for t in [self._graph_input, *(out for node in self._graph_nodes for out in node.outputs)]:
            t._format = fmt
        self._note_nested_calls()

    def _note_nested_calls(self) -> None:
        """Each Sequential added to this one takes, as its ``input``/``output``, the tensors of its
        run of layers in this model's graph, unless it was called or added elsewhere first (Keras's
        first call): ``Model(outer.inputs, [l.output for l in outer.layers])`` then works with it
        listed."""
        if not self._graph_nodes:
            return
        owners = self._layer_owners()
        tensors = [self._graph_input, *(node.outputs[0] for node in self._graph_nodes)]
        for model in self._nested:
            held = [i for i, layer in enumerate(self._flat_layers) if owners.get(id(layer)) is model]
            if held and not model.built and isinstance(model, Sequential):  # Keras builds it with this one
                model.build((None, *tensors[held[0]].shape[1:]))
            first = model.__dict__.get("_first_call")
            if held and (first is None or model.__dict__.get("_first_call_holder") is self):
                model._first_call = NestedCall(model, [tensors[held[0]]], [tensors[held[-1] + 1]])
                model._first_call_holder = self

    def _symbolic_graph(self, inputs):
        if not self.built and isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            inputs = inputs[0]
        if not self.built and isinstance(inputs, symbolic.KerasTensor):
            # Keras builds a Sequential model without an input shape for the tensor it is first
            # called on (``head = Sequential([Dense(64), Dense(10)]); y = head(features)``).
            self.build(inputs.shape)
        if not self.built:
            raise ValueError(f"{self.name!r} is not built: give it an input shape (Input(...) first) before calling "
                             "it on a tensor")
        return self._graph

    def _build_from_data(self, x) -> None:
        if self.built:
            return
        if not self._flat_layers:
            raise ValueError("cannot build a Sequential model without layers: add some first")
        x = np.asarray(one_array(x))
        if x.ndim < 2:
            raise ValueError(f"x must have a batch axis and at least one feature axis; got shape {x.shape}")
        self._declared_input = check_input_shape(x.shape[1:], "the per-sample shape of x")
        self.build()

    def _plan_backward(self) -> None:
        """Which layers backward visits and which must return dL/dx (see Functional._plan_backward).

        Layers before the first one with trainable weights need no gradient at
        all: backward stops there, and that layer is told not to compute dx
        (for a first Conv2D this skips the whole data-gradient convolution).
        """
        self._graph._plan_backward(self._frozen_layer_ids())
        self._trainable_plan = self._graph._trainable_plan

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
        return (None, *display_shape(self._flat_layers[-1]._internal_output_shape, self._data_format()))

    def _input_entries(self) -> list:
        return [] if self._entry is None else [self._entry]

    def astype(self, dtype) -> "Sequential":
        super().astype(dtype)
        if self._graph is not None:  # the executor's dtype, input entry and inference plan follow
            self._graph.astype(self.dtype)
            self._plan_backward()
        return self

    @property
    def input(self):
        """Keras's ``model.input``: the tensor the model's first call took -- in the model it was
        added to or the graph it was called in -- else (never added or called) its own input."""
        first = self.__dict__.get("_first_call")
        return first.inputs[0] if first is not None else self.inputs[0]

    @property
    def output(self):
        """Keras's ``model.output``: the tensor the model's first call made -- in the model it was
        added to or the graph it was called in, so that ``convforge.Model(outer.inputs, [l.output for
        l in outer.layers])`` gives every entry's output -- else (never added or called; Keras has
        none there) its own output."""
        first = self.__dict__.get("_first_call")
        return first.outputs[0] if first is not None else self.outputs[0]

    @property
    def inputs(self) -> list:
        """``[KerasTensor]`` of the built model's input, as Keras (for ``convforge.Model(m.inputs, ...)``)."""
        if not self.built:
            raise ValueError(_NOT_BUILT)
        return [self._graph_input]

    @property
    def outputs(self) -> list:
        """``[KerasTensor]`` of the last layer's output."""
        if not self.built:
            raise ValueError(_NOT_BUILT)
        return [self._graph_nodes[-1].outputs[0]]

    def pop(self, rebuild: bool = True) -> Layer:
        """Remove and return the last entry of ``model.layers`` (Keras's ``pop``): a layer, or a model
        added whole; the model is rebuilt without it.

        ``rebuild`` is Keras's argument; the model is rebuilt either way (Keras leaves it unbuilt
        with ``rebuild=False`` only until its next use rebuilds it)."""
        if not isinstance(rebuild, (bool, np.bool_)):
            raise TypeError(f"pop: rebuild must be True or False; got {rebuild!r}")
        if not self._flat_layers:
            raise IndexError("pop from a Sequential model without layers")
        layer = self._flat_layers.pop()
        owners = self._layer_owners()
        owner = owners.get(id(layer))
        if owner is not None:  # a model added whole leaves whole (its layers are the last ones)
            while self._flat_layers and owners.get(id(self._flat_layers[-1])) is owner:
                self._flat_layers.pop()
            self._owned = [pair for pair in self._owned if pair[1] is not owner]
            self._nested = [model for model in self._nested if model is not owner]
            if owner.__dict__.get("_first_call_holder") is self:  # its output is no tensor of this model now
                owner._first_call = owner._first_call_holder = None
            layer = owner
        if self._flat_layers and self._input_spec() is not None:
            self.build()  # records the graph anew, without the popped layer's node
        else:
            for node in self._graph_nodes:
                node.layer._inbound_nodes.remove(node)
            self._graph, self._graph_input, self._graph_nodes = None, None, []
            self.built = False
        self._warned_logits = False
        return layer

    # ================================================================== summary

    def summary(self, line_length: int | None = None, positions=None, print_fn=None, expand_nested: bool = False,
                show_trainable: bool = False, layer_range=None) -> None:
        """Print a Keras-style table of layers, output shapes and parameter counts.

        ``print_fn`` receives the whole table as one string (default ``print``). ``positions``,
        ``show_trainable`` (a "Trainable" column: Y, N, or - for a layer without weights) and
        ``layer_range`` (two layer names, regular expressions: the rows from the first to the last)
        are Keras's. A model added to this one is one row, as in Keras, and with
        ``expand_nested=True`` its layers follow it, one a row (marked ``└``).
        """
        if not isinstance(expand_nested, (bool, np.bool_)):
            raise TypeError(f"summary: expand_nested must be True or False; got {expand_nested!r}")
        if not self.built:
            raise ValueError(_NOT_BUILT)
        print_summary(self, line_length, positions, print_fn, show_trainable, layer_range, bool(expand_nested))

    # ================================================================== the passes

    # The stack is run by the graph executor of a Functional model over its chain of nodes
    # (self._graph, made at build): one executor for both kinds of model. These adapt its lists
    # (one per input/output) to the single arrays of a Sequential model.

    def _resolve_loss_path(self) -> None:
        """Fuse a final softmax into a cross-entropy on probabilities (see convforge.losses)."""
        self._graph.loss = self.loss
        self._graph._resolve_loss_path(owner=self)
        self._fused = self._graph._fused

    def _forward_loss(self, xb, yb, training: bool, need_grad: bool, sample_weight=None):
        """Forward pass and loss: ``(loss, output as predict gives it, dL/d(head output) or None)``."""
        if self._graph.loss is not self.loss:  # compiled (or the loss replaced) since the last resolve
            self._resolve_loss_path()
        loss, outs, dheads = self._graph._forward_loss([xb], [yb], training, need_grad, sample_weight)
        return loss, outs[0], dheads[0]

    def _backward(self, dhead) -> None:
        self._graph._backward([dhead])

    def _trace(self, xb):
        """``(layer, [its input], its output)`` for each layer in turn, inference mode (for diagnostics)."""
        return self._graph._trace([xb])

    def _forward(self, xb, training: bool) -> np.ndarray:
        """The model's output for a batch in the internal layout."""
        return self._graph._forward([xb], training)[0]

    def _inference_may_use_blas(self) -> bool:
        return self._graph._inference_may_use_blas()

    def _compiled_plan(self):
        return None if self._graph is None else self._graph._compiled

    def _whole_plan(self):
        return self._graph._whole_plan()

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
        x = self._check_x(x, allow_empty=True)
        batches = _Batches(self._entry, x, None, batch_size)
        outs = [np.empty((batches.n, *layer._internal_output_shape), dtype=self.dtype) for layer in self._flat_layers]
        for step in range(batches.steps):
            lo, hi = step * batch_size, min((step + 1) * batch_size, batches.n)
            out, _ = batches.slice(lo, hi)
            for layer, dest in zip(self._flat_layers, outs):
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
            "trainable": self.trainable,
            "input_shape": None if spec is None else list(spec),
            # An integer Input's dtype (token ids before an Embedding), kept for Keras's files.
            **({"input_dtype": self._input_given_dtype.name} if self._input_given_dtype is not None else {}),
            "layers": [
                {"class_name": type(layer).__name__, "module": type(layer).__module__, "name": layer.name,
                 "config": layer.get_config()}
                for layer in self._flat_layers
            ],
            # The models added whole (one entry of model.layers each): their layers' positions.
            "nested": self._nested_config(),
        }

    def _nested_config(self) -> list:
        """The models added whole to this one, as ``get_config``'s "nested" saves them."""
        owners = self._layer_owners()
        return [dict(nested_entry(model),
                     layers=[i for i, layer in enumerate(self._flat_layers) if owners.get(id(layer)) is model])
                for model in self._nested]

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "Sequential":
        """A new, built model from :meth:`get_config`'s description (fresh weights).

        ``custom_objects``: ``{'MyLayer': MyLayer}`` for layer classes of your own.
        """
        entries = state.config_layers(config, "Sequential.from_config: the config")
        model = cls(name=config.get("name"), dtype=config.get("dtype", "float32"))
        layers = [state.layer_from_config(i, entry, custom_objects) for i, entry in enumerate(entries)]
        # Add all layers before building: the input spec then applies to the whole stack.
        for layer in layers:
            if layer is layers[0]:
                layer.input_shape_arg = None
            model.add(layer)
        if config.get("input_shape"):
            model._declared_input = tuple(config["input_shape"])
        given = config.get("input_dtype")
        if given is not None:
            model._input_given_dtype = integer_dtype(given) if isinstance(given, str) else None
            if model._input_given_dtype is None:
                raise ValueError(f"Sequential.from_config: input_dtype must be an integer type's name; got {given!r}")
        model.build()
        model._trainable = state.config_trainable(config)  # the layers' own flags came with their configs
        model._restore_own_nesting(config.get("nested", []), "Sequential.from_config: the config", 0)
        return model

    def _restore_own_nesting(self, entries, what: str, depth: int) -> None:
        """The models added whole to this one, made again of its layers from the "nested" entries
        of its description (checked here)."""
        if entries and depth > MAX_NESTING:
            raise ValueError(f"{what}: models nested more than {MAX_NESTING} deep")
        names = {layer.name for layer in self._flat_layers}
        for entry in state.config_nested_layers({"nested": entries}, len(self._flat_layers), what):
            if entry["name"] in names:
                raise ValueError(f"{what}: nested model {entry['name']!r}: the name is taken by another layer or "
                                 "nested model of the model")
            names.add(entry["name"])
            self._add_nested_anew(entry, what, depth)

    def _add_nested_anew(self, entry: dict, what: str, depth: int) -> None:
        """Make a model added to this one again, of this model's layers at ``entry["layers"]`` (the
        same objects: it shares their weights, as the saved one did), and list it as one entry."""
        first, last = entry["layers"][0], entry["layers"][-1]
        inner_layers = self._flat_layers[first : last + 1]
        tensors = [self._graph_input, *(node.outputs[0] for node in self._graph_nodes)]
        call = NestedCall(None, [tensors[first]], [tensors[last + 1]])  # its run of this model's chain
        call.nodes = self._graph_nodes[first : last + 1]
        inner = remade_nested_model(entry, call, self.dtype, f"{what}: nested model {entry['name']!r}", depth)
        for layer in inner_layers:
            self._owned.append((layer, inner))
        self._nested.append(inner)
        self._note_nested_calls()

    def __repr__(self) -> str:
        return f"<Sequential name={self.name!r} layers={len(self._flat_layers)} built={self.built}>"


Model._stack_class = Sequential
_unsupported.check_arguments(Sequential, method="summary")  # Keras's show_layer_activations, ...
