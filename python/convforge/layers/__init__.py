"""Keras-style layers: ``from convforge import layers`` where you had ``from tensorflow.keras import layers``.

>>> from convforge import layers
>>> model = convforge.Sequential([                                   # doctest: +SKIP
...     layers.Conv2D(64, (3, 3), activation="relu", input_shape=(28, 28, 1)),
...     layers.MaxPooling2D(2, 2),
...     layers.Flatten(),
...     layers.Dense(10, activation="softmax"),
... ])

At the API images are channels-last ``(batch, height, width, channels)``, as
in Keras; inside a model they are NCHW, the kernels' layout (see
:mod:`convforge.layers.base`). Subclass :class:`Layer` to write your own
layer in NumPy.

Layers
------
Conv2D, MaxPooling2D (MaxPool2D), AveragePooling2D (AvgPool2D), Flatten,
Dense, Dropout, Reshape, ReLU, Tanh, Sigmoid, Softmax, LeakyReLU, ELU, Softplus,
Swish (SiLU), GELU, Activation, Input.
"""

from . import initializers
from .activations import ELU, GELU, Activation, LeakyReLU, ReLU, SiLU, Sigmoid, Softmax, Softplus, Swish, Tanh
from .base import Layer
from .conv import Conv2D
from .core import Dense, Dropout, Flatten, Input, InputLayer, Reshape
from .pooling import AveragePooling2D, AvgPool2D, MaxPool2D, MaxPooling2D

__all__ = [
    "ELU",
    "GELU",
    "Activation",
    "LeakyReLU",
    "SiLU",
    "Softplus",
    "Swish",
    "AveragePooling2D",
    "AvgPool2D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Input",
    "InputLayer",
    "Layer",
    "MaxPool2D",
    "MaxPooling2D",
    "ReLU",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "initializers",
]
