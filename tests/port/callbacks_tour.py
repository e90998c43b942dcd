"""Callbacks: EarlyStopping, ReduceLROnPlateau, CSVLogger, LearningRateScheduler, History."""
import csv

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(1)
(x_train, y_train), _ = keras.datasets.fashion_mnist.load_data()
x_train, y_train = x_train[:2000].reshape(-1, 784).astype("float32") / 255, y_train[:2000]

model = keras.models.Sequential([
    keras.Input(shape=(784,)),
    layers.Dense(64, activation="relu"),
    layers.Dropout(0.2),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])


def schedule(epoch, lr):
    return lr if epoch < 2 else lr * 0.5


epoch_losses = []
callbacks = [
    keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch_losses.append(logs["val_loss"])),
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_lr=1e-5),
    keras.callbacks.CSVLogger("training.csv"),
    keras.callbacks.LearningRateScheduler(schedule),
]
history = model.fit(x_train, y_train, epochs=4, batch_size=64, validation_split=0.2, callbacks=callbacks, verbose=0)
assert isinstance(history, keras.callbacks.History)
assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(history.history)
epochs_run = len(history.history["loss"])
with open("training.csv", newline="") as f:
    rows = list(csv.DictReader(f))
assert len(rows) == epochs_run and "val_accuracy" in rows[0]
assert epoch_losses == history.history["val_loss"]  # the LambdaCallback saw every epoch's logs
assert history.history["val_accuracy"][-1] > 0.65, history.history
# A single callback, not in a list, is accepted too.
model.fit(x_train, y_train, epochs=1, verbose=0, callbacks=keras.callbacks.TerminateOnNaN())
