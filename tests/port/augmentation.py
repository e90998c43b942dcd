"""Data augmentation layers at the front of the model, Rescaling of uint8 images."""
import convforge as keras
from convforge import layers

keras.utils.set_random_seed(5)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train, y_train = x_train[:3000].reshape(-1, 28, 28, 1), y_train[:3000]  # uint8, scaled by the model
x_test, y_test = x_test[:1000].reshape(-1, 28, 28, 1), y_test[:1000]

data_augmentation = keras.Sequential([
    layers.RandomFlip("horizontal"),
    layers.RandomRotation(0.05),
    layers.RandomZoom(0.1),
    layers.RandomTranslation(0.05, 0.05),
])
model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    data_augmentation,  # a Sequential nested in a Sequential
    layers.Rescaling(1.0 / 255),
    layers.Conv2D(32, 3, activation="relu"),
    layers.MaxPooling2D(),
    layers.Flatten(),
    layers.Dense(10, activation="softmax"),
])
assert model.count_params() == 320 + 54090
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
_, acc = model.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy {acc:.3f}")
assert acc > 0.6, acc  # 2 epochs of augmented images: lower than without
# Augmentation is training-only: predictions are deterministic.
assert (model.predict(x_test[:4], verbose=0) == model.predict(x_test[:4], verbose=0)).all()
