"""Inference folds each BatchNormalization into the linear Conv2D before it (and a ReLU after it
into the conv kernel): the same answers as the three layers run one by one, fewer passes.

The reference is the model's own unfolded step list, run on the same weights; in float64 they
must agree to rounding, so that a wrong fold formula (a missing epsilon, beta, bias or gamma)
fails.
"""

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.layers.fusion import FoldedConvBatchNorm, InPlaceReLU


def _randomise_batchnorm(model, rng):
    """Moving statistics and affine weights far from their initial 0/1, so that every term counts."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            p = layer.params
            for name in p:
                if name == "moving_variance":
                    p[name][...] = rng.uniform(0.2, 3.0, p[name].shape)
                else:
                    p[name][...] = rng.standard_normal(p[name].shape)
        elif "bias" in layer.params:
            layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape)


def _unfolded_predict(model, x):
    graph = getattr(model, "_graph", model)
    saved = graph._inference_steps, graph._inference_free_after
    graph._inference_steps, graph._inference_free_after = graph._steps, graph._free_after
    try:
        return model.predict(x, verbose=0)
    finally:
        graph._inference_steps, graph._inference_free_after = saved


def _folded_layers(model):
    graph = getattr(model, "_graph", model)
    return [
        [layer.name for layer in (s.call.conv, s.call.bn, s.call.relu) if layer is not None]
        for s in graph._inference_steps
        if isinstance(s.call, FoldedConvBatchNorm)
    ]


def _block(dtype, use_bias, center, scale, relu):
    x = convforge.Input((9, 11, 3), dtype=dtype)
    y = layers.Conv2D(5, 3, strides=2, padding="same", use_bias=use_bias, name="conv")(x)
    y = layers.BatchNormalization(center=center, scale=scale, epsilon=0.01, name="bn")(y)
    if relu == "layer":
        y = layers.ReLU(name="relu")(y)
    elif relu == "activation":
        y = layers.Activation("relu", name="relu")(y)
    y = layers.Conv2D(4, 1, name="head")(y)
    return convforge.Model(x, y)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("relu", [None, "layer", "activation"])
def test_folded_block_equals_the_layers_run_one_by_one(use_bias, center, scale, relu):
    rng = np.random.default_rng(7)
    model = _block("float64", use_bias, center, scale, relu)
    _randomise_batchnorm(model, rng)
    expected_chain = ["conv", "bn"] + (["relu"] if relu else [])
    assert _folded_layers(model) == [expected_chain]
    x = rng.standard_normal((6, 9, 11, 3))
    folded, unfolded = model.predict(x, verbose=0), _unfolded_predict(model, x)
    np.testing.assert_allclose(folded, unfolded, rtol=1e-12, atol=1e-12)
    if relu:  # the ReLU matters here: without it the folded conv gives negative values
        step = next(s for s in model._inference_steps if isinstance(s.call, FoldedConvBatchNorm))
        bare = FoldedConvBatchNorm(step.call.conv, step.call.bn)
        assert (bare.forward(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) < 0).any()


def test_float32_agrees_to_rounding_and_evaluate_folds_too():
    rng = np.random.default_rng(3)
    model = _block("float32", True, True, True, "layer")
    _randomise_batchnorm(model, rng)
    x = rng.standard_normal((8, 9, 11, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), _unfolded_predict(model, x), rtol=1e-5, atol=1e-5)
    model.compile(optimizer="sgd", loss="mse")
    y = rng.standard_normal((8, 5, 6, 4)).astype(np.float32)
    loss = model.evaluate(x, y, verbose=0)
    assert np.isclose(loss, float(np.mean((_unfolded_predict(model, x) - y) ** 2)), rtol=1e-5)


def test_training_after_prediction_uses_the_new_weights():
    """The folded weights come from the current weights at each call, never a stale copy."""
    rng = np.random.default_rng(5)
    model = _block("float64", True, True, True, "activation")
    model.compile(optimizer="sgd", loss="mse")
    x = rng.standard_normal((16, 9, 11, 3))
    y = rng.standard_normal((16, 5, 6, 4))
    before = model.predict(x, verbose=0)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = model.predict(x, verbose=0)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _unfolded_predict(model, x), rtol=1e-12, atol=1e-12)


def test_no_fold_where_an_inner_tensor_has_another_reader():
    x = convforge.Input((8, 8, 2), dtype="float64")
    c = layers.Conv2D(3, 3, padding="same", name="conv")(x)
    b = layers.BatchNormalization(name="bn")(c)
    r = layers.ReLU(name="relu")(b)
    both = layers.Concatenate()([c, r])  # the conv's raw output is read twice
    model = convforge.Model(x, both)
    assert _folded_layers(model) == []

    x = convforge.Input((8, 8, 2), dtype="float64")
    c = layers.Conv2D(3, 3, padding="same", name="conv")(x)
    b = layers.BatchNormalization(name="bn")(c)
    r = layers.ReLU(name="relu")(b)
    model = convforge.Model(x, [b, r])  # the BN's output is a model output: fold, but keep the ReLU apart
    assert _folded_layers(model) == [["conv", "bn"]]
    rng = np.random.default_rng(1)
    _randomise_batchnorm(model, rng)
    xs = rng.standard_normal((3, 8, 8, 2))
    for got, want in zip(model.predict(xs, verbose=0), _unfolded_predict(model, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_no_fold_after_a_conv_with_an_activation_or_a_subclass():
    class MyConv(layers.Conv2D):
        pass

    for conv in (layers.Conv2D(3, 3, activation="relu"), MyConv(3, 3)):
        model = convforge.Sequential([layers.InputLayer((8, 8, 2)), conv, layers.BatchNormalization()])
        assert _folded_layers(model) == []


def test_sequential_models_fold_too():
    rng = np.random.default_rng(2)
    model = convforge.Sequential([
        layers.InputLayer((12, 12, 1)),
        layers.Conv2D(4, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
        layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(3, activation="softmax"),
    ])
    _randomise_batchnorm(model, rng)
    assert len(_folded_layers(model)) == 1
    x = rng.standard_normal((5, 12, 12, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), _unfolded_predict(model, x), rtol=1e-5, atol=1e-6)


def _inplace_relus(model):
    graph = getattr(model, "_graph", model)
    return [s.call.name for s in graph._inference_steps if isinstance(s.call, InPlaceReLU)]


def test_relu_after_a_residual_add_runs_in_place():
    x = convforge.Input((6, 6, 3), dtype="float64")
    a = layers.Conv2D(3, 3, padding="same")(x)
    y = layers.ReLU(name="out")(layers.Add()([a, x]))
    model = convforge.Model(x, layers.GlobalAveragePooling2D()(y))
    assert _inplace_relus(model) == ["out"]
    xs = np.random.default_rng(0).standard_normal((4, 6, 6, 3))
    np.testing.assert_array_equal(model.predict(xs, verbose=0), _unfolded_predict(model, xs))


def test_relu_never_overwrites_a_view_the_callers_data_or_a_shared_array():
    rng = np.random.default_rng(1)
    # Dropout and Flatten return their input (or a view of it) at inference.
    flat = convforge.Sequential([layers.InputLayer((5,)), layers.Dropout(0.5), layers.ReLU()])
    data = rng.standard_normal((3, 5))
    kept = data.copy()
    flat.predict(data, verbose=0)
    np.testing.assert_array_equal(data, kept)
    assert _inplace_relus(flat) == []
    x = convforge.Input((4, 4, 2), dtype="float64")
    c = layers.Conv2D(2, 3)(x)
    viewed = layers.ReLU(name="viewed")(layers.Flatten()(c))
    read_twice = layers.ReLU(name="twice")(c)
    model = convforge.Model(x, [viewed, layers.Flatten()(c), layers.Flatten()(read_twice)])
    assert _inplace_relus(model) == []
    xs = rng.standard_normal((2, 4, 4, 2))
    for got, want in zip(model.predict(xs, verbose=0), _unfolded_predict(model, xs)):
        np.testing.assert_array_equal(got, want)
    # A one-input Add returns its input itself.
    single = convforge.Input((3,), dtype="float64")
    model = convforge.Model(single, layers.ReLU()(layers.Add()([layers.Dense(3)(single)])))
    assert _inplace_relus(model) == []
