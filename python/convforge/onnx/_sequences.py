"""Importers of the 1-D layers (Conv1D, DepthwiseConv1D from a Conv with one group per channel,
Conv1DTranspose, MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D,
BatchNormalization of sequences) from ONNX's 1-D Conv, ConvTranspose, pooling and
BatchNormalization nodes, which read (batch, channels, steps), and of ZeroPadding1D, Cropping1D and
UpSampling1D from a Pad, Slice or nearest Resize of one axis of a sequence (the axis named by the
op says the layer's data_format: see _steps_layer).

convforge's 1-D layers take (batch, steps, channels) by default, and its exporter (as Keras's)
writes each as the ONNX 1-D op between two Transpose(0, 2, 1): a Transpose of a (steps, channels)
tensor makes a *sequence view* (ImportContext.set_sequence_view), the op reading it becomes the
layer on the tensor itself, its output again a view, and the Transpose back is the layer's output.
A node that reads a (batch, channels, steps) tensor as it is (PyTorch's Conv1d, and convforge's
layers with data_format='channels_first') becomes the layer with data_format='channels_first' on
that tensor. The 2-D importers hand a node over here when its input is a sequence view or a
tensor of rank 3.
"""

from __future__ import annotations

import numpy as np

from .. import _params
from .. import layers as _layers
from ._builtin_export import conv1d_transpose_pads, conv_transpose_crops, conv_transpose_options


def _layer(ctx, node, name: str):
    cls = getattr(_layers, name, None)
    if cls is None:
        raise ctx.error(node, f"this convforge has no {name} layer to import it into")
    return cls


def reads_sequence(ctx, node) -> bool:
    """Does the node's input hold sequences: a sequence view, or a (channels, steps) tensor (not an
    image's channels-last view)? The 2-D importers hand such a node over here."""
    if ctx.sequence_base(node.input[0]) is not None:
        return True
    return ctx.view_base(node.input[0]) is None and len(ctx.shape(node, 0)) == 2


def _sequence(ctx, node):
    """What the node's layer reads: ``(tensor, (steps, channels), data_format)``, the
    (steps, channels) tensor of a sequence view ('channels_last'), else the (channels, steps)
    tensor itself ('channels_first')."""
    base = ctx.sequence_base(node.input[0])
    if base is not None:
        return base, ctx.ref_shape(base), "channels_last"
    channels, steps = ctx.shape(node, 0)
    return ctx.input_name(node), (steps, channels), "channels_first"


def add_on_sequence(ctx, node, layer, base, data_format: str, weights=None) -> str:
    """The layer on ``base``. Channels-last, the node's (channels-first) output is a view of the
    layer's; channels-first, it is the layer's output."""
    if data_format == "channels_first":
        ctx.add_layer(node, layer, [base], node.output[0], weights)
        return node.output[0]
    out = node.output[0] + "#steps"
    ctx.add_layer(node, layer, [base], out, weights)
    ctx.set_sequence_view(node.output[0], out)
    return out


def _kernel_size(ctx, node, a, kernel, bias, filters: int) -> int:
    """A 1-D Conv's or ConvTranspose's kernel size, from its (3-D) weights, checked against its
    kernel_shape attribute, and its bias (if any) against the ``filters`` it makes."""
    k = kernel.shape[2]
    if a["kernel_shape"] is not None and list(a["kernel_shape"]) != [k]:
        raise ctx.error(node, f"{a['kernel_shape']} differs from the weights' [{k}]", "kernel_shape")
    if bias is not None and bias.shape != (filters,):
        raise ctx.error(node, f"bias of shape {bias.shape}; expected ({filters},)")
    return k


def _single(ctx, node, a, attribute: str, minimum: int) -> int:
    values = a[attribute]
    if len(values) != 1 or int(values[0]) < minimum or int(values[0]) > _params.MAX_PARAM:
        raise ctx.error(node, f"must be one int >= {minimum} (1-D); got {list(values)}", attribute)
    return int(values[0])


def _pads(ctx, node, a, steps, kernel, stride, dilation) -> tuple[int, int]:
    mode = a["auto_pad"]
    if mode == "NOTSET":
        pads = [0, 0] if a["pads"] is None else [int(p) for p in a["pads"]]
        if len(pads) != 2 or min(pads) < 0 or max(pads) > _params.MAX_PARAM:
            raise ctx.error(node, f"must be 2 ints >= 0 (1-D); got {pads}", "pads")
        return pads[0], pads[1]
    if mode == "VALID":
        return 0, 0
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        before, after = _params.same_padding(steps, kernel, stride, dilation)
        return (before, after) if mode == "SAME_UPPER" else (after, before)
    raise ctx.error(node, f"unknown value {mode!r}", "auto_pad")


def import_conv1d(ctx, node):
    a = ctx.attributes(
        node, {"kernel_shape": None, "strides": [1], "dilations": [1], "pads": None, "auto_pad": "NOTSET", "group": 1}
    )
    base, (steps, channels), data_format = _sequence(ctx, node)
    kernel = ctx.constant(node, 1, "weights W")
    bias = ctx.constant(node, 2, "bias B", required=False)
    # One group per channel, W (channels * multiplier, 1, k): DepthwiseConv1D (as the 2-D importer's
    # DepthwiseConv2D; a SeparableConv1D's two Convs come back as it and a Conv1D).
    depthwise = a["group"] == channels > 1 and kernel.ndim == 3 and kernel.shape[1] == 1 and \
        kernel.shape[0] % channels == 0
    if a["group"] != 1 and not depthwise:
        raise ctx.error(node, f"grouped 1-D convolution (group={a['group']}) other than depthwise (group = channels) "
                        "is not supported", "group")
    if kernel.ndim != 3 or (kernel.shape[1] != channels and not depthwise):
        raise ctx.error(node, f"weights of shape {kernel.shape} do not fit a sequence of {channels} channels")
    k = _kernel_size(ctx, node, a, kernel, bias, filters=kernel.shape[0])
    stride = _single(ctx, node, a, "strides", 1)
    dilation = _single(ctx, node, a, "dilations", 1)
    extra = ctx.sequence_pads.pop(id(node), None) or (0, 0)  # a zero Pad before it (import_pad_of_steps)
    # The Conv's own pads (auto_pad 'SAME_*' counts them on the padded length it reads), then the Pad's.
    pads = _pads(ctx, node, a, steps + extra[0] + extra[1], k, stride, dilation)
    pads = (pads[0] + extra[0], pads[1] + extra[1])
    padding = None
    for mode in ("valid", "same"):
        if tuple(_params.conv_padding(mode, (1, steps), (1, k), (1, stride), (1, dilation))[2:]) == pads:
            padding = mode
            break
    if padding is None and pads == (dilation * (k - 1), 0):
        padding = "causal"
    if padding is None:  # PyTorch's Conv1d(padding=p), or other zero margins
        padding = pads[0] if pads[0] == pads[1] else pads
    folded, bias = _keras_bias(ctx, node, kernel.shape[0], bias, data_format)
    options = dict(strides=stride, padding=padding, dilation_rate=dilation, use_bias=bias is not None,
                   data_format=data_format)
    if depthwise:
        layer = _layer(ctx, node, "DepthwiseConv1D")(k, depth_multiplier=kernel.shape[0] // channels,
                                                     depthwise_initializer="zeros", **options)
    else:
        layer = _layer(ctx, node, "Conv1D")(kernel.shape[0], k, kernel_initializer="zeros", **options)
    # Stored (filters, channels, 1, k), or (channels * multiplier, 1, 1, k): W with a unit height.
    weights = [kernel[:, :, None, :]] + ([] if bias is None else [bias])
    out = add_on_sequence(ctx, node, layer, base, data_format, weights)
    ctx.consume_all(folded, out)


def import_conv_transpose1d(ctx, node):
    """A 1-D ConvTranspose -> Conv1DTranspose, where its pads and output_padding give Keras's
    'valid' or 'same' output (those convforge's exporter writes), as the 2-D importer's
    Conv2DTranspose; group 1, no dilation, as the layer."""
    a = ctx.attributes(node, {"kernel_shape": None, "strides": [1], "dilations": [1], "pads": [0, 0],
                              "output_padding": [0], "auto_pad": "NOTSET", "group": 1})
    base, (steps, channels), data_format = _sequence(ctx, node)
    kernel = ctx.constant(node, 1, "weights W")
    bias = ctx.constant(node, 2, "bias B", required=False)
    if kernel.ndim != 3 or kernel.shape[0] != channels or kernel.shape[1] < 1:
        raise ctx.error(node, f"weights of shape {kernel.shape}: expected ({channels}, filters, k) for {channels} "
                        "channels")
    if a["group"] != 1:
        raise ctx.error(node, "grouped transposed convolution is not supported", "group")
    if a["auto_pad"] != "NOTSET":
        raise ctx.error(node, "only explicit pads are supported", "auto_pad")
    if _single(ctx, node, a, "dilations", 1) != 1:
        raise ctx.error(node, "Conv1DTranspose has no dilation", "dilations")
    k = _kernel_size(ctx, node, a, kernel, bias, filters=kernel.shape[1])
    stride = _single(ctx, node, a, "strides", 1)
    pads, extra = [int(p) for p in a["pads"]], [int(p) for p in a["output_padding"]]
    if len(pads) != 2 or len(extra) != 1:
        raise ctx.error(node, f"pads {pads} with output_padding {extra}: expected 2 and 1 ints (1-D)", "pads")
    cls = _layer(ctx, node, "Conv1DTranspose")
    options = [(mode, None if op is None else op[0]) for mode, op in
               conv_transpose_options((steps,), (k,), (stride,), pads, extra)]
    found = next((o for o in options if conv1d_transpose_pads(cls(1, k, stride, *o), steps) == (pads, extra)), None)
    weights = [kernel[:, :, None, :]] + ([] if bias is None else [bias])  # stored (channels, filters, 1, k)
    if found is not None:
        layer = cls(kernel.shape[1], k, stride, *found, data_format=data_format, use_bias=bias is not None,
                    kernel_initializer="zeros")
        add_on_sequence(ctx, node, layer, base, data_format, weights)
        return
    # Other pads (PyTorch's padding=1, output_padding=1): the 'valid' layer, then a Cropping1D of
    # the steps the pads cut, as the 2-D importer's Cropping2D.
    crops = conv_transpose_crops((stride,), pads, extra)
    if crops is None:
        raise ctx.error(node, f"pads {pads} with output_padding {extra}: negative pads, or an output_padding not "
                        "less than the stride, have no convforge layers", "pads")
    (output_padding,), ((left, right),) = crops
    full = node.output[0] + "#uncropped"
    ctx.add_layer(node, cls(kernel.shape[1], k, stride, "valid", output_padding, data_format=data_format,
                            use_bias=bias is not None, kernel_initializer="zeros"), [base], full, weights)
    add_on_sequence(ctx, node, _layer(ctx, node, "Cropping1D")((left, right), data_format=data_format), full,
                    data_format)


def _keras_bias(ctx, node, filters, bias, data_format):
    """Keras's exporter writes a Conv1D as Transpose, Conv without bias, Transpose back, then Add of
    the bias on (batch, steps, channels) (channels-first: the Conv, then the Add of a (1, filters,
    1) bias): those last nodes (to be aliased to the layer's output) and the bias folded into the
    Conv1D's."""
    if data_format == "channels_first":
        back, passed = None, []
        add, passed_too = ctx.next_node(node.output[0])
    else:
        back, passed = ctx.next_node(node.output[0])
        if back is None or back.op_type != "Transpose" or \
                [list(a.ints) for a in back.attribute if a.name == "perm"] != [[0, 2, 1]]:
            return [], bias
        add, passed_too = ctx.next_node(back.output[0])
    if add is None or add.op_type != "Add" or add.attribute or len(add.input) != 2:
        return [], bias
    constant = [i for i, name in enumerate(add.input) if ctx.is_constant(name)]
    if len(constant) != 1:
        return [], bias
    value = np.asarray(ctx.constant(add, constant[0], "bias"))
    # One value a filter, along the filters' axis: the last, or axis 1 of (batch, filters, steps).
    along = value.shape[-1] if data_format == "channels_last" else (value.shape[-2] if value.ndim >= 2 else 0)
    if value.size != filters or value.ndim > 3 or (value.ndim and along != filters):
        return [], bias
    value = value.reshape(-1).astype(np.float64)
    nodes = [*passed, back, *passed_too, add] if back is not None else [*passed_too, add]
    return nodes, value if bias is None else np.asarray(bias, np.float64) + value


def import_pool1d(ctx, node, pool_padding):
    is_max = node.op_type == "MaxPool"
    allowed = {"kernel_shape": None, "strides": [1], "pads": None, "auto_pad": "NOTSET", "ceil_mode": 0,
               "dilations": [1]}
    allowed.update({"storage_order": 0} if is_max else {"count_include_pad": 0})
    a = ctx.attributes(node, allowed)
    if len(node.output) > 1 and node.output[1]:
        raise ctx.error(node, "the Indices output is not supported")
    base, (steps, _), data_format = _sequence(ctx, node)
    if a["kernel_shape"] is None:
        raise ctx.error(node, "is required", "kernel_shape")
    k = _single(ctx, node, a, "kernel_shape", 1)
    stride = _single(ctx, node, a, "strides", 1)
    if _single(ctx, node, a, "dilations", 1) != 1:
        raise ctx.error(node, f"dilated pooling {list(a['dilations'])} is not supported", "dilations")
    if a["ceil_mode"] not in (0, 1):
        raise ctx.error(node, f"must be 0 or 1; got {a['ceil_mode']}", "ceil_mode")
    left, right = _pads(ctx, node, a, steps, k, stride, 1)
    extra = ctx.sequence_pads.pop(id(node), None)  # an edge Pad before it (_edge_pad_into_max_pool1d)
    if extra is not None:
        left, right = left + extra[0], right + extra[1]  # on the Pad's input, which the layer reads
    # After an edge Pad (no pads of its own) an AveragePool's count_include_pad changes nothing:
    # the margins, which its averages leave out, are the Pad's.
    counts_padding = not is_max and bool(a["count_include_pad"]) and extra is None
    # The 1-D layers run their 2-D pooling on (channels, 1, steps): the same windows over steps.
    padding = pool_padding(ctx, node, (1, steps), (1, k), (1, stride), [0, left, 0, right], bool(a["ceil_mode"]),
                           counts_padding, node_pads=[left, right])
    if isinstance(padding, tuple):  # a MaxPool's explicit padding, (0, steps): MaxPooling1D's int
        padding = padding[1]
    cls = _layer(ctx, node, "MaxPooling1D" if is_max else "AveragePooling1D")
    add_on_sequence(ctx, node, cls(pool_size=k, strides=stride, padding=padding, data_format=data_format), base, data_format)


def import_global_pool1d(ctx, node):
    ctx.attributes(node, {})
    base, _, data_format = _sequence(ctx, node)
    cls = _layer(ctx, node, "GlobalMaxPooling1D" if node.op_type == "GlobalMaxPool" else "GlobalAveragePooling1D")
    reader, passed = ctx.next_node(node.output[0])  # (batch, C, 1) flattened: Keras's default keepdims=False
    flattening = reader is not None and reader.op_type == "Flatten" and \
        ctx.attributes(reader, {"axis": 1})["axis"] == 1
    if flattening:
        ctx.add_layer(node, cls(keepdims=False, data_format=data_format), [base], node.output[0])
        ctx.consume_all([*passed, reader], node.output[0])
        return
    add_on_sequence(ctx, node, cls(keepdims=True, data_format=data_format), base, data_format)


def import_batch_normalization1d(ctx, node, a):
    base, (_, channels), data_format = _sequence(ctx, node)
    values = [ctx.constant(node, i, what) for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))]
    if any(np.shape(v) != (channels,) for v in values):
        raise ctx.error(node, f"parameters of shapes {[np.shape(v) for v in values]}; expected ({channels},) each")
    if (values[3] < 0).any():
        raise ctx.error(node, "a negative variance")
    axis = 1 if data_format == "channels_first" else -1
    layer = _layer(ctx, node, "BatchNormalization")(axis=axis, momentum=a["momentum"], epsilon=a["epsilon"])
    add_on_sequence(ctx, node, layer, base, data_format, values)


def _steps_layer(ctx, node, axis: int, make) -> None:
    """The 1-D layer that pads, crops or repeats ``axis`` (1 or 2) of the node's (batch, a, b)
    input (a Pad, Slice or Resize names its axis): ``make(data_format)`` on a (batch, steps,
    channels) tensor when the axis is 1, on a (batch, channels, steps) one when it is 2 (the
    layers move that axis only, so either reading of the tensor gives the same numbers). On a
    sequence view (batch, channels, steps), axis 2 is the steps of the (batch, steps, channels)
    sequence under it: the layer runs there and the output is a view again."""
    base = ctx.sequence_base(node.input[0])
    if base is not None:
        if axis != 2:
            raise ctx.error(node, f"on axis {axis} of a sequence transposed to (batch, channels, steps): only its "
                                  "steps (axis 2) are supported")
        add_on_sequence(ctx, node, make("channels_last"), base, "channels_last")
        return
    data_format = "channels_last" if axis == 1 else "channels_first"
    ctx.add_layer(node, make(data_format), [ctx.input_name(node)], node.output[0])


def _one_axis(ctx, node, changed: list, what: str) -> int:
    """The one sequence axis (1 or 2) that a Pad, Slice or Resize changes (2, the ONNX layout's
    steps, if none)."""
    if 0 in changed or len(changed) > 1:
        raise ctx.error(node, f"{what} on axes {changed}: only one axis of a sequence, its steps, is supported")
    return changed[0] if changed else 2


def import_pad_of_steps(ctx, node, view: bool):
    """A constant Pad of a sequence's steps. A zero Pad read only by a 1-D Conv joins its pads
    (import_conv1d, as PyTorch's F.pad and Keras's exporter write a padded Conv): a Pad of the
    (batch, channels, steps) view (``view``), of the (batch, steps, channels) sequence before its
    transpose (Keras's exporter pads so for 'same' with strides and for 'causal'), or of a
    (batch, channels, steps) tensor the Conv reads as it is. Any other zero Pad of one axis (and
    any in convforge's files) is a ZeroPadding1D, and negative pads (ONNX's crop) a Cropping1D,
    of that axis (_steps_layer)."""
    a = ctx.attributes(node, {"mode": "constant", "pads": None, "value": 0.0})
    if a["mode"] not in ("constant", "edge"):
        raise ctx.error(node, f"only zero padding of a sequence is supported; got {a['mode']!r}", "mode")
    before, after = ctx.zero_pad_sides(node, a, 3, "ZeroPadding1D")
    pads = [*before.values(), *after.values()]
    changed = sorted(i for i in (0, 1, 2) if before.get(i, 0) or after.get(i, 0))
    if a["mode"] == "edge":
        _edge_pad_into_max_pool1d(ctx, node, view, changed, before, after)
        return
    first_reader, _ = ctx.next_node(node.output[0])
    if view or changed:
        steps_axis = _one_axis(ctx, node, changed, f"pads {pads}")
    else:  # no margins at all: the axis a Conv after it would read as its steps
        steps_axis = 1 if first_reader is not None and first_reader.op_type == "Transpose" else 2
    margins = (before.get(steps_axis, 0), after.get(steps_axis, 0))
    if max(margins) > _params.MAX_PARAM or min(margins) < -_params.MAX_PARAM:
        raise ctx.error(node, f"padding {margins} is too large")
    if min(margins) < 0:
        if max(margins) > 0:
            raise ctx.error(node, f"pads {pads} mix padding and cropping")
        _steps_layer(ctx, node, steps_axis, lambda fmt: _layer(ctx, node, "Cropping1D")(
            (-margins[0], -margins[1]), data_format=fmt))
        return
    # Read through a transpose, the padded tensor is (batch, steps, channels); read by the Conv
    # as it is, (batch, channels, steps), as the view is.
    reader, passed = ctx.next_node(node.output[0])
    if not view and steps_axis == 1 and reader is not None and reader.op_type == "Transpose":
        reader, _ = ctx.next_node(reader.output[0])
        passed = []  # the transpose is the Conv's own view (import_transpose), not passed here
    elif not view and steps_axis == 1:
        reader = None  # the steps of (batch, steps, channels): a Conv reading it as it is reads other steps
    # A ZeroPadding1D of convforge's stays one (its Conv1D's padding is in the Conv's pads).
    if reader is None or reader.op_type != "Conv" or ctx.from_convforge:
        _steps_layer(ctx, node, steps_axis, lambda fmt: _layer(ctx, node, "ZeroPadding1D")(margins, data_format=fmt))
        return
    ctx.sequence_pads[id(reader)] = margins
    # The Conv reads the padded sequence as the sequence itself, its pads widened by the margins.
    ctx.consume_all([node, *passed], ctx.input_name(node))


def edge_pad_keeps_the_average(size: int, kernel: int, stride: int, before: int, after: int) -> bool:
    """Does an average pooling (no pads of its own, floor rounding) of an axis of ``size`` values
    edge-padded by ``before`` and ``after`` give, in every window, the average of the window's
    values in the axis, padding left out (Keras's 'same' average pooling)? A window reaching a
    margin averages its border value repeated with the values beside it, so it does exactly when
    that border value is the only value of the axis in it: AveragePooling(2, padding='same'),
    Keras's exporter's edge Pad and AveragePool, is such a pooling; a window of 3 with a margin of
    1 is not. The axes of an image pad and average independently, so each is checked alone."""
    if min(before, after) < 0 or max(before, after) >= kernel or kernel > size + before + after:
        return False
    windows = (size + before + after - kernel) // stride + 1
    # Only the windows reaching a margin: fewer than kernel / stride + 1 at each end.
    first = np.arange(min(windows, before // stride + 1))
    last = np.arange(max(0, windows - (after // stride + 2)), windows)
    starts = np.concatenate([first, last]) * stride - before
    real = np.minimum(starts + kernel, size) - np.maximum(starts, 0)
    reaches = (starts < 0) | (starts + kernel > size)
    return bool(np.all(real[reaches] == 1))


def edge_pad_reader(ctx, node, margins_by_axis: list) -> tuple:
    """``(reader, passed)``: the MaxPool or AveragePool that an edge Pad's output goes to (past
    no-op nodes), if the padded pooling is the same as a pooling whose windows leave the margins
    out, else an error. ``margins_by_axis``: (size, before, after) of each pooled axis, in the
    pool's order. A max is the same where each margin is narrower than the window (each window
    reaching it holds the border value it repeats); an average where edge_pad_keeps_the_average."""
    reader, passed = ctx.next_node(node.output[0])
    if reader is None or reader.op_type not in ("MaxPool", "AveragePool"):
        raise ctx.error(node, "edge padding is supported before a MaxPool or an AveragePool only (Keras's exporter's "
                              "'same' pooling)", "mode")
    attributes = {a.name: list(a.ints) if a.ints else a.i for a in reader.attribute}
    kernel = attributes.get("kernel_shape", [])
    strides = attributes.get("strides", [1] * len(margins_by_axis))
    if not isinstance(kernel, list) or len(kernel) != len(margins_by_axis) or not isinstance(strides, list) \
            or len(strides) != len(kernel) or min(strides) < 1 or min(kernel) < 1:
        raise ctx.error(node, f"edge padding before the {reader.op_type} {reader.name!r} of kernel {kernel} and "
                              f"strides {strides}: the pooling needs {len(margins_by_axis)} kernel sizes and strides, "
                              "each >= 1", "mode")
    if reader.op_type == "MaxPool":
        if all(0 <= m < k for (_, before, after), k in zip(margins_by_axis, kernel) for m in (before, after)):
            return reader, passed
        raise ctx.error(node, f"edge padding {margins_by_axis} (size, before, after) before a MaxPool of kernel "
                              f"{kernel}: only margins narrower than the window (a 'same' max pooling) are supported",
                        "mode")
    own_pads = attributes.get("pads", [0])
    auto_pad = next((a.s for a in reader.attribute if a.name == "auto_pad"), b"NOTSET")
    if attributes.get("ceil_mode", 0) == 0 and not any(own_pads if isinstance(own_pads, list) else [own_pads]) \
            and auto_pad in (b"NOTSET", b"VALID") \
            and all(edge_pad_keeps_the_average(size, k, s, before, after)
                    for (size, before, after), k, s in zip(margins_by_axis, kernel, strides)):
        return reader, passed
    raise ctx.error(node, f"edge padding {margins_by_axis} (size, before, after) before the AveragePool of kernel "
                          f"{kernel}, strides {strides}: the border values would count in the averages, which "
                          "no Keras pooling does (a window reaching a margin must hold one value of the input)",
                    "mode")


def _edge_pad_into_max_pool1d(ctx, node, view, changed, before, after) -> None:
    """An edge Pad of a sequence's steps read only by a 1-D MaxPool or AveragePool (Keras's
    exporter's strided 'same' pooling, on the transposed view), where it is the same as the
    pooling with margins left out (edge_pad_reader). The margins join the pool's pads
    (import_pool1d)."""
    steps_axis = _one_axis(ctx, node, changed, "edge padding") if view else None
    if steps_axis != 2:
        raise ctx.error(node, "edge padding of a sequence is supported on its (batch, channels, steps) view only",
                        "mode")
    margins = (before.get(2, 0), after.get(2, 0))
    channels, steps = ctx.ref_shape(node.input[0])
    reader, passed = edge_pad_reader(ctx, node, [(steps, *margins)])
    ctx.sequence_pads[id(reader)] = margins
    ctx.consume_all([node, *passed], ctx.input_name(node))


def import_crop_of_steps(ctx, node, margins: dict):
    """A Slice of one axis of a sequence, ``margins`` {axis: (removed before, removed after)}: a
    Cropping1D of that axis (_steps_layer)."""
    changed = sorted(axis for axis, m in margins.items() if m != (0, 0))
    axis = _one_axis(ctx, node, changed, "a slice")
    crop = margins.get(axis, (0, 0))
    _steps_layer(ctx, node, axis, lambda fmt: _layer(ctx, node, "Cropping1D")(crop, data_format=fmt))


def import_resize_of_steps(ctx, node, factors):
    """A nearest Resize of one axis of a sequence by a whole factor (``factors`` of axes 1 and 2,
    checked by import_resize to read as np.repeat): an UpSampling1D of that axis (_steps_layer)."""
    changed = [axis for axis, f in zip((1, 2), factors) if f != 1]
    axis = _one_axis(ctx, node, changed, f"scales {[1, *factors]}")
    size = factors[axis - 1]
    _steps_layer(ctx, node, axis, lambda fmt: _layer(ctx, node, "UpSampling1D")(size, data_format=fmt))
