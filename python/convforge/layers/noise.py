"""Regularization by noise in training, the identity at inference: Keras's SpatialDropout1D,
SpatialDropout2D, GaussianNoise and GaussianDropout.

Like :class:`~convforge.layers.Dropout`, their draws come from convforge's generator
(:func:`convforge.seed`): reproducible runs, not Keras's draws, and no per-layer ``seed=``.
At inference (``predict``, ``evaluate``, a model called with ``training=False``) each returns
its input; ``model.export`` writes nothing for them.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import random as _random
from .base import Layer, resolve_data_format
from .core import Dropout

__all__ = ["GaussianDropout", "GaussianNoise", "SpatialDropout1D", "SpatialDropout2D"]


class SpatialDropout1D(Dropout):
    """Dropout of whole channels of a sequence, Keras's ``SpatialDropout1D``.

    On ``(batch, steps, channels)``: in training each channel of each sample is zeroed with
    probability ``rate`` over all its steps, the rest scaled by ``1 / (1 - rate)`` (Keras's
    noise shape ``(batch, 1, channels)``); the identity at inference. Neighbouring steps of a
    convolution's output are alike, so element-wise dropout hardly regularizes them.

    Differences from Keras: ``rate`` must be below 1 (Keras accepts 1); no ``seed=`` (seed
    every layer with :func:`convforge.seed`).
    """

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"SpatialDropout1D expects input of shape (batch, steps, channels); got {self._show(input_shape)}")
        return tuple(input_shape)

    def _noise_shape(self, shape) -> tuple:
        return (shape[0], 1, shape[2])  # the model's sequences are (batch, steps, channels)


class SpatialDropout2D(Dropout):
    """Dropout of whole feature maps, Keras's ``SpatialDropout2D``.

    On images: in training each feature map (channel) of each sample is zeroed with
    probability ``rate``, the rest scaled by ``1 / (1 - rate)`` (Keras's noise shape
    ``(batch, 1, 1, channels)`` channels-last); the identity at inference. Adjacent pixels of a
    feature map are strongly correlated, so element-wise dropout of a conv's output mostly
    lowers the learning rate (Tompson et al., 2014).

    ``data_format`` is kept for Keras's signature and config; the model's layout decides where
    the channels are. Differences from Keras: ``rate`` must be below 1; no ``seed=``.
    """

    _expects_images = True

    def __init__(self, rate, data_format=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(rate, name=name, input_shape=input_shape, trainable=trainable)
        self.data_format = resolve_data_format(data_format)

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"SpatialDropout2D expects input of shape (batch, height, width, channels); got {self._show(input_shape)}"
            )
        return tuple(input_shape)

    def _noise_shape(self, shape) -> tuple:
        return (shape[0], shape[1], 1, 1)  # inside a model images are (batch, channels, height, width)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


def _unit_interval(layer: str, argument: str, value, upper_open: bool) -> float:
    bad = isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value)
    if bad or not (0 <= value < 1 if upper_open else 0 <= value <= 1):
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{layer} {argument} must be a number in {interval}; got {value!r}")
    return float(value)


class _NoiseLayer(Layer):
    """A layer that draws noise in training and is the identity at inference (and in a
    ``training=False`` call, as Dropout)."""

    _keeps_feature_order = True

    _cache_attrs = ("_noise",)

    def _compute_internal_output_shape(self, input_shape):
        return tuple(input_shape)

    def _draw(self, x):
        """This training step's noise, x's shape and dtype, from convforge's generator."""
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"layer {self.name!r} ({type(self).__name__}) expects float32 or float64 input; got {x.dtype}")
        noise = self._buffers("noise", x.shape, x.dtype)
        _random.get_generator().standard_normal(dtype=x.dtype, out=noise)
        return noise

    def _check_dy(self, dy):
        if self._noise is None:
            raise self._missing_cache()
        if dy.shape != self._noise.shape:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}): dy has shape {dy.shape}, its output {self._noise.shape}")


class GaussianNoise(_NoiseLayer):
    """Adds zero-centred Gaussian noise of standard deviation ``stddev`` in training, Keras's
    ``GaussianNoise``; the identity at inference. A regularizer for real-valued inputs (a form
    of data augmentation); the gradient passes through unchanged.

    ``stddev`` must be in [0, 1], as in Keras. No ``seed=`` (see :func:`convforge.seed`).
    """

    def __init__(self, stddev, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.stddev = _unit_interval("GaussianNoise", "stddev", stddev, upper_open=False)
        self._noise = None

    def forward(self, x, training=False):
        if not training:  # the training cache stays: predict may run during fit (docs/RELIABILITY.md 10)
            return x
        if self.stddev == 0:
            self._noise = None
            return x
        noise = self._draw(x)
        noise *= self.stddev
        self._noise = noise
        return np.add(x, noise, out=self._buffers("y", x.shape, x.dtype))

    def backward(self, dy):
        if self.stddev == 0:
            return dy
        self._check_dy(dy)
        return dy

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


class GaussianDropout(_NoiseLayer):
    """Multiplies each value by Gaussian noise of mean 1 and standard deviation
    ``sqrt(rate / (1 - rate))`` in training, Keras's ``GaussianDropout``; the identity at
    inference. The gradient is multiplied by the same noise.

    Differences from Keras: ``rate`` must be below 1 (Keras's rate 1 divides by zero in
    training); no ``seed=``.
    """

    def __init__(self, rate, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        self.rate = _unit_interval("GaussianDropout", "rate", rate, upper_open=True)
        self._noise = None

    def forward(self, x, training=False):
        if not training:  # the training cache stays: predict may run during fit (docs/RELIABILITY.md 10)
            return x
        if self.rate == 0:
            self._noise = None
            return x
        noise = self._draw(x)
        noise *= math.sqrt(self.rate / (1.0 - self.rate))
        noise += 1.0
        self._noise = noise
        return np.multiply(x, noise, out=self._buffers("y", x.shape, x.dtype))

    def backward(self, dy):
        if self.rate == 0:
            return dy
        self._check_dy(dy)
        return np.multiply(dy, self._noise, out=self._buffers("dx", dy.shape, dy.dtype))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}
