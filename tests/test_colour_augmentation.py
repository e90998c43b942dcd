"""RandomContrast and RandomBrightness, Keras's colour augmentation: a NumPy oracle of Keras
3.15's formulas on the draws the layer made, the draws' ranges (Keras's reading of factor),
the exact gradient (float64 checks, the clip's mask), inference as the identity (predict, the
compiled plan, ONNX), bad arguments, and real Keras 3 side by side where it is installed."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients
from model_checks import real_keras


def _oracle(kind, x, draws, value_range):
    """Keras's transform_images on channels-last images, one draw per image."""
    low, high = value_range
    d = draws.reshape(-1, 1, 1, 1)
    if kind == "RandomContrast":
        mean = x.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
        out = (x - mean) * d + mean
    else:
        out = x + d * (high - low)
    return np.clip(out, low, high)


@pytest.mark.parametrize("kind, kwargs, draw_range", [
    ("RandomContrast", {"factor": (0.3, 0.5)}, (0.7, 1.5)),
    ("RandomContrast", {"factor": 0.2}, (1.0, 1.2)),  # Keras 3.15 reads a number f as (0, f)
    ("RandomContrast", {"factor": 0.9, "value_range": (0, 1)}, (1.0, 1.9)),
    ("RandomBrightness", {"factor": (-0.2, 0.4)}, (-0.2, 0.4)),
    ("RandomBrightness", {"factor": 0.5, "value_range": [1, 0]}, (-0.5, 0.5)),
])
def test_formula_and_draws_as_keras(kind, kwargs, draw_range, rng):
    value_range = sorted(kwargs.get("value_range", (0, 255)))
    x = (rng.random((64, 5, 7, 3)) * value_range[1]).astype(np.float32)
    layer = getattr(layers, kind)(seed=3, **kwargs)
    model = convforge.Sequential([convforge.Input((5, 7, 3)), layer])
    y = layer.forward(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), training=True).transpose(0, 2, 3, 1)
    draws = layer._plan[0].reshape(-1)  # what this call drew
    assert draw_range[0] <= draws.min() and draws.max() <= draw_range[1]
    assert draws.max() - draws.min() > 0.5 * (draw_range[1] - draw_range[0])  # spread over the range
    np.testing.assert_allclose(y, _oracle(kind, x.astype(np.float64), draws, value_range), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)  # the identity at inference
    np.testing.assert_array_equal(model(x, training=False), x)
    assert not np.array_equal(model(x), x)  # called without training: augments, as Keras's


@pytest.mark.parametrize("kind", ["RandomContrast", "RandomBrightness"])
def test_the_gradient_is_exact(kind, rng):
    # In the middle of a model (after a Conv2D): the clip's mask and, for contrast, the mean's share.
    convforge.seed(1)
    layer = getattr(layers, kind)(0.5, value_range=(-1.5, 1.5), seed=5)
    model = convforge.Sequential([convforge.Input((5, 5, 2)), layers.Conv2D(3, 3, padding="same"), layer,
                                  layers.Flatten(), layers.Dense(2)], dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    x, y = rng.standard_normal((4, 5, 5, 2)), rng.standard_normal((4, 2))
    report = check_model_gradients(model, x, y)
    assert report.passed, report
    real = type(layer)._adjoint
    layer._adjoint = lambda dy: real(layer, dy) * 1.5  # a broken one is caught
    assert not check_model_gradients(model, x, y).passed


def test_they_export_and_compile_as_the_identity(tmp_path, rng):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = convforge.Sequential([convforge.Input((6, 6, 3)), layers.RandomContrast(0.3), layers.RandomBrightness(0.2),
                                  layers.Conv2D(2, 3)])
    x = rng.random((4, 6, 6, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    assert model._compiled_plan() is not None and model._compiled_plan().lowered == 3  # one plan, all three steps
    path = tmp_path / "m.onnx"
    model.export(path, format="onnx")
    session = onnxruntime.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    back = convforge.load_model(tmp_path / "m.onnx")
    np.testing.assert_allclose(back.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "m.npz")
    loaded = convforge.load_model(tmp_path / "m.npz")
    assert [l.get_config()["factor"] for l in loaded.layers[:2]] == [[0.0, 0.3], [-0.2, 0.2]]


@pytest.mark.parametrize("make, message", [
    (lambda: layers.RandomContrast(1.5), r"factor must be a number .* in the range \[0, 1\]"),
    (lambda: layers.RandomContrast(-0.2), r"in the range \[0, 1\]"),
    (lambda: layers.RandomContrast((0.1, 0.2, 0.3)), "factor must be"),
    (lambda: layers.RandomContrast("a"), "factor must be"),
    (lambda: layers.RandomBrightness(2), r"in the range \[-1, 1\]"),
    (lambda: layers.RandomBrightness(0.1, value_range=255), "value_range must be a \\(low, high\\) pair"),
    (lambda: layers.RandomBrightness(0.1, value_range=(0, np.inf)), "value_range must be"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# Keras's torch backend converts tensors with np.array(x), which NumPy 2 warns about.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.parametrize("kind, kwargs", [("RandomContrast", {"factor": (0.3, 0.5)}), ("RandomContrast", {"factor": 0.9}),
                                          ("RandomBrightness", {"factor": (-0.2, 0.4)}),
                                          ("RandomBrightness", {"factor": 0.5, "value_range": (0, 1)})])
def test_against_real_keras(kind, kwargs, rng):
    keras = real_keras()
    ours, theirs = getattr(layers, kind)(**kwargs), getattr(keras.layers, kind)(**kwargs)
    assert tuple(ours.factor) == tuple(theirs.factor)
    assert tuple(ours.get_config()["value_range"]) == tuple(theirs.get_config()["value_range"])
    # Keras's own draws, and its transform of them; ours on the same draws.
    x = (rng.random((6, 5, 7, 3)) * 255).astype(np.float32)
    transformation = theirs.get_random_transformation(x, training=True)
    draws = keras.ops.convert_to_numpy(next(iter(transformation.values()))).reshape(-1)
    expected = keras.ops.convert_to_numpy(theirs.transform_images(keras.ops.convert_to_tensor(x.copy()), transformation))
    low, high = ours.value_range
    if kind == "RandomBrightness":  # Keras's draw is the delta itself, ours its share of the range
        draws = draws / (high - low)

    class Replay:
        def uniform(self, lo, hi, size):
            assert lo <= draws.min() and draws.max() <= hi  # Keras's draws are in our range
            return draws[:size]

    ours._own_generator = Replay()
    got = convforge.Sequential([convforge.Input((5, 7, 3)), ours])(x, training=True)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=5e-5)
