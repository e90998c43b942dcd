"""Tests of convforge.losses and convforge.optimizers (with their schedules).

Loss values and gradients are checked against hand-computed numbers and
central differences; each optimizer against its update rule written out in
NumPy, step by step.
"""

import math
import warnings

import numpy as np
import pytest
from gradients import numerical_grad

import convforge
from convforge import callbacks, layers, losses, optimizers

# ---------------------------------------------------------------------------
# Cross-entropy
# ---------------------------------------------------------------------------




def test_softmax_cross_entropy_hand_computed():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = np.array([2, 0])
    # Reference: -log softmax by hand.
    first = math.log(math.e + math.e**2 + math.e**3) - 3
    second = math.log(3)
    loss, grad, probs = losses.softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx((first + second) / 2, rel=1e-14)
    # Gradient (p - y) / N.
    expected_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected_p, rtol=1e-14)
    np.testing.assert_allclose(grad, (expected_p - np.eye(3)[labels]) / 2, rtol=1e-14)
    # Same numbers with one-hot labels.
    loss_1h, grad_1h, _ = losses.softmax_cross_entropy(logits, np.eye(3)[labels])
    assert loss_1h == pytest.approx(loss, rel=1e-14)
    np.testing.assert_allclose(grad_1h, grad, atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_finite_for_huge_logits(dtype):
    logits = np.array([[1e30, 0.0, -1e30], [5e3, -5e3, 0.0], [88.0, 89.0, 90.0]], dtype=dtype)
    labels = np.array([2, 1, 0])
    loss, grad, probs = losses.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)) and np.all(np.isfinite(probs))
    # Row 1: loss = 1e4 exactly (logsumexp = 5e3 to working precision).
    assert loss == pytest.approx((2e30 + 1e4 + (math.log(math.exp(-2) + math.exp(-1) + 1) + 2)) / 3, rel=1e-6)


def test_cross_entropy_gradient_numerically():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 5))
    labels = np.array([0, 4, 2, 2])
    _, grad, _ = losses.softmax_cross_entropy(logits, labels)
    expected = numerical_grad(lambda: losses.softmax_cross_entropy(logits, labels, need_grad=False)[0], logits)
    np.testing.assert_allclose(grad, expected, atol=1e-9)


def test_probability_path_matches_logits_and_its_gradient():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([1, 3, 0])
    from_probs = losses.SparseCategoricalCrossentropy()
    from_logits = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert from_probs(labels, probs) == pytest.approx(from_logits(labels, logits), rel=1e-12)
    _, grad = from_probs.value_and_grad(probs, labels)
    expected = numerical_grad(lambda: from_probs.value_and_grad(probs, labels, need_grad=False)[0], probs)
    np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_probabilities_are_clipped_like_keras():
    loss = losses.CategoricalCrossentropy()(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]))
    assert loss == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_model_with_softmax_trains_on_logits():
    """Dense(softmax) + cross-entropy is fused: the loss of huge logits is exact, not clipped at -log(1e-7)."""
    model = convforge.Sequential([layers.Dense(2, activation="softmax", input_shape=(1,))], dtype="float64")
    model.layers[0].set_weights([np.array([[1000.0, -1000.0]]), np.zeros(2)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert model.evaluate(np.ones((1, 1)), np.array([1]), verbose=0) == pytest.approx(2000.0)
    assert model._fused
    model.fit(np.ones((1, 1)), np.array([1]), verbose=0)  # gradient (p - y) / N: finite
    assert np.all(np.isfinite(model.layers[0].params["kernel"]))
    np.testing.assert_allclose(model.predict(np.ones((1, 1)), verbose=0), [[1.0, 0.0]])  # still probabilities


def test_from_logits_true_on_a_softmax_model_warns():
    model = convforge.Sequential([layers.Dense(2, activation="softmax", input_shape=(1,))])
    # At compile already, the model being built; and again where it is used.
    with pytest.warns(UserWarning, match="from_logits=True but the last layer 'dense' applies a softmax"):
        model.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(UserWarning, match="from_logits=True but the last layer 'dense' applies a softmax") as seen:
        model.evaluate(np.ones((2, 1)), np.array([0, 1]), verbose=0)
    # Each warning names the user's line (here), not one inside convforge's trainer.
    assert {w.filename for w in seen} == {__file__}
    with warnings.catch_warnings(record=True) as seen:  # fit's own warning, and a callback's
        warnings.simplefilter("always")
        model.fit(np.ones((2, 1)), np.array([0, 1]), verbose=0, callbacks=[callbacks.EarlyStopping(monitor="nope")])
    assert sorted(w.category.__name__ for w in seen) == ["RuntimeWarning", "UserWarning"]
    assert {w.filename for w in seen} == {__file__}


@pytest.mark.parametrize(
    "labels,message",
    [
        ([0, 1, -1], r"label -1 at index 2 is out of range: labels must be in \[0, 3\)"),
        ([0, 3, 1], r"label 3 at index 1 is out of range"),
        ([0.0, 1.5, 1.0], r"got 1.5 at index 1"),
        ([0.0, np.nan, 1.0], r"got nan at index 1"),
        (np.eye(3), r"expects integer class labels of shape \(batch,\); got shape \(3, 3\)\. These look like one-hot"),
    ],
    ids=["negative", "too-large", "non-integer", "nan", "one-hot"],
)
def test_sparse_label_validation_names_the_bad_label(labels, message):
    loss = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError, match=message):
        loss(np.array(labels), np.full((3, 3), 1 / 3))


def test_sparse_labels_accept_integral_floats_and_column_vectors():
    loss = losses.SparseCategoricalCrossentropy()
    probs = np.full((3, 3), 1 / 3)
    value = loss(np.array([0, 1, 2]), probs)
    assert loss(np.array([0.0, 1.0, 2.0]), probs) == value
    assert loss(np.array([[0], [1], [2]], dtype=np.uint8), probs) == value


def test_categorical_label_validation():
    loss = losses.CategoricalCrossentropy()
    with pytest.raises(
        ValueError, match=r"expects one-hot labels of shape \(batch, 3\); got shape \(2,\)\. For integer"
    ):
        loss(np.array([0, 2]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        loss(np.array([[1.0, 0.0, -1.0], [0, 1, 0]]), np.full((2, 3), 1 / 3))


def test_binary_target_validation_names_the_index_as_plain_ints():
    """Not NumPy 2's repr: 'at index (np.int64(2), np.int64(0))'."""
    loss = losses.BinaryCrossentropy()
    with pytest.raises(ValueError, match=r"targets must be in \[0, 1\]; got 2 at index \(2, 0\)$"):
        loss(np.array([[0], [1], [2]]), np.full((3, 1), 0.5))


def test_mean_squared_error():
    mse = losses.get("mse")
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    target = np.array([[1.0, 0.0], [0.0, 5.0]])
    value, grad = mse.value_and_grad(pred, target)
    assert value == pytest.approx((4 + 9) / 4)
    np.testing.assert_allclose(grad, 2 * (pred - target) / 4)
    assert mse(target, pred) == value
    with pytest.raises(ValueError, match="do not match the model output"):
        mse.prepare_targets(np.zeros((2, 3)), (2,))


def test_loss_lookup():
    assert isinstance(losses.get("sparse_categorical_crossentropy"), losses.SparseCategoricalCrossentropy)
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.get("dice")  # Keras 3 has it; convforge does not
    with pytest.raises(TypeError, match="no automatic differentiation"):
        losses.get(lambda y_true, y_pred: 0.0)


# ---------------------------------------------------------------------------
# Optimizers: each against its rule in NumPy
# ---------------------------------------------------------------------------


def _run(optimizer, w0, grads):
    w = w0.copy()
    for g in grads:
        optimizer.apply_gradients([("layer/kernel", w, g)])
    return w


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    return rng.standard_normal((3, 4)), [rng.standard_normal((3, 4)) for _ in range(4)]


def test_sgd_plain(problem):
    w0, grads = problem
    expected = w0.copy()
    for g in grads:
        expected = expected - 0.1 * g
    np.testing.assert_allclose(_run(optimizers.SGD(0.1), w0, grads), expected, rtol=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(problem, nesterov):
    w0, grads = problem
    lr, mu = 0.1, 0.9
    w, m = w0.copy(), np.zeros_like(w0)
    for g in grads:
        m = mu * m - lr * g
        w = w + mu * m - lr * g if nesterov else w + m
    np.testing.assert_allclose(_run(optimizers.SGD(lr, momentum=mu, nesterov=nesterov), w0, grads), w, rtol=1e-13)


def test_adam(problem):
    w0, grads = problem
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    optimizer = optimizers.Adam(lr)
    np.testing.assert_allclose(_run(optimizer, w0, grads), w, rtol=1e-13)
    assert optimizer.iterations == 4


@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop(problem, centered):
    w0, grads = problem
    lr, rho, mu, eps = 0.01, 0.9, 0.5, 1e-7
    w, v, a, m = w0.copy(), np.zeros_like(w0), np.zeros_like(w0), np.zeros_like(w0)
    for g in grads:
        v = rho * v + (1 - rho) * g * g
        denom = v
        if centered:
            a = rho * a + (1 - rho) * g
            denom = v - a * a
        m = mu * m + lr * g / np.sqrt(denom + eps)
        w = w - m
    got = _run(optimizers.RMSprop(lr, rho=rho, momentum=mu, centered=centered), w0, grads)
    np.testing.assert_allclose(got, w, rtol=1e-13)


def test_decoupled_weight_decay(problem):
    w0, grads = problem
    lr, wd = 0.1, 0.01
    w = w0.copy()
    for g in grads:
        w = w * (1 - lr * wd) - lr * g
    np.testing.assert_allclose(_run(optimizers.SGD(lr, weight_decay=wd), w0, grads), w, rtol=1e-14)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: optimizers.SGD(float("nan")), "learning_rate must be finite"),
        (lambda: optimizers.SGD(float("inf")), "learning_rate must be finite"),
        (lambda: optimizers.SGD(-0.1), "learning_rate must be >= 0"),
        (lambda: optimizers.SGD("0.1"), "learning_rate must be a number"),
        (lambda: optimizers.SGD(True), "learning_rate must be a number"),
        (lambda: optimizers.SGD(0.1, momentum=1.0), "momentum must be < 1"),
        (lambda: optimizers.SGD(0.1, momentum=-0.5), "momentum must be >= 0"),
        (lambda: optimizers.Adam(beta_1=1.0), "beta_1 must be < 1"),
        (lambda: optimizers.Adam(epsilon=0), "epsilon must be > 0"),
        (lambda: optimizers.Adam(weight_decay=float("nan")), "weight_decay must be finite"),
        (lambda: optimizers.get("ftrl"), "optimizer must be one of"),
        (lambda: optimizers.Lion(beta_1=0.0), "beta_1 must be > 0"),  # Keras's range: 0 would be SignSGD
        (lambda: optimizers.Lion(beta_2=1.0), "beta_2 must be < 1"),
        (lambda: optimizers.Adadelta(rho=1.5), "rho must be < 1"),
        (lambda: optimizers.Adamax(epsilon=-1e-7), "epsilon must be > 0"),
    ],
)
def test_hyperparameters_are_validated(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_compile_accepts_names():
    model = convforge.Sequential([layers.Dense(1, input_shape=(2,))])
    for name, cls in [("sgd", optimizers.SGD), ("adam", optimizers.Adam), ("rmsprop", optimizers.RMSprop)]:
        model.compile(optimizer=name, loss="mse")
        assert type(model.optimizer) is cls


# ---------------------------------------------------------------------------
# Learning-rate schedules
# ---------------------------------------------------------------------------


def test_schedule_values():
    assert [optimizers.StepDecay(1.0, step_size=2, gamma=0.5)(t) for t in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    exp = optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert exp(5) == pytest.approx(0.1 * 0.5**0.5)
    assert optimizers.ExponentialDecay(0.1, 10, 0.5, staircase=True)(15) == pytest.approx(0.05)
    cos = optimizers.CosineDecay(1.0, decay_steps=10, alpha=0.1)
    assert cos(0) == 1.0 and cos(10) == pytest.approx(0.1) and cos(20) == pytest.approx(0.1)
    assert cos(5) == pytest.approx(0.55)
    piecewise = optimizers.PiecewiseConstantDecay([2, 4], [1.0, 0.5, 0.1])
    assert [piecewise(t) for t in (0, 2, 3, 4, 5)] == [1.0, 1.0, 0.5, 0.5, 0.1]


def test_optimizer_calls_its_schedule_with_the_step():
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.1

    optimizer = optimizers.SGD(schedule)
    w = np.ones(2)
    for _ in range(3):
        optimizer.apply_gradients([("w", w, np.ones(2))])
    assert seen == [0, 1, 2]
    np.testing.assert_allclose(w, 1 - 0.3)


def test_a_schedule_returning_nan_is_an_error():
    optimizer = optimizers.SGD(lambda step: float("nan") if step == 1 else 0.1)
    w = np.ones(2)
    optimizer.apply_gradients([("w", w, np.ones(2))])
    with pytest.raises(ValueError, match="returned nan at step 1"):
        optimizer.apply_gradients([("w", w, np.ones(2))])


def test_learning_rate_scheduler_callback_by_epoch():
    convforge.seed(0)
    model = convforge.Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=optimizers.SGD(1.0), loss="mse")
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    history = model.fit(
        x,
        y,
        epochs=4,
        verbose=0,
        callbacks=[callbacks.LearningRateScheduler(optimizers.StepDecay(0.1, step_size=2, gamma=0.1))],
    )
    np.testing.assert_allclose(history.history["learning_rate"], [0.1, 0.1, 0.01, 0.01])
    history = model.fit(
        x, y, epochs=2, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2)]
    )
    np.testing.assert_allclose(history.history["learning_rate"], [0.005, 0.0025])
    with pytest.raises(ValueError, match="returned -1"):
        model.fit(x, y, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda epoch: -1)])


@pytest.mark.parametrize("make", [losses.SparseCategoricalCrossentropy, losses.CategoricalCrossentropy,
                                  losses.BinaryCrossentropy, losses.Huber, losses.MeanSquaredError,
                                  losses.MeanAbsoluteError])
def test_every_loss_takes_keras_name_argument_and_keeps_it_in_its_config(make):
    """Keras's losses all take ``name=``; the cross-entropies and Huber refused it (TypeError
    'does not support the argument name'), though Loss and MeanSquaredError took it."""
    loss = make(name="my_loss")
    assert loss.name == "my_loss"
    assert loss.get_config()["name"] == "my_loss"
    again = losses.deserialize(losses.serialize(loss))
    assert type(again) is make and again.get_config() == loss.get_config()
    assert make().name == make.name  # the default stays the class's Keras name
    with pytest.raises(TypeError, match="name must be a string"):
        make(name=3)


def test_optimizer_and_schedule_flags_are_true_or_false():
    """centered='no' and staircase='no' were bool()'s True (a centred RMSprop, a staircase
    schedule nobody asked for); a boundary 'a' was int()'s message naming no argument."""
    with pytest.raises(TypeError, match="centered must be True or False; got 'no'"):
        optimizers.RMSprop(centered="no")
    with pytest.raises(TypeError, match="staircase must be True or False; got 'no'"):
        optimizers.ExponentialDecay(0.1, 10, 0.5, staircase="no")
    with pytest.raises(TypeError, match="nesterov must be True or False"):
        optimizers.SGD(momentum=0.9, nesterov=1)
    with pytest.raises(TypeError, match=r"boundaries\[0\] must be a step number; got 'a'"):
        optimizers.PiecewiseConstantDecay(["a"], [0.1, 0.01])
    assert optimizers.RMSprop(centered=np.bool_(True)).centered is True
    schedule = optimizers.PiecewiseConstantDecay([2.5], [0.1, 0.01])  # Keras compares step <= 2.5
    assert [schedule(s) for s in (2, 3)] == [0.1, 0.01]


def test_cosine_decay_warmup_is_keras():
    """Keras's CosineDecay(warmup_target=, warmup_steps=) (refused before): a linear rise from
    initial_learning_rate to warmup_target, then the cosine from warmup_target. Keras 3.15's
    values (float32) at steps 0..7 and 20."""
    schedule = optimizers.CosineDecay(0.01, 10, alpha=0.2, warmup_target=0.1, warmup_steps=3)
    keras_values = [0.01, 0.04, 0.07, 0.1, 0.09804226, 0.09236068, 0.08351141, 0.07236068, 0.02]
    assert [schedule(s) for s in (*range(8), 20)] == pytest.approx(keras_values, rel=1e-6)
    # warmup_steps=0: the cosine starts from warmup_target at once, as in Keras.
    assert optimizers.CosineDecay(0.1, 10, warmup_target=0.05)(0) == 0.05
    again = optimizers.SGD.from_config(optimizers.SGD(schedule).get_config()).schedule
    assert [again(s) for s in range(15)] == [schedule(s) for s in range(15)]
    with pytest.raises(ValueError, match="warmup_steps=5 needs warmup_target"):
        optimizers.CosineDecay(0.1, 10, warmup_steps=5)  # Keras would silently skip the warmup
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 0"):
        optimizers.CosineDecay(0.1, 10, warmup_target=0.2, warmup_steps=-1)


def test_inverse_time_decay_is_keras():
    """Keras's InverseTimeDecay (an AttributeError 'convforge does not support' before); Keras
    3.15's values, with and without staircase, and an SGD step with it as Keras takes it."""
    from convforge.optimizers.schedules import InverseTimeDecay

    smooth = InverseTimeDecay(0.1, 4, 0.5)
    assert [smooth(s) for s in (0, 1, 5, 10)] == pytest.approx([0.1, 0.08888889, 0.06153846, 0.04444444], rel=1e-6)
    stairs = InverseTimeDecay(0.1, 4, 0.5, staircase=True)
    assert [stairs(s) for s in (0, 3, 4, 9)] == pytest.approx([0.1, 0.1, 0.06666667, 0.05], rel=1e-6)
    sgd = optimizers.SGD(smooth)
    sgd.iterations = 5
    assert sgd.current_learning_rate() == pytest.approx(0.1 / 1.625)
    assert optimizers.SGD.from_config(sgd.get_config()).schedule.get_config() == smooth.get_config()
    with pytest.raises(TypeError, match="staircase must be True or False"):
        InverseTimeDecay(0.1, 4, 0.5, staircase="yes")


@pytest.mark.parametrize("make", [optimizers.SGD, optimizers.Adam, optimizers.AdamW, optimizers.RMSprop,
                                  optimizers.Adagrad, optimizers.Nadam, optimizers.Adadelta, optimizers.Adamax,
                                  optimizers.Lion])
def test_gradient_clipping_is_keras(make):
    """Keras's clipvalue, clipnorm and global_clipnorm (refused before): the gradients the update
    sees are the clipped ones, the caller's arrays are left alone, and the config keeps them."""
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 4)) * 5, rng.standard_normal(4) * 5]
    originals = [g.copy() for g in grads]
    total = math.sqrt(sum(float((g * g).sum()) for g in grads))
    cases = [
        (dict(clipvalue=0.5), [np.clip(g, -0.5, 0.5) for g in grads]),
        (dict(clipnorm=1.0), [g / max(1.0, np.linalg.norm(g)) for g in grads]),
        (dict(global_clipnorm=2.0), [g * 2.0 / max(2.0, total) for g in grads]),
        (dict(global_clipnorm=1e9), grads),  # below the bound: unchanged
    ]
    for kwargs, expected in cases:
        clipped_opt = make(learning_rate=0.01, **kwargs)
        plain_opt = make(learning_rate=0.01)
        w_clipped = [np.ones((3, 4)), np.ones(4)]
        w_plain = [np.ones((3, 4)), np.ones(4)]
        for _ in range(3):
            clipped_opt.apply_gradients([(f"v{i}", w_clipped[i], grads[i]) for i in range(2)])
            plain_opt.apply_gradients([(f"v{i}", w_plain[i], expected[i]) for i in range(2)])
        for a, b in zip(w_clipped, w_plain):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        for g, original in zip(grads, originals):
            np.testing.assert_array_equal(g, original)
        again = type(clipped_opt).from_config(clipped_opt.get_config())
        assert {k: again.get_config()[k] for k in kwargs} == kwargs
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        make(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match="clipnorm must be > 0"):
        make(clipnorm=0.0)


@pytest.mark.parametrize("make", [optimizers.Adam, lambda **kw: optimizers.AdamW(weight_decay=0.0, **kw)])
def test_adam_amsgrad_is_keras(make):
    """Keras's Adam(amsgrad=True) (refused before): the largest second moment so far divides the
    step. Keras 3.15's weights (float64) after three steps; plain Adam's differ."""
    grads = [np.array([1.0, 0.1]), np.array([0.01, 2.0]), np.array([0.001, 0.001])]
    for amsgrad, keras_weights in [(True, [0.8013132229197203, -2.213224613572577]),
                                   (False, [0.7370044508381026, -2.2322394223677415])]:
        opt = make(learning_rate=0.1, beta_2=0.5, amsgrad=amsgrad)
        w = np.array([1.0, -2.0])
        for g in grads:
            opt.apply_gradients([("w", w, g)])
        np.testing.assert_allclose(w, keras_weights, rtol=1e-13)
        assert opt.get_config()["amsgrad"] is amsgrad
    iterations, state = opt.get_state()  # the maximum is state: a checkpoint keeps it
    amsgrad_opt = make(learning_rate=0.1, amsgrad=True)
    amsgrad_opt.apply_gradients([("w", np.ones(2), grads[0])])
    assert "w/v_hat" in amsgrad_opt.get_state()[1] and "w/v_hat" not in state


@pytest.mark.parametrize("make", [losses.SparseCategoricalCrossentropy,
                                  lambda: losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                                  lambda: losses.Huber(0.5, name="h"), losses.MeanSquaredError])
def test_loss_from_config_rebuilds_it(make):
    """Keras's ``type(loss).from_config(loss.get_config())`` (an AttributeError before)."""
    loss = make()
    again = type(loss).from_config(loss.get_config())
    assert type(again) is type(loss) and again.get_config() == loss.get_config()


def test_optimizer_from_config_refuses_an_unknown_schedule_clearly():
    """A bad schedule description was a bare KeyError ('Foo', 'config' or 'class_name')."""
    for bad in ({"class_name": "Foo", "config": {}}, {"config": {}}, {"class_name": "CosineDecay", "config": 3}):
        with pytest.raises(ValueError, match="learning_rate: unknown schedule description"):
            optimizers.SGD.from_config({"learning_rate": bad})
    with pytest.raises(TypeError, match="decay_steps"):  # the schedule's own check names what is missing
        optimizers.SGD.from_config({"learning_rate": {"class_name": "CosineDecay"}})


@pytest.mark.parametrize("cls,keras_name", [(optimizers.SGD, "sgd"), (optimizers.Adam, "adam"),
                                            (optimizers.AdamW, "adam_w"), (optimizers.RMSprop, "rm_sprop"),
                                            (optimizers.Adagrad, "adagrad"), (optimizers.Nadam, "nadam"),
                                            (optimizers.Adadelta, "adadelta"), (optimizers.Adamax, "adamax"),
                                            (optimizers.Lion, "lion")])
def test_optimizers_take_keras_name_and_a_keras_config(cls, keras_name):
    """Keras's optimizers take name= and their configs hold it with the EMA, loss-scaling and
    accumulation switches at their defaults: such a config (Keras 3.15's, with its float32
    learning rate) now builds the optimizer; name= was a TypeError before."""
    keras_config = {"name": keras_name, "learning_rate": 0.0010000000474974513, "weight_decay": None,
                    "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
                    "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
                    "gradient_accumulation_steps": None}
    if cls is optimizers.AdamW:
        keras_config["weight_decay"] = 0.004
    opt = cls.from_config(keras_config)
    assert opt.name == keras_name == cls().name
    assert cls(name="mine").get_config()["name"] == "mine"
    with pytest.raises(TypeError, match="name must be a string"):
        cls(name=1)


def test_a_keras_optimizer_config_with_a_schedule_builds_the_same_optimizer():
    """Keras 3.15's SGD(CosineDecay(...), momentum=0.9).get_config(), verbatim: its schedule's
    config holds name= (refused before, as were the schedules' name= arguments)."""
    keras_config = {
        "name": "sgd", "learning_rate": {
            "module": "keras.optimizers.schedules", "class_name": "CosineDecay",
            "config": {"initial_learning_rate": 0.01, "decay_steps": 10, "alpha": 0.1, "name": "CosineDecay",
                       "warmup_target": 0.1, "warmup_steps": 3},
            "registered_name": None},
        "weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
        "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
        "gradient_accumulation_steps": None, "momentum": 0.9, "nesterov": False}
    sgd = optimizers.SGD.from_config(keras_config)
    schedule = sgd.schedule
    assert (type(schedule), schedule.name, sgd.momentum) == (optimizers.CosineDecay, "CosineDecay", 0.9)
    assert [schedule(s) for s in (0, 4, 8, 20)] == pytest.approx([0.01, 0.0977975, 0.055, 0.01], rel=1e-6)
    for make, keras_name in [(lambda **kw: optimizers.ExponentialDecay(0.1, 10, 0.5, **kw), "ExponentialDecay"),
                             (lambda **kw: optimizers.InverseTimeDecay(0.1, 10, 0.5, **kw), "InverseTimeDecay"),
                             (lambda **kw: optimizers.PiecewiseConstantDecay([3], [0.1, 0.01], **kw),
                              "PiecewiseConstant")]:
        assert make().name == keras_name and make(name="x").get_config()["name"] == "x"


def test_get_takes_keras_serialized_losses_and_optimizers():
    """keras.losses.serialize / keras.optimizers.serialize output (Keras 3.15, verbatim) given to
    get(), as Keras's get() takes it; both were ValueErrors ('must be one of ...')."""
    keras_loss = {"module": "keras.losses", "class_name": "SparseCategoricalCrossentropy",
                  "config": {"name": "sparse_categorical_crossentropy", "reduction": "sum_over_batch_size",
                             "from_logits": True, "ignore_class": None}, "registered_name": None}
    loss = losses.get(keras_loss)
    assert type(loss) is losses.SparseCategoricalCrossentropy and loss.from_logits
    assert type(losses.get(losses.serialize(losses.Huber(0.5)))) is losses.Huber  # convforge's own form too
    keras_adam = {"module": "keras.src.backend.torch.optimizers.torch_adam", "class_name": "Adam",
                  "config": {"name": "adam", "learning_rate": 0.009999999776482582, "weight_decay": None,
                             "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
                             "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
                             "gradient_accumulation_steps": None, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07,
                             "amsgrad": True}, "registered_name": "Adam"}
    adam = optimizers.get(keras_adam)
    assert type(adam) is optimizers.Adam and adam.amsgrad and adam.learning_rate == pytest.approx(0.01)
    for bad in ({"class_name": ["Adam"]}, {"class_name": "Adam", "config": 3}, {"class_name": "Ftrl"}):
        with pytest.raises(ValueError, match="unknown optimizer description"):
            optimizers.get(bad)
    for bad in ({"class_name": ["Huber"]}, {"class_name": "Huber", "config": 3}, {"class_name": "Tversky"}):
        with pytest.raises(ValueError, match="unknown loss description"):
            losses.get(bad)


def test_learning_rate_reads_the_schedule_s_current_value_as_keras():
    """Keras 3's ``optimizer.learning_rate`` with a schedule is the rate of the next update (the
    training guide prints it, callbacks log ``float(...)`` of it); it gave the schedule object,
    so ``float(optimizer.learning_rate)`` failed. The schedule itself is ``optimizer.schedule``."""
    schedule = optimizers.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    sgd = optimizers.SGD(schedule)
    assert sgd.schedule is schedule and float(sgd.learning_rate) == pytest.approx(0.1)
    sgd.iterations = 40  # four decays, as after 40 steps
    assert float(sgd.learning_rate) == pytest.approx(0.00625) and sgd.learning_rate.numpy() == pytest.approx(0.00625)
    assert optimizers.SGD(0.01).schedule is None and float(optimizers.SGD(0.01).learning_rate) == pytest.approx(0.01)


def test_a_schedule_is_not_dropped_by_setting_a_float_as_keras():
    """Since learning_rate reads a schedule's value, ``.learning_rate.assign(0.01)`` (and the setter)
    replaced the schedule with a float without a word; Keras raises TypeError."""
    sgd = optimizers.SGD(optimizers.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5))
    for set_rate in (lambda: sgd.learning_rate.assign(0.01), lambda: setattr(sgd, "learning_rate", 0.01)):
        with pytest.raises(TypeError, match=r"learning rate is a schedule \(ExponentialDecay\), so it cannot be set"):
            set_rate()
    assert sgd.schedule is not None
    sgd.learning_rate = optimizers.ExponentialDecay(0.2, decay_steps=1, decay_rate=0.5)  # another schedule: fine
    assert float(sgd.learning_rate) == pytest.approx(0.2)


def test_iterations_and_variables_as_keras_reads_them():
    # optimizer.iterations.numpy() and optimizer.variables (Keras 3's) raised AttributeError.
    import convforge

    model = convforge.Sequential([convforge.Input((4,)), convforge.layers.Dense(2)])
    model.compile(convforge.optimizers.Adam(0.01), "mse")
    assert model.optimizer.iterations.numpy() == 0
    assert [v.shape for v in model.optimizer.variables] == [(), ()]
    model.fit(np.ones((8, 4), np.float32), np.ones((8, 2), np.float32), batch_size=4, epochs=1, verbose=0)
    optimizer = model.optimizer
    assert optimizer.iterations == 2 and optimizer.iterations.numpy() == 2 and type(optimizer.iterations.numpy()) is int
    variables = optimizer.variables
    assert [v.shape for v in variables] == [(), (), (4, 2), (4, 2), (2,), (2,)]  # Keras's order: m, v of each
    assert int(variables[0]) == 2 and float(variables[1]) == pytest.approx(0.01)
    optimizer.iterations.assign(0)
    assert optimizer.iterations == 0
    with pytest.raises(ValueError, match=r"optimizer iterations must be an int >= 0; got -1"):
        optimizer.iterations = -1


def test_the_rate_and_count_copy_as_plain_numbers():
    # copy.deepcopy(optimizer.learning_rate) raised TypeError (LearningRate.__new__ wants the
    # optimizer); so would a pickle of a state holding the count (an MPI broadcast).
    import copy
    import pickle

    import convforge

    optimizer = convforge.optimizers.Adam(0.5)
    optimizer.iterations = 3
    for value, kind in ((optimizer.learning_rate, float), (optimizer.iterations, int)):
        for twin in (copy.deepcopy(value), copy.copy(value), pickle.loads(pickle.dumps(value))):
            assert type(twin) is kind and twin == value
    assert copy.deepcopy(optimizer).iterations == 3
