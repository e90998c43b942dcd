"""An MLP with L2 regularization, gelu/swish activations, Nesterov SGD, a Python generator with
steps_per_epoch, and validation_data as a tuple."""
import numpy as np

import convforge as keras
from convforge import layers, regularizers

keras.utils.set_random_seed(7)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train[:4096].reshape(-1, 784).astype("float32") / 255
x_test = x_test[:1000].reshape(-1, 784).astype("float32") / 255
y_train, y_test = y_train[:4096], y_test[:1000]


def batches(batch_size=128):
    while True:
        order = np.random.permutation(len(x_train))
        for start in range(0, len(x_train), batch_size):
            idx = order[start : start + batch_size]
            yield x_train[idx], y_train[idx]


model = keras.Sequential([
    layers.Dense(128, activation="gelu", input_shape=(784,), kernel_regularizer=regularizers.l2(1e-4)),
    layers.Dropout(0.1),
    layers.Dense(64, activation="swish", kernel_regularizer=keras.regularizers.L1L2(l1=1e-6, l2=1e-4)),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(batches(), steps_per_epoch=32, epochs=2, validation_data=(x_test, y_test), verbose=0)
assert len(history.history["val_accuracy"]) == 2
_, acc = model.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy {acc:.3f}")
assert acc > 0.7, acc  # seeded run: 0.757
