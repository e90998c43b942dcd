"""Keras 3's saving guide: a checkpoint per epoch to .keras, load_model, resume training, weights
alone to .weights.h5 (a functional model with a residual block and a frozen stem)."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(3)
inputs = keras.Input(shape=(28, 28, 1), name="image")
x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
x = layers.BatchNormalization()(x)
x = layers.Activation("relu")(x)
y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
x = layers.Add()([x, y])
x = layers.MaxPooling2D()(x)
x = layers.Flatten()(x)
outputs = layers.Dense(10, activation="softmax")(x)
model = keras.Model(inputs, outputs)
model.get_layer("stem").trainable = False
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])

(x_train, y_train), _ = keras.datasets.fashion_mnist.load_data()
x_all, y_all = x_train[:1200, :, :, None] / 255.0, y_train[:1200]
x_fit, y_fit, x_val, y_val = x_all[:1000], y_all[:1000], x_all[1000:], y_all[1000:]

checkpoint = keras.callbacks.ModelCheckpoint("best.keras", monitor="val_loss", save_best_only=True)
history = model.fit(x_fit, y_fit, epochs=2, batch_size=50, validation_data=(x_val, y_val),
                    callbacks=[checkpoint], verbose=0)
model.save("last.keras")

restored = keras.models.load_model("last.keras")
assert [layer.name for layer in restored.layers] == [layer.name for layer in model.layers]
assert restored.count_params() == model.count_params() == 80 + 32 + 584 + 15690
assert not restored.get_layer("stem").trainable
assert np.allclose(restored.predict(x_val[:16], verbose=0), model.predict(x_val[:16], verbose=0), atol=1e-6)
assert np.allclose(restored.evaluate(x_val, y_val, verbose=0), model.evaluate(x_val, y_val, verbose=0), atol=1e-6)

# Training resumes from the file: the optimizer's moments come back with the weights.
batch = (x_fit[:50], y_fit[:50])
model.train_on_batch(*batch)
restored.train_on_batch(*batch)
for a, b in zip(model.get_weights(), restored.get_weights()):
    assert np.allclose(a, b, atol=1e-6)

best = keras.models.load_model("best.keras")
assert best.evaluate(x_val, y_val, verbose=0)[1] > 0.5

model.save_weights("model.weights.h5")
twin = keras.models.clone_model(model)
twin.load_weights("model.weights.h5")
assert np.allclose(twin.predict(x_val[:16], verbose=0), model.predict(x_val[:16], verbose=0), atol=1e-6)
