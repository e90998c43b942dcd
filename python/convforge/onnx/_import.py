"""ONNX file -> convforge model: the graph walk and the context importers write into."""

from __future__ import annotations

import math
import os
import warnings
from typing import NamedTuple

import numpy as np

from .._warnings import user_stacklevel
from ..saving import ModelFileError
from .. import layers as _layers
from . import _fold, _formulas, _reader
from ._export import check_layout, require_onnx
from ._registry import importer_for, supported_ops

# Most values one sample may have in the input or any layer's output: 256 Mi floats (1 GiB),
# so that a forged input shape cannot make a layer's build step allocate without bound.
MAX_SAMPLE_ELEMENTS = 2**28
_MAX_INPUT_ELEMENTS = 2**24


# AttributeProto.AttributeType of the attributes whose default is None (absent).
_FLOAT, _INT, _STRING, _TENSOR, _FLOATS, _INTS = 1, 2, 3, 4, 6, 7
_ATTRIBUTE_TYPES = {
    "kernel_shape": _INTS, "pads": _INTS, "strides": _INTS, "dilations": _INTS, "perm": _INTS,
    "value": _TENSOR, "value_float": _FLOAT, "value_floats": _FLOATS, "value_int": _INT, "value_ints": _INTS,
    "axis": _INT, "end": _INT, "start": _INT, "to": _INT, "axes": _INTS, "scales": _FLOATS,
}


def _type_of_default(default) -> int:
    if isinstance(default, bool) or isinstance(default, int):
        return _INT
    if isinstance(default, float):
        return _FLOAT
    if isinstance(default, str):
        return _STRING
    if isinstance(default, (list, tuple)):
        return _INTS
    return None  # no default to tell (an attribute the importer reads, or refuses, by its value)


# What a refused op most often is in the file, where its name does not say it: the layer the user
# wrote, so that the message speaks of it.
_UNSUPPORTED_OP_HINTS = {
    "LRN": " (local response normalization, AlexNet's nn.LocalResponseNorm)",
    "ReduceL2": " (an L2 norm, such as F.normalize's)",
}

class ImportContext:
    """The state of an import, and what an importer (one ONNX op -> layers) may call.

    Tensors are named as in the file. A tensor is either a constant (an initializer or the
    output of a ``Constant`` node, as a NumPy array) or a runtime tensor made by a layer, known
    by its convforge per-sample shape (``(channels, height, width)`` for images).
    """

    def __init__(self, path, proto, nodes, opset: int, data_format: str, graph_outputs):
        self.path, self.proto, self.opset = path, proto, opset
        self.data_format = data_format
        self.graph_outputs = set(graph_outputs)
        # The batch size the file fixes at its input (PyTorch's exporter without dynamic_axes
        # writes its example's), or None where it is symbolic: a Reshape to (that, -1) flattens.
        self.fixed_batch = None
        # Per-channel affines made from Add/Sub/Mul by constants (_extra_layers._import_affine),
        # by their output tensor: the next such op on a tensor nothing else reads joins them.
        self.affine_layers: dict = {}
        # MaxPool node id -> (top, bottom, left, right) of an edge Pad folded into its pads.
        self.pool_pads: dict = {}
        # 1-D Conv node id -> (left, right) of a zero Pad of the steps folded into its pads.
        self.sequence_pads: dict = {}
        # The last node of an activation spelt as arithmetic (_formulas) -> (layer, its input).
        self.formula_layers: dict = {}
        # Keras's exporter's UpSampling2D (_repeat): the Unsqueeze's or Expand's output -> what
        # is known of the repeat so far; and the UpSampling2D layers made of repeats, by the
        # tensor they make -> the tensor the file's nodes read (the Reshape's output).
        self.pending_repeats: dict = {}
        # A Reshape of an image to (batch, groups, -1) read by an InstanceNormalization (PyTorch's
        # nn.GroupNorm): its output -> (the image, groups), finished at that node (_extra_layers).
        self.pending_group_norms: dict = {}
        # Keras's exporter's Average (_extra_layers): the output of each Add of its chain -> the
        # tensors added so far; no layer makes it, the Div at the chain's end makes the Average.
        self.pending_averages: dict = {}
        self.repeat_layers: dict = {}
        self._nodes = nodes
        self._makers: dict | None = None  # tensor name -> the node making it (built on first use)
        self._tensors = {t.name: t for t in proto.graph.initializer}
        self._constants: dict[str, np.ndarray] = {}
        self._shapes: dict[str, tuple] = {}
        self._aliases: dict[str, str] = {}
        # Channels-last views: tensor name -> the NCHW runtime tensor it is a Transpose(0, 2, 3, 1)
        # of (Keras's exporter wraps every conv and pool in such transposes).
        self._views: dict[str, str] = {}
        # Channels-first views of sequences: tensor name -> the (steps, channels) runtime tensor
        # it is a Transpose(0, 2, 1) of (convforge's exporter wraps every 1-D op in such transposes).
        self._sequence_views: dict[str, str] = {}
        # Flattened channels-last tensors: name -> for each (h, w, c)-order position, the
        # (c, h, w)-order position convforge's Flatten puts that value at.
        self.flat_order: dict[str, np.ndarray] = {}
        self._consumed: set[int] = set()
        self._consumers: dict[str, list] = {}
        for node in nodes:
            for name in node.input:
                if name:
                    self._consumers.setdefault(name, []).append(node)
        # Constants read only as a Clip's min or max, which may be infinite (PyTorch's
        # clamp(x, min=0, max=inf): an unbounded side); every other tensor's infinities are refused.
        self._clip_bounds = {name for name, readers in self._consumers.items()
                             if all(r.op_type == "Clip" and name not in r.input[:1] for r in readers)}
        self.folded_values = 0  # see _fold_node
        self.steps: list[tuple] = []  # (layer, input tensor names, output tensor name)
        self._layer_names: set[str] = set()
        # convforge's exporter wrote the file: its layer names come back (layer_name), and each of
        # its Pads is a padding layer (a Conv1D's own padding is in the Conv's pads).
        self.from_convforge = proto.producer_name == "convforge"
        self._file_layer_names: set | None = None  # the layer names in the file's node names (built on first use)

    # ------------------------------------------------------------------ errors

    def error(self, node, message: str, attribute: str | None = None) -> ModelFileError:
        where = f"node {node.name!r} ({node.op_type})"
        if attribute is not None:
            where += f", attribute {attribute!r}"
        return ModelFileError(self.path, f"{where}: {message}")

    # ------------------------------------------------------------------ attributes and inputs

    def attributes(self, node, allowed: dict) -> dict:
        """The node's attributes as Python values, with ``allowed``'s defaults for those absent.

        An attribute not in ``allowed`` is an error naming it: convforge would silently
        compute something else if it ignored one.
        """
        onnx = require_onnx()
        values = dict(allowed)
        for attribute in node.attribute:
            if attribute.name not in allowed:
                raise self.error(node, "this attribute is not supported by convforge's importer", attribute.name)
            expected = _ATTRIBUTE_TYPES.get(attribute.name) or _type_of_default(allowed[attribute.name])
            if expected is not None and attribute.type != expected:
                names = onnx.AttributeProto.AttributeType
                raise self.error(
                    node, f"has type {names.Name(attribute.type)}, expected {names.Name(expected)}", attribute.name
                )
            value = onnx.helper.get_attribute_value(attribute)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            elif isinstance(value, onnx.TensorProto):
                bound = node.op_type == "Constant" and bool(node.output) and node.output[0] in self._clip_bounds
                value = self.tensor_value(value, f"attribute {attribute.name!r} of node {node.name!r}", bound)
            values[attribute.name] = value
        return values

    def tensor_value(self, tensor, what: str, infinite_ok: bool = False) -> np.ndarray:
        return _reader.tensor_array(self.path, tensor, what, infinite_ok)

    def resolve(self, name: str) -> str:
        while name in self._aliases:
            name = self._aliases[name]
        return name

    def constant(self, node, index: int, what: str, required: bool = True):
        """Input ``index`` of ``node`` as a NumPy array; it must be an initializer or a Constant."""
        if index >= len(node.input) or not node.input[index]:
            if required:
                raise self.error(node, f"input {index} ({what}) is missing")
            return None
        name = self.resolve(node.input[index])
        if name not in self._constants:
            if name in self._tensors:
                self._constants[name] = self.tensor_value(self._tensors[name], f"initializer {name!r}",
                                                          name in self._clip_bounds)
            else:
                raise self.error(
                    node, f"input {index} ({what}, {name!r}) is computed in the graph; convforge needs a constant here"
                )
        return self._constants[name]

    def zero_pad_sides(self, node, a, rank: int, layer: str) -> tuple[dict, dict]:
        """A Pad node's margins before and after, by axis (of ``rank`` axes, batch included), from
        its attributes ``a`` (opset < 11) or inputs; its fill value must be 0 (``layer`` pads with
        zeros)."""
        if self.opset >= 11:
            pads = [int(v) for v in np.asarray(self.constant(node, 1, "pads")).reshape(-1)]
            value = self.constant(node, 2, "constant_value", required=False)
            axes = self.constant(node, 3, "axes", required=False)
        else:
            pads, value, axes = [int(v) for v in a["pads"] or []], a["value"], None
        if value is not None and np.any(np.asarray(value) != 0):
            raise self.error(node, f"padding with {value} is not supported; {layer} pads with zeros")
        axes = list(range(rank)) if axes is None else [int(v) % rank for v in np.asarray(axes).reshape(-1)]
        if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes):
            raise self.error(node, f"pads {pads} do not fit axes {axes}")
        return dict(zip(axes, pads[: len(axes)])), dict(zip(axes, pads[len(axes):]))

    def set_constant(self, name: str, value: np.ndarray) -> None:
        self._constants[name] = value

    def is_constant(self, name: str) -> bool:
        name = self.resolve(name)
        return name in self._constants or name in self._tensors

    def shape(self, node, index: int = 0) -> tuple:
        """Per-sample convforge shape of the runtime tensor at input ``index`` of ``node``."""
        if index >= len(node.input) or not node.input[index]:
            raise self.error(node, f"input {index} is missing")
        name = self.resolve(node.input[index])
        if name in self._sequence_views:
            raise self.error(
                node,
                f"input {index} ({name!r}) is a sequence transposed to (batch, channels, steps); convforge can run a "
                "1-D Conv, ConvTranspose, pooling or BatchNormalization on it, or transpose it back",
            )
        if name in self._views:
            raise self.error(
                node,
                f"input {index} ({name!r}) is a channels-last (transposed) image; convforge can only flatten such a "
                "tensor, apply an activation or a per-channel bias to it, or transpose it back",
            )
        if name not in self._shapes:
            raise self.error(node, f"input {index} ({name!r}) is a constant; convforge layers take computed tensors")
        return self._shapes[name]

    def readers(self, name: str) -> int:
        """How many nodes read the tensor ``name``."""
        return len(self._consumers.get(name, []))

    def view_base(self, name: str):
        """The NCHW tensor that ``name`` is a channels-last view of, else None."""
        return self._views.get(self.resolve(name))

    def set_view(self, name: str, base: str) -> None:
        self._views[name] = base

    def sequence_base(self, name: str):
        """The (steps, channels) tensor that ``name`` is the (channels, steps) transpose of, else None."""
        return self._sequence_views.get(self.resolve(name))

    def set_sequence_view(self, name: str, base: str) -> None:
        self._sequence_views[name] = base

    def ref_shape(self, name: str):
        """The per-sample ONNX shape of a runtime tensor or view (NHWC for a view, (channels, steps)
        for a sequence view), else None."""
        name = self.resolve(name)
        if name in self._sequence_views:
            steps, channels = self._shapes[self._sequence_views[name]]
            return (channels, steps)
        if name in self._views:
            c, h, w = self._shapes[self._views[name]]
            return (h, w, c)
        return self._shapes.get(name)

    def input_name(self, node, index: int = 0) -> str:
        return self.resolve(node.input[index])

    # ------------------------------------------------------------------ graph structure

    def readers_of(self, tensor: str) -> list:
        """The nodes reading ``tensor``, past no-op nodes (Identity, float Casts)."""
        found, todo = [], [tensor]
        while todo and len(found) < 64:
            for reader in self._consumers.get(todo.pop(), []):
                if _is_no_op(reader):
                    todo.append(reader.output[0])
                else:
                    found.append(reader)
        return found

    def reaches_graph_output(self, tensor: str) -> bool:
        """Is ``tensor``, or what no-op nodes (Identity, float Casts) and per-element ops
        (activations, arithmetic with a constant) make of it, a graph output? Those ops keep the
        layout, so the output has ``tensor``'s."""
        todo, seen = [tensor], 0
        while todo and seen < 64:
            name = todo.pop()
            seen += 1
            if name in self.graph_outputs:
                return True
            todo += [r.output[0] for r in self._consumers.get(name, []) if _is_no_op(r) or self._per_element(r)]
        return False

    def _per_element(self, node) -> bool:
        if node.op_type in _PER_ELEMENT_ACTIVATIONS and len(node.input) == 1:
            return True
        if node.op_type == "Clip":  # its bounds are inputs 1 and 2 (opset 11)
            return all(not n or self._fixed(n) for n in node.input[1:])
        if node.op_type in ("Add", "Sub", "Mul", "Div") and len(node.input) == 2:
            return sum(self._fixed(n) for n in node.input) == 1
        return False

    def fixed(self, name: str) -> bool:
        """Is ``name`` a constant, folded or not yet (see _fixed)?"""
        return self._fixed(name)

    def _fixed(self, name: str, depth: int = 8) -> bool:
        """Is ``name`` a constant, folded or not yet (a Constant node, or constants cast or
        combined, that the walk reaches later: exporters put them right before their reader)?"""
        if self.is_constant(name):
            return True
        node = self.producer(name)
        if node is None or node.op_type != "Constant" and (depth == 0 or not node.input):
            return False
        return node.op_type == "Constant" or all(not n or self._fixed(n, depth - 1) for n in node.input)

    def producer(self, name: str):
        """The node whose output ``name`` is (past aliases), or None for a graph input or initializer."""
        if self._makers is None:
            self._makers = {out: node for node in self._nodes for out in node.output if out}
        return self._makers.get(self.resolve(name))

    def sole_consumer(self, tensor: str):
        """The one node reading ``tensor`` (not yet translated), if exactly one does and it is not
        a graph output: the candidate for fusing into the layer that makes ``tensor``."""
        if tensor in self.graph_outputs:
            return None
        readers = self._consumers.get(tensor, [])
        if len(readers) != 1 or id(readers[0]) in self._consumed:
            return None
        return readers[0]

    def next_node(self, tensor: str):
        """``(node, passed)``: the sole reader of ``tensor`` past Identity nodes and Casts to float
        (exporters such as Keras's put them everywhere), and the nodes passed on the way."""
        passed = []
        while True:
            reader = self.sole_consumer(tensor)
            if reader is None or not _is_no_op(reader):
                return reader, passed
            passed.append(reader)
            tensor = reader.output[0]

    def consume_all(self, nodes, output_of: str) -> None:
        for node in nodes:
            self.consume(node, output_of)

    def consume(self, node, output_of: str) -> None:
        """Mark ``node`` as translated with the layer whose output is ``output_of``."""
        self._consumed.add(id(node))
        for out in node.output:
            if out:
                self.alias(out, output_of)

    def consume_node(self, node) -> None:
        """Mark ``node`` as translated; its outputs were aliased or made views by the caller."""
        self._consumed.add(id(node))

    def consumed(self, node) -> bool:
        return id(node) in self._consumed

    def alias(self, name: str, existing: str) -> None:
        """``name`` is the same tensor as ``existing`` (Identity, inference-time Dropout)."""
        if name != existing:
            self._aliases[name] = existing

    def layer_name(self, node, layer):
        """A convforge layer name for the layer of ``node``: the exporter's layer names come back
        for a file convforge wrote; other producers' names (``/conv1/Conv``) are not kept."""
        if not self.from_convforge:
            return None
        name = node.name.split("/")[0]
        if not name or name in self._layer_names:
            # A layer the file has no name of its own for (a Conv1D's activation, written after its
            # Transpose back): a name no layer of the file has, since the model's automatic one
            # ("re_lu") may be a later layer's.
            if self._file_layer_names is None:
                self._file_layer_names = {n.name.split("/")[0] for n in self._nodes}
            base = _layers.base.snake_case(type(layer).__name__)
            name, i = base, 0
            while name in self._file_layer_names or name in self._layer_names:
                i += 1
                name = f"{base}_{i}"
        return name

    def add_layer(self, node, layer, inputs: list[str], output: str, weights=None, many=False) -> None:
        """Append ``layer`` reading the tensors ``inputs`` and making ``output``: build it for their
        shapes, give it ``weights`` (in ``get_weights`` order, stored layouts) and record the output's shape."""
        inputs = [self.resolve(n) for n in inputs]
        shapes = []
        for name in inputs:
            if name not in self._shapes:
                raise self.error(node, f"input {name!r} is a constant; convforge layers take computed tensors")
            shapes.append(self._shapes[name])
        if layer.name is None:
            layer.name = self.layer_name(node, layer)
        if weights is not None:
            with np.errstate(over="ignore"):
                weights = [np.asarray(w, dtype=np.float32) for w in weights]
            if not all(np.isfinite(w).all() for w in weights):
                raise self.error(node, "its weights overflow float32 (scaled by alpha/beta, or stored as float64)")
        layer._data_format = self.data_format  # as the model will build it (a BatchNormalization's axis=1)
        try:
            out_shape = layer._build(shapes if many else shapes[0], np.float32)
            if weights is not None:
                layer._assign_weights(weights, keras_layouts=False)  # ONNX holds the stored (OIHW) layouts
        except (ValueError, TypeError) as err:
            raise self.error(node, f"cannot be expressed as a convforge {type(layer).__name__}: {err}") from None
        if math.prod(out_shape) > MAX_SAMPLE_ELEMENTS:
            raise self.error(node, f"its output would hold {math.prod(out_shape)} values per sample, too many")
        if layer.name is not None:
            self._layer_names.add(layer.name)
        self._shapes[output] = tuple(out_shape)
        self.steps.append((layer, inputs, output, many))

    def add_view_layer(self, node, layer, inputs: list[str], view: bool, weights=None, many=False) -> str:
        """As :meth:`add_layer`, making ``node.output[0]``; with ``view``, making its NCHW tensor,
        of which ``node.output[0]`` is then the channels-last view (Keras's exporter's layers
        between transposes). Returns the tensor the layer makes."""
        output = node.output[0] + "#nchw" if view else node.output[0]
        self.add_layer(node, layer, inputs, output, weights, many)
        if view:
            self.set_view(node.output[0], output)
        return output

    def set_input(self, name: str, shape) -> None:
        self._shapes[name] = tuple(shape)


# Activations of one tensor, value by value: what they make has their input's layout.
_PER_ELEMENT_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Softplus", "Gelu", "Erf", "HardSigmoid",
                            "Selu", "HardSwish", "Mish", "Softsign", "Exp", "Celu"}


def _is_no_op(node) -> bool:
    """Identity, or a Cast to float32/float64 (convforge computes in the model's float dtype)."""
    if node.op_type == "Identity" and len(node.input) == 1:
        return True
    if node.op_type == "Cast" and len(node.input) == 1 and len(node.attribute) == 1:
        (attribute,) = node.attribute
        return attribute.name == "to" and attribute.type == 2 and attribute.i in (1, 11)  # FLOAT, DOUBLE
    return False


# Ops that keep their (first) input's layout, value by value, as Keras's exporter writes a model's
# first layer when it is elementwise: on the NHWC graph input, before the Transpose to NCHW.
_LAYOUT_KEEPING_ARITHMETIC = {"Add", "Sub", "Mul", "Div", "Pow"}


def _keeps_layout(node, fixed) -> bool:
    """Does ``node`` make, of its input, a tensor in the same layout? Per-element activations, and
    arithmetic whose operands are constants (``fixed``) or tensors also read here (Rescaling's Mul
    and Add, a BatchNormalization's Sub, Mul and Add, SiLU's and GELU's formulas: checked once all
    are known, see :func:`_read_channels_last`)."""
    if node.op_type in _PER_ELEMENT_ACTIVATIONS and len(node.input) == 1:
        return True
    if node.op_type == "Clip":  # ReLU(max_value): its bounds are inputs 1 and 2 (opset 11)
        return all(not n or fixed(n) for n in node.input[1:])
    if node.op_type == "Pow":
        return len(node.input) == 2 and fixed(node.input[1])
    return node.op_type in _LAYOUT_KEEPING_ARITHMETIC and len(node.input) == 2 and len(node.output) == 1


def _read_channels_last(nodes, name, constants=frozenset()) -> bool:
    """Is every reader of ``name`` (past no-op casts, and past ops that keep its layout: an
    elementwise first layer, see :func:`_keeps_layout`, or a Pad or Slice) a Transpose to NCHW,
    or a Shape (Keras's exporter reshapes a depthwise conv's bias by the input's channel count),
    one a Transpose? Keras's exporter applies a model's first layer to its NHWC input before the
    Transpose where that layer needs no NCHW (a ReLU, Rescaling, BatchNormalization,
    ZeroPadding2D, Cropping2D: a ResNet's stem pads first): the input is a channels-last view
    all the same."""
    makers = {out: n for n in nodes for out in n.output if out}
    known: dict = {}

    def fixed(tensor, depth=8):  # a constant, or computed from constants alone (Identity, Reshape)
        if tensor in constants:
            return True
        if tensor not in known:  # remembered: bounded work on any file
            maker = makers.get(tensor)
            known[tensor] = maker is not None and depth > 0 and (maker.op_type == "Constant" or bool(maker.input)) \
                and all(not n or fixed(n, depth - 1) for n in maker.input)
        return known[tensor]

    frontier, leaves, reached, arithmetic, visited = [name], [], {name}, [], 0
    while frontier and len(leaves) <= 64:
        visited += 1
        if visited > 64:  # bounded work on any file: real exporters put at most a few nodes here
            return False
        tensor = frontier.pop()
        for node in nodes:
            if tensor not in node.input:
                continue
            # A Pad or Slice of the input (ZeroPadding2D, Cropping2D as the first layer): whatever
            # axes it pads or crops, the importer names those it cannot.
            passes = _is_no_op(node) or _keeps_layout(node, fixed) or (
                node.op_type in ("Pad", "Slice") and node.input[0] == tensor and list(node.input).count(tensor) == 1)
            if not passes:
                leaves.append(node)
            elif node.output[0] not in reached:
                reached.add(node.output[0])
                frontier.append(node.output[0])
                if node.op_type in _LAYOUT_KEEPING_ARITHMETIC:
                    arithmetic.append(node)
    # Arithmetic of the input with anything but constants and what is made of it here would
    # mix layouts: not a view.
    if frontier or any(not (n in reached or fixed(n)) for node in arithmetic for n in node.input):
        return False
    perms = [[list(a.ints) for a in n.attribute if a.name == "perm"] for n in leaves]
    transposes = [n.op_type == "Transpose" and p == [[0, 3, 1, 2]] for n, p in zip(leaves, perms)]
    return 0 < len(leaves) <= 64 and any(transposes) and all(
        t or n.op_type == "Shape" for n, t in zip(leaves, transposes)
    )


# At most this many graph inputs: convforge's models take a few (an image and its metadata).
_MAX_GRAPH_INPUTS = 64


def _entries(path, graph, nodes, input_layout, from_convforge: bool) -> list:
    """The graph's inputs, as :func:`_entry` reads each."""
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if not inputs or not graph.output:
        raise ModelFileError(path, f"the graph has {len(inputs)} inputs and {len(graph.output)} outputs: "
                                   "convforge needs at least one of each")
    if len(inputs) > _MAX_GRAPH_INPUTS or len(graph.output) > _MAX_GRAPH_INPUTS:
        raise ModelFileError(path, f"the graph has {len(inputs)} inputs and {len(graph.output)} outputs: "
                                   f"convforge imports at most {_MAX_GRAPH_INPUTS} of each")
    if len({v.name for v in graph.output}) != len(graph.output):
        raise ModelFileError(path, f"the graph lists an output twice: {[v.name for v in graph.output]}")
    constants = initializers | {n.output[0] for n in nodes if n.op_type == "Constant" and n.output}
    axes = _unsqueeze_axes(path, graph, nodes)
    return [_entry(path, value, nodes, input_layout, constants, axes, from_convforge) for value in inputs]


def _unsqueeze_axes(path, graph, nodes):
    """``node -> its axes`` for the Unsqueezes whose axes are a small constant (an initializer, a
    Constant node, or the attribute before opset 13), read before the walk (the graph's entry)."""
    onnx = require_onnx()
    small = {t.name: t for t in graph.initializer if math.prod(t.dims) <= 8}
    for n in nodes:
        if n.op_type == "Constant" and n.output and len(n.attribute) == 1 and n.attribute[0].name == "value":
            small[n.output[0]] = n.attribute[0].t

    def axes(node):
        if len(node.input) == 2 and node.input[1] in small and math.prod(small[node.input[1]].dims) <= 8:
            return [int(v) for v in np.asarray(_reader.tensor_array(path, small[node.input[1]], "axes")).reshape(-1)]
        given = [onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "axes"]
        return [int(v) for v in given[0]] if given else None

    return axes


def _read_as_token_ids(nodes, name, constants) -> bool:
    """Is the integer input ``name`` read only (past Casts) as the indices of Gathers from constant
    matrices: an embedding's token ids (PyTorch's nn.Embedding), which the convforge model takes
    as floats?"""
    frontier, gathers = [name], 0
    while frontier and gathers <= 64:
        tensor = frontier.pop()
        for reader in (n for n in nodes if tensor in n.input):
            if reader.op_type == "Cast" and len(reader.input) == 1:
                frontier.append(reader.output[0])
            elif reader.op_type == "Gather" and list(reader.input[1:]) == [tensor] and reader.input[0] in constants:
                gathers += 1
            else:
                return False
    return gathers > 0 and not frontier


def _entry(path, value, nodes, input_layout, constants, unsqueeze_axes, from_convforge: bool):
    """A graph input: ``(name, spec, data_format, internal shape, entry tensor, nodes it passed,
    input is a channels-last view of the entry?, batch size the file fixes or None)``; the entry is
    past float Casts (or an Unsqueeze)."""
    elem_type, dims = _reader.value_dims(value)
    token_ids = elem_type in (6, 7) and _read_as_token_ids(nodes, value.name, constants)  # INT32, INT64
    if elem_type not in (1, 11) and not token_ids:  # FLOAT, DOUBLE
        raise ModelFileError(path, f"the input {value.name!r} is not a float tensor (element type {elem_type}), "
                                   "nor the token ids of an embedding (integers read by a Gather of a constant)")
    if dims is None or len(dims) not in (2, 3, 4) or any(d is None or d < 1 for d in dims[1:]):
        raise ModelFileError(
            path,
            f"the input {value.name!r} has shape {dims}: convforge needs (batch, features) or images "
            "(batch, channels, height, width) with every size but the batch fixed",
        )
    sample = tuple(dims[1:])
    if math.prod(sample) > _MAX_INPUT_ELEMENTS:
        raise ModelFileError(path, f"the input {value.name!r} declares {math.prod(sample)} values per sample, too many")
    name = value.name
    passed, entry_name = [], name
    while True:
        readers = [n for n in nodes if entry_name in n.input]
        first = readers[0] if len(readers) == 1 else None
        if first is None or not _is_no_op(first):
            break
        passed.append(first)
        entry_name = first.output[0]
    batch = dims[0] or None
    if len(sample) == 1:
        return name, sample, None, sample, entry_name, passed, False, batch
    unsqueezed = first is not None and first.op_type == "Unsqueeze" and len(first.input) == 2
    if len(sample) == 2 and not unsqueezed:
        # Sequences: (batch, steps, channels), as convforge's 1-D layers take them by default, each
        # 1-D op of the file reading their transpose to (batch, channels, steps); or (batch,
        # channels, steps), as PyTorch's Conv1d reads them, the 1-D ops reading them as they are
        # (layers with data_format='channels_first': _sequences).
        return name, sample, None, sample, entry_name, passed, False, batch
    if len(sample) == 3 and _read_channels_last(nodes, name, constants):
        # NHWC in the file, every reader transposing it to NCHW (convforge's and Keras's
        # exporters): the input is a channels-last view of the NCHW tensor the layers read.
        h, w, c = sample
        fmt = input_layout or "channels_last"
        spec = (h, w, c) if fmt == "channels_last" else (c, h, w)
        return name, spec, fmt, (c, h, w), name + "#nchw", [], True, batch
    if len(sample) == 3:
        c, h, w = sample
        fmt = input_layout or "channels_first"
        spec = (h, w, c) if fmt == "channels_last" else (c, h, w)
        return name, spec, fmt, (c, h, w), entry_name, passed, False, batch
    # (batch, height, width) images given a channel axis by the Unsqueeze. At axis 1 by another
    # producer (PyTorch's x.unsqueeze(1)) the file's images are NCHW: a channels-first model, whose
    # image outputs come back NCHW as the file's do; convforge's exporter writes the same Unsqueeze
    # for a channels-last model of (height, width) input, which stays one.
    fmt = "channels_last"
    if not from_convforge and unsqueeze_axes(first) in ([1], [-3]):
        fmt = input_layout or "channels_first"
    return name, sample, fmt, (1, *sample), first.output[0], [*passed, first], False, batch


def import_model(path, input_layout=None):
    """See :func:`convforge.onnx.load_onnx`."""
    from ..layers import Input
    from ..models import Sequential

    input_layout = check_layout(input_layout, "input_layout")
    path = os.fspath(path)
    proto = _reader.parse(path)
    _reader.check_names(path, proto)
    graph = proto.graph
    opset = _reader.default_opset(path, proto)
    initializers = {}
    for t in graph.initializer:
        if t.name in initializers:
            raise ModelFileError(path, f"two initializers are named {t.name!r}")
        initializers[t.name] = t
    known = set(initializers) | {v.name for v in graph.input}
    nodes = _reader.topological_nodes(path, graph, known)
    for node in nodes:
        if not node.output or not node.output[0]:
            raise ModelFileError(path, f"node {node.name!r} ({node.op_type}) has no output")
        if node.domain not in ("", "ai.onnx"):
            raise ModelFileError(
                path, f"node {node.name!r} ({node.op_type}): operators of domain {node.domain!r} are not supported"
            )
    ctx, entries, fmt = _walk(path, proto, nodes, opset, input_layout)
    if not any(len(e.internal) == 3 for e in entries):
        # No image input (features, sequences: taken as the file has them), so no input says the
        # model's layout of images: its image outputs do. An NCHW one (PyTorch's generator from a
        # vector, convforge's channels-first model) makes a channels-first model, which returns
        # it as the file does; a channels-last model would return it NHWC. input_layout, the
        # model's data_format here, overrides that.
        image_outputs = any(len(ctx.ref_shape(final) or ()) == 3 for final in ctx.finals)
        if input_layout is not None and not image_outputs:
            # It would be ignored: a (batch, channels, steps) file's model takes (batch, channels, steps) whatever it says.
            shapes = ", ".join(str(("batch", *e.spec)) for e in entries)
            raise ValueError(f"input_layout={input_layout!r} is the layout of image inputs and outputs; the inputs "
                             f"of {path!r} are {shapes}, taken as the file has them, and its outputs are no images "
                             "(leave input_layout out)")
        if (input_layout or ("channels_first" if ctx.nchw_outputs else None)) == "channels_first":
            ctx, entries, fmt = _walk(path, proto, nodes, opset, None, model_format="channels_first")
    chain = _is_chain(ctx, entries)
    # A Sequential reads its images as channels-first only where a layer says so (a Conv2D's or a
    # pooling's data_format): a chain of layers that take any layout (ReLU, Softmax, Flatten,
    # BatchNormalization) would read NCHW images as NHWC, its softmax or flatten on other axes.
    # As the Sequential decides it (models.sequential.image_layers): a Flatten's data_format says
    # only in which order it flattens, so a Flatten -> Dense chain of an NCHW image counted as
    # channels-first here and was read as NHWC there, its features scrambled silently.
    from ..models.sequential import image_layers

    declared = any(getattr(layer, "data_format", None) == "channels_first"
                   for layer in image_layers([layer for layer, _, _, _ in ctx.steps]))
    images_in = any(len(e.internal) == 3 for e in entries)
    unsaid = chain and fmt == "channels_first" and (len(entries[0].spec) == 3 or not images_in) and not declared
    if (not chain or unsaid) and fmt == "channels_first" and input_layout is None:
        # Graph models take channels-last images at the API: translate again for that layout.
        nchw = [(e.name, e.spec) for e in entries if len(e.spec) == 3 and not e.view]  # (a 2-D one: no channel axis)
        ctx, entries, fmt = _walk(path, proto, nodes, opset, "channels_last")
        chain = not unsaid and chain
        if nchw:
            # Not silent: the file's framework fed NCHW arrays, which this model reads as NHWC --
            # with an error where the shapes differ, and a wrong answer where C = H = W.
            why = "no layer of the chain says its images are channels-first" if chain or unsaid else "it is a graph model"
            shown = ", ".join(f"{name!r} (batch, {c}, {h}, {w})" for name, (c, h, w) in nchw)
            warnings.warn(
                f"{path}: the file's image input {shown} is NCHW, but its convforge model takes channels-last images "
                f"(batch, height, width, channels) because {why}: transpose NCHW arrays with x.transpose(0, 2, 3, 1) "
                "(its image outputs are channels-last too). Pass input_layout='channels_last' to say you expect this.",
                UserWarning, stacklevel=user_stacklevel())
    if (not chain or unsaid) and fmt == "channels_first":
        what = "no layer of the chain says its images are channels-first" if unsaid else "the graph is not a chain"
        images = "takes channels-last input" if images_in else "returns channels-last images"
        raise ModelFileError(path, f"{what}: its convforge model {images} only")
    try:
        if chain:
            model_layers = [layer for layer, _, _, _ in ctx.steps]
            return Sequential([Input(shape=entries[0].spec), *model_layers], name=_model_name(proto, "sequential"))
        return _functional(ctx, entries, proto)
    except (ValueError, TypeError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise ModelFileError(path, f"the layers do not make a convforge model: {err}") from None


class _GraphEntry(NamedTuple):
    """A graph input as the import reads it (see :func:`_entry`)."""

    name: str
    spec: tuple  # the convforge Input's shape
    data_format: str | None
    internal: tuple  # the per-sample shape the layers see
    tensor: str  # the tensor the layers read
    passed: list  # the no-op nodes between the input and that tensor
    view: bool  # the input is a channels-last view of that tensor
    batch: int | None  # the batch size the file fixes, or None


def _walk(path, proto, nodes, opset, input_layout, model_format=None):
    """The file's nodes as layers (_walk_nodes), which take their names from the nodes."""
    from ..layers.base import layers_named_later

    with layers_named_later():
        return _walk_nodes(path, proto, nodes, opset, input_layout, model_format)


def _walk_nodes(path, proto, nodes, opset, input_layout, model_format=None):
    """Translate every node: ``(context, graph entries, data_format)``; ``ctx.finals`` are the
    tensors of the graph outputs, in order, ``ctx.nchw_outputs`` the graph outputs that are NCHW
    images, which a channels-last model returns transposed. ``model_format``: the data_format
    where no input is an image (else channels-last)."""
    graph = proto.graph
    entries = [_GraphEntry(*entry) for entry in
               _entries(path, graph, nodes, input_layout, proto.producer_name == "convforge")]
    formats = {e.data_format for e in entries if e.data_format}
    fmt = "channels_first" if "channels_first" in formats else next(iter(formats), model_format)
    outputs = [v.name for v in graph.output]
    ctx = ImportContext(path, proto, nodes, opset, fmt or "channels_last", outputs)
    batches = {e.batch for e in entries}
    ctx.fixed_batch = batches.pop() if len(batches) == 1 else None
    for e in entries:
        ctx.set_input(e.tensor, e.internal)
        ctx.consume_all(e.passed, e.tensor)
        if e.view:
            ctx.set_view(e.name, e.tensor)
    # Constant nodes first (they read nothing): an importer that looks ahead (Keras's wrap of
    # negative token ids, _embedding) sees their values before the walk reaches them.
    for node in nodes:
        if node.op_type == "Constant":
            importer_for("Constant")(ctx, node)
    for x, end, region, make in _formulas.find_formulas(ctx, nodes):
        for node in region:
            if node is not end:
                ctx.consume_node(node)  # read by the formula alone
        ctx.formula_layers[id(end)] = (make(_layers), x)
    exits = set()  # graph outputs made by convforge's exit Transpose: NHWC in the file
    for node in nodes:
        if ctx.consumed(node):
            continue
        if id(node) in ctx.formula_layers:
            layer, x = ctx.formula_layers[id(node)]
            base = ctx.view_base(x)
            ctx.add_view_layer(node, layer, [base if base is not None else x], view=base is not None)
            continue
        if _is_exit_transpose(ctx, node):
            ctx.consume(node, ctx.input_name(node))
            exits.add(node.output[0])
            continue
        if _fold.FOLDERS.get(node.op_type) and node.input and all(not n or ctx.is_constant(n) for n in node.input):
            _fold_node(ctx, node)
            continue
        importer = importer_for(node.op_type)
        if importer is None:
            hint = _UNSUPPORTED_OP_HINTS.get(node.op_type, "")
            raise ModelFileError(
                path,
                f"node {node.name!r} ({node.op_type}): the op {node.op_type!r} is not supported{hint}; convforge "
                f"imports {', '.join(supported_ops())}",
            )
        importer(ctx, node)
    if not ctx.steps:
        raise ModelFileError(path, "the graph holds no layer convforge can run (its output is its input)")
    ctx.finals, ctx.nchw_outputs = [], []
    for output in outputs:
        final = ctx.resolve(output)
        if ctx.sequence_base(final) is not None:
            raise ModelFileError(path, f"the graph output {output!r} is a sequence transposed to (batch, channels, "
                                       "steps); convforge's models return sequences as (batch, steps, channels)")
        if ctx.ref_shape(final) is None:
            made = ctx.is_constant(final) or any(final in n.output for n in ctx.proto.graph.node)
            raise ModelFileError(path, f"the graph output {output!r} is a constant, not computed from the input" if made
                                 else f"the graph output {output!r} is made by no node and is no initializer")
        # An output that is a channels-last view (Keras's exporter ends image outputs with a
        # transpose) is the NCHW tensor, which predict returns channels-last.
        base = ctx.view_base(final)
        maker = next((n for n in nodes if final in n.output), None)
        if base is not None and ctx.data_format == "channels_first" and maker is not None:
            # A channels-first model returns its NCHW images as they are: the file's NHWC output
            # (PyTorch's x.permute(0, 2, 3, 1) last) is the image's axes moved, Permute((2, 3, 1)).
            ctx.add_layer(maker, _layers.Permute((2, 3, 1)), [base], final + "#nhwc")
            base = final + "#nhwc"
        elif base is None and output not in exits and len(ctx.ref_shape(final)) == 3:
            ctx.nchw_outputs.append(output)
        ctx.finals.append(base or final)
    return ctx, entries, fmt


def _is_chain(ctx, entries) -> bool:
    """Does each layer read the one before it, the last making the one output (a Sequential)?"""
    if len(entries) != 1 or len(ctx.finals) != 1:
        return False
    tensor = entries[0].tensor
    readers: dict[str, int] = {}
    for _, inputs, _, _ in ctx.steps:
        for name in inputs:
            readers[name] = readers.get(name, 0) + 1
    for _, inputs, out, _ in ctx.steps:
        if inputs != [tensor] or readers[tensor] != 1:
            return False
        tensor = out
    return tensor == ctx.finals[0]


def _functional(ctx, entries, proto):
    """A ``convforge.Model(inputs, outputs)`` calling the layers on symbolic tensors, in order: its
    inputs and outputs those of the graph, in the file's order."""
    from .. import models
    from ..layers import Input, Reshape

    if not hasattr(models, "Model"):
        raise ModelFileError(ctx.path, "the graph is not a chain, and this convforge has no graph (functional) models")
    tensors, model_inputs = {}, []
    for e in entries:
        if e.tensor in tensors:
            raise ModelFileError(ctx.path, f"the graph inputs {e.name!r} and another feed the same tensor {e.tensor!r}")
        model_inputs.append(Input(shape=e.spec))
        tensors[e.tensor] = model_inputs[-1]
        if len(e.spec) == 2 and len(e.internal) == 3:
            # (batch, height, width) images that the file's Unsqueeze gives a channel axis: a
            # Sequential takes them so at its entry; a graph's layers need the axis made.
            tensors[e.tensor] = Reshape((*e.spec, 1))(model_inputs[-1])
    for layer, inputs, out, many in ctx.steps:
        args = [tensors[name] for name in inputs]
        try:
            tensors[out] = layer(args if many else args[0])
        except (ValueError, TypeError) as err:
            raise ModelFileError(ctx.path, f"layer {layer.name or type(layer).__name__}: {err}") from None
    outputs = [tensors[final] for final in ctx.finals]
    return models.Model(model_inputs if len(model_inputs) > 1 else model_inputs[0],
                        outputs if len(outputs) > 1 else outputs[0],
                        name=_model_name(proto, "functional"))


def _fold_node(ctx, node) -> None:
    """Evaluate a node of shape arithmetic whose inputs are all constants (see ``_fold``)."""
    onnx = require_onnx()
    attrs = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        if isinstance(value, onnx.TensorProto):
            value = ctx.tensor_value(value, f"attribute {attribute.name!r} of node {node.name!r}")
        attrs[attribute.name] = value
    args = [ctx.constant(node, i, f"input {i}") if name else None for i, name in enumerate(node.input)]
    while args and args[-1] is None:
        args.pop()
    try:
        value = _fold.fold(node.op_type, args, attrs)
    except _fold.FoldError as err:
        raise ctx.error(node, str(err), err.attribute) from None
    ctx.folded_values += value.size
    if ctx.folded_values > _fold.MAX_FOLDED_TOTAL:
        raise ctx.error(node, f"the folded constants of this graph exceed {_fold.MAX_FOLDED_TOTAL} values")
    ctx.set_constant(node.output[0], value)
    ctx.consume_node(node)


def _is_exit_transpose(ctx, node) -> bool:
    """convforge's exit Transpose (NCHW -> NHWC) on the graph output: what predict does for an image
    output of a channels-last model (a channels-first one returns NCHW: there the Transpose is a
    view, its Permute made in _walk)."""
    if node.op_type != "Transpose" or node.output[0] not in ctx.graph_outputs or ctx.data_format != "channels_last":
        return False
    perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
    name = ctx.resolve(node.input[0])
    return perm == [[0, 2, 3, 1]] and ctx.view_base(name) is None and len(ctx.ref_shape(name) or ()) == 3


def _model_name(proto, default: str) -> str:
    name = proto.graph.name
    if proto.producer_name == "convforge" and name and "/" not in name:
        return name
    return default
