"""Cross-entropy with a class per position, Keras's way: a segmentation net's (batch, height, width,
classes) output or a tagger's (batch, steps, classes), against a label per position or one-hot rows
(the U-Net tutorial's loss, refused until 2026-12-06). One cross-entropy per position over the last
axis, their mean over batch and positions; the accuracies per position too. Checked against a NumPy
float64 oracle, numerical gradients, and real Keras 3."""

import re

import numpy as np
import pytest

import convforge
from convforge import layers, losses, metrics
from convforge.gradcheck import check_model_gradients

from model_checks import real_keras

# Keras's variables under NumPy 2 (the side-by-side test), as in test_keras_reference.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def oracle(logits, labels, weights=None):
    """Mean over batch and positions of -log softmax(logits)[label], float64; a sample's weight on
    each of its positions (Keras's sum_over_batch_size)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    per = -np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    if weights is not None:
        per = per * weights.reshape(-1, *([1] * (per.ndim - 1)))
    return per.mean()


def segmenter(classes=3, activation="softmax", dtype="float32"):
    convforge.seed(0)
    inputs = convforge.Input((6, 5, 2), dtype=dtype)
    h = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return convforge.Model(inputs, layers.Conv2D(classes, 1, activation=activation)(h))


def test_the_losses_take_a_class_per_position_as_the_oracle():
    rng = np.random.default_rng(0)
    for shape in ((4, 6, 5, 3), (4, 7, 3)):
        logits = rng.standard_normal(shape)
        labels = rng.integers(0, 3, shape[:-1])
        weights = rng.uniform(0.5, 2.0, shape[0])
        probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        onehot = np.eye(3)[labels]
        sparse = losses.SparseCategoricalCrossentropy()
        assert sparse(labels, probs) == pytest.approx(oracle(logits, labels), rel=1e-12)
        assert sparse(labels[..., None], probs) == pytest.approx(oracle(logits, labels), rel=1e-12)
        assert losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits, sample_weight=weights) == \
            pytest.approx(oracle(logits, labels, weights), rel=1e-12)
        assert losses.CategoricalCrossentropy()(onehot, probs, sample_weight=weights) == \
            pytest.approx(oracle(logits, labels, weights), rel=1e-12)
        value, grad, got = losses.SparseCategoricalCrossentropy(from_logits=True).logits_value_and_grad(logits, labels)
        positions = labels.size
        np.testing.assert_allclose(got, probs, rtol=1e-12)
        np.testing.assert_allclose(grad, (probs - onehot) / positions, rtol=1e-10, atol=1e-15)
    with pytest.raises(ValueError, match=re.escape("expects integer labels of shape (batch, 6, 5), one per position of "
                                                   "the model output (batch, 6, 5, 3); got shape (4, 6)")):
        losses.SparseCategoricalCrossentropy().prepare_targets(np.zeros((4, 6), np.int64), (6, 5, 3))
    with pytest.raises(ValueError, match="These look like one-hot labels"):
        losses.SparseCategoricalCrossentropy().prepare_targets(np.zeros((4, 6, 5, 3)), (6, 5, 3))
    with pytest.raises(ValueError, match=r"label 3 at index .* is out of range"):
        losses.SparseCategoricalCrossentropy().prepare_targets(np.full((4, 6, 5), 3), (6, 5, 3))
    with pytest.raises(ValueError, match=re.escape("expects one-hot labels of shape (batch, 6, 5, 3); got shape "
                                                   "(4, 6, 5). For integer class labels")):
        losses.CategoricalCrossentropy().prepare_targets(np.zeros((4, 6, 5)), (6, 5, 3))


@pytest.mark.parametrize("loss,activation", [("sparse_categorical_crossentropy", "softmax"),
                                             (losses.SparseCategoricalCrossentropy(from_logits=True), None),
                                             ("categorical_crossentropy", "softmax")])
def test_a_segmentation_net_trains_on_a_class_per_pixel(loss, activation):
    """fit and evaluate of a net ending in a per-pixel softmax (fused into the loss) or logits: the
    loss is the oracle's of the model's own outputs, the accuracy the per-pixel hit rate, and the
    float64 gradients pass the numerical check."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 6, 5, 2)).astype(np.float32)
    labels = rng.integers(0, 3, (8, 6, 5))
    y = np.eye(3, dtype=np.float32)[labels] if "categorical_crossentropy" == loss else labels
    model = segmenter(activation=activation)
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    out = model.predict(x, verbose=0).astype(np.float64)
    logits = np.log(out) if activation == "softmax" else out
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(oracle(logits, labels), rel=1e-5)
    assert logs["accuracy"] == pytest.approx(np.mean(out.argmax(-1) == labels))
    weights = rng.uniform(0.5, 2.0, 8).astype(np.float32)
    assert model.evaluate(x, y, sample_weight=weights, verbose=0)[0] == pytest.approx(
        oracle(logits, labels, weights), rel=1e-5)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=4, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before
    double = segmenter(activation=activation, dtype="float64")
    double.compile(optimizer="sgd", loss=loss)
    report = check_model_gradients(double, x[:3].astype(np.float64), y[:3], num_coords=12)
    assert report.passed, str(report)


def test_a_tagger_of_steps_and_its_accuracies():
    """(batch, steps, classes) from a Conv1D: a label per step; sparse_categorical_accuracy and
    categorical_accuracy by name too."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 7, 2))
    labels = rng.integers(0, 4, (8, 7))
    convforge.seed(0)
    model = convforge.Sequential([convforge.Input((7, 2)), layers.Conv1D(5, 3, padding="same", activation="relu"),
                                  layers.Conv1D(4, 1, activation="softmax")], dtype="float64")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    out = model.predict(x, verbose=0)
    logs = model.evaluate(x, labels, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(oracle(np.log(out), labels), rel=1e-10)
    assert logs["sparse_categorical_accuracy"] == pytest.approx(np.mean(out.argmax(-1) == labels))
    assert check_model_gradients(model, x[:3], labels[:3], num_coords=12).passed
    metric = metrics.CategoricalAccuracy()
    metric.update_state(np.eye(4)[labels], out)
    assert metric.result() == pytest.approx(np.mean(out.argmax(-1) == labels))
    binary = metrics.Accuracy()  # a single float column per position: thresholded at 0.5
    binary.update_state(np.array([[[1.0], [0.0]]]), np.array([[[0.7], [0.8]]]))
    assert binary.result() == 0.5


def test_an_image_output_reaches_the_loss_and_metrics_as_the_user_sees_it():
    """A custom loss and the metrics see (batch, height, width, channels), as Keras's do (they saw
    NCHW against targets transposed to NCHW); an autoencoder's MSE is unchanged."""
    seen = []

    class Recording(losses.Loss):
        def value_and_grad(self, y_pred, y_true, need_grad=True):
            seen.append((y_pred.shape, y_true.shape))
            diff = y_pred - y_true
            return float(np.mean(diff ** 2)), 2 * diff / diff.size if need_grad else None

    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 5, 2)).astype(np.float32)
    model = segmenter(classes=2, activation=None)
    model.compile(optimizer="sgd", loss=Recording(), metrics=["mse"])
    logs = model.evaluate(x, x, verbose=0, return_dict=True)
    assert seen[-1] == ((4, 6, 5, 2), (4, 6, 5, 2))
    assert logs["loss"] == pytest.approx(np.mean((model.predict(x, verbose=0) - x) ** 2), rel=1e-5)
    model.fit(x, x, epochs=1, verbose=0)
    assert seen[-1] == ((4, 6, 5, 2), (4, 6, 5, 2))


def test_a_channels_first_image_output_is_refused_for_cross_entropy():
    model = convforge.Sequential([convforge.Input((2, 6, 5)), layers.Conv2D(3, 1, data_format="channels_first",
                                                                            activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(NotImplementedError, match="image output of a channels-first model: Keras computes it over the "
                                                  "last axis"):
        model.fit(np.zeros((2, 2, 6, 5), np.float32), np.zeros((2, 3, 6), np.int64), verbose=0)


def test_per_pixel_cross_entropy_is_keras_s():
    """Keras 3.15.1 (torch) on the same weights: evaluate's loss and accuracy, and one SGD step
    (categorical: Keras's own fit of the sparse per-pixel loss fails on torch, 'grad_input must be
    contiguous'). Keras takes per-pixel sample weights (batch, height, width); convforge one per
    sample, which gives the same loss as Keras's weights broadcast over the pixels."""
    keras = real_keras()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 6, 5, 2)).astype(np.float32)
    labels = rng.integers(0, 3, (6, 6, 5))
    onehot = np.eye(3, dtype=np.float32)[labels]
    weights = np.array([1, 2, 0.5, 1, 1, 3], np.float32)

    def build(lib):
        inputs = lib.Input((6, 5, 2))
        h = lib.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        return lib.Model(inputs, lib.layers.Conv2D(3, 1, activation="softmax")(h))

    theirs, ours = build(keras), build(convforge)
    ours.set_weights(theirs.get_weights())
    for loss, y in (("sparse_categorical_crossentropy", labels), ("categorical_crossentropy", onehot)):
        for m, lib in ((theirs, keras), (ours, convforge)):
            m.compile(optimizer=lib.optimizers.SGD(0.1), loss=loss, metrics=["accuracy"])
        want = theirs.evaluate(x, y, verbose=0, return_dict=True)
        got = ours.evaluate(x, y, verbose=0, return_dict=True)
        assert got["loss"] == pytest.approx(float(want["loss"]), rel=1e-5)
        assert got["accuracy"] == pytest.approx(float(want["accuracy"]))
        per_pixel = np.broadcast_to(weights[:, None, None], labels.shape).copy()
        want = float(theirs.evaluate(x, y, sample_weight=per_pixel, verbose=0)[0])
        assert ours.evaluate(x, y, sample_weight=weights, verbose=0)[0] == pytest.approx(want, rel=1e-5)
        assert ours.evaluate(x, y, sample_weight=per_pixel, verbose=0)[0] == pytest.approx(want, rel=1e-5)
    theirs.fit(x, onehot, batch_size=6, epochs=1, shuffle=False, verbose=0)
    ours.fit(x, onehot, batch_size=6, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)
    # A weight per pixel (class balancing of a segmentation net), in fit too.
    pixel_weights = rng.uniform(0.1, 3.0, labels.shape).astype(np.float32)
    theirs.fit(x, onehot, sample_weight=pixel_weights, batch_size=6, epochs=1, shuffle=False, verbose=0)
    ours.fit(x, onehot, sample_weight=pixel_weights, batch_size=6, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)
    assert ours.evaluate(x, onehot, sample_weight=pixel_weights, verbose=0)[0] == pytest.approx(
        float(theirs.evaluate(x, onehot, sample_weight=pixel_weights, verbose=0)[0]), rel=1e-5)


def test_class_weight_is_refused_for_a_class_per_position():
    """The second read: class_weight weighed each sample by its first pixel's class, silently (Keras
    3.15.1 fails on it); a label out of range is named by its position."""
    model = segmenter()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.zeros((2, 6, 5, 2), np.float32)
    labels = np.zeros((2, 6, 5), np.int64)
    with pytest.raises(NotImplementedError, match=re.escape("class_weight with an output of shape (batch, 6, 5, 3), a "
                                                            "class per position")):
        model.fit(x, labels, class_weight={0: 1.0, 1: 5.0}, verbose=0)
    labels[1, 4, 2] = 3
    with pytest.raises(ValueError, match=re.escape("label 3 at index (1, 4, 2) is out of range")):
        model.fit(x, labels, verbose=0)


def test_a_weight_per_position_weighs_that_position():
    """Keras takes sample weights of a segmentation net's pixels, (batch, height, width): each
    pixel's cross-entropy weighed by its own (they were refused: one weight per sample). In the
    loss function, fit (validation_data's and a generator's batches too) and evaluate; refused for
    a loss without a class per position, with a message."""
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((4, 6, 5, 3))
    labels = rng.integers(0, 3, (4, 6, 5))
    weights = rng.uniform(0.1, 3.0, (4, 6, 5))
    per = -np.take_along_axis(logits - np.log(np.exp(logits).sum(-1, keepdims=True)), labels[..., None], -1)[..., 0]
    want = (per * weights).mean()
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert loss(labels, logits, sample_weight=weights) == pytest.approx(want, rel=1e-12)
    x = rng.standard_normal((4, 6, 5, 2)).astype(np.float32)
    model = segmenter(activation=None)
    model.compile(optimizer="sgd", loss=loss)
    out = model.predict(x, verbose=0).astype(np.float64)
    per = -np.take_along_axis(out - np.log(np.exp(out).sum(-1, keepdims=True)), labels[..., None], -1)[..., 0]
    assert model.evaluate(x, labels, sample_weight=weights, verbose=0) == pytest.approx((per * weights).mean(),
                                                                                        rel=1e-5)
    history = model.fit(x, labels, sample_weight=weights, validation_data=(x, labels, weights), epochs=1, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])
    model.fit(((x, labels, weights) for _ in range(2)), steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match=re.escape("must have shape (4,), one weight per sample or (4, 6, 5), one per "
                                                   "position; got (4, 6)")):
        model.fit(x, labels, sample_weight=weights[:, :, 0], verbose=0)
    # Every built-in loss takes a weight per position, as Keras's do: a denoiser's per-pixel weights.
    autoencoder = segmenter(classes=2, activation=None)
    autoencoder.compile(optimizer="sgd", loss="mse")
    out = autoencoder.predict(x, verbose=0).astype(np.float64)
    per_pixel = ((out - x) ** 2).mean(axis=-1)
    assert autoencoder.evaluate(x, x, sample_weight=weights, verbose=0) == pytest.approx((per_pixel * weights).mean(),
                                                                                          rel=1e-5)

    class Plain(losses.Loss):  # a loss of one's own takes one weight per sample
        def value_and_grad(self, y_pred, y_true, need_grad=True, sample_weight=None):
            return losses.MeanSquaredError().value_and_grad(y_pred, y_true, need_grad, None)

    autoencoder.compile(optimizer="sgd", loss=Plain())
    with pytest.raises(ValueError, match="a weight per position is for an output with positions"):
        autoencoder.fit(x, x, sample_weight=weights, verbose=0)
