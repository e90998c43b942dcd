"""convforge against real Keras 3 (torch backend): optimizer steps, layer shapes and parameter counts.

Skipped where Keras is not installed (``pip install .[keras]`` installs it; CI does).
"""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

# Keras's torch backend converts tensors with np.array(x) (Nadam, get_config), which NumPy 2 warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

import convforge  # noqa: E402
from convforge import optimizers  # noqa: E402


def to_numpy(tensor):
    """A Keras (torch) tensor or variable as NumPy (keras.ops.convert_to_numpy warns under NumPy 2)."""
    value = getattr(tensor, "value", tensor)
    return value.detach().cpu().numpy()

OPTIMIZER_CASES = [
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("Adam", {}),
    ("Adam", {"weight_decay": 0.01}),
    ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.1, "beta_1": 0.8}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adagrad", {}),
    ("Adagrad", {"initial_accumulator_value": 0.5}),
    ("Nadam", {}),
    ("Nadam", {"beta_1": 0.7, "beta_2": 0.99}),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZER_CASES)
def test_optimizer_matches_keras_after_steps(name, kwargs):
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((3, 5))
    grads = [rng.standard_normal((3, 5)) for _ in range(12)]
    kopt = getattr(keras.optimizers, name)(learning_rate=0.05, **kwargs)
    kvar = keras.Variable(w0.copy(), dtype="float64")
    for g in grads:
        kopt.apply_gradients([(keras.ops.convert_to_tensor(g), kvar)])
    copt = getattr(optimizers, name)(learning_rate=0.05, **kwargs)
    w = w0.copy()
    for g in grads:
        copt.apply_gradients([("w", w, g)])
    # Keras keeps its hyper-parameters in float32 variables: agreement is to float32 rounding of those.
    np.testing.assert_allclose(w, to_numpy(kvar), rtol=0, atol=2e-6)
    assert not np.allclose(w, w0)


@pytest.mark.parametrize("name", ["adamw", "adagrad", "nadam"])
def test_optimizer_defaults_match_keras(name):
    ours = optimizers.get(name).get_config()
    theirs = keras.optimizers.get(name).get_config()
    for key, value in ours.items():
        if key in theirs and key != "name":
            assert theirs[key] == pytest.approx(value), key


def test_nadam_resumes_from_iterations():
    """Nadam's momentum product follows from ``iterations``: a restored optimizer continues exactly."""
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(4) for _ in range(6)]
    a, wa = optimizers.Nadam(0.1), np.ones(4)
    for g in grads:
        a.apply_gradients([("w", wa, g)])
    b, wb = optimizers.Nadam(0.1), np.ones(4)
    for g in grads[:3]:
        b.apply_gradients([("w", wb, g)])
    c = optimizers.Nadam(0.1)
    c.set_state(*b.get_state())
    for g in grads[3:]:
        c.apply_gradients([("w", wb, g)])
    np.testing.assert_array_equal(wa, wb)
