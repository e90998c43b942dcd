"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot -- Keras's,
for functional models.

A merge layer is called on a list of tensors, ``layers.Add()([a, b])``; its
``forward`` takes a list of arrays and its ``backward`` returns one gradient
per input. Elementwise merges broadcast as Keras 3's do: NumPy's rules on the
shapes the user sees (channels-last, the batch first), so a squeeze-and-excitation
block's ``Multiply()([x, se])`` with ``se`` of shape ``(batch, 1, 1, channels)``, or
one of shape ``(batch, channels)``, scales each channel; the gradient of a broadcast
input is summed over the axes it was repeated along. Inputs of one shape take the
compiled kernels (and the compiled inference plan); broadcasting ones run in NumPy.

``Concatenate(axis=-1)`` counts axes as Keras does, on the channels-last
tensor with the batch first: ``-1`` is the channel axis of images, which is
axis 1 of the NCHW arrays inside the model; for flat ``(batch, features)``
tensors the axes are the same inside and out.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import functional as F
from .base import Layer, display_shape, internal_axis, internal_shape
from .normalization import unit_scale, unit_scale_backward

__all__ = ["Add", "Average", "Concatenate", "Dot", "Maximum", "Minimum", "Multiply", "Subtract", "add", "average",
           "concatenate", "dot", "maximum", "minimum", "multiply", "subtract"]


class _Merge(Layer):
    """Base of the merge layers: a list of same-dtype inputs, one output."""

    _takes_list = True
    _cache_attrs = ("_xs",)

    def __init__(self, *, name=None, trainable=True, input_shape=None):
        # input_shape: taken and left, as Keras's merge layers do (their inputs give the shapes).
        super().__init__(name=name, trainable=trainable)
        self._xs = None

    def _build(self, input_shape, dtype) -> tuple:
        if not isinstance(input_shape, list) or not all(isinstance(s, tuple) for s in input_shape):
            raise ValueError(
                f"{type(self).__name__} merges a list of tensors, so it cannot be a layer of a Sequential model: "
                f"build a functional model, e.g. {type(self).__name__}()([a, b]) (got input shape {input_shape!r})"
            )
        if not input_shape:
            raise ValueError(f"{type(self).__name__} needs a list of at least 1 input tensor")
        self.dtype = np.dtype(dtype)
        shapes = [tuple(int(d) for d in s) for s in input_shape]
        self._internal_output_shape = self._compute_internal_output_shape(shapes)
        # Made here, for the shapes the layer is built for (not at a compute_output_shape query).
        self._views = self._broadcast_plan(shapes)[1] if self._elementwise else None
        self._internal_input_shape = shapes
        self.built = True
        return self._internal_output_shape

    # Concatenate joins its inputs instead: no broadcasting.
    _elementwise = True

    def _compute_internal_output_shape(self, input_shape):
        return self._broadcast_plan(input_shape)[0]

    def _broadcast_plan(self, input_shape):
        """(the output's per-sample shape, the views) for inputs of ``input_shape``: views None
        where every input has one shape; ValueError naming them where they do not broadcast."""
        first = input_shape[0]
        if all(s == first for s in input_shape):
            return first, None
        # Keras 3 broadcasts (NumPy's rules) on the shapes the user sees: channels-last images.
        fmt = getattr(self, "_data_format", "channels_last")
        shown = [display_shape(s, fmt) for s in input_shape]
        rank = max(len(s) for s in shown)
        padded = [(1,) * (rank - len(s)) + tuple(s) for s in shown]
        out = []
        for dims in zip(*padded):
            sizes = {d for d in dims if d != 1}
            if len(sizes) > 1:
                listed = ", ".join(str((None, *s)) for s in shown)
                raise ValueError(
                    f"Inputs have incompatible shapes. Received shapes {listed}: {type(self).__name__} needs shapes "
                    "that broadcast (each axis of one size, or 1)"
                )
            out.append(sizes.pop() if sizes else 1)
        out_internal = internal_shape(tuple(out), fmt)
        # Per input: None where it has the output's shape, else how to bring it to the output's
        # layout (_broadcast_view) and back (_reduce_to_input).
        views = [None if tuple(s) == out_internal else (tuple(s), tuple(d), p)
                 for s, d, p in zip(input_shape, shown, padded)]
        return out_internal, views

    # ---- broadcasting (inputs of different shapes): NumPy, in the output's layout

    def _broadcast_view(self, x, k):
        """Input k as an array of the output's rank and layout (size 1 on its broadcast axes)."""
        view = self._views[k]
        if view is None:
            return x
        own, shown, padded = view
        return _reshaped_as_shown(x, own, padded, self._data_format)

    def _reduce_to_input(self, g, k):
        """The output-shaped gradient ``g`` summed over input k's broadcast axes, in its shape."""
        view = self._views[k]
        if view is None:
            return g
        own, shown, padded = view
        fmt = self._data_format
        internal_padded = internal_shape(padded, fmt)
        axes = tuple(1 + i for i, (d, o) in enumerate(zip(internal_padded, g.shape[1:])) if d == 1 and o != 1)
        g = g.sum(axis=axes, keepdims=True, dtype=np.float64).astype(g.dtype) if axes else g
        return np.ascontiguousarray(_reshaped_as_shown(g, internal_padded, shown, fmt))

    def _broadcasting(self) -> bool:
        return bool(getattr(self, "_views", None))

    def _out(self, shape, dtype, training):
        """Where the output goes: a buffer reused across training steps, or a new array."""
        return self._buffers("y", shape, dtype) if training else np.empty(shape, dtype)


def _reshaped_as_shown(x, own, shown, data_format):
    """``x`` (batch, *own), an array in the model's layout (images NCHW), reshaped to the user's
    per-sample shape ``shown`` as the user sees the values (channels-last), and returned in the
    model's layout of that shape."""
    channels_last = data_format != "channels_first"
    if len(own) == 3 and channels_last:
        x = x.transpose(0, 2, 3, 1)  # (N, C, H, W) -> as the user sees it
    x = x.reshape((x.shape[0], *shown))
    if len(shown) == 3 and channels_last:
        x = x.transpose(0, 3, 1, 2)  # the model's layout: NCHW
    return x


def _display(shape):
    return display_shape(shape)


class Add(_Merge):
    """Elementwise sum of the inputs, ``keras.layers.Add``: ``Add()([a, b])``."""

    _cache_attrs = ("_xs", "_gate")

    def __init__(self, *, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self._gate = None  # the rectified sum, when the last training forward fused the ReLU after it

    def forward(self, xs, training=False):
        return self._forward(xs, training, relu=False)

    def _forward_relu(self, xs, training=False):
        """``max(forward(xs), 0)`` in the same pass: the plain ReLU after a residual Add. Models call
        it in training where that ReLU is the only reader of this output (layers/fusion.py); the
        backward then applies the ReLU's gradient (the mask ``y > 0``, which is ``sum > 0``) and the
        ReLU passes x and dy through."""
        return self._forward(xs, training, relu=True)

    def _forward(self, xs, training, relu):
        if self._broadcasting():
            views = [self._broadcast_view(x, k) for k, x in enumerate(xs)]
            y = views[0]
            for v in views[1:]:  # NumPy's order: ((x0 + x1) + x2) + ...
                y = np.add(y, v)
            y = F.relu(y, out=y) if relu else y
            if training:
                self._xs, self._gate = len(xs), (y if relu else None)
            return y
        if len(xs) == 1:
            y = F.relu(xs[0]) if relu else xs[0]
        else:
            y = self._out(xs[0].shape, xs[0].dtype, training)
            for k in range(1, len(xs)):  # NumPy's order: ((x0 + x1) + x2) + ...
                F.add(xs[0] if k == 1 else y, xs[k], out=y, relu=relu and k == len(xs) - 1)
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._xs, self._gate = len(xs), (y if relu else None)
        return y

    def backward(self, dy):
        """With the ReLU after it fused (_forward_relu), ``dy`` is that ReLU's output gradient: one
        array, or the list of its parts where several layers read the ReLU's output (the model
        leaves the sum to this pass: the parts summed in order, the last addition gated by the
        rectified sum, instead of a sum and then a mask)."""
        if self._xs is None:
            raise self._missing_cache()
        if self._gate is not None:
            out = self._buffers("dx", self._gate.shape, self._gate.dtype)
            if isinstance(dy, list):
                total = dy[0]
                for part in dy[1:-1]:
                    total = F.add(total, part, out=out)
                dy = F.add(total, dy[-1], out=out, gate=self._gate)
            else:
                dy = F.relu_backward(dy, self._gate, out=out)
        if self._broadcasting():
            return [self._reduce_to_input(dy, k) for k in range(self._xs)]
        return [dy] * self._xs  # one array for every input: backward passes must not write into dy


class Subtract(_Merge):
    """``a - b`` for exactly two inputs, ``keras.layers.Subtract``."""

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"A Subtract layer should be called on exactly 2 inputs; got {len(input_shape)}")
        return super()._compute_internal_output_shape(input_shape)

    def forward(self, xs, training=False):
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._xs = 2
        if self._broadcasting():
            return np.subtract(self._broadcast_view(xs[0], 0), self._broadcast_view(xs[1], 1))
        return np.subtract(xs[0], xs[1], out=self._out(xs[0].shape, xs[0].dtype, training))

    def backward(self, dy):
        if self._xs is None:
            raise self._missing_cache()
        if self._broadcasting():
            return [self._reduce_to_input(dy, 0), self._reduce_to_input(np.negative(dy), 1)]
        return [dy, np.negative(dy, out=self._buffers("dx", dy.shape, dy.dtype))]


class Multiply(_Merge):
    """Elementwise product of the inputs, ``keras.layers.Multiply`` (e.g. gating, attention maps)."""

    def forward(self, xs, training=False):
        if self._broadcasting():
            xs = [self._broadcast_view(x, k) for k, x in enumerate(xs)]
            y = xs[0]
            for x in xs[1:]:
                y = np.multiply(y, x)
            if training:
                self._xs = list(xs)
            return y
        y = np.multiply(xs[0], xs[1], out=self._out(xs[0].shape, xs[0].dtype, training)) if len(xs) > 1 else xs[0]
        for x in xs[2:]:
            y *= x
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._xs = list(xs)
        return y

    def backward(self, dy):
        xs = self._xs
        if xs is None:
            raise self._missing_cache()
        if self._broadcasting():
            grads = []
            for i in range(len(xs)):
                g = dy
                for j, x in enumerate(xs):
                    if j != i:
                        g = g * x  # in order, as below
                grads.append(self._reduce_to_input(g, i))
            return grads
        grads = []
        for i in range(len(xs)):
            g = self._buffers(f"dx{i}", dy.shape, dy.dtype)
            np.copyto(g, dy)
            for j, x in enumerate(xs):
                if j != i:
                    g *= x  # d(prod)/dx_i: the product of the other inputs
            grads.append(g)
        return grads


class Average(_Merge):
    """Elementwise mean of the inputs, ``keras.layers.Average``."""

    def forward(self, xs, training=False):
        if self._broadcasting():
            y = self._broadcast_view(xs[0], 0)
            for k in range(1, len(xs)):
                y = np.add(y, self._broadcast_view(xs[k], k))
            y = y * y.dtype.type(1.0 / len(xs))
            if training:
                self._xs = len(xs)
            return y
        y = self._out(xs[0].shape, xs[0].dtype, training)
        np.copyto(y, xs[0])
        for x in xs[1:]:
            y += x
        y *= 1.0 / len(xs)
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._xs = len(xs)
        return y

    def backward(self, dy):
        if self._xs is None:
            raise self._missing_cache()
        g = np.multiply(dy, 1.0 / self._xs, out=self._buffers("dx", dy.shape, dy.dtype))
        if self._broadcasting():
            return [self._reduce_to_input(g, k) for k in range(self._xs)]
        return [g] * self._xs


class _Extremum(_Merge):
    """Elementwise maximum or minimum of the inputs (``_op``: np.maximum or np.minimum)."""

    _cache_attrs = ("_xs", "_y")
    _op = None

    def __init__(self, *, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self._y = None

    def forward(self, xs, training=False):
        if self._broadcasting():
            xs = [self._broadcast_view(x, k) for k, x in enumerate(xs)]
            y = xs[0]
            for x in xs[1:]:
                y = type(self)._op(y, x)
        else:
            y = self._out(xs[0].shape, xs[0].dtype, training)
            np.copyto(y, xs[0])
            for x in xs[1:]:
                type(self)._op(y, x, out=y)
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._xs, self._y = list(xs), y
        return y

    def backward(self, dy):
        xs, y = self._xs, self._y
        if xs is None:
            raise self._missing_cache()
        # Keras reduces the inputs pairwise, op(op(x0, x1), x2) ...; the gradient goes back
        # through those steps by torch.maximum's (torch.minimum's) rule, which Keras's torch
        # backend uses: all of it to the side that wins, half to each on a tie, and all to both
        # where they do not compare (a NaN). Three equal inputs get 1/4, 1/4 and 1/2, as in Keras.
        zero = dy.dtype.type(0)
        beats = np.greater if type(self)._op is np.maximum else np.less
        running = [xs[0]]  # running[k]: the result of the first k + 1 inputs
        for x in xs[1:-1]:
            running.append(type(self)._op(running[-1], x))
        grads, g = [None] * len(xs), dy
        for k in range(len(xs) - 1, 0, -1):
            prev, x = running[k - 1], xs[k]
            shared = np.where(prev == x, g * 0.5, g)
            grads[k] = np.where(beats(prev, x), zero, shared)
            g = np.where(beats(x, prev), zero, shared)
        grads[0] = g
        if self._broadcasting():
            return [self._reduce_to_input(g, k) for k, g in enumerate(grads)]
        return grads


class Maximum(_Extremum):
    """Elementwise maximum of the inputs, ``keras.layers.Maximum``: ``Maximum()([a, b])``."""

    _op = np.maximum


class Minimum(_Extremum):
    """Elementwise minimum of the inputs, ``keras.layers.Minimum``: ``Minimum()([a, b])``."""

    _op = np.minimum


class Concatenate(_Merge):
    """Joins the inputs along ``axis``, ``keras.layers.Concatenate(axis=-1)``.

    ``axis`` counts as in Keras, on the channels-last tensor with the batch
    first (``-1``: channels of images, features of flat tensors); the batch axis
    cannot be joined. All other axes must agree.
    """

    _cache_attrs = ("_sizes",)
    _elementwise = False

    def __init__(self, axis=-1, *, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"Concatenate axis must be an int; got {axis!r}")
        self.axis = int(axis)
        self._sizes = None
        self._internal_axis = None

    def _compute_internal_output_shape(self, input_shape):
        ranks = {len(s) for s in input_shape}
        shown = "[" + ", ".join(str((None, *_display(s))) for s in input_shape) + "]"
        if len(ranks) != 1:
            raise ValueError(
                f"A `Concatenate` layer requires inputs with matching shapes except for the concatenation axis. "
                f"Received: input_shape={shown}"
            )
        rank = ranks.pop() + 1  # with the batch axis
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise ValueError(f"Concatenate axis={self.axis} is out of range for inputs of rank {rank} ({shown}) "
                             "or is the batch axis")
        internal = internal_axis(axis, rank)  # functional models are channels-last
        dims = [list(s) for s in input_shape]
        for d in dims:
            d[internal - 1] = None
        if any(d != dims[0] for d in dims):
            raise ValueError(
                f"A `Concatenate` layer requires inputs with matching shapes except for the concatenation axis. "
                f"Received: input_shape={shown}"
            )
        self._internal_axis = internal
        out = list(input_shape[0])
        out[internal - 1] = sum(s[internal - 1] for s in input_shape)
        return tuple(out)

    def forward(self, xs, training=False):
        axis = self._internal_axis
        shape = list(xs[0].shape)
        shape[axis] = sum(x.shape[axis] for x in xs)
        y = np.concatenate(xs, axis=axis, out=self._out(tuple(shape), xs[0].dtype, training))
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._sizes = [x.shape[axis] for x in xs]
        return y

    def backward(self, dy):
        if self._sizes is None:
            raise self._missing_cache()
        # Contiguous pieces: the layers before read them with the compiled kernels.
        pieces = np.split(dy, np.cumsum(self._sizes)[:-1], axis=self._internal_axis)
        return [np.ascontiguousarray(p) for p in pieces]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """Keras's ``Dot(axes, normalize=False)``: the dot product of two tensors along one axis of
    each, sample by sample (Keras's ``batch_dot``): two vectors ``(batch, d)`` give ``(batch, 1)``
    (a recommender's user-item score), a sequence ``(batch, n, d)`` against ``(batch, m, d)``
    with ``axes=2`` gives ``(batch, n, m)`` (attention scores). ``axes`` is an int (the same axis
    of both) or a pair, counted as Keras counts them (batch axis 0, negative from the end of each
    input). ``normalize=True`` takes the dot product of the L2-normalised vectors: the cosine
    similarity. Inputs of rank 2 or 3 (vectors and sequences), as Keras's examples use it;
    images are refused (Keras flattens their middle axes)."""

    _cache_attrs = ("_xs", "_units")
    _elementwise = False
    _EPSILON = 1e-7  # Keras's backend.epsilon(): normalize divides by max(|v|, it)

    def __init__(self, axes, normalize=False, *, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2 or any(isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral)
                                     for a in axes):
                raise ValueError(f"Dot axes must be an int or a pair of ints (one axis of each input); got {axes!r}")
            self.axes = [int(a) for a in axes]
        elif isinstance(axes, (bool, np.bool_)) or not isinstance(axes, numbers.Integral):
            raise TypeError(f"Dot axes must be an int or a pair of ints; got {axes!r}")
        else:
            self.axes = int(axes)
        if not isinstance(normalize, (bool, np.bool_)):
            raise TypeError(f"Dot normalize must be True or False; got {normalize!r}")
        self.normalize = bool(normalize)
        self._units = None
        self._equation = None

    def _resolved_axes(self, ranks) -> list[int]:
        """Keras's axes of the two inputs (``ranks`` with the batch axis), each in 1 .. rank - 1."""
        pair = [self.axes, self.axes] if isinstance(self.axes, int) else list(self.axes)
        return [a % r if a < 0 else a for a, r in zip(pair, ranks)]

    def _compute_internal_output_shape(self, input_shape):
        shown = "[" + ", ".join(str((None, *_display(s))) for s in input_shape) + "]"
        if len(input_shape) != 2:
            raise ValueError(f"A `Dot` layer should be called on a list of 2 inputs; got {len(input_shape)}: {shown}")
        if any(len(s) not in (1, 2) for s in input_shape):
            raise ValueError(f"Dot takes vectors (batch, d) and sequences (batch, steps, d); got {shown} (Keras "
                             "flattens an image's middle axes: Reshape it to a sequence first)")
        ranks = [len(s) + 1 for s in input_shape]
        a0, a1 = self._resolved_axes(ranks)
        if not (1 <= a0 < ranks[0] and 1 <= a1 < ranks[1]):
            raise ValueError(f"Dot axes={self.axes} is out of range for inputs {shown}, or is the batch axis")
        if input_shape[0][a0 - 1] != input_shape[1][a1 - 1]:
            raise ValueError(f"Incompatible input shapes: axis values {input_shape[0][a0 - 1]} (at axis {a0}) != "
                             f"{input_shape[1][a1 - 1]} (at axis {a1}). Full input shapes: {shown}")
        x_rest = [d for i, d in enumerate(input_shape[0], start=1) if i != a0]
        y_rest = [d for i, d in enumerate(input_shape[1], start=1) if i != a1]
        # einsum letters: b the batch, k the contracted axis, the others in order
        letters = iter("cdefghij")
        x_spec = "".join("k" if i == a0 else next(letters) for i in range(1, ranks[0]))
        y_spec = "".join("k" if i == a1 else next(letters) for i in range(1, ranks[1]))
        out_spec = x_spec.replace("k", "") + y_spec.replace("k", "")
        self._specs = (f"b{x_spec}", f"b{y_spec}", f"b{out_spec}")
        self._equation = f"b{x_spec},b{y_spec}->b{out_spec}"
        self._axes_inside = (a0, a1)
        out = tuple(x_rest + y_rest)
        return out if out else (1,)  # two vectors: (batch, 1), as Keras's

    def forward(self, xs, training=False):
        x, y = xs
        if self.normalize:
            (x, rx), (y, ry) = (unit_scale(v, axis, self._EPSILON) for v, axis in zip((x, y), self._axes_inside))
        out = np.einsum(self._equation, x, y).reshape((len(x), *self._internal_output_shape))
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._xs = list(xs)
            self._units = (x, rx, y, ry) if self.normalize else (x, None, y, None)
        return out.astype(xs[0].dtype, copy=False)

    def backward(self, dy):
        if self._units is None:
            raise self._missing_cache()
        x, rx, y, ry = self._units
        x_spec, y_spec, out_spec = self._specs
        g = dy if len(out_spec) > 1 else dy.reshape(len(dy))  # two vectors' (batch, 1): the einsum's (batch,)
        dx = np.einsum(f"{out_spec},{y_spec}->{x_spec}", g, y)
        dyy = np.einsum(f"{out_spec},{x_spec}->{y_spec}", g, x)
        if self.normalize:  # through each input's normalisation
            a0, a1 = self._axes_inside
            dx = unit_scale_backward(self._xs[0], rx, dx, a0, self._EPSILON)
            dyy = unit_scale_backward(self._xs[1], ry, dyy, a1, self._EPSILON)
        return [dx.astype(dy.dtype, copy=False), dyy.astype(dy.dtype, copy=False)]

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


# Keras's functional forms (``layers.add([x, y])``, as in keras.io's functional-API guide): the
# layer made with the keyword arguments and called on the list of tensors.


def add(inputs, **kwargs):
    """``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """``Subtract(**kwargs)(inputs)``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """``Maximum(**kwargs)(inputs)``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """``Minimum(**kwargs)(inputs)``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """``Concatenate(axis=axis, **kwargs)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, **kwargs):
    """``Dot(axes, **kwargs)(inputs)``."""
    return Dot(axes=axes, **kwargs)(inputs)
