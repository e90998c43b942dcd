"""A hand-written training loop with train_on_batch / test_on_batch / predict_on_batch."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(6)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train, y_train = x_train[:2560].astype("float32") / 255, y_train[:2560]
x_test, y_test = x_test[:512].astype("float32") / 255, y_test[:512]

model = keras.Sequential([
    layers.Flatten(input_shape=(28, 28)),
    layers.Dense(128),
    layers.LeakyReLU(negative_slope=0.1),
    layers.Dense(10),
])
model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["sparse_categorical_accuracy"])
batch_size = 64
rng = np.random.default_rng(6)
for epoch in range(2):
    model.reset_metrics()
    order = rng.permutation(len(x_train))
    for start in range(0, len(x_train), batch_size):
        idx = order[start : start + batch_size]
        loss, acc = model.train_on_batch(x_train[idx], y_train[idx])
    print(f"epoch {epoch + 1}: loss {loss:.3f} accuracy {acc:.3f}")
model.reset_metrics()
for start in range(0, len(x_test), 128):
    test_loss, test_acc = model.test_on_batch(x_test[start : start + 128], y_test[start : start + 128])
logits = model.predict_on_batch(x_test[:100])
assert logits.shape == (100, 10)
print(f"test accuracy {test_acc:.3f}")
assert test_acc > 0.7 and np.mean(logits.argmax(axis=1) == y_test[:100]) > 0.65
