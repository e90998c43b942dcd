"""Conv1D on sequences: detect a pulse in a noisy signal; binary cross-entropy with Dense(1, 'sigmoid')."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(4)
rng = np.random.default_rng(4)
n, steps = 1200, 64
x = rng.normal(0, 0.5, (n, steps, 1)).astype("float32")
y = rng.integers(0, 2, n).astype("float32")
for i in np.flatnonzero(y):
    start = rng.integers(0, steps - 8)
    x[i, start : start + 8, 0] += np.hanning(8) * 2

model = keras.Sequential([
    keras.Input(shape=(steps, 1)),
    layers.Conv1D(16, 7, activation="relu", padding="same"),
    layers.MaxPooling1D(2),
    layers.Conv1D(16, 5, activation="relu"),
    layers.GlobalAveragePooling1D(),
    layers.Dense(1, activation="sigmoid"),
])
assert model.output_shape == (None, 1)
assert [layer.count_params() for layer in model.layers] == [128, 0, 1296, 0, 17]
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy", keras.metrics.AUC()])
model.fit(x[:1000], y[:1000], epochs=6, batch_size=32, validation_data=(x[1000:], y[1000:]), verbose=0)
loss, acc, auc = model.evaluate(x[1000:], y[1000:], verbose=0)
print(f"accuracy {acc:.3f} auc {auc:.3f}")
assert acc > 0.85 and auc > 0.9, (acc, auc)
