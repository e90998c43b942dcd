"""Weights given by arrays (as from a Keras model's get_weights) predict the same on both libraries."""
import numpy as np

import convforge as keras
from convforge import layers

rng = np.random.default_rng(5)
x = rng.standard_normal((6, 10, 10, 3)).astype("float32")


def check(model):
    weights = [rng.standard_normal(w.shape).astype("float32") * 0.3 for w in model.get_weights()]
    model.set_weights(weights)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    # The head by hand: Keras flattens the channels-last feature maps in (height, width, channels) order.
    maps = keras.Model(model.inputs, model.get_layer("features").output).predict(x, verbose=0)
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    expected = np.maximum(maps, 0).reshape(len(x), -1) @ kernel + bias
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


check(keras.Sequential([
    keras.Input(shape=(10, 10, 3)),
    layers.Conv2D(4, 3, name="features"),
    layers.Flatten(),
    layers.Dropout(0.5),
    layers.Activation("relu"),
    layers.Dense(7, name="head"),
]))

inputs = keras.Input(shape=(10, 10, 3))
features = layers.Conv2D(5, 3, strides=2, name="features")(inputs)
check(keras.Model(inputs, layers.Dense(3, name="head")(layers.ReLU()(layers.Flatten()(features)))))
