"""Shapes as Keras reports them: ``layer.input_shape``, ``layer.output_shape`` and
``layer.compute_output_shape(...)`` are channels-last with the batch axis first, although the
layers compute in NCHW inside. The expected values follow Keras's formulas (out = floor((in + 2p -
d(k-1) - 1) / s) + 1, "same" = ceil(in / s)); where Keras is installed, every case is also asked of
Keras itself.
"""

import os

import numpy as np
import pytest

import convforge
from convforge import layers

# (constructor, input shape, the output shape by Keras's formulas)
CASES = [
    (lambda: layers.Conv2D(32, 3), (None, 28, 28, 1), (None, 26, 26, 32)),
    (lambda: layers.Conv2D(8, 5, strides=2, padding="same"), (None, 28, 28, 3), (None, 14, 14, 8)),
    (lambda: layers.Conv2D(4, 3, dilation_rate=2), (None, 17, 15, 2), (None, 13, 11, 4)),
    (lambda: layers.Conv2D(4, (1, 7)), (7, 9, 9, 16), (7, 9, 3, 4)),
    (lambda: layers.MaxPooling2D(), (None, 27, 27, 6), (None, 13, 13, 6)),
    (lambda: layers.MaxPooling2D(3, 2, padding="same"), (None, 27, 27, 6), (None, 14, 14, 6)),
    (lambda: layers.AveragePooling2D(2), (None, 8, 6, 5), (None, 4, 3, 5)),
    (lambda: layers.GlobalAveragePooling2D(), (None, 7, 7, 64), (None, 64)),
    (lambda: layers.GlobalMaxPooling2D(), (None, 7, 7, 64), (None, 64)),
    (lambda: layers.Flatten(), (None, 5, 5, 16), (None, 400)),
    (lambda: layers.Dense(10), (None, 400), (None, 10)),
    (lambda: layers.Dropout(0.5), (None, 5, 5, 16), (None, 5, 5, 16)),
    (lambda: layers.BatchNormalization(), (None, 5, 5, 16), (None, 5, 5, 16)),
    (lambda: layers.Activation("relu"), (None, 3, 4, 2), (None, 3, 4, 2)),
    (lambda: layers.ZeroPadding2D(2), (None, 28, 28, 1), (None, 32, 32, 1)),
    (lambda: layers.Cropping2D(((1, 2), (3, 0))), (None, 28, 28, 1), (None, 25, 25, 1)),
    (lambda: layers.UpSampling2D(2), (None, 7, 7, 3), (None, 14, 14, 3)),
    (lambda: layers.Conv2DTranspose(6, 3, strides=2), (None, 7, 7, 3), (None, 15, 15, 6)),
    (lambda: layers.Conv2DTranspose(6, (1, 2), strides=3), (None, 7, 5, 3), (None, 21, 15, 6)),
    (lambda: layers.DepthwiseConv2D(3), (None, 10, 10, 4), (None, 8, 8, 4)),
    (lambda: layers.SeparableConv2D(9, 3, padding="same"), (None, 10, 10, 4), (None, 10, 10, 9)),
    (lambda: layers.Reshape((7, 7, 16)), (None, 784), (None, 7, 7, 16)),
    (lambda: layers.Conv1D(16, 5), (None, 100, 1), (None, 96, 16)),
    (lambda: layers.MaxPooling1D(2), (None, 96, 16), (None, 48, 16)),
    (lambda: layers.GlobalAveragePooling1D(), (None, 96, 16), (None, 16)),
    (lambda: layers.ZeroPadding1D((2, 3)), (None, 10, 4), (None, 15, 4)),
    (lambda: layers.ZeroPadding1D(1, data_format="channels_first"), (None, 4, 10), (None, 4, 12)),
    (lambda: layers.Cropping1D((1, 2)), (None, 10, 4), (None, 7, 4)),
    (lambda: layers.UpSampling1D(3), (None, 10, 4), (None, 30, 4)),
    (lambda: layers.DepthwiseConv1D(5, strides=2, depth_multiplier=3), (None, 100, 4), (None, 48, 12)),
    (lambda: layers.SeparableConv1D(8, 3, padding="same", data_format="channels_first"), (None, 4, 25),
     (None, 8, 25)),
    (lambda: layers.Conv1DTranspose(6, 3, strides=2), (None, 7, 3), (None, 15, 6)),
    (lambda: layers.Conv1DTranspose(6, 4, strides=3, padding="same", output_padding=1), (None, 7, 3),
     (None, 19, 6)),
]


def _label(case):
    return type(case[0]()).__name__ + str(case[1])


@pytest.mark.parametrize("case", CASES, ids=[_label(c) for c in CASES])
def test_compute_output_shape_is_keras_shaped(case):
    make, shape_in, expected = case
    assert make().compute_output_shape(shape_in) == expected


def test_merge_layers_take_a_list_of_shapes():
    assert layers.Add().compute_output_shape([(None, 4, 4, 2), (None, 4, 4, 2)]) == (None, 4, 4, 2)
    assert layers.Concatenate().compute_output_shape([(None, 4, 4, 2), (None, 4, 4, 3)]) == (None, 4, 4, 5)
    with pytest.raises(ValueError, match="incompatible shapes"):
        layers.Add().compute_output_shape([(None, 4, 4, 2), (None, 4, 4, 3)])


def test_sequential_layers_report_channels_last_shapes():
    model = convforge.Sequential([
        layers.Conv2D(6, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D(),
        layers.Conv2D(16, 5, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])
    shapes = [(layer.input_shape, layer.output_shape) for layer in model.layers]
    assert shapes == [
        ((None, 28, 28, 1), (None, 28, 28, 6)),
        ((None, 28, 28, 6), (None, 14, 14, 6)),
        ((None, 14, 14, 6), (None, 10, 10, 16)),
        ((None, 10, 10, 16), (None, 5, 5, 16)),
        ((None, 5, 5, 16), (None, 400)),
        ((None, 400), (None, 10)),
    ]
    # The filter-plotting recipe: the kernel in Keras's (kh, kw, in, filters) layout.
    assert model.layers[0].get_weights()[0].shape == (5, 5, 1, 6)
    assert model.output_shape == model.layers[-1].output_shape


def test_functional_layers_agree_with_their_tensors():
    x = convforge.Input((12, 12, 3))
    a = layers.Conv2D(4, 3, padding="same")(x)
    b = layers.Conv2D(5, 1)(x)
    merged = layers.Concatenate()([a, b])
    y = layers.GlobalAveragePooling2D()(merged)
    model = convforge.Model(x, y)
    concat = model.layers[-2]
    assert concat.input_shape == [(None, 12, 12, 4), (None, 12, 12, 5)]
    assert concat.output_shape == tuple(merged.shape) == (None, 12, 12, 9)
    assert model.layers[-1].output_shape == tuple(y.shape) == (None, 9)


class KerasStyleCrop(layers.Layer):
    """A custom layer that states its output shape the Keras way (channels-last, batch first)."""

    def compute_output_shape(self, input_shape):
        batch, h, w, c = input_shape
        return (batch, h - 2, w - 2, c)

    def forward(self, x, training=False):
        return x[:, :, 1:-1, 1:-1].copy()

    def backward(self, dy):
        dx = np.zeros(dy.shape[:2] + (dy.shape[2] + 2, dy.shape[3] + 2), dy.dtype)
        dx[:, :, 1:-1, 1:-1] = dy
        return dx


def test_custom_layer_with_keras_compute_output_shape_builds_a_model():
    model = convforge.Sequential([layers.InputLayer((8, 6, 3)), KerasStyleCrop(), layers.Conv2D(2, 1)])
    assert model.layers[0].output_shape == (None, 6, 4, 3)
    assert model.output_shape == (None, 6, 4, 2)
    y = model.predict(np.ones((2, 8, 6, 3), np.float32), verbose=0)
    assert y.shape == (2, 6, 4, 2)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"Dense.compute_output_shape: input_shape must be a tuple with the batch axis"):
        layers.Dense(3).compute_output_shape((28,))
    with pytest.raises(ValueError, match="positive ints"):
        layers.Conv2D(3, 3).compute_output_shape((None, 28, 0, 1))
    with pytest.raises(ValueError, match="batch size"):
        layers.Conv2D(3, 3).compute_output_shape((-1, 28, 28, 1))
    with pytest.raises(AttributeError, match="no output shape yet"):
        layers.Dense(3).output_shape


@pytest.mark.parametrize("case", CASES, ids=[_label(c) for c in CASES])
def test_compute_output_shape_matches_real_keras(case):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    make, shape_in, expected = case
    ours = make()
    theirs = getattr(keras.layers, type(ours).__name__).from_config(_keras_config(ours))
    assert tuple(theirs.compute_output_shape(shape_in)) == expected


def _keras_config(layer):
    config = dict(layer.get_config())
    config.pop("name", None)
    return config
