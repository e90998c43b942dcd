"""Exporters and importers of BatchNormalization, global pooling, ZeroPadding2D/1D, Cropping2D/1D,
DepthwiseConv2D, SeparableConv2D, UpSampling2D/1D (Resize) and the merge layers (Add, Subtract, Multiply,
Average, Concatenate) of graph models.

The 1-D ZeroPadding1D, Cropping1D and UpSampling1D are a Pad, Slice and Resize of the steps axis of
the layer's own layout (those ops name their axes: no Transpose); their importers read which axis
(``_sequences``).

Registered by class *name*, and the importers look the classes up in :mod:`convforge.layers`
when they run: this module works whether or not this convforge has those layers (an importer
whose layer is missing says so instead of failing at import).
"""

from __future__ import annotations

import math

import re

import numpy as np

from .. import _params
from .. import layers as _layers
from ..layers.base import display_shape, internal_axis, internal_shape, shown_axis
from . import _sequences
from ._builtin_export import activation, onnx_pads
from ._import import MAX_SAMPLE_ELEMENTS
from ._registry import register_exporter, register_importer

INT64_MAX = 2**63 - 1


def _layer_class(ctx, node, name: str):
    cls = getattr(_layers, name, None)
    if cls is None:
        raise ctx.error(node, f"this convforge has no {name} layer to import it into")
    return cls


# ---------------------------------------------------------------------------- export


def export_batch_normalization(ctx, layer, inputs):
    (x,) = inputs
    p = layer.params
    channels = p["moving_mean"].shape[0]
    gamma = p["gamma"] if "gamma" in p else np.ones(channels)
    beta = p["beta"] if "beta" in p else np.zeros(channels)
    operands = [x] + [ctx.initializer(n, v) for n, v in
                      (("gamma", gamma), ("beta", beta), ("moving_mean", p["moving_mean"]),
                       ("moving_variance", p["moving_variance"]))]
    # (batch, steps, channels): ONNX's channel axis is 1, not the last ((batch, channels, steps) as it is).
    sequences = len(ctx.shape(x)) == 2 and layer._channels_last_sequences(3)
    if sequences:
        operands[0] = ctx.node("Transpose", [x], "to_channels_first", perm=[0, 2, 1])
    # Inference form: the moving statistics. ONNX's momentum has Keras's meaning (the weight of
    # the old statistic); it only matters to a runtime that trains.
    y = ctx.node("BatchNormalization", operands, "BatchNormalization", epsilon=layer.epsilon,
                 momentum=layer.momentum)
    if sequences:
        y = ctx.node("Transpose", [y], "to_channels_last", perm=[0, 2, 1])
    return y


def export_group_normalization(ctx, layer, inputs):
    """GroupNormalization as PyTorch's exporter writes nn.GroupNorm (any opset from 13): the
    channels first (a Transpose where they are not), Reshape to (batch, groups, -1), an
    InstanceNormalization of that (scale 1, bias 0), Reshape back, then Mul by gamma and Add beta
    per channel. (ONNX's GroupNormalization op changed its scale's meaning at opset 21.)"""
    (x,) = inputs
    shape = tuple(ctx.shape(x))
    rank = len(shape) + 1
    axis = layer._channel_axis(rank)
    perm = [0, axis, *[a for a in range(1, rank) if a != axis]]
    moved = perm != list(range(rank))
    if moved:
        x = ctx.node("Transpose", [x], "channels_first", perm=perm)
    dims = tuple(shape[a - 1] for a in perm[1:])
    groups = layer.groups
    y = ctx.node("Reshape", [x, ctx.ints("grouped_shape", (0, groups, -1))], "to_groups")
    y = ctx.node("InstanceNormalization", [y, ctx.initializer("ones", np.ones(groups, np.float32)),
                                           ctx.initializer("zeros", np.zeros(groups, np.float32))],
                 "InstanceNormalization", epsilon=layer.epsilon)
    y = ctx.node("Reshape", [y, ctx.ints("shape", (0, *dims))], "from_groups")
    per_channel = (dims[0],) + (1,) * (len(dims) - 1)
    p = layer.params
    if "gamma" in p:
        y = ctx.node("Mul", [y, ctx.initializer("gamma", p["gamma"].reshape(per_channel))], "gamma")
    if "beta" in p:
        y = ctx.node("Add", [y, ctx.initializer("beta", p["beta"].reshape(per_channel))], "beta")
    if moved:
        y = ctx.node("Transpose", [y], "channels_back", perm=[int(i) for i in np.argsort(perm)])
    return y


def export_layer_normalization(ctx, layer, inputs):
    """LayerNormalization (opset 17) over the trailing axes of the graph's tensor: the layer's
    axes, moved last by a Transpose where they are not (a channels-last image's channels are
    NCHW's axis 1), and moved back after."""
    (x,) = inputs
    if ctx.opset < 17:
        raise ValueError(f"not at opset {ctx.opset}: ONNX's LayerNormalization op is opset 17 or later")
    shape = ctx.shape(x)
    rank = len(shape) + 1
    axes = sorted(layer._internal_axes(rank - 1))
    kept = [a for a in range(1, rank) if a not in axes]
    perm = [0, *kept, *axes]
    moved = perm != list(range(rank))
    if moved:
        x = ctx.node("Transpose", [x], "to_normalised_last", perm=perm)
    dims = tuple(shape[a - 1] for a in axes)
    p = layer.params
    gamma = layer._broadcast(p["gamma"], rank).reshape(dims) if "gamma" in p else np.ones(dims, np.float32)
    operands = [x, ctx.initializer("gamma", gamma)]
    if "beta" in p:
        operands.append(ctx.initializer("beta", layer._broadcast(p["beta"], rank).reshape(dims)))
    y = ctx.node("LayerNormalization", operands, "LayerNormalization", axis=rank - len(axes), epsilon=layer.epsilon)
    if moved:
        y = ctx.node("Transpose", [y], "from_normalised_last", perm=[int(i) for i in np.argsort(perm)])
    return y


def export_unit_normalization(ctx, layer, inputs):
    """x / max(ReduceL2(x), 1e-12) over the layer's axes of the graph's tensor (images NCHW)."""
    (x,) = inputs
    norm = _reduce_l2(ctx, x, sorted(layer._axes(len(ctx.shape(x)) + 1)), "norm")
    floored = ctx.node("Max", [norm, ctx.initializer("floor", np.float32(layer._FLOOR))], "floored")
    return ctx.node("Div", [x, floored], "UnitNormalization")


def export_global_pooling(ctx, layer, inputs):
    op = "GlobalMaxPool" if type(layer).__name__.startswith("GlobalMax") else "GlobalAveragePool"
    y = ctx.node(op, inputs, op)
    if layer.keepdims:
        return y
    return ctx.node("Flatten", [y], "Flatten", axis=1)  # (batch, channels, 1, 1) -> (batch, channels)


def export_zero_padding(ctx, layer, inputs):
    top, bottom, left, right = layer._margins
    pads = ctx.ints("pads", [0, 0, top, left, 0, 0, bottom, right])
    return ctx.node("Pad", [inputs[0], pads], "Pad", mode="constant")


def export_zero_padding1d(ctx, layer, inputs):
    """A zero Pad of the steps axis: 1 of (batch, steps, channels), 2 of (batch, channels, steps)."""
    before, after = [0, 0, 0], [0, 0, 0]
    before[layer._steps_axis], after[layer._steps_axis] = layer.padding
    return ctx.node("Pad", [inputs[0], ctx.ints("pads", before + after)], "Pad", mode="constant")


def export_cropping(ctx, layer, inputs):
    (x,) = inputs
    _, h, w = ctx.shape(x)
    top, bottom, left, right = layer._margins
    operands = [x, ctx.ints("starts", [top, left]), ctx.ints("ends", [h - bottom, w - right]), ctx.ints("axes", [2, 3])]
    return ctx.node("Slice", operands, "Slice")


def export_cropping1d(ctx, layer, inputs):
    """A Slice of the steps axis."""
    (x,) = inputs
    steps, _ = layer._steps_channels(ctx.shape(x))
    left, right = layer.cropping
    operands = [x, ctx.ints("starts", [left]), ctx.ints("ends", [steps - right]), ctx.ints("axes", [layer._steps_axis])]
    return ctx.node("Slice", operands, "Slice")


def _depthwise_node(ctx, layer, x, bias_name):
    """Keras's depthwise convolution is ONNX's grouped Conv with one group per input channel; the
    kernel ``(channels * multiplier, 1, kh, kw)`` is its ``W`` as stored."""
    channels, h, w = ctx.shape(x)
    pads = _params.conv_padding(layer.padding, (h, w), layer.kernel_size, layer.strides, layer.dilation_rate)
    operands = [x, ctx.initializer("depthwise_kernel", layer.params[layer._kernel_name])]
    if bias_name is not None:
        operands.append(bias_name)
    return ctx.node(
        "Conv", operands, "DepthwiseConv", kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
        dilations=list(layer.dilation_rate), pads=onnx_pads(*pads), group=channels,
    )


def export_depthwise(ctx, layer, inputs):
    bias = ctx.initializer("bias", layer.params["bias"]) if layer.use_bias else None
    y = _depthwise_node(ctx, layer, inputs[0], bias)
    ctx.set_shape(y, layer._internal_output_shape)
    return activation(ctx, layer.activation, y)


def export_separable(ctx, layer, inputs):
    t = _depthwise_node(ctx, layer, inputs[0], None)
    operands = [t, ctx.initializer("pointwise_kernel", layer.params["pointwise_kernel"])]
    if layer.use_bias:
        operands.append(ctx.initializer("bias", layer.params["bias"]))
    y = ctx.node("Conv", operands, "PointwiseConv", kernel_shape=[1, 1])
    ctx.set_shape(y, layer._internal_output_shape)
    return activation(ctx, layer.activation, y)


def _chain(ctx, op, inputs):
    """A binary ONNX op over any number of inputs, left to right (as the layer adds them)."""
    out = inputs[0]
    for other in inputs[1:]:
        out = ctx.node(op, [out, other], op)
    return out


def _broadcast_operands(ctx, layer, inputs):
    """The merge's inputs as ONNX broadcasts them (right-aligned, on the graph's NCHW tensors): an
    input of the output's rank as it is (its size-1 axes are Keras's broadcast axes there too),
    one of a lower rank reshaped to the output's rank first, where that moves no value (a
    (channels,) vector to (channels, 1, 1))."""
    if not layer._broadcasting():
        return inputs
    operands = []
    for k, name in enumerate(inputs):
        view = layer._views[k]
        if view is None:
            operands.append(name)
            continue
        own, shown, padded = view
        target = internal_shape(padded, layer._data_format)
        if tuple(own) == target:
            operands.append(name)
            continue
        if [d for d in own if d != 1] != [d for d in target if d != 1]:
            raise ValueError(
                f"its input {k} of shape "
                f"{(None, *shown)} broadcasts against the output {(None, *display_shape(layer._internal_output_shape, layer._data_format))} "
                "only after a transpose of the channels; reshape it to the output's rank first (layers.Reshape)"
            )
        y = ctx.node("Reshape", [name, ctx.ints(f"shape_{k}", (0, *target))], f"Reshape_{k}")
        ctx.set_shape(y, target)
        operands.append(y)
    return operands


def export_merge(ctx, layer, inputs):
    kind = type(layer).__name__
    inputs = _broadcast_operands(ctx, layer, inputs)  # as they are, unless the layer broadcasts
    if kind == "Add":
        return _chain(ctx, "Add", inputs)
    if kind == "Subtract":
        return ctx.node("Sub", inputs, "Sub")
    if kind == "Multiply":
        return _chain(ctx, "Mul", inputs)
    if kind == "Average":
        return ctx.node("Mean", inputs, "Mean")
    if kind in ("Maximum", "Minimum"):
        op = kind[:3]
        return ctx.node(op, inputs, op)  # variadic, as the layers
    # Concatenate: the layer knows its axis of the NCHW arrays inside.
    return ctx.node("Concat", inputs, "Concat", axis=layer._internal_axis)


def _reduce_l2(ctx, x, axes, suffix):
    if ctx.opset >= 18:  # axes an input from opset 18, an attribute before
        return ctx.node("ReduceL2", [x, ctx.ints(f"{suffix}_axes", axes)], suffix, keepdims=1)
    return ctx.node("ReduceL2", [x], suffix, axes=axes, keepdims=1)


def export_dot(ctx, layer, inputs):
    """Einsum over the contracted axes (after x / max(|x|, 1e-7) along them with ``normalize``);
    two vectors' (batch,) made (batch, 1) again, as the layer gives it."""
    x, y = inputs
    if layer.normalize:
        floor = ctx.initializer("floor", np.float32(layer._EPSILON))
        parts = []
        for k, (tensor, axis) in enumerate(zip((x, y), layer._axes_inside)):
            norm = ctx.node("Max", [_reduce_l2(ctx, tensor, [axis], f"norm{k}"), floor], f"floored{k}")
            parts.append(ctx.node("Div", [tensor, norm], f"unit{k}"))
        x, y = parts
    out = ctx.node("Einsum", [x, y], "Dot", equation=layer._equation)
    if layer._specs[2] == "b":
        out = ctx.node("Unsqueeze", [out, ctx.ints("axis", [1])], "Unsqueeze")
    return out


def export_identity(ctx, layer, inputs):
    """Identity and the training-only layers (the random augmentations, GaussianNoise,
    GaussianDropout): nothing at inference."""
    return inputs[0]


def export_rescaling(ctx, layer, inputs):
    y = ctx.node("Mul", [inputs[0], ctx.initializer("scale", np.float32(layer.scale))], "Mul")
    if layer.offset:
        y = ctx.node("Add", [y, ctx.initializer("offset", np.float32(layer.offset))], "Add")
    return y


def export_normalization(ctx, layer, inputs):
    """``(x - mean) / std`` as Sub and Div (``invert``: Mul and Add), the statistics shaped to
    broadcast against the graph's (NCHW) tensors, as Keras's own export writes the layer."""
    mean, std = layer._mean_and_std(len(layer._internal_input_shape) + 1, np.float32)
    if layer.invert:
        y = ctx.node("Mul", [inputs[0], ctx.initializer("std", std)], "Mul")
        return ctx.node("Add", [y, ctx.initializer("mean", mean)], "Add")
    y = ctx.node("Sub", [inputs[0], ctx.initializer("mean", mean)], "Sub")
    return ctx.node("Div", [y, ctx.initializer("std", std)], "Div")


def export_embedding(ctx, layer, inputs):
    """Rows of the embeddings picked by the ids, which the model holds as floats: Cast to int64, Gather."""
    ids = ctx.node("Cast", inputs, "Cast", to=7)
    return ctx.node("Gather", [ctx.initializer("embeddings", layer.params["embeddings"]), ids], "Gather", axis=0)


def export_upsampling(ctx, layer, inputs):
    """Nearest-neighbour repeat: Resize with integer scales, 'asymmetric' + 'floor' (pixel i of the
    output reads pixel floor(i / size) of the input, as np.repeat). UpSampling1D scales the steps
    axis of its layout."""
    if type(layer).__name__ == "UpSampling1D":
        factors = [1.0, 1.0, 1.0]
        factors[layer._steps_axis] = float(layer.size)
    else:
        factors = [1.0, 1.0, *layer.size]
    scales = ctx.initializer("scales", np.array(factors, np.float32))
    if getattr(layer, "interpolation", "nearest") == "bilinear":  # half-pixel centres, clamped at the edges
        return ctx.node("Resize", [inputs[0], "", scales], "Resize", mode="linear",
                        coordinate_transformation_mode="half_pixel")
    return ctx.node("Resize", [inputs[0], "", scales], "Resize", mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")


for _name, _fn in (
    ("Identity", export_identity),
    ("RandomFlip", export_identity),
    ("RandomRotation", export_identity),
    ("RandomZoom", export_identity),
    ("RandomTranslation", export_identity),
    ("RandomContrast", export_identity),
    ("RandomBrightness", export_identity),
    ("GaussianNoise", export_identity),
    ("GaussianDropout", export_identity),
    ("Rescaling", export_rescaling),
    ("Normalization", export_normalization),
    ("UpSampling2D", export_upsampling),
    ("UpSampling1D", export_upsampling),
    ("Embedding", export_embedding),
    ("Add", export_merge),
    ("Subtract", export_merge),
    ("Multiply", export_merge),
    ("Average", export_merge),
    ("Maximum", export_merge),
    ("Minimum", export_merge),
    ("Concatenate", export_merge),
    ("Dot", export_dot),
    ("BatchNormalization", export_batch_normalization),
    ("LayerNormalization", export_layer_normalization),
    ("GroupNormalization", export_group_normalization),
    ("UnitNormalization", export_unit_normalization),
    ("GlobalAveragePooling2D", export_global_pooling),
    ("GlobalMaxPooling2D", export_global_pooling),
    ("ZeroPadding2D", export_zero_padding),
    ("Cropping2D", export_cropping),
    ("ZeroPadding1D", export_zero_padding1d),
    ("Cropping1D", export_cropping1d),
    ("DepthwiseConv2D", export_depthwise),
    ("SeparableConv2D", export_separable),
):
    register_exporter(_name, _fn)


# ---------------------------------------------------------------------------- import


def import_batch_normalization(ctx, node):
    a = ctx.attributes(node, {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0})
    if a["training_mode"]:
        raise ctx.error(node, "training mode (batch statistics) is not supported at inference", "training_mode")
    if len(node.output) > 1 and any(node.output[1:]):
        raise ctx.error(node, "the running-statistics outputs (training mode) are not supported")
    if not 0 < a["epsilon"] < 1:
        raise ctx.error(node, f"epsilon {a['epsilon']} is out of range: expected 0 < epsilon < 1", "epsilon")
    if not 0 <= a["momentum"] <= 1:
        raise ctx.error(node, f"momentum {a['momentum']} is out of range: expected 0 <= momentum <= 1", "momentum")
    if _sequences.reads_sequence(ctx, node):
        return _sequences.import_batch_normalization1d(ctx, node, a)
    shape = ctx.shape(node, 0)
    values = [ctx.constant(node, i, what) for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))]
    channels = shape[0]
    if any(v.shape != (channels,) for v in values):
        raise ctx.error(node, f"parameters of shapes {[v.shape for v in values]}; expected ({channels},) each")
    if (values[3] < 0).any():
        raise ctx.error(node, "a negative variance")
    cls = _layer_class(ctx, node, "BatchNormalization")
    axis = 1 if len(shape) == 3 and ctx.data_format == "channels_first" else -1
    layer = cls(axis=axis, momentum=a["momentum"], epsilon=a["epsilon"])
    ctx.add_layer(node, layer, [node.input[0]], node.output[0], values)


def import_layer_normalization(ctx, node):
    """ONNX's LayerNormalization (PyTorch's nn.LayerNorm, convforge's export) as
    LayerNormalization over the same axes: of a channels-last view (Keras's layout, and convforge's
    export of a per-pixel normalisation), or of a tensor as the graph has it (images NCHW)."""
    a = ctx.attributes(node, {"axis": -1, "epsilon": 1e-5, "stash_type": 1})
    if len(node.output) > 1 and any(node.output[1:]):
        raise ctx.error(node, "its Mean and InvStdDev outputs (training) are not supported")
    if not 0 < a["epsilon"] < 1:
        raise ctx.error(node, f"epsilon {a['epsilon']} out of range", "epsilon")
    if ctx.sequence_base(node.input[0]) is not None:
        raise ctx.error(node, "a LayerNormalization of a transposed sequence is not supported")
    base = ctx.view_base(node.input[0])
    shape = tuple(ctx.ref_shape(node.input[0]) if base is not None else ctx.shape(node, 0))
    rank = len(shape) + 1
    if not -rank < a["axis"] < rank or a["axis"] % rank == 0:
        raise ctx.error(node, f"axis {a['axis']} of a {('batch', *shape)} tensor: the batch axis cannot be normalised",
                        "axis")
    first = a["axis"] % rank
    dims = shape[first - 1:]
    values = [np.asarray(ctx.constant(node, 1, "Scale"))]
    if len(node.input) > 2 and node.input[2]:
        values.append(np.asarray(ctx.constant(node, 2, "B")))
    def full(v):  # v broadcast to dims where ONNX's rules allow it, else as it is (refused below)
        # Leading axes of 1 line up with the axes that are not normalised (the batch's among them,
        # while v has no more axes than the input): broadcast there, they change nothing.
        while len(dims) < v.ndim <= rank and v.shape[0] == 1:
            v = v[0]
        try:
            return np.broadcast_to(v, dims) if v.ndim <= len(dims) else v
        except ValueError:
            return v

    values = [full(v) for v in values]
    if any(v.shape != tuple(dims) for v in values):
        raise ctx.error(node, f"Scale / B of shapes {[v.shape for v in values]}; expected {dims}")
    # The axes as Keras counts them on the user's shape, and the weights in their order: an NCHW
    # image's in a channels-last model, or a channels-last view's in a channels-first one (its
    # (h, w, c) axes are the model's (c, h, w) image's 2, 3, 1), else the file's own.
    image = rank == 4 and ctx.data_format != "channels_first" and base is None
    view_in_channels_first = rank == 4 and ctx.data_format == "channels_first" and base is not None
    file_axes = list(range(first, rank))
    if image:  # NCHW's trailing axes (C, H, W)[first - 1:] -> the user's (h, w, c) order
        to_user = [shown_axis(i, rank) for i in file_axes]
    elif view_in_channels_first:
        to_user = [internal_axis(i, rank) for i in file_axes]
    else:
        to_user = file_axes
    user = sorted(to_user)
    if to_user != user:
        order = sorted(range(len(file_axes)), key=lambda k: to_user[k])
        values = [np.ascontiguousarray(np.transpose(v, order)) for v in values]
    axis = -1 if user == [rank - 1] else user
    layer = _layer_class(ctx, node, "LayerNormalization")(axis=axis, epsilon=a["epsilon"], center=len(values) > 1)
    weights = [np.ascontiguousarray(v) for v in values]
    if base is not None:
        ctx.add_view_layer(node, layer, [base], view=True, weights=weights)
    else:
        ctx.add_layer(node, layer, [node.input[0]], node.output[0], weights)


def start_group_norm(ctx, node, batch) -> bool:
    """At a Reshape to (batch, groups, -1) of an NCHW image, features or a (channels, steps)
    tensor or view, read by an InstanceNormalization (PyTorch's nn.GroupNorm): noted, for that
    node to make the GroupNormalization (True)."""
    reader, _ = ctx.next_node(node.output[0])
    if reader is None or reader.op_type != "InstanceNormalization" or not ctx.is_constant(node.input[1]):
        return False
    if ctx.view_base(node.input[0]) is not None:
        return False
    steps = ctx.sequence_base(node.input[0])  # a sequence's (channels, steps) view: its channels first
    shape = ctx.ref_shape(node.input[0]) if steps is not None else ctx.shape(node, 0)
    target = [int(v) for v in np.asarray(ctx.constant(node, 1, "shape")).reshape(-1)]
    if len(shape) not in (1, 2, 3) or len(target) != 3 or target[0] not in batch or target[1] < 1 \
            or shape[0] % target[1] or target[2] not in (-1, math.prod(shape) // target[1]):
        return False
    ctx.pending_group_norms[node.output[0]] = (ctx.input_name(node), target[1])
    ctx.consume_node(node)
    return True


def _per_channel_constant(ctx, node, tensor: str, dims: tuple):
    """The constant operand of an elementwise ``node`` reading ``tensor`` (per-sample ``dims``,
    channels first), as one value per channel where it is that (a scalar, or (C, 1, ...) with or
    without the batch's 1: NumPy's broadcasting puts a bare (C,) of an image along its width); else
    None."""
    if len(node.input) != 2 or tensor not in (node.input[0], node.input[1]):
        return None
    other = node.input[1] if node.input[0] == tensor else node.input[0]
    if not ctx.is_constant(other):
        return None
    value = np.asarray(ctx.constant(node, list(node.input).index(other), "operand"), dtype=np.float64)
    channels = dims[0]
    if value.size == 1 and value.ndim <= len(dims) + 1:
        return np.full(channels, float(value.reshape(-1)[0]))
    per_channel = (channels,) + (1,) * (len(dims) - 1)
    return value.reshape(channels) if value.shape in (per_channel, (1, *per_channel)) else None


def import_instance_norm(ctx, node):
    """InstanceNormalization: of a (batch, groups, -1) Reshape of an image, features or a
    sequence (PyTorch's nn.GroupNorm, with its Reshape back and the Mul by the weight and Add of the
    bias per channel after it) as GroupNormalization(groups); of an image or a sequence itself
    (nn.InstanceNorm2d / 1d) as GroupNormalization with a group per channel."""
    a = ctx.attributes(node, {"epsilon": 1e-5})
    if not 0 < a["epsilon"] < 1:
        raise ctx.error(node, f"epsilon {a['epsilon']} out of range", "epsilon")
    scale = np.asarray(ctx.constant(node, 1, "scale"), dtype=np.float64).reshape(-1)
    bias = np.asarray(ctx.constant(node, 2, "B"), dtype=np.float64).reshape(-1)
    pending = ctx.pending_group_norms.pop(ctx.input_name(node), None)
    source, groups = pending if pending is not None else (ctx.input_name(node), None)
    dims = ctx.ref_shape(source)  # channels first: an NCHW image, features, a (channels, steps) tensor or view
    if ctx.view_base(source) is not None or dims is None or len(dims) not in ((1, 2, 3) if pending else (2, 3)):
        raise ctx.error(node, "only an InstanceNormalization of an image (batch, channels, height, width) or a "
                              "sequence (batch, channels, steps), or of its (batch, groups, -1) Reshape (PyTorch's "
                              "nn.GroupNorm), is supported")
    channels = dims[0]
    consumed, tensor = [], node.output[0]
    if groups is None:  # one group per channel, the affine per channel in the node itself
        groups = channels
        if scale.size != channels or bias.size != channels:
            raise ctx.error(node, f"scale / B of {scale.size} / {bias.size} values for {channels} channels")
        gamma, beta = scale, bias
    else:
        if scale.size != groups or bias.size != groups:
            raise ctx.error(node, f"scale / B of {scale.size} / {bias.size} values for {groups} groups")
        back = ctx.sole_consumer(node.output[0])
        if back is None or back.op_type != "Reshape" or not _reshapes_to(ctx, back, source, dims):
            raise ctx.error(node, "a group normalisation whose groups are not reshaped back to the tensor it "
                                  "normalised is not supported")
        # The per-group affine, then the per-channel one the Mul and Add after it make (folded here).
        gamma, beta = np.repeat(scale, channels // groups), np.repeat(bias, channels // groups)
        consumed, tensor = [back], back.output[0]
        for op in ("Mul", "Add"):
            reader, passed = ctx.next_node(tensor)
            value = None if reader is None or reader.op_type != op else _per_channel_constant(ctx, reader, tensor, dims)
            if value is None:
                continue
            gamma, beta = (gamma * value, beta * value) if op == "Mul" else (gamma, beta + value)
            consumed += [*passed, reader]
            tensor = reader.output[0]
    weights = [gamma.astype(np.float32), beta.astype(np.float32)]
    make = _layer_class(ctx, node, "GroupNormalization")
    steps = ctx.sequence_base(source)
    if steps is not None:  # a sequence's (channels, steps) view: its channels are the last axis as held
        ctx.add_layer(node, make(groups, axis=-1, epsilon=a["epsilon"]), [steps], tensor + "#steps", weights)
        ctx.set_sequence_view(tensor, tensor + "#steps")
    else:
        # (channels, steps) as held: the channels are axis 1; images: the data format's channels.
        axis = 1 if len(dims) == 2 or ctx.data_format == "channels_first" else -1
        ctx.add_layer(node, make(groups, axis=axis, epsilon=a["epsilon"]), [source], tensor, weights)
    for n in consumed:
        ctx.consume_node(n)


def _reshapes_to(ctx, node, image: str, dims) -> bool:
    """Whether Reshape ``node`` gives ``image``'s shape: its target the Shape of ``image``, or a
    constant (batch, *dims)."""
    target = node.input[1] if len(node.input) > 1 else ""
    maker = ctx.producer(target)
    if maker is not None and maker.op_type == "Shape" and not maker.attribute and \
            ctx.resolve(maker.input[0]) == ctx.resolve(image):
        return True
    if not ctx.is_constant(target):
        return False
    values = [int(v) for v in np.asarray(ctx.constant(node, 1, "shape")).reshape(-1)]
    return len(values) == len(dims) + 1 and values[0] in (0, -1) and tuple(values[1:]) == tuple(dims)


def import_global_pool(ctx, node):
    if _sequences.reads_sequence(ctx, node):
        return _sequences.import_global_pool1d(ctx, node)
    ctx.attributes(node, {})
    shape = ctx.shape(node, 0)
    if len(shape) != 3:
        raise ctx.error(node, f"takes images (batch, channels, height, width); its input is {('batch', *shape)}")
    name = "GlobalMaxPooling2D" if node.op_type == "GlobalMaxPool" else "GlobalAveragePooling2D"
    cls = _layer_class(ctx, node, name)
    # (batch, C, 1, 1) followed by a flatten (Flatten, Reshape to (batch, -1), Squeezes of the
    # two unit axes) is Keras's default keepdims=False.
    flattening = _pooled_flatten(ctx, node.output[0], shape[0])
    layer = cls(data_format=ctx.data_format, keepdims=flattening is None)
    ctx.add_layer(node, layer, [node.input[0]], node.output[0])
    if flattening is not None:
        ctx.consume_all(flattening, node.output[0])


def _pooled_flatten(ctx, tensor: str, channels: int):
    """The nodes that flatten a global pooling's (batch, C, 1, 1) ``tensor`` to (batch, C): a
    Flatten, a Reshape to (batch, -1) or (batch, C), or Squeezes of the two unit axes, one or two
    in a row (PyTorch's ``x.squeeze()``, ``x.squeeze(-1).squeeze(-1)``, ``x.squeeze((2, 3))``),
    with the no-op nodes passed on the way; None where it is not flattened so."""
    reader, passed = ctx.next_node(tensor)
    if reader is not None and reader.op_type != "Squeeze":
        return [*passed, reader] if _flattens_pooled(ctx, reader, channels) else None
    kept, nodes = [0, 1, 2, 3], []  # the pooled tensor's axes the squeezes leave
    while reader is not None and reader.op_type == "Squeeze":
        removed = _squeezed_positions(ctx, reader, kept, channels)
        if removed is None or any(kept[i] < 2 for i in removed):
            return None
        kept = [a for i, a in enumerate(kept) if i not in removed]
        nodes += [*passed, reader]
        if kept == [0, 1]:
            return nodes
        reader, passed = ctx.next_node(reader.output[0])
    return None


def import_squeeze(ctx, node):
    """Squeezes of an image's unit height and width to (batch, C), one node or two in a row
    (PyTorch's ``x.squeeze()`` after a pooling to 1x1 that is not a global one, such as
    AdaptiveMaxPool2d(1)'s MaxPool): a Flatten, whose (c, h, w) order is the channels' here."""
    shape = ctx.shape(node, 0) if ctx.view_base(node.input[0]) is None else None
    nodes = None
    if shape is not None and len(shape) == 3 and tuple(shape[1:]) == (1, 1):
        nodes = _pooled_flatten(ctx, node.input[0], shape[0])
    if not nodes or node not in nodes:
        raise ctx.error(node, f"a Squeeze of a {('batch', *shape) if shape is not None else 'view'} tensor: only the "
                              "unit height and width of a (batch, channels, 1, 1) image (to (batch, channels)) are "
                              "supported")
    ctx.add_layer(node, _layers.Flatten(ctx.data_format), [node.input[0]], nodes[-1].output[0])
    ctx.consume_all([n for n in nodes if n is not node], nodes[-1].output[0])


def _squeezed_positions(ctx, node, kept: list, channels: int):
    """The positions a Squeeze removes from a tensor of the pooled tensor's axes ``kept``, or None
    where it cannot be read. Without axes it removes every unit axis: the spatial ones, and the
    channels if there is one (a dynamic batch is taken as not 1; a file's fixed batch of 1 would go
    too: None)."""
    try:
        if ctx.opset >= 13:
            if node.attribute or len(node.input) > 2:
                return None
            axes = ctx.constant(node, 1, "axes").reshape(-1) if len(node.input) > 1 and node.input[1] else None
        else:  # an attribute before opset 13, absent (or empty) for every unit axis
            axes = list(ctx.attributes(node, {"axes": []})["axes"]) or None
    except Exception:  # noqa: BLE001 - a node we cannot read is simply not fused; its importer reports it
        return None
    if axes is None:
        if ctx.fixed_batch == 1:  # the file's batch of 1 goes too: no layer keeps the batch so
            return None
        return {i for i, a in enumerate(kept) if a >= 2 or (a == 1 and channels == 1)}
    rank = len(kept)
    if not all(-rank <= int(a) < rank for a in axes):
        return None
    return {int(a) % rank for a in axes}


def _flattens_pooled(ctx, node, channels) -> bool:
    try:
        if node.op_type == "Flatten":
            return ctx.attributes(node, {"axis": 1})["axis"] == 1
        if node.op_type == "Reshape" and ctx.is_constant(node.input[1]):
            target = [int(v) for v in ctx.constant(node, 1, "shape").reshape(-1)]
            return len(target) == 2 and target[1] in (-1, channels) and target[0] in (0, -1) and not node.attribute
    except Exception:  # noqa: BLE001 - a node we cannot read is simply not fused; its importer reports it
        return False
    return False


def import_pad(ctx, node):
    if ctx.sequence_base(node.input[0]) is not None:
        return _sequences.import_pad_of_steps(ctx, node, view=True)
    if ctx.view_base(node.input[0]) is None and len(ctx.shape(node, 0)) == 2:
        return _sequences.import_pad_of_steps(ctx, node, view=False)
    a = ctx.attributes(node, {"mode": "constant", "pads": None, "value": 0.0})  # pads/value: opset < 11
    if a["mode"] not in ("constant", "edge"):
        raise ctx.error(node, f"only constant (zero) padding is supported; got {a['mode']!r}", "mode")
    base, to_nchw = _view_axes(ctx, node)
    shape = ctx.ref_shape(base) if base is not None else ctx.shape(node, 0)
    if len(shape) != 3:
        raise ctx.error(node, f"takes images (batch, channels, height, width); its input is {('batch', *shape)}")
    sides = ctx.zero_pad_sides(node, a, 4, "ZeroPadding2D")
    before, after = ({to_nchw[k]: v for k, v in side.items()} for side in sides)
    margins = (before.get(2, 0), after.get(2, 0), before.get(3, 0), after.get(3, 0))
    channels = (before.get(1, 0), after.get(1, 0))
    if before.get(0, 0) or after.get(0, 0):
        raise ctx.error(node, f"padding the batch axis ({before.get(0, 0)}, {after.get(0, 0)}) is not supported")
    if any(channels):  # zeros on the channel axis alone: _pad_channels
        reason = ("a crop of the channels (negative pads)" if min(channels) < 0 else
                  f"'{a['mode']}' padding of the channels" if a["mode"] != "constant" else
                  "channels padded together with height or width (pad them in two Pads)" if any(margins) else
                  "a channel pad of a channels-last view" if base is not None else None)
        if reason is not None:
            raise ctx.error(node, f"{reason} is not supported (channel pads {channels}, height/width pads {margins}); "
                                  "convforge imports zeros added to the channels alone")
    if any(channels):
        _pad_channels(ctx, node, shape, channels)
        return
    if max(margins) > _params.MAX_PARAM:
        raise ctx.error(node, f"padding {margins} is too large")
    if a["mode"] == "edge":
        if base is not None:
            raise ctx.error(node, "edge padding of a channels-last image is not supported", "mode")
        _edge_pad_into_pool(ctx, node, shape, margins)
        return
    if min(margins) < 0:  # ONNX allows negative pads: a crop
        if max(margins) > 0:
            raise ctx.error(node, f"pads {margins} mix padding and cropping")
        t, b, l, r = (-m for m in margins)
        layer = _layer_class(ctx, node, "Cropping2D")(((t, b), (l, r)), ctx.data_format)
    else:
        t, b, l, r = margins
        layer = _layer_class(ctx, node, "ZeroPadding2D")(((t, b), (l, r)), ctx.data_format)
    _add_on_view(ctx, node, layer, base)


def _pad_channels(ctx, node, shape, channels) -> None:
    """Zero channels before and after those of an NCHW image (CIFAR ResNets' "option A"
    shortcut, F.pad(x, (0, 0, 0, 0, p, p))): Keras has no layer for it, so the image's (c, h, w)
    values become a (channels, pixels) sequence, ZeroPadding1D adds the zero channels as steps,
    and the values go back to an image (exact, at the cost of the moves)."""
    c, h, w = shape
    grown = c + channels[0] + channels[1]
    out = node.output[0]
    if ctx.data_format == "channels_first":  # the image is (c, h, w) as the model holds it
        steps = [(_layers.Reshape((c, h * w)), node.input[0], out + "#chw")]
        last = [(_layers.Reshape((grown, h, w)), out + "#padded", out)]
    else:  # the user's (h, w, c) image: its (c, h, w) order first, and back at the end
        steps = [(_layers.Permute((3, 1, 2)), node.input[0], out + "#c_h_w"),
                 (_layers.Reshape((c, h * w)), out + "#c_h_w", out + "#chw")]
        last = [(_layers.Reshape((grown, h, w)), out + "#padded", out + "#grown_hw"),
                (_layers.Permute((2, 3, 1)), out + "#grown_hw", out)]
    pad = _layer_class(ctx, node, "ZeroPadding1D")(tuple(channels), data_format="channels_last")
    for layer, source, made in [*steps, (pad, out + "#chw", out + "#padded"), *last]:
        ctx.add_layer(node, layer, [source], made)


def _view_axes(ctx, node):
    """``(base, axis map)``: the NCHW tensor whose channels-last view the node's input is (None
    for an NCHW input) and the map from the input's axes to NCHW's (Keras's exporter pads and
    crops the NHWC view: axes 1, 2, 3 are NCHW's 2, 3, 1)."""
    base = ctx.view_base(node.input[0])
    return base, ({0: 0, 1: 2, 2: 3, 3: 1} if base is not None else {0: 0, 1: 1, 2: 2, 3: 3})


def _add_on_view(ctx, node, layer, base) -> None:
    """The layer on the node's input, or on the NCHW base of its channels-last view (the output
    then a view too)."""
    ctx.add_view_layer(node, layer, [node.input[0] if base is None else base], view=base is not None)


def _edge_pad_into_pool(ctx, node, shape, margins) -> None:
    """An edge Pad read only by a MaxPool or AveragePool (Keras's exporter's 'same' pooling),
    where it is the same as the pooling with margins left out (_sequences.edge_pad_reader): the
    margins join the pool's pads (import_pool)."""
    _, h, w = shape
    top, bottom, left, right = margins
    reader, passed = _sequences.edge_pad_reader(ctx, node, [(h, top, bottom), (w, left, right)])
    ctx.pool_pads[id(reader)] = margins
    ctx.consume_all([node, *passed], ctx.input_name(node))


def _slice_margins(ctx, node, shape, to_axis=None, strides=None) -> dict:
    """What a Slice removes from each axis it names: ``{axis: (before, after)}``, the axes counted
    as in ``(batch, *shape)`` (``to_axis`` maps the Slice's axes there: a channels-last view's to
    NCHW). The batch stays whole and the steps are 1 (a contiguous crop), or, given a dict
    ``strides``, positive: filled with ``{axis: step}`` (the crop's values every step-th)."""
    rank = len(shape) + 1
    starts = [int(v) for v in ctx.constant(node, 1, "starts").reshape(-1)]
    ends = [int(v) for v in ctx.constant(node, 2, "ends").reshape(-1)]
    axes = ctx.constant(node, 3, "axes", required=False)
    steps = ctx.constant(node, 4, "steps", required=False)
    axes = list(range(len(starts))) if axes is None else [int(v) % rank for v in axes.reshape(-1)]
    if to_axis is not None:
        axes = [to_axis[axis] for axis in axes]
    steps = [1] * len(starts) if steps is None else [int(v) for v in steps.reshape(-1)]
    if any(k != 1 for k in steps) and (strides is None or any(k < 1 for k in steps)):
        raise ctx.error(node, f"steps {steps}: only contiguous crops"
                              f"{' and forward steps of an image' if strides is not None else ''} are supported")
    if not len(starts) == len(ends) == len(axes) == len(steps) or len(set(axes)) != len(axes):
        raise ctx.error(node, f"starts {starts}, ends {ends}, axes {axes} and steps {steps} do not match")
    if strides is not None:
        strides.update({axis: k for axis, k in zip(axes, steps) if k != 1})
    full = (None, *shape)
    margins = {}
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if axis == 0:
            if start == 0 and end >= INT64_MAX and step == 1:
                continue  # the whole batch
            raise ctx.error(node, "slicing the batch axis is not supported")
        size = full[axis]
        lo = min(max(start + size if start < 0 else start, 0), size)
        hi = min(max(end + size if end < 0 else end, 0), size)
        if hi <= lo:
            raise ctx.error(node, f"the slice {start}:{end} of an axis of {size} is empty")
        margins[axis] = (lo, size - hi)
    return margins


def import_slice(ctx, node):
    if ctx.opset < 10 and node.attribute:
        raise ctx.error(node, f"opset {ctx.opset}'s Slice (starts, ends and axes as attributes) is not supported: "
                              "export the model at opset 10 or later (its inputs)", node.attribute[0].name)
    ctx.attributes(node, {})
    if _sequences.reads_sequence(ctx, node):  # Cropping1D
        return _sequences.import_crop_of_steps(ctx, node, _slice_margins(ctx, node, ctx.ref_shape(node.input[0])))
    base, to_nchw = _view_axes(ctx, node)
    shape = ctx.ref_shape(base) if base is not None else ctx.shape(node, 0)
    if len(shape) != 3:
        raise ctx.error(node, f"only crops of images and sequences are supported; its input is {('batch', *shape)}")
    strides = {} if base is None else None
    margins = _slice_margins(ctx, node, shape, to_nchw, strides)
    if margins.get(1, (0, 0)) != (0, 0) or strides and 1 in strides:
        raise ctx.error(node, "slicing the channel axis is not supported")
    crop = (margins.get(2, (0, 0)), margins.get(3, (0, 0)))
    layer = _layer_class(ctx, node, "Cropping2D")(crop, ctx.data_format)
    if not strides:
        _add_on_view(ctx, node, layer, base)
        return
    # x[:, :, a:b:k, c:d:l] (CIFAR ResNets' "option A" shortcut x[:, :, ::2, ::2]): the crop, then
    # every k-th row and l-th column, which a 1x1 max pooling of strides (k, l) takes exactly.
    source = node.input[0]
    if any(crop[0] + crop[1]):
        source = node.output[0] + "#crop"
        ctx.add_layer(node, layer, [node.input[0]], source)
    pool = _layer_class(ctx, node, "MaxPooling2D")((1, 1), (strides.get(2, 1), strides.get(3, 1)), "valid",
                                                   ctx.data_format)
    ctx.add_layer(node, pool, [source], node.output[0])


_MERGES = {"Add": "Add", "Sum": "Add", "Sub": "Subtract", "Mul": "Multiply", "Mean": "Average", "Max": "Maximum",
           "Min": "Minimum"}


def _merge_inputs(ctx, node, names=None):
    """``(tensor names, their shapes, channels-last views?)`` of a merge node's inputs (or of
    ``names``): computed NCHW tensors, or all channels-last views (Keras's exporter), merged as
    their NCHW tensors."""
    given = names is not None
    names = names if given else [n for n in node.input if n]
    bases = [ctx.view_base(n) for n in names]
    if all(bases):
        return bases, [ctx.ref_shape(b) for b in bases], True
    if not given:
        return names, [ctx.shape(node, i) for i in range(len(node.input)) if node.input[i]], False
    shapes = [ctx.ref_shape(n) for n in names]
    if any(shape is None for shape in shapes) or any(bases) or any(ctx.sequence_base(n) for n in names):
        raise ctx.error(node, "the averaged tensors must be computed, all NCHW or all channels-last views")
    return names, shapes, False


def _average_terms(ctx, node) -> bool:
    """Keras's exporter writes ``Average()([a, b, c])`` as ``Div(Add(Add(a, b), c), 3)``: is this
    Add of two computed tensors the first of such a chain, each Add the next one's only reader
    (past Casts), ending in a Div by the count of its terms? Then the chain is one Average
    layer: no layer is made for its Adds (ctx.pending_averages), the Div makes it."""
    if len(node.input) != 2 or any(not n or ctx.fixed(n) for n in node.input):
        return False
    terms, tensor = 2, node.output[0]
    while terms <= 64:
        reader, _ = ctx.next_node(tensor)
        if reader is None or reader.attribute or len(reader.input) != 2:
            return False
        if reader.op_type == "Add" and not any(not n or ctx.fixed(n) for n in reader.input):
            terms, tensor = terms + 1, reader.output[0]
            continue
        if reader.op_type != "Div" or ctx.fixed(reader.input[0]) or not ctx.is_constant(reader.input[1]):
            return False
        divisor = np.asarray(ctx.constant(reader, 1, "the divisor"), dtype=np.float64)
        return divisor.size == 1 and divisor.reshape(-1)[0] == terms
    return False


def _take_into_average(ctx, node) -> bool:
    """An Add of Keras's Average's chain (_average_terms): record its terms, make no layer."""
    names = [ctx.resolve(n) for n in node.input if n]
    pending = [n for n in names if n in ctx.pending_averages]
    if pending:  # a later Add of a chain: the tensors so far, and one more
        if len(names) != 2 or len(pending) != 1:
            return False
        other = names[1 - names.index(pending[0])]
        terms = [*ctx.pending_averages[pending[0]], other]
    elif node.op_type == "Add" and _average_terms(ctx, node):
        terms = names
    else:
        return False
    ctx.pending_averages[node.output[0]] = terms
    ctx.consume_node(node)
    return True


def import_div(ctx, node):
    """The Div ending Keras's Average (_average_terms): the Average layer of the chain's terms."""
    ctx.attributes(node, {})
    if len(node.input) != 2:
        raise ctx.error(node, f"{len(node.input)} inputs")
    terms = ctx.pending_averages.get(ctx.resolve(node.input[0]))
    if terms is None:
        constant = [ctx.is_constant(ctx.resolve(n)) for n in node.input]
        if constant == [False, True]:  # x / c, PyTorch's (x - mean) / std: an affine, as x * (1 / c)
            _import_affine(ctx, node, 1)
            return
        raise ctx.error(node, "only a computed tensor divided by a constant, or the Div by n after an Add of n "
                        "computed tensors (Keras's Average), is supported")
    names, shapes, view = _merge_inputs(ctx, node, terms)
    if any(shape != shapes[0] for shape in shapes):
        raise ctx.error(node, f"the averaged tensors have shapes {shapes}: convforge's Average does not broadcast")
    _add_merge(ctx, node, _layer_class(ctx, node, "Average")(), names, view)


def import_merge(ctx, node):
    """Elementwise ops of two or more computed tensors of one shape: the merge layers; an Add,
    Sub or Mul of a computed tensor and a per-channel constant: a per-channel affine."""
    ctx.attributes(node, {})
    constant = [i for i, n in enumerate(node.input) if n and ctx.is_constant(ctx.resolve(n))]
    if node.op_type in ("Add", "Sub", "Mul") and len(node.input) == 2 and len(constant) == 1:
        _import_affine(ctx, node, constant[0])
        return
    if node.op_type == "Add" and _take_into_average(ctx, node):
        return
    if constant and node.op_type in ("Max", "Min"):
        raise ctx.error(node, "a constant operand is not supported (the Maximum and Minimum layers merge tensors)")
    names, shapes, view = _merge_inputs(ctx, node)
    variadic = ("Sum", "Mean", "Max", "Min")  # one input is allowed: the identity
    if node.op_type == "Sub" and len(names) != 2 or len(names) < 2 and node.op_type not in variadic:
        raise ctx.error(node, f"{len(names)} inputs")
    if any(shape != shapes[0] for shape in shapes):
        # ONNX broadcasts right-aligned on NCHW tensors, Keras's layers on channels-last ones: the
        # same where the inputs have one rank (each axis of one size, or 1), as PyTorch's
        # squeeze-and-excitation x * s with s of shape (N, C, 1, 1).
        same_rank = len({len(s) for s in shapes}) == 1
        if view or not same_rank or any(len({d for d in dims if d != 1}) > 1 for dims in zip(*shapes)):
            raise ctx.error(node, f"inputs of shapes {shapes}: convforge's merge layers broadcast tensors of one "
                                  "rank only (each axis of one size, or 1)")
    if len(names) == 1:
        ctx.consume(node, names[0]) if not view else (ctx.set_view(node.output[0], names[0]), ctx.consume_node(node))
        return
    layer = _layer_class(ctx, node, _MERGES[node.op_type])()
    _add_merge(ctx, node, layer, names, view)


def _import_affine(ctx, node, index: int) -> None:
    """``x + c``, ``x - c``, ``c - x``, ``x * c`` or ``x / c`` with ``c`` one value per channel (or
    one value): ``a * x + b`` per channel, as a BatchNormalization whose moving mean is 0 and moving variance
    1 - epsilon (so that it scales by gamma = a and shifts by beta = b at inference). Keras's
    exporter writes its BatchNormalization so, as Sub(mean), Mul(scale), Add(beta) on the
    channels-last view: consecutive affines on a tensor nothing else reads make one layer."""
    x = node.input[1 - index]
    base = ctx.view_base(x)
    source = base if base is not None else ctx.resolve(x)
    shape = ctx.ref_shape(base) if base is not None else ctx.shape(node, 1 - index)
    if shape is None or len(shape) not in (1, 2, 3):
        raise ctx.error(node, "a constant operand is supported on images, sequences or (batch, features) tensors only")
    channels = shape[-1] if len(shape) == 2 else shape[0]  # a sequence (steps, channels): channels last
    c = np.asarray(ctx.constant(node, index, "the constant"), dtype=np.float64)
    # A (channels, 1) constant on (batch, channels, steps): Keras's exporter's bias and
    # BatchNormalization of channels-first sequences, per channel along axis 1.
    sequence_axis_1 = len(shape) == 2 and base is None and c.shape in ((shape[0], 1), (1, shape[0], 1))
    if sequence_axis_1:
        channels = shape[0]
        allowed = {c.shape}
    elif len(shape) == 1:
        allowed = {(), (1,), (channels,), (1, channels)}
    elif len(shape) == 2:
        allowed = {(), (1,), (channels,), (1, channels), (1, 1, channels)}
    elif base is not None:  # a channels-last view: channels last
        allowed = {(), (1,), (channels,), (1, channels), (1, 1, channels), (1, 1, 1, channels)}
    else:
        allowed = {(), (1,), (channels, 1, 1), (1, channels, 1, 1)}
    if c.size == 1 and c.ndim <= len(shape) + 1:  # one value, in any shape of 1s that broadcasts
        allowed.add(c.shape)                    # onto the tensor (Keras's Normalization(axis=None): (1, 1, 1, 1))
    if c.shape not in allowed:
        raise ctx.error(node, f"a constant of shape {c.shape} on a tensor of shape {('batch', *shape)}: only one "
                        "value per channel (or one value) is supported")
    v = np.broadcast_to(c.reshape(-1), (channels,)).astype(np.float64)
    if node.op_type == "Mul":
        a, b = v, np.zeros(channels)
    elif node.op_type == "Div":
        # x * (1 / c): at most an ulp from x / c in float32, as any affine layer computes it.
        if not np.all(v != 0):
            raise ctx.error(node, "a divisor of 0: the quotients are infinite")
        a, b = 1.0 / v, np.zeros(channels)
    elif node.op_type == "Add":
        a, b = np.ones(channels), v
    else:  # Sub
        a, b = (np.ones(channels), -v) if index == 1 else (-np.ones(channels), v)
    axis = 1 if len(shape) == 3 and ctx.data_format == "channels_first" or sequence_axis_1 else -1
    layer = ctx.affine_layers.get(source)
    reader, _ = ctx.next_node(x)
    if layer is not None and reader is node and layer.axis == axis:  # fold into the affine before it, x's only reader
        a0, b0 = layer._onnx_affine
        a, b = a * a0, a * b0 + b
        layer._onnx_affine = (a, b)
        layer.params["gamma"][...] = a
        layer.params["beta"][...] = b
        if base is not None:
            ctx.set_view(node.output[0], source)
            ctx.consume_node(node)
        else:
            ctx.consume(node, source)
        return
    eps = 1e-3
    layer = _layer_class(ctx, node, "BatchNormalization")(axis=axis, epsilon=eps)
    output = ctx.add_view_layer(node, layer, [source], base is not None,
                                [a, b, np.zeros(channels), np.full(channels, 1.0 - eps)])
    layer._onnx_affine = (a, b)
    ctx.affine_layers[output] = layer


def import_reduce(ctx, node):
    """ReduceMean / ReduceMax over an image's height and width (Keras's exporter's global
    pooling, on the channels-last view): GlobalAveragePooling2D / GlobalMaxPooling2D."""
    a = ctx.attributes(node, {"keepdims": 1, "noop_with_empty_axes": 0, "axes": []})
    if a["axes"]:
        axes = list(a["axes"])
    elif len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in ctx.constant(node, 1, "axes").reshape(-1)]
    else:
        raise ctx.error(node, "a reduction over every axis (the batch too) is not supported", "axes")
    steps = ctx.sequence_base(node.input[0])
    if steps is not None:  # a sequence's (batch, channels, steps) view: over its axis 2, the steps
        if [int(v) % 3 for v in axes] != [2]:
            raise ctx.error(node, f"a {node.op_type} of a (batch, channels, steps) sequence over axes {axes}: only "
                                  "over the steps is supported", "axes")
        name = "GlobalMaxPooling1D" if node.op_type == "ReduceMax" else "GlobalAveragePooling1D"
        layer = _layer_class(ctx, node, name)(keepdims=bool(a["keepdims"]))
        if a["keepdims"]:  # (batch, channels, 1): the view of the layer's (batch, 1, channels)
            _sequences.add_on_sequence(ctx, node, layer, steps, "channels_last")
        else:
            ctx.add_layer(node, layer, [steps], node.output[0])
        return
    base = ctx.view_base(node.input[0])
    shape = ctx.ref_shape(base) if base is not None else ctx.shape(node, 0)
    if base is None and shape is not None and len(shape) == 2:
        # Sequences: the mean or maximum over the steps is GlobalAveragePooling1D /
        # GlobalMaxPooling1D, of (batch, steps, channels) over axis 1 (Keras's exporter's), of
        # (batch, channels, steps) over axis 2 (PyTorch's x.mean(dim=2)).
        reduced = [int(v) % 3 for v in axes]
        if reduced not in ([1], [2]):
            raise ctx.error(node, f"a {node.op_type} of a sequence over axes {axes}: only over the steps (axis 1 of "
                                  "(batch, steps, channels), 2 of (batch, channels, steps)) is supported", "axes")
        name = "GlobalMaxPooling1D" if node.op_type == "ReduceMax" else "GlobalAveragePooling1D"
        data_format = "channels_last" if reduced == [1] else "channels_first"
        layer = _layer_class(ctx, node, name)(keepdims=bool(a["keepdims"]), data_format=data_format)
        ctx.add_layer(node, layer, [node.input[0]], node.output[0])
        return
    if shape is None or len(shape) != 3:
        raise ctx.error(node, "a reduction of a tensor that is not an image is not supported")
    spatial = [1, 2] if base is not None else [2, 3]  # NHWC view, or NCHW
    if sorted(int(v) % 4 for v in axes) != spatial:
        raise ctx.error(node, f"a reduction over axes {axes}: only over height and width (global pooling)", "axes")
    name = "GlobalMaxPooling2D" if node.op_type == "ReduceMax" else "GlobalAveragePooling2D"
    keep = bool(a["keepdims"])
    layer = _layer_class(ctx, node, name)(data_format=ctx.data_format, keepdims=keep)
    ctx.add_view_layer(node, layer, [base if base is not None else node.input[0]], base is not None and keep)


def _computed_plain(ctx, node, name: str, what: str) -> str:
    """``name`` as a computed tensor in the graph's own layout (not a transposed view), else an error."""
    if ctx.is_constant(name):
        raise ctx.error(node, f"its {what} is a constant; convforge layers take computed tensors")
    if ctx.view_base(name) is not None or ctx.sequence_base(name) is not None:
        raise ctx.error(node, f"its {what} is a transposed view of another tensor; convforge reads this op on a "
                              "tensor in its own layout only")
    return name


def import_reduce_l2(ctx, node):
    """``x / max(ReduceL2(x), 1e-12)`` over some axes, convforge's export of UnitNormalization (its
    floor is Keras's): the layer, its axes counted on the channels-last tensor the user sees."""
    a = ctx.attributes(node, {"keepdims": 1, "noop_with_empty_axes": 0, "axes": []})
    axes = list(a["axes"])
    if not axes and len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in ctx.constant(node, 1, "axes").reshape(-1)]
    floor_node, passed = ctx.next_node(node.output[0])
    div, passed_too = ctx.next_node(floor_node.output[0]) if floor_node is not None else (None, [])
    norm = ctx.resolve(node.output[0])
    pattern = (a["keepdims"] == 1 and axes and floor_node is not None and floor_node.op_type == "Max"
               and len(floor_node.input) == 2 and div is not None and div.op_type == "Div" and len(div.input) == 2
               and ctx.resolve(div.input[0]) == ctx.resolve(node.input[0])
               and ctx.resolve(div.input[1]) in (ctx.resolve(floor_node.output[0]),
                                                 *(ctx.resolve(p.output[0]) for p in passed_too)))
    constant = [i for i, name in enumerate(floor_node.input) if ctx.is_constant(name)] if pattern else []
    if not pattern or len(constant) != 1 or ctx.resolve(floor_node.input[1 - constant[0]]) not in (
            norm, *(ctx.resolve(p.output[0]) for p in passed)):
        raise ctx.error(node, "ReduceL2 is read only as x / max(ReduceL2(x, keepdims=1), 1e-12) over some axes "
                              "(UnitNormalization, as convforge exports it)")
    raw_floor = np.asarray(ctx.constant(floor_node, constant[0], "floor"), dtype=np.float64)
    floor = raw_floor.reshape(-1) if raw_floor.ndim <= 1 else np.zeros(0)  # a (1, 1, 1) floor broadcasts up
    unit_normalization = _layer_class(ctx, node, "UnitNormalization")
    rank = len(ctx.shape(node, 0)) + 1
    if any(not -rank <= int(v) < rank for v in axes):
        raise ctx.error(node, f"axes {axes} out of range for a tensor of rank {rank}", "axes")
    einsum, _ = ctx.next_node(div.output[0])
    if floor.size == 1 and floor[0] == np.float32(_layer_class(ctx, node, "Dot")._EPSILON) and einsum is not None \
            and einsum.op_type == "Einsum" and len(axes) == 1:
        # Dot(normalize=True)'s normalisation of one input (Keras's floor, 1e-7): the Einsum's Dot takes it.
        x = _computed_plain(ctx, node, node.input[0], "input")
        pending = ctx.__dict__.setdefault("pending_dot_units", {})
        pending[ctx.resolve(div.output[0])] = (x, int(axes[0]) % rank)
        for n in (node, *passed, floor_node, *passed_too, div):
            ctx.consume_node(n)
        return
    if floor.size != 1 or floor[0] != np.float32(unit_normalization._FLOOR):
        raise ctx.error(floor_node, f"a floor of {floor.tolist()} under the norm: UnitNormalization's is "
                                    f"{unit_normalization._FLOOR} (Keras's)")
    x = _computed_plain(ctx, node, node.input[0], "input")
    internal = sorted({int(v) % rank for v in axes})
    if 0 in internal:
        raise ctx.error(node, f"a norm over the batch axis (axes {axes}) is not a layer of convforge's", "axes")
    # An image is NCHW in the graph: in a channels-last model its channels are the user's last
    # axis and its height and width 1 and 2; a channels-first model counts the graph's axes.
    channels_last = ctx.data_format != "channels_first"
    user = sorted({1: 3, 2: 1, 3: 2}[v] for v in internal) if rank == 4 and channels_last else internal
    ctx.add_layer(node, unit_normalization(axis=user if len(user) > 1 else user[0]), [x], node.output[0])
    ctx.consume_all([*passed, floor_node, *passed_too, div], node.output[0])


def import_einsum(ctx, node):
    """The per-sample dot product along one axis of each of two vectors or sequences, convforge's
    export of Dot (``bk,bk->b`` then Unsqueeze; ``bck,bdk->bcd``, ...): the layer."""
    equation = ctx.attributes(node, {"equation": ""})["equation"].replace(" ", "")
    match = re.fullmatch(r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]*)", equation)
    if len(node.input) != 2 or match is None:
        raise ctx.error(node, f"Einsum {equation!r}: only a product of two tensors is read (Dot)", "equation")
    xs, ys, out = match.groups()
    contracted = [c for c in xs if c in ys and c not in out and c != xs[0]]
    batch_ok = xs[0] == ys[0] and out[:1] == xs[0]
    rest = xs[1:].replace(contracted[0], "") + ys[1:].replace(contracted[0], "") if len(contracted) == 1 else None
    if (not batch_ok or len(contracted) != 1 or rest != out[1:] or len(set(xs)) != len(xs)
            or len(set(ys)) != len(ys) or len(xs) not in (2, 3) or len(ys) not in (2, 3)
            or len(set(xs[1:]) & set(ys[1:])) != 1):
        raise ctx.error(node, f"Einsum {equation!r}: only a dot product along one axis of each of two vectors or "
                              "sequences, batch first and kept (Keras's Dot), is read", "equation")
    k = contracted[0]
    axes = [1 + xs[1:].index(k), 1 + ys[1:].index(k)]
    # Dot(normalize=True): both inputs normalised along the contracted axes (import_reduce_l2 kept them).
    pending = ctx.__dict__.get("pending_dot_units", {})
    units = [pending.pop(ctx.resolve(name), None) for name in node.input]
    normalize = units[0] is not None
    if normalize != (units[1] is not None) or (normalize and [u[1] for u in units] != axes):
        raise ctx.error(node, f"Einsum {equation!r} of inputs not both normalised along its contracted axes: "
                              "convforge's Dot(normalize=True) normalises both")
    if normalize:
        x, y = units[0][0], units[1][0]
    else:
        x = _computed_plain(ctx, node, node.input[0], "first input")
        y = _computed_plain(ctx, node, node.input[1], "second input")
    ranks = [len(ctx.ref_shape(x)) + 1, len(ctx.ref_shape(y)) + 1]
    if [len(xs), len(ys)] != ranks:
        raise ctx.error(node, f"Einsum {equation!r} names {len(xs)} and {len(ys)} axes of tensors of rank "
                              f"{ranks[0]} and {ranks[1]}", "equation")
    layer = _layer_class(ctx, node, "Dot")(axes, normalize=normalize)
    if out[1:]:
        ctx.add_layer(node, layer, [x, y], node.output[0], many=True)
        return
    # Two vectors: the layer's (batch, 1) is the Einsum's (batch,) unsqueezed at axis 1.
    unsqueeze, passed = ctx.next_node(node.output[0])
    axes = None
    if unsqueeze is not None and unsqueeze.op_type == "Unsqueeze":
        given = ctx.attributes(unsqueeze, {"axes": []})["axes"]
        axes = list(given) or [int(v) for v in ctx.constant(unsqueeze, 1, "axes").reshape(-1)]
    if axes is None or [a % 2 for a in axes] != [1]:
        raise ctx.error(node, f"Einsum {equation!r} of two vectors makes (batch,); convforge's Dot makes (batch, 1), "
                              "read when an Unsqueeze at axis 1 follows")
    ctx.add_layer(node, layer, [x, y], node.output[0], many=True)
    ctx.consume_all([*passed, unsqueeze], node.output[0])


def _nearest_source(ctm: str, nearest_mode: str, size: int, out: int) -> np.ndarray:
    """Which input pixel each of ``out`` output pixels reads along an axis of ``size`` pixels, as
    ONNX's Resize (nearest) defines it for that coordinate transformation and rounding."""
    i = np.arange(out, dtype=np.float64)
    scale = out / size
    if ctm == "asymmetric":
        x = i / scale
    elif ctm == "half_pixel" or (ctm == "pytorch_half_pixel" and out > 1):
        x = (i + 0.5) / scale - 0.5
    elif ctm == "pytorch_half_pixel":
        x = np.zeros_like(i)
    elif ctm == "align_corners":
        x = i * (size - 1) / (out - 1) if out > 1 else np.zeros_like(i)
    elif ctm == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    else:
        return None
    if nearest_mode == "floor":
        k = np.floor(x)
    elif nearest_mode == "ceil":
        k = np.ceil(x)
    elif nearest_mode == "round_prefer_floor":
        k = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif nearest_mode == "round_prefer_ceil":
        k = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    else:
        return None
    return np.clip(k, 0, size - 1).astype(np.int64)


def import_resize(ctx, node):
    """Resize (and opset 9's Upsample) as UpSampling2D (UpSampling1D of a sequence's axis): nearest,
    whole scales of height and width (of one axis),
    where the coordinate transformation and rounding read input pixel floor(i / scale) for output
    pixel i (np.repeat), as convforge's exporter and PyTorch's nn.Upsample write it; any other
    combination picks other pixels and is refused, naming the attribute."""
    if node.op_type == "Upsample" or ctx.opset < 11:
        a = ctx.attributes(node, {"mode": "nearest", "scales": None})
        a.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        scales = a["scales"] if a["scales"] is not None else ctx.constant(node, 1, "scales")
        sizes = None
    else:
        a = ctx.attributes(node, {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                                  "nearest_mode": "round_prefer_floor", "cubic_coeff_a": -0.75,
                                  "exclude_outside": 0, "extrapolation_value": 0.0, "antialias": 0,
                                  "axes": None, "keep_aspect_ratio_policy": "stretch"})
        if a["axes"] is not None:
            raise ctx.error(node, "only scales or sizes of all four axes are supported", "axes")
        if a["keep_aspect_ratio_policy"] != "stretch":  # other policies change the sizes asked for
            raise ctx.error(node, f"only 'stretch' is supported; got {a['keep_aspect_ratio_policy']!r}",
                            "keep_aspect_ratio_policy")
        scales = ctx.constant(node, 2, "scales", required=False)
        sizes = ctx.constant(node, 3, "sizes", required=False)
        if scales is not None and np.asarray(scales).size == 0:
            scales = None
    sequence = _sequences.reads_sequence(ctx, node)  # UpSampling1D of one of its axes
    bilinear = a["mode"] == "linear" and not sequence
    if a["mode"] != "nearest" and not bilinear:
        raise ctx.error(node, f"only mode 'nearest' (UpSampling2D/1D) and, of images, 'linear' (UpSampling2D's "
                              f"bilinear) are supported; got {a['mode']!r}", "mode")
    if bilinear and a["coordinate_transformation_mode"] not in ("half_pixel", "pytorch_half_pixel"):
        raise ctx.error(node, f"a linear resize with {a['coordinate_transformation_mode']!r} coordinates: only "
                              "'half_pixel' (Keras's bilinear UpSampling2D, PyTorch's align_corners=False) is "
                              "supported", "coordinate_transformation_mode")
    shape = ctx.ref_shape(node.input[0]) if sequence else ctx.shape(node, 0)
    if not sequence and len(shape) != 3:
        raise ctx.error(node, f"takes images (batch, channels, height, width) or sequences; its input is "
                              f"{('batch', *shape)}")
    rank = len(shape) + 1
    if sizes is not None:
        sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
        if len(sizes) != rank or any(out % size or out < size for out, size in zip(sizes[1:], shape)):
            from ._builtin_import import _shown_target  # the batch's stand-in shown as "batch"

            raise ctx.error(node, f"sizes {_shown_target(sizes)} are not whole multiples of the input's "
                                  f"{('batch', *shape)}", "sizes")
        factors = [out // size for out, size in zip(sizes[1:], shape)]
    elif scales is not None:
        values = np.asarray(scales, dtype=np.float64).reshape(-1)
        if len(values) != rank or values[0] != 1 or np.any(values[1:] < 1) \
                or np.any(values[1:] != np.round(values[1:])):
            raise ctx.error(node, f"scales {values.tolist()}: only whole factors >= 1 of the input's "
                            f"{('batch', *shape)} (not its batch) are supported", "scales")
        factors = [int(v) for v in values[1:]]
    else:
        raise ctx.error(node, "has neither scales nor sizes")
    if not sequence and factors[0] != 1:
        raise ctx.error(node, f"factors {factors}: only height and width can be scaled, not the channels", "scales")
    if max(factors) > _params.MAX_PARAM:
        raise ctx.error(node, f"factors {factors} are too large", "scales")
    # Before anything the size of the output is made (the check of the nearest pixels below): a
    # file of a few hundred bytes asked for 48 GiB there.
    if math.prod(shape) * math.prod(factors) > MAX_SAMPLE_ELEMENTS:
        raise ctx.error(node, f"its output would hold {math.prod(shape) * math.prod(factors)} values per sample, "
                              "too many", "sizes" if sizes is not None else "scales")
    if bilinear:
        layer = _layer_class(ctx, node, "UpSampling2D")(size=tuple(factors[1:]), data_format=ctx.data_format,
                                                        interpolation="bilinear")
        ctx.add_layer(node, layer, [node.input[0]], node.output[0])
        return
    ctm, rounding = a["coordinate_transformation_mode"], a["nearest_mode"]
    for size, factor in zip(shape, factors):  # at scale 1 too: 'tf_half_pixel_for_nn' + 'ceil' shifts by one
        picked = _nearest_source(ctm, rounding, size, size * factor)
        if picked is None or not np.array_equal(picked, np.arange(size * factor) // factor):
            raise ctx.error(
                node,
                f"coordinate_transformation_mode {ctm!r} with nearest_mode {rounding!r} at scale {factor} reads "
                "other pixels than UpSampling2D's/1D's repeat", "coordinate_transformation_mode")
    if sequence:
        return _sequences.import_resize_of_steps(ctx, node, factors)
    layer = _layer_class(ctx, node, "UpSampling2D")(size=tuple(factors[1:]), data_format=ctx.data_format)
    ctx.add_layer(node, layer, [node.input[0]], node.output[0])


def _add_merge(ctx, node, layer, names, view):
    ctx.add_view_layer(node, layer, names, view, many=True)


def import_concat(ctx, node):
    axis = ctx.attributes(node, {"axis": None})["axis"]
    names, shapes, view = _merge_inputs(ctx, node)
    rank = len(shapes[0]) + 1
    if axis is None or not -rank <= axis < rank or axis % rank == 0:
        raise ctx.error(node, f"axis {axis} on inputs of rank {rank}: only non-batch axes can be joined", "axis")
    axis %= rank
    # Concatenate counts its axis on the channels-last tensor (a channels-last view's axes are
    # that tensor's already).
    keras_axis = axis if view else shown_axis(axis, rank)
    layer = _layer_class(ctx, node, "Concatenate")(axis=keras_axis)
    _add_merge(ctx, node, layer, names, view)


for _op, _fn in (
    ("Add", import_merge),
    ("Sum", import_merge),
    ("Sub", import_merge),
    ("Div", import_div),
    ("Mul", import_merge),
    ("Mean", import_merge),
    ("Max", import_merge),
    ("Min", import_merge),
    ("Concat", import_concat),
    ("BatchNormalization", import_batch_normalization),
    ("LayerNormalization", import_layer_normalization),
    ("InstanceNormalization", import_instance_norm),
    ("Squeeze", import_squeeze),
    ("GlobalAveragePool", import_global_pool),
    ("GlobalMaxPool", import_global_pool),
    ("ReduceMean", import_reduce),
    ("ReduceL2", import_reduce_l2),
    ("Einsum", import_einsum),
    ("ReduceMax", import_reduce),
    ("Pad", import_pad),
    ("Slice", import_slice),
    ("Resize", import_resize),
    ("Upsample", import_resize),
):
    register_importer(_op, _fn)
