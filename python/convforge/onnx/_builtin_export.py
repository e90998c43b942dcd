"""Exporters of the built-in layers: one function per layer class, registered at import.

Each writes the layer's inference computation on NCHW tensors (the layout convforge runs in),
so weights go out exactly as stored: Conv2D's kernel is ONNX's OIHW ``W``, Dense's kernel is
Gemm's ``B`` (``(in_features, units)``, ``transB=0``), and Flatten is ``Flatten(axis=1)`` of
NCHW, convforge's (channels, height, width) order. Sequences stay ``(batch, steps, channels)``
between layers, as inside convforge; the 1-D layers transpose to ONNX's ``(batch, channels,
steps)`` around their 1-D Conv, ConvTranspose or pooling node (DepthwiseConv1D a grouped Conv,
SeparableConv1D a grouped Conv then a Conv of kernel size 1).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _params
from ..layers.activations import (CELU, ELU, GELU, SELU, Activation, Exponential, HardShrink, HardSigmoid, HardSiLU,
                                  HardTanh, LeakyReLU, LogSigmoid, LogSoftmax, Mish, PReLU, ReLU, Sigmoid, Softmax,
                                  Softplus, Softsign, SoftShrink, SparsePlus, SparseSigmoid, Squareplus, Swish, Tanh,
                                  TanhShrink)
from ..layers.conv import Conv2D
from ..layers.conv1d import (
    AveragePooling1D,
    Conv1D,
    Conv1DTranspose,
    DepthwiseConv1D,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    MaxPooling1D,
    SeparableConv1D,
)
from ..layers.conv_transpose import Conv2DTranspose
from ..layers.core import Dense, Dropout, Flatten, Reshape
from ..layers.reshaping import Permute
from ..layers.pooling import AveragePooling2D, MaxPooling2D
from ._registry import register_exporter

_ELEMENTWISE = {ReLU: "Relu", Tanh: "Tanh", Sigmoid: "Sigmoid", Softplus: "Softplus", Softsign: "Softsign"}


def _scalar(ctx, suffix: str, value: float) -> str:
    return ctx.initializer(suffix, np.float32(value))


def _composite_activation(ctx, act, tensor: str):
    """The activations that are one ONNX op with an attribute, or a few ops: None for the others."""
    if type(act) is LeakyReLU:
        return ctx.node("LeakyRelu", [tensor], "LeakyRelu", alpha=act.negative_slope)
    if type(act) is ReLU and not act.plain:
        if act.threshold != 0.0:
            raise ValueError("cannot export a ReLU with a threshold to ONNX (max_value exports as Clip, negative_slope "
                             "as LeakyRelu)")
        if act.negative_slope == 0.0:
            return ctx.node("Clip", [tensor, _scalar(ctx, "zero", 0.0), _scalar(ctx, "max", act.max_value)], "Clip")
        # Keras's negative_slope * x below 0: LeakyRelu; max_value (>= 0) clips the positive side only.
        y = ctx.node("LeakyRelu", [tensor], "LeakyRelu", alpha=act.negative_slope)
        if act.max_value is None:
            return y
        return ctx.node("Min", [y, _scalar(ctx, "max", act.max_value)], "Min")
    if type(act) is ELU:
        return ctx.node("Elu", [tensor], "Elu", alpha=act.alpha)
    if type(act) is SELU:
        return ctx.node("Selu", [tensor], "Selu", alpha=SELU.alpha, gamma=SELU.scale)
    if type(act) in (HardSigmoid, HardSiLU):  # Keras 3's (PyTorch's) slope 1/6, not ONNX's default 0.2
        if type(act) is HardSiLU and ctx.opset >= 14:
            return ctx.node("HardSwish", [tensor], "HardSwish")
        gate = ctx.node("HardSigmoid", [tensor], "HardSigmoid", alpha=1.0 / 6.0, beta=0.5)
        return gate if type(act) is HardSigmoid else ctx.node("Mul", [tensor, gate], "HardSwish")
    if type(act) is Mish:  # an op from opset 18
        if ctx.opset >= 18:
            return ctx.node("Mish", [tensor], "Mish")
        return ctx.node("Mul", [tensor, ctx.node("Tanh", [ctx.node("Softplus", [tensor], "Softplus")])], "Mish")
    if type(act) is Exponential:
        return ctx.node("Exp", [tensor], "Exp")
    if type(act) is CELU:  # an op from opset 12
        return ctx.node("Celu", [tensor], "Celu", alpha=act.alpha)
    if type(act) is HardTanh:
        return ctx.node("Clip", [tensor, _scalar(ctx, "low", -1.0), _scalar(ctx, "high", 1.0)], "HardTanh")
    if type(act) in (HardShrink, SoftShrink):  # Shrink's bias: how far the kept values move towards 0
        bias = act.threshold if type(act) is SoftShrink else 0.0
        return ctx.node("Shrink", [tensor], type(act).__name__, lambd=act.threshold, bias=bias)
    if type(act) is TanhShrink:
        return ctx.node("Sub", [tensor, ctx.node("Tanh", [tensor], "Tanh")], "TanhShrink")
    if type(act) is LogSigmoid:  # -softplus(-x): log(Sigmoid) would be log(0) = -inf below about -104
        inner = ctx.node("Softplus", [ctx.node("Neg", [tensor], "neg_x")], "Softplus")
        return ctx.node("Neg", [inner], "LogSigmoid")
    if type(act) is Squareplus:
        square = ctx.node("Mul", [tensor, tensor], "x2")
        root = ctx.node("Sqrt", [ctx.node("Add", [square, _scalar(ctx, "b", act.b)], "x2_b")], "root")
        return ctx.node("Mul", [ctx.node("Add", [tensor, root], "sum"), _scalar(ctx, "half", 0.5)], "Squareplus")
    if type(act) is SparseSigmoid:  # clip((x + 1) / 2, 0, 1)
        half = ctx.node("Mul", [ctx.node("Add", [tensor, _scalar(ctx, "one", 1.0)], "x1"), _scalar(ctx, "half", 0.5)],
                        "half")
        return ctx.node("Clip", [half, _scalar(ctx, "zero", 0.0), _scalar(ctx, "one_top", 1.0)], "SparseSigmoid")
    if type(act) is SparsePlus:  # (clip(x, -1, 1) + 1)^2 / 4 + max(x - 1, 0)
        clipped = ctx.node("Clip", [tensor, _scalar(ctx, "low", -1.0), _scalar(ctx, "high", 1.0)], "clipped")
        shifted = ctx.node("Add", [clipped, _scalar(ctx, "one", 1.0)], "shifted")
        quadratic = ctx.node("Mul", [ctx.node("Mul", [shifted, shifted], "square"), _scalar(ctx, "quarter", 0.25)],
                             "quadratic")
        linear = ctx.node("Relu", [ctx.node("Sub", [tensor, _scalar(ctx, "one_off", 1.0)], "x_1")], "linear")
        return ctx.node("Add", [quadratic, linear], "SparsePlus")
    if type(act) is Swish:  # x * sigmoid(x)
        return ctx.node("Mul", [tensor, ctx.node("Sigmoid", [tensor], "Sigmoid")], "Swish")
    if type(act) is GELU:
        half_x = ctx.node("Mul", [tensor, _scalar(ctx, "half", 0.5)], "half_x")
        if act.approximate:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            cube = ctx.node("Mul", [ctx.node("Mul", [tensor, tensor], "x2"), tensor], "x3")
            inner = ctx.node("Add", [tensor, ctx.node("Mul", [cube, _scalar(ctx, "c", 0.044715)], "cx3")], "inner")
            core = ctx.node("Tanh", [ctx.node("Mul", [inner, _scalar(ctx, "k", math.sqrt(2.0 / math.pi))], "scaled")])
        else:  # 0.5 x (1 + erf(x / sqrt(2)))
            core = ctx.node("Erf", [ctx.node("Mul", [tensor, _scalar(ctx, "k", 1.0 / math.sqrt(2.0))], "scaled")])
        return ctx.node("Mul", [half_x, ctx.node("Add", [core, _scalar(ctx, "one", 1.0)], "one_plus")], "GELU")
    return None


def activation(ctx, act, tensor: str) -> str:
    """The node(s) of an activation layer (``activation=`` of Conv2D/Dense, or standalone) on ``tensor``."""
    if act is None:
        return tensor
    if isinstance(act, (Softmax, LogSoftmax)):
        # Its axis among the arrays inside the model (NCHW images), which are ONNX's tensors.
        op = "Softmax" if isinstance(act, Softmax) else "LogSoftmax"
        axis = act._internal_axis(len(ctx.shape(tensor)) + 1)
        out = ctx.node(op, [tensor], op, axis=axis)
    else:
        out = _composite_activation(ctx, act, tensor)
        if out is None:
            op = _ELEMENTWISE.get(type(act))
            if op is None:
                raise ValueError(f"cannot export activation {type(act).__name__} to ONNX")
            out = ctx.node(op, [tensor], op)
    ctx.set_shape(out, ctx.shape(tensor))
    return out


def onnx_pads(top, bottom, left, right) -> list[int]:
    """ONNX orders pads as all the starts, then all the ends."""
    return [top, left, bottom, right]


def export_conv2d(ctx, layer: Conv2D, inputs):
    (x,) = inputs
    _, h, w = ctx.shape(x)
    # Keras's 'same' becomes explicit pads, the odd extra row/column at the bottom/right
    # (what ONNX calls SAME_UPPER), computed for this input size.
    pads = _params.conv_padding(layer.padding, (h, w), layer.kernel_size, layer.strides, layer.dilation_rate)
    operands = [x, ctx.initializer("kernel", layer.params["kernel"])]
    if layer.use_bias:
        operands.append(ctx.initializer("bias", layer.params["bias"]))
    y = ctx.node(
        "Conv",
        operands,
        "Conv",
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        dilations=list(layer.dilation_rate),
        pads=onnx_pads(*pads),
        group=layer.groups,
    )
    ctx.set_shape(y, layer._internal_output_shape)
    return activation(ctx, layer.activation, y)


def conv_transpose_pads(layer: Conv2DTranspose, in_hw) -> tuple[list[int], list[int]]:
    """ONNX ConvTranspose's ``pads`` and ``output_padding`` that give ``layer``'s output (Keras's
    'valid' or 'same' size) for an input of ``in_hw``; the importer matches a node against them."""
    out_hw = layer._out_hw(*in_hw)
    top, bottom, left, right = _params.conv_padding(layer._pads(out_hw), out_hw, layer.kernel_size, layer.strides,
                                                    (1, 1))
    # ONNX's output size is (in - 1) * stride + kernel - pads + output_padding.
    natural = [(n - 1) * s + k - p for n, s, k, p in zip(in_hw, layer.strides, layer.kernel_size,
                                                          (top + bottom, left + right))]
    return onnx_pads(top, bottom, left, right), [o - n for o, n in zip(out_hw, natural)]


def conv_transpose_options(in_sizes, kernel_size, strides, pads, output_padding) -> list[tuple]:
    """The ``(padding, output_padding)`` a Conv2DTranspose / Conv1DTranspose (sizes per axis) may
    have for an ONNX ConvTranspose with these attributes: Keras's 'valid' and 'same', and each with
    the output_padding that gives the node's output size, ``(n - 1) * stride + kernel - 2 * pad +
    output_padding`` (pad ``kernel // 2`` for 'same'), where that is less than the stride. The
    importer keeps the one whose pads (conv_transpose_pads) are the node's; at most four, so a
    file's stride sets no loop count."""
    rank = len(in_sizes)
    outs = [(n - 1) * s + k - b - e + op for n, s, k, b, e, op in
            zip(in_sizes, strides, kernel_size, pads[:rank], pads[rank:], output_padding)]
    options = [(mode, None) for mode in ("valid", "same")]
    for mode in ("valid", "same"):
        extra = tuple(o - (n - 1) * s - k + (2 * (k // 2) if mode == "same" else 0)
                      for o, n, s, k in zip(outs, in_sizes, strides, kernel_size))
        if all(0 <= e < s for e, s in zip(extra, strides)):
            options.append((mode, extra))
    return options


def conv_transpose_crops(strides, pads, output_padding):
    """A ConvTranspose whose pads are neither Keras's 'valid' nor its 'same' (PyTorch's
    ``ConvTranspose2d(3, stride=2, padding=1, output_padding=1)``, a decoder's doubling step: its
    output starts a row later than Keras's 'same') as a 'valid' transposed convolution and a crop:
    ``(output_padding, [(begin, end), ...])`` per axis, or None where pads are negative or an
    output_padding is not below its stride. ONNX's output is rows ``begin`` onward of the full
    ``(n - 1) * stride + kernel`` rows, extended at the end by output_padding rows of bias alone;
    Keras's 'valid' output_padding (less than the stride) extends them there too, so only the rows
    the node's end pad leaves short need it."""
    rank = len(strides)
    begins, ends = [int(p) for p in pads[:rank]], [int(p) for p in pads[rank:]]
    output_padding = [int(p) for p in output_padding]
    if min(begins + ends + output_padding) < 0 or any(op >= s for op, s in zip(output_padding, strides)):
        return None
    extra = tuple(max(op - e, 0) for op, e in zip(output_padding, ends))
    return extra, [(b, e + x - op) for b, e, x, op in zip(begins, ends, extra, output_padding)]


def export_conv2d_transpose(ctx, layer: Conv2DTranspose, inputs):
    """ONNX's ConvTranspose: the kernel is stored as its ``W`` (in_channels, filters, kh, kw).
    The layer is the data gradient of the convolution from its output back to its input, so
    that convolution's padding (Keras's 'same' rule on the output size) gives the pads; where
    the pads cannot reach Keras's output size ('same' with a kernel smaller than the stride)
    ``output_padding`` adds the missing rows and columns at the bottom/right."""
    (x,) = inputs
    _, h, w = ctx.shape(x)
    pads, output_padding = conv_transpose_pads(layer, (h, w))
    operands = [x, ctx.initializer("kernel", layer.params["kernel"])]
    if layer.use_bias:
        operands.append(ctx.initializer("bias", layer.params["bias"]))
    y = ctx.node("ConvTranspose", operands, "ConvTranspose", kernel_shape=list(layer.kernel_size),
                 strides=list(layer.strides), pads=pads, output_padding=output_padding if any(output_padding) else None)
    ctx.set_shape(y, layer._internal_output_shape)
    return activation(ctx, layer.activation, y)


def _pool_node(ctx, layer, x, **attributes):
    """The MaxPool or AveragePool node of a pooling layer (2-D, or the inner layer of a 1-D one)."""
    if isinstance(layer, MaxPooling2D):
        return ctx.node("MaxPool", [x], "MaxPool", **attributes)
    # Keras averages only the real cells of a 'same' window: padding is not counted.
    return ctx.node("AveragePool", [x], "AveragePool", count_include_pad=0, **attributes)


def export_pooling(ctx, layer, inputs):
    (x,) = inputs
    _, pads = layer._window_plan(ctx.shape(x))
    return _pool_node(ctx, layer, x, kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                      pads=onnx_pads(*pads))


def _to_channels_first(ctx, layer, x: str) -> str:
    """A 1-D layer's input as (batch, channels, steps), the layout of ONNX's 1-D Conv and pooling:
    a Transpose of channels-last sequences, channels-first ones as they are."""
    if layer.data_format == "channels_first":
        return x
    return ctx.node("Transpose", [x], "to_channels_first", perm=[0, 2, 1])


def _to_layer_layout(ctx, layer, y: str) -> str:
    """(batch, channels, steps) back to the 1-D layer's layout."""
    if layer.data_format == "channels_first":
        return y
    return ctx.node("Transpose", [y], "to_channels_last", perm=[0, 2, 1])


def _conv1d_node(ctx, layer, x: str, steps: int, kernel_name: str, kernel, bias, group: int, name: str = "Conv"):
    """A 1-D Conv of (batch, channels, steps) with ``layer``'s window. The 1-D convolutions run as
    their inner 2-D layer on images of height 1, so that layer's padding rule ('same', or
    'causal' and zero steps as explicit pads) gives the pads of the steps axis."""
    inner = layer._inner
    _, _, left, right = _params.conv_padding(inner.padding, (1, steps), inner.kernel_size, inner.strides,
                                             inner.dilation_rate)
    operands = [x, ctx.initializer(kernel_name, kernel)]
    if bias is not None:
        operands.append(ctx.initializer("bias", bias))
    return ctx.node("Conv", operands, name, kernel_shape=[layer.kernel_size], strides=[layer.strides],
                    dilations=[layer.dilation_rate], pads=[left, right], group=group)


def _conv1d_output(ctx, layer, y: str) -> str:
    """A 1-D convolution's (batch, channels, steps) result in the layer's layout, then its
    activation: on the layer's sequences, a softmax over the channels (channels-last) or, as
    Keras's, over the steps (channels-first: the last axis)."""
    y = _to_layer_layout(ctx, layer, y)
    ctx.set_shape(y, layer._internal_output_shape)
    return activation(ctx, layer._inner.activation, y)


def export_conv1d(ctx, layer: Conv1D, inputs):
    """A 1-D Conv; the kernel, stored (filters, channels, 1, kernel_size), is ONNX's (M, C, k)
    without the unit height."""
    (x,) = inputs
    steps, _ = layer._steps_channels(ctx.shape(x))
    y = _conv1d_node(ctx, layer, _to_channels_first(ctx, layer, x), steps, "kernel", layer.params["kernel"][:, :, 0, :],
                     layer.params.get("bias"), 1)
    return _conv1d_output(ctx, layer, y)


def export_depthwise_conv1d(ctx, layer: DepthwiseConv1D, inputs):
    """ONNX's grouped 1-D Conv, one group per channel; the kernel, stored (channels * multiplier,
    1, 1, kernel_size), is its W (channels * multiplier, 1, k) as the 2-D DepthwiseConv2D's is."""
    (x,) = inputs
    steps, channels = layer._steps_channels(ctx.shape(x))
    y = _conv1d_node(ctx, layer, _to_channels_first(ctx, layer, x), steps, "depthwise_kernel",
                     layer.params["kernel"][:, :, 0, :], layer.params.get("bias"), channels, "DepthwiseConv")
    return _conv1d_output(ctx, layer, y)


def export_separable_conv1d(ctx, layer: SeparableConv1D, inputs):
    """The grouped 1-D Conv of the depthwise step (no bias), then a 1-D Conv of kernel size 1
    with the pointwise kernel ((filters, channels * multiplier, 1)) and the bias."""
    (x,) = inputs
    steps, channels = layer._steps_channels(ctx.shape(x))
    t = _conv1d_node(ctx, layer, _to_channels_first(ctx, layer, x), steps, "depthwise_kernel",
                     layer.params["depthwise_kernel"][:, :, 0, :], None, channels, "DepthwiseConv")
    operands = [t, ctx.initializer("pointwise_kernel", layer.params["pointwise_kernel"][:, :, 0, :])]
    if "bias" in layer.params:
        operands.append(ctx.initializer("bias", layer.params["bias"]))
    y = ctx.node("Conv", operands, "PointwiseConv", kernel_shape=[1])
    return _conv1d_output(ctx, layer, y)


def conv1d_transpose_pads(layer: Conv1DTranspose, steps: int) -> tuple[list[int], list[int]]:
    """ONNX 1-D ConvTranspose's ``pads`` and ``output_padding`` giving ``layer``'s output (Keras's)
    for ``steps`` steps: its inner Conv2DTranspose's on (1, steps) images, the steps axis."""
    (_, left, _, right), (_, extra) = conv_transpose_pads(layer._inner, (1, steps))
    return [left, right], [extra]


def export_conv1d_transpose(ctx, layer: Conv1DTranspose, inputs):
    """ONNX's 1-D ConvTranspose (as Conv2DTranspose's, on the steps); the kernel, stored
    (channels, filters, 1, kernel_size), is its W (C, M, k)."""
    (x,) = inputs
    steps, _ = layer._steps_channels(ctx.shape(x))
    pads, output_padding = conv1d_transpose_pads(layer, steps)
    operands = [_to_channels_first(ctx, layer, x), ctx.initializer("kernel", layer.params["kernel"][:, :, 0, :])]
    if "bias" in layer.params:
        operands.append(ctx.initializer("bias", layer.params["bias"]))
    y = ctx.node("ConvTranspose", operands, "ConvTranspose", kernel_shape=[layer.kernel_size], strides=[layer.strides],
                 pads=pads, output_padding=output_padding if any(output_padding) else None)
    return _conv1d_output(ctx, layer, y)


def export_pooling1d(ctx, layer, inputs):
    (x,) = inputs
    steps, channels = layer._steps_channels(ctx.shape(x))
    inner = layer._inner  # the 2-D pooling on (channels, 1, steps) images that the layer runs
    _, (_, _, left, right) = inner._window_plan((channels, 1, steps))
    y = _pool_node(ctx, inner, _to_channels_first(ctx, layer, x), kernel_shape=[inner.pool_size[1]],
                   strides=[inner.strides[1]], pads=[left, right])
    return _to_layer_layout(ctx, layer, y)


def export_global_pooling1d(ctx, layer, inputs):
    """GlobalAveragePooling1D / GlobalMaxPooling1D: ONNX's global pooling of (batch, channels, steps)."""
    op = "GlobalMaxPool" if isinstance(layer, GlobalMaxPooling1D) else "GlobalAveragePool"
    y = ctx.node(op, [_to_channels_first(ctx, layer, inputs[0])], op)  # (batch, C, 1)
    if layer.keepdims:
        return _to_layer_layout(ctx, layer, y)  # (batch, 1, channels) or (batch, channels, 1)
    return ctx.node("Flatten", [y], "Flatten", axis=1)


def export_dense(ctx, layer: Dense, inputs):
    (x,) = inputs
    kernel = ctx.initializer("kernel", layer.params["kernel"])
    if len(ctx.shape(x)) == 2:
        # A sequence (batch, steps, features): Gemm takes matrices only; MatMul(+Add) is the same
        # product at every step (as Keras's exporter writes Dense), and imports back as Dense.
        y = ctx.node("MatMul", [x, kernel], "MatMul")
        if layer.use_bias:
            ctx.set_shape(y, layer._internal_output_shape)
            y = ctx.node("Add", [y, ctx.initializer("bias", layer.params["bias"])], "Add")
    else:
        operands = [x, kernel]
        if layer.use_bias:
            operands.append(ctx.initializer("bias", layer.params["bias"]))
        y = ctx.node("Gemm", operands, "Gemm", transB=0)
    ctx.set_shape(y, layer._internal_output_shape)
    return activation(ctx, layer.activation, y)


def export_flatten(ctx, layer, inputs):
    (x,) = inputs
    if len(ctx.shape(x)) == 1:
        return x
    return ctx.node("Flatten", [x], "Flatten", axis=1)


def export_dropout(ctx, layer, inputs):
    # Identity at inference: nothing to write.
    return inputs[0]


def export_activation_layer(ctx, layer, inputs):
    return activation(ctx, layer, inputs[0])


def export_activation(ctx, layer: Activation, inputs):
    return activation(ctx, layer.activation, inputs[0])


def export_prelu(ctx, layer: PReLU, inputs):
    # PRelu's slope broadcasts against the tensor as ONNX has it (images NCHW): alpha in that
    # layout, its shared axes of size 1.
    (x,) = inputs
    y = ctx.node("PRelu", [x, ctx.initializer("alpha", layer._alpha(np.float32))], "PRelu")
    ctx.set_shape(y, ctx.shape(x))
    return y


def export_reshape(ctx, layer: Reshape, inputs):
    """Keras's element order: channels-last images are read and written as NHWC."""
    (x,) = inputs
    in_shape = ctx.shape(x)
    channels_last = layer._channels_last()
    if len(in_shape) == 3 and channels_last:
        x = ctx.node("Transpose", [x], "to_nhwc", perm=[0, 2, 3, 1])
    target = list(layer._user_target)
    # 0 keeps the batch size of the input (allowzero=0, the default): the batch stays dynamic.
    y = ctx.node("Reshape", [x, ctx.ints("shape", [0, *target])], "Reshape")
    if len(target) == 3 and channels_last:
        y = ctx.node("Transpose", [y], "to_nchw", perm=[0, 3, 1, 2])
    return y


def export_permute(ctx, layer: Permute, inputs):
    """One Transpose. ``dims`` counts the axes as the user sees them: a channels-last image is
    read as NHWC and, permuted, written back as NCHW, as the layer does; the three
    permutations compose into one."""
    (x,) = inputs
    perm = permute_perm(layer.dims, len(ctx.shape(x)) == 3 and layer._data_format != "channels_first")
    return ctx.node("Transpose", [x], "Transpose", perm=perm)


def permute_perm(dims, channels_last_image: bool) -> list[int]:
    """The Transpose perm of ``Permute(dims)`` on the internal tensor (NCHW for images; with
    ``channels_last_image`` the user's axes are NHWC's)."""
    user_perm = [0, *dims]
    if channels_last_image:
        to_nhwc, to_nchw = [0, 2, 3, 1], [0, 3, 1, 2]
        return [to_nhwc[user_perm[axis]] for axis in to_nchw]
    return user_perm


for _cls, _fn in (
    (Conv2D, export_conv2d),
    (MaxPooling2D, export_pooling),
    (AveragePooling2D, export_pooling),
    (Conv2DTranspose, export_conv2d_transpose),
    (Conv1D, export_conv1d),
    (DepthwiseConv1D, export_depthwise_conv1d),
    (SeparableConv1D, export_separable_conv1d),
    (Conv1DTranspose, export_conv1d_transpose),
    (MaxPooling1D, export_pooling1d),
    (AveragePooling1D, export_pooling1d),
    (GlobalAveragePooling1D, export_global_pooling1d),
    (GlobalMaxPooling1D, export_global_pooling1d),
    (Dense, export_dense),
    (Flatten, export_flatten),
    (Dropout, export_dropout),
    (ReLU, export_activation_layer),
    (Tanh, export_activation_layer),
    (Sigmoid, export_activation_layer),
    (Softmax, export_activation_layer),
    (LogSoftmax, export_activation_layer),
    (SELU, export_activation_layer),
    (HardSigmoid, export_activation_layer),
    (HardSiLU, export_activation_layer),
    (Mish, export_activation_layer),
    (Softsign, export_activation_layer),
    *((cls, export_activation_layer) for cls in (Exponential, CELU, HardTanh, HardShrink, SoftShrink, TanhShrink,
                                                  LogSigmoid, Squareplus, SparsePlus, SparseSigmoid)),
    (Softplus, export_activation_layer),
    (LeakyReLU, export_activation_layer),
    (ELU, export_activation_layer),
    (PReLU, export_prelu),
    (Swish, export_activation_layer),
    (GELU, export_activation_layer),
    (Activation, export_activation),
    (Reshape, export_reshape),
    (Permute, export_permute),
):
    register_exporter(_cls, _fn)
