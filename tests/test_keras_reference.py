"""convforge against real Keras 3 (torch backend): optimizer steps, layer shapes and parameter counts.

Skipped where Keras is not installed (``pip install .[keras]`` installs it; CI does).
"""

import os
import re

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
    ("Adadelta", {}),
    ("Adadelta", {"rho": 0.8, "epsilon": 1e-4}),
    ("Adamax", {}),
    ("Adamax", {"beta_1": 0.7, "beta_2": 0.9, "weight_decay": 0.02}),
    ("Lion", {}),
    ("Lion", {"beta_1": 0.5, "beta_2": 0.9, "clipnorm": 0.5}),
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


@pytest.mark.parametrize("name", ["adamw", "adagrad", "nadam", "adadelta", "adamax", "lion"])
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


LOSS_CASES = [
    ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True}, "binary_logits"),
    ("BinaryCrossentropy", {"label_smoothing": 0.2}, "binary"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "onehot"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.3}, "onehot_logits"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("MeanAbsoluteError", {}, "regression"),
    ("Huber", {}, "regression"),
    ("Huber", {"delta": 0.3}, "regression"),
    ("MeanSquaredError", {}, "regression"),
    ("MeanAbsolutePercentageError", {}, "regression"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("LogCosh", {}, "regression"),
    ("Hinge", {}, "signs"),
    ("Hinge", {}, "scores_binary"),
    ("SquaredHinge", {}, "signs"),
    ("SquaredHinge", {}, "scores_binary"),
    ("CategoricalHinge", {}, "scores_onehot"),
    ("Poisson", {}, "counts"),
    ("KLDivergence", {}, "distributions"),
    ("CosineSimilarity", {}, "regression"),
    ("BinaryFocalCrossentropy", {}, "binary"),
    ("BinaryFocalCrossentropy", {"apply_class_balancing": True, "alpha": 0.6, "gamma": 3.0, "from_logits": True,
                                 "label_smoothing": 0.1}, "binary_logits"),
    ("BinaryFocalCrossentropy", {"gamma": 0.5}, "binary"),
    ("CategoricalFocalCrossentropy", {}, "onehot"),
    ("CategoricalFocalCrossentropy", {"alpha": [0.1, 0.2, 0.3, 0.4], "gamma": 1.5, "from_logits": True,
                                      "label_smoothing": 0.2}, "onehot_logits"),
    ("CategoricalFocalCrossentropy", {"gamma": 0.0}, "onehot"),
]


def loss_inputs(kind, rng):
    n, c = 6, 4
    if kind.startswith("binary"):
        y = rng.integers(0, 2, (n, 1)).astype(np.float64)
        z = rng.standard_normal((n, 1)) * 3
        return y, (z if kind.endswith("logits") else 1 / (1 + np.exp(-z)))
    if kind.startswith("onehot") or kind == "sparse":
        labels = rng.integers(0, c, n)
        z = rng.standard_normal((n, c)) * 2
        if kind == "onehot_logits":
            return np.eye(c)[labels], z
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return (labels if kind == "sparse" else np.eye(c)[labels]), p
    if kind == "positive":  # some predictions below 0, which Keras's max(y_pred, 1e-7) stops
        return rng.uniform(0, 3, (n, 3)), rng.uniform(-0.5, 3, (n, 3))
    if kind == "signs":
        return rng.choice([-1.0, 1.0], (n, 3)), rng.standard_normal((n, 3))
    if kind == "scores_binary":  # 0/1 targets, which the hinge losses take as -1/1
        return rng.choice([0.0, 1.0], (n, 3)), rng.standard_normal((n, 3))
    if kind == "scores_onehot":  # whole scores (ties among the other classes), no margin of exactly 0
        y = np.eye(c)[rng.integers(0, c, n)]
        return y, np.round(rng.standard_normal((n, c))) + 0.1 * y
    if kind == "counts":
        return rng.integers(0, 5, (n, 3)).astype(np.float64), rng.uniform(0.2, 4, (n, 3))
    if kind == "distributions":
        z = rng.standard_normal((n, c))
        return rng.dirichlet(np.ones(c), n), np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 3))


def positions_of(y, p, rng):
    """The same kind of targets and outputs with positions, (batch, 2, 3, classes): a loss per pixel."""
    n = len(y)
    pairs = [loss_inputs_like(y, p, rng) for _ in range(6)]
    stack = lambda k: np.stack([pair[k] for pair in pairs], axis=1).reshape(n, 2, 3, *p.shape[1:])  # noqa: E731
    return stack(0), stack(1)


def loss_inputs_like(y, p, rng):
    order = rng.permutation(len(y))
    return y[order], p[order]


@pytest.mark.parametrize("name,kwargs,kind", [case for case in LOSS_CASES if case[2] != "sparse"])
@pytest.mark.parametrize("positions", [False, True], ids=["rows", "positions"])
def test_loss_gradient_matches_keras_autograd(name, kwargs, kind, positions):
    """The gradient fit uses is Keras's (PyTorch's autograd of Keras's formula, float32), with
    sample weights, for rows and for outputs with positions (batch, 2, 3, classes)."""
    import torch

    rng = np.random.default_rng(4)
    y, p = loss_inputs(kind, rng)
    if positions:
        y, p = positions_of(y, p, rng)
    weights = rng.uniform(0.1, 2.0, len(y))
    ours = getattr(convforge.losses, name)(**kwargs)
    theirs = getattr(keras.losses, name)(**kwargs)
    y_ready = ours.prepare_targets(y, p.shape[1:])
    per_position = [rng.uniform(0.1, 2.0, p.shape[:-1])] if positions else []  # a weight per pixel
    for w in (None, weights, *per_position):
        tensor = torch.tensor(p, requires_grad=True)
        keras_w = None if w is None else torch.tensor(w if w.ndim > 1 else w.reshape(-1, *[1] * (p.ndim - 2)))
        theirs(torch.tensor(y), tensor, sample_weight=keras_w).backward()
        value, grad = ours.value_and_grad(p, y_ready, sample_weight=w)
        expected = tensor.grad.numpy()
        assert value == pytest.approx(float(theirs(torch.tensor(y), torch.tensor(p), sample_weight=keras_w)), rel=1e-5)
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("name,kwargs,kind", LOSS_CASES)
def test_loss_value_and_sample_weights_match_keras(name, kwargs, kind):
    rng = np.random.default_rng(3)
    y, p = loss_inputs(kind, rng)
    weights = rng.uniform(0.1, 2.0, len(y))
    ours = getattr(convforge.losses, name)(**kwargs)
    theirs = getattr(keras.losses, name)(**kwargs)
    t = keras.ops.convert_to_tensor
    y_ready = ours.prepare_targets(y, p.shape[1:])
    for w in (None, weights):
        expected = float(to_numpy(theirs(t(y), t(p), sample_weight=None if w is None else t(w))))
        value, _ = ours.value_and_grad(p, y_ready, need_grad=False, sample_weight=w)
        assert value == pytest.approx(expected, rel=1e-5)


METRIC_CASES = [
    ("Precision", {}, "binary"),
    ("Recall", {}, "binary"),
    ("AUC", {}, "binary"),
    ("AUC", {"num_thresholds": 7}, "binary"),
    ("BinaryAccuracy", {}, "binary"),
    ("Precision", {}, "onehot"),
    ("Recall", {}, "onehot"),
    ("AUC", {}, "onehot"),
    ("AUC", {"curve": "PR"}, "binary"),
    ("AUC", {"curve": "PR", "num_thresholds": 7}, "binary"),
    ("AUC", {"curve": "PR"}, "onehot"),
    ("CategoricalAccuracy", {}, "onehot"),
    ("TopKCategoricalAccuracy", {"k": 2}, "onehot"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse"),
    ("SparseTopKCategoricalAccuracy", {}, "sparse"),
    ("SparseCategoricalAccuracy", {}, "sparse"),
]


@pytest.mark.parametrize("name,kwargs,kind", METRIC_CASES)
def test_metric_matches_keras_over_batches(name, kwargs, kind):
    rng = np.random.default_rng(11)
    ours = getattr(convforge.metrics, name)(**kwargs)
    theirs = getattr(keras.metrics, name)(**kwargs)
    t = keras.ops.convert_to_tensor
    for _ in range(3):  # state accumulates across batches
        if kind == "binary":
            y = rng.integers(0, 2, (16, 1)).astype(np.float32)
            p = np.clip(y * 0.3 + rng.uniform(0, 0.7, (16, 1)), 0, 1).astype(np.float32)
        else:
            labels = rng.integers(0, 6, 16)
            z = rng.standard_normal((16, 6)).astype(np.float32)
            z[np.arange(16), labels] += 1.0
            p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            y = labels if kind == "sparse" else np.eye(6, dtype=np.float32)[labels]
        ours.update_state(y, p)
        theirs.update_state(t(y), t(p))
    assert ours.result() == pytest.approx(float(to_numpy(theirs.result())), abs=1e-6)
    assert ours.name == re.sub(r"_\d+$", "", theirs.name)  # Keras numbers a second instance: auc_1


def _update_both(ours, theirs, y, p, w=None):
    """One batch into convforge's metric and Keras's (its tensors)."""
    t = keras.ops.convert_to_tensor
    ours.update_state(y, p, sample_weight=w)
    theirs.update_state(t(y), t(p), sample_weight=None if w is None else t(w))


REGRESSION_METRIC_CASES = [
    ("MeanAbsolutePercentageError", {}, "regression"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("LogCoshError", {}, "regression"),
    ("Hinge", {}, "signs"),
    ("SquaredHinge", {}, "scores_binary"),
    ("CategoricalHinge", {}, "scores_onehot"),
    ("Poisson", {}, "counts"),
    ("KLDivergence", {}, "distributions"),
    ("CosineSimilarity", {}, "regression"),
    ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "binary_logits"),
    ("CategoricalCrossentropy", {}, "onehot"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.2}, "onehot_logits"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("RootMeanSquaredError", {}, "regression"),
    ("R2Score", {}, "regression"),
    ("R2Score", {"class_aggregation": "variance_weighted_average"}, "regression"),
    ("R2Score", {"class_aggregation": None}, "regression"),
    ("R2Score", {"num_regressors": 2}, "regression"),
    ("R2Score", {"class_aggregation": None, "num_regressors": 1}, "regression"),  # each output adjusted
]


@pytest.mark.parametrize("name", ["CosineSimilarity", "KLDivergence", "CategoricalHinge", "Hinge", "LogCosh"])
def test_a_1d_output_is_one_vector_as_keras_reads_it(name):
    """Keras reduces the last axis: a 1-D (n,) input is one vector (one cosine, one KL divergence),
    not n outputs of one value; the loss, its gradient and the metric as Keras's."""
    import torch

    y = np.array([0.0, 1.0, 0.0, 0.0]) if name == "CategoricalHinge" else np.array([0.1, 0.2, 0.3, 0.4])
    p = np.array([1.5, 2.0, 2.5, 5.0]) / 11
    tensor = torch.tensor(p, requires_grad=True)
    expected = getattr(keras.losses, name)()(torch.tensor(y), tensor)
    expected.backward()
    ours = getattr(convforge.losses, name)()
    value, grad = ours.value_and_grad(p, ours.prepare_targets(y, p.shape[1:]))
    assert value == pytest.approx(float(expected.detach()), rel=1e-5)
    np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=1e-5, atol=1e-7)
    metric_name = "LogCoshError" if name == "LogCosh" else name
    metric, theirs = getattr(convforge.metrics, metric_name)(), getattr(keras.metrics, metric_name)()
    for _ in range(2):  # two batches of one vector each
        metric.update_state(y, p)
        theirs.update_state(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(p))
    assert metric.result() == pytest.approx(float(to_numpy(theirs.result())), rel=1e-5)


def test_gradients_at_the_hinges_kinks_split_as_keras():
    """A margin of exactly 0: PyTorch's maximum (Keras on torch) gives each side half the gradient."""
    import torch

    cases = [("Hinge", np.array([[1.0, -1.0]]), np.array([[1.0, 0.5]])),
             ("CategoricalHinge", np.array([[0.0, 1.0, 0.0]]), np.array([[0.5, 1.5, 0.25]])),
             ("MeanSquaredLogarithmicError", np.array([[0.5, 2.0]]), np.array([[np.float32(1e-7), 1.0]], np.float32))]
    for name, y, p in cases:
        tensor = torch.tensor(p, requires_grad=True)
        getattr(keras.losses, name)()(torch.tensor(y), tensor).backward()
        ours = getattr(convforge.losses, name)()
        _, grad = ours.value_and_grad(p, ours.prepare_targets(y, p.shape[1:]))
        np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("name,kwargs,kind", REGRESSION_METRIC_CASES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_loss_and_regression_metrics_match_keras_over_batches(name, kwargs, kind, weighted):
    """Keras's metric of each loss, RootMeanSquaredError and R2Score: three batches, with and
    without sample weights; the value (one per output for R2Score(class_aggregation=None)), the
    name, which way is better (callbacks' mode='auto') and get_config as Keras 3.15's."""
    rng = np.random.default_rng(sum(map(ord, f"{name}{kwargs}{kind}")))
    ours = getattr(convforge.metrics, name)(**kwargs)
    theirs = getattr(keras.metrics, name)(**kwargs)
    t = keras.ops.convert_to_tensor
    for _ in range(3):
        y, p = loss_inputs(kind, rng)
        w = rng.uniform(0.1, 2.0, len(y)) if weighted else None
        _update_both(ours, theirs, y, p, w)
    expected = to_numpy(theirs.result())
    assert np.shape(ours.result()) == expected.shape
    np.testing.assert_allclose(ours.result(), expected, rtol=2e-5, atol=1e-6)
    assert ours.name == re.sub(r"_\d+$", "", theirs.name)
    assert ours.direction == theirs._direction
    config = {k: v for k, v in theirs.get_config().items() if k != "dtype"}
    config["name"] = re.sub(r"_\d+$", "", config["name"])
    assert ours.get_config() == config
    ours.reset_state()
    theirs.reset_state()
    y, p = loss_inputs(kind, rng)
    ours.update_state(y, p)
    theirs.update_state(t(y), t(p))
    np.testing.assert_allclose(ours.result(), to_numpy(theirs.result()), rtol=2e-5, atol=1e-6)


IOU_CASES = [
    ("MeanIoU", {"num_classes": 4}, "ids"),
    ("MeanIoU", {"num_classes": 4, "sparse_y_pred": False}, "scores"),
    ("MeanIoU", {"num_classes": 4, "ignore_class": 2}, "ids"),
    ("MeanIoU", {"num_classes": 4}, "out_of_range"),
    ("IoU", {"num_classes": 4, "target_class_ids": [1, 3]}, "ids"),
    ("IoU", {"num_classes": 4, "target_class_ids": [0], "sparse_y_pred": False}, "scores"),
    ("OneHotIoU", {"num_classes": 4, "target_class_ids": [2]}, "onehot"),
    ("OneHotMeanIoU", {"num_classes": 4}, "onehot"),
    ("OneHotMeanIoU", {"num_classes": 4, "ignore_class": 0}, "onehot"),
    ("BinaryIoU", {}, "binary"),
    ("BinaryIoU", {"target_class_ids": [1], "threshold": 0.3}, "binary"),
]


def iou_batch(kind, rng, n=7):
    """Segmentation-like targets and predictions: class ids per pixel, scores per pixel, one-hot
    rows, a binary mask's scores, and ids outside [0, classes) (which Keras leaves out)."""
    if kind == "ids":
        return rng.integers(0, 4, (n, 3, 2)), rng.integers(0, 4, (n, 3, 2))
    if kind == "scores":
        return rng.integers(0, 4, (n, 3, 2)), rng.random((n, 3, 2, 4))
    if kind == "onehot":
        return np.eye(4)[rng.integers(0, 4, (n, 5))], rng.random((n, 5, 4))
    if kind == "binary":
        return rng.integers(0, 2, (n, 6, 1)), rng.random((n, 6, 1))
    return rng.integers(-1, 5, (n, 4)), rng.integers(-1, 6, (n, 4))


@pytest.mark.parametrize("name,kwargs,kind", IOU_CASES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_iou_metrics_match_keras_over_batches(name, kwargs, kind, weighted):
    """IoU, MeanIoU, OneHotIoU, OneHotMeanIoU, BinaryIoU: three batches, with and without (whole
    number: Keras truncates others) weights per pixel; value, config and direction as Keras's."""
    rng = np.random.default_rng(sum(map(ord, f"{name}{kwargs}{kind}")))
    ours = getattr(convforge.metrics, name)(**kwargs)
    theirs = getattr(keras.metrics, name)(**kwargs)
    for _ in range(3):
        y, p = iou_batch(kind, rng)
        w = rng.integers(0, 3, y.shape[:-1] if kind == "onehot" else y.shape) if weighted else None
        _update_both(ours, theirs, y, p, w)
    assert ours.result() == pytest.approx(float(to_numpy(theirs.result())), abs=1e-6)
    config = {k: v for k, v in theirs.get_config().items() if k != "dtype"}
    config["name"] = re.sub(r"_\d+$", "", config["name"])
    assert ours.get_config() == config and ours.direction == theirs._direction == "up"


@pytest.mark.parametrize("name", ["TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives"])
@pytest.mark.parametrize("kwargs", [{}, {"thresholds": 0.3}, {"thresholds": [0.2, 0.5, 0.9]},
                                    {"thresholds": [0.0, 0.5, 1.0]}], ids=["default", "0.3", "list", "even"])
def test_confusion_counts_match_keras(name, kwargs):
    """Weighted and unweighted batches of scores in tenths (some on the thresholds), a single
    column and several: the counts (one per threshold for a list), and get_config, as Keras's."""
    rng = np.random.default_rng(sum(map(ord, f"{name}{kwargs}")))
    t = keras.ops.convert_to_tensor
    for columns in (1, 4):
        ours, theirs = getattr(convforge.metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
        for weighted in (False, True, False):
            y = rng.integers(0, 2, (9, columns)).astype(np.float32)
            p = np.round(rng.random((9, columns)), 1).astype(np.float32)
            w = rng.uniform(0, 2, 9).astype(np.float32) if weighted else None
            ours.update_state(y, p, sample_weight=w)
            theirs.update_state(t(y), t(p), sample_weight=None if w is None else t(w))
        expected = to_numpy(theirs.result())
        assert np.shape(ours.result()) == expected.shape
        np.testing.assert_allclose(ours.result(), expected, rtol=1e-6)
        # Both number their unnamed metrics per process (Keras's counters are not reset between tests).
        config, mine = theirs.get_config(), ours.get_config()
        config["name"], mine["name"] = (re.sub(r"_\d+$", "", c["name"]) for c in (config, mine))
        assert mine == config


@pytest.mark.parametrize("name,value", [("PrecisionAtRecall", 0.7), ("RecallAtPrecision", 0.6),
                                        ("SensitivityAtSpecificity", 0.5), ("SpecificityAtSensitivity", 0.8)])
@pytest.mark.parametrize("kwargs", [{}, {"num_thresholds": 7}, {"num_thresholds": 2}, {"num_thresholds": 1},
                                    {"class_id": 2}], ids=["default", "7", "2", "1", "class_id"])
def test_rate_at_a_constraint_matches_keras(name, value, kwargs):
    """PrecisionAtRecall and its three siblings over weighted batches (scores a little outside
    [0, 1] too, which Keras's bucketed thresholds clip): value, config, direction as Keras's."""
    rng = np.random.default_rng(sum(map(ord, f"{name}{kwargs}")))
    ours, theirs = getattr(convforge.metrics, name)(value, **kwargs), getattr(keras.metrics, name)(value, **kwargs)
    for weighted in (False, True, False):
        y = rng.integers(0, 2, (12, 4)).astype(np.float32)
        p = (0.3 * y + rng.random((12, 4)) * 0.8 - 0.05).astype(np.float32)
        w = rng.uniform(0, 2, 12).astype(np.float32) if weighted else None
        _update_both(ours, theirs, y, p, w)
    assert ours.result() == pytest.approx(float(to_numpy(theirs.result())), abs=1e-6)
    config = theirs.get_config()
    config["name"] = re.sub(r"_\d+$", "", config["name"])
    assert ours.get_config() == config and ours.direction == theirs._direction == "up"


CLASSIFICATION_CASES = [
    *[(cls, kwargs, kind) for cls in ("Precision", "Recall")
      for kwargs, kinds in [
          ({}, ("onehot", "multilabel", "binary", "coarse", "sequence")),
          ({"thresholds": 0.3}, ("onehot", "multilabel", "binary", "decimal")),
          ({"thresholds": [0.1, 0.4, 0.7]}, ("onehot", "multilabel", "binary", "decimal")),
          # evenly spaced thresholds take Keras's other (bucketed, clipped) path; coarse and
          # decimal scores sit on the thresholds themselves
          ({"thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, ("onehot", "multilabel", "coarse")),
          ({"thresholds": [0, 0.5, 1]}, ("multilabel", "coarse", "decimal")),
          ({"thresholds": [i / 10 for i in range(11)]}, ("multilabel", "decimal")),
          ({"top_k": 1}, ("onehot", "multilabel", "sequence")),
          ({"top_k": 2, "thresholds": [0.2, 0.5]}, ("onehot", "multilabel")),
          ({"class_id": 2}, ("onehot", "multilabel", "coarse", "sequence")),
          ({"class_id": 1, "thresholds": [0.0, 0.5, 1.0]}, ("onehot", "coarse", "decimal")),
          ({"top_k": 1, "class_id": 0}, ("onehot", "multilabel")),
          ({"top_k": 3, "class_id": 3, "thresholds": 0.1}, ("onehot",)),
      ] for kind in kinds],
    *[(cls, {**kwargs, **extra}, kind)
      for kwargs in ({}, {"average": "micro"}, {"average": "macro"}, {"average": "weighted"}, {"threshold": 0.25},
                     {"average": "weighted", "threshold": 0.5})
      for cls, extra in (("F1Score", {}), ("FBetaScore", {"beta": 2.0}), ("FBetaScore", {"beta": 0.5}))
      for kind in ("onehot", "multilabel", "coarse", "binary", "decimal")],
]


def classification_batch(kind, rng, n, classes=4):
    """Targets and scores: softmax rows with one-hot targets, independent scores with multi-hot
    targets, a sigmoid column, per-step softmax outputs of sequences (batch, 3, classes),
    softmax rows rounded to quarters (ties, scores on thresholds), or float32 tenths with
    multi-hot targets (where comparing in float32 or float64 differs: 0.3 is above 0.3 in
    float64) and a few scores outside [0, 1] (which Keras clips on one path)."""
    if kind == "sequence":  # (batch, steps, classes): a per-step softmax, one-hot targets
        z = rng.standard_normal((n, 3, classes)).astype(np.float32)
        p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, (n, 3))], p
    if kind == "decimal":
        values = np.array([-0.2, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2], np.float32)
        return rng.integers(0, 2, (n, classes)).astype(np.float32), rng.choice(values, (n, classes))
    if kind == "binary":
        return rng.integers(0, 2, (n, 1)).astype(np.float32), rng.uniform(0, 1, (n, 1)).astype(np.float32)
    if kind == "multilabel":
        return (rng.integers(0, 2, (n, classes)).astype(np.float32),
                rng.uniform(0, 1, (n, classes)).astype(np.float32))
    z = rng.standard_normal((n, classes)).astype(np.float32)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    if kind == "coarse":
        p = (np.round(p * 4) / 4).astype(np.float32)
    return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)], p


@pytest.mark.parametrize("name,kwargs,kind", CLASSIFICATION_CASES)
def test_classification_metric_matches_keras_over_weighted_batches(name, kwargs, kind):
    """Precision/Recall with thresholds lists, top_k and class_id, F1Score and FBetaScore: batches
    with and without sample weights, result, reset_state, again; the values (per threshold or
    class), their shape and get_config as Keras 3.15's."""
    rng = np.random.default_rng(sum(map(ord, f"{name}{kwargs}{kind}")))
    ours = getattr(convforge.metrics, name)(**kwargs)
    theirs = getattr(keras.metrics, name)(**kwargs)
    t = keras.ops.convert_to_tensor
    for _ in range(2):
        for weighted in (True, False, True):
            y, p = classification_batch(kind, rng, int(rng.integers(3, 12)))
            # one weight per sample; per step for sequences (Keras fails on (N,) weights there)
            w = rng.uniform(0, 2, y.shape[:-1] if y.ndim == 3 else len(y)).astype(np.float32) if weighted else None
            if w is not None:
                w[0] = 0.0  # a sample masked out
            ours.update_state(y, p, sample_weight=w)
            theirs.update_state(t(y), t(p), sample_weight=None if w is None else t(w))
        expected = to_numpy(theirs.result())
        assert np.shape(ours.result()) == expected.shape
        np.testing.assert_allclose(ours.result(), expected, rtol=2e-6, atol=1e-6)
        ours.reset_state()
        theirs.reset_state()
        np.testing.assert_array_equal(ours.result(), to_numpy(theirs.result()))
    config = theirs.get_config()
    config["name"] = re.sub(r"_\d+$", "", config["name"])  # Keras numbers a second instance
    assert ours.get_config() == config


@pytest.mark.parametrize("name", ["F1Score", "FBetaScore"])
def test_f_scores_refuse_what_keras_refuses(name):
    """Keras wants (batch, classes) targets and scores: integer labels and sequences fail there
    too (here with a ValueError saying what to pass)."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 6)
    scores = rng.uniform(0, 1, (6, 4)).astype(np.float32)
    sequences = rng.uniform(0, 1, (6, 3, 4)).astype(np.float32)
    for y, p in ((labels, scores), (np.eye(4, dtype=np.float32)[rng.integers(0, 4, (6, 3))], sequences)):
        with pytest.raises(ValueError):
            getattr(keras.metrics, name)().update_state(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(p))
        with pytest.raises(ValueError, match=r"must both have shape \(batch, classes\)"):
            getattr(convforge.metrics, name)().update_state(y, p)


def test_classification_metrics_log_under_keras_names():
    """compile(metrics=[...]) with these objects: fit's History, evaluate's dict and list hold
    the same keys, shapes (an array per class or threshold) and order as Keras's."""
    rng = np.random.default_rng(5)
    x = rng.random((24, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 24)]

    def chosen(module):
        return [module.F1Score(), module.Precision(thresholds=[0.2, 0.5]), module.Recall(class_id=1),
                module.FBetaScore(average="macro", beta=2.0), module.Precision(top_k=1, name="p_top1")]

    ours = convforge.Sequential([convforge.layers.Input((5,)), convforge.layers.Dense(3, activation="softmax")])
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    ours.compile("sgd", "categorical_crossentropy", metrics=chosen(convforge.metrics))
    theirs.compile("sgd", "categorical_crossentropy", metrics=chosen(keras.metrics))

    def names(logs):  # Keras numbers the second Precision of a session: precision_1
        return sorted(re.sub(r"_\d+$", "", k) for k in logs)

    h_ours = ours.fit(x, y, epochs=1, verbose=0, validation_data=(x, y)).history
    h_theirs = theirs.fit(x, y, epochs=1, verbose=0, validation_data=(x, y)).history
    assert names(h_ours) == names(h_theirs)
    e_ours = ours.evaluate(x, y, verbose=0, return_dict=True)
    e_theirs = theirs.evaluate(x, y, verbose=0, return_dict=True)
    assert names(e_ours) == names(e_theirs)
    shapes = {re.sub(r"_\d+$", "", k): np.shape(v) for k, v in e_theirs.items()}
    assert {k: np.shape(v) for k, v in e_ours.items()} == shapes
    assert shapes["f1_score"] == (3,) and shapes["precision"] == (2,)
    # evaluate's list: the loss, then the metrics in compile's order, as Keras's
    as_list = theirs.evaluate(x, y, verbose=0)
    assert [np.shape(v) for v in ours.evaluate(x, y, verbose=0)] == [np.shape(v) for v in as_list]


def test_reduce_lr_on_plateau_follows_keras():
    values = [1.0, 0.9, 0.9, 0.95, 0.9, 0.91, 0.92, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    kwargs = {"factor": 0.5, "patience": 2, "cooldown": 1, "min_lr": 0.02}
    kmodel = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    kmodel.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    kcb = keras.callbacks.ReduceLROnPlateau(**kwargs)
    kcb.set_model(kmodel)
    ours_model = convforge.Sequential([convforge.layers.Dense(1, input_shape=(2,))])
    ours_model.compile(optimizer=convforge.optimizers.SGD(0.1), loss="mse")
    ours = convforge.callbacks.ReduceLROnPlateau(**kwargs)
    ours.set_model(ours_model)
    kcb.on_train_begin()
    ours.on_train_begin()
    for epoch, value in enumerate(values):
        kcb.on_epoch_end(epoch, {"val_loss": value})
        ours.on_epoch_end(epoch, {"val_loss": value})
        expected = float(to_numpy(kmodel.optimizer.learning_rate))
        assert ours_model.optimizer.learning_rate == pytest.approx(expected, rel=1e-6), epoch
    assert ours_model.optimizer.learning_rate == pytest.approx(0.02)  # down to min_lr: the reductions happened


def keras_to_numpy(layer, x):
    return to_numpy(layer(keras.ops.convert_to_tensor(x)))


LAYER_CASES = [
    # (convforge layers, keras layers, input shape)
    ("Conv1D(8, 3)", (20, 4)),
    ("Conv1D(8, 5, strides=2, padding='same', activation='relu')", (21, 3)),
    ("Conv1D(6, 3, padding='causal', dilation_rate=2)", (16, 2)),
    ("MaxPooling1D(3, strides=2, padding='same')", (15, 4)),
    ("AveragePooling1D(2)", (15, 4)),
    ("AveragePooling1D(3, strides=1, padding='same')", (10, 2)),
    ("GlobalAveragePooling1D()", (12, 5)),
    ("GlobalMaxPooling1D()", (12, 5)),
    ("GlobalMaxPooling1D(keepdims=True)", (12, 5)),
    # Keras's channels-first sequences (batch, channels, steps), as PyTorch's Conv1d reads them.
    ("Conv1D(8, 3, data_format='channels_first')", (4, 20)),
    ("Conv1D(6, 3, strides=2, padding='same', data_format='channels_first')", (3, 21)),
    ("Conv1D(6, 3, padding='causal', dilation_rate=2, data_format='channels_first')", (2, 16)),
    ("MaxPooling1D(3, strides=2, padding='same', data_format='channels_first')", (4, 15)),
    ("AveragePooling1D(3, strides=1, padding='same', data_format='channels_first')", (2, 10)),
    ("GlobalAveragePooling1D(data_format='channels_first', keepdims=True)", (5, 12)),
    ("GlobalMaxPooling1D(data_format='channels_first')", (5, 12)),
    ("GlobalMaxPooling1D(data_format='channels_first', keepdims=True)", (5, 12)),
    ("BatchNormalization(axis=1, epsilon=0.1)", (4, 9)),  # channels-first sequences
    # The steps' reshaping layers (Keras's Cropping1D and UpSampling1D are channels-last only).
    ("ZeroPadding1D()", (6, 3)),
    ("ZeroPadding1D((0, 3))", (6, 3)),
    ("ZeroPadding1D((2, 1), data_format='channels_first')", (3, 6)),
    ("Cropping1D()", (6, 3)),
    ("Cropping1D((0, 4))", (6, 3)),
    ("Cropping1D(2)", (6, 3)),
    ("UpSampling1D()", (6, 3)),
    ("UpSampling1D(3)", (5, 2)),
    # Keras's softmax activation runs over the last axis: the steps of channels-first sequences.
    ("Conv1D(4, 3, activation='softmax', data_format='channels_first')", (3, 9)),
    ("Conv1D(4, 3, activation='softmax')", (9, 3)),
    # DepthwiseConv1D, SeparableConv1D, Conv1DTranspose in both layouts (their inner 2-D layers' rules).
    ("DepthwiseConv1D(3)", (10, 4)),
    ("DepthwiseConv1D(3, strides=2, padding='same', depth_multiplier=2, activation='relu')", (11, 3)),
    ("DepthwiseConv1D(3, dilation_rate=2, depth_multiplier=3, use_bias=False, data_format='channels_first')", (3, 12)),
    ("DepthwiseConv1D(4, padding='same', data_format='channels_first')", (2, 9)),
    ("SeparableConv1D(5, 3)", (10, 4)),
    ("SeparableConv1D(4, 4, strides=2, padding='same', depth_multiplier=2, activation='tanh')", (11, 3)),
    ("SeparableConv1D(4, 3, dilation_rate=2, depth_multiplier=2, use_bias=False, data_format='channels_first')",
     (3, 12)),
    ("SeparableConv1D(3, 2, activation='softmax', data_format='channels_first')", (2, 9)),  # over the steps
    ("Conv1DTranspose(5, 3)", (7, 4)),
    ("Conv1DTranspose(3, 4, strides=2, padding='same', data_format='channels_first')", (4, 7)),
    ("Conv1DTranspose(3, 2, strides=3)", (5, 2)),  # 'valid', stride > kernel: steps * stride
    ("Conv1DTranspose(3, 3, strides=2, padding='same', output_padding=1)", (5, 2)),
    ("Conv1DTranspose(2, 4, strides=3, output_padding=2, data_format='channels_first')", (2, 5)),
    ("Conv1DTranspose(2, 5, strides=3, padding='same', output_padding=2)", (4, 2)),
    ("Convolution1DTranspose(2, 3, strides=2, activation='relu')", (4, 3)),
    ("SeparableConvolution1D(2, 3)", (6, 3)),
    ("Conv2DTranspose(4, 3)", (5, 6, 3)),
    ("Conv2DTranspose(4, 3, strides=2, padding='same')", (5, 6, 3)),
    ("Conv2DTranspose(2, (2, 3), strides=(2, 1))", (4, 5, 3)),
    # 'valid' with a stride larger than the kernel: Keras's output is h * s (the last s - k rows
    # hold the bias alone); it was (h - 1) * s + k, s - k rows short.
    ("Conv2DTranspose(3, 2, strides=3)", (4, 5, 2)),
    ("Conv2DTranspose(2, (1, 3), strides=(2, 4), activation='relu')", (3, 4, 2)),
    # output_padding (it was refused): Keras's size, and its rows where Keras puts them.
    ("Conv2DTranspose(3, 3, strides=2, padding='same', output_padding=1)", (4, 5, 2)),
    ("Conv2DTranspose(2, (2, 4), strides=(2, 3), padding='same', output_padding=(0, 2))", (4, 5, 2)),
    ("Conv2DTranspose(2, (2, 4), strides=(3, 3), output_padding=(1, 2))", (4, 5, 2)),
    ("Conv2DTranspose(2, 5, strides=3, padding='same', output_padding=2)", (3, 4, 2)),
    ("UpSampling2D((2, 3))", (4, 5, 3)),
    ("UpSampling2D((2, 3), interpolation='bilinear')", (4, 5, 3)),
    ("GroupNormalization(2, gamma_initializer='random_normal', beta_initializer='random_normal')", (4, 5, 6)),
    ("GroupNormalization(-1)", (4, 5, 6)),
    ("GroupNormalization(3, axis=1)", (6, 5)),
    ("Permute((2, 1))", (6, 4)),
    ("Permute((3, 1, 2))", (4, 5, 3)),
    ("Rescaling(1 / 255, offset=-0.5)", (4, 4, 2)),
    ("Conv2D(5, (3, 2), strides=(2, 1), padding='same')", (7, 6, 3)),
    # Dense of a sequence applies the kernel at every step, as Keras; it was refused.
    ("Dense(4, activation='tanh')", (6, 3)),
    ("Dense(3, use_bias=False, activation='softmax')", (5, 4)),
    # Softmax over any axis but the batch, counted on the channels-last tensor as Keras; it took -1 only.
    ("Softmax(axis=1)", (4, 5, 3)),
    ("Softmax(axis=2)", (4, 5, 3)),
    ("Softmax(axis=3)", (4, 5, 3)),
    ("Softmax(axis=1)", (6, 4)),
    ("Softmax(axis=1)", (6,)),
    ("LeakyReLU(negative_slope=0.1)", (7,)),
    ("ELU()", (7,)),
    ("Activation('gelu')", (7,)),
    ("Activation('swish')", (7,)),
    ("Activation('softplus')", (7,)),
    ("Activation('leaky_relu')", (7,)),
    ("Activation('log_softmax')", (7,)),
    ("Activation('log_softmax')", (4, 5, 3)),  # over the channels of channels-last images
    ("Activation('selu')", (7,)),
    ("Activation('hard_sigmoid')", (7,)),
    ("Activation('hard_silu')", (7,)),
    ("Activation('hard_swish')", (7,)),
    ("Activation('mish')", (7,)),
    ("Activation('softsign')", (7,)),
    ("Activation('exponential')", (7,)),
    ("Activation('celu')", (7,)),
    ("Activation('hard_tanh')", (7,)),
    ("Activation('hard_shrink')", (7,)),
    ("Activation('soft_shrink')", (7,)),
    ("Activation('tanh_shrink')", (7,)),
    ("Activation('log_sigmoid')", (7,)),
    ("Activation('squareplus')", (7,)),
    ("Activation('sparse_plus')", (7,)),
    ("Activation('sparse_sigmoid')", (7,)),
    ("Activation('hard_tanh')", (4, 5, 3)),  # channels-last images
    ("UnitNormalization()", (7,)),
    ("UnitNormalization()", (4, 5, 3)),
    ("UnitNormalization(axis=[1, 2, 3])", (4, 5, 3)),
    ("UnitNormalization(axis=1)", (6, 4)),
    ("UnitNormalization(axis=[1, 2])", (6, 4)),
    # Training-only noise: the identity at inference, as Keras's.
    ("SpatialDropout1D(0.3)", (7, 4)),
    ("SpatialDropout2D(0.3)", (5, 6, 3)),
    ("GaussianNoise(0.2)", (5, 4)),
    ("GaussianDropout(0.4)", (6,)),
]


def copy_weights_to_keras(ours, theirs):
    """get_weights() is in Keras's layouts: the arrays go across unchanged."""
    theirs.set_weights(ours.get_weights())


@pytest.mark.parametrize("spec,shape", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layer_matches_keras(spec, shape):
    """Output shape, parameter count and values (with the same weights) equal Keras's."""
    convforge.seed(0)
    ours = eval("convforge.layers." + spec)  # noqa: S307 - test-local literals
    theirs = eval("keras.layers." + spec)  # noqa: S307
    model = convforge.Sequential([ours], dtype="float64")
    model.build((None, *shape))
    theirs.build((None, *shape))
    assert model.output_shape == tuple(theirs.compute_output_shape((None, *shape)))
    assert ours.count_params() == theirs.count_params()
    if "moving_variance" in ours.params:  # statistics and an affine map that matter
        rng = np.random.default_rng(2)
        for k, v in ours.params.items():
            v[...] = rng.uniform(0.5, 1.5, v.shape) if k == "moving_variance" else rng.standard_normal(v.shape)
    if ours.params:
        copy_weights_to_keras(ours, theirs)
    x = np.random.default_rng(1).standard_normal((3, *shape))
    expected = keras_to_numpy(theirs, x.astype(np.float32))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=2e-4, atol=2e-5)


STEPS_LAYERS = ["ZeroPadding1D((2, 1))", "ZeroPadding1D(1, data_format='channels_first')", "Cropping1D((1, 3))",
                "Cropping1D(0)", "UpSampling1D(3)"]


@pytest.mark.parametrize("spec", STEPS_LAYERS)
def test_steps_layers_signature_config_and_gradient_match_keras(spec):
    """ZeroPadding1D, Cropping1D, UpSampling1D: Keras's arguments and defaults, config keys (a
    channels-last Cropping1D/UpSampling1D config builds Keras's layer), and the gradient of
    the input as torch's autograd through Keras's layer gives it, exactly."""
    import inspect

    import torch

    ours = eval("convforge.layers." + spec)  # noqa: S307 - test-local literals
    theirs = eval("keras.layers." + spec)  # noqa: S307
    cls = type(ours).__name__
    keras_args = {k: p.default for k, p in inspect.signature(type(theirs).__init__).parameters.items()
                  if p.kind is p.POSITIONAL_OR_KEYWORD and k != "self"}
    our_args = {k: p.default for k, p in inspect.signature(type(ours).__init__).parameters.items()
                if p.kind is p.POSITIONAL_OR_KEYWORD and k != "self"}
    assert our_args == keras_args, cls
    config = {k: v for k, v in ours.get_config().items() if k not in ("name", "trainable")}
    assert set(config) == set(theirs.get_config()) - {"name", "trainable", "dtype"}
    rebuilt = getattr(keras.layers, cls)(**config)
    assert rebuilt.get_config() == {**theirs.get_config(), "name": rebuilt.name}
    x = np.random.default_rng(6).standard_normal((2, 7, 3))
    convforge.Sequential([convforge.layers.Input(x.shape[1:]), ours], dtype="float64")
    ours.input_grad_needed = True  # as after another layer
    y = ours.forward(x, training=True)
    dy = np.random.default_rng(7).standard_normal(y.shape)
    dx = ours.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(keras.layers, cls)(**config, dtype="float64")(tx)  # our config, Keras's layer, in float64
    (ty * torch.tensor(dy)).sum().backward()
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(dx, tx.grad.numpy())


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_global_max_pooling1d_gradient_matches_keras(data_format):
    """The gradient is split between tied maxima as Keras's (torch.amax's backward); a NaN step is
    the maximum of its channel."""
    import torch

    x = np.array([[[1.0, 3.0, 0.5], [3.0, 3.0, 0.5], [2.0, 1.0, 0.5], [-1.0, 3.0, 0.25]]])  # ties in every column
    if data_format == "channels_first":
        x = x.transpose(0, 2, 1).copy()
    dy = np.array([[1.5, -2.0, 4.0]])
    ours = convforge.layers.GlobalMaxPooling1D(data_format=data_format)
    convforge.Sequential([ours], dtype="float64").build((None, *x.shape[1:]))
    y = ours.forward(x, training=True)
    dx = ours.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = keras.layers.GlobalMaxPooling1D(data_format=data_format)(tx)
    (ty * torch.tensor(dy)).sum().backward()
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-6)  # Keras divides in float32
    assert 0 < np.count_nonzero(dx) < dx.size and dx.sum() == pytest.approx(dy.sum())
    x[0, 1, 1] = np.nan  # channel 1, step 1 in either layout
    y = ours.forward(x, training=True)
    dx = ours.backward(dy)
    channel_1 = dx[0, :, 1] if data_format == "channels_last" else dx[0, 1, :]
    assert np.isnan(y[0, 1]) and np.array_equal(channel_1, [0.0, dy[0, 1], 0.0, 0.0])


def test_a_conv1d_model_summary_matches_keras():
    def build(k):
        return [
            k.layers.Conv1D(16, 5, activation="relu"),
            k.layers.MaxPooling1D(2),
            k.layers.Conv1D(32, 3, padding="same", activation="relu"),
            k.layers.GlobalAveragePooling1D(),
            k.layers.Dense(4, activation="softmax"),
        ]

    ours = convforge.Sequential([convforge.Input((100, 3)), *build(convforge)])
    theirs = keras.Sequential([keras.Input((100, 3)), *build(keras)])
    assert ours.count_params() == theirs.count_params()
    for a, b in zip(ours.layers, theirs.layers):
        assert a.count_params() == b.count_params()
    assert ours.output_shape == theirs.output_shape


@pytest.mark.parametrize("softmax", ["Softmax()", "Softmax(axis=1)", "Softmax(axis=-2)", "Activation('softmax')", None])
def test_softmax_of_channels_first_images_matches_keras(softmax):
    """Found by a review: on channels-first images Keras's softmax (axis=-1, and activation='softmax')
    runs over the width; convforge's ran over the channels, a silent difference, and Softmax(axis=1),
    Keras's way to the channels there, was refused."""
    shape, cf = (3, 6, 7), {"data_format": "channels_first"}
    act = {"activation": "softmax"} if softmax is None else {}
    convforge.seed(0)
    model = convforge.Sequential([convforge.layers.Conv2D(4, 3, input_shape=shape, **cf, **act),
                                  *([eval("convforge.layers." + softmax)] if softmax else [])],  # noqa: S307
                                 dtype="float64")
    theirs = keras.Sequential([keras.Input(shape), keras.layers.Conv2D(4, 3, **cf, **act),
                               *([eval("keras.layers." + softmax)] if softmax else [])])  # noqa: S307
    theirs.layers[0].set_weights(model.layers[0].get_weights())
    x = np.random.default_rng(1).standard_normal((2, *shape))
    expected = to_numpy(theirs(keras.ops.convert_to_tensor(x.astype(np.float32))))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(model(x, training=True), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("factor", [(0.1, 0.1), (0.25, 0.25), (-0.3, -0.3)])
@pytest.mark.parametrize("fill_mode", ["constant", "reflect"])
def test_random_rotation_turns_as_keras(factor, fill_mode):
    """Found by a review: a positive factor turned the images clockwise, Keras's counter-clockwise
    (the same distribution for factor=0.1, the mirror image for a (low, high) range)."""
    shape = (7, 6, 2)
    model = convforge.Sequential([convforge.layers.RandomRotation(factor, fill_mode=fill_mode, input_shape=shape)],
                                 dtype="float64")
    theirs = keras.layers.RandomRotation(factor, fill_mode=fill_mode)
    x = np.random.default_rng(1).standard_normal((2, *shape))
    expected = to_numpy(theirs(keras.ops.convert_to_tensor(x.astype(np.float32)), training=True))
    np.testing.assert_allclose(model(x, training=True), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["Maximum", "Minimum", "Add", "Subtract", "Multiply", "Average"])
@pytest.mark.parametrize("shape", [(5,), (6, 4), (4, 5, 3)])
def test_merge_layers_match_keras(name, shape):
    n = 2 if name == "Subtract" else 3
    ours_in = [convforge.Input(shape) for _ in range(n)]
    ours = convforge.Model(ours_in, getattr(convforge.layers, name)()(ours_in))
    theirs_in = [keras.Input(shape) for _ in range(n)]
    theirs = keras.Model(theirs_in, getattr(keras.layers, name)()(theirs_in))
    assert ours.output_shape == tuple(theirs.output_shape)
    xs = [np.random.default_rng(i).standard_normal((3, *shape)).astype(np.float32) for i in range(n)]
    np.testing.assert_allclose(ours.predict(xs, verbose=0), to_numpy(theirs(xs)), rtol=1e-6, atol=1e-6)


def test_embedding_matches_keras():
    """Embedding: shapes, parameter count, values and the embeddings' gradient (repeated ids add) as
    Keras 3's; 'uniform' (its default initializer) is Keras's RandomUniform(-0.05, 0.05)."""
    import torch

    ids = np.array([[1, 4, 4, 0], [4, 2, 1, 1]])
    ours = convforge.layers.Embedding(5, 3)
    model = convforge.Sequential([convforge.Input((4,)), ours], dtype="float64")
    theirs = keras.layers.Embedding(5, 3)
    theirs.build((None, 4))
    assert model.output_shape == tuple(theirs.compute_output_shape((None, 4))) == (None, 4, 3)
    assert ours.count_params() == theirs.count_params() == 15
    assert np.abs(ours.params["embeddings"]).max() <= 0.05 and np.ptp(ours.params["embeddings"]) > 0.02
    theirs.set_weights(ours.get_weights())
    dy = np.random.default_rng(0).standard_normal((2, 4, 3))
    y = ours.forward(ids.astype(np.float64), training=True)
    ours.backward(dy)
    out = theirs(torch.tensor(ids))
    (out * torch.tensor(dy, dtype=out.dtype)).sum().backward()
    np.testing.assert_allclose(y, to_numpy(out), rtol=1e-6)
    np.testing.assert_allclose(ours.grads["embeddings"], theirs.embeddings.value.grad.numpy(), rtol=1e-6, atol=1e-7)
    assert ours.grads["embeddings"][3].tolist() == [0, 0, 0]  # id 3 is not in the batch


@pytest.mark.parametrize("name,kwargs", [("exponential", {}), ("celu", {"alpha": 2.0}), ("hard_tanh", {}),
                                         ("hard_shrink", {"threshold": 0.3}), ("soft_shrink", {"threshold": 0.7}),
                                         ("tanh_shrink", {}), ("log_sigmoid", {}), ("squareplus", {"b": 2}),
                                         ("sparse_plus", {}), ("sparse_sigmoid", {})])
def test_activation_functions_match_keras_with_their_arguments(name, kwargs):
    """convforge.activations.<name>(x, **kwargs) as keras.activations's, tails included (log_sigmoid
    of -200 without overflow, exponential of 100 in float64)."""
    x = np.concatenate([np.linspace(-4, 4, 41), [-200.0, -30.0, 30.0, 100.0 if name == "exponential" else 50.0]])
    expected = to_numpy(getattr(keras.activations, name)(keras.ops.convert_to_tensor(x), **kwargs))
    np.testing.assert_allclose(getattr(convforge.activations, name)(x, **kwargs), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("axis", [-1, 1, [1, 2]])
def test_unit_normalization_gradient_matches_keras(axis):
    """The input's gradient as torch's autograd through Keras's layer gives it; at a zero vector
    Keras's is NaN (rsqrt(0) times 0), convforge's the floor's 1e12 * dy."""
    import torch

    x = np.random.default_rng(3).standard_normal((3, 5, 4))
    x[0] = 0.0  # zero vectors along any of the axes
    dy = np.random.default_rng(4).standard_normal(x.shape)
    ours = convforge.layers.UnitNormalization(axis)
    convforge.Sequential([convforge.layers.Input((5, 4)), ours], dtype="float64")
    ours.input_grad_needed = True
    y = ours.forward(x, training=True)
    dx = ours.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = keras.layers.UnitNormalization(axis, dtype="float64")(tx)
    (ty * torch.tensor(dy)).sum().backward()
    # Keras's layer computes in float32 here (its rsqrt): agreement to float32 rounding.
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6, atol=1e-7)
    expected = tx.grad.numpy()
    finite = np.isfinite(expected)
    assert not finite.all() and np.isfinite(dx).all()
    np.testing.assert_allclose(dx[finite], expected[finite], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first,second,axes,normalize", [
    ((5,), (5,), 1, False), ((5,), (5,), -1, True), ((4, 5), (3, 5), 2, False), ((4, 5), (3, 5), -1, True),
    ((4, 5), (5,), (2, 1), False), ((5,), (5, 3), (1, 1), False), ((4, 5), (4, 3), 1, True),
    ((4, 5), (4, 3), (1, 1), False)])
def test_dot_matches_keras(first, second, axes, normalize):
    """Output shape, values and both inputs' gradients as torch's autograd through Keras's Dot
    (a zero vector with normalize: Keras's gradient is NaN there, convforge's the floor's)."""
    import torch

    rng = np.random.default_rng(sum(map(ord, f"{first}{second}{axes}{normalize}")))
    a, b = convforge.Input(first, dtype="float64"), convforge.Input(second, dtype="float64")
    ours = convforge.layers.Dot(axes, normalize=normalize)
    model = convforge.Model([a, b], ours([a, b]))
    x1, x2 = rng.standard_normal((3, *first)), rng.standard_normal((3, *second))
    if normalize:
        x1[0] = 0.0
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    theirs = keras.layers.Dot(axes, normalize=normalize)([t1, t2])
    assert model.output_shape[1:] == tuple(theirs.shape[1:])
    dy = rng.standard_normal(tuple(theirs.shape))
    (theirs * torch.tensor(dy)).sum().backward()
    ours.input_grad_needed = True
    out = ours.forward([x1, x2], training=True)
    g1, g2 = ours.backward(dy)
    np.testing.assert_allclose(out, theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
    for got, want in ((g1, t1.grad.numpy()), (g2, t2.grad.numpy())):
        finite = np.isfinite(want)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6)
    assert {k: v for k, v in ours.get_config().items() if k in ("axes", "normalize")} == \
        {"axes": list(axes) if isinstance(axes, tuple) else axes, "normalize": normalize}
