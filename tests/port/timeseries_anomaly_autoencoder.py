"""keras.io's "Timeseries anomaly detection using an Autoencoder": a Conv1D / Conv1DTranspose
autoencoder trained on normal windows with mse, its largest training reconstruction error as the
threshold, windows above it flagged. The data (NAB, a download there) are made here: daily
cycles with noise, and test windows with a burst in some of them."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(6)
rng = np.random.default_rng(6)
TIME_STEPS = 288  # a day of 5-minute readings


def days(n):
    t = np.arange(TIME_STEPS) / TIME_STEPS
    phase = rng.uniform(0, 0.1, (n, 1))
    return (np.sin(2 * np.pi * (t + phase)) + 0.1 * rng.standard_normal((n, TIME_STEPS)))[..., None].astype("float32")


x_train = days(600)
mean, std = x_train.mean(), x_train.std()
x_train = (x_train - mean) / std
model = keras.Sequential([
    layers.Input(shape=(x_train.shape[1], x_train.shape[2])),
    layers.Conv1D(filters=32, kernel_size=7, padding="same", strides=2, activation="relu"),
    layers.Dropout(rate=0.2),
    layers.Conv1D(filters=16, kernel_size=7, padding="same", strides=2, activation="relu"),
    layers.Conv1DTranspose(filters=16, kernel_size=7, padding="same", strides=2, activation="relu"),
    layers.Dropout(rate=0.2),
    layers.Conv1DTranspose(filters=32, kernel_size=7, padding="same", strides=2, activation="relu"),
    layers.Conv1DTranspose(filters=1, kernel_size=7, padding="same"),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001), loss="mse")
assert model.output_shape == (None, TIME_STEPS, 1)
assert [layer.count_params() for layer in model.layers] == [256, 0, 3600, 1808, 0, 3616, 225]
history = model.fit(x_train, x_train, epochs=12, batch_size=64, validation_split=0.1, verbose=0,
                    callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, mode="min")])
assert history.history["loss"][-1] < 0.5 * history.history["loss"][0], history.history["loss"]

train_mae_loss = np.mean(np.abs(model.predict(x_train, verbose=0) - x_train), axis=1)
threshold = np.max(train_mae_loss)
x_test = (days(100) - mean) / std
bursts = rng.choice(100, 10, replace=False)
for i in bursts:
    start = rng.integers(0, TIME_STEPS - 40)
    x_test[i, start:start + 40, 0] += 3.0  # an hour and a half far off the cycle
test_mae_loss = np.mean(np.abs(model.predict(x_test, verbose=0) - x_test), axis=1).reshape(-1)
anomalies = test_mae_loss > threshold
print(f"threshold {threshold:.3f}, flagged {np.flatnonzero(anomalies).tolist()}, bursts {sorted(bursts.tolist())}")
assert set(np.flatnonzero(anomalies)) == set(bursts.tolist())
