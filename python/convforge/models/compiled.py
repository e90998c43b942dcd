"""A model's inference pass compiled into one C++ call (``functional.inference_plan``).

At batch 1 a model's time went to Python between the kernels: ~10 microseconds of argument
checks and dispatch per layer against a few of arithmetic (LeNet-5's predict of one image took
twice onnxruntime's). :func:`compile_inference` lowers the model's inference steps (after the
Conv2D + BatchNormalization folding of :mod:`convforge.layers.fusion`) to the plan's ops: the
same kernels on the same arguments, so the outputs are bit-identical to running the layers one by
one, with two exceptions, both about which algorithm a convolution takes. The plan keeps what
its 3x3 convolutions derive from their weights (Winograd's transformed filters, the folded
BatchNormalization) between runs, so a small batch may take Winograd where a layer alone,
transforming its filters on every call, takes the direct form. And a large batch runs through
the plan a few samples at a time (``plan.chunk_samples``, about 768 KiB of activations: they
stay in L2 from one layer to the next, and each thread runs whole chunks), so its convolutions
choose for the chunk's size, not the batch's. Those outputs agree with the layers' within the
algorithms' error bounds; ``plan.keep_prepared = False`` with ``plan.chunk_samples = 0`` gives
the layers' choices and bits. The chunks do not depend on the thread count: neither do the
results. Steps are lowered in execution order; one the plan has no op for (a custom layer, a
tanh, a 1-D layer) runs in Python on the plan's results, and the steps after it lower into a next
plan, whose inputs are the tensors they read from before it (the *tail*: the Python steps and
the later plans, in order). A Dense or Conv2D whose activation the plan lacks (a sigmoid head,
a tanh) is split: its matrix product in the plan, its activation in Python. A model whose first
step has no op is not compiled. Dropout, the noise layers
and the augmentation layers are the identity there, LeakyReLU and Rescaling ops of their own (a model that
starts with Keras's data-augmentation block and ``Rescaling(1 / 255)`` compiles whole), and
DepthwiseConv2D the depthwise kernel (SeparableConv2D that and a 1x1 conv2d: MobileNet's blocks);
ZeroPadding2D and Cropping2D a copy into a window (the stems of Keras's ResNet and MobileNet code),
Conv2DTranspose conv2d's backward-data pass (+ bias), Reshape a copy in Keras's channels-last order, UpSampling2D a repeat and AveragePooling2D the layer's sums in its order (Inception's pooling
branches, DenseNet's transitions, a U-Net's decoder). ReLU and the softmax of a
(batch, classes) head are plan ops; a ReLU with ``max_value`` only (MobileNetV2's relu6) is the
relu op and a clip_max op (the layer's relu kernel and ``np.minimum``), and the exact GELU a gelu op
(the layer's kernel: the C library's erf). ``evaluate`` runs a second plan of the same model
(``compile_inference(..., logits=True)``) whose softmax heads that the loss fuses with its
cross-entropy give their logits, used where it computes every output itself.

The plan holds the weight arrays themselves and reads their values at every run: training or
``set_weights`` (both write into the same arrays) are seen at once (at each run a 128-bit digest
of each block of the arrays a conv keeps something of is compared with the one kept, and what it
keeps is made again when they differ: a one-value change is always seen, a change of several
missed only if both 64-bit halves of a digest collide; ``docs/RELIABILITY.md``). A weight *replaced* by another
array (``layer.params['kernel'] = ...``), or a layer setting the plan was made from replaced
(``dense.activation = None`` for the logits, a BatchNormalization's ``epsilon``) is caught by
:meth:`CompiledInference.current`, and the model builds a new plan. A conv2d forward algorithm
forced with :func:`convforge.functional.force_conv2d_algorithm` (or ``CONVFORGE_CONV_ALGO``) is
forced in the plan too. ``CONVFORGE_COMPILED_INFERENCE=0`` turns plans off (the layer-by-layer
path, for comparisons).

After a first predict, :attr:`CompiledInference.ready` takes predict's checks and the run in one
C++ call for the arrays it can take as they are (``Trainer._predict_ready``): run after run, the
Python in between runs with its code and data evicted from the caches by the plan's run. Its
check that the layers still hold what the plan was made from runs only after a layer changed
somewhere (layers count every attribute they set and every change of ``layer.params``, a
:class:`~convforge.layers.base.WeightDict`); a plan over anything that does not count (a plain
dict put in ``layer.params``) checks on every call. A change made past those counts
(``object.__setattr__``, ``vars(layer)``, ``dict.__setitem__`` on the params) can go unseen by
that path.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .. import functional as F
from ..layers import activations as activation_layers
from ..layers.activations import Activation, Softmax
from ..layers.base import Layer, WeightDict
from ..layers.conv import Conv2D
from ..layers.core import Dense, Dropout, Flatten, Identity, Reshape
from ..layers.noise import GaussianDropout, GaussianNoise, SpatialDropout1D, SpatialDropout2D
from ..layers.augmentation import (RandomBrightness, RandomContrast, RandomFlip, RandomRotation, RandomTranslation,
                                   RandomZoom)
from ..layers.reshaping import Cropping2D, Rescaling, UpSampling2D, ZeroPadding2D
from ..layers.depthwise import DepthwiseConv2D, SeparableConv2D
from ..layers.conv_transpose import Conv2DTranspose
from .. import _params
from ..layers.fusion import FoldedConvBatchNorm, InPlaceReLU, is_plain_relu
from ..layers.global_pooling import GlobalAveragePooling2D, GlobalMaxPooling2D
from ..layers.merging import Add, Average, Concatenate, Multiply, Subtract
from ..layers.normalization import BatchNormalization
from ..layers.pooling import AveragePooling2D, MaxPooling2D

__all__ = ["CompiledInference", "compile_inference", "enabled"]

_ELEMENTWISE = {Add: "add", Subtract: "subtract", Multiply: "multiply", Average: "average"}


def enabled() -> bool:
    """Plans are on unless ``CONVFORGE_COMPILED_INFERENCE=0`` (read at each model build)."""
    return os.environ.get("CONVFORGE_COMPILED_INFERENCE", "1").strip() not in ("0", "false", "off", "no")


# Built-in layers that are the identity at inference (training-only noise and augmentation): a
# model that starts with Keras's data-augmentation block then still runs as one plan (it ran
# layer by layer: a one-image LeNet-5 behind a RandomFlip 67 us against 9.5).
_IDENTITY_AT_INFERENCE = (Dropout, SpatialDropout1D, SpatialDropout2D, GaussianNoise, GaussianDropout, RandomFlip,
                          RandomRotation, RandomZoom, RandomTranslation, RandomContrast, RandomBrightness, Identity)


class _NotLowered(Exception):
    """The step has no plan op: it runs in Python (the steps after it may lower into a next plan)."""


class _Declined(Exception):
    """A later plan cannot take what the Python steps before it made (another dtype or shape, as a
    custom layer may return): the model runs layer by layer (CompiledInference.run returns None)."""


class CompiledInference:
    """A model's inference steps as a plan plus a Python tail (see the module's docstring)."""

    def __init__(self, plan, n_inputs, exported, tail, outputs, weights, settings, lowered):
        self.plan = plan
        self._n_inputs = n_inputs
        self._exported = exported  # tensor index (or tail key) of each plan output, in order
        # [(fn, input keys, many, output key)] run after the plan: Python steps, and later plans
        # (fn runs one, many is True and the output key a list of keys, one per plan output).
        self._tail = tail
        self._outputs = outputs  # the model's output tensor indices
        self._weights = weights  # [(holder dict, name, array)]: the arrays the plan reads
        self._settings = settings  # [(layer, attribute, value)]: what the lowering read
        self.lowered = lowered  # how many of the model's inference steps run in the plans
        self.plans = [plan] + [fn.__self__.lowering.plan for fn, _, _, out in tail if type(out) is list]
        self._dtype = np.dtype(plan.dtype)
        # Where each model output is among the plan's results, when all of them are there (no
        # tail, no model input returned as it is); else None and run() maps them by key.
        self._direct = None
        if not tail and all(i in exported for i in outputs):
            self._direct = [exported.index(i) for i in outputs]
        # Every model output its own array straight from the plan: what predict's one-batch path needs.
        self.whole = self._direct is not None and len(set(self._direct)) == len(self._direct)
        # predict's one-call path (make_ready), once a predict has shown which inputs it takes.
        self.ready = None
        # Batches up to this size run on one thread whatever the count (the plan's
        # serial_samples): predict runs them without the adaptive thread count's timing.
        self.serial_samples = plan.serial_samples()

    def make_ready(self, entry, user_output) -> None:
        """Set :attr:`ready` (:func:`convforge.functional.ready_predict`) where predict could
        return the plan's one output as it is (``user_output``, what predict returned, is that
        array: not a list, not an image to transpose) and ``entry`` makes an input of the plan's
        dtype its batch by a reshape (the one-channel images, or no image at all)."""
        if self._n_inputs != 1 or self._direct != [0] or not isinstance(user_output, np.ndarray) \
                or user_output.ndim == 4:
            return
        if entry.kind == "nhwc" and entry.internal[0] != 1:
            return
        self.ready = F.ready_predict(self.plan, self._weights, self._settings, sorted(entry.accepted),
                                     tracked=self._changes_counted())

    def _changes_counted(self) -> bool:
        """Whether every holder of the plan's weights and settings counts its changes (a
        :class:`~convforge.layers.base.WeightDict`, a layer whose attributes are set by
        ``Layer.__setattr__``), so that ``ready`` may check them only after a change."""
        return all(type(holder) is WeightDict for holder, _, _ in self._weights) and all(
            type(owner).__setattr__ is Layer.__setattr__ and type(owner).__delattr__ is Layer.__delattr__
            for owner, _, _ in self._settings
        )

    def current(self) -> bool:
        """Do the layers still hold the very arrays and settings the plan was made from?"""
        return F.inference_plan_sources_unchanged(self._weights, self._settings)

    def accepts(self, xbs) -> bool:
        """Can the plan take these inputs as they are (arrays of its dtype, C-contiguous, >= 1 sample)?"""
        if len(xbs) != self._n_inputs:
            return False
        for x in xbs:
            flags = x.flags if type(x) is np.ndarray else None
            if flags is None or x.dtype != self._dtype or not flags.c_contiguous or not flags.aligned or x.ndim < 2 \
                    or not x.shape[0]:
                return False
        return True

    def run(self, xbs) -> list | None:
        """The model's outputs for a batch, in the internal (NCHW) layout; None where a later plan
        declines what a Python step made (the caller then runs the layers)."""
        results = F.run_inference_plan(self.plan, xbs)
        if self._direct is not None:  # no tail: each model output is one of the plan's
            return [results[k] for k in self._direct]
        values = dict(enumerate(xbs))  # a model output may be an input itself
        values.update(zip(self._exported, results))
        for fn, keys, many, out in self._tail:
            x = [values[k] for k in keys] if many else values[keys[0]]
            if type(out) is list:  # a later plan: its outputs
                try:
                    values.update(zip(out, fn(x)))
                except _Declined:
                    return None
            else:
                values[out] = fn(x)
        return [values[i] for i in self._outputs]


def compile_inference(model, dtype, logits: bool = False) -> CompiledInference | None:
    """The plan of a Functional ``model``'s inference steps, or None when not even its first
    step lowers (or plans are off). ``logits``: the outputs whose softmax the loss takes from
    the logits (``step.fused``: evaluate's loss) are the logits, as ``model._run(..., logits=True)``
    gives them.

    A step with no plan op runs in Python between plans: the steps after it lower into a next
    plan, whose inputs are the tensors it reads that were made before it (a tanh LeNet-5 is
    five plans with NumPy's tanh between them). The first plan takes the model's inputs; the
    later ones and the Python steps are the tail."""
    if not enabled() or np.dtype(dtype) not in (np.float32, np.float64):
        return None
    n_inputs = len(model._entries)
    # Per-sample internal (NCHW) shapes of the tensors, the inputs of a later plan.
    shapes = {index: tuple(entry.internal) for index, entry in enumerate(model._entries)}
    steps = model._inference_steps
    for step in steps:
        shapes[step.out] = tuple(step.node.outputs[0]._internal)
    pieces = []  # in order: _Segment, or a Python step (fn, input keys, many, output key)
    segment = first = _Segment(np.dtype(dtype).name, logits, range(n_inputs), shapes)
    for k, step in enumerate(steps):
        if segment is None:  # after a Python step: a next plan, if this step lowers
            segment = _Segment(np.dtype(dtype).name, logits, [], shapes)
        try:
            value, epilogue = segment.lower(step)
        except _NotLowered:
            if k == 0:
                return None
            if segment.lowered:
                pieces.append(segment)
            pieces.append((_forward_of(step.call), step.inputs, step.many, step.out))
            segment = None
            continue
        if epilogue is None:
            segment.values[step.out] = value
        else:  # the matrix product lowered, its activation in Python
            key = ("logits", step.out)
            segment.values[key] = value
            pieces += [segment, (epilogue, [key], False, step.out)]
            segment = None
    if segment is not None:
        pieces.append(segment)
    # What leaves each plan: the model outputs it computes and what runs after it reads.
    wanted = set(model._outputs_index)
    for piece in reversed(pieces):
        if isinstance(piece, _Segment):
            piece.exported = [key for key in piece.values if key in wanted and key not in piece.inputs]
            wanted |= set(piece.inputs)
        else:
            wanted |= set(piece[1])
    if not first.exported:
        return None  # the first plan computes nothing the model returns
    tail = []
    for piece in pieces[1:]:
        if not isinstance(piece, _Segment):
            tail.append(piece)
        elif piece.exported:
            piece.finish()
            tail.append((piece.run, piece.inputs, True, piece.exported))
    first.finish()
    weights = [w for piece in pieces if isinstance(piece, _Segment) for w in piece.lowering.weights]
    settings = [s for piece in pieces if isinstance(piece, _Segment) for s in piece.lowering.settings]
    lowered = sum(piece.lowered for piece in pieces if isinstance(piece, _Segment))
    return CompiledInference(first.lowering.plan, n_inputs, first.exported, tail, list(model._outputs_index),
                             weights, settings, lowered)


class _Segment:
    """Consecutive steps lowered into one plan. ``inputs``: the tensors it takes (the model's
    inputs for the first; for a later one, those its steps read that were made before it, added
    as a step needs them); ``exported``: what it returns (set by compile_inference)."""

    def __init__(self, dtype: str, logits: bool, inputs, shapes):
        self.lowering = _Lowering(dtype, logits)
        self.shapes = shapes
        self.inputs = list(inputs)
        self.values = {key: self.lowering.plan.input(list(shapes[key])) for key in self.inputs}
        self.lowered = 0
        self.exported = []

    def lower(self, step):
        """``lowering.step`` of ``step``, the tensors it reads from before this plan made its inputs."""
        for key in step.inputs:
            if key not in self.values:
                self.inputs.append(key)
                self.values[key] = self.lowering.plan.input(list(self.shapes[key]))
        result = self.lowering.step(step, self.values)
        self.lowered += 1
        return result

    def finish(self) -> None:
        plan = self.lowering.plan
        input_values = {self.values[key] for key in self.inputs}
        outputs = []
        for key in self.exported:
            value = self.values[key]
            if value in input_values:  # an input passed through unchanged (Dropout): copy it
                value = plan.reshape(value, plan.dims(value))
            if value in outputs:  # one value under two names: return it twice
                value = plan.reshape(value, plan.dims(value))
            outputs.append(value)
        plan.finish(outputs)

    def run(self, xs) -> list:
        """A later plan in the tail, on its inputs as the Python steps before it left them (views
        made contiguous). Arrays of another dtype or per-sample shape than the plan's (a custom
        layer's float64 in a float32 model, which the layers after it may take) raise _Declined."""
        plan = self.lowering.plan
        for key, x in zip(self.inputs, xs):
            if type(x) is not np.ndarray or x.dtype != plan.dtype or tuple(x.shape[1:]) != self.shapes[key]:
                raise _Declined
        return F.run_inference_plan(plan, [np.ascontiguousarray(x) for x in xs])


def _is_softmax(layer) -> bool:
    """A ``Softmax()`` layer or an ``Activation('softmax')`` (exact classes)."""
    return type(layer) is Softmax or (type(layer) is Activation and type(layer.activation) is Softmax)


def _forward_of(call):
    return lambda x: call.forward(x, False)


class _Lowering:
    """Adds one step at a time to a plan; raises :class:`_NotLowered` where it has no op."""

    def __init__(self, dtype: str, logits: bool = False):
        self.plan = F.inference_plan(dtype)
        self.dtype = dtype
        self.logits = logits
        self.weights = []
        self.settings = []

    def weight(self, layer, name):
        """``layer.params[name]`` (None if absent), recorded so a replaced array is noticed, and
        (once per layer) the dict itself, so that a replaced ``layer.params`` is too."""
        if not any(owner is layer and attribute == "params" for owner, attribute, _ in self.settings):
            self.setting(layer, "params")
        array = layer.params.get(name)
        if array is not None and (array.dtype != self.dtype or not array.flags.c_contiguous):
            raise _NotLowered  # the layers' own path converts or complains
        self.weights.append((layer.params, name, array))
        return array

    def setting(self, layer, name):
        """``layer.<name>``, recorded so that replacing it (``dense.activation = None``) is noticed."""
        value = getattr(layer, name)
        self.settings.append((layer, name, value))
        return value

    def record_relu(self, layer) -> None:
        """A ReLU's settings (``layer`` a ReLU, an ``Activation('relu')``, an in-place ReLU or another
        layer), recorded where the lowering asks whether it is a plain ``max(x, 0)``: setting
        ``max_value`` on it after a predict makes a new plan (the plan kept clipping at nothing)."""
        inner = layer
        while type(inner) in (Activation, InPlaceReLU):
            inner = inner.activation if type(inner) is Activation else inner.relu
        if isinstance(inner, activation_layers.ReLU):
            for name in ("max_value", "negative_slope", "threshold"):
                self.setting(inner, name)

    def activated(self, layer, y):
        """``(value, tail activation)`` for a layer whose activation its op does not apply: a plain
        ReLU as the plan's relu op (the layers' relu kernel), none as it is, any other in Python."""
        activation = layer.activation
        self.record_relu(activation)
        if activation is None:
            return y, None
        if is_plain_relu(activation):
            return self.plan.relu(y), None
        bound = self.relu_bound(activation)
        if bound is not None:
            return self.plan.clip_max(self.plan.relu(y), bound), None
        if self.is_exact_gelu(activation):
            return self.plan.gelu(y), None
        if self.is_leaky_relu(activation):
            return self.plan.leaky_relu(y, activation.negative_slope), None
        return y, _forward_of(activation)

    def relu_bound(self, layer):
        """The max_value of a ReLU that only clips (relu6: no threshold or negative_slope), as a
        layer or an ``Activation`` (not a subclass, which may compute something else), else None.
        Its settings are recorded by record_relu."""
        inner = layer.activation if type(layer) is Activation else layer
        if type(inner) is not activation_layers.ReLU or inner.max_value is None:
            return None
        if inner.threshold != 0.0 or inner.negative_slope != 0.0 or not np.isfinite(inner.max_value):
            return None
        return inner.max_value + 0.0  # -0.0 as +0.0, as the layer takes it

    def is_exact_gelu(self, layer) -> bool:
        """A GELU(approximate=False) (not a subclass), the setting recorded: the tanh form is
        NumPy's tanh, which the plan does not compute."""
        if type(layer) is not activation_layers.GELU:
            return False
        return not self.setting(layer, "approximate")

    def is_leaky_relu(self, layer) -> bool:
        """A LeakyReLU (not a subclass, which may compute something else), its slope recorded."""
        if type(layer) is not activation_layers.LeakyReLU:
            return False
        self.setting(layer, "negative_slope")
        return True

    def leaves_softmax(self, step) -> bool:
        """In a logits plan, whether this softmax step's output is its input, the softmax left to
        the loss (``step.fused``, recorded so that a recompiled loss makes the plan again). A
        fused head whose softmax the plan does not lower lands in the Python tail, and a plan
        with a tail is not used for evaluate."""
        return self.logits and self.setting(step, "fused")

    def batchnorm(self, bn):
        return (self.weight(bn, "moving_mean"), self.weight(bn, "moving_variance"), self.weight(bn, "gamma"),
                self.weight(bn, "beta"), float(self.setting(bn, "epsilon")))

    def conv(self, conv, x, **options):
        """A Conv2D's op (its plan for x's image size: strides, padding and dilation)."""
        for name in ("strides", "padding", "dilation_rate", "activation"):
            self.setting(conv, name)
        cp = conv._plan_for(tuple(self.plan.dims(x)[1:]))
        return self.plan.conv2d(x, self.weight(conv, "kernel"), self.weight(conv, "bias"), cp.stride, cp.pads,
                                cp.dilation, **options)

    def step(self, step, values):
        """``(plan value of the step's output, None)``, or ``(value of its pre-activation, the
        activation to apply in Python)``."""
        call, plan = step.call, self.plan
        if any(i not in values for i in step.inputs):
            raise _NotLowered
        xs = [values[i] for i in step.inputs]
        x = xs[0]
        kind = type(call)
        if kind is FoldedConvBatchNorm:
            if call.conv.activation is not None:  # folding requires a linear conv (fusion.foldable)
                raise _NotLowered
            if call.relu is not None:
                self.record_relu(call.relu)
            return self.conv(call.conv, x, bn=self.batchnorm(call.bn), relu=call.relu is not None), None
        if kind is Conv2D:
            if len(plan.dims(x)) != 3 or call.groups != 1:  # a grouped conv: the layer's loop over its groups
                raise _NotLowered
            activation = call.activation
            # As Conv2D.forward: a plain ReLU (any subclass too) runs inside the conv kernel.
            relu = isinstance(activation, activation_layers.ReLU) and activation.plain
            y = self.conv(call, x, relu=relu)
            if relu:
                self.record_relu(activation)
                return y, None
            return self.activated(call, y)  # records the ReLU settings that made it not plain
        if kind is Dense:
            if len(plan.dims(x)) != 1:
                raise _NotLowered
            activation = self.setting(call, "activation")
            # A subclass computes something else, as a ReLU with max_value, threshold or negative_slope.
            relu = type(activation) is activation_layers.ReLU and activation.plain
            y = plan.dense(x, self.weight(call, "kernel"), self.weight(call, "bias"), relu=relu)
            if type(activation) is Softmax:
                return (y if self.leaves_softmax(step) else plan.softmax(y)), None
            if relu:
                self.record_relu(activation)
                return y, None
            return self.activated(call, y)  # records the ReLU settings that made it not plain
        self.record_relu(call)
        if kind is InPlaceReLU or is_plain_relu(call):
            if kind is Activation:
                self.setting(call, "activation")
            return plan.relu(x), None
        bound = self.relu_bound(call)
        if bound is not None:
            if kind is Activation:
                self.setting(call, "activation")
            return plan.clip_max(plan.relu(x), bound), None
        if self.is_exact_gelu(call) or kind is Activation and self.is_exact_gelu(call.activation):
            if kind is Activation:
                self.setting(call, "activation")
            return plan.gelu(x), None
        if self.is_leaky_relu(call) or kind is Activation and self.is_leaky_relu(call.activation):
            if kind is Activation:
                self.setting(call, "activation")
            return plan.leaky_relu(x, (call.activation if kind is Activation else call).negative_slope), None
        if _is_softmax(call) and len(plan.dims(x)) == 1:
            if kind is Activation:
                self.setting(call, "activation")
            return (x if self.leaves_softmax(step) else plan.softmax(x)), None
        if kind is MaxPooling2D:
            if call._prepad is not None or tuple(plan.dims(x)) != tuple(call._internal_input_shape):
                raise _NotLowered
            kernel, stride, pad, out_hw = self.setting(call, "_pool_plan")
            return plan.maxpool2d(x, kernel, stride, pad, out_hw), None
        if kind is Flatten:
            return plan.reshape(x, [int(np.prod(plan.dims(x)))]), None
        if kind in _IDENTITY_AT_INFERENCE:
            return x, None
        if kind in (DepthwiseConv2D, SeparableConv2D):
            if len(plan.dims(x)) != 3:
                raise _NotLowered
            for name in ("strides", "padding", "dilation_rate", "activation"):
                self.setting(call, name)
            w = self.weight(call, call._kernel_name)
            stride, pads, dilation, _ = _params.conv_params(tuple(plan.dims(x)[1:]), w.shape[2:], call.strides,
                                                           call.padding, call.dilation_rate)
            separable = kind is SeparableConv2D
            # As the layers: SeparableConv2D's depthwise step has no bias; its pointwise step is
            # F.conv2d(t, pointwise_kernel, bias), a 1x1 conv2d.
            y = plan.depthwise(x, w, None if separable else self.weight(call, "bias"), stride, pads, dilation)
            if separable:
                y = plan.conv2d(y, self.weight(call, "pointwise_kernel"), self.weight(call, "bias"), (1, 1),
                                (0, 0, 0, 0), (1, 1))
            return self.activated(call, y)
        if kind is Conv2DTranspose:
            dims = plan.dims(x)
            if len(dims) != 3 or F._forced_conv_algo.get("bwd_data"):
                raise _NotLowered  # a forced backward-data algorithm: the layer applies it
            for name in ("strides", "padding", "output_padding", "kernel_size", "activation"):
                self.setting(call, name)
            kernel = self.weight(call, "kernel")
            out_hw = tuple(call._out_hw(dims[1], dims[2]))
            stride, pads, _, back = _params.conv_params(out_hw, kernel.shape[2:], call.strides, call._pads(out_hw), 1)
            if tuple(back) != tuple(dims[1:]):
                raise _NotLowered
            y = plan.conv_transpose(x, kernel, self.weight(call, "bias"), stride, pads, out_hw)
            return self.activated(call, y)
        if kind is Reshape:
            dims = plan.dims(x)
            self.setting(call, "target_shape")
            try:
                out = tuple(call._compute_internal_output_shape(tuple(dims)))
            except ValueError:
                raise _NotLowered from None  # the layer's own path names the shapes
            channels_last = call._channels_last()
            if channels_last and (len(dims) == 3 or len(out) == 3):  # Keras's order: a transpose
                return plan.reorder(x, list(out)), None
            return plan.reshape(x, list(out)), None
        if kind is UpSampling2D:
            if len(plan.dims(x)) != 3 or self.setting(call, "interpolation") != "nearest":
                raise _NotLowered  # bilinear: the layer's NumPy products
            size = self.setting(call, "size")
            return plan.upsample(x, size[0], size[1]), None
        if kind is AveragePooling2D:
            if tuple(plan.dims(x)) != tuple(call._internal_input_shape):
                raise _NotLowered  # the layer's window plan is its built shape's
            top, _, left, _ = self.setting(call, "_pads")
            for name in ("pool_size", "strides", "_out_hw", "_inv_count"):
                self.setting(call, name)
            inv = np.ascontiguousarray(call._inv(self.dtype))  # the layer's factors, rounded as it rounds them
            return plan.avgpool(x, call.pool_size, call.strides, (top, left), call._out_hw, inv), None
        if kind in (ZeroPadding2D, Cropping2D):
            if len(plan.dims(x)) != 3:
                raise _NotLowered
            sign = 1 if kind is ZeroPadding2D else -1
            top, bottom, left, right = (sign * m for m in self.setting(call, "_margins"))
            return plan.window(x, top, bottom, left, right), None
        if kind is Rescaling:
            scale, offset = self.setting(call, "scale"), self.setting(call, "offset")
            if not (math.isfinite(scale) and math.isfinite(offset)):
                raise _NotLowered  # the layer's NumPy gives its infs and NaNs
            return plan.rescale(x, scale, offset), None
        if kind is BatchNormalization:
            # The plan's batchnorm takes the channels first: images (C, H, W) and features (F,).
            # Sequences (steps, channels) have them last (BatchNormalization._forward reshapes).
            if len(plan.dims(x)) == 2:
                raise _NotLowered
            return plan.batchnorm(x, self.batchnorm(call)), None
        if kind in (GlobalAveragePooling2D, GlobalMaxPooling2D):
            if len(plan.dims(x)) != 3:
                raise _NotLowered
            out = list(call._internal_output_shape)
            return plan.global_pool(x, kind is GlobalMaxPooling2D, out), None
        if kind in _ELEMENTWISE:
            if call._broadcasting():  # inputs of other shapes (Keras's broadcasting): NumPy's
                raise _NotLowered
            return plan.elementwise(_ELEMENTWISE[kind], xs), None
        if kind is Concatenate:
            if call._internal_axis != 1:
                raise _NotLowered
            return plan.concat(xs), None
        raise _NotLowered

