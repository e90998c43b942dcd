"""PReLU and LayerNormalization, Keras's: values against NumPy oracles on the user's
(channels-last) layout, Keras's weight layouts and parameter counts, gradients checked
numerically (and a broken one caught), training, saving and bad arguments. Their ONNX export and
import are in test_onnx.py."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients

# (per-sample input, shared_axes, alpha's shape as Keras makes it: the input's, 1 on shared axes)
PRELU_CASES = [((5, 6, 3), None, (5, 6, 3)), ((5, 6, 3), [1, 2], (1, 1, 3)), ((5, 6, 3), 3, (5, 6, 1)),
         ((7, 4), None, (7, 4)), ((7, 4), [1], (1, 4)), ((9,), None, (9,))]


def _prelu_model(shape, shared, dtype="float32", init="random_normal"):
    return convforge.Sequential([layers.Input(shape, dtype=dtype), layers.PReLU(alpha_initializer=init, shared_axes=shared)])


@pytest.mark.parametrize("shape, shared, alpha_shape", PRELU_CASES)
def test_prelu_is_x_or_alpha_x_with_keras_weight_layout(shape, shared, alpha_shape, rng):
    model = _prelu_model(shape, shared)
    (alpha,) = model.get_weights()
    assert alpha.shape == alpha_shape and model.count_params() == int(np.prod(alpha_shape))
    alpha = rng.standard_normal(alpha_shape).astype(np.float32)  # in Keras's (channels-last) layout
    model.set_weights([alpha])
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    x[0].flat[:3] = 0.0
    want = np.where(x > 0, x, alpha * x)
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)
    np.testing.assert_array_equal(model(x), want)
    # Keras's default alpha is zeros: a ReLU.
    np.testing.assert_array_equal(_prelu_model(shape, shared, init="zeros").predict(x, verbose=0), np.maximum(x, 0))


def test_prelu_gradient_check_fails_when_the_alpha_gradient_is_wrong(rng, monkeypatch):
    convforge.seed(4)
    model = convforge.Sequential([layers.Input((5, 4), dtype="float64"), layers.Dense(3),
                                  layers.PReLU(alpha_initializer="random_normal"), layers.Flatten(), layers.Dense(1)])
    original = layers.PReLU.backward

    def doubled(self, dy):
        dx = original(self, dy)
        self.grads["alpha"] = self.grads["alpha"] * 2
        return dx

    monkeypatch.setattr(layers.PReLU, "backward", doubled)
    report = check_model_gradients(model, rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 1)), loss="mse")
    assert not report.passed


def test_prelu_trains_saves_and_loads(tmp_path, rng):
    convforge.seed(5)
    model = convforge.Sequential([layers.Input((6, 6, 1)), layers.Conv2D(4, 3),
                                  layers.PReLU(alpha_initializer=convforge.initializers.Constant(0.25),
                                               shared_axes=[1, 2]),
                                  layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = rng.standard_normal((16, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, 16)
    before = model.layers[1].get_weights()[0].copy()
    model.fit(x, y, epochs=2, verbose=0)
    assert not np.array_equal(model.layers[1].get_weights()[0], before)  # alpha learns
    path = tmp_path / "prelu.npz"
    model.save(path)
    back = convforge.load_model(path)
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    config = back.layers[1].get_config()
    assert config["shared_axes"] == [1, 2] and config["alpha_constraint"] is None


def test_prelu_bad_arguments_are_named():
    with pytest.raises(ValueError, match="shared_axes must be input axes >= 1"):
        layers.PReLU(shared_axes=0)
    with pytest.raises(ValueError, match="shared_axes must be input axes >= 1"):
        layers.PReLU(shared_axes=["1"])
    with pytest.raises(NotImplementedError, match="alpha_constraint"):
        layers.PReLU(alpha_constraint="non_neg")
    with pytest.raises(ValueError, match=r"shared_axes \[4\] name axis 4, but its input .* has axes 1..3"):
        convforge.Sequential([layers.Input((5, 6, 3)), layers.PReLU(shared_axes=4)])


# (per-sample input, axis, gamma's shape as Keras makes it: the normalised axes' sizes, in order)
LN_CASES = [((6, 5, 4), -1, (4,)), ((6, 5, 4), [1, 2, 3], (6, 5, 4)), ((6, 5, 4), [3, 1], (6, 4)),
         ((6, 5, 4), [1, 2], (6, 5)), ((6, 5, 4), 2, (5,)), ((7, 3), -1, (3,)), ((7, 3), [1, 2], (7, 3)),
         ((7, 3), 1, (7,)), ((9,), -1, (9,))]


def _layer_norm_oracle(x, axis, gamma, beta, eps=1e-3):
    rank = x.ndim
    axes = sorted({a % rank for a in (axis if isinstance(axis, list) else [axis])})
    wide = x.astype(np.float64)
    mean = wide.mean(axis=tuple(axes), keepdims=True)
    var = wide.var(axis=tuple(axes), keepdims=True)
    shape = [x.shape[a] if a in axes else 1 for a in range(rank)]
    return (wide - mean) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("shape, axis, weight_shape", LN_CASES)
def test_layer_normalization_matches_the_oracle_with_keras_weight_shapes(shape, axis, weight_shape, rng):
    model = convforge.Sequential([layers.Input(shape), layers.LayerNormalization(axis=axis)])
    assert [w.shape for w in model.get_weights()] == [weight_shape, weight_shape]
    assert model.count_params() == 2 * int(np.prod(weight_shape))
    gamma, beta = rng.standard_normal(weight_shape), rng.standard_normal(weight_shape)
    model.set_weights([gamma.astype(np.float32), beta.astype(np.float32)])
    x = (rng.standard_normal((4, *shape)) * 3 + 2).astype(np.float32)
    want = _layer_norm_oracle(x, axis, gamma.astype(np.float32), beta.astype(np.float32))
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model(x, training=True), want, rtol=1e-5, atol=1e-5)  # no batch statistics


# Two of each on images, one per channel (or per pixel's channels) and one over whole feature maps.
GRADIENT_LAYERS = {
    "alpha": lambda: (layers.PReLU(alpha_initializer="random_normal", shared_axes=[1, 2]),
                      layers.PReLU(alpha_initializer="random_normal")),
    "gamma": lambda: (layers.LayerNormalization(gamma_initializer="random_normal", beta_initializer="random_normal"),
                      layers.LayerNormalization(axis=[1, 2, 3], gamma_initializer="random_normal")),
}


@pytest.mark.parametrize("weight", sorted(GRADIENT_LAYERS))
def test_gradients_are_the_numerical_derivative(weight, rng):
    convforge.seed(3)
    first, second = GRADIENT_LAYERS[weight]()
    x = convforge.Input((6, 6, 2), dtype="float64")
    h = first(layers.Conv2D(3, 3, padding="same")(x))
    h = second(layers.Conv2D(2, 3)(h))
    model = convforge.Model(x, layers.Dense(2)(layers.Flatten()(h)))
    report = check_model_gradients(model, rng.standard_normal((3, 6, 6, 2)), rng.standard_normal((3, 2)),
                                   loss="mse", num_coords=8)
    assert report.passed, report
    assert any(r.key.endswith(weight) for r in report.results)


def test_layer_normalization_gradient_check_fails_when_dx_is_wrong(rng, monkeypatch):
    convforge.seed(13)
    model = convforge.Sequential([layers.Input((5, 4), dtype="float64"), layers.Dense(4),
                                  layers.LayerNormalization(), layers.Flatten(), layers.Dense(1)])
    original = layers.LayerNormalization.backward

    def plain_scale(self, dy):
        original(self, dy)  # the weights' gradients as they are
        return dy * self._inv  # without the mean terms

    monkeypatch.setattr(layers.LayerNormalization, "backward", plain_scale)
    report = check_model_gradients(model, rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 1)), loss="mse")
    assert not report.passed


def test_layer_normalization_trains_saves_and_loads(tmp_path, rng):
    convforge.seed(14)
    model = convforge.Sequential([layers.Input((6, 6, 1)), layers.Conv2D(4, 3), layers.LayerNormalization(),
                                  layers.ReLU(), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = rng.standard_normal((16, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, 16)
    before = [w.copy() for w in model.layers[1].get_weights()]
    model.fit(x, y, epochs=2, verbose=0)
    assert not np.array_equal(model.layers[1].get_weights()[0], before[0])
    path = tmp_path / "ln.npz"
    model.save(path)
    back = convforge.load_model(path)
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    assert back.layers[1].get_config()["axis"] == -1


def test_layer_normalization_bad_arguments_are_named():
    with pytest.raises(TypeError, match="axis must be an int or a list of ints"):
        layers.LayerNormalization(axis="last")
    with pytest.raises(ValueError, match="epsilon must be a number > 0"):
        layers.LayerNormalization(epsilon=0)
    with pytest.raises(NotImplementedError, match="rms_scaling"):
        layers.LayerNormalization(rms_scaling=True)
    with pytest.raises(ValueError, match=r"axis=\[0\] does not name distinct axes .* 0 is the batch axis"):
        convforge.Sequential([layers.Input((5, 4)), layers.LayerNormalization(axis=[0])])
    with pytest.raises(ValueError, match=r"axis=4 does not name distinct axes of its input of rank 4"):
        convforge.Sequential([layers.Input((5, 4, 3)), layers.LayerNormalization(axis=4)])
