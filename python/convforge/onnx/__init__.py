"""ONNX export and import: models leave convforge for deployment and come in from elsewhere.

>>> model.export("lenet.onnx", format="onnx")                 # doctest: +SKIP
>>> import onnxruntime as ort                                  # doctest: +SKIP
>>> sess = ort.InferenceSession("lenet.onnx")                  # doctest: +SKIP
>>> y = sess.run(None, {"input": x_nhwc.astype("float32")})[0]  # doctest: +SKIP
>>> # y == model.predict(x_nhwc), within float32 rounding
>>> model = convforge.load_model("lenet.onnx")                 # doctest: +SKIP

Needs the ``onnx`` package (``pip install convforge[onnx]``); convforge's
runtime needs only NumPy, so ``onnx`` is imported when a function here runs.

Export
------
:func:`export_onnx` (``model.export(path, format="onnx")``, which also takes Keras's
``verbose``, ``opset_version`` and ``input_signature=None``) writes one ONNX
model: float32 weights as initializers, the kernels' NCHW layout inside, one
``Transpose`` at the entry when the input is channels-last (the default for a
channels-last model, as ``predict`` takes it) and one at the exit when the
output is an image, a dynamic batch dimension named ``batch``, opset 17 by
default (13-21 accepted: the ops written mean the same over that range, so
one graph serves every opset. What changes there: Reshape 14 adds
``allowzero`` and BatchNormalization 14/15 ``training_mode`` and mixed types,
both left at their defaults; Pad 18 adds an ``axes`` input and AveragePool 19
``dilations``, neither written; the other revisions only widen type lists),
``producer_name`` ``convforge``
and its version. Each layer class is translated by an *exporter* registered
with :func:`register_exporter`; a layer without one stops the export with an
error naming it. Sequences ``(batch, steps, channels)`` stay so between layers;
Conv1D, DepthwiseConv1D (a grouped Conv, one group per channel), SeparableConv1D (that
grouped Conv, then a Conv of kernel size 1; it imports back as DepthwiseConv1D + Conv1D),
Conv1DTranspose (ConvTranspose), MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D and
GlobalMaxPooling1D are ONNX's 1-D Conv, ConvTranspose and pooling (GlobalAveragePool,
GlobalMaxPool) between two ``Transpose`` to and from ``(batch, channels, steps)``, as is a
BatchNormalization of sequences; with ``data_format='channels_first'`` (and
BatchNormalization(axis=1)) they read ``(batch, channels, steps)`` as ONNX does, with no
Transpose. ZeroPadding1D, Cropping1D and UpSampling1D are a zero ``Pad``, a ``Slice`` and a
nearest ``Resize`` of the steps axis of their own layout (no Transpose). All import back
(``_sequences``), and so does a PyTorch ``Conv1d`` network's (batch, channels, steps) file: its
1-D ops become channels-first layers (Keras's exporter's too: the Add of a (1, filters, 1) bias
joins the Conv1D, Sub/Mul/Add of (1, channels, 1) constants are a BatchNormalization(axis=1)).
Dropout (and SpatialDropout1D/2D), GaussianNoise, GaussianDropout and the random augmentation layers are the identity at
inference and are left out; Rescaling is ``Mul`` (+ ``Add``), UpSampling2D a nearest
``Resize`` (bilinear: a linear one with 'half_pixel' coordinates; both import back, as PyTorch's
``nn.Upsample(mode='bilinear')`` does), Conv2DTranspose ``ConvTranspose`` (imports back) and Permute one
``Transpose`` (images: imports back; Permute((2, 3, 1)) is NCHW -> NHWC, which the importer
takes for a channels-last view unless a conv or pooling reads it); LeakyReLU, ELU and
Softplus are their ONNX ops (and import back), swish ``Mul(x, Sigmoid(x))``
(imports back as Sigmoid + Multiply), GELU its erf or tanh formula (imports back as one GELU layer); ReLU(max_value) is
``Clip``, ReLU(negative_slope) ``LeakyRelu`` (then ``Min`` with a max_value: both import back), and a
ReLU threshold is refused, naming the layer. PReLU is ``PRelu``, its slope alpha in the tensor's
layout (images NCHW), of size 1 along its shared axes. LayerNormalization is ``LayerNormalization``
(opset 17 or later) over the tensor's trailing axes, its axes moved there by a ``Transpose`` where
they are not (a channels-last image's channels); it imports back, as PyTorch's ``nn.LayerNorm`` does.
GroupNormalization is written as PyTorch writes ``nn.GroupNorm`` (any opset): ``Reshape`` to
(batch, groups, -1), ``InstanceNormalization``, ``Reshape`` back, ``Mul`` and ``Add`` per channel
(ONNX's own GroupNormalization op changed the meaning of its scale at opset 21); that pattern,
and an ``InstanceNormalization`` of an image or a sequence (``nn.InstanceNorm2d/1d``), import as
GroupNormalization.

Import
------
:func:`load_onnx` (``convforge.load_model("model.onnx")``) maps an ONNX
graph to convforge layers: a :class:`~convforge.Sequential` when the graph is
a chain, else a graph model (``convforge.Model``, channels-last input). Each
op is translated by an *importer* registered with :func:`register_importer`
(``convforge.onnx._registry.supported_ops()`` lists them): Conv (plain, grouped
(Conv2D's ``groups``) and depthwise, 2-D and 1-D), ConvTranspose (2-D and 1-D: Conv2DTranspose/Conv1DTranspose where its
pads give Keras's 'valid' or 'same' output; other non-negative pads, PyTorch's
``ConvTranspose2d(3, stride=2, padding=1, output_padding=1)``, as the 'valid' layer and a
Cropping2D/Cropping1D of what the pads cut),
MaxPool/AveragePool (where a Keras 'valid'/'same' window set is the same; a MaxPool's other
symmetric pads, PyTorch's ``MaxPool2d(3, 2, padding=1)`` of ResNet's stem, as MaxPooling2D's
explicit padding, MaxPool1d's as MaxPooling1D's), Gemm,
MatMul(+Add), Relu/Tanh/Sigmoid/Softmax/Softplus/LeakyRelu/Elu (fused into the
Conv/Dense before them), Selu, HardSigmoid (Keras 3's slope 1/6 only), HardSwish, Mish, Softsign, Exp, Celu
and LogSoftmax (Keras's activations of those names; PRelu, PyTorch's ``nn.PReLU(channels)`` or
``nn.PReLU()``, as PReLU with the axes its slope broadcasts along shared; Softmax and LogSoftmax over any one axis
but the batch, as the layer over that axis of the tensor the user sees), Clip(x, 0, max) (``ReLU(max_value)``, which exports as
it) and Clip(x, 0) with no max or an infinite one (PyTorch's ``clamp(x, min=0)``: ``ReLU()``; another min has no
exact layer and is refused), Flatten and flattening Reshapes, Keras-order Reshapes to a sequence or an image (Reshape),
a Reshape of features or of a sequence to an NCHW image that a Conv or a pooling reads (PyTorch's
``x.view(-1, C, H, W)``: Reshape((H, W, 1)) for one channel, Reshape((C, H, W)) and
Permute((2, 3, 1)) for more), a Reshape of an NCHW image to a sequence (its values in (c, h, w)
order: a channels-first model's Reshape, PyTorch's ``x.flatten(2)``; a channels-last model's is
Permute((3, 1, 2)) and the Reshape), BatchNormalization,
GlobalAveragePool/GlobalMaxPool (and ReduceMean/ReduceMax over height and width, or over the
steps of a sequence; a Flatten, Reshape or Squeezes after it, PyTorch's ``x.squeeze()`` or
``x.squeeze(-1).squeeze(-1)``, as keepdims=False), Squeeze of a (batch, C, 1, 1) image's unit
axes (Flatten),
GELU, as opset 20's Gelu op or spelt out as arithmetic around an Erf or a Tanh, and SiLU (swish,
``Mul(x, Sigmoid(x))``, PyTorch's ``nn.SiLU``) (any order of the nodes: the formula is evaluated
and compared, ``_formulas``), an AveragePool with count_include_pad=1 (PyTorch's ``AvgPool2d``
default) as ZeroPadding2D and a 'valid' AveragePooling2D, Transpose of an image's axes (Permute),
Pad/Slice (ZeroPadding2D/Cropping2D; a Slice with forward steps, PyTorch's ``x[:, :, ::2, ::2]``,
also a 1x1 MaxPooling2D of those strides; zero channels padded, CIFAR ResNets' "option A"
shortcut, through a (channels, pixels) view: Reshape, ZeroPadding1D, Reshape), Resize/Upsample of mode 'nearest' by whole factors of height and
width (UpSampling2D: PyTorch's ``nn.Upsample(scale_factor=k)``; any coordinate transformation and rounding
that read input pixel floor(i / k) for output pixel i at the model's sizes; 'linear' with 'half_pixel'
coordinates, PyTorch's bilinear ``nn.Upsample``, as UpSampling2D's bilinear; other 'linear' and 'cubic' are refused;
and Keras's exporter's np.repeat of height and width, Unsqueeze -> Expand -> Reshape: ``_repeat``),
and of one axis of a sequence: a zero Pad (ZeroPadding1D; negative pads: Cropping1D), Slice (Cropping1D)
or nearest Resize (UpSampling1D) of axis 1 of (batch, a, b) is the layer with data_format='channels_last',
of axis 2 with 'channels_first' (a zero Pad read only by a 1-D Conv, as PyTorch's ``F.pad`` or Keras's
exporter write one, joins the Conv1D's padding instead, except in convforge's own files; Keras's exporter's
UpSampling1D, the Unsqueeze -> Expand -> Reshape repeat of a sequence's axis, is one too: ``_repeat``),
Gather of a constant matrix's rows by computed token ids (Embedding: ``_embedding``; an integer
graph input so read, PyTorch's ``nn.Embedding``, is taken as the model's float ids),
Add/Sum/Sub/Mul/Mean/Max/Min/Concat of computed tensors (the merge layers; Keras's exporter's
Average, a chain of Adds of n tensors, each read by the next alone, then a Div by n, is one Average layer), Identity
and Dropout (dropped). Constant shape arithmetic (Shape, Gather, Unsqueeze,
Concat, ConstantOfShape, Reshape, Slice, Cast, Equal, Where, Mod, Neg, ...) is folded; Keras's
exporter's NHWC transposes around each layer fold away (a bias added after
one goes into the conv, a channels-last flatten permutes the next Dense's
kernel rows, or is ``Reshape((-1,))`` where no Dense reads it); its first layer, where
elementwise (ReLU or another activation, Rescaling, BatchNormalization) or a ZeroPadding2D or
Cropping2D (a ResNet's stem), runs on the NHWC graph input before that input's Transpose: the
input is channels-last all the same. Files from
convforge, ``torch.onnx.export(..., dynamo=False)`` and Keras 3's
``model.export(format="onnx")`` (torch backend) are tested. A
graph of several inputs or outputs imports as a graph model taking and returning
them in the file's order. A chain from features or sequences to NCHW images (a generator: PyTorch's,
or a channels-first convforge model's) imports as a channels-first model returning NCHW images, as
the file does (see :func:`load_onnx`'s ``input_layout``). Add, Sub, Mul and Div of a tensor and
a per-channel (or one) constant (Keras's exporter writes its BatchNormalization so, and its
Normalization and PyTorch's ``(x - mean) / std`` as Sub and Div; a Div is the Mul by the
reciprocal, an ulp from the quotient) import as one BatchNormalization layer per run of them (moving mean 0,
variance 1 - epsilon, the affine in gamma and beta: exact at inference; to
fine-tune, know that it then normalises with batch statistics); ReduceMean
and ReduceMax over height and width (Keras's global pooling) as global
pooling; an edge Pad read only by a MaxPool (Keras's 'same' max pooling), whose
margins are narrower than the window, as that MaxPool's padding, and one read only by an
AveragePool where each window reaching a margin holds a single input value (Keras's 'same'
average pooling of window 2: the repeated border value is then the average that leaves the
margin out) as that pooling's 'same' padding (other edge pads are refused, naming the node:
they would count the border values in the averages). A chain none of whose layers says its images are channels-first
(no Conv or pooling: a ReLU and a Softmax over channels) imports as a
channels-last graph model, as a graph does.
An op, attribute or attribute value convforge cannot express raises
:class:`~convforge.saving.ModelFileError` naming the node, the op and the
attribute. The file is treated as untrusted: its size is bounded, every
tensor's declared size is checked against the bytes that hold it before an
array is made, NaN and infinite values are refused (but an infinite bound of a Clip),
folded constants and per-sample sizes are bounded, graphs
with cycles or dangling names are refused, and tensors stored in external
files are refused without opening any path the file names.
"""

from __future__ import annotations

from ._registry import exporter_for, importer_for, register_exporter, register_importer

__all__ = [
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MIN_OPSET",
    "export_onnx",
    "exporter_for",
    "importer_for",
    "load_onnx",
    "register_exporter",
    "register_importer",
]

DEFAULT_OPSET = 17
MIN_OPSET = 13
MAX_OPSET = 21


def export_onnx(model, path, opset: int = DEFAULT_OPSET, input_layout: str | None = None) -> None:
    """Write ``model`` to ``path`` as an ONNX model; see the module docstring.

    Parameters
    ----------
    model : Sequential (or a graph model)
        Built (its input shape known).
    path : str or os.PathLike
        Written atomically (a temporary file renamed over it).
    opset : int
        ONNX opset of the default domain, 13 to 21; default 17.
    input_layout : 'channels_last', 'channels_first' or None
        Layout of image inputs and outputs of the ONNX graph. None: the
        model's own (``predict``'s): channels-last unless its layers say
        ``data_format='channels_first'``. ``'channels_first'`` exports NCHW
        input and output with no transpose at all (PyTorch's convention).
    """
    from ._export import export_model

    export_model(model, path, opset=opset, input_layout=input_layout)


def load_onnx(path, input_layout: str | None = None):
    """A convforge model from an ONNX file; see the module docstring.

    Parameters
    ----------
    path : str or os.PathLike
    input_layout : 'channels_last', 'channels_first' or None
        For a graph whose input is NCHW (PyTorch's): ``'channels_first'``
        (the default) keeps NCHW at the API, so ``predict`` takes the arrays
        the source framework took; ``'channels_last'`` makes a Keras-style
        model taking ``(batch, height, width, channels)``. A graph that starts
        with convforge's entry ``Transpose`` is channels-last already. For a
        graph whose inputs are no images (features, sequences: taken as the
        file has them) but whose outputs are (a generator), it is the model's
        ``data_format``, the layout of its image outputs: None follows the
        file, ``'channels_first'`` where an image output is NCHW (PyTorch's
        ``x.view(-1, C, H, W)`` before a conv, a channels-first convforge
        model), so ``predict`` returns what the file does; an image output that
        the file transposes to NHWC last (a channels-last convforge model's)
        keeps a channels-last model. ``'channels_last'`` returns NCHW outputs
        transposed to NHWC. A graph that is not a chain is a graph model, whose
        image inputs and outputs are channels-last, as are those of a chain
        whose layers say no layout (ReLU, Softmax, BatchNormalization: no Conv
        or pooling): for an NCHW file the import then warns, naming the
        transpose (``input_layout='channels_last'`` says it is expected). A graph with neither image inputs nor
        image outputs takes none: it is a ValueError.

    Raises
    ------
    ModelFileError
        Not a readable ONNX model, or an op/attribute convforge cannot run.
    """
    from ._import import import_model

    return import_model(path, input_layout=input_layout)
