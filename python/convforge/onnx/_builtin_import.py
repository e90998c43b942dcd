"""Importers of the ONNX ops convforge's built-in layers run, registered at import.

Each checks every attribute it is given (an attribute it does not know is an error, not
ignored), and maps the op to a layer with the same arithmetic: Conv -> Conv2D with explicit
pads, ConvTranspose -> Conv2DTranspose, MaxPool/AveragePool -> the pooling layer whose
windows are the same, Gemm/MatMul(+Add) -> Dense, Flatten/Reshape-to-(batch, -1) -> Flatten.
An activation (Relu, Tanh, Sigmoid, Softmax) that is the only reader of a Conv/Dense output becomes that layer's
``activation=``, so it runs fused in the kernel as in a model built in convforge.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import _params
from .. import layers as _layers
from ..layers.activations import (CELU, ELU, GELU, SELU, Exponential, HardSigmoid, HardSiLU, LeakyReLU, LogSoftmax,
                                  Mish, PReLU, ReLU, Sigmoid, Softmax, Softplus, Softsign, Tanh)
from ..layers.base import display_shape
from ..layers.conv import Conv2D
from ..layers.core import Dense, Flatten, Reshape
from ..layers.pooling import AveragePooling2D, MaxPooling2D
from ..layers.reshaping import Permute
from . import _embedding, _extra_layers, _repeat, _sequences
from ._builtin_export import conv_transpose_crops, conv_transpose_options, conv_transpose_pads, permute_perm
from ._registry import register_importer

_ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Softmax": "softmax"}
_ACTIVATION_LAYERS = {"Relu": ReLU, "Tanh": Tanh, "Sigmoid": Sigmoid, "Softplus": Softplus, "Softsign": Softsign,
                      "HardSwish": HardSiLU, "Mish": Mish, "Exp": Exponential}


def _activation_layer(ctx, node):
    """The layer of an elementwise activation node; LeakyRelu and Elu carry their alpha (ONNX's
    defaults 0.01 and 1.0, not Keras's LeakyReLU 0.3)."""
    if node.op_type == "LeakyRelu":
        alpha = ctx.attributes(node, {"alpha": 0.01})["alpha"]
        if not alpha >= 0:  # valid ONNX, but Keras's LeakyReLU and ReLU take no negative slope
            raise ctx.error(node, f"a negative slope {alpha} (alpha) is not supported: Keras's LeakyReLU takes "
                                  "slopes >= 0", "alpha")
        # ReLU(negative_slope, max_value) exports as LeakyRelu, then Min with the max_value.
        reader, passed = ctx.next_node(node.output[0])
        if reader is not None and reader.op_type == "Min" and len(reader.input) == 2 and not reader.attribute:
            constant = [i for i, name in enumerate(reader.input) if ctx.is_constant(name)]
            if len(constant) == 1 and reader.input[1 - constant[0]] in (node.output[0], *(p.output[0] for p in passed)):
                cap = np.asarray(ctx.constant(reader, constant[0], "max_value"), dtype=np.float64).reshape(-1)
                if cap.size == 1 and 0 <= cap[0] < float("inf"):
                    ctx.consume_all([*passed, reader], node.output[0])
                    return ReLU(max_value=float(cap[0]), negative_slope=alpha)
        return LeakyReLU(negative_slope=alpha)
    if node.op_type == "Elu":
        return ELU(alpha=ctx.attributes(node, {"alpha": 1.0})["alpha"])
    if node.op_type == "Celu":
        return CELU(alpha=ctx.attributes(node, {"alpha": 1.0})["alpha"])
    if node.op_type in ("Selu", "HardSigmoid"):
        # Only Keras's constants: SELU's alpha and scale (ONNX's gamma), hard_sigmoid's slope
        # 1/6 (Keras 3's and PyTorch's; ONNX's default 0.2 is Keras 2's).
        if node.op_type == "Selu":
            layer, want = SELU(), {"alpha": SELU.alpha, "gamma": SELU.scale}
        else:
            layer, want = HardSigmoid(), {"alpha": 1.0 / 6.0, "beta": 0.5}
        defaults = {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875} \
            if node.op_type == "Selu" else {"alpha": 0.2, "beta": 0.5}
        given = ctx.attributes(node, defaults)
        for name, value in want.items():
            if not math.isclose(given[name], value, rel_tol=1e-6):
                raise ctx.error(node, f"{given[name]}: only {value:.9g} ({layer.activation_name}'s) is supported", name)
        return layer
    if node.op_type == "Gelu":  # opset 20
        form = ctx.attributes(node, {"approximate": "none"})["approximate"]
        if form not in ("none", "tanh"):
            raise ctx.error(node, f"must be 'none' or 'tanh'; got {form!r}", "approximate")
        return GELU(approximate=form == "tanh")
    if node.op_type == "Clip":  # PyTorch's ReLU6 and clamp(0, m): a ReLU with max_value
        if ctx.opset < 11:
            bounds = ctx.attributes(node, {"min": -float("inf"), "max": float("inf")})
            low, high = bounds["min"], bounds["max"]
        else:
            ctx.attributes(node, {})
            low, high = (_scalar_input(ctx, node, i, what) for i, what in ((1, "min"), (2, "max")))
        # PyTorch's clamp(x, min=0) has no max (opset 11+: an empty input; before: max = inf): a
        # plain ReLU. Another min has no exact layer (ReLU's threshold zeroes what is below it, a
        # clamp raises it to the bound), so it stays refused.
        if high == float("inf"):
            high = None
        if low != 0 or high is not None and not 0 <= high < float("inf"):
            raise ctx.error(node, f"only Clip(x, 0) and Clip(x, 0, max) (a ReLU, with max_value) are supported; got "
                            f"min {low}, max {high}")
        return ReLU(max_value=high)
    ctx.attributes(node, {})
    return _ACTIVATION_LAYERS[node.op_type]()


def _scalar_input(ctx, node, index: int, what: str):
    """Optional input ``index`` of ``node`` as a float (a one-value constant), None where absent."""
    if len(node.input) <= index or not node.input[index]:
        return None
    value = np.asarray(ctx.constant(node, index, what), dtype=np.float64).reshape(-1)
    if value.size != 1:
        raise ctx.error(node, f"{what} must hold one value; got {value.size}")
    return float(value[0])


def _pair(ctx, node, values, attribute: str, minimum: int):
    values = [int(v) for v in values]
    if len(values) != 2 or min(values) < minimum or max(values) > _params.MAX_PARAM:
        raise ctx.error(node, f"must be two ints >= {minimum} (2-D images); got {values}", attribute)
    return tuple(values)


def _softmax_nchw_axis(ctx, node, full_rank: int) -> int | None:
    """The axis (0-based, batch first) of the tensor a Softmax/LogSoftmax node runs over, or None
    where it runs over none: opset < 13 flattens every axis from ``axis`` on into one, which is
    that axis alone only where it is the last."""
    axis = ctx.attributes(node, {"axis": -1 if ctx.opset >= 13 else 1})["axis"]
    axis = axis + full_rank if axis < 0 else axis
    if not 1 <= axis < full_rank:
        return None  # the batch axis, or out of range (onnxruntime refuses it too)
    if ctx.opset < 13 and axis != full_rank - 1:
        return None
    return axis


def _softmax_axis_ok(ctx, node, rank: int) -> bool:
    """Does this Softmax run over convforge's softmax axis (channels of images, else the last)?"""
    full_rank = rank + 1  # with the batch
    return _softmax_nchw_axis(ctx, node, full_rank) == (1 if full_rank == 4 else full_rank - 1)


def _softmax_layer(ctx, nchw_axis: int, full_rank: int, cls=Softmax):
    """The Softmax (or log-softmax) layer over axis ``nchw_axis`` of the arrays inside the model
    (images NCHW), its ``axis`` counted on the tensor the user sees: on channels-last images
    NCHW's 1, 2, 3 are -1 (the channels), 1 and 2; on channels-first ones, as they are. Over the
    last axis it is the layer's default ``axis=-1``, and a log-softmax there is Keras's
    ``Activation('log_softmax')`` (Keras has no layer class of its own for it)."""
    axis = nchw_axis
    if full_rank == 4 and ctx.data_format != "channels_first":
        axis = (0, -1, 1, 2)[nchw_axis]
    if axis in (-1, full_rank - 1):
        return cls() if cls is Softmax else _layers.Activation("log_softmax")
    return cls(axis=axis)


def _fused_activation(ctx, tensor: str, rank: int, channels_last_view=False):
    """``(nodes, name)``: the activation reading only ``tensor`` (past no-op casts) that can be
    fused into the layer making it, and the nodes it takes; ``([], None)`` if there is none."""
    reader, passed = ctx.next_node(tensor)
    if reader is None or reader.op_type not in _ACTIVATIONS or len(reader.output) != 1:
        return [], None
    if reader.op_type == "Softmax":
        # Over channels: axis 1 of NCHW, the last axis of a channels-last view.
        if channels_last_view:
            if ctx.opset < 13 or ctx.attributes(reader, {"axis": -1})["axis"] not in (-1, 3):
                return [], None
        elif not _softmax_axis_ok(ctx, reader, rank) or (rank == 3 and ctx.data_format == "channels_first"):
            return [], None  # activation='softmax' would be over the width: a Softmax layer of its own
    elif reader.attribute:
        return [], None  # let the standalone importer name the attribute
    return [*passed, reader], _ACTIVATIONS[reader.op_type]


def _add_with_activation(ctx, node, layer_factory, inputs, output, weights, rank, after=(), view=False):
    """Add the layer made by ``layer_factory(activation)`` for ``node``, fusing the activation that
    follows it. ``after``: nodes already folded into it (a bias Add), whose last output is what
    the activation reads; ``view``: that output is a channels-last view of the layer's output."""
    last = after[-1].output[0] if after else output
    fused, act = _fused_activation(ctx, last, rank, view)
    try:
        layer = layer_factory(act)
    except (ValueError, TypeError) as err:  # the layer's own checks of what the file gave it
        raise ctx.error(node, f"cannot be expressed as a convforge layer: {err}") from None
    ctx.add_layer(node, layer, inputs, output, weights)
    in_view = False
    for extra in (*after, *fused):
        in_view = in_view or (view and extra.op_type == "Transpose")
        if in_view:
            ctx.set_view(extra.output[0], output)
        else:
            ctx.alias(extra.output[0], output)
        ctx.consume_node(extra)


def import_conv(ctx, node):
    if _sequences.reads_sequence(ctx, node):
        return _sequences.import_conv1d(ctx, node)
    a = ctx.attributes(
        node,
        {"kernel_shape": None, "strides": [1, 1], "dilations": [1, 1], "pads": None, "auto_pad": "NOTSET", "group": 1},
    )
    c, h, w = _image_shape(ctx, node)
    kernel = ctx.constant(node, 1, "weights W")
    bias = ctx.constant(node, 2, "bias B", required=False)
    if kernel.ndim != 4:
        raise ctx.error(node, f"weights of shape {kernel.shape}: only 2-D convolution (4-D weights) is supported")
    if 0 in kernel.shape:
        raise ctx.error(node, f"weights of shape {kernel.shape} hold no filter or no tap")
    groups = a["group"]
    depthwise = groups == c and c > 1 and kernel.shape[1] == 1 and kernel.shape[0] % c == 0
    if not depthwise and (groups < 1 or c % groups or kernel.shape[0] % groups):
        raise ctx.error(node, f"group={groups} does not divide the {c} input channels and {kernel.shape[0]} filters",
                        "group")
    if kernel.shape[1] * (1 if depthwise else groups) != c and not depthwise:
        raise ctx.error(node, f"weights of shape {kernel.shape} do not fit an input of {c} channels in {groups} "
                              f"group(s)")
    if a["kernel_shape"] is not None and tuple(a["kernel_shape"]) != kernel.shape[2:]:
        raise ctx.error(node, f"{a['kernel_shape']} differs from the weights' {kernel.shape[2:]}", "kernel_shape")
    if bias is not None and bias.shape != (kernel.shape[0],):
        raise ctx.error(node, f"bias of shape {bias.shape}; expected ({kernel.shape[0]},)")
    k = kernel.shape[2:]
    strides = _pair(ctx, node, a["strides"], "strides", 1)
    dilations = _pair(ctx, node, a["dilations"], "dilations", 1)
    pads = _explicit_pads(ctx, node, a, (h, w), k, strides, dilations)
    top, left, bottom, right = pads
    padding = "valid" if not any(pads) else ((top, bottom), (left, right))

    after, view, bias = _folded_bias(ctx, node.output[0], kernel.shape[0], bias)

    def make(act):
        if depthwise:
            cls = getattr(_layers, "DepthwiseConv2D", None)
            if cls is None:
                raise ctx.error(node, "this convforge has no DepthwiseConv2D layer to import it into", "group")
            return cls(
                kernel_size=k, strides=strides, padding=padding, depth_multiplier=kernel.shape[0] // c,
                data_format=ctx.data_format, dilation_rate=dilations, activation=act, use_bias=bias is not None,
                depthwise_initializer="zeros",
            )
        return Conv2D(
            kernel.shape[0], k, strides=strides, padding=padding, data_format=ctx.data_format, dilation_rate=dilations,
            groups=groups, activation=act, use_bias=bias is not None, kernel_initializer="zeros",
        )

    weights = [kernel] if bias is None else [kernel, bias]
    _add_with_activation(ctx, node, make, [node.input[0]], node.output[0], weights, 3, after, view)


def import_conv_transpose(ctx, node):
    """ConvTranspose -> Conv2DTranspose, where its pads and output_padding give Keras's 'valid' or
    'same' output (those convforge's exporter writes), else a 'valid' Conv2DTranspose and a
    Cropping2D (conv_transpose_crops); group 1, no dilation, as the layer."""
    if _sequences.reads_sequence(ctx, node):
        return _sequences.import_conv_transpose1d(ctx, node)
    a = ctx.attributes(node, {"kernel_shape": None, "strides": [1, 1], "dilations": [1, 1], "pads": [0, 0, 0, 0],
                              "output_padding": [0, 0], "auto_pad": "NOTSET", "group": 1})
    c, h, w = _image_shape(ctx, node)
    kernel = ctx.constant(node, 1, "weights W")
    bias = ctx.constant(node, 2, "bias B", required=False)
    if kernel.ndim != 4 or kernel.shape[0] != c or kernel.shape[1] < 1:
        raise ctx.error(node, f"weights of shape {kernel.shape}: expected ({c}, filters, kh, kw) for {c} channels")
    if a["group"] != 1:
        raise ctx.error(node, "grouped transposed convolution is not supported", "group")
    if a["auto_pad"] != "NOTSET":
        raise ctx.error(node, "only explicit pads are supported", "auto_pad")
    if list(a["dilations"]) != [1, 1]:
        raise ctx.error(node, "Conv2DTranspose has no dilation", "dilations")
    k = _pair(ctx, node, kernel.shape[2:], "kernel_shape", 1)
    if a["kernel_shape"] is not None and tuple(a["kernel_shape"]) != k:
        raise ctx.error(node, f"{a['kernel_shape']} differs from the weights' {k}", "kernel_shape")
    if bias is not None and bias.shape != (kernel.shape[1],):
        raise ctx.error(node, f"bias of shape {bias.shape}; expected ({kernel.shape[1]},)")
    strides = _pair(ctx, node, a["strides"], "strides", 1)
    given = ([int(p) for p in a["pads"]], [int(p) for p in a["output_padding"]])
    if len(given[0]) != 4 or len(given[1]) != 2:
        raise ctx.error(node, f"pads {given[0]} with output_padding {given[1]}: expected 4 and 2 ints (2-D)", "pads")
    cls = _layers.Conv2DTranspose
    # Keras's 'valid' or 'same' output, else one of them with Keras's output_padding (each < the
    # stride). It was every output_padding below the strides, tried in turn: a file's strides of
    # 3000 ran for over a minute without an answer.
    options = conv_transpose_options((h, w), k, strides, *given)
    found = next((o for o in options if conv_transpose_pads(cls(1, k, strides, o[0], o[1]), (h, w)) == given), None)
    weights = [kernel] if bias is None else [kernel, bias]
    if found is not None:
        padding, output_padding = found

        def make(act):
            return cls(kernel.shape[1], k, strides, padding, output_padding, data_format=ctx.data_format,
                       activation=act, use_bias=bias is not None, kernel_initializer="zeros")

        _add_with_activation(ctx, node, make, [node.input[0]], node.output[0], weights, 3)
        return
    # Other pads (PyTorch's padding=1, output_padding=1): the 'valid' layer, then a Cropping2D of
    # the rows and columns the pads cut. An activation after the node runs in the first layer: a
    # crop of its output is the same.
    crops = conv_transpose_crops(strides, *given)
    if crops is None:
        raise ctx.error(node, f"pads {given[0]} with output_padding {given[1]}: negative pads, or an output_padding "
                        "not less than the strides, have no convforge layers", "pads")
    output_padding, ((top, bottom), (left, right)) = crops
    fused, act = _fused_activation(ctx, node.output[0], 3)
    full = node.output[0] + "#uncropped"
    ctx.add_layer(node, cls(kernel.shape[1], k, strides, "valid", output_padding, data_format=ctx.data_format,
                            activation=act, use_bias=bias is not None, kernel_initializer="zeros"),
                  [node.input[0]], full, weights)
    ctx.add_layer(node, _layers.Cropping2D(((top, bottom), (left, right)), ctx.data_format), [full], node.output[0])
    ctx.consume_all(fused, node.output[0])


def _folded_bias(ctx, output, channels, bias):
    """A per-channel constant Add after a Conv, folded into its bias: ``(nodes taken, channels-last
    view?, bias)``. Keras's exporter writes Conv (no bias) -> Transpose to NHWC -> Add(bias)."""
    reader, passed = ctx.next_node(output)
    view = False
    if reader is not None and reader.op_type == "Transpose" and _perm(reader) == [0, 2, 3, 1]:
        first = [*passed, reader]
        reader, passed = ctx.next_node(reader.output[0])
        passed, view = first + passed, True
    if reader is None or reader.op_type != "Add" or reader.attribute or len(reader.input) != 2:
        return [], False, bias
    names = [ctx.resolve(n) for n in reader.input]
    constant = [i for i, n in enumerate(names) if ctx.is_constant(n)]
    if len(constant) != 1:
        return [], False, bias
    value = ctx.constant(reader, constant[0], "bias")
    shapes = {(channels,), (1, 1, channels), (1, 1, 1, channels)} if view else {(channels, 1, 1), (1, channels, 1, 1)}
    if value.shape not in shapes and value.size != 1:
        return [], False, bias
    value = np.broadcast_to(value.reshape(-1), (channels,))
    bias = value.astype(np.float64) if bias is None else bias + value
    return [*passed, reader], view, bias


def _perm(node):
    """A Transpose's perm where that is its one attribute, else None (the Transpose's own import
    then reads, or refuses, its attributes)."""
    perms = [list(a.ints) for a in node.attribute if a.name == "perm"]
    return perms[0] if len(node.attribute) == 1 and perms else None


def _image_shape(ctx, node):
    shape = ctx.shape(node, 0)
    if len(shape) != 3:
        raise ctx.error(node, f"takes images (batch, channels, height, width); its input is {('batch', *shape)}")
    return shape


def _explicit_pads(ctx, node, a, in_hw, kernel, strides, dilations):
    """ONNX ``[top, left, bottom, right]`` from ``pads`` or ``auto_pad``."""
    mode = a["auto_pad"]
    if mode not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(node, f"unknown value {mode!r}", "auto_pad")
    if mode == "NOTSET":
        pads = [0, 0, 0, 0] if a["pads"] is None else [int(p) for p in a["pads"]]
        if len(pads) != 4 or min(pads) < 0 or max(pads) > _params.MAX_PARAM:
            raise ctx.error(node, f"must be 4 ints >= 0 (2-D images); got {pads}", "pads")
        return pads
    if a["pads"] is not None and any(a["pads"]):
        raise ctx.error(node, f"pads {list(a['pads'])} given with auto_pad={mode!r}", "pads")
    if mode == "VALID":
        return [0, 0, 0, 0]
    (top, bottom), (left, right) = (
        _params.same_padding(in_hw[i], kernel[i], strides[i], dilations[i]) for i in range(2)
    )
    if mode == "SAME_LOWER":  # the odd extra row/column at the top/left instead
        top, bottom, left, right = bottom, top, right, left
    return [top, left, bottom, right]


def _pool_windows(size, kernel, stride, before, out, dilation=1):
    """Start and end (clipped to the input) of each window along one axis, as arrays."""
    starts = np.arange(out, dtype=np.int64) * stride - before
    ends = np.minimum(starts + (kernel - 1) * dilation + 1, size)
    return np.maximum(starts, 0), ends


def _onnx_pool_out(size, kernel, stride, before, after, ceil_mode):
    num = size + before + after - kernel
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + before:
        out -= 1  # the last window may not start in the end padding (onnxruntime and PyTorch)
    return out


def _pool_padding(ctx, node, in_hw, kernel, strides, pads, ceil_mode, counts_padding: bool, node_pads=None):
    """'valid' or 'same' if a Keras pooling layer has exactly this node's windows; for a MaxPool
    whose windows neither has, ``(ph, pw)``, MaxPooling2D's explicit padding, where that has them
    (PyTorch's MaxPool2d(3, 2, padding=1) of ResNet's stem on an even size); else an error
    (quoting ``node_pads``, the node's own pads where ``pads`` are their 2-D form)."""
    onnx_windows = []
    for axis in range(2):
        before, after = pads[axis], pads[axis + 2]
        out = _onnx_pool_out(in_hw[axis], kernel[axis], strides[axis], before, after, ceil_mode)
        if out < 1:
            raise ctx.error(node, f"the window does not fit the input {in_hw}", "kernel_shape")
        onnx_windows.append((out, before))
    # Whether a window covers one of the node's pads, which count_include_pad=1 counts (a window
    # reaching past the input only by ceil_mode counts the input's values alone, as Keras's do).
    covers_pads = any(
        pads[axis] > 0 or (pads[axis + 2] > 0 and (onnx_windows[axis][0] - 1) * strides[axis] - pads[axis] + kernel[axis] > in_hw[axis])
        for axis in range(2)
    )
    for mode in ("valid", "same"):
        matches = True
        for axis in range(2):
            size, k, s = in_hw[axis], kernel[axis], strides[axis]
            if mode == "valid":
                keras_out, keras_before = ((size - k) // s + 1 if size >= k else 0), 0
            else:
                keras_out = -(-size // s)
                keras_before = max((keras_out - 1) * s + k - size, 0) // 2
            out, before = onnx_windows[axis]
            if out != keras_out:
                matches = False
            elif before != keras_before:
                # Different padding can still give the same windows once clipped to the input.
                if out > 4096:
                    matches = False
                else:
                    a = _pool_windows(size, k, s, before, out)
                    b = _pool_windows(size, k, s, keras_before, out)
                    matches = matches and all(np.array_equal(p, q) for p, q in zip(a, b))
        if matches:
            if counts_padding and covers_pads:  # such a window would divide by k*k
                raise ctx.error(
                    node, "averages that count the padding (count_include_pad=1) are not supported", "count_include_pad"
                )
            return mode
    top, left, bottom, right = pads
    symmetric = top == bottom and left == right and top <= kernel[0] // 2 and left <= kernel[1] // 2
    if node.op_type == "MaxPool" and symmetric and all(
        onnx_windows[axis][0] == _onnx_pool_out(in_hw[axis], kernel[axis], strides[axis], p, p, False)
        for axis, p in enumerate((top, left))
    ):
        return (top, left)
    raise ctx.error(
        node,
        f"pads {list(pads if node_pads is None else node_pads)} with ceil_mode={int(ceil_mode)} make windows that "
        "neither Keras's 'valid' nor 'same' pooling has",
        "pads",
    )


def import_pool(ctx, node):
    if _sequences.reads_sequence(ctx, node):
        return _sequences.import_pool1d(ctx, node, _pool_padding)
    is_max = node.op_type == "MaxPool"
    allowed = {"kernel_shape": None, "strides": None, "pads": None, "auto_pad": "NOTSET", "ceil_mode": 0,
               "dilations": None}
    allowed.update({"storage_order": 0} if is_max else {"count_include_pad": 0})
    a = ctx.attributes(node, allowed)
    if len(node.output) > 1 and node.output[1]:
        raise ctx.error(node, "the Indices output is not supported")
    _, h, w = _image_shape(ctx, node)
    if a["kernel_shape"] is None:
        raise ctx.error(node, "is required", "kernel_shape")
    kernel = _pair(ctx, node, a["kernel_shape"], "kernel_shape", 1)
    strides = _pair(ctx, node, a["strides"] or [1, 1], "strides", 1)
    if a["dilations"] is not None and _pair(ctx, node, a["dilations"], "dilations", 1) != (1, 1):
        raise ctx.error(node, f"dilated pooling {list(a['dilations'])} is not supported", "dilations")
    if a["ceil_mode"] not in (0, 1):
        raise ctx.error(node, f"must be 0 or 1; got {a['ceil_mode']}", "ceil_mode")
    if is_max and a["storage_order"] != 0:
        raise ctx.error(node, "only 0 (row major) is supported", "storage_order")
    pads = _explicit_pads(ctx, node, a, (h, w), kernel, strides, (1, 1))
    extra = ctx.pool_pads.get(id(node))  # an edge Pad before it (_extra_layers._edge_pad_into_pool)
    if extra is not None:
        top, bottom, left, right = extra
        pads = [pads[0] + top, pads[1] + left, pads[2] + bottom, pads[3] + right]
    # After an edge Pad (no pads of its own) an AveragePool's count_include_pad changes nothing:
    # the margins, which its averages leave out, are the Pad's.
    counts_padding = not is_max and bool(a["count_include_pad"]) and extra is None
    if counts_padding and any(pads) and not a["ceil_mode"] and min(pads) >= 0:
        # The zeros of the margins count in the averages (PyTorch's AvgPool2d default,
        # count_include_pad=True): a ZeroPadding2D, then a 'valid' pooling of the padded image.
        top, left, bottom, right = pads
        padded = node.output[0] + "#padded"
        ctx.add_layer(node, _layers.ZeroPadding2D(((top, bottom), (left, right)), ctx.data_format), [node.input[0]],
                      padded)
        padding = _pool_padding(ctx, node, (h + top + bottom, w + left + right), kernel, strides, [0, 0, 0, 0], False,
                                False)
        ctx.add_layer(node, AveragePooling2D(kernel, strides, padding, ctx.data_format), [padded], node.output[0])
        return
    padding = _pool_padding(ctx, node, (h, w), kernel, strides, pads, bool(a["ceil_mode"]), counts_padding)
    cls = MaxPooling2D if is_max else AveragePooling2D
    ctx.add_layer(node, cls(kernel, strides, padding, ctx.data_format), [node.input[0]], node.output[0])


def _dense(ctx, node, kernel, bias, output, after=()):
    features = ctx.shape(node, 0)
    # A MatMul of a sequence (batch, steps, features) is a Dense at every step, as Keras's.
    if len(features) != 1 and not (len(features) == 2 and node.op_type == "MatMul"):
        raise ctx.error(node, f"takes (batch, features) or, as MatMul, (batch, steps, features); its input is "
                              f"{('batch', *features)}")
    if kernel.ndim != 2 or kernel.shape[0] != features[-1]:
        raise ctx.error(node, f"weights of shape {kernel.shape} do not fit {features[-1]} input features")
    order = ctx.flat_order.get(ctx.input_name(node))
    if order is not None:
        # The input was flattened in Keras's (h, w, c) order; convforge's Flatten gives (c, h, w):
        # the same values at other positions, so the kernel's rows move with them.
        if ctx.readers(ctx.input_name(node)) != 1:
            raise ctx.error(node, "a channels-last flatten read by several nodes is not supported")
        permuted = np.empty_like(kernel)
        permuted[order] = kernel
        kernel = permuted

    def make(act):
        return Dense(kernel.shape[1], act, bias is not None, kernel_initializer="zeros")

    weights = [kernel] if bias is None else [kernel, bias]
    # The activation's rank is the input's: a softmax of a sequence over other axes than the last
    # is no Dense(activation='softmax').
    _add_with_activation(ctx, node, make, [node.input[0]], output, weights, len(features), after)


def _one_per_unit(value, units) -> bool:
    """Whether a constant added to a (..., units) product is one bias per unit (or one for all):
    every axis but the last of size 1, the last of size units or 1. A (steps, 1) constant, one
    value per step, is not, even where steps == units."""
    shape = np.shape(value)
    return all(d == 1 for d in shape[:-1]) and (not shape or shape[-1] in (units, 1))


def _bias_vector(ctx, node, value, units):
    """The (units,) bias of a Gemm's C or a MatMul's added constant: a scalar, (units,), (1, units)
    or (1, 1) (tf2onnx and older exporters write a Dense bias as (1, units))."""
    if np.ndim(value) > 2 or not _one_per_unit(value, units):
        raise ctx.error(node, f"bias of shape {np.shape(value)} is not one value per unit ({units},) or (1, {units}): "
                              "a bias per row is not supported")
    return np.broadcast_to(np.asarray(value, dtype=np.float64).reshape(-1), (units,)).copy()


def import_gemm(ctx, node):
    a = ctx.attributes(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
    if a["transA"]:
        raise ctx.error(node, "a transposed input (transA=1) is not supported", "transA")
    b = ctx.constant(node, 1, "weights B")
    if b.ndim != 2:
        raise ctx.error(node, f"weights B of shape {b.shape}; expected a matrix")
    for factor in ("alpha", "beta"):
        if not np.isfinite(a[factor]) or abs(a[factor]) > 1e30:
            raise ctx.error(node, f"{a[factor]} is not a usable scale factor", factor)
    kernel = (b.T if a["transB"] else b) * a["alpha"]
    c = ctx.constant(node, 2, "bias C", required=False)
    bias = None if c is None else _bias_vector(ctx, node, c, kernel.shape[1]) * a["beta"]
    _dense(ctx, node, kernel, bias, node.output[0])


def import_matmul(ctx, node):
    ctx.attributes(node, {})
    kernel = ctx.constant(node, 1, "weights B")
    if kernel.ndim != 2:
        raise ctx.error(node, f"weights of shape {kernel.shape}; expected a matrix")
    output, bias, after = node.output[0], None, ()
    # nn.Linear / keras Dense as some exporters write them: MatMul, then Add of a constant bias.
    add, passed = ctx.next_node(output)
    if add is not None and add.op_type == "Add" and not add.attribute and len(add.input) == 2:
        names = [ctx.resolve(n) for n in add.input]
        constant = [i for i, n in enumerate(names) if ctx.is_constant(n)]
        if len(constant) == 1:
            value = ctx.constant(add, constant[0], "bias")
            if value.ndim <= 2 and _one_per_unit(value, kernel.shape[1]):
                bias = _bias_vector(ctx, add, value, kernel.shape[1])
                after = (*passed, add)
    _dense(ctx, node, kernel, bias, output, after)


def _softmax_over(ctx, node, full_rank: int, to_base=None):
    """The Softmax/LogSoftmax layer of ``node`` on a tensor of ``full_rank`` axes; ``to_base``
    maps the node's axes to those of the tensor the layer runs on (where the node reads a view)."""
    axis = _softmax_nchw_axis(ctx, node, full_rank)
    if axis is None:
        raise ctx.error(node, "a softmax over the batch axis, or over several axes (opset < 13), is not supported",
                        "axis")
    cls = Softmax if node.op_type == "Softmax" else LogSoftmax
    return _softmax_layer(ctx, to_base[axis] if to_base else axis, full_rank, cls)


def import_prelu(ctx, node):
    """PRelu (PyTorch's nn.PReLU, convforge's PReLU) as PReLU: its slope, broadcast against the
    input (images NCHW), becomes alpha in Keras's layout, the axes where it has size 1 (and the
    input not) shared."""
    ctx.attributes(node, {})
    if ctx.view_base(node.input[0]) is not None or ctx.sequence_base(node.input[0]) is not None:
        raise ctx.error(node, "a PRelu on a transposed view of an image or sequence is not supported")
    shape = tuple(ctx.shape(node, 0))
    slope = np.asarray(ctx.constant(node, 1, "slope"))
    if slope.ndim > len(shape) + 1 or (slope.ndim == len(shape) + 1 and slope.shape[0] != 1):
        raise ctx.error(node, f"a slope of shape {slope.shape} for input {('batch', *shape)}: one slope per sample "
                              "is not supported")
    per_sample = slope[0] if slope.ndim == len(shape) + 1 else slope  # its batch axis is 1
    full = per_sample.reshape((1,) * (len(shape) - per_sample.ndim) + per_sample.shape)
    if any(s not in (1, d) for s, d in zip(full.shape, shape)):
        raise ctx.error(node, f"a slope of shape {slope.shape} does not broadcast against {('batch', *shape)}")
    keras_shape = display_shape(shape, ctx.data_format)
    transposed = len(shape) == 3 and ctx.data_format != "channels_first"
    alpha = full.transpose(1, 2, 0) if transposed else full  # NCHW -> Keras's (H, W, C)
    shared = [axis for axis, (a, d) in enumerate(zip(alpha.shape, keras_shape), start=1) if a == 1 and d != 1]
    full_alpha = np.broadcast_to(alpha, tuple(1 if axis in shared else d
                                             for axis, d in enumerate(keras_shape, start=1)))
    layer = PReLU(shared_axes=shared or None)
    ctx.add_layer(node, layer, [node.input[0]], node.output[0], [np.ascontiguousarray(full_alpha)])


def import_activation(ctx, node):
    base = ctx.view_base(node.input[0])
    over_axis = node.op_type in ("Softmax", "LogSoftmax")
    if base is not None:
        # On a channels-last view (Keras's exporter): the layer runs on the NCHW tensor, its
        # output viewed again; a softmax's axis of the (N, H, W, C) view is one of NCHW's.
        layer = _softmax_over(ctx, node, 4, (0, 2, 3, 1)) if over_axis else _activation_layer(ctx, node)
        ctx.add_view_layer(node, layer, [base], view=True)
        return
    steps = ctx.sequence_base(node.input[0])
    if steps is not None:
        # On a sequence's (batch, channels, steps) view (PyTorch's Conv1d then F.relu after a
        # transpose): on the (steps, channels) sequence, its output a view again.
        layer = _softmax_over(ctx, node, 3, (0, 2, 1)) if over_axis else _activation_layer(ctx, node)
        _sequences.add_on_sequence(ctx, node, layer, steps, "channels_last")
        return
    shape = ctx.shape(node, 0)
    layer = _softmax_over(ctx, node, len(shape) + 1) if over_axis else _activation_layer(ctx, node)
    ctx.add_layer(node, layer, [node.input[0]], node.output[0])


# Ops that read an image as NCHW: a transpose to NHWC before one is no channels-last view for
# the next layer (Keras's exporter's pattern) but a reordering of the image, Permute((2, 3, 1)).
_NCHW_READERS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                 "BatchNormalization", "Resize", "Upsample"}


def _read_as_nchw(ctx, node) -> bool:
    """Does an op that takes (batch, channels, ...) read the node's output (past a Pad, as Keras's
    exporter pads before a strided 'same' Conv1D; its Shape readers compute that Pad's size)?"""
    readers = ctx.readers_of(node.output[0])
    for pad in [r for r in readers if r.op_type == "Pad"]:
        readers += ctx.readers_of(pad.output[0])
    return any(reader.op_type in _NCHW_READERS for reader in readers)


def import_transpose(ctx, node):
    """Between layers only the NCHW <-> NHWC pair convforge can express: a view, and back."""
    perm = list(ctx.attributes(node, {"perm": None})["perm"] or [])
    name = ctx.input_name(node)
    steps = ctx.sequence_base(name)
    if steps is not None and perm == [0, 2, 1]:  # a sequence view back: the 1-D layer's output
        ctx.consume(node, steps)
        return
    base = ctx.view_base(name)
    if steps is None and base is None and perm == [0, 2, 1] and len(ctx.shape(node, 0)) == 2:
        if _read_as_nchw(ctx, node):  # by a 1-D op: (batch, steps, channels) -> (batch, channels, steps)
            ctx.set_sequence_view(node.output[0], name)
            ctx.consume_node(node)
        else:  # a reordering of the axes the next layer reads as they are
            ctx.add_layer(node, Permute((2, 1)), [node.input[0]], node.output[0])
        return
    # Back to NCHW: the next layer reads the base. A channels-first model returns NCHW images too,
    # so there the graph output is the base; a channels-last one returns them channels-last, so a
    # graph output that is NCHW is Keras's Permute((3, 1, 2)) as the last layer (below).
    if base is not None and perm == [0, 3, 1, 2] and (ctx.data_format == "channels_first"
                                                      or not ctx.reaches_graph_output(node.output[0])):
        ctx.consume(node, base)
        return
    if base is not None and ctx.data_format == "channels_last" and len(perm) == 4 and perm[0] == 0 \
            and sorted(perm) == [0, 1, 2, 3] and perm != [0, 1, 2, 3]:
        # Keras's Permute, which its exporter writes as a Transpose of the channels-last view: the
        # same dims on the image, its output that image's view. (NHWC -> NCHW too where it is a
        # graph output: Permute((3, 1, 2)) as the last layer returns (channels, height, width).)
        ctx.add_view_layer(node, Permute(tuple(perm[1:])), [base], view=True)
        return
    if base is None and perm == [0, 2, 3, 1] and len(ctx.shape(node, 0)) == 3 and not _read_as_nchw(ctx, node):
        ctx.set_view(node.output[0], name)
        ctx.consume_node(node)
        return
    # Any other reordering of an image's axes is a Permute (convforge's exporter writes one
    # Transpose for it), its dims as the model's images are laid out.
    shape = ctx.shape(node, 0)
    if len(shape) == 3 and len(perm) == 4 and perm[0] == 0 and sorted(perm) == [0, 1, 2, 3]:
        channels_last = ctx.data_format != "channels_first"
        for dims in itertools.permutations((1, 2, 3)):
            if permute_perm(dims, channels_last) == perm:
                ctx.add_layer(node, Permute(dims), [node.input[0]], node.output[0])
                return
    shown = perm if perm else f"{list(range(len(ctx.shape(node, 0)), -1, -1))} (no perm: all axes reversed)"
    raise ctx.error(node, f"a transpose {shown} inside the graph has no convforge layer", "perm")


def _flatten_view(ctx, node, base) -> None:
    """Keras's channels-last flatten of a view: convforge's Flatten, and the (h, w, c) -> (c, h, w)
    position map for the Dense that reads it (its kernel's rows move with the values). Read by
    anything else (an activation, a merge, the graph output), whose values' order shows, it is
    Reshape((-1,)): Keras's (h, w, c) order."""
    reader, _ = ctx.next_node(node.output[0])
    if reader is None or reader.op_type not in ("Gemm", "MatMul"):
        if ctx.data_format == "channels_last":
            ctx.add_layer(node, Reshape((-1,)), [base], node.output[0])
        else:  # a channels-first model's Reshape((-1,)) flattens (c, h, w): the image's axes moved first
            ctx.add_layer(node, Permute((2, 3, 1)), [base], node.output[0] + "#hwc")
            ctx.add_layer(node, Flatten(ctx.data_format), [node.output[0] + "#hwc"], node.output[0])
        return
    c, h, w = ctx.ref_shape(base)
    ctx.add_layer(node, Flatten(ctx.data_format), [base], node.output[0])
    ctx.flat_order[node.output[0]] = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def import_flatten(ctx, node):
    axis = ctx.attributes(node, {"axis": 1})["axis"]
    base = ctx.view_base(node.input[0])
    if base is not None and axis in (1, -3):
        _flatten_view(ctx, node, base)
        return
    shape = ctx.shape(node, 0)
    if axis != 1 and axis != -len(shape):
        raise ctx.error(node, f"only axis=1 (keep the batch, flatten the rest) is supported; got {axis}", "axis")
    if len(shape) == 1:
        ctx.consume(node, ctx.input_name(node))
        return
    ctx.add_layer(node, Flatten(ctx.data_format), [node.input[0]], node.output[0])


def _resolved_dims(dims, size: int) -> list | None:
    """A reshape's per-sample target with its -1 worked out for ``size`` values, or None where it
    is no valid one (a 0, a negative other than one -1, sizes that do not divide)."""
    if any(d == 0 or d < -1 for d in dims) or dims.count(-1) > 1:
        return None
    known = math.prod(d for d in dims if d != -1)
    if known == 0 or size % known:
        return None
    dims = [size // known if d == -1 else d for d in dims]
    return dims if math.prod(dims) == size else None


def _chw_source(ctx, node) -> str:
    """The tensor a reshape of an NCHW image reads in (c, h, w) order, the file's: the image
    itself in a channels-first model; in a channels-last one, whose Reshape reads the (h, w, c)
    view, the image's axes put back by Permute((3, 1, 2))."""
    if ctx.data_format == "channels_first":
        return node.input[0]
    ctx.add_layer(node, Permute((3, 1, 2)), [node.input[0]], node.output[0] + "#chw_in")
    return node.output[0] + "#chw_in"


def _keras_reshape(ctx, node, base, shape, target, batch) -> bool:
    """A Reshape in Keras's element order (of features, of a sequence, or of the channels-last view
    of an image) to a sequence or a channels-last image: the Reshape layer, as convforge's
    exporter writes it (True), else False."""
    if target[0] not in batch or len(target) - 1 not in (2, 3):
        return False
    if base is None and len(shape) == 3:  # an NCHW tensor: its element order is not Keras's
        return False
    dims = _resolved_dims(target[1:], math.prod(shape))
    if dims is None:
        return False
    source = base if base is not None else node.input[0]
    if len(dims) == 3 and ctx.data_format == "channels_first":
        # A channels-first model's Reshape((h, w, c)) holds the values in the file's order, as a
        # (channels, height, width) image of other axes: Permute((3, 1, 2)) makes the NCHW image
        # whose channels-last view the file's tensor is.
        ctx.add_layer(node, Reshape(tuple(dims)), [source], node.output[0] + "#hwc")
        ctx.add_layer(node, Permute((3, 1, 2)), [node.output[0] + "#hwc"], node.output[0] + "#nchw")
        ctx.set_view(node.output[0], node.output[0] + "#nchw")
        return True
    if base is not None and ctx.data_format == "channels_first":
        # The view of an NCHW image made a sequence: a channels-first model's Reshape reads the
        # image in (c, h, w) order; the view's order is (h, w, c), which Permute((2, 3, 1)) makes.
        ctx.add_layer(node, Permute((2, 3, 1)), [base], node.output[0] + "#hwc")
        source = node.output[0] + "#hwc"
    # (batch, *dims) is a sequence as convforge holds it, or the channels-last view of an image.
    ctx.add_view_layer(node, Reshape(tuple(dims)), [source], view=len(dims) == 3)
    return True


# Elementwise ONNX ops that convforge's merge layers take, broadcasting.
_BROADCASTING_MERGES = {"Add", "Sub", "Mul", "Max", "Min", "Mean", "Sum"}


def _nchw_reshape(ctx, node, base, shape, target, batch) -> bool:
    """PyTorch's ``x.view(-1, C, H, W)`` of features, of a (steps, channels) tensor or of another
    image, read as an NCHW image by a conv or a pooling (no exporter puts a channels-last tensor
    before one): values in (c, h, w) order. As a convforge layer, Keras's
    Reshape to that image (one channel: (H, W, 1) and (1, H, W) hold the values in the same order)
    or, of several channels in a channels-last model, Reshape((C, H, W)) then Permute((2, 3, 1)),
    which puts value [c, h, w] at pixel (h, w), channel c. Also a (C, 1, 1) of features that an
    elementwise merge reads (PyTorch's squeeze-and-excitation ``x * s.view(-1, C, 1, 1)``, and
    convforge's export of a Multiply of an image and a vector): Reshape((1, 1, C)), the merge
    broadcasting it. Made (True) when it applies, else False."""
    if base is not None or target[0] not in batch or len(target) != 4:
        return False
    dims = _resolved_dims(target[1:], math.prod(shape))
    if dims is None:
        return False
    c, h, w = dims
    per_channel = h == w == 1 and any(r.op_type in _BROADCASTING_MERGES for r in ctx.readers_of(node.output[0]))
    if not per_channel and not _read_as_nchw(ctx, node):
        return False
    # An NCHW image reshaped: read in the element order the file's reshape reads.
    source = _chw_source(ctx, node) if len(shape) == 3 else node.input[0]
    if ctx.data_format == "channels_first" or c == 1 or per_channel:
        image = (c, h, w) if ctx.data_format == "channels_first" else (h, w, c)
        ctx.add_layer(node, Reshape(image), [source], node.output[0])
    else:
        ctx.add_layer(node, Reshape((c, h, w)), [source], node.output[0] + "#chw")
        ctx.add_layer(node, Permute((2, 3, 1)), [node.output[0] + "#chw"], node.output[0])
    return True


def _nchw_to_sequence(ctx, node, base, shape, target, batch) -> bool:
    """A Reshape of an NCHW image to a (batch, a, b) sequence: its values in (c, h, w) order, as a
    channels-first model's Reshape((a, b)) reads them (convforge's exporter writes it so, a
    channels-first Conv1D after it reading (batch, channels, steps)); a channels-last model's
    Reshape reads (h, w, c), so Permute((3, 1, 2)) first. Made (True) when it applies."""
    if base is not None or len(shape) != 3 or target[0] not in batch or len(target) != 3:
        return False
    dims = _resolved_dims(target[1:], math.prod(shape))
    if dims is None:
        return False
    ctx.add_layer(node, Reshape(tuple(dims)), [_chw_source(ctx, node)], node.output[0])
    return True


def _shown_target(target) -> str:
    """A reshape's target for a message: the batch read from Shape() shown as 'batch'."""
    return "[" + ", ".join("batch" if v == SYMBOLIC_BATCH else str(v) for v in target) + "]"


def import_reshape(ctx, node):
    """The reshapes that flatten each sample (PyTorch's ``x.view(-1, n)``), and Keras's Reshape to
    a sequence or an image (from features, a sequence or an image read channels-last)."""
    # The batch: 0 (copy it), -1 (infer it), the batch size read from Shape() (dynamic batch), or
    # the one the file fixes at its input (PyTorch's x.view(x.size(0), -1) exported without
    # dynamic_axes writes its example's batch there): the model then takes any batch.
    batch = (0, -1, SYMBOLIC_BATCH) if ctx.fixed_batch is None else (0, -1, SYMBOLIC_BATCH, ctx.fixed_batch)
    if _repeat.finish_repeat(ctx, node, batch):  # Keras's exporter's UpSampling2D
        return
    if _extra_layers.start_group_norm(ctx, node, batch):  # PyTorch's nn.GroupNorm
        return
    allowzero = ctx.attributes(node, {"allowzero": 0})["allowzero"]
    base = ctx.view_base(node.input[0])
    shape = ctx.ref_shape(node.input[0]) if base is not None else ctx.shape(node, 0)
    target = [int(v) for v in ctx.constant(node, 1, "shape").reshape(-1)]
    size = math.prod(shape)
    if not allowzero and len(target) > 2 and (
        _nchw_reshape(ctx, node, base, shape, target, batch) or _keras_reshape(ctx, node, base, shape, target, batch)
        or _nchw_to_sequence(ctx, node, base, shape, target, batch)
    ):
        return
    ok = len(target) == 2 and not allowzero and (
        target[0] in batch and target[1] in (-1, size) or target[0] == -1 and target[1] == size
    )
    if not ok:
        raise ctx.error(
            node, f"reshape to {_shown_target(target)} of a {('batch', *shape)} tensor: only (batch, -1) flattening, Keras's "
            "Reshape (channels-last order) to a sequence or an image, a reshape to an NCHW image read by a "
            "convolution or a pooling, and one of an NCHW image to a sequence are supported"
        )
    if base is not None:
        _flatten_view(ctx, node, base)
        return
    if len(shape) == 1:
        ctx.consume(node, ctx.input_name(node))
        return
    ctx.add_layer(node, Flatten(ctx.data_format), [node.input[0]], node.output[0])


def import_identity(ctx, node):
    if node.op_type == "Dropout":
        ctx.attributes(node, {"seed": 0, "ratio": 0.5})  # ratio: opset < 12
        training = ctx.constant(node, 2, "training_mode", required=False)
        if training is not None and bool(np.asarray(training).reshape(-1)[:1].any()):
            raise ctx.error(node, "training_mode is true: dropout at inference is not supported")
        if len(node.output) > 1 and node.output[1] and ctx.readers(node.output[1]):
            raise ctx.error(node, "its mask output is used; convforge's inference dropout has none")
    else:
        ctx.attributes(node, {})
    if ctx.ref_shape(node.input[0]) is None:
        raise ctx.error(node, "the input is a constant; convforge layers take computed tensors")
    ctx.consume(node, ctx.input_name(node))


def import_constant(ctx, node):
    a = ctx.attributes(node, {"value": None, "value_float": None, "value_floats": None, "value_int": None,
                              "value_ints": None})
    given = [(k, v) for k, v in a.items() if v is not None]
    if len(given) != 1:
        raise ctx.error(node, "exactly one of value, value_float(s), value_int(s) is needed")
    key, value = given[0]
    if key == "value":
        array = value
    else:
        array = np.asarray(value, dtype=np.float32 if "float" in key else np.int64)
    ctx.set_constant(node.output[0], array)
    ctx.consume(node, node.output[0])


# ---------------------------------------------------------------------------- shape arithmetic
# Exporters compute a reshape's target from the input's shape (Shape -> Gather -> Unsqueeze ->
# Concat) to keep the batch dynamic. These are folded here into constants, the batch size
# standing as SYMBOLIC_BATCH; anything else done to it is refused.

SYMBOLIC_BATCH = -(2**40)


def import_shape(ctx, node):
    a = ctx.attributes(node, {"start": 0, "end": None})
    shape = ctx.ref_shape(node.input[0])
    if shape is None:
        raise ctx.error(node, "the shape of a constant is not supported")
    dims = np.array([SYMBOLIC_BATCH, *shape], dtype=np.int64)
    ctx.set_constant(node.output[0], dims[a["start"] : a["end"]])
    ctx.consume_node(node)


def import_cast(ctx, node):
    """A Cast of a computed tensor (constant ones are folded before this is reached): to float,
    or to integers read only as an Embedding's token ids (the model takes its ids as floats)."""
    to = ctx.attributes(node, {"to": 1})["to"]
    if to not in (1, 11) and not (to in (6, 7) and _embedding.take_token_ids(ctx, node.output[0])):
        raise ctx.error(node, f"a cast of computed values to element type {to} is not supported", "to")
    ctx.consume(node, ctx.input_name(node))  # convforge computes in the model's float dtype


for _op, _fn in (
    ("Conv", import_conv),
    ("ConvTranspose", import_conv_transpose),
    ("MaxPool", import_pool),
    ("AveragePool", import_pool),
    ("Gemm", import_gemm),
    ("MatMul", import_matmul),
    ("Relu", import_activation),
    ("Tanh", import_activation),
    ("Sigmoid", import_activation),
    ("Softplus", import_activation),
    ("LeakyRelu", import_activation),
    ("Elu", import_activation),
    ("Selu", import_activation),
    ("HardSigmoid", import_activation),
    ("HardSwish", import_activation),
    ("Mish", import_activation),
    ("Softsign", import_activation),
    ("Exp", import_activation),
    ("Celu", import_activation),
    ("Clip", import_activation),
    ("Gelu", import_activation),
    ("Softmax", import_activation),
    ("LogSoftmax", import_activation),
    ("PRelu", import_prelu),
    ("Flatten", import_flatten),
    ("Reshape", import_reshape),
    ("Identity", import_identity),
    ("Dropout", import_identity),
    ("Constant", import_constant),
    ("Transpose", import_transpose),
    ("Shape", import_shape),
    ("Unsqueeze", _repeat.import_unsqueeze),
    ("Gather", _embedding.import_gather),
    ("Expand", _repeat.import_expand),
    ("Cast", import_cast),
):
    register_importer(_op, _fn)
