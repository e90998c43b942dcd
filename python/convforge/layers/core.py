"""Dense, Flatten, Dropout, Reshape and the Input marker."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .. import functional as F
from .._warnings import user_stacklevel
from .. import random as _random
from . import activations
from .base import (
    FeatureOrdered,
    Layer,
    _check_input_dim,
    check_input_shape,
    resolve_data_format,
    set_weight_options,
    weight_options_config,
    weight_options_from_config,
)

__all__ = ["Dense", "Dropout", "Flatten", "Identity", "Input", "InputLayer", "Lambda", "Reshape"]


class Dense(FeatureOrdered, Layer):
    """Fully connected layer ``y = activation(x @ kernel + bias)``, Keras's ``Dense``.

    Parameters
    ----------
    units : int
        Output features.
    activation : 'relu', 'tanh', 'sigmoid', 'softmax', 'linear' or None
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        Defaults ``'glorot_uniform'`` and ``'zeros'``.
    kernel_regularizer, bias_regularizer : Regularizer, optional
        E.g. ``regularizers.l2(1e-4)``: added to the training loss.
    kernel_regularizer, bias_regularizer : Regularizer, optional
        E.g. ``regularizers.l2(1e-4)``: added to the training loss.
    input_shape : tuple, optional
        ``(features,)`` when this is the first layer (or ``input_dim=features``).

    Weights
    -------
    ``kernel`` ``(in_features, units)`` -- Keras's layout -- and ``bias`` ``(units,)``.
    After a ``Flatten`` of images in a channels-last model (activations, Dropout, noise,
    ``Rescaling`` or a flat ``Reshape`` between them allowed), the stored kernel's rows
    (``layer.kernel``, ``model.weights``) follow the Flatten's (channels, height, width) order,
    while ``get_weights()``/``set_weights()`` give and take them in Keras's (height, width,
    channels) order: Keras's weights set into the same model predict as Keras. A head model
    whose first Dense reads its own input takes the order of the model it sits in after a
    Flatten, so set Keras's weights into that model (a head alone has no Flatten before it).
    A BatchNormalization, LayerNormalization or PReLU between them does the same with its
    vectors, and a Concatenate (or Add, Average, ...) of Flattens and other features passes each
    part's order on; any other layer (Normalization, with its own weights per feature; a
    Lambda) leaves the stored order, for those layers' weights too. A Dense after a Flatten in
    one call and after something else in another keeps the stored order, with a warning.

    Input / output
    --------------
    ``(batch, in_features)`` -> ``(batch, units)``, and, as in Keras, a
    sequence ``(batch, steps, in_features)`` -> ``(batch, steps, units)``: the
    same kernel applied at every step. Unlike Keras, images
    ``(batch, h, w, channels)`` are refused: flatten them first
    (``Flatten()``), or use ``Conv2D(units, 1)`` for Keras's per-pixel Dense.
    """

    _cache_attrs = ("_x",)
    _feature_weights = ("kernel",)

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        *,
        input_shape=None,
        input_dim=None,
        name=None,
        trainable=True,
    ):
        if input_dim is not None:
            _check_input_dim(input_dim, "Dense")
            if input_shape is not None:
                raise ValueError("Dense: give input_shape or input_dim, not both")
            input_shape = (input_dim,)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if isinstance(units, (bool, np.bool_)) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f"Dense units must be a positive int; got {units!r}")
        self.units = int(units)
        set_weight_options(self, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                           bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer)
        self._x = None

    def _check(self, input_shape):
        if len(input_shape) not in (1, 2):
            hint = (" Add a Flatten() layer before it (or use Conv2D(units, 1), Keras's Dense on each pixel)."
                    if len(input_shape) == 3 else "")
            raise ValueError(
                f"Dense expects input of shape (batch, features) or (batch, steps, features); "
                f"got {self._show(input_shape)}.{hint}"
            )

    def build(self, input_shape):
        self._check(input_shape)
        self.add_weight(
            "kernel", (input_shape[-1], self.units), self.kernel_initializer, regularizer=self.kernel_regularizer
        )
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, regularizer=self.bias_regularizer)

    def _compute_internal_output_shape(self, input_shape):
        self._check(input_shape)
        return (*input_shape[:-1], self.units)

    def _forward_logits(self, x, training=False):
        if isinstance(x, np.ndarray) and x.ndim == 3:
            # A sequence stays (batch, steps, features) inside the model (see conv1d), so every step
            # is a row of one (batch * steps, features) product: the 2-D kernel, on a view.
            n, steps, _ = x.shape
            return self._forward_logits(x.reshape(n * steps, -1), training).reshape(n, steps, self.units)
        kernel, bias = self.params["kernel"], self.params.get("bias")
        if (
            isinstance(x, np.ndarray)
            and x.ndim == 2
            and x.dtype == kernel.dtype
            and x.shape[0] > 0
            and x.shape[1] == kernel.shape[0]
        ):
            # The compiled kernel (threads, AVX-512), into a reused buffer while training.
            out = self._buffers("z", (x.shape[0], self.units), x.dtype) if training else None
            z = F.dense(x, kernel, bias, out=out)
        else:
            z = x @ kernel
            if self.use_bias:
                z += bias
        if training:  # inference leaves the training state alone: fit may be running in another thread
            self._x = x
        return z

    def forward(self, x, training=False):
        z = self._forward_logits(x, training)
        return z if self.activation is None else self.activation.forward(z, training)

    def _backward_logits(self, dz):
        if dz.ndim == 3:  # a sequence: forward kept x as (batch * steps, features)
            n, steps, _ = dz.shape
            dx = self._backward_logits(dz.reshape(n * steps, -1))
            return None if dx is None else dx.reshape(n, steps, -1)
        x, kernel, buffers = self._x, self.params["kernel"], self._buffers
        if x is None:
            raise self._missing_cache()
        if dz.dtype != kernel.dtype or dz.shape != (x.shape[0], self.units):
            raise ValueError(
                f"layer {self.name!r} (Dense): backward expects dy of shape {(x.shape[0], self.units)} and dtype "
                f"{kernel.dtype}; got {dz.dtype} {dz.shape}"
            )
        if not self.trainable:  # frozen (Keras's trainable=False): dx alone, no weight gradient
            self.grads.clear()
            if not self.input_grad_needed:
                return None
            if x.dtype != kernel.dtype or x.ndim != 2 or x.shape[0] == 0:
                return dz @ kernel.T
            return F.dense_backward_data(dz, kernel, out=buffers("dx", x.shape, kernel.dtype))
        if x.dtype != kernel.dtype or x.ndim != 2 or x.shape[0] == 0:  # an input the kernels did not take
            self.grads["kernel"] = np.matmul(x.T, dz).astype(kernel.dtype, copy=False)
            if self.use_bias:
                self.grads["bias"] = dz.sum(axis=0)
            return (dz @ kernel.T) if self.input_grad_needed else None
        dw, db = F.dense_backward_weights(
            dz,
            x,
            need_bias_grad=self.use_bias,
            out_w=buffers("dw", kernel.shape, kernel.dtype),
            out_b=buffers("db", (self.units,), kernel.dtype) if self.use_bias else None,
        )
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        if not self.input_grad_needed:
            return None
        return F.dense_backward_data(dz, kernel, out=buffers("dx", x.shape, kernel.dtype))

    def backward(self, dy):
        if self.activation is not None:
            dy = self.activation.backward(dy)
        return self._backward_logits(dy)

    def _ends_in_softmax(self):
        return isinstance(self.activation, activations.Softmax)

    def _clear_cache(self):
        super()._clear_cache()
        if self.activation is not None:
            self.activation._clear_cache()

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            **weight_options_config(self),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**weight_options_from_config(config))


class Identity(Layer):
    """Keras's ``Identity``: its input as it is (a placeholder, e.g. a block's shortcut that
    needs no projection, or a head to be swapped later)."""

    _keeps_feature_order = True

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy




def keras_flatten_order(flattened: tuple, model_format: str, flatten_format: str | None):
    """Where Keras's Flatten puts each value convforge's Flatten puts in order: ``order[r]`` is
    convforge's position of the value Keras puts at ``r``; None where the two agree (sequences,
    channels-first images, one channel or one pixel). ``flattened`` is the internal per-sample
    shape the Flatten took (``(channels, height, width)`` for an image; a sequence's is its
    user layout), ``model_format`` the model's layout of images, ``flatten_format`` the
    Flatten's own ``data_format``: Keras's ``Flatten(data_format='channels_first')`` moves the
    channels last before flattening."""
    index = np.arange(math.prod(flattened)).reshape(flattened)
    if len(flattened) == 3 and model_format != "channels_first":
        index = index.transpose(1, 2, 0)  # the channels-last maps the user sees
    if flatten_format == "channels_first" and index.ndim > 1:
        index = np.moveaxis(index, 0, -1)
    order = index.reshape(-1)
    return None if np.array_equal(order, np.arange(order.size)) else order


def warn_flatten_order(layer, what: str) -> None:
    """Warn that ``layer`` reads the features a Flatten of channels-last images made in
    convforge's order where no weight order can make it compute as Keras (``what``: how). Once
    per layer: a Sequential is built again at every add() and pop()."""
    if layer.__dict__.get("_warned_flatten_order"):
        return
    layer.__dict__["_warned_flatten_order"] = True
    warnings.warn(
        f"layer {layer.name!r} ({type(layer).__name__}) {what} the features of a Flatten of channels-last images: "
        "convforge's Flatten orders them (channels, height, width), Keras's (height, width, channels), so this model "
        "computes otherwise than the same Keras model (with Keras's weights or file its outputs differ); flatten "
        "with Reshape((-1,)) for Keras's order", stacklevel=user_stacklevel())


class Flatten(Layer):
    """Flattens each sample to a vector: ``(batch, h, w, c)`` -> ``(batch, h * w * c)``.

    Order: channel-major, i.e. the model's internal ``(channels, height,
    width)`` order, so flattening costs nothing (a reshape of the NCHW
    batch). Keras (channels-last) flattens in ``(height, width, channels)``
    order instead; the Dense layer after the Flatten stores its kernel's rows
    in this order and gives and takes them in Keras's by ``get_weights()`` /
    ``set_weights()``, so Keras's weights set into the same model predict as
    Keras; a BatchNormalization, LayerNormalization or PReLU between them does the
    same with its vectors, and a Concatenate or Add of Flattens passes each part's
    order on (:class:`Dense` says where not). Output shapes and parameter counts are the same; the outputs of
    the Flatten itself (``Model(x, flatten_output)``) are in this order. For
    Keras's exact order there use ``Reshape((-1,))``, at the price of a transpose.

    ``data_format`` must agree with the rest of the model; it does not change
    this order, but Keras's ``Flatten(data_format='channels_first')`` moves the
    channels last before flattening, and the Dense after it gives and takes
    Keras's rows for that order. ``'channels_last'`` (Keras's default, which
    its model files store) is taken in a channels-first model too, as Keras
    takes it: the maps are flattened as they are laid out.
    """

    _cache_attrs = ("_in_shape",)

    def __init__(self, data_format=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.data_format = resolve_data_format(data_format)
        self._in_shape = None

    def _compute_internal_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        if training:
            self._in_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        if self._in_shape is None:
            raise self._missing_cache()
        return dy.reshape(self._in_shape)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Dropout(Layer):
    """Inverted dropout: during training zero each value with probability ``rate``
    and scale the rest by ``1 / (1 - rate)``; identity in ``predict``/``evaluate``.

    Masks come from convforge's generator (:func:`convforge.seed`).
    """

    _keeps_feature_order = True

    _cache_attrs = ("_mask", "_y_shape")

    def __init__(self, rate, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"{type(self).__name__} rate must be a number in [0, 1); got {rate!r}")
        self.rate = float(rate)
        self._mask = self._y_shape = None

    def _compute_internal_output_shape(self, input_shape):
        return tuple(input_shape)

    def _noise_shape(self, shape) -> tuple:
        """The mask's shape for an input of ``shape`` (broadcast over the rest): every value its own."""
        return shape

    def forward(self, x, training=False):
        if not training:
            return x
        if self.rate == 0:
            self._mask = None
            return x
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"layer {self.name!r} ({type(self).__name__}) expects float32 or float64 input; got {x.dtype}")
        mask = self._buffers("mask", self._noise_shape(x.shape), x.dtype)
        _random.get_generator().random(dtype=x.dtype, out=mask)
        np.greater_equal(mask, self.rate, out=mask)  # 1.0 where kept
        mask *= 1.0 / (1.0 - self.rate)
        self._mask, self._y_shape = mask, x.shape
        return np.multiply(x, mask, out=self._buffers("y", x.shape, x.dtype))

    def backward(self, dy):
        # No mask: rate 0 (identity), or forward was not in training mode.
        if self._mask is None:
            if self.rate == 0:
                return dy
            raise self._missing_cache()
        if dy.shape != self._y_shape:
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}): dy has shape {dy.shape}, its output {self._y_shape}")
        return np.multiply(dy, self._mask, out=self._buffers("dx", dy.shape, self._mask.dtype))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class Reshape(Layer):
    """Reshapes each sample to ``target_shape``, in Keras's element order.

    ``target_shape`` is per sample, as Keras: ``Reshape((28, 28, 1))`` turns
    784 pixels into a channels-last image, ``Reshape((-1,))`` flattens (one
    -1 is allowed). Elements are read and written in channels-last order, so
    the result is exactly Keras's; with more than one channel this costs a
    transpose (``Flatten`` does not).
    """

    @property
    def _keeps_feature_order(self) -> bool:
        """A flat vector reshaped flat (``Reshape((-1,))`` after a Flatten) keeps the order."""
        shapes = (self._internal_input_shape, self._internal_output_shape)
        return all(shape is not None and len(shape) == 1 for shape in shapes)

    @property
    def _loses_flatten_order(self) -> str | None:
        return None if self._keeps_feature_order else "reshapes"

    _cache_attrs = ("_in_shape",)

    def __init__(self, target_shape, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if isinstance(target_shape, numbers.Integral) and not isinstance(target_shape, bool):
            target_shape = (target_shape,)
        if (
            not isinstance(target_shape, (tuple, list))
            or not target_shape
            or any(
                isinstance(d, bool) or not isinstance(d, numbers.Integral) or (d < 1 and d != -1) for d in target_shape
            )
            or sum(d == -1 for d in target_shape) > 1
        ):
            raise ValueError(
                f"Reshape target_shape must be a tuple of positive ints (one may be -1); got {target_shape!r}"
            )
        self.target_shape = tuple(int(d) for d in target_shape)
        self._in_shape = None

    def _channels_last(self) -> bool:
        return self._data_format != "channels_first"

    def _compute_internal_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        target = self.target_shape
        if -1 in target:
            if size % known:
                raise ValueError(
                    f"Reshape cannot reshape {self._show(input_shape)} ({size} values per sample) to {target}"
                )
            target = tuple(size // known if d == -1 else d for d in target)
        if math.prod(target) != size:
            raise ValueError(
                f"Reshape cannot reshape {self._show(input_shape)} ({size} values per sample) to {target} "
                f"({math.prod(target)} values)"
            )
        self._user_target = target
        if len(target) == 3 and self._channels_last():
            return (target[2], target[0], target[1])
        return target

    def forward(self, x, training=False):
        n = x.shape[0]
        if training:
            self._in_shape = x.shape
        if x.ndim == 4 and self._channels_last():
            x = x.transpose(0, 2, 3, 1)  # to Keras's element order
        y = x.reshape(n, *self._user_target)
        if y.ndim == 4 and self._channels_last():
            y = y.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(y)

    def backward(self, dy):
        if self._in_shape is None:
            raise self._missing_cache()
        n = dy.shape[0]
        if dy.ndim == 4 and self._channels_last():
            dy = dy.transpose(0, 2, 3, 1)
        if len(self._in_shape) == 4 and self._channels_last():
            _, c, h, w = self._in_shape
            return np.ascontiguousarray(dy.reshape(n, h, w, c).transpose(0, 3, 1, 2))
        return np.ascontiguousarray(dy.reshape(self._in_shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


def integer_dtype(value) -> np.dtype | None:
    """The integer dtype ``value`` names (an Input's ``dtype='int64'``, token ids), else None."""
    try:
        dt = np.dtype(value) if isinstance(value, (str, type, np.dtype)) else None
    except TypeError:
        return None
    return dt if dt is not None and dt.kind in "iu" else None


class InputLayer(Layer):
    """The model's entry: a per-sample shape and dtype, Keras's ``InputLayer``.

    Made by :func:`Input`, which returns its output tensor. At the head of a
    :class:`~convforge.Sequential` it only declares the input shape and is not
    kept in ``model.layers`` (as in Keras 3); in a functional model it is the
    first entry of ``model.layers``, with no weights.
    """

    def __init__(self, shape=None, *, input_shape=None, name=None, dtype=None):
        if shape is None:
            shape = input_shape
        if shape is None:
            raise TypeError("Input needs shape=, the per-sample input shape such as (28, 28, 1)")
        super().__init__(name=name)
        self.shape = check_input_shape(shape, "shape")
        from .base import FLOAT_DTYPES
        from .symbolic import KerasTensor, Node, unique_name

        try:
            dt = np.dtype("float32" if dtype is None else dtype)
        except (TypeError, ValueError):
            dt = None
        # An integer input (Keras's dtype="int64" for token ids before an Embedding) enters the
        # model as its float32 values, exact to 2**24 (Embedding's input_dim bound); its config
        # keeps the dtype given, for Keras.
        self._given_dtype = integer_dtype(dtype) if dtype is not None else None
        if self._given_dtype is not None:
            dt = np.dtype("float32")
        # "is None" first: None == np.dtype('float64') is True, so `None in FLOAT_DTYPES` holds and
        # Input(dtype="banana") made a float64 input.
        if dt is None or dt not in FLOAT_DTYPES:
            raise ValueError(f"Input dtype must be 'float32', 'float64' or an integer type (ids for an Embedding); "
                             f"got {dtype!r}")
        if self.name is None:
            self.name = unique_name("input_layer")
        self.dtype = dt
        # Images (height, width, channels) are kept NCHW inside, as everywhere in a model.
        internal = (self.shape[2], self.shape[0], self.shape[1]) if len(self.shape) == 3 else self.shape
        self.built = True
        self._internal_input_shape = self._internal_output_shape = internal
        node = Node(self, [], many=False)
        node.outputs.append(KerasTensor(internal, dt, node, 0, name=self.name))

    @property
    def input(self):
        """Its own output tensor (an input layer has no input), as Keras."""
        return self.output

    def _compute_internal_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy

    def get_config(self):
        return {"shape": list(self.shape), "name": self.name, "dtype": (self._given_dtype or self.dtype).name}

    def __repr__(self):
        return f"Input(shape={self.shape})"


_INPUT_UNSUPPORTED = ("batch_size", "batch_shape", "sparse", "tensor", "ragged", "optional")


def Input(shape=None, name=None, dtype=None, **kwargs):  # noqa: N802 - Keras's spelling
    """A symbolic input tensor, ``keras.Input``: the start of a functional model.

    >>> import convforge
    >>> from convforge import layers
    >>> x = convforge.Input(shape=(28, 28, 1), name="image")
    >>> y = layers.Conv2D(8, 3, activation="relu")(x)
    >>> y.shape
    (None, 26, 26, 8)

    Parameters
    ----------
    shape : tuple of int
        Per sample, without the batch: ``(28, 28, 1)`` (channels-last) or ``(784,)``.
        Every size is fixed: Keras's ``None`` (a variable height or width) is not
        supported (ValueError); build one model per input size.
    name : str, optional
        Also the name of the input in ``model.inputs`` and in the summary.
    dtype : 'float32' (default), 'float64', or an integer type
        An integer input (Keras's ``dtype='int64'`` for the token ids an ``Embedding``
        reads) takes integer arrays and passes them on as float32 values, exact up to
        2**24; where Keras would keep integers to a layer that computes with them
        (a ``Dense`` right after the input), convforge computes with those floats. The
        model's config keeps the dtype given.

    Also accepted as the first entry of a ``Sequential`` model. Keras's
    ``batch_size``, ``batch_shape``, ``sparse``, ``tensor``, ``ragged`` and ``optional``
    are not supported (NotImplementedError) beyond their defaults; the batch size is
    always free, so ``batch_shape=(None, 28, 28, 1)`` is ``shape=(28, 28, 1)``.
    """
    batch_shape = kwargs.get("batch_shape")
    if isinstance(batch_shape, (tuple, list)) and len(batch_shape) > 1 and batch_shape[0] is None:
        if shape is not None:
            raise ValueError(f"Input takes shape or batch_shape, not both; got shape={shape!r}, "
                             f"batch_shape={batch_shape!r}")
        shape = tuple(batch_shape[1:])
        del kwargs["batch_shape"]
    for key in kwargs:
        if key in _INPUT_UNSUPPORTED:
            if kwargs[key] in (None, False):
                continue
            raise NotImplementedError(f"Input: Keras's argument {key}={kwargs[key]!r} is not supported by convforge")
        raise TypeError(f"Input() got an unexpected keyword argument {key!r}")
    return InputLayer(shape, name=name, dtype=dtype).output


class Lambda(Layer):
    """``function(x)`` as a layer, Keras's ``Lambda``: the function gets the batch as Keras shows it
    (a NumPy array; images channels-last, ``(batch, height, width, channels)``) and the
    ``arguments`` as keywords, and returns a NumPy array with the batch axis first.

    convforge has no automatic differentiation, so a Lambda has no gradient: it may sit where no
    layer with weights is before it (preprocessing at the model's input: ``Lambda(lambda x: x /
    255.0)``, a channel pick, a clip), and fit says so at its first batch anywhere else; write a
    :class:`~convforge.layers.Layer` subclass with ``forward`` and ``backward`` there. Its function
    is Python code, which model files do not hold (no pickle, no marshal: Keras's own files refuse
    to load it in ``safe_mode``): a saved model names it, and ``load_model(path,
    custom_objects={"name": function})`` gives it back. ``mask`` is not supported.
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, *, name=None, input_shape=None,
                 trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if not callable(function):
            raise TypeError(f"Lambda function must be callable; got {function!r:.80}")
        if mask is not None:
            raise NotImplementedError("convforge does not support Lambda's mask (masks are not supported)")
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"Lambda arguments must be a dict of keyword arguments; got {arguments!r:.80}")
        if output_shape is not None:
            output_shape = check_input_shape(tuple(output_shape) if isinstance(output_shape, (list, tuple))
                                             else output_shape, "Lambda output_shape")
        self.function, self.arguments = function, dict(arguments or {})
        self.output_shape_arg = output_shape

    def _label(self) -> str:
        return f"Lambda {self.name!r}" if self.name else "Lambda"

    def _shown(self, a):
        return a.transpose(0, 2, 3, 1) if a.ndim == 4 and self._data_format != "channels_first" else a

    def _internal(self, a):
        return a.transpose(0, 3, 1, 2) if a.ndim == 4 and self._data_format != "channels_first" else a

    def forward(self, x, training=False):
        y = self.function(self._shown(x), **self.arguments)
        y = np.asarray(y)
        if y.ndim < 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{self._label()}: its function must return the batch axis first ({x.shape[0]} "
                             f"samples); it returned {type(y).__name__} of shape {y.shape}")
        if y.dtype != x.dtype:
            if y.dtype.kind not in "fiub":
                raise TypeError(f"{self._label()}: its function returned an array of dtype {y.dtype}")
            y = y.astype(x.dtype)
        y = np.ascontiguousarray(self._internal(y))
        return y

    def _compute_internal_output_shape(self, input_shape):
        shape = super()._compute_internal_output_shape(input_shape)
        if self.output_shape_arg is not None:
            shown = tuple(self._shown(np.empty((1, *shape))).shape[1:])
            if shown != tuple(self.output_shape_arg):
                raise ValueError(f"{self._label()}: output_shape={self.output_shape_arg} but its function "
                                 f"returns samples of shape {shown}")
        return shape

    def backward(self, dy):
        raise NotImplementedError(
            f"{self._label()} has no gradient (convforge has no automatic differentiation): a Lambda may sit "
            "only where no layer with weights is before it (input preprocessing); here the layers before it train. "
            "Write a Layer subclass with forward and backward instead (see help(convforge.layers.Layer))"
        )

    def get_config(self):
        name = getattr(self.function, "__name__", type(self.function).__name__)
        config = {**super().get_config(), "function": name, "arguments": self.arguments}
        if self.output_shape_arg is not None:
            config["output_shape"] = list(self.output_shape_arg)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Lambda":
        function = config.get("function")
        if not callable(function):
            raise ValueError(
                f"a Lambda's function is Python code, which model files do not hold: pass it, "
                f"load_model(path, custom_objects={{{function!r}: your_function}})"
            )
        return cls(**config)
