"""Conv2D(groups=g), Keras's grouped convolution (ResNeXt's blocks, AlexNet's two halves): each
filter group sees its channel group only. Values against the float64 oracle group by group, Keras's
weight shapes and parameter counts, gradients checked numerically (and a broken one caught), the
compiled plan around it, BatchNormalization after it, saving and bad arguments. ONNX: test_onnx.py."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge import reference as R
from convforge.gradcheck import check_model_gradients
from model_checks import fits_and_reloads

# (groups, channels, filters, strides, padding)
CASES = [(2, 4, 6, 1, "valid"), (4, 8, 8, 1, "same"), (2, 4, 4, 2, "same"), (3, 6, 9, 2, "valid"), (16, 16, 32, 1, "same"),
         (1, 3, 5, 1, "same")]


@pytest.mark.parametrize("groups, channels, filters, strides, padding", CASES)
def test_grouped_conv_is_one_conv_per_group(groups, channels, filters, strides, padding, rng):
    model = convforge.Sequential([layers.Input((9, 10, channels)),
                                  layers.Conv2D(filters, 3, strides=strides, padding=padding, groups=groups,
                                                bias_initializer="random_normal")])
    kernel, bias = model.get_weights()
    assert kernel.shape == (3, 3, channels // groups, filters)  # Keras's layout and count
    assert model.count_params() == 9 * channels // groups * filters + filters
    x = rng.standard_normal((3, 9, 10, channels)).astype(np.float32)
    xn, w = x.transpose(0, 3, 1, 2), kernel.transpose(3, 2, 0, 1)  # NCHW, OIHW
    cg, fg = channels // groups, filters // groups
    want = np.concatenate([R.conv2d(xn[:, g * cg:(g + 1) * cg], w[g * fg:(g + 1) * fg], bias[g * fg:(g + 1) * fg],
                                    strides, padding) for g in range(groups)], axis=1).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model(x, training=True), want, rtol=1e-4, atol=1e-4)


def _grouped_model(dtype="float64", **conv):
    convforge.seed(20)
    x = convforge.Input((7, 7, 4), dtype=dtype)
    h = layers.Conv2D(6, 3, padding="same", groups=2, activation="relu", bias_initializer="random_normal", **conv)(x)
    h = layers.Conv2D(6, 3, strides=2, groups=3, **conv)(h)
    return convforge.Model(x, layers.Dense(2)(layers.Flatten()(h)))


def test_grouped_conv_gradients_are_the_numerical_derivative(rng):
    report = check_model_gradients(_grouped_model(), rng.standard_normal((3, 7, 7, 4)), rng.standard_normal((3, 2)),
                                   loss="mse", num_coords=8)
    assert report.passed, report
    assert {r.key.rsplit("/", 1)[-1] for r in report.results} >= {"kernel", "bias"}


def test_grouped_conv_gradient_check_fails_when_groups_are_mixed_up(rng, monkeypatch):
    # Each group's kernel gradient put in the next group's place: the check must see it.
    original = layers.Conv2D._backward_grouped

    def rolled(self, dy, x, w, args, plan):
        dx = original(self, dy, x, w, args, plan)
        if "kernel" in self.grads:
            self.grads["kernel"] = np.roll(self.grads["kernel"], self.filters // self.groups, axis=0)
        return dx

    model = _grouped_model()
    monkeypatch.setattr(layers.Conv2D, "_backward_grouped", rolled)
    report = check_model_gradients(model, rng.standard_normal((3, 7, 7, 4)), rng.standard_normal((3, 2)), loss="mse")
    assert not report.passed


def test_grouped_conv_with_batch_norm_trains_saves_and_predicts(tmp_path, rng):
    # The BatchNormalization after a grouped conv is not folded into it (the folded conv is one
    # ungrouped convolution); predict's plan runs the grouped conv between its plans.
    convforge.seed(21)
    x = convforge.Input((8, 8, 2))
    h = layers.Conv2D(8, 3, padding="same")(x)
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", groups=4, use_bias=False)(h)))
    model = convforge.Model(x, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(h)))
    model.compile("adam", "sparse_categorical_crossentropy")
    xs, ys = rng.random((24, 8, 8, 2), dtype=np.float32), rng.integers(0, 3, 24)
    back = fits_and_reloads(model, xs, ys, tmp_path)
    assert back.layers[2].get_config()["groups"] == 4


def test_grouped_conv_bad_arguments_are_named():
    with pytest.raises(ValueError, match="Conv2D groups must be a positive int"):
        layers.Conv2D(4, 3, groups=0)
    with pytest.raises(ValueError, match="filters must be divisible by groups"):
        layers.Conv2D(6, 3, groups=4)
    with pytest.raises(ValueError, match=r"input channels must be divisible by groups .* groups=2 for an input of 3"):
        convforge.Sequential([layers.Input((5, 5, 3)), layers.Conv2D(4, 3, groups=2)])
    model = convforge.Sequential([layers.Input((5, 5, 4)), layers.Conv2D(4, 3, groups=2)])
    with pytest.raises(ValueError, match=r"x must have 4 channels \(2 groups of 2\); got 3"):
        model.layers[0].forward(np.zeros((1, 3, 5, 5), np.float32))
