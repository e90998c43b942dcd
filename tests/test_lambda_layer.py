"""layers.Lambda: a NumPy function on the batch as Keras shows it (channels-last images), as input
preprocessing that trains, saves by name and reloads with custom_objects; its missing gradient and
bad functions named."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.saving import ModelFileError


def scale(a):
    return a / 255.0


def test_lambda_preprocessing_trains_saves_and_reloads(rng, tmp_path):
    x = (rng.random((16, 6, 6, 3)) * 255).astype(np.float32)
    y = rng.integers(0, 2, 16)
    model = convforge.Sequential([convforge.Input((6, 6, 3)), layers.Lambda(scale),
                                  layers.Lambda(lambda a, k: a[..., :k], arguments={"k": 2}),  # channels-last
                                  layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2, activation="softmax")])
    assert [l.output_shape for l in model.layers[:3]] == [(None, 6, 6, 3), (None, 6, 6, 2), (None, 4, 4, 2)]
    reference = convforge.Sequential([convforge.Input((6, 6, 2)), layers.Conv2D(2, 3), layers.Flatten(),
                                      layers.Dense(2, activation="softmax")])
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.predict(x[..., :2] / 255.0, verbose=0),
                               rtol=1e-5, atol=1e-6)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "m.npz"
    model.save(path)
    with pytest.raises(ModelFileError, match=r"cannot rebuild layer 0 \(Lambda\): a Lambda's function is Python code.*"
                                             r"custom_objects=\{'scale': your_function\}"):
        convforge.load_model(path)
    back = convforge.load_model(path, custom_objects={"scale": scale, "<lambda>": lambda a, k: a[..., :k]})
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_lambda_after_trained_layers_says_it_has_no_gradient(rng):
    model = convforge.Sequential([convforge.Input((4,)), layers.Dense(3), layers.Lambda(np.tanh), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    np.testing.assert_allclose(model.predict(np.ones((2, 4)), verbose=0).shape, (2, 2))  # inference is fine
    with pytest.raises(NotImplementedError, match="Lambda 'lambda.*' has no gradient .*Write a Layer subclass"):
        model.fit(rng.standard_normal((4, 4)), rng.standard_normal((4, 2)), epochs=1, verbose=0)


@pytest.mark.parametrize("make, error, message", [
    (lambda: layers.Lambda(3), TypeError, "Lambda function must be callable"),
    (lambda: layers.Lambda(scale, mask=lambda a: a), NotImplementedError, "Lambda's mask"),
    (lambda: layers.Lambda(scale, arguments=[1]), TypeError, "arguments must be a dict"),
    (lambda: convforge.Sequential([convforge.Input((4,)), layers.Lambda(scale, output_shape=(5,))]), ValueError,
     r"output_shape=\(5,\) but its function returns samples of shape \(4,\)"),
    (lambda: layers.Lambda(lambda a: a.sum())(np.ones((2, 3))), ValueError, "must return the batch axis first"),
    (lambda: layers.Lambda(lambda a: a.astype(str))(np.ones((2, 3))), TypeError, "returned an array of dtype <U"),
])
def test_bad_functions_and_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()
