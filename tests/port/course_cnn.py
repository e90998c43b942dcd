"""The course's CNN on Fashion-MNIST (tf.keras tutorial style), with `import convforge as keras`."""
import contextlib
import io

import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train, y_train = x_train[:3000] / 255.0, y_train[:3000]
x_test, y_test = x_test[:1000] / 255.0, y_test[:1000]

model = keras.Sequential([
    layers.Conv2D(64, (3, 3), activation="relu", input_shape=(28, 28, 1)),
    layers.MaxPooling2D(2, 2),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.MaxPooling2D(2, 2),
    layers.Flatten(),
    layers.Dense(128, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
out = io.StringIO()
with contextlib.redirect_stdout(out):
    model.summary()
for shape in ["(None, 26, 26, 64)", "(None, 13, 13, 64)", "(None, 11, 11, 64)", "(None, 5, 5, 64)", "(None, 1600)",
              "(None, 128)", "(None, 10)"]:
    assert shape in out.getvalue(), shape
assert [layer.count_params() for layer in model.layers] == [640, 0, 36928, 0, 0, 204928, 1290]
assert model.count_params() == 243786

history = model.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy {test_acc:.3f}")
assert test_acc > 0.65, test_acc  # seeded run: 0.707 after one epoch on 3000 images
predictions = model.predict(x_test[:5], verbose=0)
assert predictions.shape == (5, 10) and np.allclose(predictions.sum(axis=1), 1, atol=1e-5)
