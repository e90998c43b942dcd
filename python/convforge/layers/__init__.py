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
Dense, Dropout, Reshape, Lambda (a NumPy function, no gradient), ReLU, Tanh, Sigmoid, Softmax, LeakyReLU, PReLU, ELU, Softplus,
Swish (SiLU), GELU, Activation, Identity, Input; Embedding (token ids -> vectors); Conv1D, DepthwiseConv1D,
SeparableConv1D, Conv1DTranspose, MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D,
GlobalMaxPooling1D, ZeroPadding1D, Cropping1D, UpSampling1D (sequences, channels-last or channels-first);
Conv2DTranspose, UpSampling2D, Permute, Rescaling, Normalization (adapt() to data), Resizing, CenterCrop;
RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast, RandomBrightness, RandomCrop
(training-only augmentation);
SpatialDropout1D, SpatialDropout2D, GaussianNoise, GaussianDropout (training-only noise);
BatchNormalization, LayerNormalization, GroupNormalization, GlobalAveragePooling2D (GlobalAvgPool2D), GlobalMaxPooling2D
(GlobalMaxPool2D), ZeroPadding2D, Cropping2D, DepthwiseConv2D, SeparableConv2D;
merge layers for functional models: Add, Subtract, Multiply, Average, Maximum, Minimum,
Concatenate.
"""

from . import initializers
from .activations import ELU, GELU, Activation, LeakyReLU, PReLU, ReLU, SiLU, Sigmoid, Softmax, Softplus, Swish, Tanh
from .augmentation import (RandomBrightness, RandomContrast, RandomCrop, RandomFlip, RandomRotation, RandomTranslation,
                           RandomZoom)
from .base import Layer
from .conv import Conv2D
from .conv1d import (
    AveragePooling1D,
    Conv1D,
    Conv1DTranspose,
    Cropping1D,
    DepthwiseConv1D,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    MaxPooling1D,
    SeparableConv1D,
    UpSampling1D,
    ZeroPadding1D,
)
from .conv_transpose import Conv2DTranspose
from .embedding import Embedding
from .core import Dense, Dropout, Flatten, Identity, Input, InputLayer, Lambda, Reshape
from .noise import GaussianDropout, GaussianNoise, SpatialDropout1D, SpatialDropout2D
from .merging import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from .pooling import AveragePooling2D, AvgPool2D, MaxPool2D, MaxPooling2D
from .preprocessing import CenterCrop, Normalization, Resizing
from .reshaping import Permute, Rescaling, UpSampling2D

# Keras's short aliases of the 1-D layers.
MaxPool1D, AvgPool1D, GlobalAvgPool1D, GlobalMaxPool1D = (MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D,
                                                       GlobalMaxPooling1D)
# Keras's long aliases (Keras 1's names, which Keras 3 keeps and older course notes use).
Convolution1D, Convolution2D, Convolution2DTranspose = Conv1D, Conv2D, Conv2DTranspose
Convolution1DTranspose, SeparableConvolution1D = Conv1DTranspose, SeparableConv1D

# ResNet / Inception / MobileNet layers (issue 13).
from .depthwise import DepthwiseConv2D, SeparableConv2D

SeparableConvolution2D = SeparableConv2D
from .global_pooling import GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D, GlobalMaxPooling2D
from .normalization import BatchNormalization, GroupNormalization, LayerNormalization, UnitNormalization
from .reshaping import Cropping2D, ZeroPadding2D

__all__ = [
    "UpSampling2D",
    "Normalization",
    "Lambda",
    "Resizing",
    "CenterCrop",
    "Rescaling",
    "RandomZoom",
    "RandomTranslation",
    "RandomRotation",
    "RandomFlip",
    "RandomContrast",
    "RandomCrop",
    "RandomBrightness",
    "Permute",
    "MaxPooling1D",
    "MaxPool1D",
    "GlobalAvgPool1D",
    "GlobalAveragePooling1D",
    "GlobalMaxPool1D",
    "GlobalMaxPooling1D",
    "Conv2DTranspose",
    "Conv1D",
    "Conv1DTranspose",
    "Cropping1D",
    "UpSampling1D",
    "ZeroPadding1D",
    "Convolution1D",
    "Convolution1DTranspose",
    "DepthwiseConv1D",
    "SeparableConv1D",
    "SeparableConvolution1D",
    "Convolution2D",
    "Convolution2DTranspose",
    "SeparableConvolution2D",
    "AvgPool1D",
    "AveragePooling1D",
    "ELU",
    "PReLU",
    "GELU",
    "Activation",
    "Add",
    "Average",
    "Concatenate",
    "Dot",
    "LeakyReLU",
    "SiLU",
    "Softplus",
    "Swish",
    "AveragePooling2D",
    "AvgPool2D",
    "Conv2D",
    "Dense",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "Embedding",
    "Flatten",
    "Identity",
    "Input",
    "InputLayer",
    "Layer",
    "MaxPool2D",
    "MaxPooling2D",
    "Maximum",
    "Minimum",
    "Multiply",
    "ReLU",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Subtract",
    "Tanh",
    "initializers",
    "BatchNormalization",
    "LayerNormalization",
    "UnitNormalization",
    "GroupNormalization",
    "Cropping2D",
    "DepthwiseConv2D",
    "GlobalAveragePooling2D",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    "GlobalMaxPooling2D",
    "SeparableConv2D",
    "ZeroPadding2D",
    "add",
    "average",
    "concatenate",
    "dot",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]


from .. import _unsupported  # noqa: E402

__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())
