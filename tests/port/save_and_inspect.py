"""Inspect a model: weights, kernels, trainable flags, pop, JSON round trip, set_weights."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(2)
model = keras.Sequential([
    layers.Conv2D(8, 3, activation="relu", input_shape=(28, 28, 1), name="conv"),
    layers.MaxPooling2D(),
    layers.Flatten(),
    layers.Dense(32, activation="relu", name="hidden"),
    layers.Dense(10, activation="softmax", name="out"),
])
conv = model.get_layer("conv")
kernel, bias = conv.get_weights()
assert kernel.size == 3 * 3 * 1 * 8 and bias.shape == (8,)
assert len(model.weights) == 6 and len(model.trainable_weights) == 6
assert model.get_layer("hidden").kernel.shape == (1352, 32)

model.get_layer("conv").trainable = False  # freeze the feature extractor
assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 2
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
(x_train, y_train), _ = keras.datasets.fashion_mnist.load_data()
x, y = x_train[:1000] / 255.0, y_train[:1000]
before = conv.get_weights()[0].copy()
model.fit(x, y, epochs=1, verbose=0)
assert np.array_equal(conv.get_weights()[0], before)

clone = keras.models.model_from_json(model.to_json())
clone.set_weights(model.get_weights())
assert np.allclose(clone.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), atol=1e-6)
popped = clone.pop()
assert popped.name == "out" and clone.output_shape == (None, 32)
clone.add(layers.Dense(3, activation="softmax"))
assert clone.output_shape == (None, 3) and clone.count_params() == 80 + 43296 + 99
