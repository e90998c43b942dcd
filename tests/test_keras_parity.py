"""The issue-13 layers against real Keras 3 (torch backend) on the same weights: output shapes,
parameter counts (trainable and not), inference and training outputs, moving statistics.

Keras is an optional test dependency (the ``keras`` extra; CI installs it with torch).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import convforge
from convforge import layers as L

os.environ.setdefault("KERAS_BACKEND", "torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # keras/torch import-time deprecation notices are not ours
    keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("these checks run Keras on its torch backend (KERAS_BACKEND=torch)", allow_module_level=True)


def _keras_weights(klayer):
    # Not klayer.get_weights(): its np.array(variable) warns under NumPy 2 (an error here).
    return [v.value.detach().cpu().numpy() for v in klayer.weights]


def _randomise(model, rng):
    for layer in model.layers:
        new = []
        for name, w in zip(layer.params, layer.get_weights()):  # Keras's layouts, as set_weights takes
            if name == "moving_variance":
                new.append(rng.uniform(0.5, 2.0, w.shape))
            else:
                new.append(rng.standard_normal(w.shape) * 0.5)
        if new:
            layer.set_weights(new)


def _keras_twin(model):
    # In float64: Keras's batch variance is E[x^2] - E[x]^2 (keras/src/backend/torch/nn.py, moments),
    # which in float32 loses digits that convforge's two-pass double sums keep.
    k = keras.Sequential([keras.Input(model.input_shape[1:], dtype="float64")])
    for layer in model.layers:
        cls = getattr(keras.layers, type(layer).__name__)
        config = layer.get_config()
        config.pop("input_shape", None)
        config.pop("name", None)
        k.add(cls(**config, dtype="float64"))
    for layer, klayer in zip(model.layers, k.layers):
        if layer.params:
            klayer.set_weights(layer.get_weights())  # already in Keras's layouts
    return k


STACKS = {
    "conv-bn-gap": lambda: [
        L.Conv2D(8, 3, padding="same", use_bias=False, input_shape=(9, 11, 3)),
        L.BatchNormalization(),
        L.Activation("relu"),
        L.GlobalAveragePooling2D(),
        L.Dense(5),
        L.BatchNormalization(momentum=0.9, epsilon=1e-2),
    ],
    "pad-depthwise-crop-gmp": lambda: [
        L.ZeroPadding2D(((1, 2), (0, 1)), input_shape=(8, 7, 4)),
        L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu"),
        L.BatchNormalization(center=False),
        L.Cropping2D(((1, 0), (0, 1))),
        L.GlobalMaxPooling2D(keepdims=True),
    ],
    # keras.io's "Timeseries classification from scratch": Conv1D -> BatchNormalization -> ReLU on
    # (batch, steps, channels); a BatchNormalization first reads the model's input itself.
    "conv1d-bn-relu-gap1d": lambda: [
        L.BatchNormalization(input_shape=(20, 3)),
        L.Conv1D(8, 3, padding="same"),
        L.BatchNormalization(),
        L.ReLU(),
        L.Conv1D(4, 3),
        L.BatchNormalization(momentum=0.9, center=False),
        L.GlobalAveragePooling1D(),
        L.Dense(2),
    ],
    # The steps' reshaping layers between them (their configs build Keras's layers as they are).
    "pad1d-conv1d-crop1d-upsampling1d": lambda: [
        L.ZeroPadding1D((1, 2), input_shape=(10, 3)),
        L.Conv1D(4, 3, activation="relu"),
        L.BatchNormalization(),
        L.Cropping1D((2, 1)),
        L.UpSampling1D(3),
        L.Conv1D(2, 4, strides=2),
        L.GlobalMaxPooling1D(),
    ],
    # The 1-D depthwise, separable and transposed convolutions (a 1-D U-Net's or a separable
    # audio model's blocks): Keras's weights, by name and order, and outputs.
    "depthwise-separable-transpose-1d": lambda: [
        L.DepthwiseConv1D(3, padding="same", depth_multiplier=2, activation="relu", input_shape=(16, 3)),
        L.BatchNormalization(),
        L.SeparableConv1D(5, 3, strides=2, dilation_rate=1, depth_multiplier=2),
        L.Conv1DTranspose(4, 3, strides=2, padding="same", output_padding=1),
        L.SeparableConv1D(3, 2, dilation_rate=2, use_bias=False, data_format="channels_first"),
        L.DepthwiseConv1D(2, data_format="channels_first"),
    ],
    "separable": lambda: [
        L.SeparableConv2D(6, 3, padding="same", depth_multiplier=3, input_shape=(10, 10, 2)),
        L.BatchNormalization(scale=False),
        L.DepthwiseConv2D((3, 2), dilation_rate=2, use_bias=False),
        L.SeparableConv2D(4, 1, strides=(1, 2)),
    ],
}


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_same_shapes_counts_and_outputs_as_keras(stack, rng):
    model = convforge.Sequential(STACKS[stack]())
    _randomise(model, rng)
    k = _keras_twin(model)
    assert model.output_shape == tuple(k.output_shape)
    assert model.count_params() == k.count_params()
    for layer, klayer in zip(model.layers, k.layers):
        assert layer.output_shape == tuple(klayer.output.shape)
        assert layer.compute_output_shape(tuple(klayer.input.shape)) == tuple(klayer.compute_output_shape(klayer.input.shape))
        assert layer.count_params() == klayer.count_params()
        assert layer.count_trainable_params() == sum(int(np.prod(w.shape)) for w in klayer.trainable_weights)
        assert [w.name for w in klayer.weights] == list(layer.params)  # same weights, Keras's order

    x = rng.standard_normal((16, *model.input_shape[1:])).astype(np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(k(x64, training=False).detach().cpu()),
                               rtol=1e-4, atol=1e-4)

    # Training mode: batch statistics, and the moving statistics updated as Keras does.
    y_train = model(x, training=True)
    k_train = np.asarray(k(x64, training=True).detach().cpu())
    np.testing.assert_allclose(y_train, k_train, rtol=1e-4, atol=1e-4)
    for layer, klayer in zip(model.layers, k.layers):
        if isinstance(layer, L.BatchNormalization):
            for ours, theirs in zip(layer.get_weights()[-2:], _keras_weights(klayer)[-2:]):
                np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
