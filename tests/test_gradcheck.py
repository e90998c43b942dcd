"""Tests of convforge.gradcheck: whole-model gradient checks pass, and fail when a backward is broken."""

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients


def small_model(dropout=0.2):
    return convforge.Sequential(
        [
            layers.Conv2D(3, 3, padding="same", activation="relu", input_shape=(8, 8, 2)),
            layers.MaxPooling2D(2),
            layers.Conv2D(4, 2, activation="tanh"),
            layers.AveragePooling2D(2, strides=1, padding="same"),
            layers.Flatten(),
            layers.Dropout(dropout),
            layers.Dense(6, activation="sigmoid"),
            layers.Dense(3, activation="softmax"),
        ]
    )


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 8, 8, 2)), rng.integers(0, 3, 4)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_a_correct_model_passes(loss):
    convforge.seed(0)
    model = small_model()
    model.compile(optimizer="sgd", loss=loss)
    x, labels = batch()
    y = labels if loss.startswith("sparse") else np.eye(3)[labels]
    report = check_model_gradients(model, x, y)
    assert report.passed, str(report)
    assert [r.key for r in report.results] == [
        "conv2d/kernel",
        "conv2d/bias",
        "conv2d_1/kernel",
        "conv2d_1/bias",
        "dense/kernel",
        "dense/bias",
        "dense_1/kernel",
        "dense_1/bias",
    ]
    assert max(r.max_rel_error for r in report.results) < 1e-5


def test_the_check_leaves_the_model_and_random_state_untouched():
    convforge.seed(1)
    model = small_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    weights = model.get_weights()
    state = convforge.random.get_state()
    check_model_gradients(model, *batch())
    assert model.dtype == np.float32
    for before, after in zip(weights, model.get_weights()):
        assert after.dtype == np.float32
        np.testing.assert_array_equal(before, after)
    assert convforge.random.get_state() == state


def test_the_check_leaves_batchnorm_moving_statistics_as_they_were():
    # Found by a review: the training-mode passes moved BatchNormalization's moving mean and
    # variance (from 0 to the batch's ~0.8, -1.8, 1.3), and so every later predict.
    rng = np.random.default_rng(0)
    inputs = convforge.Input((6, 6, 2))
    h = layers.BatchNormalization(name="bn")(layers.Conv2D(3, 3)(inputs))
    model = convforge.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(h)))
    model.compile("sgd", "mse")
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32) * 3 + 2
    y = rng.standard_normal((4, 2)).astype(np.float32)
    before, weights = model.predict(x, verbose=0), model.get_weights()
    assert check_model_gradients(model, x, y).passed
    for want, got in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)


def test_a_broken_builtin_backward_fails(monkeypatch):
    convforge.seed(2)
    model = small_model(dropout=0.0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    real = layers.Conv2D.backward

    def off_by_ten_percent(self, dy):
        dx = real(self, dy)
        if self.name == "conv2d_1":
            self.grads["kernel"] = self.grads["kernel"] * 1.1
        return dx

    monkeypatch.setattr(layers.Conv2D, "backward", off_by_ten_percent)
    report = check_model_gradients(model, *batch())
    assert not report.passed
    assert [r.key for r in report.failures] == ["conv2d_1/kernel"]
    assert "FAILED for conv2d_1/kernel" in str(report)


def test_a_wrong_input_gradient_shows_in_the_layers_below(monkeypatch):
    """A layer whose dL/dx is wrong breaks the weights *before* it, which is how the check finds it."""
    convforge.seed(3)
    model = small_model(dropout=0.0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    real = layers.MaxPooling2D.backward
    monkeypatch.setattr(layers.MaxPooling2D, "backward", lambda self, dy: -real(self, dy))
    report = check_model_gradients(model, *batch())
    assert {r.key for r in report.failures} == {"conv2d/kernel", "conv2d/bias"}


class LeakyScale(layers.Layer):
    """A custom layer whose backward forgets the factor 2 of its forward."""

    def build(self, input_shape):
        self.add_weight("alpha", input_shape, initializer="ones")

    def forward(self, x, training=False):
        self.x = x if training else None
        return 2 * x * self.params["alpha"]

    def backward(self, dy):
        self.grads["alpha"] = (dy * self.x).sum(axis=0)  # bug: should be 2 * ...
        return 2 * dy * self.params["alpha"]


def test_a_broken_custom_layer_fails():
    convforge.seed(4)
    model = convforge.Sequential([layers.Dense(5, activation="tanh", input_shape=(3,)), LeakyScale(), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    report = check_model_gradients(model, rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), num_coords=3)
    assert [r.key for r in report.failures] == ["leaky_scale/alpha"]


def _bn_dropout_model():
    convforge.seed(0)
    model = convforge.Sequential([convforge.Input((6, 6, 2)), layers.Conv2D(3, 3), layers.BatchNormalization(),
                                  layers.ReLU(), layers.Dropout(0.5), layers.Flatten(), layers.Dense(2)],
                                 dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 6, 6, 2)), rng.standard_normal((4, 2))
    model.fit(x, y, epochs=2, verbose=0)  # moving statistics away from 0 and 1
    return model, x, y


def test_the_inference_function_is_checked_with_training_false(monkeypatch):
    # training=False raised "backward() needs a forward(x, training=True) first" on any model.
    # Now: the function predict computes (BatchNormalization on its moving statistics, Dropout
    # off), trained as a training=False call trains; weights and the training flags put back.
    model, x, y = _bn_dropout_model()
    weights = [w.copy() for w in model.get_weights()]
    report = check_model_gradients(model, x, y, training=False)
    assert report.passed, report
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not any(s.moving_statistics or s.identity_in_training for s in model._graph._steps)
    # The checked function is the inference one: a backward broken only where BatchNormalization
    # runs on its moving statistics passes the training-mode check and fails this one.
    real = layers.BatchNormalization._backward

    def broken_when_frozen(self, dy, overwrite_dy):
        dx = real(self, dy, overwrite_dy)
        return dx * 2 if self._frozen_scale is not None else dx

    monkeypatch.setattr(layers.BatchNormalization, "_backward", broken_when_frozen)
    assert check_model_gradients(model, x, y).passed
    assert {r.key for r in check_model_gradients(model, x, y, training=False).failures} == {"conv2d/kernel",
                                                                                           "conv2d/bias"}


def test_a_broken_backward_fails_in_inference_mode_too(monkeypatch):
    model, x, y = _bn_dropout_model()
    real = layers.Dense.backward
    monkeypatch.setattr(layers.Dense, "backward", lambda self, dy: -real(self, dy))
    report = check_model_gradients(model, x, y, training=False)
    assert {r.key.split("/")[0] for r in report.failures} >= {"conv2d", "batch_normalization"}


@pytest.mark.parametrize("kwargs,error,message", [
    ({"num_coords": 0}, ValueError, "num_coords must be a positive int"),
    ({"num_coords": 2.5}, ValueError, "num_coords must be a positive int"),
    ({"num_coords": True}, ValueError, "num_coords must be a positive int"),
    ({"seed": -1}, ValueError, "seed must be an int >= 0"),
    ({"seed": "a"}, ValueError, "seed must be an int >= 0"),
    ({"training": "yes"}, TypeError, "training must be True or False"),
])
def test_arguments_are_checked(kwargs, error, message):
    model = convforge.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(error, match=message):
        check_model_gradients(model, np.ones((2, 3)), np.ones((2, 2)), **kwargs)
    with pytest.raises(TypeError, match="checks a convforge model"):
        check_model_gradients("model", np.ones((2, 3)), np.ones((2, 2)))


def test_needs_a_loss():
    model = convforge.Sequential([layers.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="needs a loss"):
        check_model_gradients(model, np.ones((1, 3)), np.ones((1, 2)))
    report = check_model_gradients(model, np.ones((1, 3)), np.ones((1, 2)), loss="mse")
    assert report.passed


def fashion_batch(n=8):
    """Real Fashion-MNIST images: their backgrounds are exactly 0, which puts ReLU on its kink."""
    x, y = convforge.datasets.fashion_mnist.load_data()[0]
    return x[:n].astype(np.float64) / 255.0, y[:n]


def lenet_like():
    return convforge.Sequential(
        [
            layers.Conv2D(4, 5, activation="relu", input_shape=(28, 28, 1)),
            layers.MaxPooling2D(2),
            layers.Conv2D(6, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(10, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )


def test_correct_layers_pass_on_real_fashion_mnist_images():
    convforge.seed(5)
    model = lenet_like()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    report = check_model_gradients(model, *fashion_batch(), num_coords=6)
    assert report.passed, str(report)
    # The zero background really does put coordinates on the kink: the test exercises it.
    assert report.results[1].key == "conv2d/bias" and report.results[1].kinks > 0, str(report)
    assert "at a kink" in str(report)


def test_a_broken_relu_backward_still_fails_on_real_images(monkeypatch):
    """Kink handling must not hide a wrong gradient: ReLU passing the gradient everywhere fails."""
    convforge.seed(5)
    model = lenet_like()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    # The ReLUs before a pooling layer are gated by the pool; the one after dense is this _grad.
    monkeypatch.setattr(layers.ReLU, "_grad", lambda self, dy, y: dy)
    report = check_model_gradients(model, *fashion_batch(), num_coords=6)
    assert not report.passed
    assert "conv2d/kernel" in {r.key for r in report.failures}
