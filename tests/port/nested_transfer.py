"""Transfer learning by position: a base model nested in the new one is one entry of model.layers."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(3)
(x_train, y_train), _ = keras.datasets.fashion_mnist.load_data()
x = (x_train[:2000] / 255.0).reshape(-1, 28, 28, 1).astype("float32")
y = y_train[:2000]

base = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    layers.Conv2D(8, 3, activation="relu"),
    layers.MaxPooling2D(),
    layers.Conv2D(16, 3, activation="relu"),
], name="base")
model = keras.Sequential([keras.Input(shape=(28, 28, 1)), base, layers.GlobalAveragePooling2D(), layers.Dense(10)])
assert [layer.name for layer in model.layers][0] == "base" and len(model.layers) == 3
assert model.get_layer("base") is base and model.get_layer(index=0) is base

rows = []
model.summary(print_fn=lambda line, *args, **kwargs: rows.append(line))
table = "\n".join(rows)
assert "base (Sequential)" in table and "(None, 11, 11, 16)" in table and "1,248" in table

loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
model.fit(x, y, epochs=3, batch_size=64, verbose=0)  # the base learns its features here

# A new head on the trained base, frozen by its position in model.layers.
new = keras.Sequential([keras.Input(shape=(28, 28, 1)), base, layers.Flatten(), layers.Dense(10)])
new.layers[0].trainable = False  # freezes the whole base, as base.trainable = False does
assert base.trainable is False and all(not layer.trainable for layer in base.layers)
assert len(new.trainable_weights) == 2 and len(new.non_trainable_weights) == 4
new.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
frozen = [w.copy() for w in base.get_weights()]
history = new.fit(x, y, epochs=2, batch_size=64, verbose=0)
assert all(np.array_equal(a, b) for a, b in zip(frozen, base.get_weights()))
assert history.history["accuracy"][-1] > 0.5, history.history

new.layers[0].trainable = True  # then fine-tune everything at a low rate
new.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, metrics=["accuracy"])
new.fit(x, y, epochs=1, batch_size=64, verbose=0)
assert not all(np.array_equal(a, b) for a, b in zip(frozen, base.get_weights()))

# The same base called in a functional model: one entry there too, found by name.
inputs = keras.Input(shape=(28, 28, 1))
features = base(inputs, training=False)
head = keras.Model(inputs, layers.Dense(10)(layers.Flatten()(features)))
assert [type(layer).__name__ for layer in head.layers] == ["InputLayer", "Sequential", "Flatten", "Dense"]
assert head.get_layer("base") is base and head.count_params() == 1248 + 11 * 11 * 16 * 10 + 10

# A JSON round trip keeps the nesting.
clone = keras.models.model_from_json(model.to_json())
assert [type(layer).__name__ for layer in clone.layers] == ["Sequential", "GlobalAveragePooling2D", "Dense"]
clone.set_weights(model.get_weights())
assert np.allclose(clone.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), atol=1e-5)
assert clone.pop().name == "dense"
assert clone.pop().name == "global_average_pooling2d" and clone.pop().name == "base" and not clone.layers
