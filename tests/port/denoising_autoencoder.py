"""Keras's "convolutional autoencoder for image denoising" tutorial on Fashion-MNIST: the targets are
images (channels-last, like the inputs), Conv2DTranspose upsamples, `import convforge as keras`."""
import numpy as np

import convforge as keras
from convforge import layers

keras.utils.set_random_seed(1)
(train, _), (test, _) = keras.datasets.fashion_mnist.load_data()
train = np.expand_dims(train[:3000].astype("float32") / 255.0, -1)
test = np.expand_dims(test[:500].astype("float32") / 255.0, -1)


def noise(array, rng):
    return np.clip(array + 0.4 * rng.normal(0.0, 1.0, array.shape), 0.0, 1.0).astype("float32")


rng = np.random.default_rng(1)
noisy_train, noisy_test = noise(train, rng), noise(test, rng)

inputs = layers.Input(shape=(28, 28, 1))
x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(inputs)
x = layers.MaxPooling2D((2, 2), padding="same")(x)
x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
x = layers.MaxPooling2D((2, 2), padding="same")(x)
x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
outputs = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)
autoencoder = keras.Model(inputs, outputs)
autoencoder.compile(optimizer="adam", loss="binary_crossentropy")

# The tutorial's summary: 28,353 parameters; the decoder gives back the input's shape.
assert autoencoder.count_params() == 28353
assert autoencoder.output_shape == (None, 28, 28, 1)
assert [tuple(layer.output.shape) for layer in autoencoder.layers][-3:] == [(None, 14, 14, 32), (None, 28, 28, 32), (None, 28, 28, 1)]
assert autoencoder.layers[-1].compute_output_shape((None, 28, 28, 32)) == (None, 28, 28, 1)

autoencoder.fit(noisy_train, train, epochs=3, batch_size=128, shuffle=True,
                validation_data=(noisy_test, test), verbose=0)
denoised = autoencoder.predict(noisy_test, verbose=0)
assert denoised.shape == test.shape
before = float(np.mean((noisy_test - test) ** 2))
after = float(np.mean((denoised - test) ** 2))
print(f"mean squared error to the clean images: noisy {before:.4f}, denoised {after:.4f}")
assert after < 0.5 * before, (before, after)
