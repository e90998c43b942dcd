"""convforge model -> ONNX ModelProto: the graph walk and the context exporters write into."""

from __future__ import annotations

import numbers
import os

import numpy as np

from ._registry import exporter_for

LAYOUTS = ("channels_last", "channels_first")
BATCH = "batch"  # the name of the dynamic batch dimension


def require_onnx():
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError(
            "ONNX export and import need the 'onnx' package: pip install 'convforge[onnx]' (or pip install onnx)"
        ) from err
    return onnx


class ExportContext:
    """What an exporter writes into: nodes, initializers, and the shapes of the tensors so far.

    Tensor names are unique in the graph; shapes are convforge's internal per-sample shapes
    (``(channels, height, width)`` for images, NCHW in the graph with the batch first).
    """

    def __init__(self, opset: int):
        self.onnx = require_onnx()
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()
        self._shapes: dict[str, tuple] = {}
        self.layer = None  # the layer being exported (for node names and messages)
        self.renamed: dict[str, str] = {}  # tensors renamed to graph outputs

    def name(self, hint: str) -> str:
        """A tensor or node name not used yet, made from ``hint``."""
        name, i = hint, 0
        while name in self._names:
            i += 1
            name = f"{hint}_{i}"
        self._names.add(name)
        return name

    def _scoped(self, suffix: str) -> str:
        prefix = self.layer.name if self.layer is not None else "graph"
        return self.name(f"{prefix}/{suffix}")

    def initializer(self, suffix: str, value, dtype=np.float32) -> str:
        """Add a constant tensor (weights are stored as float32); return its name."""
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        name = self._scoped(suffix)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def ints(self, suffix: str, values) -> str:
        """An int64 1-D constant (shapes, axes, pads inputs)."""
        return self.initializer(suffix, np.asarray(list(values), dtype=np.int64), dtype=np.int64)

    def node(self, op_type: str, inputs, suffix: str | None = None, **attributes) -> str:
        """Add one node with a single output; return the output's name. ``None`` attributes are left out."""
        base = suffix or op_type
        output = self._scoped(base)
        self.nodes.append(
            self.onnx.helper.make_node(
                op_type,
                list(inputs),
                [output],
                name=output,
                **{k: v for k, v in attributes.items() if v is not None},
            )
        )
        return output

    def shape(self, tensor: str) -> tuple:
        """Internal per-sample shape of a tensor made so far."""
        return self._shapes[tensor]

    def set_shape(self, tensor: str, shape) -> None:
        self._shapes[tensor] = tuple(int(d) for d in shape)


def check_layout(value, argument: str, allow_none=True):
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or value not in LAYOUTS:
        raise ValueError(f"{argument} must be 'channels_last' or 'channels_first'; got {value!r}")
    return value


def check_opset(opset) -> int:
    from . import MAX_OPSET, MIN_OPSET

    if isinstance(opset, (bool, np.bool_)) or not isinstance(opset, numbers.Integral):
        raise TypeError(f"opset must be an int from {MIN_OPSET} to {MAX_OPSET}; got {type(opset).__name__} {opset!r}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be from {MIN_OPSET} to {MAX_OPSET}; got {opset}")
    return int(opset)


def export_layer(ctx: ExportContext, layer, inputs: list[str]) -> str:
    """Translate one layer with its registered exporter, recording its output shape."""
    exporter = exporter_for(layer)
    if exporter is None:
        raise ValueError(
            f"cannot export layer {layer.name!r} ({type(layer).__name__}) to ONNX: no exporter is registered "
            f"for {type(layer).__name__}; write one and register it with "
            f"convforge.onnx.register_exporter({type(layer).__name__}, fn)"
        )
    ctx.layer = layer
    try:
        output = exporter(ctx, layer, list(inputs))
    except ValueError as err:
        # The exporter says what it cannot write (a ReLU's threshold, say); which of the model's
        # layers that is, only the graph walk knows.
        raise ValueError(f"cannot export layer {layer.name!r} ({type(layer).__name__}) to ONNX: {err}") from err
    finally:
        ctx.layer = None
    ctx.set_shape(output, layer._internal_output_shape)
    return output


def graph_input(ctx: ExportContext, spec, internal, kind, layout):
    """The graph's input ValueInfo and the NCHW tensor the first layer reads."""
    helper, tp = ctx.onnx.helper, ctx.onnx.TensorProto
    name = ctx.name("input")
    if kind == "reshape" and layout == "channels_last":  # (height, width) images of one channel
        info = helper.make_tensor_value_info(name, tp.FLOAT, [BATCH, *spec])
        tensor = ctx.node("Unsqueeze", [name, ctx.ints("channel_axis", [1])], "to_nchw")
    elif len(internal) == 3:
        c, h, w = internal
        if layout == "channels_last":
            info = helper.make_tensor_value_info(name, tp.FLOAT, [BATCH, h, w, c])
            # The one layout change of the graph: NHWC -> NCHW at the entry, as predict does.
            tensor = ctx.node("Transpose", [name], "to_nchw", perm=[0, 3, 1, 2])
        else:
            info = helper.make_tensor_value_info(name, tp.FLOAT, [BATCH, c, h, w])
            tensor = name
    else:
        info = helper.make_tensor_value_info(name, tp.FLOAT, [BATCH, *internal])
        tensor = name
    ctx.set_shape(tensor, internal)
    return info, tensor


def graph_output(ctx: ExportContext, tensor: str, layout: str, graph_inputs: list[str]):
    """Name a final tensor ``output`` (NHWC again for a channels-last image output); a tensor that
    is an input, or already an output, is passed through an Identity."""
    helper, tp = ctx.onnx.helper, ctx.onnx.TensorProto
    shape = ctx.shape(tensor)
    if len(shape) == 3 and layout == "channels_last":
        tensor = ctx.node("Transpose", [tensor], "to_nhwc", perm=[0, 2, 3, 1])
        c, h, w = shape
        dims = [BATCH, h, w, c]
    else:
        dims = [BATCH, *shape]
    name = ctx.name("output")
    tensor = ctx.renamed.get(tensor, tensor)
    if tensor in graph_inputs or tensor in ctx.renamed.values() or not any(tensor in n.output for n in ctx.nodes):
        ctx.nodes.append(helper.make_node("Identity", [tensor], [name], name=name))
    else:
        _rename(ctx, tensor, name)
        ctx.renamed[tensor] = name
    return helper.make_tensor_value_info(name, tp.FLOAT, dims)


def _rename(ctx: ExportContext, old: str, new: str) -> None:
    for node in ctx.nodes:
        for field in (node.input, node.output):
            for i, value in enumerate(field):
                if value == old:
                    field[i] = new
        if node.name == old:
            node.name = new


def _sequential_graph(ctx: ExportContext, model, layout):
    entry = model._entry
    info, tensor = graph_input(ctx, entry.spec, entry.internal, entry.kind, layout)
    for layer in model._flat_layers:
        tensor = export_layer(ctx, layer, [tensor])
    return [info], [graph_output(ctx, tensor, layout, [info.name])]


def _functional_graph(ctx: ExportContext, model, layout):
    """A graph model (``convforge.Model(inputs, outputs)``): its nodes in execution order."""
    infos, tensors = [], {}
    for index, entry in enumerate(model._entries):
        info, tensors[index] = graph_input(ctx, entry.spec, entry.internal, entry.kind, layout)
        infos.append(info)
    for step in model._steps:
        # step.call: the layer, or for a layer called twice, its weight-sharing copy for this call
        # (its own input/output shapes).
        tensors[step.out] = export_layer(ctx, step.call, [tensors[i] for i in step.inputs])
    names = [info.name for info in infos]
    return infos, [graph_output(ctx, tensors[i], layout, names) for i in model._outputs_index]


def build_model_proto(model, opset: int = 17, input_layout: str | None = None):
    """The ONNX ModelProto of a built convforge model (checked by ``onnx.checker``)."""
    import convforge

    opset = check_opset(opset)
    input_layout = check_layout(input_layout, "input_layout")
    if not getattr(model, "built", False):
        raise ValueError(
            "cannot export a model that is not built: give the first layer input_shape=, call "
            "model.build((None, ...)), or run predict/fit once"
        )
    if hasattr(model, "_steps") and hasattr(model, "_entries"):
        graph_builder = _functional_graph
    elif hasattr(model, "_entry") and hasattr(model, "layers"):
        graph_builder = _sequential_graph
    else:
        raise TypeError(f"cannot export {type(model).__name__} to ONNX: not a convforge model")
    layout = input_layout or model._data_format()
    ctx = ExportContext(opset)
    inputs, outputs = graph_builder(ctx, model, layout)
    onnx = ctx.onnx
    graph = onnx.helper.make_graph(
        ctx.nodes, model.name, inputs, outputs, initializer=ctx.initializers,
        doc_string=f"convforge {convforge.__version__} model {model.name!r}",
    )
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="convforge",
        producer_version=convforge.__version__,
        # The oldest IR version that can carry this opset, so older runtimes load the file.
        ir_version=onnx.helper.find_min_ir_version_for(opsets),
    )
    onnx.helper.set_model_props(proto, {"convforge_input_layout": layout, "convforge_model_name": model.name})
    onnx.checker.check_model(proto)
    return proto


def export_model(model, path, opset: int = 17, input_layout: str | None = None) -> None:
    from ..saving import write_file_atomic

    proto = build_model_proto(model, opset, input_layout)
    data = proto.SerializeToString()
    write_file_atomic(os.fspath(path), lambda f: f.write(data))
