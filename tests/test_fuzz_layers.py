"""Hypothesis over the layers: Conv2D / MaxPooling2D / AveragePooling2D / ReLU models built from
random configurations on random channels-last inputs either raise the documented error or agree
with the NumPy oracle (convforge.reference, float64)."""

from __future__ import annotations

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import convforge  # noqa: E402
from convforge import layers  # noqa: E402
from convforge import reference as R  # noqa: E402

EXAMPLES = int(os.environ.get("CONVFORGE_FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True)


def _same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pool_oracle(x, k, s, padding, kind):
    """Keras pooling on NCHW float64: 'same' pads with -inf (max) / ignores padding (average)."""
    if padding == "same":
        (t, b), (l, r) = _same_pads(x.shape[2], k[0], s[0]), _same_pads(x.shape[3], k[1], s[1])
    else:
        t = b = l = r = 0
    fill = -np.inf if kind == "max" else np.nan
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    if kind == "max":
        return R.max_pool2d(xp, k, s)
    win = np.lib.stride_tricks.sliding_window_view(xp, k, axis=(2, 3))[:, :, :: s[0], :: s[1]]
    return np.nanmean(win, axis=(-2, -1))


@st.composite
def problems(draw):
    n, h, w, c = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12)), draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["conv", "max", "avg"]))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    filters = draw(st.integers(1, 8))
    activation = draw(st.sampled_from([None, "relu"]))
    return (n, h, w, c), kind, k, s, padding, filters, activation, draw(st.integers(0, 2**32 - 1))


@SETTINGS
@given(problems())
def test_layer_agrees_with_oracle_or_refuses(problem):
    shape, kind, k, s, padding, filters, activation, seed = problem
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if kind == "conv":
        layer = layers.Conv2D(filters, k, strides=s, padding=padding, activation=activation, input_shape=shape[1:])
    elif kind == "max":
        layer = layers.MaxPooling2D(k, strides=s, padding=padding, input_shape=shape[1:])
    else:
        layer = layers.AveragePooling2D(k, strides=s, padding=padding, input_shape=shape[1:])
    try:
        model = convforge.Sequential([layer], dtype="float64")
        model.build()
    except ValueError as err:  # a window larger than a 'valid' input: refused, naming the layer
        assert "layer" in str(err) and "input" in str(err), err
        event("refused")
        return
    event(f"compared: {kind}")
    got = model.predict(x, verbose=0)
    xn = x.transpose(0, 3, 1, 2)
    if kind == "conv":
        kernel, bias = layer.kernel, layer.bias  # stored OIHW (get_weights gives Keras HWIO)
        want = R.conv2d(xn, kernel, bias, stride=s, padding=padding)
        if activation == "relu":
            want = R.relu(want)
    else:
        want = _pool_oracle(xn, k, s, padding, kind)
    np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
