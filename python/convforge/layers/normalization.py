"""BatchNormalization, Keras 3 semantics, on the compiled batch-norm kernels."""

from __future__ import annotations

import numbers

import numpy as np

from .. import functional as F
from . import initializers
from .base import FeatureOrdered, Layer, display_shape, internal_axis

__all__ = ["BatchNormalization", "GroupNormalization", "LayerNormalization", "UnitNormalization", "refuse_unsupported"]


def refuse_unsupported(layer: str, **arguments) -> None:
    """NotImplementedError naming the first Keras argument given a value convforge does not support."""
    for name, value in arguments.items():
        if value is not None and value is not False:
            raise NotImplementedError(f"{layer}: the Keras argument {name}={value!r} is not supported by convforge")


class BatchNormalization(FeatureOrdered, Layer):
    """Batch normalisation, Keras's ``BatchNormalization``.

    During training (``fit``) each channel is normalised with the mean and
    variance of the current batch, ``y = gamma * (x - mean) / sqrt(var +
    epsilon) + beta``, and the moving statistics are updated:
    ``moving = moving * momentum + batch_statistic * (1 - momentum)`` (the
    batch variance is the biased one, as in Keras). In inference
    (``predict``, ``evaluate``) the moving statistics are used instead; there a
    BatchNormalization right after a Conv2D without activation (whose output
    nothing else reads) is folded into the conv's weights, and a ReLU after it
    runs inside the conv kernel: one pass over the feature maps instead of
    three, equal to the unfolded layers to rounding (``layers/fusion.py``).

    Parameters
    ----------
    axis : int
        The channel axis *at the API*: ``-1`` (default) for channels-last
        images ``(batch, height, width, channels)``, sequences ``(batch,
        steps, channels)`` (normalised over the batch and the steps, as in
        Keras) and ``(batch, features)`` data; ``1`` for a channels-first
        model, and for channels-first sequences ``(batch, channels, steps)``
        (Keras's ``data_format='channels_first'`` 1-D layers, PyTorch's
        BatchNorm1d). Other axes raise NotImplementedError: the kernels
        normalise over the channel axis.
    momentum : float
        Default 0.99.
    epsilon : float
        Default 1e-3 (PyTorch's BatchNorm2d uses 1e-5).
    center, scale : bool
        Learn ``beta`` / ``gamma``.
    beta_initializer, gamma_initializer, moving_mean_initializer, moving_variance_initializer
        Defaults ``'zeros'``, ``'ones'``, ``'zeros'``, ``'ones'``.

    Weights
    -------
    ``gamma``, ``beta`` (trainable, if ``scale``/``center``) and
    ``moving_mean``, ``moving_variance`` (non-trainable: the optimizer never
    touches them, ``model.save`` keeps them), each of shape ``(channels,)``,
    in Keras's order: ``get_weights()`` lists them as Keras does.

    Differences from Keras
    ----------------------
    Regularizers, constraints, ``synchronized=True`` and ``renorm`` are not
    supported (NotImplementedError). As in Keras 3, a frozen layer
    (``trainable=False``) runs in inference mode even inside ``fit``.
    """

    _cache_attrs = ("_x", "_mean", "_var", "_frozen_scale", "_frozen_x", "_gate", "_relu_used")
    # On flattened maps (Flatten -> BatchNormalization -> Dense): a value per feature, in the
    # Flatten's order (FeatureOrdered).
    _feature_weights = ("gamma", "beta", "moving_mean", "moving_variance")
    _gate = None  # frozen with a fused ReLU: that ReLU's output, for its gradient
    _relu_used = False  # the last training forward applied a fused ReLU (_forward_relu)

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        synchronized=False,
        *,
        renorm=False,
        input_shape=None,
        name=None,
        trainable=True,
    ):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        refuse_unsupported(
            "BatchNormalization",
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
            synchronized=synchronized,
            renorm=renorm,
        )
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"BatchNormalization axis must be an int such as -1; got {axis!r}")
        self.axis = int(axis)
        for arg, value, low, high in (("momentum", momentum, 0.0, 1.0), ("epsilon", epsilon, 0.0, np.inf)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise TypeError(f"BatchNormalization {arg} must be a number; got {value!r}")
            ok = low <= float(value) <= high if arg == "momentum" else low < float(value) < high
            if not ok:
                raise ValueError(
                    f"BatchNormalization {arg} must be in {'[0, 1]' if arg == 'momentum' else '(0, inf)'}; got {value!r}"
                )
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        for arg, value in (("center", center), ("scale", scale)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"BatchNormalization {arg} must be True or False; got {value!r}")
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer, "beta_initializer")
        self.gamma_initializer = initializers.get(gamma_initializer, "gamma_initializer")
        self.moving_mean_initializer = initializers.get(moving_mean_initializer, "moving_mean_initializer")
        self.moving_variance_initializer = initializers.get(moving_variance_initializer, "moving_variance_initializer")
        self._x = self._mean = self._var = self._frozen_scale = self._frozen_x = None

    def _check_axis(self, input_shape) -> None:
        rank = len(input_shape) + 1  # with the batch axis, as the user counts
        if rank == 4:
            allowed = (1, -3) if self._data_format == "channels_first" else (3, -1)
            what = "the channel axis of images"
        elif rank == 3:
            # Sequences (batch, steps, channels), or channels-first ones (batch, channels, steps).
            allowed, what = (2, -1, 1, -2), "the channel axis of sequences"
        elif rank == 2:
            allowed, what = (1, -1), "the feature axis of (batch, features) data"
        else:
            raise NotImplementedError(
                f"layer {self.name!r} (BatchNormalization) takes images (batch, height, width, channels), "
                f"sequences (batch, steps, channels) or (batch, features); got input {self._show(input_shape)}"
            )
        if self.axis not in allowed:
            axes = ("axis=-1 or 2 for (batch, steps, channels), 1 or -2 for (batch, channels, steps)" if rank == 3
                    else f"axis={allowed[1]} or {allowed[0]}")
            raise NotImplementedError(
                f"layer {self.name!r} (BatchNormalization): axis={self.axis} on input {self._show(input_shape)} is not "
                f"supported; convforge normalises over {what} only ({axes})"
            )

    def _channels_last_sequences(self, x_ndim: int) -> bool:
        """Sequences (batch, steps, channels): each step is a sample of the channels. Channels-first
        ones (batch, channels, steps) are the kernels' (N, C, ...) layout as they are."""
        return x_ndim == 3 and self.axis in (2, -1)

    def build(self, input_shape):
        self._check_axis(input_shape)
        # Inside a model images are (channels, height, width) and sequences stay (steps, channels)
        # or (channels, steps).
        channels = (input_shape[-1] if self._channels_last_sequences(len(input_shape) + 1) else input_shape[0],)
        if self.scale:
            self.add_weight("gamma", channels, self.gamma_initializer)
        if self.center:
            self.add_weight("beta", channels, self.beta_initializer)
        self.add_weight("moving_mean", channels, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", channels, self.moving_variance_initializer, trainable=False)

    def _compute_internal_output_shape(self, input_shape):
        self._check_axis(input_shape)
        return tuple(input_shape)

    def forward(self, x, training=False):
        return self._forward(x, training, relu=False)

    def _forward_relu(self, x, training=False):
        """``max(forward(x), 0)``: the plain ReLU after this layer, in its kernels (training with
        batch statistics: no pass of its own; frozen: one in-place pass). Models call it in
        training where that ReLU is the only reader of this output (layers/fusion.py); the
        backward then applies the ReLU's gradient too, and the ReLU passes x and dy through."""
        return self._forward(x, training, relu=True)

    def _forward(self, x, training, relu, moving_statistics=False):
        """``moving_statistics``: in training, normalise with the moving statistics all the same (and
        leave them), as Keras's layer called with ``training=False`` does while its gamma and beta
        still learn (the fine-tuning step after ``base(x, training=False)``; Functional._run)."""
        if self._channels_last_sequences(x.ndim):  # every step is a sample of the channels
            return self._forward(x.reshape(-1, x.shape[2]), training, relu, moving_statistics).reshape(x.shape)
        p = self.params
        gamma, beta = p.get("gamma"), p.get("beta")
        if not training or not self.trainable or moving_statistics:
            out = self._buffers("y", x.shape, x.dtype) if training else None
            y = F.batch_norm_inference(x, p["moving_mean"], p["moving_variance"], gamma, beta, self.epsilon, out=out)
            if relu:
                F.relu(y, out=y)
            # Inference leaves the training caches alone: predict may run in another thread
            # between a training step's forward and backward.
            if training:  # frozen: backward is the per-channel scale gamma / sqrt(moving_variance + eps)
                scale = 1.0 / np.sqrt(p["moving_variance"].astype(np.float64) + self.epsilon)
                if gamma is not None:
                    scale = scale * gamma
                self._frozen_scale = scale.astype(x.dtype).reshape((1, -1) + (1,) * (x.ndim - 2))
                self._x = self._mean = self._var = None
                self._gate, self._relu_used = (y if relu else None), relu
                # Trainable on the moving statistics: gamma's and beta's gradients need x.
                self._frozen_x = x if self.trainable else None
            return y
        b = self._buffers
        channels = (x.shape[1],)
        y, mean, var = F.batch_norm(
            x, gamma, beta, self.epsilon, out=b("y", x.shape, x.dtype), out_mean=b("mean", channels, x.dtype),
            out_var=b("var", channels, x.dtype), relu=relu,
        )
        # In place: the optimizer and saving hold these arrays. An empty batch has no statistics
        # (NaN): the moving ones stay as they are.
        if x.shape[0]:
            m = self.momentum
            p["moving_mean"] *= m
            p["moving_mean"] += (1.0 - m) * mean
            p["moving_variance"] *= m
            p["moving_variance"] += (1.0 - m) * var
        self._x, self._mean, self._var = x, mean, var
        self._frozen_scale, self._frozen_x, self._gate, self._relu_used = None, None, None, relu
        return y

    def backward(self, dy):
        return self._backward(dy, overwrite_dy=False)

    def _backward_overwriting(self, dy):
        """backward() writing the input gradient over ``dy`` (C-contiguous, writeable), which the
        caller guarantees nothing else will read: models call it where they own dy (see
        Functional._backward)."""
        return self._backward(dy, overwrite_dy=True)

    def _backward(self, dy, overwrite_dy):
        if self._channels_last_sequences(dy.ndim):  # as _forward
            dx = self._backward(dy.reshape(-1, dy.shape[2]), overwrite_dy)
            return None if dx is None else dx.reshape(dy.shape)
        if self._frozen_scale is not None:
            g = dy if self._gate is None else F.relu_backward(dy, self._gate)
            if self._frozen_x is not None:  # y = gamma * xhat + beta with xhat from the moving statistics
                p = self.params
                shape = self._frozen_scale.shape
                axes = (0, *range(2, g.ndim))
                inv_std = (1.0 / np.sqrt(p["moving_variance"].astype(np.float64) + self.epsilon)).astype(g.dtype)
                if self.scale:
                    xhat = (self._frozen_x - p["moving_mean"].reshape(shape)) * inv_std.reshape(shape)
                    self.grads["gamma"] = (g * xhat).sum(axis=axes, dtype=np.float64).astype(g.dtype)
                if self.center:
                    self.grads["beta"] = g.sum(axis=axes, dtype=np.float64).astype(g.dtype)
            if not self.input_grad_needed:
                return None
            return g * self._frozen_scale
        if self._x is None:
            raise self._missing_cache()
        x, b = self._x, self._buffers
        channels = (x.shape[1],)
        dx, dgamma, dbeta = F.batch_norm_backward(
            dy, x, self._mean, self._var, self.params.get("gamma"), self.epsilon, self.input_grad_needed,
            out=(dy if overwrite_dy else b("dx", x.shape, x.dtype)) if self.input_grad_needed else None,
            out_gamma=b("dgamma", channels, x.dtype), out_beta=b("dbeta", channels, x.dtype),
            beta=self.params.get("beta"), relu=bool(self._relu_used),
        )
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta
        return dx

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
        }

    @classmethod
    def from_config(cls, config):
        keys = ("beta_initializer", "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer")
        return cls(**initializers.deserialize_config(config, keys))


class _PerSampleNormalization(Layer):
    """Shared by LayerNormalization and GroupNormalization: each sample normalised by its own mean
    and biased variance over some of its values, then ``* gamma + beta``, the same in training and
    inference. A subclass says which values (``_flat``: the array with each set of values
    normalised together along its last axis) and how its weights broadcast (``_broadcast``) and
    sum (``_to_weight``). The statistics are computed in float64."""

    _cache_attrs = ("_xhat", "_inv")

    def _init_common(self, epsilon, center, scale, beta_initializer, gamma_initializer, **unsupported):
        kind = type(self).__name__
        refuse_unsupported(kind, **unsupported)
        if isinstance(epsilon, (bool, np.bool_)) or not isinstance(epsilon, numbers.Real) or not 0 < epsilon < np.inf:
            raise ValueError(f"{kind} epsilon must be a number > 0; got {epsilon!r}")
        self.epsilon = float(epsilon)
        for arg, value in (("center", center), ("scale", scale)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{kind} {arg} must be True or False; got {value!r}")
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer, "beta_initializer")
        self.gamma_initializer = initializers.get(gamma_initializer, "gamma_initializer")
        self._xhat = self._inv = None

    def _who(self) -> str:
        kind = type(self).__name__
        return f"layer {self.name!r} ({kind})" if self.name else kind

    def _add_weights(self, shape) -> None:
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer)

    def _flat(self, a):
        """``(flat, restore)``: ``a`` with the values normalised together along the last axis, and
        the function that puts an array of ``flat``'s shape back in ``a``'s."""
        raise NotImplementedError

    def _broadcast(self, w, ndim: int):
        """A weight shaped to broadcast against the (batch, ...) arrays."""
        raise NotImplementedError

    def _to_weight(self, g):
        """A (batch, ...) array's sums over all but the weights' axes, in a weight's shape."""
        raise NotImplementedError

    def forward(self, x, training=False):
        flat, restore = self._flat(x.astype(np.float64))
        mean = flat.mean(axis=-1, keepdims=True)
        var = np.square(flat - mean).mean(axis=-1, keepdims=True)
        inv = 1.0 / np.sqrt(var + self.epsilon)
        xhat = restore((flat - mean) * inv).astype(x.dtype)
        y = xhat
        if self.scale:
            y = y * self._broadcast(self.params["gamma"], x.ndim)
        if self.center:
            y = y + self._broadcast(self.params["beta"], x.ndim)
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._xhat, self._inv = xhat, inv
        return np.ascontiguousarray(y, dtype=x.dtype)

    def backward(self, dy):
        if self._xhat is None:
            raise self._missing_cache()
        xhat, inv = self._xhat, self._inv
        if self.scale:
            self.grads["gamma"] = self._to_weight(dy * xhat)
        if self.center:
            self.grads["beta"] = self._to_weight(dy)
        if not self.input_grad_needed:
            return None
        g, restore = self._flat((dy * self._broadcast(self.params["gamma"], dy.ndim) if self.scale else dy)
                                .astype(np.float64))
        h, _ = self._flat(xhat.astype(np.float64))
        dx = inv * (g - g.mean(axis=-1, keepdims=True) - h * (g * h).mean(axis=-1, keepdims=True))
        return np.ascontiguousarray(restore(dx), dtype=dy.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**initializers.deserialize_config(config, ("beta_initializer", "gamma_initializer")))


def user_axes(axis, rank: int, who: str) -> list[int]:
    """The axes ``axis`` (an int or a list, Keras's count: negative from the end) names in a
    per-sample shape of ``rank`` axes, as 1 .. rank, sorted; ValueError naming ``who`` for one out
    of range or repeated."""
    axes = axis if isinstance(axis, list) else [axis]
    out = sorted({a + rank + 1 if a < 0 else a for a in axes})
    if len(out) != len(axes) or not all(1 <= a <= rank for a in out):
        raise ValueError(f"{who}: axis={axis} does not name distinct axes of its input of rank {rank + 1} (1 .. "
                         f"{rank}, or -1 .. -{rank}; 0 is the batch axis)")
    return out


def unit_scale(x, axes, floor: float):
    """``(x / max(|x|, floor), 1 / max(|x|, floor))`` along ``axes`` (Keras's normalize, its norm
    summed in float64): UnitNormalization's forward and Dot's with ``normalize``."""
    with np.errstate(divide="ignore"):  # a zero vector: 1 / 0 = inf, capped below
        inverse = np.minimum(1 / np.sqrt(np.square(x, dtype=np.float64).sum(axis=axes, keepdims=True)), 1 / floor)
    return (x * inverse).astype(x.dtype, copy=False), inverse


def unit_scale_backward(x, inverse, g, axes, floor: float):
    """The gradient through :func:`unit_scale`: ``r g - x r^3 (x . g)`` with ``r = 1 / |x|``; where
    the floor holds r, ``r g``."""
    along = np.sum(x * g, axis=axes, keepdims=True, dtype=np.float64)
    free = inverse < 1 / floor
    return (inverse * g - np.where(free, x * inverse ** 3 * along, 0.0)).astype(g.dtype, copy=False)


def _moved_last(a, axes):
    """``(flat, restore)`` of ``_PerSampleNormalization._flat``: ``axes`` of ``a`` moved last and
    made one."""
    rest = [k for k in range(a.ndim) if k not in axes]
    moved = a.transpose(*rest, *axes)
    flat = moved.reshape(*moved.shape[: len(rest)], -1)
    order = np.argsort([*rest, *axes])
    return flat, lambda f: f.reshape(moved.shape).transpose(order)


class LayerNormalization(FeatureOrdered, _PerSampleNormalization):
    """Layer normalisation, Keras's ``LayerNormalization`` (Ba et al., 2016): each sample
    normalised over ``axis`` by its own mean and (biased) variance, then ``* gamma + beta``,
    the same in training and inference (no moving statistics).

    ``axis`` counts as in Keras, on the shape the user sees (channels-last images, the batch
    axis 0): ``-1`` normalises each pixel's channels, ``[1, 2, 3]`` a whole image; an int or a
    list. ``gamma`` and ``beta`` have the sizes of those axes, in their order (Keras's weight
    shapes and parameter counts). The statistics are computed in float64.

    Differences from Keras: ``rms_scaling=True``, regularizers and constraints are not
    supported (NotImplementedError). A list mixing negative and positive axes (``[2, -1]``):
    here the weights follow the axes in the input's order ((5, 8) for an input (None, 6, 5, 8));
    Keras 3 sorts the numbers as written (-1 before 2: (8, 5)) and then reshapes, not transposes,
    them onto the input, so its weights of that shape do not carry over. Same-sign lists agree.
    """

    _feature_weights = ("gamma", "beta")  # on flattened maps: in the Flatten's order (FeatureOrdered)

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, *, rms_scaling=False, input_shape=None, name=None, trainable=True):
        # rms_scaling keyword-only, as Keras 3 takes it (a **kwargs entry there).
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self._init_common(epsilon, center, scale, beta_initializer, gamma_initializer, rms_scaling=rms_scaling,
                          beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
                          beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axes or any(isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral) for a in axes):
            raise TypeError(f"LayerNormalization axis must be an int or a list of ints, such as -1; got {axis!r}")
        self.axis = int(axes[0]) if not isinstance(axis, (list, tuple)) else [int(a) for a in axes]

    def _compute_internal_output_shape(self, input_shape):
        self._user_axes(len(input_shape))  # an axis the input lacks: ValueError, as Keras's
        return tuple(input_shape)

    def _user_axes(self, rank: int) -> list[int]:
        return user_axes(self.axis, rank, self._who())

    def _internal_axes(self, rank: int) -> list[int]:
        """The normalised axes of the arrays inside the model (images NCHW), batch axis 0."""
        return [internal_axis(a, rank + 1, self._data_format) for a in self._user_axes(rank)]

    def build(self, input_shape):
        shown = display_shape(input_shape, self._data_format)
        self._add_weights(tuple(shown[a - 1] for a in self._user_axes(len(shown))))

    def _flat(self, a):
        return _moved_last(a, sorted(self._internal_axes(a.ndim - 1)))

    def _broadcast(self, w, ndim: int):
        """A weight (in Keras's axis order) shaped to broadcast against the (batch, ...) arrays."""
        internal = self._internal_axes(ndim - 1)
        order = sorted(range(len(internal)), key=lambda k: internal[k])  # its axes in the arrays' order
        shape = [1] * ndim
        for a, k in zip(sorted(internal), order):
            shape[a] = w.shape[k]
        return w.transpose(order).reshape(shape)

    def _to_weight(self, g):
        """A (batch, ...) array's sums over the axes not normalised, as a weight's gradient
        (Keras's axis order)."""
        internal = self._internal_axes(g.ndim - 1)
        keep = sorted(internal)
        total = g.sum(axis=tuple(a for a in range(g.ndim) if a not in keep), dtype=np.float64)
        order = sorted(range(len(internal)), key=lambda k: internal[k])
        return np.ascontiguousarray(total.transpose(np.argsort(order))).astype(g.dtype)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "rms_scaling": False}


class GroupNormalization(_PerSampleNormalization):
    """Group normalisation, Keras's ``GroupNormalization`` (Wu and He, 2018): the channels (along
    ``axis``, Keras's count on the shape the user sees: ``-1``, the channels of channels-last
    images) split into ``groups`` runs of consecutive channels, and each sample normalised per
    group over that group's channels and every other axis (its mean and biased variance), then
    ``* gamma + beta`` per channel; the same in training and inference (no moving statistics).
    ``groups=-1``: one group per channel (instance normalisation; the layer then holds the
    channel count, as Keras's does once built); ``groups=1`` normalises each sample over all of it.
    The channels must be a multiple of ``groups``. ``gamma`` and ``beta`` have one value per
    channel (Keras's shapes and parameter counts). The statistics are computed in float64.

    PyTorch's ``nn.GroupNorm(groups, channels)`` and ``nn.InstanceNorm2d`` are this layer (its
    ONNX files import as it); their default epsilon is 1e-5, Keras's 1e-3.

    Differences from Keras: regularizers and constraints are not supported (NotImplementedError).
    """

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, *, input_shape=None, name=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self._init_common(epsilon, center, scale, beta_initializer, gamma_initializer,
                          beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
                          beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)
        if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral) or not (
                groups == -1 or groups >= 1):
            raise ValueError(f"GroupNormalization groups must be an int >= 1, or -1 (one per channel); got {groups!r}")
        self.groups = int(groups)
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"GroupNormalization axis must be an int, such as -1 (the channels); got {axis!r}")
        self.axis = int(axis)

    def _user_axis(self, rank: int) -> int:
        """The channels' axis of a per-sample shape of ``rank`` axes, as Keras counts it (1 .. rank)."""
        axis = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= rank:
            raise ValueError(f"{self._who()}: axis={self.axis} is not an axis of its input of rank {rank + 1} "
                             f"(1 .. {rank}, or -1 .. -{rank}; 0 is the batch axis)")
        return axis

    def _channel_axis(self, ndim: int) -> int:
        """The channels' axis of the (batch, ...) arrays inside the model (images NCHW)."""
        return internal_axis(self._user_axis(ndim - 1), ndim, self._data_format)

    def _compute_internal_output_shape(self, input_shape):
        shown = display_shape(input_shape, self._data_format)
        channels = shown[self._user_axis(len(shown)) - 1]
        groups = channels if self.groups == -1 else self.groups
        if channels < groups or channels % groups:
            raise ValueError(f"{self._who()}: the {channels} channels (axis {self.axis}) of its input "
                             f"{(None, *shown)} are not a multiple of groups={groups}")
        return tuple(input_shape)

    def build(self, input_shape):
        self._compute_internal_output_shape(input_shape)
        shown = display_shape(input_shape, self._data_format)
        channels = shown[self._user_axis(len(shown)) - 1]
        if self.groups == -1:
            self.groups = channels  # as Keras's build: get_config then says how many
        self._add_weights((channels,))

    def _flat(self, a):
        """(batch, groups, the group's values): the channels moved first, each group's run made one."""
        moved = np.moveaxis(a, self._channel_axis(a.ndim), 1)
        flat = moved.reshape(moved.shape[0], self.groups, -1)
        return flat, lambda f: np.moveaxis(f.reshape(moved.shape), 1, self._channel_axis(a.ndim))

    def _broadcast(self, w, ndim: int):
        shape = [1] * ndim
        shape[self._channel_axis(ndim)] = w.shape[0]
        return w.reshape(shape)

    def _to_weight(self, g):
        axis = self._channel_axis(g.ndim)
        return g.sum(axis=tuple(a for a in range(g.ndim) if a != axis), dtype=np.float64).astype(g.dtype)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "axis": self.axis}


class UnitNormalization(Layer):
    """Keras's ``UnitNormalization``: each sample scaled to unit L2 norm over ``axis``,
    ``x / max(||x||, 1e-12)``, e.g. embeddings before a cosine similarity or a dot product. No
    weights. ``axis`` counts as in Keras, on the shape the user sees (channels-last images, the
    batch axis 0): ``-1`` each pixel's channels, ``[1, 2, 3]`` a whole image; an int or a list.
    A zero vector stays 0 and its gradient is ``1e12 * dy`` (Keras's is NaN there).
    """

    _cache_attrs = ("_x", "_inverse")
    _keeps_feature_order = True
    _FLOOR = 1e-12  # Keras's epsilon here: the smallest norm divided by

    def __init__(self, axis=-1, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axes or any(isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral) for a in axes):
            raise TypeError(f"UnitNormalization axis must be an int or a list of ints, such as -1; got {axis!r}")
        self.axis = int(axes[0]) if not isinstance(axis, (list, tuple)) else [int(a) for a in axes]
        self._x = self._inverse = None

    def _axes(self, ndim: int) -> tuple[int, ...]:
        """The normalised axes of the (batch, ...) arrays inside the model (images NCHW)."""
        who = f"layer {self.name!r} (UnitNormalization)"
        return tuple(internal_axis(a, ndim, self._data_format) for a in user_axes(self.axis, ndim - 1, who))

    def _compute_internal_output_shape(self, input_shape):
        self._axes(len(input_shape) + 1)  # checked when built
        return tuple(input_shape)

    def forward(self, x, training=False):
        y, inverse = unit_scale(x, self._axes(x.ndim), self._FLOOR)
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._x, self._inverse = x, inverse
        return y

    def backward(self, dy):
        if self._x is None:
            raise self._missing_cache()
        return unit_scale_backward(self._x, self._inverse, dy, self._axes(self._x.ndim), self._FLOOR)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
