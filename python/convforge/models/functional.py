"""``convforge.Model(inputs, outputs)``: Keras's functional API -- models that are graphs of layers.

>>> import convforge
>>> from convforge import layers
>>> x = convforge.Input(shape=(28, 28, 1))
>>> h = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
>>> shortcut = h
>>> h = layers.Conv2D(16, 3, padding="same", activation="relu")(h)
>>> h = layers.Add()([h, shortcut])                      # a residual connection
>>> y = layers.Dense(10, activation="softmax")(layers.Flatten()(h))
>>> model = convforge.Model(x, y)
>>> model.output_shape
(None, 10)

Semantics follow Keras 3: several inputs and outputs (``Model([a, b], [y1,
y2])``: ``fit``/``predict`` take and return lists, or dicts by input/output
name), shared layers (one layer called twice: one set of weights, whose
gradients from both calls add up), ``model.inputs``/``model.outputs``,
``layer.input``/``layer.output``, and ``model.layers`` in Keras's order
(by depth, ``InputLayer`` entries included). A model called in the graph
(``base(x)``, transfer learning) is one entry of ``model.layers``, as in Keras
(``model.layers[1].trainable = False`` freezes the base); the graph runs its
layers as its own (they are shared with the base: one set of weights).
A ``Sequential`` model has ``inputs`` and ``outputs`` too, so
``convforge.Model(seq.inputs, [l.output for l in seq.layers])`` gives every
feature map of a trained Sequential model.

Execution
---------
The graph is put in topological order once, when the model is made. The
forward pass runs the nodes in that order; the backward pass runs them in
reverse, adding the gradients that arrive at a tensor used by several layers
(fan-out) into a buffer the model owns -- a tensor used once passes its
gradient on without a copy. Nodes upstream of which no layer has trainable
weights are not run backward at all, and layers whose inputs need no gradient
skip computing it (a first Conv2D skips its whole data-gradient convolution).
A layer called several times runs each extra call on a shallow copy of itself
that shares its weights but keeps its own training buffers, so the calls do not
overwrite what the others keep for the backward pass. Inside, images are NCHW,
converted once per input at the entry, as in ``Sequential``.

Multi-output training
---------------------
``compile(loss=...)`` takes one loss (used for every output), a list (one per
output, ``None`` for an output without loss) or a dict by output name;
``loss_weights`` a list or dict; ``metrics`` one entry per output (a metric,
a list of metrics or None) as a list or a dict, as Keras 3 (which also rejects
one flat list for several outputs). The loss minimised is the weighted sum;
the logs hold ``loss``, ``<output>_loss`` and ``<output>_<metric>``, Keras's
names. An output is named after the layer that made it, or after the model
whose call returned it (``Model(x, [base(x), aux])``: ``'base'``), as in Keras.
``sample_weight`` is one array (one weight per sample) for every output;
``class_weight`` is for a model of one output, as in Keras 3. Not supported:
a list of ``sample_weight`` arrays (one per output), dict-valued inputs or
outputs at ``Model(...)`` (lists only; data may be dicts), nested structures.

Fine-tuning a model called as ``base(x, training=False)``: as Keras's
transfer-learning guide describes it (and as tf.keras ran it), its layers stay in
inference mode in ``fit`` too, once trainable again: its BatchNormalization
layers normalise with their moving statistics, which stay as they are, while
gamma and beta learn; its Dropout and augmentation layers pass their input
through. Keras 3 itself differs here: ``fit``'s ``training=True`` overrides the
flag (keras-team/keras#20285; checked on 3.15.1), so there an unfrozen base's
BatchNormalization layers use the batch statistics and update their moving ones.
"""

from __future__ import annotations

import collections
import copy
import os
import warnings

import numpy as np

from .. import _unsupported
from .._warnings import user_stacklevel
from .. import functional as F
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from ..layers import activations as activation_layers
from ..layers import fusion
from ..layers.activations import Sigmoid, Softmax, _ActivationLayer
from ..layers.base import FLOAT_DTYPES, FeatureOrdered, Layer, call_copy, display_shape, same_flatten_orders
from ..layers import augmentation as augmentation_layers
from ..layers.augmentation import _Augmentation
from ..layers.core import Dense, Dropout, Flatten, Input, InputLayer, keras_flatten_order, warn_flatten_order
from ..layers.noise import _NoiseLayer
from ..layers.merging import Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract
from ..layers.normalization import BatchNormalization
from ..layers.symbolic import KerasTensor, NestedCall, Node, common_dtype, unique_name
from . import keras_file, state
from .compiled import compile_inference
from .batches import _Batches, _Entry, one_array, shape_str
from .summary import nested_rows, print_graph_summary
from .trainer import Trainer, check_compile_arguments, prepare_targets, saveable_metrics, trainable_plan

_BUILTIN_BN_BACKWARD = BatchNormalization.backward

__all__ = ["Functional", "Model"]


def _refuse_overwrite(filepath, overwrite) -> None:
    """Keras's ``overwrite=False``: Keras asks on the terminal before replacing a file; convforge,
    which must not block a script, refuses."""
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"overwrite must be True or False; got {overwrite!r}")
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{os.fspath(filepath)} exists and overwrite=False: choose another name, or pass "
                              "overwrite=True to replace it")


class Model(Trainer):
    """Keras's ``Model``: ``convforge.Model(inputs, outputs, name=None)`` makes a :class:`Functional` model.

    >>> x = convforge.Input(shape=(28, 28, 1))                        # doctest: +SKIP
    >>> y = layers.Dense(10, activation="softmax")(layers.Flatten()(x))  # doctest: +SKIP
    >>> model = convforge.Model(x, y)                                  # doctest: +SKIP

    ``inputs``/``outputs``: a tensor or a list of tensors (see :mod:`convforge.models.functional`).
    ``Sequential`` and ``Functional`` are both Models (``isinstance(m, convforge.Model)``) and share
    what is defined here: weights (``get_weights``, ``set_weights``, ``count_params``,
    ``get_layer``, ``astype``) and files (``save``, ``save_weights``, ``load_weights``); training is
    :class:`~convforge.models.trainer.Trainer`'s. Keras's subclassing API (a ``Model`` subclass with
    its own ``call``) is not supported.

    Where convforge differs from Keras 3: every input must reach an output (Keras accepts an
    input no output uses and ignores its data; here a ValueError names it); a layer is built for
    one input shape, so one called on images of two sizes (a Conv2D shared by an 8x8 and a 12x12
    input, whose weights Keras sizes by the channels alone) is refused by name; layer names are
    one namespace per model with the models nested in it (two nested models that each hold a
    ``'fc1'`` cannot be called in one graph; Keras scopes them by model). Automatic names are
    numbered in the process as Keras numbers them (``dense``, ``dense_1``, ...;
    ``convforge.backend.clear_session()`` starts again).
    """

    #: The Keras class this model is saved as in a .keras file (models/keras_file.py).
    _keras_model_class = "Functional"

    # Set by the model classes convforge can run; a user subclass of Model itself is not one.
    _runnable = False
    #: ``Sequential``, set by its module (which imports this one): a graph that is loaded remakes
    #: a Sequential model called in it as one.
    _stack_class: type = type(None)

    def __new__(cls, *args, **kwargs):
        if cls is Model:
            return super().__new__(Functional)
        if not cls._runnable:
            raise NotImplementedError(
                f"{cls.__name__} subclasses convforge.Model: Keras's subclassing API (a call() method) is not "
                "supported; build the model with convforge.Input and convforge.Model(inputs, outputs), or subclass "
                "Sequential or a Layer"
            )
        return super().__new__(cls)

    def __reduce_ex__(self, protocol):
        """``pickle`` and ``copy.deepcopy`` of a model class of your own (a Sequential subclass):
        copied as any object while not built, refused once built. Sequential and Functional
        models are copied through what ``save`` writes (models/loading.py registers how); a
        subclass would come back as its base class."""
        if not self.built:
            return super().__reduce_ex__(protocol)
        raise TypeError(
            f"cannot pickle or deepcopy a built {type(self).__name__} (a subclass of {type(self).__mro__[1].__name__}): "
            "a copy is rebuilt from the model's description and would come back as the base class; make a new "
            "instance and copy the weights over (new.set_weights(model.get_weights()))"
        )

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "Model":
        """Keras's ``keras.Model.from_config(model.get_config())``: a new graph model (fresh weights)
        from a Functional model's description. Sequential and Functional define their own; this one
        is reached only through ``Model`` itself."""
        if not isinstance(config, dict) or "nodes" not in config:
            raise ValueError(
                "Model.from_config takes the config of a graph model (convforge.Model(inputs, outputs)); "
                "rebuild a Sequential model's config with convforge.Sequential.from_config"
            )
        return Functional.from_config(config, custom_objects=custom_objects)

    # ================================================================== freezing

    @property
    def trainable(self) -> bool:
        """Keras's ``model.trainable``: False freezes every layer of the model (a pretrained base
        under a new head, a discriminator inside a GAN's combined model), True unfreezes them all;
        setting it sets each layer's ``trainable``. Reads what was last set (True at first), as in
        Keras. Takes effect at the next ``fit`` without a new ``compile``."""
        return self.__dict__.get("_trainable", True)

    @trainable.setter
    def trainable(self, value) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"trainable must be True or False; got {value!r}")
        self._trainable = bool(value)
        for layer in self._flat_layers:
            layer.trainable = bool(value)
        for model in self.__dict__.get("_nested", []):  # recursively, as Keras: inner.trainable reads False too
            model.trainable = bool(value)

    def _frozen_layer_ids(self) -> set:
        """The layers (by id) whose weights do not train in this model whatever their own
        ``trainable`` says: all of them while the model itself is frozen. Keras's
        ``model.trainable_weights`` is empty for a model whose ``trainable`` is False, so
        ``model.trainable = False`` followed by ``base.trainable = True`` (a model nested in it)
        still trains nothing of ``model``. Only the model trained decides: as in Keras, a nested
        model's own flag does not (``base.trainable = False`` then ``base.layers[0].trainable =
        True`` trains that layer)."""
        return set() if self.trainable else {id(layer) for layer in self._flat_layers}

    # ================================================================== a model inside a graph

    def _call_symbolic(self, inputs, training=None):
        """``model(tensor)`` in a graph (Keras's nested models: a pretrained base under a new
        head): the model's layers are called on ``inputs`` in its graph's order, so the new
        graph holds them (shared: their weights are the model's) and runs them as its own; it
        lists the model as one entry of ``model.layers``, as Keras does.
        ``model.trainable = False`` freezes them there too; a frozen BatchNormalization runs on
        its moving statistics, which is what Keras's ``base(x, training=False)`` asks for, the
        only ``training`` accepted. The layers of such a call stay in inference mode in training
        too, after ``model.trainable = True`` (the fine-tuning step), as Keras's transfer-learning
        guide describes: its BatchNormalization layers run on their moving statistics, trainable
        or not (gamma and beta learn, the moving statistics stay), its Dropout and augmentation
        layers pass their input through. (Keras 3 lets ``fit`` override the flag,
        keras-team/keras#20285: see the module's docstring.)"""
        if training is not False and training is not None:
            raise NotImplementedError(
                f"model {self.name!r} called on a symbolic tensor with training={training!r}: convforge decides "
                "training mode in fit/predict, not per call")
        self._check_nesting_depth()
        graph = self._symbolic_graph(inputs)
        many = isinstance(inputs, (list, tuple))
        given = list(inputs) if many else [inputs]
        if len(given) != len(graph.inputs):
            raise ValueError(f"model {self.name!r} takes {len(graph.inputs)} input tensor(s); got {len(given)}")
        for i, (t, want) in enumerate(zip(given, graph.inputs)):
            if tuple(t.shape[1:]) != tuple(want.shape[1:]):
                raise ValueError(f"model {self.name!r} input {i} has shape {want.shape}; the tensor it was called on "
                                 f"has {t.shape}")
        mapped = {id(t): g for t, g in zip(graph.inputs, given)}
        made = []
        for node in sorted(graph._nodes, key=lambda n: n.seq):
            if isinstance(node.layer, InputLayer):
                continue
            args = [mapped[id(t)] for t in node.inputs]
            out = node.layer(args if node.many else args[0])
            out._node.inference = training is False or node.inference
            out._node.nested_model = self
            made.append(out._node)
            mapped[id(node.outputs[0])] = out
        outputs = [mapped[id(t)] for t in graph.outputs]
        call = NestedCall(self, given, outputs, training is False)
        call.nodes = made
        if self.__dict__.get("_first_call") is None:  # Keras's first inbound node: model.output
            self._first_call = call
        for node in made:
            node.nested_call = call
        for t in outputs:
            if all(t is not g for g in given):  # made by this call, not an input passed through
                t._from_model = self.name
        return outputs[0] if len(outputs) == 1 else outputs

    def _symbolic_graph(self, inputs) -> "Functional":
        """The Functional graph whose nodes _call_symbolic replays on ``inputs`` (a Sequential's
        executor)."""
        return self

    # ================================================================== weights

    @property
    def layers(self) -> list:
        """Keras's ``model.layers``: the model's layers in order, a new list each time. A model
        nested in this one (added to a Sequential, ``Sequential([base, head])``, or called in a
        graph, ``base(x)``) is one entry, the model itself, as in Keras: ``model.layers[0].trainable
        = False`` freezes all of ``base``; its own layers are ``base.layers`` (``summary(expand_nested=True)``
        lists them too). A functional model's list starts with its ``InputLayer`` entries; a layer
        of a nested model that this graph also calls on its own is an entry too, as in Keras.
        Unlike Keras, this model runs the nested model's layers as they were when it took them:
        change the nested model (``base.pop()``, ``base.add(...)``) before nesting it."""
        raise NotImplementedError  # Sequential and Functional define it

    def _nesting_depth(self) -> int:
        """How many levels of models are nested in this one (0: none)."""
        return 1 + max(model._nesting_depth() for model in self._nested) if self.__dict__.get("_nested") else 0

    def _check_nesting_depth(self) -> None:
        """Nesting this model in another: a ValueError past what a model file may hold."""
        if self._nesting_depth() + 1 > MAX_NESTING:
            raise ValueError(f"model {self.name!r} holds models nested {self._nesting_depth()} deep: a model can hold "
                             f"models nested {MAX_NESTING} deep at most (its file could not be loaded)")

    def _node_owner(self, node):
        """The nested model whose call in this model made ``node`` (the outermost), else None."""
        return None

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by index into ``model.layers`` (negative counts from the end); one of
        the two, as Keras, which raises ValueError for both, neither or an index past the end. A
        model nested in this one is found by its name, as in Keras; unlike Keras, so are the layers
        inside it (Keras asks for ``model.get_layer('base').get_layer('conv')``, which works here too)."""
        if name is not None and index is not None:
            raise ValueError(f"get_layer takes a layer name or an index, not both; got name={name!r}, index={index!r}")
        entries = self.layers
        if index is not None:
            if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"get_layer: index must be an int; got {index!r}")
            if not -len(entries) <= index < len(entries):
                raise ValueError(f"get_layer: index {index} is out of range: the model has {len(entries)} layers")
            return entries[index]
        if name is None:
            raise ValueError("get_layer needs a layer name or an index, e.g. model.get_layer('dense') or "
                             "model.get_layer(index=0)")
        for layer in (*entries, *self._flat_layers):
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers are {[layer.name for layer in entries]}")

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(self._not_built_message)
        return sum(layer.count_params() for layer in self._flat_layers)

    def _weight_layers(self) -> list:
        """The layers in the order of ``model.weights`` and ``get_weights()``, Keras's: those of
        ``model.layers``, a nested model's in its own order, each layer once -- so that
        ``set_weights(keras_model.get_weights())`` puts each array where Keras has it."""
        if not self.__dict__.get("_nested"):
            return self._flat_layers
        ordered, seen = [], set()
        for entry in self.layers:
            for layer in entry._weight_layers() if isinstance(entry, Model) else [entry]:
                if id(layer) not in seen:
                    seen.add(id(layer))
                    ordered.append(layer)
        held = {id(layer) for layer in self._flat_layers}  # a nested model changed since: what this one runs
        ordered = [layer for layer in ordered if id(layer) in held]
        kept = {id(layer) for layer in ordered}
        return ordered + [layer for layer in self._flat_layers if id(layer) not in kept]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of all weights, layer by layer (Keras's order)."""
        return [w for layer in self._weight_layers() for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        layers = self._weight_layers()
        expected = sum(len(layer.params) for layer in layers)
        if len(weights) != expected:
            raise ValueError(f"this model has {expected} weight arrays; set_weights got {len(weights)}")
        i, checked = 0, []
        for layer in layers:  # every layer's arrays checked before any weight changes
            k = len(layer.params)
            checked.append(layer._checked_weights(weights[i : i + k]))
            i += k
        for layer, stored in zip(layers, checked):
            layer._store_weights(stored)

    @property
    def weights(self) -> list[np.ndarray]:
        """Every weight array itself (not a copy), layer by layer; Keras's ``model.weights``."""
        return [w for layer in self._weight_layers() for w in layer.weights]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        """The weights the optimizer updates (a layer with ``trainable = False``, or in a frozen
        model, contributes none)."""
        frozen = self._frozen_layer_ids()
        return [w for layer in self._weight_layers() if id(layer) not in frozen for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        frozen = self._frozen_layer_ids()
        return [w for layer in self._weight_layers()
                for w in (layer.weights if id(layer) in frozen else layer.non_trainable_weights)]

    @property
    def losses(self) -> list[float]:
        """Keras's ``model.losses``: the penalty of each regularized weight this model trains, layer by
        layer (each shared layer once), as the floats the training loss adds."""
        frozen = self._frozen_layer_ids()
        return [value for layer in self._flat_layers if id(layer) not in frozen for value in layer.losses]

    def to_json(self, **kwargs) -> str:
        """The architecture as a JSON string (:meth:`get_config`); rebuild it with
        :func:`convforge.models.model_from_json`. Not Keras's JSON: Keras cannot read it."""
        import json

        return json.dumps({"class_name": type(self).__name__, "convforge": True, "config": self.get_config()}, **kwargs)

    def astype(self, dtype) -> "Model":
        """Convert weights (and optimizer state) to float32 or float64, in place; returns the model.
        The models nested in it, whose layers are its own, take the dtype too."""
        self.dtype = check_dtype(dtype)
        for layer in self._flat_layers:
            layer._astype(self.dtype)
        self._nested_take_dtype()
        if self.optimizer is not None:
            self.optimizer._astype(self.dtype)
        for entry in self._input_entries():
            entry.dtype = self.dtype
        return self

    def _input_entries(self) -> list:
        return []

    def _nested_take_dtype(self) -> None:
        """The models nested in this one run their layers in this model's dtype now (the layers
        are shared): they take it too, or their own predict would find weights of another dtype."""
        for model in self.__dict__.get("_nested", []):
            if model.dtype != self.dtype:
                model.astype(self.dtype)

    # ================================================================== saving

    def save(self, filepath, overwrite: bool = True) -> None:
        """Save the model to a file; ``overwrite=False`` refuses an existing one (Keras asks on the terminal).

        - ``model.save("model.npz")`` (convforge's format, :mod:`convforge.saving`): architecture,
          weights, compile settings, optimizer state and training progress (epoch, random state,
          history), so that ``fit`` resumes where it stopped.
        - ``model.save("model.keras")`` (Keras 3's format, :mod:`convforge.models.keras_file`;
          needs h5py): architecture, weights, compile settings and the optimizer's state (SGD,
          Adam, AdamW and RMSprop, with a constant rate or one of Keras's schedules; the others
          load fresh, with a warning), which Keras 3's ``keras.models.load_model`` opens. The
          history, epoch count and random state have no place in Keras's format: ``.npz``
          resumes ``fit`` exactly. A Lambda layer cannot be saved so; a layer class of your own
          needs its Keras twin (``custom_objects``) to be opened by Keras.
        """
        _refuse_overwrite(filepath, overwrite)
        (keras_file.writer(filepath, whole_model=True) or state.save_model)(self, filepath)

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Save the weights: to ``.npz`` (with the architecture, to check on load) or, for a name
        ending in ``.weights.h5``, in Keras 3's format (Keras's ``model.load_weights`` reads it;
        needs h5py); ``overwrite`` as in :meth:`save`."""
        _refuse_overwrite(filepath, overwrite)
        (keras_file.writer(filepath, whole_model=False) or state.save_weights)(self, filepath)

    def load_weights(self, filepath, skip_mismatch=False) -> None:
        """Load weights saved by ``save_weights`` or ``save`` into this model (same architecture):
        convforge's ``.npz``, or Keras 3's ``.weights.h5`` and ``.keras`` (written by Keras or by
        convforge; matched by Keras's rule, each layer's class and place in ``model.layers``).
        ``skip_mismatch``: Keras's default False only (a mismatch is a ModelFileError)."""
        if skip_mismatch is not False:
            raise TypeError(
                f"convforge does not support the argument 'skip_mismatch' of {type(self).__name__}.load_weights "
                f"(got {skip_mismatch!r}; only Keras's default False): convforge loads weights into the architecture "
                "they were saved from; copy the arrays that fit with layer.set_weights")
        if keras_file.is_keras_weights_file(filepath) or keras_file.is_keras_file(filepath):
            keras_file.load_keras_weights(self, filepath)
            return
        state.load_weights(self, filepath)

    def export(self, filepath, format="onnx", verbose=None, input_signature=None, *, opset=None,  # noqa: A002
               input_layout=None, opset_version=None) -> None:
        """Write the model for deployment in another runtime, as Keras's ``model.export``.

        Only ``format='onnx'`` (needs the ``onnx`` package): one ONNX model that
        onnxruntime runs with ``predict``'s results; ``opset`` 13 to 21 (default
        17), ``input_layout`` ``'channels_last'``/``'channels_first'`` (default: the
        model's own). See :mod:`convforge.onnx`; ``convforge.load_model`` reads it back.

        Keras's arguments work as there, so that Keras code runs: ``opset_version`` is
        Keras's name for ``opset``; ``verbose=True`` prints where the file went (``None``,
        Keras's default, is silent here, as convforge's other file writes);
        ``input_signature`` must be None: the graph takes the model's built input shapes,
        with a dynamic batch.
        """
        if format != "onnx":
            raise ValueError(f"format must be 'onnx' (the only export format convforge writes); got {format!r}")
        if input_signature is not None:
            raise ValueError(
                "convforge exports the model's own input shapes (the batch dynamic): input_signature must be None; "
                "build the model for other input sizes"
            )
        if opset is not None and opset_version is not None:
            raise TypeError("opset and opset_version (Keras's name) are the same argument: give one")
        from ..onnx import DEFAULT_OPSET, export_onnx

        opset = next((o for o in (opset, opset_version) if o is not None), DEFAULT_OPSET)
        export_onnx(self, filepath, opset=opset, input_layout=input_layout)
        if verbose:
            print(f"Saved artifact at '{os.fspath(filepath)}'.")


# Merges whose outputs keep their inputs' features in place (a Flatten's order passes through).
_ELEMENTWISE_MERGES = (Add, Average, Maximum, Minimum, Multiply, Subtract)


def _spread(inputs: list) -> list:
    """A merge's inputs whose features are matched value by value: a single value (a per-sample
    gate, (batch, 1)) is broadcast over the others and leaves their order as it is."""
    wide = [t for t in inputs if t._internal[0] > 1]
    return wide or inputs


def check_model_name(name, default: str) -> str:
    """A model's ``name=``: for None or "", ``default`` numbered in the process as Keras numbers
    its models (sequential, sequential_1, ...: two unnamed models in one graph had one name, and
    its .keras file loaded in neither library), else a string without '/' (Keras's rule: the
    name goes into weight paths, the summary's title and the model file's description)."""
    if name is None or (isinstance(name, str) and not name):
        return unique_name(default)
    if not isinstance(name, str) or "/" in name:
        raise ValueError(f"name must be a string without '/'; got {name!r} ({type(name).__name__})")
    return name


def check_dtype(dtype) -> np.dtype:
    """float32 or float64 (names, NumPy types or dtypes); ``None`` is float32, Keras's default."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    # "is None" first: a dtype compares equal to None (np.dtype(None) is float64), so without it
    # Sequential(dtype="banana") became a model of dtype None.
    if dt is None or dt not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return dt


# ====================================================================== the graph


class _Step:
    """One node of the model, as the executor runs it."""

    __slots__ = ("node", "layer", "call", "inputs", "out", "many", "backward", "fused", "shared", "relu_next",
                 "relu_done", "overwrites_dy", "moving_statistics", "identity_in_training", "inference_in_training",
                 "frozen_augmentation")

    def __init__(self, node, call, inputs, out):
        self.node, self.layer, self.call = node, node.layer, call
        self.inputs, self.out, self.many = inputs, out, node.many
        self.backward = True  # run in the backward pass (set by _plan_backward)
        self.fused = False  # a softmax head trained from its logits (set by _resolve_loss_path)
        self.shared = False  # its layer has other nodes in this model
        # Training only, set by _plan_backward: a BatchNormalization or Add that also applies the
        # ReLU after it (layers/fusion.py), and that ReLU, which then passes x and dy through. On the
        # model's steps, not on the layers: a layer may belong to several models.
        self.relu_next = False
        self.relu_done = False
        # A BatchNormalization in training may write its input gradient over its dy when the
        # model owns dy (Functional._owned): set by _plan_backward.
        self.overwrites_dy = False
        # A BatchNormalization of a base(x, training=False) call: in training too, normalised with
        # its moving statistics, as Keras's guide describes (BatchNormalization._forward).
        # Dropout, the noise and the augmentation layers of such a call: in training too, what
        # they are at inference, the identity (forward and backward).
        self.as_in_inference(bool(getattr(node, "inference", False)))

    def as_in_inference(self, inference: bool) -> None:
        """Train this node as the layer runs at inference (``base(x, training=False)``; gradcheck's
        ``training=False``), or as it trains: the two flags above."""
        self.moving_statistics = inference and isinstance(self.layer, BatchNormalization)
        augmentation = isinstance(self.layer, _Augmentation)
        resamples = augmentation and not getattr(self.layer, "_identity_at_inference", True)
        self.identity_in_training = inference and isinstance(self.layer, (Dropout, _NoiseLayer, _Augmentation)) \
            and not resamples
        # RandomCrop, whose inference resizes: that path, trained (its backward is the resize's).
        self.inference_in_training = inference and resamples
        # A model called on arrays without training augments, but not in a node a training=False
        # call froze (Keras leaves those as they are).
        self.frozen_augmentation = augmentation and bool(getattr(self.node, "inference", False))


def _outputs_logits(layer: Layer, loss) -> bool:
    """Does a built-in ``layer`` without softmax/sigmoid feed a loss that wants probabilities?"""
    wants_probabilities = isinstance(loss, (losses_module._Crossentropy, losses_module.BinaryCrossentropy,
                                            losses_module.CategoricalFocalCrossentropy))
    if not wants_probabilities or loss.from_logits or not type(layer).__module__.startswith("convforge."):
        return False
    # (a 1-D convolution's activation is the 2-D layer's it runs on)
    holder = getattr(layer, "_inner", layer)
    activation = layer if isinstance(layer, _ActivationLayer) else getattr(holder, "activation", None)
    return not isinstance(activation, (Softmax, Sigmoid))


def _loss_weight(value, output: str) -> float:
    """One output's ``loss_weights`` entry: a finite number (negative allowed, as in Keras). A NaN or
    an infinity would make every total loss NaN and every batch be skipped as diverged."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"compile loss_weights: the weight of output {output!r} must be a number; got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"compile loss_weights: the weight of output {output!r} must be finite; got {value!r}")
    return float(value)


def _as_list(value, what: str) -> tuple[list, bool]:
    if isinstance(value, dict):
        raise NotImplementedError(f"{what} given as a dict: pass a tensor or a list of tensors")
    if isinstance(value, (list, tuple)):
        return list(value), False
    return [value], True


def _topological_nodes(inputs: list, outputs: list) -> list:
    """The nodes that lead from ``inputs`` to ``outputs``, each after those it reads; ValueError for a
    tensor not reachable from the inputs (disconnected) or a cycle."""
    known = {id(t) for t in inputs}
    order, state_of = [], {}
    for out in outputs:
        stack = [(out, None)]
        while stack:
            t, path = stack.pop()
            if path == "done":  # post-order marker: t is a node here
                state_of[id(t)] = "done"
                order.append(t)
                continue
            if id(t) in known:
                continue
            node = t._node
            if node is None or isinstance(node.layer, InputLayer):
                names = [i.name for i in inputs]
                raise ValueError(
                    f"Graph disconnected: the outputs depend on input tensor {t.name!r} (shape {t.shape}), which is "
                    f"not among the model's inputs {names}"
                )
            mark = state_of.get(id(node))
            if mark == "done":
                continue
            if mark == "open":
                raise ValueError(f"the graph has a cycle through layer {node.layer.name!r} ({type(node.layer).__name__})")
            state_of[id(node)] = "open"
            stack.append((node, "done"))
            stack.extend((u, None) for u in reversed(node.inputs))
    return order


def _checked_graph(config: dict, n_layers: int, what: str) -> tuple[list, list, list]:
    """The ``nodes``, ``inputs`` and ``outputs`` of a graph config (:meth:`Functional.get_config`),
    checked for their form: each node ``[layer index, [refs], many]``, each ref ``[layer name, call,
    output]``. ValueError naming the entry, not the KeyError/IndexError a replay would meet."""

    def is_index(v, stop=None):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v < (stop or 2**62)

    def is_ref(r):
        return isinstance(r, (list, tuple)) and len(r) == 3 and isinstance(r[0], str) and is_index(r[1]) and is_index(r[2])

    nodes = config.get("nodes")
    if not isinstance(nodes, list):
        raise ValueError(f"{what} must have a 'nodes' list; got {nodes!r:.100}")
    for n, node in enumerate(nodes):
        if not (isinstance(node, (list, tuple)) and len(node) == 3 and is_index(node[0], n_layers)
                and isinstance(node[1], (list, tuple)) and node[1] and all(is_ref(r) for r in node[1])
                and isinstance(node[2], bool) and (node[2] or len(node[1]) == 1)):
            raise ValueError(f"{what}: node {n} must be [layer index below {n_layers}, [[layer name, call, output], "
                             f"...], many (bool)]; got {node!r:.150}")
    ends = []
    for key in ("inputs", "outputs"):
        refs = config.get(key)
        if not isinstance(refs, list) or not refs or not all(is_ref(r) for r in refs):
            raise ValueError(f"{what} must have an '{key}' list of [layer name, call, output]; got {refs!r:.150}")
        ends.append(refs)
    return nodes, ends[0], ends[1]


class Functional(Model):
    """A model that is a graph of layers, from ``convforge.Model(inputs, outputs)``.

    Parameters
    ----------
    inputs : KerasTensor or list of KerasTensor
        From ``convforge.Input(...)`` (or tensors inside another model's graph).
    outputs : KerasTensor or list of KerasTensor
    name : str
        Default ``'functional'``.
    trainable : bool
        False freezes every layer of the graph (``model.trainable = False``).

    ``predict``/``__call__`` return one array for a single output tensor and a
    list for a list of outputs; ``fit``/``evaluate`` take ``x`` as one array, a
    list (``model.inputs`` order) or a dict by input name, and ``y`` likewise
    by output. See :mod:`convforge.models.functional` for the semantics.
    """

    _runnable = True
    _not_built_message = "a functional model is built when it is made"
    # How the model's user sees its images: a functional model's are channels-last; a Sequential
    # sets its executor's (Sequential._record_graph).
    _api_format = "channels_last"

    def __init__(self, inputs, outputs, name: str | None = None, trainable: bool = True, *, _executor: bool = False,
                 **kwargs):
        # (_executor: the graph a Sequential runs itself on, which may read channels-first images)
        for key in kwargs:
            raise NotImplementedError(f"Model: Keras's argument {key!r} is not supported by convforge")
        Trainer.__init__(self)
        self.name = check_model_name(name, "functional")
        in_list, self._single_input = _as_list(inputs, "inputs")
        out_list, self._single_output = _as_list(outputs, "outputs")
        # Outputs given as a tuple come back as one (predict, model.output), as in Keras.
        self._outputs_tuple = isinstance(outputs, tuple) and not self._single_output
        for what, tensors in (("inputs", in_list), ("outputs", out_list)):
            if not tensors:
                raise ValueError(f"Model needs at least one tensor in {what}")
            for i, t in enumerate(tensors):
                if not isinstance(t, KerasTensor):
                    raise TypeError(
                        f"Model {what}[{i}] is {type(t).__name__} {t!r:.80}, not a symbolic tensor: pass tensors made "
                        "by convforge.Input(...) and by calling layers on them"
                    )
        if len({id(t) for t in in_list}) != len(in_list):
            raise ValueError(f"Model inputs list one tensor twice: {[t.name for t in in_list]}")
        if not _executor and any(t._format == "channels_first" and len(t._internal) == 3 for t in in_list + out_list):
            raise NotImplementedError(
                "Model: these are tensors of a Sequential that reads channels-first images, and functional models "
                "are channels-last; for every layer's output of such a model (its feature maps) use "
                "model.activations(x), channels-first as the model reads them"
            )
        # An input made by a layer (Model(encoder_output, ...), a trained model's tail) stands in
        # for an Input of its shape, as Keras's clone: the graph is walked from the tensor itself,
        # and the model lists, summarises and saves the Input.
        self._walk_inputs = in_list
        self._input_alias: dict = {}
        self.inputs: list[KerasTensor] = [self._stand_in(t) for t in in_list]
        self.outputs: list[KerasTensor] = out_list
        nodes = _topological_nodes(in_list, out_list)
        reached = {id(u) for node in nodes for u in node.inputs} | {id(t) for t in out_list}
        for i, t in enumerate(in_list):
            if id(t) not in reached:
                raise ValueError(
                    f"input {i} ({t.name!r}, shape {t.shape}) is not connected to any output: every model input must "
                    "be used"
                )
        self.dtype = common_dtype(in_list, "the model inputs")
        self._nodes = nodes
        self._flat_layers = self._collect_layers()
        # The calls of models in this graph that it holds whole (one entry of model.layers each),
        # and those models, whose trainable the setter sets with this model's.
        held = {id(node) for node in nodes}
        self._whole_calls = {id(node.nested_call): node.nested_call for node in nodes if node.nested_call is not None
                             and all(id(made) in held for made in node.nested_call.nodes)}
        self._nested = list({id(call.model): call.model for call in self._whole_calls.values()}.values())
        self._node_ids: dict = {}  # layer -> its nodes in this model, in call order (Keras's node index)
        for node in sorted(nodes, key=lambda node: node.seq):  # call order, as Keras numbers them
            self._node_ids.setdefault(id(node.layer), []).append(node)
        self.built = True
        for layer in self._flat_layers:
            if layer.dtype != self.dtype or any(p.dtype != self.dtype for p in layer.params.values()):
                layer._astype(self.dtype)
        self._nested_take_dtype()
        if not _executor:  # a Sequential tells its own (it may read channels-first images)
            self._note_flatten_orders()
        if trainable is not True:  # Keras's argument: model.trainable = False (checked there)
            self.trainable = trainable
        self._entries = [
            _Entry(display_shape(t._internal), t._internal, "nhwc" if len(t._internal) == 3 else "none", self.dtype)
            for t in in_list
        ]
        self._tensor_index = {id(t): i for i, t in enumerate(in_list)}
        self._tensor_index.update({id(t): i for i, t in enumerate(self.inputs)})
        for node in nodes:
            for t in node.outputs:
                self._tensor_index[id(t)] = len(self._tensor_index)
        self._outputs_index = [self._tensor_index[id(t)] for t in out_list]
        taken: set = set()  # one layer's output listed twice gets name, name_1 (Keras's rule)
        # An output a nested model returned is named after the model, as in Keras (Model(x, base(x))
        # has the output 'base', whose loss logs as 'base_loss').
        self.output_names = [unique_name(t._from_model or t._node.layer.name, taken) for t in out_list]
        self.input_names = [t._node.layer.name if t._node and isinstance(t._node.layer, InputLayer) else t.name
                            for t in self.inputs]
        self._sum_buffers: dict = {}
        self._gated_sums: set = set()  # tensors whose gradient parts a fused Add -> ReLU sums (_accumulate)
        self._steps: list[_Step] = []
        self._make_steps()
        self._backward_steps: list = []
        self._grad_calls: list = []
        self._regularized: list = []
        self._shared_plan: list = []
        self._trainable_plan: list = []
        self._heads: list = []  # per output: (Loss or None, weight, fused), by _resolve_loss_path
        self._loss_weights = [1.0] * len(out_list)
        self._loss_weights_arg = None
        self._output_loss_means: list = []
        self._metric_slots: list = []  # (log name, output index, Metric)
        self._last_head_losses: list = []
        self._plan_backward()

    def _stand_in(self, t: KerasTensor) -> KerasTensor:
        """``t`` if an Input made it, else a new Input's tensor of its shape standing in for it."""
        if t._node is not None and isinstance(t._node.layer, InputLayer):
            return t
        layer = InputLayer(shape=display_shape(t._internal), dtype=t.dtype)
        if layer.output._internal != t._internal:  # not expected: images are NCHW inside everywhere
            raise ValueError(f"Model input {t.name!r} of shape {t.shape} cannot stand as an Input")
        self._input_alias[id(t)] = layer.output
        return layer.output

    def _as_model_tensor(self, t: KerasTensor) -> KerasTensor:
        """The tensor this model names for ``t``: the Input standing in for it where it is one."""
        return self._input_alias.get(id(t), t)

    def _collect_layers(self) -> list:
        """The layers in Keras's order: by depth (distance to the outputs), deepest first, ties in the
        order a walk from the outputs first meets them -- so summary rows and get_weights() match Keras."""
        layers = self._keras_order(lambda node: node)
        counts = collections.Counter(layer.name for layer in layers)
        duplicated = sorted(n for n, k in counts.items() if k > 1)
        if duplicated:
            raise ValueError(
                f"All layer names should be unique; the model has several layers named {duplicated}: give them "
                "distinct name= arguments"
            )
        return layers

    def _keras_order(self, unit_of) -> list:
        """The entries of the graph in Keras's order (see :meth:`_collect_layers`), where
        ``unit_of(node)`` is what a node counts as: itself (its layer is the entry), or the call of
        a nested model holding it (the model is the entry; the call is one node of the graph, as
        in Keras, whose depth and walk order it takes).

        Keras's ``map_graph``, step by step: a depth-first walk from the outputs (inputs in
        order) numbers each entry when first met and lists the units after their inputs; then,
        from the outputs back, each unit's depth is the largest of its consumers' plus one, raised
        to its entry's depth so far (a shared layer's later call lifts what feeds it); entries
        sort by depth, deepest first, then by that number. A different rule gave other orders
        for nested models whose outputs are consumed before their last layer runs, and a .keras
        file's weights then went to other layers."""
        def entry(unit):
            return unit.model if isinstance(unit, NestedCall) else unit.layer

        model_inputs = {id(t) for t in self._walk_inputs}
        index: dict = {}  # entry -> when the walk first met it
        finished: set = set()
        topological: list = []  # units, each after the units it reads
        for out in self.outputs:
            stack = [(out, False)]
            while stack:  # Keras's recursive _build_map_helper, iteratively (deep graphs)
                t, done = stack.pop()
                unit = unit_of(t._node)
                if done:
                    if id(unit) not in finished:
                        finished.add(id(unit))
                        topological.append(unit)
                    continue
                if id(unit) in finished:
                    continue
                is_input = isinstance(unit, Node) and isinstance(unit.layer, InputLayer)
                if not is_input and id(t) in model_inputs:  # a model cut inside: the walk stops here
                    continue
                index.setdefault(id(entry(unit)), len(index))
                stack.append((t, True))
                if not is_input:
                    stack.extend((u, False) for u in reversed(unit.inputs))
        in_graph = {id(unit) for unit in topological}
        unit_depth: dict = {}
        depth: dict = {}  # per entry
        cut_depth: dict = {}  # a model input made inside another graph: its consumers' depth + 1
        for unit in reversed(topological):
            d = max(unit_depth.get(id(unit), 0), depth.get(id(entry(unit)), 0))
            depth[id(entry(unit))] = d
            unit_depth[id(unit)] = d
            for u in unit.inputs:
                producer = unit_of(u._node)
                if id(producer) in in_graph:
                    unit_depth[id(producer)] = max(d + 1, unit_depth.get(id(producer), 0))
                elif id(u) in model_inputs:
                    cut_depth[id(u)] = max(d + 1, cut_depth.get(id(u), 0))
        entries = [entry(unit) for unit in topological]
        for t, walked in zip(self.inputs, self._walk_inputs):
            layer = t._node.layer
            if id(layer) not in depth:  # an Input standing in for a tensor made elsewhere
                depth[id(layer)] = cut_depth.get(id(walked), 0)
                index[id(layer)] = -1
                entries.append(layer)
        unique = list({id(e): e for e in entries}.values())
        unique.sort(key=lambda e: (-depth[id(e)], index[id(e)]))
        return unique

    def _make_steps(self) -> None:
        """The executor's list, with a weight-sharing copy for every call of a layer after its first."""
        steps, calls = [], {}
        for node in self._nodes:
            first = id(node.layer) not in calls
            call = node.layer if first else call_copy(node.layer)
            calls.setdefault(id(node.layer), []).append(call)
            step = _Step(node, call, [self._tensor_index[id(t)] for t in node.inputs],
                         self._tensor_index[id(node.outputs[0])])
            steps.append(step)
        for step in steps:
            step.shared = len(calls[id(step.layer)]) > 1
        self._steps = steps
        self._calls = calls
        # The tensors each step reads for the last time: _run lets them go (inference memory stays
        # near the widest cut of the graph instead of the sum of all its activations).
        self._free_after = self._last_reads(steps)
        self._inference_steps = self._fold_for_inference(steps)
        self._inference_free_after = self._last_reads(self._inference_steps)
        self._compiled = None  # the inference plan (models/compiled.py), made at the first predict
        self._compiled_logits = None  # the same with fused heads' logits, for evaluate's loss
        self._relu_generation = activation_layers.relu_settings_generation()

    def _last_reads(self, steps) -> list:
        """For each step, the tensors no later step reads (model outputs excepted)."""
        last = {}
        for i, step in enumerate(steps):
            for index in step.inputs:
                last[index] = i
        keep = set(self._outputs_index)
        free_after = [[] for _ in steps]
        for index, i in last.items():
            if index not in keep:
                free_after[i].append(index)
        return free_after

    def _check_relu_settings(self) -> None:
        """Plan the fusions again if a ReLU's max_value, negative_slope or threshold was set since
        they were made: a ReLU fused as a plain max(x, 0) (folded into the conv and
        BatchNormalization before it, applied by an Add, lowered into the inference plan) would
        ignore it. One integer compared per pass."""
        if self._relu_generation == activation_layers.relu_settings_generation():
            return
        self._relu_generation = activation_layers.relu_settings_generation()
        self._inference_steps = self._fold_for_inference(self._steps)
        self._inference_free_after = self._last_reads(self._inference_steps)
        self._compiled = self._compiled_logits = None
        self._plan_backward()

    def _fold_for_inference(self, steps) -> list:
        """The steps inference runs: each linear Conv2D -> BatchNormalization (-> ReLU) chain whose
        inner tensors nothing else reads becomes one folded conv (layers/fusion.py)."""
        readers = collections.Counter(index for step in steps for index in step.inputs)
        reader_of = {index: k for k, step in enumerate(steps) for index in step.inputs}
        keep = set(self._outputs_index)

        def sole_reader(step):
            if step.out in keep or readers[step.out] != 1:
                return None
            k = reader_of[step.out]
            return None if steps[k].many else k

        folded, absorbed = [], set()
        for k, step in enumerate(steps):
            if k in absorbed:
                continue
            kb = sole_reader(step)
            if kb is None or not fusion.foldable(step.call, steps[kb].call):
                folded.append(step)
                if kb is not None and fusion.is_plain_relu(steps[kb].call) and fusion.returns_new_array(step.call, len(step.inputs)):
                    # Its input is an array this step made, which nothing else reads: overwrite it.
                    relu = steps[kb]
                    absorbed.add(kb)
                    folded.append(_Step(relu.node, fusion.InPlaceReLU(relu.call), relu.inputs, relu.out))
                continue
            chain = [kb]
            kr = sole_reader(steps[kb])
            if kr is not None and fusion.is_plain_relu(steps[kr].call):
                chain.append(kr)
            # Moving the chain up to the conv's place keeps the order valid: its only input is the conv's.
            absorbed.update(chain)
            call = fusion.FoldedConvBatchNorm(step.call, steps[kb].call, steps[kr].call if len(chain) == 2 else None)
            folded.append(_Step(step.node, call, step.inputs, steps[chain[-1]].out))
        return folded

    # ================================================================== structure

    @property
    def input(self):
        """Keras's ``model.input``: the input tensor(s) as given to ``Model(...)`` -- one tensor, or a list
        (``convforge.Model(base.input, base.get_layer("conv2").output)``, a feature extractor)."""
        return self.inputs[0] if self._single_input else list(self.inputs)

    @property
    def output(self):
        """Keras's ``model.output``: the output tensor(s) as given to ``Model(...)``."""
        if self._single_output:
            return self.outputs[0]
        return tuple(self.outputs) if self._outputs_tuple else list(self.outputs)

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if self._single_input else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if self._single_output else shapes

    def _input_entries(self) -> list:
        return self._entries

    def _data_format(self) -> str:
        return "channels_last"

    def build(self, input_shape=None) -> None:
        """Nothing to do: a functional model is built when it is made (Keras's API)."""

    def _build_from_data(self, x) -> None:
        pass

    def astype(self, dtype) -> "Functional":
        super().astype(dtype)
        self._make_steps()  # the copies of shared layers take the new dtype
        self._plan_backward()
        return self

    def summary(self, line_length: int | None = None, positions=None, print_fn=None, expand_nested: bool = False,
                show_trainable: bool = False, layer_range=None) -> None:
        """Print Keras's table of layers, output shapes, parameter counts and what each layer is connected to
        (a chain of layers, each called once on the one before, has no "Connected to" column, as in Keras).

        ``print_fn`` receives the whole table as one string (default ``print``). ``positions``,
        ``show_trainable`` (a "Trainable" column: Y, N, or - for a layer without weights) and
        ``layer_range`` (two layer names, regular expressions: the rows from the first to the last)
        are Keras's. A model called inside this one (``base(inputs)``) is one row, as in Keras, and
        with ``expand_nested=True`` its layers follow it, one a row (marked ``└``).
        """
        if not isinstance(expand_nested, (bool, np.bool_)):
            raise TypeError(f"summary: expand_nested must be True or False; got {expand_nested!r}")
        consumers: dict = {}
        for node in self._nodes:
            for t in node.inputs:
                consumers[id(t)] = consumers.get(id(t), 0) + 1
        chain = (len(self.inputs) == 1 and len(self.outputs) == 1
                 and all(len(node.inputs) == 1 for node in self._nodes)
                 and all(len(nodes) == 1 for nodes in self._node_ids.values())
                 and all(count == 1 for count in consumers.values()))

        def commas(connected: list) -> list:
            return [c + "," for c in connected[:-1]] + connected[-1:]  # Keras's

        def listed(nodes, inner: bool) -> list:
            return commas([self._connection(t, inner) for node in nodes for t in node.inputs])

        rows = []
        for entry in self.layers:
            if isinstance(entry, InputLayer):
                rows.append((entry, f"{entry.name} ({type(entry).__name__})", shape_str(entry.output.shape), ["-"]))
            elif isinstance(entry, Model):  # a nested model: a row for its calls, then its layers if asked
                calls = self._nested_calls(entry)
                connected = commas([self._connection(t, False) for call in calls for t in call.inputs])
                rows.append((entry, f"{entry.name} ({type(entry).__name__})", shape_str(calls[0].outputs[0].shape),
                             connected))
                if expand_nested:
                    rows.extend(nested_rows(
                        entry, lambda layer: shape_str(self._node_ids[id(layer)][0].outputs[0].shape),
                        lambda layer: listed(self._node_ids[id(layer)], True)))
            else:
                # Its own calls here: those inside a nested model's call are that model's.
                nodes = [node for node in self._node_ids.get(id(entry), []) if self._node_owner(node) is None]
                rows.append((entry, f"{entry.name} ({type(entry).__name__})", shape_str(nodes[0].outputs[0].shape),
                             listed(nodes, False)))
        print_graph_summary(self, rows, chain, line_length, positions, print_fn, show_trainable, layer_range)

    def _connection(self, t, inner: bool) -> str:
        """A tensor as the "Connected to" column names it, Keras's ``layer[node][tensor]``: a nested
        model's output as ``base[call][output]`` unless ``inner`` (a row of that model's own layers)."""
        t = self._as_model_tensor(t)
        call = t._node.nested_call
        if call is not None and not inner and id(call) in self._whole_calls:
            position = next((i for i, out in enumerate(call.outputs) if out is t), None)
            if position is not None:
                return f"{call.model.name}[{self._nested_calls(call.model).index(call)}][{position}]"
        return f"{t._node.layer.name}[{self._node_number(t._node)}][{t._index}]"

    def _node_owner(self, node):
        call = node.nested_call
        return call.model if call is not None and id(call) in self._whole_calls else None

    @property
    def layers(self) -> list:
        """Keras's ``model.layers`` (see :attr:`Model.layers`): a nested model's call counts as
        one node of the graph for the order, as in Keras."""
        if not self._nested:
            return list(self._flat_layers)
        return self._keras_order(lambda node: node.nested_call if id(node.nested_call) in self._whole_calls else node)

    def _note_flatten_orders(self) -> None:
        """Tell each Dense layer, and each BatchNormalization, LayerNormalization or PReLU on
        flattened maps (FeatureOrdered), whether a Flatten of images comes before it -- through
        layers that keep the features' order, and through a Concatenate or an elementwise merge
        of such features, which pass each part's order on -- so that its get_weights/set_weights
        speak Keras's order (:func:`~convforge.layers.core.keras_flatten_order`); one called
        after several, with different orders, keeps its stored order (it warns). The walk stops
        at the model's inputs: a layer reading them tells nothing (a head made to sit after a
        Flatten elsewhere, or a tail cut after one, takes that model's order)."""
        model_inputs = {id(t) for t in self._walk_inputs}
        unknown = object()  # the caller's features: in no order this model knows
        memo: dict = {}

        def passes_order(t) -> bool:  # a layer that keeps its input's features where they are
            layer = t._node.layer
            return len(t._node.inputs) == 1 and (layer._keeps_feature_order or (
                isinstance(layer, FeatureOrdered) and not isinstance(layer, Dense) and len(t._internal) == 1))

        def order_of(t):
            """Where Keras's features of ``t`` sit in convforge's (None: the same place), or unknown."""
            while id(t) not in model_inputs and passes_order(t):  # a loop: chains may be long
                t = t._node.inputs[0]
            if id(t) in memo:
                return memo[id(t)]
            if id(t) in model_inputs:
                found = unknown
            else:
                layer, inputs = t._node.layer, t._node.inputs
                flat = len(t._internal) == 1 and all(len(i._internal) == 1 for i in inputs)
                if isinstance(layer, Flatten):  # this model's own Flatten
                    image = inputs[0]
                    found = keras_flatten_order(tuple(image._internal),
                                                getattr(image, "_format", None) or "channels_last", layer.data_format)
                elif flat and isinstance(layer, Concatenate):
                    parts = [order_of(i) for i in inputs]
                    if all(p is unknown for p in parts):
                        found = unknown
                    else:  # each part's order, shifted to where the part sits
                        pieces, at = [], 0
                        for i, p in zip(inputs, parts):
                            size = i._internal[0]
                            pieces.append(at + (np.arange(size) if p is None or p is unknown else p))
                            at += size
                        found = np.concatenate(pieces)
                        found = None if np.array_equal(found, np.arange(found.size)) else found
                elif flat and isinstance(layer, _ELEMENTWISE_MERGES):
                    known = [p for p in (order_of(i) for i in _spread(inputs)) if p is not unknown]
                    found = unknown if not known else known[0] if same_flatten_orders(known) else None
                else:
                    found = None  # new features (a Dense's outputs): the same order in both
            memo[id(t)] = found
            return found

        def known(t):  # the caller's features taken as they are, for the checks below
            order = order_of(t)
            return None if order is unknown else order

        for node in self._nodes:  # layers no weight order can put right: the model is not Keras's
            layer, inputs = node.layer, node.inputs
            if not all(len(t._internal) == 1 for t in inputs):
                continue
            if len(inputs) == 1 and layer._loses_flatten_order:
                if known(inputs[0]) is not None:
                    warn_flatten_order(layer, layer._loses_flatten_order)
            elif isinstance(layer, (*_ELEMENTWISE_MERGES, Dot)) and len(inputs) > 1:
                parts = [known(t) for t in _spread(inputs)]
                if any(p is not None for p in parts) and not same_flatten_orders(parts):
                    warn_flatten_order(layer, "combines, value by value, features in other orders with")

        found: dict = {}
        for node in self._nodes:
            if not isinstance(node.layer, FeatureOrdered):
                continue
            orders = found.setdefault(id(node.layer), (node.layer, []))[1]
            if not isinstance(node.layer, Dense) and len(node.inputs[0]._internal) != 1:
                orders.append(None)  # on images or sequences: no Flatten's order to take
                continue
            order = order_of(node.inputs[0])
            if order is not unknown:
                orders.append(order)
        for layer, orders in found.values():
            layer._take_flatten_order(self, orders)

    def _nested_calls(self, model) -> list:
        """The calls of ``model`` (nested in this graph) in call order: :class:`NestedCall` records."""
        calls: dict = {}
        for node in sorted(self._nodes, key=lambda n: n.seq):
            if node.nested_model is model and id(node.nested_call) in self._whole_calls:
                calls.setdefault(id(node.nested_call), node.nested_call)
        return list(calls.values())

    def _node_number(self, node) -> int:
        """The node's index among its layer's nodes in this model (Keras's ``layer[node][tensor]``)."""
        if isinstance(node.layer, InputLayer):
            return 0
        return self._node_ids[id(node.layer)].index(node)

    # ================================================================== the passes

    def _run(self, xbs: list, training: bool, logits: bool) -> list:
        """The tensors' values for a batch (a list indexed like ``_tensor_index``); the outputs are
        there, tensors no step reads any more are dropped on the way."""
        self._check_relu_settings()
        values = [None] * len(self._tensor_index)
        values[: len(xbs)] = xbs
        steps, free_after = (self._steps, self._free_after) if training else (self._inference_steps, self._inference_free_after)
        for step, done in zip(steps, free_after):
            x = [values[i] for i in step.inputs] if step.many else values[step.inputs[0]]
            if logits and step.fused:
                values[step.out] = step.call._forward_logits(x, training)
            elif training and step.identity_in_training:
                values[step.out] = x
            elif (training and step.inference_in_training) or (step.frozen_augmentation and not training
                                                               and augmentation_layers.training_unset_now()):
                with augmentation_layers.as_at_inference():
                    values[step.out] = step.call.forward(x, training)
            elif training and step.moving_statistics:
                values[step.out] = step.call._forward(x, True, step.relu_next, moving_statistics=True)
            elif training and step.relu_next:
                values[step.out] = step.call._forward_relu(x, training)
            elif training and step.relu_done:
                values[step.out] = x  # rectified by the BatchNormalization or Add before it
            else:
                values[step.out] = step.call.forward(x, training)
            for index in done:
                values[index] = None
        return values

    def _inference_plan(self, logits: bool = False):
        """The compiled inference pass (models/compiled.py), made again when a weight array or a
        setting it was made from was replaced; None where not even the first step compiles.
        ``logits``: the plan whose fused softmax heads give their logits (evaluate's loss)."""
        self._check_relu_settings()
        attribute = "_compiled_logits" if logits else "_compiled"
        compiled = getattr(self, attribute)
        if compiled is False:
            return None
        if compiled is None or not compiled.current():
            try:
                compiled = compile_inference(self, self.dtype, logits=logits)
            except (ValueError, TypeError):  # a step the plan refuses: the layers run it as always
                compiled = None
            setattr(self, attribute, False if compiled is None else compiled)
        return compiled

    def _planned_logits(self, xbs):
        """evaluate's forward through the compiled plan: the output tensors' values (the fused
        heads' logits) keyed by tensor index, or None where the plan does not compute every
        output itself or cannot take ``xbs`` as they are (the layers then run)."""
        plan = self._inference_plan(logits=True)
        if plan is None or plan._direct is None or not plan.accepts(xbs):
            return None
        return dict(zip(self._outputs_index, plan.run(xbs)))

    def _inference_may_use_blas(self) -> bool:
        plan = self._inference_plan()
        return plan is None or bool(plan._tail)

    def _compiled_plan(self):
        return self._compiled

    def _whole_plan(self):
        plan = self._inference_plan()
        if plan is None or not plan.whole:
            return None  # a Python tail, or one array returned for two outputs (predict copies them apart)
        return plan

    def _trace(self, xbs: list):
        """``(layer, [its inputs], its output)`` for each node in execution order, inference mode."""
        values = [None] * len(self._tensor_index)
        values[: len(xbs)] = xbs
        for step in self._steps:
            inputs = [values[i] for i in step.inputs]
            values[step.out] = step.call.forward(inputs if step.many else inputs[0], False)
            yield step.layer, inputs, values[step.out]

    def _forward(self, xbs: list, training: bool) -> list:
        if not training and not augmentation_layers.training_unset_now():  # (the plans do not augment)
            plan = self._inference_plan()
            if plan is not None and plan.accepts(xbs):
                outs = plan.run(xbs)
                if outs is not None:  # else a later plan declined a Python step's output
                    return outs
        values = self._run(xbs, training, logits=False)
        return [values[i] for i in self._outputs_index]

    def _forward_loss(self, xbs, ybs, training: bool, need_grad: bool, sample_weight=None):
        """``(weighted total loss, outputs as predict gives them, dL/d(each output) or None)``.

        ``sample_weight`` (``(batch,)`` or None) weights every output's per-sample loss. The total
        includes the layers' weight penalties (``kernel_regularizer``), as Keras's; the per-output
        losses (``<output>_loss`` in the logs) do not.
        """
        # Evaluation (no training, no gradient) runs the compiled plan where it computes every
        # output: evaluate of 10,000 images of the example ResNet on 2 threads took 0.90 -> 0.59 s
        # in batches of 32, 1.25 -> 0.57 s in batches of 1,000 (tuned malloc; its chunks, kept
        # Winograd filters, no Python between layers). The loss agrees with the layers' within
        # the algorithms' error bounds, as predict's outputs do.
        values = None if training or need_grad else self._planned_logits(xbs)
        if values is None:
            values = self._run(xbs, training, logits=True)
        # Custom losses need not take sample_weight: it is passed only when there is one.
        weighting = {} if sample_weight is None else {"sample_weight": sample_weight}
        total, outs, dheads, parts = 0.0, [], [], []
        for k, (index, (loss, weight, fused)) in enumerate(zip(self._outputs_index, self._heads)):
            pred = values[index]
            if loss is None:  # no targets, so no metrics: as it is
                outs.append(pred)
                dheads.append(None)
                parts.append(None)
                continue
            # An image output is NCHW inside; the loss and the metrics read it as the user sees it,
            # as their targets are (trainer.prepare_targets): a view, its gradient copied back to
            # NCHW. Keras's cross-entropy of a class per pixel takes the classes on the last axis.
            as_user = pred.ndim == 4 and self._api_format == "channels_last"
            if as_user:
                pred = pred.transpose(0, 2, 3, 1)
            if fused:
                value, d, pred = loss.logits_value_and_grad(pred, ybs[k], need_grad, **weighting)
            else:
                value, d = loss.value_and_grad(pred, ybs[k], need_grad, **weighting)
            if as_user and d is not None:
                d = np.ascontiguousarray(d.transpose(0, 3, 1, 2))
            outs.append(pred)
            parts.append(value)
            total += weight * value
            dheads.append(None if d is None else (d if weight == 1.0 else d * weight))
        self._last_head_losses = parts
        return total + self._regularization_penalty(), outs, dheads

    def _regularization_penalty(self) -> float:
        """The layers' weight penalties (each shared layer once)."""
        return sum(layer.regularization_penalty() for layer in self._flat_layers if layer.regularizers)

    def _accumulate(self, grads: list, index: int, d) -> None:
        """Add ``d`` to the gradient of tensor ``index``: kept as is if it is the first, summed into
        a buffer of the model's when the tensor feeds several layers. The output of a fused
        Add -> ReLU keeps its parts in a list instead: the ReLU passes the list on and the Add's
        backward sums it and applies the ReLU's gradient in one pass, in this same order."""
        if d is None:
            return
        g = grads[index]
        if g is None:
            grads[index] = d
            return
        if index in self._gated_sums:
            grads[index] = (g if isinstance(g, list) else [g]) + [d]
            return
        buf = self._sum_buffers.get(index)
        if buf is None or buf.shape != d.shape or buf.dtype != d.dtype:
            buf = self._sum_buffers[index] = np.empty(d.shape, d.dtype)
        F.add(g, d, out=buf)  # g may be buf itself
        grads[index] = buf

    def _backward(self, dheads: list) -> None:
        for call in self._grad_calls:
            call.grads.clear()
        grads = [None] * len(self._tensor_index)
        for index, d in zip(self._outputs_index, dheads):
            self._accumulate(grads, index, d)
        for step in self._backward_steps:
            dy = grads[step.out]
            if dy is None:  # the output does not reach any loss: its gradient is zero
                t = step.node.outputs[0]
                dy = np.zeros((self._batch_rows(grads), *t._internal), dtype=self.dtype)
            call = step.call
            if step.relu_done or step.identity_in_training:  # (relu_done: the BN or Add before it applies
                dx = dy                                            # its gradient and sums dy's parts)
            elif step.overwrites_dy and self._owned(dy, grads, step.out, dheads):
                dx = call._backward_overwriting(dy)
            else:
                dx = call._backward_logits(dy) if step.fused else call.backward(dy)
            grads[step.out] = None
            if not call.input_grad_needed:
                continue
            if step.many:
                for index, d in zip(step.inputs, dx):
                    self._accumulate(grads, index, d)
            elif grads[step.inputs[0]] is None:  # fan-out 1 (or the first of several): no copy
                grads[step.inputs[0]] = dx
            else:
                self._accumulate(grads, step.inputs[0], dx)
        # A layer called several times: its gradient is the sum over its calls.
        for layer, names, calls in self._shared_plan:
            for name, _ in names:
                parts = [c.grads[name] for c in calls if c.grads.get(name) is not None]
                total = self._sum_buffers.get((id(layer), name))
                if total is None or total.shape != parts[0].shape or total.dtype != parts[0].dtype:
                    total = self._sum_buffers[(id(layer), name)] = np.empty_like(parts[0])
                np.copyto(total, parts[0])
                for p in parts[1:]:
                    total += p
                layer.grads[name] = total
        # The penalties' gradients, once per layer (after a shared layer's calls are summed).
        for layer in self._regularized:
            layer._add_regularization_gradients()

    @staticmethod
    def _owned(dy, grads, index, dheads) -> bool:
        """May a backward write over ``dy``, the gradient of tensor ``index``? Only a plain
        C-contiguous writeable array that shares no memory with any other gradient still to be
        read (an Add hands one array to each of its inputs) nor with the loss's gradients."""
        if type(dy) is not np.ndarray or not dy.flags.c_contiguous or not dy.flags.writeable:
            return False
        for i, g in enumerate(grads):
            if g is None or i == index:
                continue
            for part in g if isinstance(g, list) else (g,):
                if np.may_share_memory(part, dy):
                    return False
        return not any(h is not None and np.may_share_memory(h, dy) for h in dheads)

    def _batch_rows(self, grads) -> int:
        return next((g[0] if isinstance(g, list) else g).shape[0] for g in grads if g is not None)

    def _clear_caches(self) -> None:
        for calls in self._calls.values():
            for call in calls:
                call._clear_cache()

    def _plan_backward(self, frozen: set | None = None) -> None:
        """Which nodes run backward, which compute their input gradient, and the training fusions.
        ``frozen``: the layers that must not train (``_frozen_layer_ids``; a Sequential passes its
        own, this graph being its executor)."""
        if frozen is None:
            frozen = self._frozen_layer_ids()
        needs = [False] * len(self._tensor_index)  # does the loss's gradient w.r.t. this tensor matter?
        consumers = [0] * len(self._tensor_index)
        for index in self._outputs_index:
            consumers[index] += 1
        for step in self._steps:
            for index in step.inputs:
                consumers[index] += 1
        for calls in self._calls.values():
            for call in calls:
                fusion.reset_fusion(call)
        for step in self._steps:
            upstream = any(needs[i] for i in step.inputs)
            step.call.input_grad_needed = upstream
            step.backward = upstream or (id(step.layer) not in frozen and bool(step.layer.trainable_param_names()))
            needs[step.out] = step.backward
        producer = {step.out: step for step in self._steps}
        for step in self._steps:
            step.relu_next = step.relu_done = False
            # The built-in layer with its own backward only: a subclass, or a backward replaced
            # (a test's deliberately broken one), runs as written.
            step.overwrites_dy = (type(step.call) is BatchNormalization and not step.shared
                                  and BatchNormalization.backward is _BUILTIN_BN_BACKWARD)
        self._gated_sums = set()
        for after in self._steps:
            before = None if after.many else producer.get(after.inputs[0])
            # Fused only where `after` is the one consumer of `before`'s output (fan-out 1):
            # ReLU -> MaxPooling2D and BatchNormalization or Add -> ReLU (layers/fusion.py).
            if before is not None and consumers[after.inputs[0]] == 1 and not (after.shared or before.shared):
                fusion.fuse_relu_into_pool(before.call, after.call)
                if fusion.bn_relu_fusable(before.call, after.call):
                    before.relu_next = after.relu_done = True
                    if isinstance(before.call, Add):  # its backward sums the ReLU output's gradient parts
                        self._gated_sums.add(after.out)
        self._trainable_plan = trainable_plan(self._flat_layers, frozen)
        # What _backward walks, worked out once here rather than at every batch.
        self._backward_steps = [step for step in reversed(self._steps) if step.backward]
        self._grad_calls = [call for layer, _ in self._trainable_plan for call in self._calls[id(layer)]]
        self._regularized = [layer for layer, _ in self._trainable_plan if layer.regularizers]
        self._shared_plan = [
            (layer, names, self._calls[id(layer)]) for layer, names in self._trainable_plan if len(self._calls[id(layer)]) > 1
        ]

    def _resolve_loss_path(self, owner=None) -> None:
        """Per output: its loss, weight, and whether a final softmax is fused into its cross-entropy.

        Also warns (once per compile of ``owner``, the model the user compiled: this one or the
        Sequential it runs for) when a probability loss follows a built-in layer without softmax
        or sigmoid, which outputs logits.
        """
        owner = self if owner is None else owner
        heads = []
        producer = {step.out: step for step in self._steps}
        uses = [0] * len(self._tensor_index)
        for step in self._steps:
            for index in step.inputs:
                uses[index] += 1
        for index in self._outputs_index:
            uses[index] += 1
        for step in self._steps:
            step.fused = False
        for k, index in enumerate(self._outputs_index):
            loss, weight = self._head_losses()[k], self._loss_weights[k]
            step = producer.get(index)
            fused = bool(
                step is not None
                and isinstance(loss, losses_module._Crossentropy)
                and not loss.from_logits
                and step.layer._ends_in_softmax()
                and uses[index] == 1
                and not step.many
            )
            if fused:
                step.fused = True
            if (
                step is not None
                and isinstance(loss, losses_module._Crossentropy)
                and loss.from_logits
                and step.layer._ends_in_softmax()
            ):
                warnings.warn(
                    f"the loss has from_logits=True but the last layer {step.layer.name!r} applies a softmax: the loss "
                    "would treat probabilities as logits. Remove the softmax or use from_logits=False.",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
            heads.append((loss, weight, fused))
        self._heads = heads
        self._fused = any(fused for _, _, fused in heads)
        self._warn_if_logits(owner)

    def _warn_if_logits(self, owner) -> None:
        """Warn once per compile of ``owner`` when a probability loss follows a built-in layer without
        softmax or sigmoid: it outputs logits, so ``from_logits=True`` is probably meant."""
        if getattr(owner, "_warned_logits", False):
            return
        producer = {step.out: step for step in self._steps}
        for index, loss in zip(self._outputs_index, self._head_losses()):
            step = producer.get(index)
            if step is not None and _outputs_logits(step.layer, loss):
                owner._warned_logits = True
                warnings.warn(
                    f"the last layer {step.layer.name!r} ({type(step.layer).__name__}) has no softmax or sigmoid, so it "
                    f"outputs logits, but the loss {loss.name} expects probabilities (from_logits=False). You probably "
                    f"meant loss={type(loss).__name__}(from_logits=True), or activation="
                    f"{'sigmoid' if isinstance(loss, losses_module.BinaryCrossentropy) else 'softmax'} on the last layer.",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
                return

    # ================================================================== compile

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, **kwargs) -> None:
        """Choose the optimizer, the loss(es) and the metrics; see the module docstring for several outputs.

        Parameters
        ----------
        optimizer : 'sgd', 'adam', 'rmsprop' or an Optimizer
        loss : a loss, a list (one per output, None for none) or a dict by output name
        metrics : list (one output); with several outputs a list with one entry per output (a metric,
            a list of metrics or None) or a dict by output name, as Keras 3
        loss_weights : list or dict of floats, optional
        """
        # Everything is checked before anything is set: a failed compile leaves the model as it was.
        check_compile_arguments(kwargs)
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        n = len(self.outputs)
        per_output = self._per_output(loss, "loss")
        if per_output is None:
            the_loss = losses_module.get(loss)
        else:
            the_loss = [None if spec is None else losses_module.get(spec) for spec in per_output]
            if all(h is None for h in the_loss):
                raise ValueError("compile: every output's loss is None; give at least one")
        weights = [1.0] * n
        if loss_weights is not None:
            given = self._per_output(loss_weights, "loss_weights")
            if given is None:
                raise TypeError(f"loss_weights must be a list or a dict by output name; got {loss_weights!r}")
            weights = [1.0 if w is None else _loss_weight(w, name) for w, name in zip(given, self.output_names)]
        # Metrics as Keras 3: with one output a list of metrics; with several, one entry (a metric,
        # a list of them or None) per output, as a list or a dict by output name.
        if metrics is None:
            per_metrics = [[] for _ in range(n)]
        elif n > 1 or isinstance(metrics, dict):
            given = self._per_output(metrics, "metrics")
            if given is None:
                raise ValueError(
                    f"compile metrics: the model has {n} outputs {self.output_names}; give a list with one entry per "
                    f"output or a dict by output name; got {metrics!r}"
                )
            per_metrics = [[] if m is None else (list(m) if isinstance(m, (list, tuple)) else [m]) for m in given]
        else:
            per_metrics = [list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]]
        slots = []
        for k, specs in enumerate(per_metrics):
            for spec in specs:
                metric = metrics_module.get(spec)
                if isinstance(spec, metrics_module.Metric) and any(metric is m for _, _, m in slots):
                    metric = copy.deepcopy(metric)  # one object per output
                name = metric.name if n == 1 else f"{self.output_names[k]}_{metric.name}"
                slots.append((name, k, metric))
        slots = [(name, k, m) for name, (_, k, m) in zip(metrics_module.log_names([s[0] for s in slots]), slots)]
        heads = the_loss if isinstance(the_loss, list) else [the_loss] * n
        names = ["loss", *self._loss_log_names(heads), *(name for name, _, _ in slots)]
        if len(set(names)) != len(names):
            raise ValueError(f"metric names must be unique and not 'loss'; got {names}")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = the_loss
        self._loss_weights, self._loss_weights_arg = weights, loss_weights
        self._metric_slots = slots
        self.compiled_metrics = [m for _, _, m in slots]
        self._metric_specs = per_metrics
        self._output_loss_means = [metrics_module.Mean(name=f"{name}_loss") for name in self.output_names]
        self._warned_logits = False
        self._warn_if_logits(self)  # at compile; the loss path itself is decided at fit

    def _per_output(self, value, argument: str):
        """A list/dict given per output, as a list in output order; None if ``value`` is neither."""
        n = len(self.outputs)
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(self.output_names))
            if unknown:
                raise ValueError(f"compile {argument}: {unknown} are not output names; the outputs are {self.output_names}")
            return [value.get(name) for name in self.output_names]
        if isinstance(value, (list, tuple)):
            if argument == "loss" and len(value) != n:
                raise ValueError(f"compile loss: the model has {n} outputs; got a list of {len(value)} losses")
            if len(value) != n:
                raise ValueError(
                    f"compile {argument}: the model has {n} outputs {self.output_names}; give one entry per output "
                    f"(a list of {n}, or a dict by output name), got a list of {len(value)}: {value!r}"
                )
            return list(value)
        return None

    def _head_losses(self) -> list:
        """The loss of each output (None: no loss): ``self.loss`` is one Loss for all, or a list."""
        if isinstance(self.loss, list):
            return self.loss
        return [self.loss] * len(self.outputs)

    def _loss_log_names(self, heads: list) -> list:
        """``<output>_loss`` for each output with a loss, when several outputs have one (Keras 3.15.1's
        logs: ``loss=[None, 'mse']`` logs 'loss' alone)."""
        if sum(loss is not None for loss in heads) < 2:
            return []
        return [f"{name}_loss" for name, loss in zip(self.output_names, heads) if loss is not None]

    @property
    def metrics_names(self) -> list[str]:
        """``'loss'``, each output's loss (several outputs) in output order, then the metrics, in the
        order ``evaluate``, ``train_on_batch`` and ``test_on_batch`` return them: as compile was
        given them for one output, sorted by name for several -- Keras 3's order, which lists the
        metrics it cannot match to a compiled name (each output's, ``'cls_accuracy'``) sorted
        (``loss, s_loss, c_loss, acc, mae = model.evaluate(...)`` took swapped values)."""
        names = [name for name, _, _ in self._metric_slots]
        return ["loss", *self._loss_log_names(self._head_losses()), *(sorted(names) if len(self.outputs) > 1 else names)]

    def get_compile_config(self) -> dict | None:
        if self.loss is None:
            return None
        losses = [None if h is None else losses_module.serialize(h) for h in self._head_losses()]
        if any(h is not None and saved is None for h, saved in zip(self._head_losses(), losses)):
            losses = [None]  # a custom Loss class: not saved (load_model then asks for compile=False)
        metrics = [
            saveable_metrics(specs, [m for _, k2, m in self._metric_slots if k2 == k])
            for k, specs in enumerate(self._metric_specs)
        ]
        return {
            "optimizer": optimizers_module.serialize(self.optimizer),
            "loss": losses if isinstance(self.loss, list) and losses != [None] else losses[0],
            "metrics": metrics[0] if len(self.outputs) == 1 else metrics,
            "loss_weights": None if self._loss_weights_arg is None else self._loss_weights,
        }

    # ================================================================== data

    def _as_inputs(self, x, argument: str) -> list:
        n = len(self.inputs)
        if isinstance(x, dict):
            missing = [name for name in self.input_names if name not in x]
            if missing:
                raise ValueError(f"{argument} is a dict with keys {sorted(map(str, x))}, without the model inputs "
                                 f"{missing}; the inputs are {self.input_names}")
            return [x[name] for name in self.input_names]
        if isinstance(x, (list, tuple)) and n > 1:
            if len(x) != n:
                raise ValueError(f"the model has {n} inputs {self.input_names}; {argument} is a list of {len(x)}")
            return list(x)
        if n > 1:
            raise ValueError(f"the model has {n} inputs {self.input_names}: give {argument} as a list or a dict")
        return [one_array(x)]

    def _check_x(self, x, argument="x", allow_empty: bool = False) -> list:
        if type(x) is np.ndarray and len(self._entries) == 1:  # one array for one input (a one-image predict)
            return [self._entries[0].check(x, argument, allow_empty)]
        xs = self._as_inputs(x, argument)
        checked = [e.check(xi, argument if len(xs) == 1 else f"{argument}[{i}]", allow_empty)
                   for i, (e, xi) in enumerate(zip(self._entries, xs))]
        counts = {xi.shape[0] for xi in checked}
        if len(counts) > 1:
            raise ValueError(f"the arrays of {argument} hold different numbers of samples: {[xi.shape[0] for xi in checked]}")
        return checked

    def _empty_outputs(self) -> list:
        return [np.zeros((0, *t._internal), self.dtype) for t in self.outputs]

    def _convert_x(self, x_checked: list) -> list:
        return [e.convert(xi) for e, xi in zip(self._entries, x_checked)]

    def _prepare(self, x, y, argument="x", allow_empty: bool = False):
        xs = self._check_x(x, argument, allow_empty)
        if y is None:
            raise ValueError(f"y is required to go with {argument}")
        n = len(self.outputs)
        if isinstance(y, dict):
            unknown = [key for key in y if key not in self.output_names]
            if unknown:  # a misspelt output name would leave its targets unused, as Keras refuses too
                raise ValueError(f"y has keys {unknown} that name no output of the model; its outputs are "
                                 f"{self.output_names}")
            ys = [y.get(name) for name in self.output_names]
        elif isinstance(y, (list, tuple)) and n > 1:
            if len(y) != n:
                raise ValueError(f"the model has {n} outputs {self.output_names}; y is a list of {len(y)}")
            ys = list(y)
        elif n > 1:
            raise ValueError(f"the model has {n} outputs {self.output_names}: give y as a list or a dict")
        else:
            ys = [one_array(y)]
        ready = []
        measured = {k for _, k, _ in self._metric_slots}
        for k, (yk, loss, t) in enumerate(zip(ys, self._head_losses(), self.outputs)):
            # An output without a loss keeps its targets where it has metrics (Keras measures it:
            # the targets were dropped and its metric failed at the first batch).
            if loss is None and (yk is None or k not in measured):
                ready.append(None)
                continue
            if yk is None:
                raise ValueError(f"y has no targets for output {self.output_names[k]!r}, which has a loss")
            yk = np.asarray(yk)
            if yk.shape[:1] != xs[0].shape[:1]:
                raise ValueError(
                    f"{argument} holds {xs[0].shape[0]} samples but the targets of output {self.output_names[k]!r} "
                    f"hold {yk.shape[0] if yk.ndim else 0}"
                )
            if loss is None:  # for its metrics alone, as given (they read the output as the user sees it)
                if yk.dtype.kind not in "biuf":
                    raise TypeError(f"the targets of output {self.output_names[k]!r} must hold real numbers; got an "
                                    f"array of dtype {yk.dtype}")
                ready.append(yk)
                continue
            ready.append(prepare_targets(loss, yk, t._internal, self._data_format()))
        return xs, ready

    def _batches(self, x, y, batch_size: int) -> "_GraphBatches":
        return _GraphBatches(self._entries, x, y, batch_size)

    def _plan_outputs_to_user(self, outs: list):
        return self._to_user(outs)

    def _to_user(self, outs):
        def one(a):
            return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a

        # A list of one output gives its array, as in Keras (Model(x, [y]).predict is an array);
        # outputs given as a tuple a tuple.
        if self._single_output or len(outs) == 1:
            return one(outs[0])
        return tuple(one(a) for a in outs) if self._outputs_tuple else [one(a) for a in outs]

    # ================================================================== metrics

    def _metric_objects(self) -> list:
        return [*self.compiled_metrics, *self._output_loss_means]

    def _update_metrics(self, ybs, outs) -> None:
        rows = outs[0].shape[0]
        for mean, part in zip(self._output_loss_means, self._last_head_losses):
            if part is not None:
                mean.add(part, rows)
        for _, k, metric in self._metric_slots:
            metric.update_state(ybs[k], outs[k])

    def _log_metrics(self) -> list:
        # Several outputs with a loss: each one's (``<output>_loss``, Keras's logs), then the metrics.
        losses = []
        if self._loss_log_names(self._head_losses()):
            losses = [(mean.name, mean) for mean, loss in zip(self._output_loss_means, self._head_losses())
                      if loss is not None]
        return [*losses, *((name, metric) for name, _, metric in self._metric_slots)]

    # ================================================================== saving

    def get_config(self) -> dict:
        """The graph, JSON-serialisable: layers (Keras's order), then the nodes in execution order, each
        as ``[layer index, [[producer layer name, node index, tensor index], ...], many]``."""
        index = {id(layer): i for i, layer in enumerate(self._flat_layers)}
        ref = self._tensor_ref
        return {
            "name": self.name,
            "dtype": self.dtype.name,
            "trainable": self.trainable,
            "layers": [
                {"class_name": type(layer).__name__, "module": type(layer).__module__, "name": layer.name,
                 "config": layer.get_config()}
                for layer in self._flat_layers
            ],
            # In call order, so that replaying them numbers each layer's calls as here.
            "nodes": [[index[id(n.layer)], [ref(t) for t in n.inputs], n.many]
                      for n in sorted(self._nodes, key=lambda n: n.seq)],
            "inputs": [ref(t) for t in self.inputs],
            "outputs": [ref(t) for t in self.outputs],
            "single_input": self._single_input,
            "single_output": self._single_output,
            "outputs_tuple": self._outputs_tuple,
            # The models that made outputs (None: a layer did), whose names the outputs take.
            "output_models": [t._from_model for t in self.outputs],
            # The nodes (by position in "nodes") a model called with training=False made.
            "inference_nodes": [k for k, n in enumerate(sorted(self._nodes, key=lambda n: n.seq)) if n.inference],
            # The models called in this graph (one entry of model.layers each): their calls' nodes
            # (positions in "nodes") and the tensors each call took and returned.
            "nested": self._nested_config(),
        }

    def _tensor_ref(self, t) -> list:
        """A tensor as the description names it: ``[producer layer name, node index, tensor index]``."""
        t = self._as_model_tensor(t)
        return [t._node.layer.name, self._node_number(t._node), t._index]

    def _nested_config(self) -> list:
        """The models called in this graph, as ``get_config``'s "nested" saves them."""
        position = {id(n): k for k, n in enumerate(sorted(self._nodes, key=lambda n: n.seq))}
        ref = self._tensor_ref
        return [
            dict(nested_entry(model),
                 calls=[{"nodes": sorted(position[id(n)] for n in self._nodes if n.nested_call is call),
                         "inputs": [ref(t) for t in call.inputs], "outputs": [ref(t) for t in call.outputs],
                         "inference": call.inference}
                        for call in self._nested_calls(model)])
            for model in self._nested
        ]

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "Functional":
        """A new model from :meth:`get_config`'s description (fresh weights). A description that is
        not one (hand-edited, forged) is a ValueError saying which entry is wrong."""
        what = "Model.from_config: the config"
        entries = state.config_layers(config, what)
        nodes, inputs_refs, outputs_refs = _checked_graph(config, len(entries), what)
        layers = [state.layer_from_config(i, entry, custom_objects) for i, entry in enumerate(entries)]
        dtype = check_dtype(config.get("dtype", "float32"))
        tensors = {}
        for layer in layers:
            if isinstance(layer, InputLayer):
                if layer.dtype != dtype:
                    raise ValueError(f"input layer {layer.name!r} is {layer.dtype}, the model {dtype}")
                tensors[(layer.name, 0, 0)] = layer.output

        def tensor(ref, where):
            found = tensors.get(tuple(ref))
            if found is None:
                raise ValueError(f"{what}: {where} refers to {list(ref)} (layer name, call, output), which no input "
                                 "layer or earlier node makes")
            return found

        inference = config.get("inference_nodes", [])  # absent from older files
        if not isinstance(inference, list) or not all(
                isinstance(k, int) and not isinstance(k, bool) and 0 <= k < len(nodes) for k in inference):
            raise ValueError(f"{what}: inference_nodes must be a list of node positions; got {inference!r:.100}")
        counts: dict = {}
        made = []
        for n, (layer_index, refs, many) in enumerate(nodes):
            layer = layers[layer_index]
            args = [tensor(r, f"node {n}") for r in refs]
            out = layer(args if many else args[0])
            out._node.inference = n in inference
            made.append(out._node)
            k = counts.get(layer.name, 0)
            counts[layer.name] = k + 1
            tensors[(layer.name, k, 0)] = out
        nested = state.config_nested_calls(config, len(nodes), what)
        inputs = [tensor(r, "an input") for r in inputs_refs]
        outputs = [tensor(r, "an output") for r in outputs_refs]
        made_by = config.get("output_models", [None] * len(outputs))  # absent from older files
        if not isinstance(made_by, list) or len(made_by) != len(outputs):
            raise ValueError(f"output_models must be a list of {len(outputs)} names or None; got {made_by!r:.100}")
        for t, model_name in zip(outputs, made_by):
            if model_name is not None:
                t._from_model = check_model_name(model_name, "")
        model = cls(
            inputs[0] if config.get("single_input") else inputs,
            outputs[0] if config.get("single_output") else (tuple(outputs) if config.get("outputs_tuple") is True
                                                             else outputs),
            name=config.get("name"),
        )
        model._trainable = state.config_trainable(config)  # the layers' own flags came with their configs
        model._restore_nested(nested, made, tensor, what)
        return model

    def _restore_nested(self, entries: list, made: list, tensor, what: str, depth: int = 0) -> None:
        """Make again the models called in this graph, of its layers, from the (checked) "nested"
        entries of its description: ``made`` are its nodes in the description's order, ``tensor``
        finds a tensor by its reference there."""
        names = {layer.name for layer in self._flat_layers}
        for entry in entries:
            where = f"{what}: nested model {entry['name']!r}"
            if entry["name"] in names:
                raise ValueError(f"{where}: the name is taken by another layer or nested model of the graph")
            names.add(entry["name"])
            calls = []
            for recorded in entry["calls"]:
                call = NestedCall(None, [tensor(r, f"{where}'s call") for r in recorded["inputs"]],
                                  [tensor(r, f"{where}'s call") for r in recorded["outputs"]], recorded["inference"])
                call.nodes = sorted((made[k] for k in recorded["nodes"]), key=lambda n: n.seq)
                _check_call(call, where, made)
                calls.append(call)
            inner = remade_nested_model(entry, calls[0], self.dtype, where, depth)
            inner._first_call = calls[0]
            for call in calls:
                call.model = inner
                for node in call.nodes:
                    node.nested_model, node.nested_call = inner, call
                self._whole_calls[id(call)] = call
            self._nested.append(inner)

    def _restore_own_nesting(self, entries, what: str, depth: int) -> None:
        """The models nested in this one (made again of a loaded graph's layers) from its entry's
        "nested": references to this graph's own tensors and nodes, as its ``get_config`` gave them."""
        if entries and depth > MAX_NESTING:
            raise ValueError(f"{what}: models nested more than {MAX_NESTING} deep")
        made = sorted(self._nodes, key=lambda n: n.seq)
        entries = state.config_nested_calls({"nested": entries}, len(made), what)
        tensors = {(t._node.layer.name, 0, 0): t for t in self.inputs}
        for nodes in self._node_ids.values():
            for k, node in enumerate(nodes):
                for i, out in enumerate(node.outputs):
                    tensors[(node.layer.name, k, i)] = out

        def tensor(ref, where):
            found = tensors.get(tuple(ref))
            if found is None:
                raise ValueError(f"{where} refers to {list(ref)} (layer name, call, output), which the model does not make")
            return found

        self._restore_nested(entries, made, tensor, what, depth)

    def __repr__(self) -> str:
        return f"<Functional name={self.name!r} layers={len(self._flat_layers)} inputs={len(self.inputs)} " \
               f"outputs={len(self.outputs)}>"


def _first_calls_of(model) -> None:
    """Put the nodes of ``model``'s own graph first in its layers' lists of calls: a model made
    again after the graph that holds it (loading) then gives ``layer.output`` (the first call's,
    as in Keras) in its own graph, as the model saved did, which was made first."""
    graph = model._graph if isinstance(model, Model._stack_class) else model
    for node in reversed(sorted(graph._nodes, key=lambda n: n.seq)):
        calls = node.layer._inbound_nodes
        calls.remove(node)
        calls.insert(0, node)


def _check_call(call: NestedCall, where: str, graph_nodes: list) -> None:
    """A saved call of a nested model is whole and no more: its nodes read only what the call
    took or what they made, each leads to what it returns (which they made, or it took), and no
    other node of the graph reads what they made but what it returns; else a ValueError."""
    known = {id(t) for t in call.inputs}
    for node in call.nodes:
        if any(id(t) not in known for t in node.inputs):
            raise ValueError(f"{where}: node {node.layer.name!r} of its call reads a tensor the call neither takes "
                             "nor makes")
        known.update(id(t) for t in node.outputs)
    if any(id(t) not in known for t in call.outputs):
        raise ValueError(f"{where}: its call returns a tensor the call neither takes nor makes")
    inside = {id(node) for node in call.nodes}
    needed, stack = set(), [t._node for t in call.outputs if id(t._node) in inside]
    while stack:
        node = stack.pop()
        if id(node) not in needed:
            needed.add(id(node))
            stack.extend(t._node for t in node.inputs if id(t._node) in inside)
    idle = [node.layer.name for node in call.nodes if id(node) not in needed]
    if idle:
        raise ValueError(f"{where}: its call holds node(s) of {idle}, which lead to nothing it returns")
    returned = {id(t) for t in call.outputs}
    for node in graph_nodes:
        if id(node) not in inside and any(id(t._node) in inside and id(t) not in returned for t in node.inputs):
            raise ValueError(f"{where}: layer {node.layer.name!r} outside its call reads a tensor made inside it that "
                             "the call does not return")


#: How deep saved models may nest (a forged description could nest one layer without end).
MAX_NESTING = 64


def nested_entry(model) -> dict:
    """What a description says of a model nested in it, but for where its layers are: its name,
    class, trainable flag, the models nested in it in turn, and a graph's input names."""
    entry = {"name": model.name, "class_name": "Sequential" if isinstance(model, Model._stack_class) else "Functional",
             "trainable": model.trainable, "nested": model._nested_config()}
    if entry["class_name"] == "Functional":
        entry["input_names"] = [t._node.layer.name for t in model.inputs]
        # Its own calls made with training=False (its graph's node positions), which the call of
        # it in the outer graph cannot tell apart when that call is training=False too.
        entry["inference_nodes"] = [k for k, n in enumerate(sorted(model._nodes, key=lambda n: n.seq)) if n.inference]
    return entry


def remade_nested_model(entry: dict, call: NestedCall, dtype, where: str, depth: int = 0) -> Model:
    """A model nested in a loaded graph or stack, made anew of its layers (the same objects, so
    that it shares their weights, as the saved one did): its first call's nodes replayed on Inputs
    of the shapes that call took, a Sequential (a chain of one input) or a Functional as saved,
    with the models nested in it in turn."""
    nodes = call.nodes
    names = entry.get("input_names")
    if names is None:  # a Sequential's, or a file from before input names were kept
        names = [None] * len(call.inputs)
    if not isinstance(names, list) or len(names) != len(call.inputs) or not all(
            n is None or (isinstance(n, str) and n) for n in names):
        raise ValueError(f"{where}: input_names must be a list of {len(call.inputs)} names; got {names!r:.100}")
    given = [Input(shape=tuple(t.shape[1:]), dtype=dtype, name=name) for t, name in zip(call.inputs, names)]
    try:
        if entry["class_name"] == "Sequential":
            chained = len(call.inputs) == 1 and len(call.outputs) == 1 and call.outputs[0] is nodes[-1].outputs[0]
            for before, node in zip([None, *nodes], nodes):
                chained = chained and not node.many and node.inputs == (
                    call.inputs if before is None else [before.outputs[0]])
            if not chained:
                raise ValueError("a Sequential's call is a chain of layers, each on the one before")
            inner = Model._stack_class([given[0], *(node.layer for node in nodes)], name=entry["name"], dtype=dtype)
        else:
            inference = entry.get("inference_nodes")
            if inference is not None and (not isinstance(inference, list) or not all(
                    isinstance(k, int) and not isinstance(k, bool) and 0 <= k < len(nodes) for k in inference)):
                raise ValueError(f"inference_nodes must be a list of node positions; got {inference!r:.100}")
            mapped = {id(t): g for t, g in zip(call.inputs, given)}
            for k, node in enumerate(nodes):
                args = [mapped[id(t)] for t in node.inputs]
                out = node.layer(args if node.many else args[0])
                out._node.inference = (k in inference) if inference is not None else (node.inference and not call.inference)
                mapped[id(node.outputs[0])] = out
            outputs = [mapped[id(t)] for t in call.outputs]
            inner = Functional(given[0] if len(given) == 1 else given, outputs[0] if len(outputs) == 1 else outputs,
                               name=entry["name"])
    except (ValueError, TypeError, NotImplementedError) as e:
        raise ValueError(f"{where}: cannot be made again of its saved call: {e}") from e
    _first_calls_of(inner)
    inner._trainable = entry["trainable"]
    inner._restore_own_nesting(entry.get("nested", []), where, depth + 1)
    return inner


class _GraphBatches:
    """Batches of a model with several inputs/outputs: ``([x batch per input], [y batch per output])``."""

    def __init__(self, entries, xs: list, ys, batch_size: int):
        self.parts = [_Batches(e, x, None, batch_size) for e, x in zip(entries, xs)]
        self.ys = ys
        self.n, self.steps, self.batch_size = self.parts[0].n, self.parts[0].steps, batch_size

    def take(self, index):
        ys = None if self.ys is None else [None if y is None else np.take(y, index, axis=0) for y in self.ys]
        return [p.take(index)[0] for p in self.parts], ys

    def slice(self, lo: int, hi: int):
        ys = None if self.ys is None else [None if y is None else y[lo:hi] for y in self.ys]
        return [p.slice(lo, hi)[0] for p in self.parts], ys


_unsupported.check_arguments(Functional, method="summary")  # Keras's show_layer_activations, ...
for _method in ("save", "save_weights", "load_weights"):  # Keras's include_optimizer, skip_mismatch, ...
    _unsupported.check_arguments(Model, method=_method)
