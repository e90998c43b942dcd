"""PReLU (Keras's parametric ReLU): values, gradients, Keras's weight layout and parameter counts,
saving, and ONNX's PRelu both ways (convforge's export, PyTorch's nn.PReLU)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients

# (per-sample input, shared_axes, alpha's shape as Keras makes it: the input's, 1 on shared axes)
CASES = [((5, 6, 3), None, (5, 6, 3)), ((5, 6, 3), [1, 2], (1, 1, 3)), ((5, 6, 3), 3, (5, 6, 1)),
         ((7, 4), None, (7, 4)), ((7, 4), [1], (1, 4)), ((9,), None, (9,))]


def _model(shape, shared, dtype="float32", init="random_normal"):
    return convforge.Sequential([layers.Input(shape, dtype=dtype), layers.PReLU(alpha_initializer=init, shared_axes=shared)])


@pytest.mark.parametrize("shape, shared, alpha_shape", CASES)
def test_prelu_is_x_or_alpha_x_with_keras_weight_layout(shape, shared, alpha_shape, rng):
    model = _model(shape, shared)
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
    np.testing.assert_array_equal(_model(shape, shared, init="zeros").predict(x, verbose=0), np.maximum(x, 0))


def test_prelu_gradients_are_the_numerical_derivative(rng):
    convforge.seed(3)
    x = convforge.Input((6, 6, 2), dtype="float64")
    h = layers.Conv2D(3, 3, padding="same")(x)
    h = layers.PReLU(alpha_initializer="random_normal", shared_axes=[1, 2])(h)
    h = layers.PReLU(alpha_initializer="random_normal")(layers.Conv2D(2, 3)(h))
    model = convforge.Model(x, layers.Dense(2)(layers.Flatten()(h)))
    report = check_model_gradients(model, rng.standard_normal((3, 6, 6, 2)), rng.standard_normal((3, 2)),
                                   loss="mse", num_coords=8)
    assert report.passed, report
    assert any(r.key.endswith("alpha") for r in report.results)


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


@pytest.mark.parametrize("shape, shared", [((6, 6, 2), [1, 2]), ((6, 6, 2), None), ((6, 6, 2), [3]), ((5, 4), [1]),
                                           ((7,), None)])
def test_prelu_onnx_round_trip(shape, shared, tmp_path, rng):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    stack = [layers.Input(shape)] + ([layers.Conv2D(3, 3)] if len(shape) == 3 else [])
    stack += [layers.PReLU(alpha_initializer="random_normal", shared_axes=shared), layers.Flatten(), layers.Dense(2)]
    model = convforge.Sequential(stack)
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    want = model.predict(x, verbose=0)
    path = str(tmp_path / "prelu.onnx")
    model.export(path, format="onnx")
    session = ort.InferenceSession(path)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    back = convforge.load_model(path)
    prelu = next(layer for layer in back.layers if isinstance(layer, layers.PReLU))
    original = next(layer for layer in model.layers if isinstance(layer, layers.PReLU))
    np.testing.assert_array_equal(prelu.get_weights()[0], original.get_weights()[0])
    np.testing.assert_array_equal(back.predict(x, verbose=0), want)


@pytest.mark.parametrize("channels", [3, 1])
def test_pytorch_prelu_imports_and_predicts_like_pytorch(channels, tmp_path):
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    prelu = torch.nn.PReLU(channels)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), prelu, torch.nn.Flatten(), torch.nn.Linear(48, 2)).eval()
    with torch.no_grad():
        prelu.weight.copy_(torch.randn(prelu.weight.shape))
    x = torch.randn(4, 2, 6, 6)
    path = str(tmp_path / "torch_prelu.onnx")
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice (the new one needs onnxscript)
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), path, dynamo=False, input_names=["x"])
    model = convforge.load_model(path, input_layout="channels_first")
    layer = next(layer for layer in model.layers if isinstance(layer, layers.PReLU))
    # Channels-first images (input_layout): axis 1 is the channels, 2 and 3 height and width.
    assert layer.shared_axes == ([2, 3] if channels == 3 else [1, 2, 3])
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), want, rtol=1e-5, atol=1e-5)
