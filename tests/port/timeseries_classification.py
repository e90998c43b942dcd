"""keras.io's "Timeseries classification from scratch" (a fully convolutional net on univariate
series), on series made of Fashion-MNIST images read row by row: Conv1D + BatchNormalization +
ReLU blocks, GlobalAveragePooling1D, softmax; the best model kept by ModelCheckpoint as a .keras
file, the rate cut by ReduceLROnPlateau, EarlyStopping; then keras.models.load_model and evaluate."""
import numpy as np

import convforge as keras

keras.utils.set_random_seed(2)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
# Two classes (trousers against dresses), each image one series of 784 values, as FordA's 500.
keep_train, keep_test = np.isin(y_train, [1, 3]), np.isin(y_test, [1, 3])
x_train = x_train[keep_train][:1200].reshape(-1, 784, 1)[:, ::4].astype("float32") / 255  # 196 steps
x_test = x_test[keep_test][:400].reshape(-1, 784, 1)[:, ::4].astype("float32") / 255
y_train, y_test = (y_train[keep_train][:1200] == 3).astype(int), (y_test[keep_test][:400] == 3).astype(int)
# FordA's series are z-normalised, each one: so are these.
x_train = (x_train - x_train.mean(axis=1, keepdims=True)) / x_train.std(axis=1, keepdims=True)
x_test = (x_test - x_test.mean(axis=1, keepdims=True)) / x_test.std(axis=1, keepdims=True)
num_classes = len(np.unique(y_train))
assert x_train.shape == (1200, 196, 1) and num_classes == 2


def make_model(input_shape):
    input_layer = keras.layers.Input(input_shape)
    x = input_layer
    for _ in range(3):
        x = keras.layers.Conv1D(filters=16, kernel_size=3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    gap = keras.layers.GlobalAveragePooling1D()(x)
    output_layer = keras.layers.Dense(num_classes, activation="softmax")(gap)
    return keras.models.Model(inputs=input_layer, outputs=output_layer)


model = make_model(input_shape=x_train.shape[1:])
assert model.count_params() == (64 + 64) + 2 * (784 + 64) + 34
callbacks = [
    keras.callbacks.ModelCheckpoint("best_model.keras", save_best_only=True, monitor="val_loss"),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.0001),
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, verbose=0),
]
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
history = model.fit(x_train, y_train, batch_size=32, epochs=20, callbacks=callbacks, validation_split=0.2, verbose=0)
assert {"loss", "sparse_categorical_accuracy", "val_loss", "val_sparse_categorical_accuracy",
        "learning_rate"} <= set(history.history)

model = keras.models.load_model("best_model.keras")
# The file holds the epoch of the lowest val_loss (validation_split: the last 20% of the data).
best_val_loss = model.evaluate(x_train[960:], y_train[960:], verbose=0)[0]
assert abs(best_val_loss - min(history.history["val_loss"])) < 1e-4, (best_val_loss, history.history["val_loss"])
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
print("Test accuracy", test_acc, "Test loss", test_loss)
assert test_acc > 0.75, test_acc  # 20 epochs here (0.85; 0.83 on Keras 3.15.1), 500 in the tutorial
